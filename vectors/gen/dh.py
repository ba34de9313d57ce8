#!/usr/bin/env python3
"""Generates vectors/data/dh.json: the DH parameters of net/net-crypto-dh.c.

The prime is transcribed from the C source (rpc_dh_prime_bin); every expected value is
computed here with hashlib and pow. Run: python3 vectors/gen/dh.py > vectors/data/dh.json
"""
import hashlib
import json
import random
import struct

P_HEX = ("8952131b1e3a69ba5f85cf8bd266c12b13831613bd2a4ef835a4d53f9dbb42482dbd462b31d86c816c5977520f117073"
         "9ed2ddd6d81b9eb65faaac148753c9e4f072dc11a492730683fa0067826b18c51d7ecba52b826075c0b955e5acafdd74"
         "c3795fd9520b480f3be3ba0665338a498ca5daf101760509a38c49e300746408774bb3ed26181a6455766ae9497bb9c3"
         "a3ad5cbaf76b73845fbb96bb6d0f684f95d2d39ccbb4a904fab1de4349ce1c2087b6c951ed99f952e34fd1a3fd148335"
         "75414729a38be868a4f9ec623a5d24621aba01b255c7e8385d16ac93b02d2a540a7642982d22ada3ccde5c8d266faa25"
         "dd2de9f6d49104162f685c45fe34ddab")
PB = bytes.fromhex(P_HEX)
P = int(P_HEX, 16)
assert len(PB) == 256
R = random.Random(5)


def rb(n):
    return bytes(R.getrandbits(8) for _ in range(n))


def b256(n):
    return n.to_bytes(256, "big")


def good(v):
    return any(v[:8]) and v[:8] < PB[:8]


vectors = []
h = hashlib.sha1(struct.pack("<iI", 3, 0x000100FE) + PB).digest()
vectors.append(dict(name="params_hash", kind="params_hash",
                    provenance="SHA1(LE32(3) ‖ fe 00 01 00 ‖ p) in Python; C asserts RPC_PARAM_HASH 0x00620b93",
                    prime=P_HEX, hashed=(struct.pack("<iI", 3, 0x000100FE) + PB).hex(),
                    expected=struct.unpack("<I", h[:4])[0]))
assert vectors[0]["expected"] == 0x00620B93

POW = "Python pow(base, exp, p) over the C prime"
for i, (base, exp) in enumerate([(b"\x03", rb(256)), (b"\x03", b"\x01"), (b"\x03", b"\x00"), (b"\x03", b"\x02"),
                                 (b"\x03", PB), (rb(256), rb(256)), (rb(256), rb(32)), (b"\x02", rb(256)),
                                 (PB, b"\x05"), (b"\x03", (P - 1).to_bytes(256, "big")),
                                 (rb(256), rb(256)), (rb(255), rb(200))]):
    vectors.append(dict(name=f"mod_exp_{i}", kind="mod_exp", provenance=POW, base=base.hex(), exp=exp.hex(),
                        expected=b256(pow(int.from_bytes(base, "big"), int.from_bytes(exp, "big"), P)).hex()))

GOOD = "C's is_good_rpc_dh_bin rule (first 8 bytes nonzero and below p's first 8) in Python"
cases = [("zero", bytes(256)), ("one_low", bytes(255) + b"\x01"), ("head_one", bytes(7) + b"\x01" + rb(248)),
         ("prime_itself", PB), ("prime_head_then_zero", PB[:8] + bytes(248)),
         ("just_below_prime_head", (int.from_bytes(PB[:8], "big") - 1).to_bytes(8, "big") + b"\xff" * 248),
         ("all_ff", b"\xff" * 256), ("random_below", b256(R.randrange(P // 2, P - 2 ** 2000))),
         ("g_pow_random", b256(pow(3, int.from_bytes(rb(256), "big"), P)))]
for name, v in cases:
    vectors.append(dict(name=f"is_good_{name}", kind="is_good", provenance=GOOD, value=v.hex(), expected=good(v)))

SHARED = "g_ab = pow(g_b, a, p) in Python after the is_good check (C's dh_third_round)"
for i in range(6):
    a = rb(256)
    while True:
        g_b = b256(pow(3, int.from_bytes(rb(256), "big"), P))
        if good(g_b):
            break
    vectors.append(dict(name=f"shared_{i}", kind="shared", provenance=SHARED, g_b=g_b.hex(), a=a.hex(),
                        expect="ok", expected=b256(pow(int.from_bytes(g_b, "big"), int.from_bytes(a, "big"), P)).hex()))
for name, g_b in [("zero_head", bytes(8) + rb(248)), ("prime", PB), ("all_ff", b"\xff" * 256)]:
    vectors.append(dict(name=f"shared_reject_{name}", kind="shared", provenance=SHARED, g_b=g_b.hex(),
                        a=rb(256).hex(), expect="BadPeerValue"))

print(json.dumps(dict(family="dh", provenance="net/net-crypto-dh.c prime and rules; values computed in Python "
                      "(vectors/gen/dh.py: hashlib, pow)", vectors=vectors), indent=1))
