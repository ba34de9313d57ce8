#!/usr/bin/env python3
"""Generates vectors/data/session.json: a whole client session on the proxy's side
(c-mtproxy.md §4.2, §4.3, §5.7) — the wire bytes a client sends (64-byte obfuscated2 header,
then encrypted frames) and what the proxy must do with them: which packets it forwards to
the middle end with which RPC_PROXY_REQ flags, which it drops, which pings it answers
itself, and the exact wire bytes the client gets back for the middle end's answers and
quick acks.

Computed independently of the Rust code: hashlib.sha256 for the keys, the `cryptography`
package's AES-256-CTR for both streams, the framing and flag rules re-implemented here from
the reference. Deterministic (seeded random.Random). Answers are given for abridged and
intermediate only: padded intermediate adds random padding (its forwards are still
checked).

Run: python3 vectors/gen/session.py > vectors/data/session.json
"""
import hashlib
import json
import random
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TAGS = {"abridged": 0xEFEFEFEF, "intermediate": 0xEEEEEEEE, "padded_intermediate": 0xDDDDDDDD}
PROV = ("c-mtproxy.md §4.2-§4.3, §5.7 flags (mtproto/mtproto-proxy.c forward_mtproto_packet, "
        "net/net-tcp-rpc-ext-server.c); computed in vectors/gen/session.py (hashlib, cryptography AES-CTR)")
# RPC_PROXY_REQ flags (§5.7).
EXT, EXTMODE2, MEDIUM, COMPACT, QUICKACK, UNENCRYPTED = 0x1000, 0x20000, 0x20000000, 0x40000000, 0x80000000, 0x2
RPC_PING, RPC_PONG = 0x5730A2DF, 0x8430EAA7
KEY_EXCHANGE = (0x60469778, 0xBE7E8EF1, 0xD712E4BE, 0xF5045F1F)

rng = random.Random(0x5E55)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def good_random():
    while True:
        r = rbytes(64)
        if r[0] == 0xEF or r[4:8] == b"\0\0\0\0":
            continue
        if r[:4] in (b"HEAD", b"POST", b"GET ", b"OPTI", b"\xdd" * 4, b"\xee" * 4, b"\x16\x03\x01\x02"):
            continue
        return r


def stream(key, iv):
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()


def header(secret, transport, dc):
    """(wire header, client->proxy stream positioned after it, proxy->client stream)."""
    plain = bytearray(good_random())
    plain[56:60] = struct.pack("<I", TAGS[transport])
    plain[60:62] = struct.pack("<h", dc)
    plain = bytes(plain)
    up_key = hashlib.sha256(plain[8:40] + secret).digest()
    rev = plain[8:56][::-1]
    down_key = hashlib.sha256(rev[:32] + secret).digest()
    up = stream(up_key, plain[40:56])
    enc = up.update(plain)
    return plain[:56] + enc[56:], up, stream(down_key, rev[32:48])


def client_frame(transport, payload, quick, pad):
    n = len(payload)
    if transport == "abridged":
        w = n // 4
        head = bytes([w | (0x80 if quick else 0)]) if w < 0x7F else bytes([0x7F | (0x80 if quick else 0)]) + struct.pack("<I", w)[:3]
        return head + payload
    length = n + (len(pad) if transport == "padded_intermediate" else 0)
    body = payload + (pad if transport == "padded_intermediate" else b"")
    return struct.pack("<I", length | (0x80000000 if quick else 0)) + body


def server_frame(transport, payload):
    n = len(payload)
    if transport == "abridged":
        w = n // 4
        return (bytes([w]) if w < 0x7F else b"\x7f" + struct.pack("<I", w)[:3]) + payload
    return struct.pack("<I", n) + payload


def quick_ack(transport, confirm):
    return struct.pack(">I", confirm) if transport == "abridged" else struct.pack("<I", confirm)


def verdict(p):
    """What the proxy does with one client payload: ("forward", unencrypted) / ("pong", reply)
    / ("ping_ignored",) / ("drop", reason)."""
    n = len(p)
    if n >= 4 and struct.unpack("<I", p[:4])[0] == RPC_PING:
        return ("pong", struct.pack("<I", RPC_PONG) + p[4:12]) if n == 12 else ("ping_ignored",)
    if n < 28:
        return ("drop", "TooShort")
    if n % 4:
        return ("drop", "NotAligned")
    auth = struct.unpack("<Q", p[:8])[0]
    if auth != 0:
        return ("forward", False) if n >= 56 else ("drop", "ShortEncrypted")
    inner = struct.unpack("<i", p[16:20])[0]
    if not (20 <= inner <= n - 20):
        return ("drop", "BadInnerLength")
    if struct.unpack("<I", p[20:24])[0] not in KEY_EXCHANGE:
        return ("drop", "UnknownUnencryptedOp")
    return ("forward", True)


def flags_of(transport, unencrypted, quick):
    f = EXT | EXTMODE2 | (COMPACT if transport == "abridged" else MEDIUM)
    if unencrypted:
        f |= UNENCRYPTED
    if quick:
        f |= QUICKACK
    return f


def encrypted_msg(n):
    p = bytearray(rbytes(n))
    p[0] |= 1
    return bytes(p)


def unencrypted_req(n=40, op=0xBE7E8EF1, inner=None):
    p = bytearray(n)
    p[8:16] = rbytes(8)
    p[16:20] = struct.pack("<i", inner if inner is not None else n - 20)
    p[20:24] = struct.pack("<I", op)
    p[24:] = rbytes(n - 24)
    return bytes(p)


vectors = []


def session(name, transport, packets, answers=(), dc=2, secrets_n=2, which=1):
    """packets: [(payload, quick)]; answers: [("answer", payload) | ("quick_ack", confirm)]."""
    secrets = [rbytes(16) for _ in range(secrets_n)]
    wire, up, down = header(secrets[which], transport, dc)
    forwards, drops, to_client_plain = [], [], b""
    for payload, quick in packets:
        pad = rbytes(rng.randrange(0, 4)) if transport == "padded_intermediate" else b""
        wire += up.update(client_frame(transport, payload, quick, pad))
        v = verdict(payload)
        if v[0] == "forward":
            forwards.append({"payload": payload.hex(), "flags": flags_of(transport, v[1], quick)})
        elif v[0] == "drop":
            drops.append(v[1])
        elif v[0] == "pong":
            to_client_plain += server_frame(transport, v[1])
    vec = {
        "name": name,
        "provenance": PROV,
        "transport": transport,
        "secrets": [s.hex() for s in secrets],
        "input": wire.hex(),
        "dc": dc,
        "secret_index": which,
        "forwards": forwards,
        "drops": drops,
    }
    if transport != "padded_intermediate":
        answers_out = []
        for kind, value in answers:
            if kind == "answer":
                to_client_plain += server_frame(transport, value)
                answers_out.append({"answer": value.hex()})
            else:
                to_client_plain += quick_ack(transport, value)
                answers_out.append({"quick_ack": value})
        vec["answers"] = answers_out
        vec["to_client"] = down.update(to_client_plain).hex()
    vectors.append(vec)


for t in TAGS:
    a, b = encrypted_msg(64), encrypted_msg(120)
    session(f"{t}_encrypted_and_key_exchange", t,
            [(a, False), (unencrypted_req(), True), (b, True)],
            [("quick_ack", 0x80000001), ("answer", encrypted_msg(72)), ("answer", encrypted_msg(36))])
    session(f"{t}_dropped_packets_keep_the_session", t,
            [(encrypted_msg(24), False), (encrypted_msg(52), False), (unencrypted_req(op=0x12345678), False),
             (unencrypted_req(inner=500), False), (encrypted_msg(56), False)],
            [("answer", encrypted_msg(56))], dc=-3)
    ping = struct.pack("<I", RPC_PING) + rbytes(8)
    session(f"{t}_ping_answered_locally", t,
            [(ping, False), (struct.pack("<I", RPC_PING) + rbytes(12), False), (encrypted_msg(60), True)],
            [("answer", encrypted_msg(500))], dc=4, secrets_n=1, which=0)
    # A long frame: abridged switches to the 4-byte length form.
    session(f"{t}_long_frame", t, [(encrypted_msg(4 * 0x90), False)],
            [("answer", encrypted_msg(4 * 0x200))], dc=1)

json.dump({"family": "session", "provenance": PROV, "vectors": vectors}, __import__("sys").stdout, indent=1)
print()
