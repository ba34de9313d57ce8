#!/usr/bin/env python3
"""Generates vectors/data/crc32.json: CRC-32 (IEEE 802.3 / zlib, reflected 0xEDB88320).

The check value of "123456789" (0xCBF43926) is the catalogued one (the CRC RevEng
catalogue, CRC-32/ISO-HDLC). Every value, that one included, is cross-checked by two
independent Python computations: zlib.crc32 and a bitwise implementation below. `value` is the CRC as a number, in hex.

Usage: python3 crc32.py [--check]   (--check: fail if the data file is out of date)
"""
import json
import pathlib
import sys
import zlib

FAMILY = "crc32"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
CHECK = "CRC-32 check value (CRC RevEng catalogue CRC-32/ISO-HDLC; typed in)"
COMPUTED = "computed by Python zlib.crc32, cross-checked bitwise"


def crc32_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# (name, message, typed-in value or None, provenance)
CASES = [
    ("check_123456789", b"123456789", 0xCBF43926, CHECK),
    ("empty", b"", 0x00000000, "CRC of the empty message is 0 (init and final XOR cancel)"),
    ("single_a", b"a", None, COMPUTED),
    ("quick_brown_fox", b"The quick brown fox jumps over the lazy dog", 0x414FA339,
     "widely published CRC-32 of the pangram; " + COMPUTED),
    ("32_zero_bytes", bytes(32), None, COMPUTED),
    ("32_ff_bytes", b"\xff" * 32, None, COMPUTED),
    ("incrementing_0_to_255", bytes(range(256)), None, COMPUTED),
    # Three little-endian words, shaped like the start of a middle-end frame (len, seq, ...).
    ("me_frame_like_prefix", bytes.fromhex("10000000" "00000000" "01020304"), None, COMPUTED),
]


def build():
    vectors = []
    for name, msg, typed, prov in CASES:
        value = zlib.crc32(msg)
        assert value == crc32_bitwise(msg), name
        if typed is not None:
            assert value == typed, name
        vectors.append({"name": name, "provenance": prov, "message": msg.hex(), "value": f"{value:08x}"})
    return {"family": FAMILY, "provenance": "CRC-32 check value and zlib.crc32", "vectors": vectors}


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
