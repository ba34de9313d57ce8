#!/usr/bin/env python3
"""Generates vectors/data/aes_cbc.json: AES-256-CBC without padding, IV chained across calls.

The NIST vectors are typed in from SP 800-38A, Appendix F.2.5 (CBC-AES256.Encrypt) and
F.2.6 (CBC-AES256.Decrypt), and cross-checked against the Python `cryptography` package.
The multi-call vectors take their expected output from `cryptography` (one call over the
whole input); the runner feeds the listed chunks to one encryptor/decryptor, whose IV
must chain across calls as on the middle-end link. The negative vectors give inputs that
are not whole blocks (SP 800-38A §6.2: CBC works on complete blocks; the link has no
padding scheme): the call must fail with NotBlockAligned and leave the buffer untouched.

Usage: python3 aes_cbc.py [--check]   (--check: fail if the data file is out of date)
"""
import json
import pathlib
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FAMILY = "aes_cbc"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"

# SP 800-38A F.2.5 / F.2.6, typed in.
NIST_KEY = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
NIST_IV = "000102030405060708090a0b0c0d0e0f"
NIST_PT = (
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
NIST_CT = (
    "f58c4c04d6e5f1ba779eabfb5f7bfbd6"
    "9cfc4e967edb808d679f777bc6702c7d"
    "39f23369a9d9bacfa530e26304231461"
    "b2eb05e2c39be9fcda6c19078c6a9d1b"
)


def cbc(direction: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.encryptor() if direction == "encrypt" else c.decryptor()
    return op.update(data) + op.finalize()


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 151 + seed * 29 + 3) & 0xFF for i in range(n))


def multi(name, direction, key, iv, n, seed, chunks, why):
    assert sum(chunks) == n and all(c % 16 == 0 for c in chunks), name
    data = pattern(n, seed)
    return {
        "name": name,
        "provenance": f"expected output from Python cryptography (AES-256-CBC {direction}, one call); " + why,
        "direction": direction,
        "key": key.hex(),
        "iv": iv.hex(),
        "input": data.hex(),
        "output": cbc(direction, key, iv, data).hex(),
        "chunks": chunks,
    }


def unaligned(name, direction, n):
    return {
        "name": name,
        "provenance": "SP 800-38A §6.2 (CBC input is whole blocks; no padding on the middle-end link)",
        "direction": direction,
        "key": NIST_KEY,
        "iv": NIST_IV,
        "input": pattern(n, 9).hex(),
        "expect_error": "NotBlockAligned",
    }


def build():
    key, iv = bytes.fromhex(NIST_KEY), bytes.fromhex(NIST_IV)
    pt, ct = bytes.fromhex(NIST_PT), bytes.fromhex(NIST_CT)
    assert cbc("encrypt", key, iv, pt) == ct, "F.2.5 does not match cryptography"
    assert cbc("decrypt", key, iv, ct) == pt, "F.2.6 does not match cryptography"
    key2 = bytes(range(0x40, 0x60))
    iv2 = bytes(range(0xF0, 0x100))
    vectors = [
        {
            "name": "sp800_38a_f2_5_cbc_aes256_encrypt",
            "provenance": "NIST SP 800-38A Appendix F.2.5 (typed in; cross-checked with Python cryptography)",
            "direction": "encrypt",
            "key": NIST_KEY,
            "iv": NIST_IV,
            "input": NIST_PT,
            "output": NIST_CT,
            "chunks": [16, 16, 16, 16],
        },
        {
            "name": "sp800_38a_f2_6_cbc_aes256_decrypt",
            "provenance": "NIST SP 800-38A Appendix F.2.6 (typed in; cross-checked with Python cryptography)",
            "direction": "decrypt",
            "key": NIST_KEY,
            "iv": NIST_IV,
            "input": NIST_CT,
            "output": NIST_PT,
            "chunks": [32, 16, 16],
        },
        multi("encrypt_chain_across_packets", "encrypt", key2, iv2, 1024, 1,
              [16, 48, 0, 512, 128, 320], "IV carried from one packet to the next"),
        multi("decrypt_chain_across_packets", "decrypt", key2, iv2, 1024, 2,
              [512, 16, 16, 480], "IV carried from one packet to the next"),
        multi("encrypt_one_block_per_call", "encrypt", key, iv, 160, 3, [16] * 10,
              "one block per call"),
        unaligned("encrypt_rejects_33_bytes", "encrypt", 33),
        unaligned("decrypt_rejects_15_bytes", "decrypt", 15),
        unaligned("encrypt_rejects_1_byte", "encrypt", 1),
    ]
    return {
        "family": FAMILY,
        "provenance": "NIST SP 800-38A F.2.5/F.2.6 and Python cryptography (AES-256-CBC, no padding)",
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
