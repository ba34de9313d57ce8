#!/usr/bin/env python3
"""Generates vectors/data/rpc_frames.json: the ME link's RPC framing (c-mtproxy.md §5.2).

Frame = [total_len i32 LE][seq i32 LE][payload][crc u32 LE], total_len = 12 + len(payload),
%4 == 0 and >= 16; the word 04 00 00 00 is padding (skipped, no seq); CRC32 is zlib.crc32,
CRC32C is the bitwise Castagnoli CRC written below (reflected poly 0x82F63B78). Rejects
follow net-tcp-rpc-client.c tcp_rpcc_parse_execute: len <= 0 or %4 (BadLength), len < 16
(TooShort), crc mismatch (CrcMismatch), seq mismatch (SeqMismatch), checked in that order.

cbc_stream vectors: several flushes of frames, each flush padded to 16 bytes with padding
words and encrypted as one continuous AES-256-CBC chain (no padding scheme) by the Python
`cryptography` package, as the link's sender does (net-tcp-rpc-common.c tcp_rpc_flush).

Usage: python3 rpc_frames.py [--check]
"""
import json
import pathlib
import struct
import sys
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FAMILY = "rpc_frames"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"
PAD = b"\x04\x00\x00\x00"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the published check value


def crc(mode, data):
    return zlib.crc32(data) & 0xFFFFFFFF if mode == "crc32" else crc32c(data)


def frame(seq, payload, mode, total=None, fix_crc=None):
    total = len(payload) + 12 if total is None else total
    body = struct.pack("<ii", total, seq) + payload
    c = crc(mode, body) if fix_crc is None else fix_crc
    return body + struct.pack("<I", c)


def pattern(n, seed):
    return bytes((i * 89 + seed * 13 + 7) & 0xFF for i in range(n))


def main():
    V = []

    def add(**kw):
        kw.setdefault("provenance", "struct/zlib/crc32c per §5.2")
        V.append(kw)

    # Encodings.
    nonce = bytes.fromhex("aa87cb7a") + bytes.fromhex("e0bf2ae9") + struct.pack("<i", 1) + bytes.fromhex("560e076b") + pattern(16, 1)
    add(name="encode-nonce-frame", kind="encode", crc="crc32", seq=-2, payload=nonce.hex(),
        wire=frame(-2, nonce, "crc32").hex(),
        provenance="layout of the observed proxy nonce (§5.3: 2c000000 feffffff aa87cb7a e0bf2ae9 01000000 560e076b ...), crc by zlib")
    for i, (seq, n, mode) in enumerate([(-1, 32, "crc32"), (0, 4, "crc32"), (0, 4, "crc32c"), (1, 12, "crc32c"),
                                         (7, 100, "crc32"), (1000, 256, "crc32c"), (2147483647, 8, "crc32"),
                                         (-2, 32, "crc32c")]):
        p = pattern(n, i + 10)
        add(name=f"encode-{mode}-seq{seq}-len{n}", kind="encode", crc=mode, seq=seq, payload=p.hex(),
            wire=frame(seq, p, mode).hex())

    # Decode streams.
    def dec(name, mode, first_seq, wire, frames, remaining=0, expect_error=None, provenance=None):
        v = dict(name=name, kind="decode", crc=mode, first_seq=first_seq, wire=wire.hex(),
                 frames=[{"seq": s, "payload": p.hex()} for s, p in frames], remaining=remaining)
        if expect_error:
            v["expect_error"] = expect_error
        if provenance:
            v["provenance"] = provenance
        add(**v)

    a, b, c = pattern(32, 1), pattern(8, 2), pattern(60, 3)
    dec("handshake-sequence", "crc32", -2, frame(-2, a, "crc32") + frame(-1, a, "crc32"), [(-2, a), (-1, a)])
    dec("padding-words-between", "crc32", 0, PAD + frame(0, b, "crc32") + PAD + PAD + PAD + frame(1, c, "crc32") + PAD,
        [(0, b), (1, c)])
    dec("crc32c-stream", "crc32c", 5, frame(5, b, "crc32c") + frame(6, c, "crc32c") + frame(7, a, "crc32c"),
        [(5, b), (6, c), (7, a)])
    dec("only-padding", "crc32", 0, PAD * 5, [])
    dec("need-more-partial-frame", "crc32", 0, frame(0, b, "crc32") + frame(1, c, "crc32")[:30], [(0, b)], remaining=30)
    dec("need-more-partial-length", "crc32", 0, frame(0, b, "crc32") + b"\x10\x00", [(0, b)], remaining=2)
    dec("min-frame", "crc32", 0, frame(0, b"\x01\x02\x03\x04", "crc32"), [(0, b"\x01\x02\x03\x04")])

    # Rejects.
    dec("reject-len-zero", "crc32", 0, b"\0" * 16, [], expect_error="BadLength")
    dec("reject-len-negative", "crc32", 0, struct.pack("<i", -4) + b"\0" * 12, [], expect_error="BadLength")
    dec("reject-len-unaligned", "crc32", 0, struct.pack("<i", 18) + b"\0" * 14, [], expect_error="BadLength")
    dec("reject-len-8", "crc32", 0, struct.pack("<i", 8) + b"\0" * 12, [], expect_error="TooShort")
    dec("reject-len-12", "crc32", 0, struct.pack("<i", 12) + b"\0" * 12, [], expect_error="TooShort")
    dec("reject-after-good-frame", "crc32", 0, frame(0, b, "crc32") + struct.pack("<i", 2) + b"\0" * 4,
        [(0, b)], expect_error="BadLength")
    bad = frame(0, b, "crc32")
    dec("reject-crc-flipped", "crc32", 0, bad[:-1] + bytes([bad[-1] ^ 1]), [], expect_error="CrcMismatch")
    dec("reject-payload-flipped", "crc32", 0, bad[:9] + bytes([bad[9] ^ 0x80]) + bad[10:], [], expect_error="CrcMismatch")
    dec("reject-crc32c-frame-read-as-crc32", "crc32", 0, frame(0, b, "crc32c"), [], expect_error="CrcMismatch")
    dec("reject-crc32-frame-read-as-crc32c", "crc32c", 0, frame(0, b, "crc32"), [], expect_error="CrcMismatch")
    dec("reject-seq-skipped", "crc32", 0, frame(0, b, "crc32") + frame(2, b, "crc32"), [(0, b)], expect_error="SeqMismatch")
    dec("reject-seq-repeated", "crc32c", 3, frame(3, b, "crc32c") + frame(3, b, "crc32c"), [(3, b)], expect_error="SeqMismatch")
    dec("reject-nonce-seq-expected", "crc32", -2, frame(0, a, "crc32"), [], expect_error="SeqMismatch")
    dec("reject-handshake-before-nonce", "crc32", -2, frame(-1, a, "crc32"), [], expect_error="SeqMismatch")

    # CBC streams.
    def cbc_stream(name, mode, first_seq, key, iv, flushes):
        plain = b""
        seq = first_seq
        jf = []
        for fl in flushes:
            chunk = b""
            jfl = []
            for p in fl:
                chunk += frame(seq, p, mode)
                jfl.append({"seq": seq, "payload": p.hex()})
                seq += 1
            while len(chunk) % 16:
                chunk += PAD
            plain += chunk
            jf.append(jfl)
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ct = enc.update(plain) + enc.finalize()
        add(name=name, kind="cbc_stream", crc=mode, first_seq=first_seq, key=key.hex(), iv=iv.hex(),
            flushes=jf, plaintext=plain.hex(), ciphertext=ct.hex(),
            provenance="frames by struct/zlib/crc32c, each flush padded with 04000000 words, one AES-256-CBC chain by `cryptography`")

    cbc_stream("cbc-handshake-then-crc32", "crc32", -1, pattern(32, 40), pattern(16, 41),
               [[pattern(32, 1)], [pattern(4, 2), pattern(12, 3)], [pattern(100, 4)], [pattern(16, 5)]])
    cbc_stream("cbc-crc32c-many-small", "crc32c", 0, pattern(32, 50), pattern(16, 51),
               [[pattern(4, i) for i in range(5)], [pattern(8, 9)], [pattern(12, 10), pattern(20, 11)]])
    cbc_stream("cbc-exact-blocks", "crc32", 0, pattern(32, 60), pattern(16, 61),
               [[pattern(20, 1)], [pattern(52, 2)], [pattern(4, 3), pattern(8, 4)]])

    doc = {
        "family": FAMILY,
        "provenance": "Python struct + zlib.crc32 + a bitwise CRC32C (check value 0xE3069283) over the §5.2 "
        "layout; CBC streams encrypted with the `cryptography` package",
        "vectors": V,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else "rpc_frames.json is out of date")
    OUT.write_text(text)


if __name__ == "__main__":
    main()
