#!/usr/bin/env python3
"""Generates vectors/data/fake_tls_client_hello.json.

Hellos are built here (Chrome-like layout of C's probe request, and a long TDLib-1.8.69-like
one with an X25519MLKEM768 key share) and HMAC'd with Python's hmac/hashlib. The expected
outcome comes from a Python model of C's checks (with one deliberate divergence: the HMAC is
checked before the replay cache) (net/net-tcp-rpc-ext-server.c, GPS v3.0.10,
the order of c-mtproxy.md §12.1), written from the spec, not from the Rust code.
Run: python3 vectors/gen/fake_tls_client_hello.py > vectors/data/fake_tls_client_hello.json
"""
import hashlib
import hmac
import json
import random
import struct

R = random.Random(20240611)


def rb(n):
    return bytes(R.getrandbits(8) for _ in range(n))


def grease():
    return (R.getrandbits(4) << 4) | 0x0A


SUITES = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a")


def build(secret, sni, ts, target_len=517, suites=None, grease_first=True, long_share=False,
          session_id_len=32, sni_ext=None):
    """A ClientHello record with client_random = HMAC(secret, record with zero random) ^ ts."""
    g = [grease() for _ in range(7)]
    if suites is None:
        suites = SUITES
    cs = (bytes([g[0], g[0]]) if grease_first else b"") + suites
    sid = rb(session_id_len)
    body = b"\x03\x03" + b"\x00" * 32 + bytes([len(sid)]) + sid
    body += struct.pack(">H", len(cs)) + cs + b"\x01\x00"
    ext = bytes([g[2], g[2]]) + b"\x00\x00"
    if sni_ext is None:
        name = sni.encode()
        sni_ext = b"\x00\x00" + struct.pack(">HHBH", len(name) + 5, len(name) + 3, 0, len(name)) + name
    ext += sni_ext
    ext += bytes.fromhex("00170000ff01000100000a000a0008") + bytes([g[4], g[4]])
    ext += bytes.fromhex("001d00170018000b000201000023000000100"
                         "00e000c02683208687474702f312e31000500050100000000000d0014001204030804"
                         "040105030805050108060601020100120000")
    shares = bytes([g[4], g[4]]) + b"\x00\x01\x00"
    if long_share:
        shares += b"\x11\xec\x04\xc0" + rb(1216)
    shares += b"\x00\x1d\x00\x20" + rb(32)
    ext += b"\x00\x33" + struct.pack(">HH", len(shares) + 2, len(shares)) + shares
    ext += bytes.fromhex("002d00020101002b000b0a") + bytes([g[6], g[6]])
    ext += bytes.fromhex("0304030303020301001b0003020002") + bytes([g[3], g[3]]) + b"\x00\x01\x00"
    # Padding extension up to the target record length.
    fixed = 5 + 4 + len(body) + 2 + len(ext) + 4
    pad = target_len - fixed
    assert pad >= 0, (target_len, fixed)
    ext += b"\x00\x15" + struct.pack(">H", pad) + b"\x00" * pad
    body += struct.pack(">H", len(ext)) + ext
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    rec = b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs
    assert len(rec) == target_len
    h = hmac.new(secret, rec, hashlib.sha256).digest()
    rnd = h[:28] + bytes(a ^ b for a, b in zip(h[28:], struct.pack("<i", ts)))
    return rec[:11] + rnd + rec[43:]


def be16(b, p):
    if p + 2 > len(b):
        return None
    return b[p] << 8 | b[p + 1]


def sni_index(buf, domains):
    n = len(buf)
    pos = 76
    cs = be16(buf, pos)
    if cs is None:
        return None
    pos += 2
    if pos + cs + 4 > n:
        return None
    pos += cs + 4
    while True:
        if pos + 4 > n:
            return None
        eid, elen = be16(buf, pos), be16(buf, pos + 2)
        pos += 4
        if pos + elen > n:
            return None
        if eid == 0:
            if pos + 5 > n:
                return None
            if be16(buf, pos) != elen - 2 or buf[pos + 2] != 0 or be16(buf, pos + 3) != elen - 5:
                return None
            name = buf[pos + 5:pos + elen]
            if 0 in name:
                return None
            for i, d in enumerate(domains):
                if d.encode() == name:
                    return i
            return None
        pos += elen


def model(rec, extra, domains, secrets, now, cache):
    """C's checks; cache is a list of [key16, time] oldest first (mutated)."""
    if rec[:3] != b"\x16\x03\x01" or len(rec) < 5 or 5 + be16(rec, 3) != len(rec):
        return ("Malformed", 0)
    d = sni_index(rec[:4096], domains)
    if d is None:
        return ("UnknownSni", 0)
    if extra > 0:
        return ("TooMuchData", d)
    if len(rec) > 4096:
        return ("TooBig", d)
    rnd = rec[11:43]
    # Divergence from C (parity/divergences.json fake-tls-hmac-before-replay-cache): the HMAC
    # is checked before the replay cache, so a hello without a secret never fills it. C
    # looks the random up (and caches it) first.
    zeroed = rec[:11] + b"\x00" * 32 + rec[43:]
    for si, s in enumerate(secrets):
        h = hmac.new(s, zeroed, hashlib.sha256).digest()
        if h[:28] == rnd[:28]:
            break
    else:
        return ("BadHmac", d)
    if any(k == rnd[:16] for k, _ in cache):
        return ("Replay", d)
    cache.append([rnd[:16], now])
    while cache and cache[0][1] <= now - 2 * 86400:
        cache.pop(0)
    ts = struct.unpack("<i", bytes(a ^ b for a, b in zip(h[28:], rnd[28:])))[0]
    if ts > now + 3:
        return ("FutureTimestamp", d)
    if not (cache and ts > cache[0][1] + 3) and not ts > now - 600:
        return ("StaleTimestamp", d)
    pos = 76
    cl = be16(rec, pos)
    pos += 2
    if pos + cl > len(rec):
        return ("BadCipherSuite", d)
    while cl >= 2 and rec[pos] & 15 == 10 and rec[pos + 1] & 15 == 10:
        cl -= 2
        pos += 2
    if cl <= 1 or rec[pos] != 0x13 or not 1 <= rec[pos + 1] <= 3:
        return ("BadCipherSuite", d)
    return ("accept", dict(secret_index=si, domain=d, cipher_suite=rec[pos + 1], timestamp=ts,
                           session_id=rec[44:76].hex(), client_random=rnd.hex()))


DOMAINS = ["default.example", "www.google.com", "cdn.example.org"]
S = [bytes.fromhex(x) for x in ["0123456789abcdef0123456789abcdef",
                                "dd00112233445566778899aabbccddee",
                                "ffeeddccbbaa99887766554433221100"]]
vectors = []
MODEL = "expected outcome from the Python model of C's checks (§12.1 order); hello and HMAC built in Python"


def add(name, rec, now, secrets=S, domains=DOMAINS, extra=0, cache=None, provenance=MODEL):
    cache = [[bytes.fromhex(k), t] for k, t in (cache or [])]
    seed = [[k.hex(), t] for k, t in cache]
    outcome = model(rec, extra, domains, secrets, now, cache)
    v = dict(name=name, provenance=provenance, kind="validate", record=rec.hex(), extra=extra,
             domains=domains, secrets=[s.hex() for s in secrets], now=now,
             cache=[{"key": k, "time": t} for k, t in seed])
    if outcome[0] == "accept":
        v["expect"] = "accept"
        v.update(outcome[1])
    else:
        v["expect"] = outcome[0]
        v["domain"] = outcome[1]
    vectors.append(v)
    return outcome


def want(outcome, cls):
    assert outcome[0] == cls, outcome


NOWS = [1_500_000_000, 1_750_000_000, 2_000_000_000]
# Accepted, Chrome shape.
for i, now in enumerate(NOWS):
    for si in range(3):
        want(add(f"accept_chrome_now{i}_secret{si}", build(S[si], DOMAINS[(i + si) % 3], now), now), "accept")
for off in [-599, -590, -1, 2, 3]:
    want(add(f"accept_chrome_ts_offset_{off}", build(S[0], "www.google.com", NOWS[1] + off), NOWS[1],
             provenance=MODEL + "; window edges as measured on GPS v3.0.10 (§12.1: now-590 and now+2 accepted)"), "accept")
# Accepted, long TDLib shape (L = 1752).
for i, now in enumerate(NOWS):
    want(add(f"accept_long_tdlib_now{i}", build(S[i], "www.google.com", now, target_len=1757, long_share=True), now,
             provenance=MODEL + "; TDLib 1.8.69 length 1752 accepted on GPS (§12.1)"), "accept")
# Boundary lengths.
want(add("accept_len_512", build(S[1], "cdn.example.org", NOWS[0], target_len=517), NOWS[0]), "accept")
want(add("accept_len_4091", build(S[1], "cdn.example.org", NOWS[0], target_len=4096), NOWS[0],
         provenance=MODEL + "; L=4091 accepted on GPS (§12.1)"), "accept")
want(add("reject_len_4092_too_big", build(S[1], "cdn.example.org", NOWS[0], target_len=4097), NOWS[0],
         provenance=MODEL + "; L=4092 rejected on GPS (§12.1)"), "TooBig")
want(add("reject_len_8000_too_big_long_share", build(S[0], "www.google.com", NOWS[0], target_len=8005, long_share=True), NOWS[0]), "TooBig")
# Cipher suites.
want(add("accept_cipher_1302_after_grease", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("13021301c02b")), NOWS[2]), "accept")
want(add("accept_cipher_1303_no_grease", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("1303"), grease_first=False), NOWS[2]), "accept")
want(add("accept_cipher_after_two_grease", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("3a3a1301")), NOWS[2]), "accept")
want(add("reject_cipher_c02b_first", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("c02b1301")), NOWS[2]), "BadCipherSuite")
want(add("reject_cipher_1304", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("1304")), NOWS[2]), "BadCipherSuite")
want(add("reject_cipher_only_grease", build(S[0], "www.google.com", NOWS[2], suites=bytes.fromhex("fafa")), NOWS[2]), "BadCipherSuite")
# HMAC and timestamps.
want(add("reject_bad_hmac_unknown_secret", build(bytes(16), "www.google.com", NOWS[1]), NOWS[1]), "BadHmac")
want(add("reject_bad_hmac_domain_is_sni", build(b"\x55" * 16, "cdn.example.org", NOWS[1]), NOWS[1]), "BadHmac")
tampered = bytearray(build(S[0], "www.google.com", NOWS[1]))
tampered[200] ^= 1
want(add("reject_bad_hmac_tampered_byte", bytes(tampered), NOWS[1]), "BadHmac")
for off in [4, 10, 100000]:
    want(add(f"reject_future_ts_plus_{off}", build(S[2], "www.google.com", NOWS[1] + off), NOWS[1],
             provenance=MODEL + "; now+10 rejected on GPS (§12.1)"), "FutureTimestamp")
for off in [600, 610, 86400]:
    want(add(f"reject_stale_ts_minus_{off}", build(S[2], "www.google.com", NOWS[1] - off), NOWS[1],
             provenance=MODEL + "; now-610 rejected on GPS (§12.1)"), "StaleTimestamp")
old = NOWS[1] - 86400
want(add("accept_old_ts_newer_than_oldest_cached", build(S[0], "www.google.com", NOWS[1] - 3600), NOWS[1],
         cache=[["ee" * 16, old]]), "accept")
want(add("reject_old_ts_equal_oldest_cached_plus_3", build(S[0], "www.google.com", old + 3), NOWS[1],
         cache=[["ee" * 16, old]]), "StaleTimestamp")
want(add("reject_stale_when_old_cache_entry_is_purged", build(S[0], "www.google.com", NOWS[1] - 3600), NOWS[1],
         cache=[["ee" * 16, NOWS[1] - 2 * 86400]]), "StaleTimestamp")
# SNI.
want(add("reject_unknown_sni_to_default", build(S[0], "evil.example", NOWS[1]), NOWS[1]), "UnknownSni")
want(add("reject_sni_case_differs", build(S[0], "WWW.google.com", NOWS[1]), NOWS[1]), "UnknownSni")
want(add("reject_sni_with_nul", build(S[0], "", NOWS[1], sni_ext=b"\x00\x00\x00\x10\x00\x0e\x00\x00\x0bwww.\x00oogle"), NOWS[1]), "UnknownSni")
want(add("reject_sni_two_names", build(S[0], "", NOWS[1], sni_ext=b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x03a.b\x00\x00\x03c.d"), NOWS[1]), "UnknownSni")
want(add("reject_no_sni_extension", build(S[0], "", NOWS[1], sni_ext=b""), NOWS[1]), "UnknownSni")
want(add("reject_session_id_16_misparses_sni", build(S[0], "www.google.com", NOWS[1], session_id_len=16), NOWS[1],
         provenance=MODEL + "; §12.1: session ids of 0 or 16 bytes give no SNI"), "UnknownSni")
want(add("reject_unknown_sni_with_bad_hmac_is_sni_first", build(bytes(16), "nope.example", NOWS[1]), NOWS[1]), "UnknownSni")
# Framing.
rec = build(S[0], "www.google.com", NOWS[1])
want(add("reject_trailing_byte", rec, NOWS[1], extra=1, provenance=MODEL + "; one extra byte spliced on GPS (§12.1)"), "TooMuchData")
want(add("reject_trailing_record", rec, NOWS[1], extra=517), "TooMuchData")
want(add("reject_trailing_with_bad_hmac_is_too_much_data", build(bytes(16), "cdn.example.org", NOWS[1]), NOWS[1], extra=5), "TooMuchData")
want(add("reject_length_field_mismatch", rec[:-1], NOWS[1]), "Malformed")
# Replay.
key = rec[11:27].hex()
want(add("reject_replay_cached_random", rec, NOWS[1], cache=[[key, NOWS[1] - 100]]), "Replay")
want(add("reject_bad_hmac_with_unrelated_cache_entry", build(bytes(16), "www.google.com", NOWS[1]), NOWS[1],
         cache=[[vectors[-1]["record"][22:54], NOWS[1] - 5]]), "BadHmac")
bad = build(bytes(16), "www.google.com", NOWS[1])
# C says Replay here (cache before HMAC); we check the HMAC first (same splice domain).
want(add("reject_bad_hmac_hello_with_cached_random", bad, NOWS[1], cache=[[bad[11:27].hex(), NOWS[1] - 5]],
         provenance=MODEL + "; HMAC before the replay cache, a deliberate divergence from C"), "BadHmac")
# C looks the key up before purging expired entries, so an entry past its lifetime still counts.
want(add("reject_replay_entry_past_lifetime_not_yet_purged", rec, NOWS[1], cache=[[key, NOWS[1] - 2 * 86400]]), "Replay")
want(add("reject_cached_entry_one_second_short_of_expiry", rec, NOWS[1], cache=[[key, NOWS[1] - 2 * 86400 + 1]]), "Replay")

# Classification of first bytes (§12.1, measured on GPS: 511/0x8000 rejected, 512..0x7fff TLS).
CLS = "spec c-mtproxy.md §12.1 (GPS v3.0.10 rule 16 03 01 XX, XX in 02..7f), checked in Python"
for name, hexbytes, expect, rl in [
    ("classify_chrome_512", "1603010200", "FakeTls", 517),
    ("classify_len_511", "16030101ff", "NotTls", None),
    ("classify_len_767_old_rule_edge", "16030102ff", "FakeTls", 772),
    ("classify_len_768_new_rule", "1603010300", "FakeTls", 773),
    ("classify_tdlib_1752", "16030106d8", "FakeTls", 1757),
    ("classify_len_4092_still_tls", "1603010ffc", "FakeTls", 4097),
    ("classify_len_7fff", "1603017fff", "FakeTls", 32772),
    ("classify_len_8000_signed", "1603018000", "NotTls", None),
    ("classify_tls12_record", "1603030200", "NotTls", None),
    ("classify_obfuscated2_like", "efefefef00", "NotTls", None),
    ("classify_http", "474554202f", "NotTls", None),
    ("classify_need_more_4", "16030102", "NeedMore", None),
    ("classify_need_more_1", "16", "NeedMore", None),
    ("classify_empty", "", "NeedMore", None),
]:
    v = dict(name=name, provenance=CLS, kind="classify", bytes=hexbytes, expect=expect)
    if rl:
        v["record_len"] = rl
    vectors.append(v)

print(json.dumps(dict(family="fake_tls_client_hello",
                      provenance="ClientHellos built and HMAC'd in Python (vectors/gen/fake_tls_client_hello.py); "
                                 "outcomes from a Python model of C's checks in the §12.1 order; edges cross-checked "
                                 "with the GPS v3.0.10 measurements quoted in c-mtproxy.md §12.1",
                      vectors=vectors), indent=1))
