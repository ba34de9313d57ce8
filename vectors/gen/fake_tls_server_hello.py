#!/usr/bin/env python3
"""Generates vectors/data/fake_tls_server_hello.json.

* build: the proxy's ServerHello + CCS + fake app data (c-mtproxy.md §4.4.2) from fixed
  inputs; the x25519 public key comes from the `cryptography` package, the HMAC from hmac.
* verify: Python-built responses the client verifier must accept, and tampered ones it
  must reject (with the class).
* probe: upstream responses to the 517-byte probe, judged by a Python model of C's
  check_response (net-tcp-rpc-ext-server.c), and aggregations of 20 probe sizes.
Run: python3 vectors/gen/fake_tls_server_hello.py > vectors/data/fake_tls_server_hello.json
"""
import hashlib
import hmac
import json
import random
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

R = random.Random(77)


def rb(n):
    return bytes(R.getrandbits(8) for _ in range(n))


def x25519_pub(scalar):
    return X25519PrivateKey.from_private_bytes(scalar).public_key().public_bytes_raw()


def server_hello(client_random, session_id, cs, secret, reversed_, scalar, app):
    ks = b"\x00\x33\x00\x24\x00\x1d\x00\x20" + x25519_pub(scalar)
    sv = b"\x00\x2b\x00\x02\x03\x04"
    exts = sv + ks if reversed_ else ks + sv
    hello = (b"\x02\x00\x00\x76\x03\x03" + b"\x00" * 32 + b"\x20" + session_id
             + bytes([0x13, cs, 0x00]) + struct.pack(">H", len(exts)) + exts)
    resp = (b"\x16\x03\x03" + struct.pack(">H", len(hello)) + hello + b"\x14\x03\x03\x00\x01\x01"
            + b"\x17\x03\x03" + struct.pack(">H", len(app)) + app)
    sr = hmac.new(secret, client_random + resp, hashlib.sha256).digest()
    return resp[:11] + sr + resp[43:]


vectors = []
BUILD = "bytes computed in Python from the §4.4.2 layout (hmac, cryptography X25519)"
for i, (cs, rev, size) in enumerate([(1, False, 2500), (1, True, 3619), (2, False, 1), (3, True, 4000),
                                     (1, False, 23), (2, True, 1425), (3, False, 1426), (1, True, 65535),
                                     (1, False, 0), (2, False, 3244)]):
    cr, sid, secret, scalar, app = rb(32), rb(32), rb(16), rb(32), rb(size)
    vectors.append(dict(name=f"build_{i}_cs{cs}_{'reversed' if rev else 'normal'}_{size}", provenance=BUILD,
                        kind="build", client_random=cr.hex(), session_id=sid.hex(), cipher_suite=cs,
                        secret=secret.hex(), reversed=rev, key_share_scalar=scalar.hex(), app_data=app.hex(),
                        expected=server_hello(cr, sid, cs, secret, rev, scalar, app).hex()))

VERIFY = "Python-built ServerHello (same layout), verified as TDLib does: HMAC over client_random ‖ response"
for i in range(8):
    cr, sid, secret, scalar, app = rb(32), rb(32), rb(16), rb(32), rb(R.randrange(1, 4000))
    resp = server_hello(cr, sid, 1 + i % 3, secret, i % 2 == 1, scalar, app)
    trailing = rb(R.randrange(0, 40)) if i % 3 == 0 else b""
    base = dict(provenance=VERIFY, kind="verify", client_random=cr.hex(), secret=secret.hex())
    vectors.append(dict(base, name=f"verify_accept_{i}", response=(resp + trailing).hex(), expect="accept",
                        consumed=len(resp), app_data_len=len(app)))
    if i == 0:
        vectors.append(dict(base, name="verify_need_more", response=resp[:-1].hex(), expect="NeedMore"))
        vectors.append(dict(base, name="verify_need_more_header", response=resp[:4].hex(), expect="NeedMore"))
        t = bytearray(resp); t[11] ^= 1
        vectors.append(dict(base, name="verify_reject_server_random_flipped", response=bytes(t).hex(), expect="BadHmac"))
        t = bytearray(resp); t[-1] ^= 0x80
        vectors.append(dict(base, name="verify_reject_app_data_flipped", response=bytes(t).hex(), expect="BadHmac"))
        t = bytearray(resp); t[100] ^= 4
        vectors.append(dict(base, name="verify_reject_key_share_flipped", response=bytes(t).hex(), expect="BadHmac"))
        vectors.append(dict(base, name="verify_reject_wrong_secret", response=resp.hex(), expect="BadHmac",
                            secret=rb(16).hex()))
        vectors.append(dict(base, name="verify_reject_other_client_random", response=resp.hex(), expect="BadHmac",
                            client_random=rb(32).hex()))
        t = bytearray(resp); t[0] = 0x15
        vectors.append(dict(base, name="verify_reject_alert_record", response=bytes(t).hex(), expect="NotServerHello"))
        t = bytearray(resp); t[132] = 0x02
        vectors.append(dict(base, name="verify_reject_bad_ccs", response=bytes(t).hex(), expect="BadChangeCipherSpec"))
        t = bytearray(resp); t[133] = 0x16
        vectors.append(dict(base, name="verify_reject_handshake_instead_of_app_data", response=bytes(t).hex(),
                            expect="BadAppData"))


# Probe responses: an upstream TLS 1.3 server's ServerHello, CCS and first app-data record.
def upstream(sid, exts, cs=b"\x13\x01", app_len=4000, random_=None, ccs=b"\x14\x03\x03\x00\x01\x01", sid_len=0x20):
    body = b"\x03\x03" + (random_ or rb(32)) + bytes([sid_len]) + sid + cs + b"\x00"
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x02\x00" + struct.pack(">H", len(body)) + body
    return (b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs + ccs + b"\x17\x03\x03"
            + struct.pack(">H", app_len) + rb(app_len))



def check_response(r, sid):
    """C's reading loop + check_response, in Python. Returns (facts|None, error|None)."""
    if len(r) < 5:
        return "NeedMore", None
    if r[:3] != b"\x16\x03\x03":
        return None, "Non-TLS response or TLS <= 1.1"
    L = r[3] << 8 | r[4]
    if len(r) < 5 + L + 11:
        return "NeedMore", None
    if r[5 + L:5 + L + 9] != b"\x14\x03\x03\x00\x01\x01\x17\x03\x03":
        return None, "Expected dummy ChangeCipherSpec"
    n = r[5 + L + 9] << 8 | r[5 + L + 10]
    total = 5 + L + 11 + n
    if len(r) < total:
        return "NeedMore", None
    r = r[:total]
    if L <= 39:
        return None, "Receive too short ServerHello"
    if r[5:7] != b"\x02\x00":
        return None, "Non-TLS response 2"
    if r[9:11] != b"\x03\x03":
        return None, "Non-TLS response 3"
    if r[11:43] == HRR:
        return None, "TLS 1.3 servers returning HelloRetryRequest are not supprted"
    if r[43] == 0:
        return None, "TLS <= 1.2: empty session_id"
    if r[43] != 0x20:
        return None, "Non-TLS response 4"
    if L <= 75:
        return None, "Receive too short server hello 2"
    if r[44:76] != sid:
        return None, "TLS <= 1.2: expected mirrored session_id"
    if r[76:79] != b"\x13\x01\x00":
        return None, "TLS <= 1.2: expected x25519 as a chosen cipher"
    pos = 79
    el = r[pos] << 8 | r[pos + 1]
    pos += 2
    if el + 76 != L:
        return None, "Receive wrong extensions length"
    s = 0
    rev = None
    while pos < 5 + L - 4:
        eid = r[pos] << 8 | r[pos + 1]
        pos += 2
        if eid not in (0x33, 0x2B):
            return None, "Receive unexpected extension"
        if pos == 83:
            rev = eid == 0x2B
        s += eid
        ln = r[pos] << 8 | r[pos + 1]
        pos += 2
        if pos + ln > 5 + L:
            return None, "Receive wrong extension length"
        if ln != (36 if eid == 0x33 else 2):
            return None, "Unexpected extension length"
        pos += ln
    if s != 0x33 + 0x2B:
        return None, "Receive duplicate extensions"
    if pos != 5 + L:
        return None, "Receive wrong extensions list"
    if n == 0:
        return None, "Receive empty encrypted application data"
    return dict(reversed=rev, size=n, consumed=total), None


KS = b"\x00\x33\x00\x24\x00\x1d\x00\x20" + bytes(32)
SV = b"\x00\x2b\x00\x02\x03\x04"
PROBE = "Python model of C's check_response (net-tcp-rpc-ext-server.c) on Python-built responses"
HRR = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
for name, make, expect in [
    ("probe_normal_order", lambda s: upstream(s, KS + SV), dict(reversed=False, size=4000)),
    ("probe_reversed_order", lambda s: upstream(s, SV + KS, app_len=23), dict(reversed=True, size=23)),
    ("probe_trailing_records_ignored", lambda s: upstream(s, KS + SV, app_len=300) + b"\x17\x03\x03\x00\x05hello",
     dict(reversed=False, size=300)),
    ("probe_reject_cipher_1302", lambda s: upstream(s, KS + SV, cs=b"\x13\x02"), "TLS <= 1.2: expected x25519 as a chosen cipher"),
    ("probe_reject_extra_extension", lambda s: upstream(s, KS + b"\x00\x00\x00\x00" + SV), "Receive unexpected extension"),
    ("probe_reject_trailing_extension_unread", lambda s: upstream(s, KS + SV + b"\x00\x00\x00\x00"), "Receive wrong extensions list"),
    ("probe_reject_short_key_share", lambda s: upstream(s, b"\x00\x33\x00\x04\x00\x1d\x00\x00" + SV + bytes(32)), "Unexpected extension length"),
    ("probe_reject_session_id_empty", lambda s: upstream(b"", KS + SV, sid_len=0), "TLS <= 1.2: empty session_id"),
    ("probe_reject_duplicate_key_share", lambda s: upstream(s, KS + KS), "Receive duplicate extensions"),
    ("probe_reject_only_key_share", lambda s: upstream(s, KS), "Receive duplicate extensions"),
    ("probe_reject_hello_retry", lambda s: upstream(s, KS + SV, random_=HRR), "TLS 1.3 servers returning HelloRetryRequest are not supprted"),
    ("probe_reject_not_mirrored", lambda s: upstream(bytes(32), KS + SV), "TLS <= 1.2: expected mirrored session_id"),
    ("probe_reject_empty_app_data", lambda s: upstream(s, KS + SV, app_len=0), "Receive empty encrypted application data"),
    ("probe_reject_no_ccs", lambda s: upstream(s, KS + SV, ccs=b"\x17\x03\x03\x00\x01\x01"), "Expected dummy ChangeCipherSpec"),
    ("probe_reject_tls12_alert", lambda s: b"\x15\x03\x03\x00\x02\x02\x28", "Non-TLS response or TLS <= 1.1"),
]:
    sid = rb(32)
    resp = make(sid)
    facts, err = check_response(resp, sid)
    assert (err is None) == isinstance(expect, dict) and (err is None or err == expect), (name, err)
    v = dict(name=name, provenance=PROBE, kind="probe", response=resp.hex(), session_id=sid.hex())
    if isinstance(expect, dict):
        v.update(expect=expect and "accept", reversed=expect["reversed"], encrypted_size=expect["size"])
        assert (facts["reversed"], facts["size"]) == (expect["reversed"], expect["size"])
        v["consumed"] = facts["consumed"]
    else:
        v.update(expect="error", message=expect)
    vectors.append(v)
sid = rb(32)
full = upstream(sid, KS + SV)
assert check_response(full[:-1], sid)[0] == "NeedMore"
vectors.append(dict(name="probe_need_more", provenance=PROBE, kind="probe", response=full[:-1].hex(),
                    session_id=sid.hex(), expect="NeedMore"))

AGG = "C's aggregation (update_domain_info) computed in Python"
for name, sizes, rev in [
    ("aggregate_all_equal", [4000] * 20, [False] * 20),
    ("aggregate_spread_1", [4000] * 10 + [4001] * 10, [True] * 20),
    ("aggregate_spread_3", [4000] * 19 + [4003], [False] * 19 + [True]),
    ("aggregate_spread_4_mean", [4000] * 19 + [4004], [False] * 20),
    ("aggregate_wide_half_rounds_up", [100] * 10 + [111] * 10, [True] * 20),
    ("aggregate_random_wide", [R.randrange(2000, 6000) for _ in range(20)], [False] * 20),
]:
    lo, hi = min(sizes), max(sizes)
    if lo == hi:
        size, rnd = lo, False
    elif hi - lo <= 3:
        size, rnd = hi - 1, True
    else:
        size, rnd = int(sum(sizes) * 1.0 / 20 + 0.5), True
    vectors.append(dict(name=name, provenance=AGG, kind="aggregate", sizes=sizes, reversed=rev,
                        expect_size=size, expect_randomize=rnd, expect_reversed=min(rev)))

print(json.dumps(dict(family="fake_tls_server_hello",
                      provenance="ServerHellos, probe responses and aggregations computed in Python "
                                 "(vectors/gen/fake_tls_server_hello.py) from c-mtproxy.md §4.4.2/§4.4.5 and the C source",
                      vectors=vectors), indent=1))
