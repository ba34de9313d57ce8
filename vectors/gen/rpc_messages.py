#!/usr/bin/env python3
"""Generates vectors/data/rpc_messages.json: RPC message payloads of the ME link
(c-mtproxy.md §5.3, §5.5, §5.7; net-tcp-rpc-common.h structs; mtproto-proxy.c).

* "message" vectors: a payload and its fields; decoding must give the fields and encoding the
  fields must give the payload byte-exact. The PROXY_REQ observed from the C build (§5.7) is
  typed in verbatim; the others are built with struct from the §5.7 / §5.5 tables.
* "reject" vectors: known ops with sizes C does not accept (SIMPLE_ACK != 16, CLOSE_EXT /
  CLOSE_CONN / PING / PONG != 12, PROXY_ANS < 16, nonce sizes per schema, handshake != 32).
* "nonce_check" / "handshake_check": the C validation rules with their fail_connection codes
  (net-tcp-rpc-client.c tcp_rpcc_process_nonce_packet / _handshake_packet, pid.c matches_pid).

Usage: python3 rpc_messages.py [--check]
"""
import ipaddress
import json
import pathlib
import struct
import sys

FAMILY = "rpc_messages"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"

OPS = dict(NONCE=0x7ACB87AA, HANDSHAKE=0x7682EEF5, HANDSHAKE_ERROR=0x6A27BEDA, PROXY_REQ=0x36CEF1EE,
           PROXY_ANS=0x4403DA0D, SIMPLE_ACK=0x3BAC409B, CLOSE_EXT=0x5EB634A2, CLOSE_CONN=0x1FCF425D,
           PING=0x5730A2DF, PONG=0x8430EAA7)
TL_PROXY_TAG = 0xDB1E26AE

OBSERVED_REQ = (
    "eef1ce36 0a1002a0 0c00400000000000"
    "00000000000000000000ffff7f000001 7c8e0000"
    "00000000000000000000ffff7f000001 0b480000"
    "18000000 ae261edb 10 fedcba9876543210fedcba9876543210 000000"
    "000000000000000000b4daa5570e076b 14000000 f18e7ebe 17c9cb5ee023f21c7c703cf5cba7c7d2"
).replace(" ", "")
MTPROTO = bytes.fromhex("000000000000000000b4daa5570e076b14000000f18e7ebe17c9cb5ee023f21c7c703cf5cba7c7d2")
TAG = bytes.fromhex("fedcba9876543210fedcba9876543210")


def pattern(n, seed):
    return bytes((i * 97 + seed * 31 + 1) & 0xFF for i in range(n))


def pid(ip, port, p, utime):
    return struct.pack("<IhHi", ip, port, p, utime)


def mapped(ip):
    a = ipaddress.ip_address(ip)
    return (ipaddress.IPv6Address("::ffff:" + ip) if a.version == 4 else a).packed


def v6str(packed):
    return str(ipaddress.IPv6Address(packed))


def proxy_req(flags, conn_id, cip, cport, pip, pport, extra, payload):
    b = struct.pack("<IIq", OPS["PROXY_REQ"], flags, conn_id) + mapped(cip) + struct.pack("<i", cport)
    b += mapped(pip) + struct.pack("<i", pport)
    if flags & 0xC:
        b += struct.pack("<i", len(extra)) + extra
    return b + payload


def tag_extra(tag):
    return struct.pack("<I", TL_PROXY_TAG) + b"\x10" + tag + b"\0\0\0"


def main():
    V = []

    def msg(name, payload, fields, provenance="struct per the §5.7/§5.5 tables"):
        V.append(dict(name=name, provenance=provenance, kind="message", payload=payload.hex(), message=fields))

    def req_fields(flags, conn_id, cip, cport, pip, pport, extra, payload):
        if not flags & 0xC or not extra:
            ex = {"kind": "none"}
        elif extra == tag_extra(extra[5:21]):
            ex = {"kind": "tag", "hex": extra[5:21].hex()}
        else:
            ex = {"kind": "raw", "hex": extra.hex()}
        return dict(type="ProxyReq", flags=flags, ext_conn_id=conn_id, client_ip=v6str(mapped(cip)),
                    client_port=cport, proxy_ip=v6str(mapped(pip)), proxy_port=pport, extra=ex,
                    payload=payload.hex())

    obs = bytes.fromhex(OBSERVED_REQ)
    args = (0xA002100A, 0x40000C, "127.0.0.1", 36476, "127.0.0.1", 18443, tag_extra(TAG), MTPROTO)
    assert proxy_req(*args) == obs, "observed PROXY_REQ does not match the §5.7 table"
    msg("proxy-req-observed-c-build", obs, req_fields(*args),
        provenance="observed from the C build, c-mtproxy.md §5.7 (intermediate client, quick ack, tag, req_pq_multi)")
    for name, a in [
        ("proxy-req-abridged-tag", (0xC002100A, 0x40000D, "127.0.0.1", 36478, "127.0.0.1", 18443, tag_extra(TAG), MTPROTO)),
        ("proxy-req-faketls-no-tag", (0xA0021002, 0x40000E, "127.0.0.1", 36480, "127.0.0.1", 18443, b"", MTPROTO)),
        ("proxy-req-encrypted-no-quickack", (0x20021008, 0x400010, "198.51.100.23", 50000, "203.0.113.9", 443, tag_extra(pattern(16, 3)), pattern(72, 4))),
        ("proxy-req-ipv6-client", (0x40021000, 0x7FFFFFFFFFFF, "2001:db8::77", 61000, "2001:db8::1", 8443, b"", pattern(24, 5))),
        ("proxy-req-tag-flag-empty-extra", (0xA002100A, 1, "10.0.0.1", 1, "10.0.0.2", 2, b"", pattern(8, 6))),
        ("proxy-req-http-info-raw-extra", (0x3005, 2, "10.0.0.1", 80, "10.0.0.2", 8080,
                                           struct.pack("<I", 0xD45AB381) + b"\x03abc" + b"\0" * 4 + b"\0" * 4, pattern(16, 7))),
        ("proxy-req-empty-packet", (0x21000, -1, "1.1.1.1", 65535, "2.2.2.2", 0, b"", b"")),
    ]:
        msg(name, proxy_req(*a), req_fields(*a),
            provenance="struct per §5.7 (flag values 0xa002100a / 0xc002100a / 0xa0021002 observed from the C build)")

    def simple(name, typ, payload, **f):
        msg(name, payload, dict(type=typ, **f))

    simple("proxy-ans", "ProxyAns", struct.pack("<IIq", OPS["PROXY_ANS"], 0, 0x40000C) + pattern(44, 8),
           flags=0, conn_id=0x40000C, data=pattern(44, 8).hex())
    simple("proxy-ans-flags-empty-data", "ProxyAns", struct.pack("<IIq", OPS["PROXY_ANS"], 0x18, -2),
           flags=0x18, conn_id=-2, data="")
    simple("simple-ack", "SimpleAck", struct.pack("<IqI", OPS["SIMPLE_ACK"], 0x40000C, 0x8D9F3A21),
           conn_id=0x40000C, confirm=0x8D9F3A21)
    simple("close-ext", "CloseExt", struct.pack("<Iq", OPS["CLOSE_EXT"], 0x40000C), conn_id=0x40000C)
    simple("close-conn", "CloseConn", struct.pack("<Iq", OPS["CLOSE_CONN"], 0x400123), conn_id=0x400123)
    simple("ping", "Ping", struct.pack("<Iq", OPS["PING"], 0x1122334455667788), ping_id=0x1122334455667788)
    simple("pong", "Pong", struct.pack("<Iq", OPS["PONG"], -9), ping_id=-9)
    simple("unknown-op", "Unknown", struct.pack("<I", 0x12345678) + pattern(8, 9), op=0x12345678, body=pattern(8, 9).hex())
    simple("unknown-op-no-body", "Unknown", struct.pack("<I", 0xFFFFFFFF), op=0xFFFFFFFF, body="")

    sp, pp = (0, 18080, 4242, 1699999000), (0, 18888, 0, 0)
    simple("handshake-proxy", "Handshake", struct.pack("<II", OPS["HANDSHAKE"], 0x800) + pid(*sp) + pid(*pp),
           flags=0x800, sender_pid=list(sp), peer_pid=list(pp))
    simple("handshake-crc32", "Handshake", struct.pack("<II", OPS["HANDSHAKE"], 0) + pid(0x7F000001, -1, 65535, -5) + pid(*sp),
           flags=0, sender_pid=[0x7F000001, -1, 65535, -5], peer_pid=list(sp))
    simple("handshake-error", "HandshakeError", struct.pack("<Ii", OPS["HANDSHAKE_ERROR"], -4) + pid(*sp),
           error_code=-4, sender_pid=list(sp))

    def nonce(ks, schema, ts, n, extra=None, dh=None, ga=None):
        b = struct.pack("<Iiii", OPS["NONCE"], ks, schema, ts) + n
        if schema >= 2:
            b += struct.pack("<i", len(extra)) + b"".join(struct.pack("<i", k) for k in extra)
        if schema == 3:
            b += struct.pack("<I", dh) + ga
        return b

    def nonce_fields(ks, schema, ts, n, extra=None, dh=None, ga=None):
        f = dict(type="Nonce", key_select=ks, schema=schema, crypto_ts=ts, nonce=n.hex())
        if schema >= 2:
            f["extra_key_select"] = extra
        if schema == 3:
            f["dh_params_select"] = dh
            f["g_a"] = ga.hex()
        return f

    KS = struct.unpack("<i", bytes.fromhex("e0bf2ae9"))[0]
    TS = 0x6B070E56
    obs_nonce = (KS, 1, TS, pattern(16, 10))
    msg("nonce-observed-layout", nonce(*obs_nonce), nonce_fields(*obs_nonce),
        provenance="layout observed from the C build, §5.3 (e0bf2ae9 01000000 560e076b; nonce bytes ours)")
    for name, a in [
        ("nonce-schema-none", (0, 0, 5, pattern(16, 11))),
        ("nonce-schema-ext", (7, 2, 6, pattern(16, 12), [KS, -1, 3])),
        ("nonce-schema-ext-empty", (KS, 2, 6, pattern(16, 13), [])),
        ("nonce-schema-ext-max", (KS, 2, 6, pattern(16, 14), list(range(8)))),
        ("nonce-schema-dh", (KS, 3, 7, pattern(16, 15), [], 0x00620B93, pattern(256, 16))),
        ("nonce-schema-dh-extra", (KS, 3, 7, pattern(16, 17), [1, 2], 0x00620B93, pattern(256, 18))),
    ]:
        msg(name, nonce(*a), nonce_fields(*a), provenance="struct per net-tcp-rpc-common.h nonce structs (§5.3)")

    def reject(name, payload, err):
        V.append(dict(name=name, provenance="size rules of mtproto-proxy.c process_client_packet / "
                      "net-tcp-rpc-*.c (wrong sizes are ignored or refused)", kind="reject",
                      payload=payload.hex(), expect_error=err))

    for op, good in [("SIMPLE_ACK", 16), ("CLOSE_EXT", 12), ("CLOSE_CONN", 12), ("PING", 12), ("PONG", 12)]:
        reject(f"{op.lower()}-short", struct.pack("<I", OPS[op]) + b"\0" * (good - 8), "BadSize")
        reject(f"{op.lower()}-long", struct.pack("<I", OPS[op]) + b"\0" * good, "BadSize")
    reject("proxy-ans-12", struct.pack("<IIi", OPS["PROXY_ANS"], 0, 0), "BadSize")
    reject("proxy-req-short", proxy_req(0x1000, 1, "1.1.1.1", 1, "1.1.1.1", 1, b"", b"")[:52], "BadSize")
    reject("proxy-req-extra-size-past-end", proxy_req(0x1008, 1, "1.1.1.1", 1, "1.1.1.1", 1, b"", b"")[:56]
           + struct.pack("<i", 24) + b"\0" * 20, "BadExtraSize")
    reject("proxy-req-extra-flag-no-size", proxy_req(0x1000, 1, "1.1.1.1", 1, "1.1.1.1", 1, b"", b"")[:56][:4]
           + struct.pack("<I", 0x1008) + proxy_req(0x1000, 1, "1.1.1.1", 1, "1.1.1.1", 1, b"", b"")[8:56], "BadSize")
    reject("no-op", b"\x01\x02", "NoOp")
    reject("handshake-28", struct.pack("<II", OPS["HANDSHAKE"], 0) + b"\0" * 20, "Handshake")
    reject("handshake-36", struct.pack("<II", OPS["HANDSHAKE"], 0) + b"\0" * 28, "Handshake")
    reject("handshake-error-24", struct.pack("<Ii", OPS["HANDSHAKE_ERROR"], -3) + b"\0" * 16, "Handshake")
    reject("nonce-28", nonce(*obs_nonce)[:28], "Handshake")
    reject("nonce-aes-36", nonce(*obs_nonce) + b"\0" * 4, "Handshake")
    reject("nonce-unknown-schema", struct.pack("<Iiii", OPS["NONCE"], KS, 4, 0) + b"\0" * 16, "Handshake")
    reject("nonce-ext-count-9", struct.pack("<Iiii", OPS["NONCE"], KS, 2, 0) + b"\0" * 16 + struct.pack("<i", 9) + b"\0" * 36, "Handshake")
    reject("nonce-ext-count-negative", struct.pack("<Iiii", OPS["NONCE"], KS, 2, 0) + b"\0" * 16 + struct.pack("<i", -1), "Handshake")
    reject("nonce-ext-count-mismatch", nonce(KS, 2, 0, b"\0" * 16, [1, 2])[:-4], "Handshake")
    reject("nonce-dh-short", nonce(KS, 3, 0, b"\0" * 16, [], 0x00620B93, b"\0" * 256)[:-4], "Handshake")

    def ncheck(name, payload, ours, own_ts, am_client, expect):
        V.append(dict(name=name, provenance="tcp_rpcc_process_nonce_packet / tcp_rpcs_process_nonce_packet rules",
                      kind="nonce_check", payload=payload.hex(), our_key_select=ours, own_ts=own_ts,
                      am_client=am_client, expect=expect))

    n16 = pattern(16, 20)
    ncheck("nonce-ok", nonce(KS, 1, TS, n16), KS, TS, True, "ok")
    ncheck("nonce-ts-plus-30-ok", nonce(KS, 1, TS + 30, n16), KS, TS, True, "ok")
    ncheck("nonce-ts-minus-30-ok", nonce(KS, 1, TS - 30, n16), KS, TS, True, "ok")
    ncheck("nonce-ts-plus-31", nonce(KS, 1, TS + 31, n16), KS, TS, True, -6)
    ncheck("nonce-ts-minus-31", nonce(KS, 1, TS - 31, n16), KS, TS, False, -6)
    ncheck("nonce-key-select-mismatch", nonce(KS ^ 1, 1, TS, n16), KS, TS, True, -3)
    ncheck("nonce-our-key-zero", nonce(0, 1, TS, n16), 0, TS, True, -3)
    ncheck("nonce-schema-none", nonce(0, 0, TS, n16), KS, TS, True, -5)
    ncheck("nonce-schema-none-with-key", nonce(KS, 0, TS, n16), KS, TS, True, -3)
    ncheck("nonce-ext-key-in-extra", nonce(5, 2, TS, n16, [9, KS]), KS, TS, True, "ok")
    ncheck("nonce-ext-key-absent", nonce(5, 2, TS, n16, [9]), KS, TS, True, -3)
    ncheck("nonce-dh-client-refuses", nonce(KS, 3, TS, n16, [], 0x00620B93, pattern(256, 1)), KS, TS, True, -7)
    ncheck("nonce-dh-server-ignores-dh", nonce(KS, 3, TS, n16, [], 0x00620B93, pattern(256, 1)), KS, TS, False, "ok")
    ncheck("nonce-bad-size", nonce(KS, 1, TS, n16) + b"\0" * 4, KS, TS, True, -3)

    def hcheck(name, payload, ours, check_pid, offer, am_client, expect):
        V.append(dict(name=name, provenance="tcp_rpcc_process_handshake_packet / tcp_rpcs_process_handshake_packet, matches_pid",
                      kind="handshake_check", payload=payload.hex(), our_pid=list(ours), check_pid=check_pid,
                      offer_crc32c=offer, am_client=am_client, expect=expect))

    def hs(flags, sender, peer):
        return struct.pack("<II", OPS["HANDSHAKE"], flags) + pid(*sender) + pid(*peer)

    me = (0x7F000001, 8888, 1, 2)
    hcheck("hs-echo-pid-crc32c", hs(0x800, me, sp), sp, True, True, True, "crc32c")
    hcheck("hs-zero-peer-pid", hs(0, me, (0, 0, 0, 0)), sp, True, True, True, "crc32")
    hcheck("hs-partial-peer-pid", hs(0x800, me, (0, 18080, 0, 0)), sp, True, True, True, "crc32c")
    hcheck("hs-peer-pid-mismatch", hs(0x800, me, (0, 18080, 4243, 0)), sp, True, True, True, -4)
    hcheck("hs-peer-pid-ignored", hs(0x800, me, (1, 2, 3, 4)), sp, False, True, False, "crc32c")
    hcheck("hs-low-flags", hs(0x801, me, sp), sp, True, True, True, -7)
    hcheck("hs-low-flags-ff", hs(0xFF, me, sp), sp, True, True, True, -7)
    hcheck("hs-crc32c-not-offered", hs(0x800, me, sp), sp, True, False, True, -8)
    hcheck("hs-server-declines-crc32c", hs(0x800, me, sp), sp, False, False, False, "crc32")
    hcheck("hs-high-flags-ignored", hs(0x10000, me, sp), sp, True, True, True, "crc32")
    hcheck("hs-size-28", hs(0, me, sp)[:28], sp, True, True, True, -3)

    doc = {
        "family": FAMILY,
        "provenance": "PROXY_REQ and nonce layouts observed from the C build (c-mtproxy.md §5.3, §5.7); "
        "others built with Python struct from the §5.5/§5.7 tables; check rules and codes from the C source",
        "vectors": V,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else "rpc_messages.json is out of date")
    OUT.write_text(text)


if __name__ == "__main__":
    main()
