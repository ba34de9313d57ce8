#!/usr/bin/env python3
"""Generates vectors/data/aes_ctr.json: AES-256-CTR with a 128-bit big-endian counter.

The NIST vectors are typed in from SP 800-38A, Appendix F.5.5 (CTR-AES256.Encrypt) and
F.5.6 (CTR-AES256.Decrypt), and every one is cross-checked against the Python
`cryptography` package. The multi-call vectors take their expected output from
`cryptography` (one call over the whole input); the runner applies the input in the
listed chunks to one continuous stream, which must give the same bytes.

Usage: python3 aes_ctr.py [--check]   (--check: fail if the data file is out of date)
"""
import json
import pathlib
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FAMILY = "aes_ctr"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"

# SP 800-38A F.5.5 / F.5.6, typed in.
NIST_KEY = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
NIST_CTR = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
NIST_PT = (
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
NIST_CT = (
    "601ec313775789a5b7a7f504bbf3d228"
    "f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988d"
    "dfc9c58db67aada613c2dd08457941a6"
)


def ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 131 + seed * 17 + 7) & 0xFF for i in range(n))


def multi(name, key, iv, n, seed, chunks, why):
    assert sum(chunks) == n, name
    pt = pattern(n, seed)
    return {
        "name": name,
        "provenance": "expected output from Python cryptography (AES-256-CTR, one call); " + why,
        "key": key.hex(),
        "iv": iv.hex(),
        "input": pt.hex(),
        "output": ctr(key, iv, pt).hex(),
        "chunks": chunks,
    }


def build():
    key, iv = bytes.fromhex(NIST_KEY), bytes.fromhex(NIST_CTR)
    pt, ct = bytes.fromhex(NIST_PT), bytes.fromhex(NIST_CT)
    # Independent cross-check of the typed-in standard values.
    assert ctr(key, iv, pt) == ct, "F.5.5 does not match cryptography"
    assert ctr(key, iv, ct) == pt, "F.5.6 does not match cryptography"
    key2 = bytes(range(0x20, 0x40))
    vectors = [
        {
            "name": "sp800_38a_f5_5_ctr_aes256_encrypt",
            "provenance": "NIST SP 800-38A Appendix F.5.5 (typed in; cross-checked with Python cryptography)",
            "key": NIST_KEY,
            "iv": NIST_CTR,
            "input": NIST_PT,
            "output": NIST_CT,
        },
        {
            "name": "sp800_38a_f5_6_ctr_aes256_decrypt",
            "provenance": "NIST SP 800-38A Appendix F.5.6 (typed in; cross-checked with Python cryptography)",
            "key": NIST_KEY,
            "iv": NIST_CTR,
            "input": NIST_CT,
            "output": NIST_PT,
        },
        multi("nist_key_300_bytes_odd_chunks", key, iv, 300,
              1, [1, 15, 16, 17, 0, 31, 33, 64, 100, 23],
              "continuous stream across calls that start and end inside blocks"),
        multi("byte_at_a_time_48_bytes", key, iv, 48, 2, [1] * 48,
              "one byte per call"),
        multi("obfuscated2_shaped_header_then_packets", key2, bytes(range(16)), 1500, 3,
              [64, 4, 700, 1, 731],
              "64-byte header first, then packets, as the obfuscated2 stream is used"),
        multi("counter_carries_past_low_64_bits", key2, bytes(8) + b"\xff" * 8, 64, 4,
              [5, 27, 32],
              "the 128-bit counter carries into the high half (a 64-bit counter would not)"),
        multi("counter_wraps_at_128_bits", key2, b"\xff" * 16, 48, 5, [16, 16, 16],
              "the counter wraps from ff..ff to 00..00"),
    ]
    return {
        "family": FAMILY,
        "provenance": "NIST SP 800-38A F.5.5/F.5.6 and Python cryptography (AES-256-CTR, 128-bit BE counter)",
        "vectors": vectors,
    }


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
