#!/usr/bin/env python3
"""Generates vectors/data/md5.json: the RFC 1321 test suite (Appendix A.5), all 7 cases.

Digests are typed in from RFC 1321 A.5 and cross-checked with Python's hashlib.

Usage: python3 md5.py [--check]   (--check: fail if the data file is out of date)
"""
import hashlib
import json
import pathlib
import sys

FAMILY = "md5"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
SRC = "RFC 1321 Appendix A.5 test suite (typed in; cross-checked with Python hashlib)"

# (name, message, digest) — typed in from RFC 1321 A.5.
CASES = [
    ("rfc1321_empty", b"", "d41d8cd98f00b204e9800998ecf8427e"),
    ("rfc1321_a", b"a", "0cc175b9c0f1b6a831c399e269772661"),
    ("rfc1321_abc", b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    ("rfc1321_message_digest", b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    ("rfc1321_alphabet", b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
    ("rfc1321_alphanumeric",
     b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "d174ab98d277d9f5a5611c2c9f419d9f"),
    ("rfc1321_eight_times_1234567890", b"1234567890" * 8, "57edf4a22be3c955ac49da2e2107b67a"),
]


def build():
    vectors = []
    for name, msg, digest in CASES:
        assert hashlib.md5(msg).hexdigest() == digest, name
        vectors.append({"name": name, "provenance": SRC, "message": msg.hex(), "digest": digest})
    return {"family": FAMILY, "provenance": "RFC 1321 MD5 test suite", "vectors": vectors}


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
