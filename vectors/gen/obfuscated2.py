#!/usr/bin/env python3
"""Generates vectors/data/obfuscated2.json: the obfuscated2 64-byte header (c-mtproxy.md §4.2).

Computed independently of the Rust code: hashlib.sha256 for key derivation and the
`cryptography` package's AES-256-CTR (128-bit big-endian counter, as OpenSSL's
EVP_aes_256_ctr) for the streams. Deterministic (seeded random.Random).

Server vectors: wire header + secrets + policy -> transport, dc, secret index, both keys/ivs
and the first keystream bytes of each stream (client->proxy at offset 64, proxy->client at 0),
or "none" when no secret matches.
Client vectors: random64 + secret + transport + dc -> wire header and keystreams, or the
broken forbidden-first-bytes rule.

Run: python3 vectors/gen/obfuscated2.py > vectors/data/obfuscated2.json
"""
import hashlib
import json
import random
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TAGS = {"abridged": 0xEFEFEFEF, "intermediate": 0xEEEEEEEE, "padded_intermediate": 0xDDDDDDDD}
PROV = "c-mtproxy.md §4.2 and net/net-tcp-rpc-ext-server.c key derivation; computed in vectors/gen/obfuscated2.py (hashlib, cryptography AES-CTR)"
KS = 32  # keystream bytes recorded per stream

rng = random.Random(0x0B2)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def ctr_keystream(key, iv, skip, n):
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(b"\0" * (skip + n))[skip:]


def keys(plain, secret):
    """(up_key, up_iv, down_key, down_iv) from header bytes 8..56 (identical in plain/wire)."""
    up_seed = plain[8:40]
    up_iv = plain[40:56]
    rev = plain[8:56][::-1]
    down_seed, down_iv = rev[:32], rev[32:48]
    if secret is not None:
        up_key = hashlib.sha256(up_seed + secret).digest()
        down_key = hashlib.sha256(down_seed + secret).digest()
    else:
        up_key, down_key = up_seed, down_seed
    return up_key, up_iv, down_key, down_iv


def violates(random64):
    if random64[0] == 0xEF:
        return "AbridgedFirstByte"
    if random64[:4] in (b"HEAD", b"POST", b"GET ", b"OPTI", b"\xdd" * 4, b"\xee" * 4, b"\x16\x03\x01\x02"):
        return "ReservedFirstWord"
    if random64[4:8] == b"\0\0\0\0":
        return "ZeroSecondWord"
    return None


def good_random():
    while True:
        r = rbytes(64)
        if violates(r) is None:
            return r


def build(random64, secret, transport, dc):
    """A client's wire header: plain 0..56, encrypted 56..64."""
    plain = bytearray(random64)
    plain[56:60] = struct.pack("<I", TAGS[transport])
    plain[60:62] = struct.pack("<h", dc)
    plain = bytes(plain)
    up_key, up_iv, _, _ = keys(plain, secret)
    enc = Cipher(algorithms.AES(up_key), modes.CTR(up_iv)).encryptor().update(plain)
    return plain[:56] + enc[56:]


def server_expect(wire, secrets, padded_only):
    """What the proxy does with `wire`, computed per the spec (tries secrets in order)."""
    tries = [(i, s) for i, s in enumerate(secrets)] if secrets else [(None, None)]
    for idx, s in tries:
        up_key, up_iv, down_key, down_iv = keys(wire, s)
        plain = Cipher(algorithms.AES(up_key), modes.CTR(up_iv)).encryptor().update(wire)
        tag = struct.unpack("<I", plain[56:60])[0]
        names = {v: k for k, v in TAGS.items()}
        if tag not in names or (padded_only and tag != 0xDDDDDDDD):
            continue
        return {
            "expect": "match",
            "transport": names[tag],
            "dc": struct.unpack("<h", plain[60:62])[0],
            "secret_index": idx,
            "decrypt_key": up_key.hex(),
            "decrypt_iv": up_iv.hex(),
            "encrypt_key": down_key.hex(),
            "encrypt_iv": down_iv.hex(),
            "decrypt_keystream_at_64": ctr_keystream(up_key, up_iv, 64, KS).hex(),
            "encrypt_keystream_at_0": ctr_keystream(down_key, down_iv, 0, KS).hex(),
        }
    return {"expect": "none"}


S = [rbytes(16) for _ in range(4)]
vectors = []


def server(name, wire, secrets, padded_only=False, want=None, prov=PROV):
    v = {"name": name, "provenance": prov, "role": "server", "header": wire.hex(),
         "secrets": [s.hex() for s in secrets], "padded_only": padded_only}
    v.update(server_expect(wire, secrets, padded_only))
    assert want is None or v["expect"] == want, name
    vectors.append(v)


# One secret, each transport, several dcs.
for t in TAGS:
    for dc in (1, -2, 5, 203):
        server(f"one_secret_{t}_dc{dc}", build(good_random(), S[0], t, dc), [S[0]], want="match")
# Several secrets: the 1st, 2nd and 3rd matches.
for which in range(3):
    t = list(TAGS)[which]
    server(f"three_secrets_match_{which + 1}_{t}", build(good_random(), S[which], t, 2), S[:3], want="match")
server("four_secrets_match_4th_dd", build(good_random(), S[3], "padded_intermediate", -5), S[:4], want="match")
# Secretless (no -S): raw seeds as keys.
for t in TAGS:
    server(f"secretless_{t}", build(good_random(), None, t, 3), [], want="match")
server("secretless_dc_minus_32768", build(good_random(), None, "abridged", -32768), [], want="match")
server("secretless_dc_32767", build(good_random(), None, "intermediate", 32767), [], want="match")
# Wrong secret: silence (global skip mode).
server("wrong_secret", build(good_random(), S[0], "intermediate", 2), [S[1]], want="none")
server("wrong_secret_of_three", build(good_random(), S[3], "abridged", 2), S[:3], want="none")
server("secret_header_to_secretless_proxy", build(good_random(), S[0], "intermediate", 2), [], want="none")
server("secretless_header_to_secret_proxy", build(good_random(), None, "intermediate", 2), [S[0]], want="none")
server("random_garbage", rbytes(64), S[:2], want="none")
server("all_zero_header_secretless", bytes(64), [], want="none")
# A valid-looking plaintext tag sent unencrypted is not a match (the tag is only valid after decryption).
plain_tag = bytearray(good_random())
plain_tag[56:60] = struct.pack("<I", 0xEEEEEEEE)
server("plaintext_tag_not_accepted", bytes(plain_tag), [S[0]], want="none")
# -R (random padding only, §12.2): only 0xdddddddd is accepted.
PROV_R = PROV + "; -R semantics from c-mtproxy.md §12.2 (ext_rand_pad_only)"
server("padded_only_rejects_abridged", build(good_random(), S[0], "abridged", 2), [S[0]], True, "none", PROV_R)
server("padded_only_rejects_intermediate", build(good_random(), S[0], "intermediate", 2), [S[0]], True, "none", PROV_R)
server("padded_only_accepts_padded", build(good_random(), S[0], "padded_intermediate", 2), [S[0]], True, "match", PROV_R)
server("padded_only_accepts_padded_2nd_secret", build(good_random(), S[1], "padded_intermediate", -1), S[:3], True, "match", PROV_R)
server("padded_only_secretless_rejects_intermediate", build(good_random(), None, "intermediate", 2), [], True, "none", PROV_R)
server("padded_only_secretless_accepts_padded", build(good_random(), None, "padded_intermediate", 4), [], True, "match", PROV_R)

# Client role: deterministic header construction.
PROV_C = "c-mtproxy.md §4.2 (client rules and layout); computed in vectors/gen/obfuscated2.py"


def client(name, random64, secret, transport, dc):
    v = {"name": name, "provenance": PROV_C, "role": "client", "random": random64.hex(),
         "secret": secret.hex() if secret else None, "transport": transport, "dc": dc}
    bad = violates(random64)
    if bad:
        v["expect"] = "error"
        v["error"] = bad
    else:
        wire = build(random64, secret, transport, dc)
        up_key, up_iv, down_key, down_iv = keys(wire, secret)
        v["expect"] = "ok"
        v["header"] = wire.hex()
        v["encrypt_keystream_at_64"] = ctr_keystream(up_key, up_iv, 64, KS).hex()
        v["decrypt_keystream_at_0"] = ctr_keystream(down_key, down_iv, 0, KS).hex()
    vectors.append(v)


for t in TAGS:
    client(f"client_{t}_secret", good_random(), S[0], t, 2)
    client(f"client_{t}_secretless", good_random(), None, t, -4)


def with_prefix(prefix):
    r = bytearray(good_random())
    r[: len(prefix)] = prefix
    return bytes(r)


client("client_rule_first_byte_ef", with_prefix(b"\xef\x01\x02\x03"), S[0], "abridged", 1)
for word, label in [(b"HEAD", "head"), (b"POST", "post"), (b"GET ", "get"), (b"OPTI", "opti"),
                    (b"\xdd" * 4, "dddddddd"), (b"\xee" * 4, "eeeeeeee"), (b"\x16\x03\x01\x02", "tls")]:
    client(f"client_rule_first_word_{label}", with_prefix(word), S[0], "intermediate", 1)
client("client_rule_second_word_zero", with_prefix(b"\x01\x02\x03\x04\0\0\0\0"), None, "intermediate", 1)
client("client_rule_ok_second_word_nonzero", with_prefix(b"\x01\x02\x03\x04\0\0\0\x01"), None, "intermediate", 1)
client("client_rule_ok_ef_not_first", with_prefix(b"\x00\xef\xef\xef"), None, "abridged", 1)

print(json.dumps({"family": "obfuscated2", "provenance": PROV, "vectors": vectors}, indent=1))
