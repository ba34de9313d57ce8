#!/usr/bin/env python3
"""Generates vectors/data/packet_rules.json: packet acceptance before forwarding (c-mtproxy.md §4.3).

The rules of forward_mtproto_packet (mtproto/mtproto-proxy.c) and the RPC_PING quirk
(tcp_rpcs_default_execute, net/net-tcp-rpc-server.c), restated in Python with struct.
Each vector: a decoded client payload -> forward {unencrypted, auth_key_id} | drop {reason} |
rpc_ping {reply or null}.

Run: python3 vectors/gen/packet_rules.py > vectors/data/packet_rules.json
"""
import json
import random
import struct

PROV = "c-mtproxy.md §4.3 'Packet acceptance', forward_mtproto_packet and tcp_rpcs_default_execute; computed in vectors/gen/packet_rules.py"
RPC_PING, RPC_PONG = 0x5730A2DF, 0x8430EAA7
FUNCS = {"req_pq": 0x60469778, "req_pq_multi": 0xBE7E8EF1, "req_DH_params": 0xD712E4BE,
         "set_client_DH_params": 0xF5045F1F}

rng = random.Random(0x9AC)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def expect(p):
    """The verdict per the spec, independent of the Rust code."""
    if len(p) >= 4 and struct.unpack("<I", p[:4])[0] == RPC_PING:
        if len(p) == 12:
            return {"verdict": "rpc_ping", "reply": (struct.pack("<I", RPC_PONG) + p[4:12]).hex()}
        return {"verdict": "rpc_ping", "reply": None}
    if len(p) < 28:
        return {"verdict": "drop", "reason": "TooShort"}
    if len(p) % 4:
        return {"verdict": "drop", "reason": "NotAligned"}
    key = struct.unpack("<Q", p[:8])[0]
    if key:
        if len(p) < 56:
            return {"verdict": "drop", "reason": "ShortEncrypted"}
        return {"verdict": "forward", "unencrypted": False, "auth_key_id": str(key)}
    inner, func = struct.unpack("<iI", p[16:24])
    if not (20 <= inner <= len(p) - 20):
        return {"verdict": "drop", "reason": "BadInnerLength"}
    if func not in FUNCS.values():
        return {"verdict": "drop", "reason": "UnknownUnencryptedOp"}
    return {"verdict": "forward", "unencrypted": True, "auth_key_id": "0"}


vectors = []


def add(name, p, want):
    v = {"name": name, "provenance": PROV, "payload": p.hex()}
    v.update(expect(p))
    assert v["verdict"] == want or v.get("reason") == want, (name, v)
    vectors.append(v)


def unenc(total, inner, func, msg_id=None):
    body = bytes(8) + (msg_id if msg_id is not None else rbytes(8)) + struct.pack("<iI", inner, func)
    return body + rbytes(total - len(body))


def enc(total):
    key = rbytes(8)
    if key == bytes(8):
        key = b"\x01" + key[1:]
    return key + rbytes(total - 8)


for fname, f in FUNCS.items():
    add(f"unencrypted_{fname}", unenc(40, 20, f), "forward")
add("unencrypted_req_pq_multi_real_size", unenc(40, 20, FUNCS["req_pq_multi"]), "forward")
add("unencrypted_req_DH_params_big", unenc(340, 320, FUNCS["req_DH_params"]), "forward")
add("unencrypted_inner_len_max", unenc(64, 44, FUNCS["req_pq"]), "forward")
add("unencrypted_inner_len_too_big", unenc(64, 45, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_inner_len_19", unenc(64, 19, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_inner_len_negative", unenc(64, -1, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_inner_len_int_max", unenc(64, 0x7FFFFFFF, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_min_28_inner_8", unenc(28, 8, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_40_inner_21", unenc(40, 21, FUNCS["req_pq"]), "BadInnerLength")
add("unencrypted_unknown_function", unenc(40, 20, 0x12345678), "UnknownUnencryptedOp")
add("unencrypted_rpc_pong_function", unenc(40, 20, RPC_PONG), "UnknownUnencryptedOp")
add("unencrypted_msgs_ack_function", unenc(40, 20, 0x62D6B459), "UnknownUnencryptedOp")
add("unencrypted_not_aligned", unenc(42, 20, FUNCS["req_pq"]), "NotAligned")
add("encrypted_min_56", enc(56), "forward")
add("encrypted_big", enc(1024), "forward")
add("encrypted_auth_key_high_bit", b"\x00" * 7 + b"\x80" + rbytes(60), "forward")
add("encrypted_52_too_short", enc(52), "ShortEncrypted")
add("encrypted_28_too_short", enc(28), "ShortEncrypted")
add("encrypted_not_aligned", enc(57), "NotAligned")
add("empty", b"", "TooShort")
add("four_bytes", rbytes(4), "TooShort")
add("twenty_four_bytes", bytes(24), "TooShort")
add("twenty_seven_bytes", bytes(27), "TooShort")
add("all_zero_28", bytes(28), "BadInnerLength")
ping_id = rbytes(8)
add("rpc_ping_12_pong", struct.pack("<I", RPC_PING) + ping_id, "rpc_ping")
add("rpc_ping_12_pong_zero_id", struct.pack("<I", RPC_PING) + bytes(8), "rpc_ping")
add("rpc_ping_16_ignored", struct.pack("<I", RPC_PING) + rbytes(12), "rpc_ping")
add("rpc_ping_8_ignored", struct.pack("<I", RPC_PING) + rbytes(4), "rpc_ping")
add("rpc_ping_4_ignored", struct.pack("<I", RPC_PING), "rpc_ping")
add("rpc_ping_60_never_forwarded", struct.pack("<I", RPC_PING) + rbytes(56), "rpc_ping")
add("rpc_pong_12_not_special", struct.pack("<I", RPC_PONG) + ping_id, "TooShort")
add("rpc_ping_big_endian_not_special", struct.pack(">I", RPC_PING) + rbytes(8), "TooShort")

print(json.dumps({"family": "packet_rules", "provenance": PROV, "vectors": vectors}, indent=1))
