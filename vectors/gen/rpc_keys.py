#!/usr/bin/env python3
"""Generates vectors/data/rpc_keys.json: the ME link's aes_create_keys (c-mtproxy.md §5.4).

Expected values are computed here with hashlib only, following §5.4's byte layout of `s`
(and net/net-crypto-aes.c aes_create_keys, read, not run):

  s = nonce_server[16] nonce_client[16] client_ts[4 LE] server_ip[4] client_port[2 LE]
      purpose[6] client_ip[4] server_port[2 LE] secret[N] nonce_server[16]
      (IPv6 only: client_ipv6[16] server_ipv6[16]) nonce_client[16]
  IPv4 as a host-order u32 written LE (127.0.0.1 -> 01 00 00 7f); both 0 for IPv6.
  key = MD5(s[1:])[:12] + SHA1(s);  iv = MD5(s[2:])

"NAT" vectors give the proxy's local address and its --nat-info translation; per §5.4 the
translated (public) address is what goes into s, so `client_ip` holds it.
Negative vectors: secrets outside 32..256 bytes (C asserts MIN_PWD_LEN..MAX_PWD_LEN) and a
zero IPv4 address in the IPv4 layout (C asserts).

Usage: python3 rpc_keys.py [--check]
"""
import hashlib
import ipaddress
import json
import pathlib
import struct
import sys

FAMILY = "rpc_keys"
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / f"{FAMILY}.json"


def pattern(n, seed):
    return bytes((i * 73 + seed * 41 + 5) & 0xFF for i in range(n))


def ip4(s):
    return struct.pack("<I", int(ipaddress.IPv4Address(s)))


def build_s(v):
    v6 = v["family"] == "v6"
    s = bytes.fromhex(v["nonce_server"]) + bytes.fromhex(v["nonce_client"])
    s += struct.pack("<i", v["client_ts"])
    s += b"\0" * 4 if v6 else ip4(v["server_ip"])
    s += struct.pack("<H", v["client_port"])
    s += v["purpose"].encode()
    s += b"\0" * 4 if v6 else ip4(v["client_ip"])
    s += struct.pack("<H", v["server_port"])
    s += bytes.fromhex(v["secret"])
    s += bytes.fromhex(v["nonce_server"])
    if v6:
        s += ipaddress.IPv6Address(v["client_ip"]).packed + ipaddress.IPv6Address(v["server_ip"]).packed
    s += bytes.fromhex(v["nonce_client"])
    return s


def derive(s):
    key = hashlib.md5(s[1:]).digest()[:12] + hashlib.sha1(s).digest()
    iv = hashlib.md5(s[2:]).digest()
    return key, iv


def main():
    vectors = []
    cases = [
        # name, family, server_ip, client_ip, nat_from, sport, cport, ts, secret_len, seed
        ("loopback", "v4", "127.0.0.1", "127.0.0.1", None, 18888, 40001, 1700000000, 128, 1),
        ("public-me", "v4", "149.154.175.50", "198.51.100.7", None, 8888, 51234, 1699999999, 128, 2),
        ("nat-translated", "v4", "149.154.175.50", "203.0.113.9", "10.0.0.5", 8888, 40000, 1700000123, 128, 3),
        ("nat-translated-2", "v4", "91.108.4.1", "192.0.2.200", "172.16.3.4", 443, 65535, 0x7FFFFFFF, 64, 4),
        ("min-secret", "v4", "10.1.2.3", "10.3.2.1", None, 1, 2, 0, 32, 5),
        ("max-secret", "v4", "10.1.2.3", "10.3.2.1", None, 65535, 1, -1, 256, 6),
        ("negative-ts", "v4", "1.2.3.4", "5.6.7.8", None, 80, 81, -123456, 100, 7),
        ("high-octets", "v4", "255.254.253.252", "128.0.0.1", None, 32768, 32767, 12345, 33, 8),
        ("v6", "v6", "2001:db8::1", "2001:db8::2", None, 8888, 40001, 1700000000, 128, 9),
        ("v6-loopback", "v6", "::1", "::1", None, 18888, 50000, 1700000000, 128, 10),
        ("v6-full", "v6", "2a0a:f280:203:a:5000::100", "fe80::1234:5678:9abc:def0", None, 443, 1024, 5, 200, 11),
        ("v6-mapped-looking", "v6", "::ffff:1.2.3.4", "::ffff:5.6.7.8", None, 8888, 8889, 77, 48, 12),
    ]
    for name, fam, sip, cip, nat_from, sport, cport, ts, slen, seed in cases:
        for purpose in ("CLIENT", "SERVER"):
            v = {
                "name": f"{name}-{purpose.lower()}",
                "provenance": "hashlib over the §5.4 layout of s",
                "family": fam,
                "nonce_server": pattern(16, seed).hex(),
                "nonce_client": pattern(16, seed + 100).hex(),
                "client_ts": ts,
                "server_ip": sip,
                "client_ip": cip,
                "server_port": sport,
                "client_port": cport,
                "purpose": purpose,
                "secret": pattern(slen, seed + 200).hex(),
            }
            if nat_from:
                v["client_ip_before_nat"] = nat_from
            s = build_s(v)
            key, iv = derive(s)
            v["s"] = s.hex()
            v["key"] = key.hex()
            v["iv"] = iv.hex()
            vectors.append(v)
    for name, slen, sip, err in [
        ("secret-31-bytes", 31, "127.0.0.1", "SecretLength"),
        ("secret-257-bytes", 257, "127.0.0.1", "SecretLength"),
        ("secret-empty", 0, "127.0.0.1", "SecretLength"),
        ("zero-server-ipv4", 128, "0.0.0.0", "ZeroIpv4"),
    ]:
        vectors.append({
            "name": name,
            "provenance": "C asserts in aes_create_keys (secret length 32..256, nonzero IPv4 pair)",
            "family": "v4",
            "nonce_server": pattern(16, 1).hex(),
            "nonce_client": pattern(16, 2).hex(),
            "client_ts": 1,
            "server_ip": sip,
            "client_ip": "127.0.0.1",
            "server_port": 1,
            "client_port": 2,
            "purpose": "CLIENT",
            "secret": pattern(slen, 3).hex(),
            "expect_error": err,
        })
    doc = {
        "family": FAMILY,
        "provenance": "Python hashlib MD5/SHA1 over the byte layout of c-mtproxy.md §5.4 "
        "(net/net-crypto-aes.c aes_create_keys); negatives from the C asserts",
        "vectors": vectors,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else "rpc_keys.json is out of date")
    OUT.write_text(text)


if __name__ == "__main__":
    main()
