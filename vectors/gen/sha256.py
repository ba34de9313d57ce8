#!/usr/bin/env python3
"""Generates vectors/data/sha256.json: the FIPS 180 SHA-256 examples.

Digests are typed in from the NIST FIPS 180-2 examples (Appendix B: "abc", the 448-bit
message, one million 'a') and cross-checked with Python's hashlib. A vector with
`repeat` means the message is `message` repeated that many times.

Usage: python3 sha256.py [--check]   (--check: fail if the data file is out of date)
"""
import hashlib
import json
import pathlib
import sys

FAMILY = "sha256"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
SRC = "FIPS 180-2 Appendix B (typed in; cross-checked with Python hashlib)"

# (name, message, repeat, digest) — digests typed in from the standard.
CASES = [
    ("fips180_b1_abc", b"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("fips180_b2_448_bit_message",
     b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ("fips180_b3_one_million_a", b"a", 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def build():
    vectors = []
    for name, msg, repeat, digest in CASES:
        assert hashlib.sha256(msg * repeat).hexdigest() == digest, name
        v = {"name": name, "provenance": SRC, "message": msg.hex(), "digest": digest}
        if repeat != 1:
            v["repeat"] = repeat
        vectors.append(v)
    return {"family": FAMILY, "provenance": "NIST FIPS 180 SHA-256 examples", "vectors": vectors}


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
