#!/usr/bin/env python3
"""Generates vectors/data/crc32c.json: CRC-32C (Castagnoli, reflected 0x82F63B78).

Values typed in from the CRC-32C check value ("123456789" -> 0xE3069283, CRC RevEng
catalogue CRC-32/ISCSI) and RFC 3720 Appendix B.4 (32 zero bytes, 32 0xff bytes,
incrementing, decrementing, an iSCSI read PDU). RFC 3720 prints each CRC as the bytes
sent on the wire (little-endian); `value` here is the CRC as a number, in hex. Every value
is cross-checked by the bitwise Python computation below (Python has no CRC-32C built in).

Usage: python3 crc32c.py [--check]   (--check: fail if the data file is out of date)
"""
import json
import pathlib
import sys

FAMILY = "crc32c"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
RFC = "RFC 3720 Appendix B.4 (typed in; cross-checked bitwise)"


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# RFC 3720 B.4, the read PDU, typed in (48 bytes).
ISCSI_READ_PDU = bytes.fromhex(
    "01c00000" "00000000" "00000000" "00000000"
    "14000000" "00000400" "00000014" "00000018"
    "28000000" "00000000" "02000000" "00000000"
)

# (name, message, wire bytes as printed in the source, provenance)
CASES = [
    ("check_123456789", b"123456789", None, "CRC-32C check value (CRC RevEng catalogue CRC-32/ISCSI; typed in)"),
    ("rfc3720_32_zero_bytes", bytes(32), "aa36918a", RFC),
    ("rfc3720_32_ff_bytes", b"\xff" * 32, "43aba862", RFC),
    ("rfc3720_32_incrementing", bytes(range(32)), "4e79dd46", RFC),
    ("rfc3720_32_decrementing", bytes(range(31, -1, -1)), "5cdb3f11", RFC),
    ("rfc3720_iscsi_read_pdu", ISCSI_READ_PDU, "563a96d9", RFC),
]
CHECK_VALUE = 0xE3069283


def build():
    vectors = []
    for name, msg, wire, prov in CASES:
        value = crc32c_bitwise(msg)
        if wire is None:
            assert value == CHECK_VALUE, name
        else:
            assert value.to_bytes(4, "little") == bytes.fromhex(wire), name
        vectors.append({"name": name, "provenance": prov, "message": msg.hex(), "value": f"{value:08x}"})
    return {"family": FAMILY, "provenance": "CRC-32C check value and RFC 3720 B.4", "vectors": vectors}


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.name} is out of date; run {pathlib.Path(__file__).name}")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
