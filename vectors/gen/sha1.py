#!/usr/bin/env python3
"""Generates vectors/data/sha1.json: the FIPS 180 SHA-1 examples.

Digests are typed in from the NIST FIPS 180-2 examples (Appendix A: "abc", the 448-bit
message, one million 'a') and cross-checked with Python's hashlib. A vector with
`repeat` means the message is `message` repeated that many times.

Usage: python3 sha1.py [--check]   (--check: fail if the data file is out of date)
"""
import hashlib
import json
import pathlib
import sys

FAMILY = "sha1"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
SRC = "FIPS 180-2 Appendix A (typed in; cross-checked with Python hashlib)"

# (name, message, repeat, digest) — digests typed in from the standard.
CASES = [
    ("fips180_a1_abc", b"abc", 1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("fips180_a2_448_bit_message",
     b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    ("fips180_a3_one_million_a", b"a", 1_000_000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
]


def build():
    vectors = []
    for name, msg, repeat, digest in CASES:
        assert hashlib.sha1(msg * repeat).hexdigest() == digest, name
        v = {"name": name, "provenance": SRC, "message": msg.hex(), "digest": digest}
        if repeat != 1:
            v["repeat"] = repeat
        vectors.append(v)
    return {"family": FAMILY, "provenance": "NIST FIPS 180 SHA-1 examples", "vectors": vectors}


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
