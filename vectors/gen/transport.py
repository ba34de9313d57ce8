#!/usr/bin/env python3
"""Generates vectors/data/transport.json: client framing after the obfuscated2 header (c-mtproxy.md §4.3).

Independent re-statement of the framing rules in Python (struct only); the two quick-ack
examples are the values observed from the C build ([verified] in §4.3).

Kinds:
* server_decode  - client->proxy bytes -> frames {payload, quick_ack} then error class or null
* client_decode  - proxy->client bytes -> items {packet} / {quick_ack} then error class or null
* server_encode  - payload + padding -> proxy->client wire
* client_encode  - payload + quick_ack + padding -> client->proxy wire
* quick_ack      - confirm -> 4 raw bytes
* quick_ack_alt  - confirm + pad1 + pad2 -> two padded frames

Run: python3 vectors/gen/transport.py > vectors/data/transport.json
"""
import json
import random
import struct

PROV = "c-mtproxy.md §4.3 and net/net-tcp-rpc-ext-server.c / net-tcp-rpc-common.c framing; computed in vectors/gen/transport.py"
PROV_OBS = "observed from the C build (c-mtproxy.md §4.3 [verified])"
MAX_CLIENT = 262144 * 4 - 4096

rng = random.Random(0x7A5)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


vectors = []


def add(kind, name, transport, prov=PROV, **kw):
    v = {"name": name, "provenance": prov, "kind": kind, "transport": transport}
    v.update(kw)
    vectors.append(v)


# ---- client -> proxy framing (what the proxy decodes) ----
def c_abridged(payload, ack=False):
    n = len(payload) // 4
    if n < 0x7F:
        hdr = bytes([n | (0x80 if ack else 0)])
    else:
        hdr = bytes([0x7F | (0x80 if ack else 0)]) + struct.pack("<I", n)[:3]
    return hdr + payload


def c_medium(payload, ack=False, pad=b""):
    ln = len(payload) + len(pad)
    return struct.pack("<I", ln | (0x80000000 if ack else 0)) + payload + pad


def sdec(name, transport, wire, frames, error=None, prov=PROV):
    add("server_decode", name, transport, prov, input=wire.hex(),
        frames=[{"payload": p.hex(), "quick_ack": a} for p, a in frames], error=error)


p8, p28, p40 = rbytes(8), rbytes(28), rbytes(40)
p504, p508, p1024 = rbytes(504), rbytes(508), rbytes(1024)

# abridged
sdec("abridged_one", "abridged", c_abridged(p40), [(p40, False)])
sdec("abridged_quick_ack", "abridged", c_abridged(p40, True), [(p40, True)])
sdec("abridged_two_frames", "abridged", c_abridged(p8) + c_abridged(p28, True), [(p8, False), (p28, True)])
sdec("abridged_max_short_0x7e_words", "abridged", c_abridged(p504), [(p504, False)])
sdec("abridged_long_0x7f_words", "abridged", c_abridged(p508), [(p508, False)])
sdec("abridged_long_1024_quick_ack", "abridged", c_abridged(p1024, True), [(p1024, True)])
sdec("abridged_incomplete_payload", "abridged", c_abridged(p40)[:30], [])
sdec("abridged_incomplete_long_header", "abridged", b"\x7f\x80\x00", [])
sdec("abridged_frame_then_partial", "abridged", c_abridged(p8) + c_abridged(p40)[:10], [(p8, False)])
sdec("abridged_zero_length", "abridged", b"\x00" + p8, [], "ZeroLength")
sdec("abridged_zero_length_quick_ack", "abridged", b"\x80" + p8, [], "ZeroLength")
sdec("abridged_overlong_0x7e", "abridged", b"\x7f\x7e\x00\x00" + p504, [], "OverlongEncoding")
sdec("abridged_overlong_zero", "abridged", b"\xff\x00\x00\x00" + p8, [], "OverlongEncoding")
sdec("abridged_overlong_after_good_frame", "abridged", c_abridged(p8) + b"\x7f\x01\x00\x00", [(p8, False)], "OverlongEncoding")
sdec("abridged_max_post_size_needs_more", "abridged", b"\x7f" + struct.pack("<I", MAX_CLIENT // 4)[:3], [])
sdec("abridged_too_long", "abridged", b"\x7f" + struct.pack("<I", MAX_CLIENT // 4 + 1)[:3], [], "TooLong")
sdec("abridged_too_long_max_u24", "abridged", b"\x7f\xff\xff\xff", [], "TooLong")

# intermediate
sdec("intermediate_one", "intermediate", c_medium(p40), [(p40, False)])
sdec("intermediate_quick_ack_bit31_stripped", "intermediate", c_medium(p40, True), [(p40, True)])
sdec("intermediate_three_frames", "intermediate", c_medium(p8) + c_medium(p28, True) + c_medium(p1024),
     [(p8, False), (p28, True), (p1024, False)])
sdec("intermediate_incomplete", "intermediate", c_medium(p40)[:43], [])
sdec("intermediate_incomplete_header", "intermediate", c_medium(p40)[:3], [])
sdec("intermediate_zero_length", "intermediate", struct.pack("<I", 0) + p8, [], "ZeroLength")
sdec("intermediate_zero_length_quick_ack", "intermediate", struct.pack("<I", 0x80000000) + p8, [], "ZeroLength")
sdec("intermediate_bit30", "intermediate", struct.pack("<I", 0x40000028) + p40, [], "ReservedBit")
sdec("intermediate_bit30_with_quick_ack", "intermediate", struct.pack("<I", 0xC0000028) + p40, [], "ReservedBit")
sdec("intermediate_not_aligned", "intermediate", struct.pack("<I", 41) + p40 + b"\0", [], "NotAligned")
sdec("intermediate_not_aligned_after_frame", "intermediate", c_medium(p8) + struct.pack("<I", 2), [(p8, False)], "NotAligned")
sdec("intermediate_max_post_size_needs_more", "intermediate", struct.pack("<I", MAX_CLIENT), [])
sdec("intermediate_too_long", "intermediate", struct.pack("<I", MAX_CLIENT + 4), [], "TooLong")
sdec("intermediate_too_long_0x3ffffffc", "intermediate", struct.pack("<I", 0x3FFFFFFC), [], "TooLong")

# padded intermediate
sdec("padded_no_padding", "padded_intermediate", c_medium(p40), [(p40, False)])
for k in (1, 2, 3):
    sdec(f"padded_{k}_padding_bytes_dropped", "padded_intermediate", c_medium(p40, pad=rbytes(k)), [(p40, False)])
sdec("padded_quick_ack", "padded_intermediate", c_medium(p28, True, rbytes(3)), [(p28, True)])
sdec("padded_len_5_payload_4", "padded_intermediate", c_medium(p8[:4], pad=b"\x01"), [(p8[:4], False)])
sdec("padded_two_frames", "padded_intermediate", c_medium(p8, pad=b"\x01\x02") + c_medium(p40, True, b"\x03"),
     [(p8, False), (p40, True)])
for k in (1, 2, 3):
    sdec(f"padded_short_frame_len_{k}", "padded_intermediate", struct.pack("<I", k) + rbytes(k) + p8, [],
         "ShortPaddedFrame",
         prov=PROV + "; the C build aborts the process here (§4.3 crash bug [verified]); the port rejects the connection")
sdec("padded_zero_length", "padded_intermediate", struct.pack("<I", 0), [], "ZeroLength")
sdec("padded_bit30", "padded_intermediate", struct.pack("<I", 0x40000001), [], "ReservedBit")
sdec("padded_too_long", "padded_intermediate", struct.pack("<I", MAX_CLIENT + 1), [], "TooLong")
sdec("padded_max_post_size_needs_more", "padded_intermediate", struct.pack("<I", MAX_CLIENT), [])


# ---- proxy -> client framing ----
def s_frame(transport, payload, pad=b""):
    if transport == "abridged":
        n = len(payload)
        if n <= 0x7E * 4:
            return bytes([n // 4]) + payload
        return struct.pack("<I", ((n // 4) << 8) | 0x7F) + payload
    if transport == "intermediate":
        return struct.pack("<I", len(payload)) + payload
    return struct.pack("<I", len(payload) + len(pad)) + payload + pad


for t in ("abridged", "intermediate", "padded_intermediate"):
    for p, label in ((p8, "8"), (p504, "504"), (p508, "508"), (p1024, "1024")):
        pads = [b""] if t != "padded_intermediate" else [b"", rbytes(3)]
        for pad in pads:
            add("server_encode", f"server_encode_{t}_{label}_pad{len(pad)}", t,
                payload=p.hex(), padding=pad.hex(), wire=s_frame(t, p, pad).hex())
add("server_encode", "server_encode_padded_44_plus_2", "padded_intermediate",
    PROV + "; §4.3 [verified] replies of 46/47 bytes for a 44-byte payload",
    payload=rbytes(44).hex(), padding="abcd", wire=None)
vectors[-1]["wire"] = s_frame("padded_intermediate", bytes.fromhex(vectors[-1]["payload"]), b"\xab\xcd").hex()
add("server_encode", "server_encode_abridged_misaligned", "abridged", payload=rbytes(6).hex(), padding="",
    error="NotAligned")
add("server_encode", "server_encode_intermediate_misaligned", "intermediate", payload=rbytes(6).hex(), padding="",
    error="NotAligned")
add("server_encode", "server_encode_padded_4_padding_bytes", "padded_intermediate", payload=p8.hex(),
    padding="01020304", error="BadPadding")

for t in ("abridged", "intermediate", "padded_intermediate"):
    add("client_encode", f"client_encode_{t}_ack", t, payload=p40.hex(), quick_ack=True,
        padding="" if t != "padded_intermediate" else "0102",
        wire=(c_abridged(p40, True) if t == "abridged" else c_medium(p40, True, b"\x01\x02" if t != "intermediate" else b"")).hex())
    add("client_encode", f"client_encode_{t}_long", t, payload=p1024.hex(), quick_ack=False, padding="",
        wire=(c_abridged(p1024) if t == "abridged" else c_medium(p1024)).hex())

# quick acks
add("quick_ack", "quick_ack_intermediate_verified", "intermediate", PROV_OBS, confirm=0x81020304, wire="04030281")
add("quick_ack", "quick_ack_abridged_verified", "abridged", PROV_OBS, confirm=0x81020304, wire="81020304")
add("quick_ack", "quick_ack_padded", "padded_intermediate", confirm=0x8ABCDEF0, wire=struct.pack("<I", 0x8ABCDEF0).hex())
add("quick_ack", "quick_ack_abridged_2", "abridged", confirm=0xF0000001, wire=struct.pack(">I", 0xF0000001).hex())


def alt(confirm, pad1, pad2):
    return (struct.pack("<I", 8 + len(pad1)) + b"\xff\xff\xff\xff" + struct.pack("<I", confirm) + pad1
            + struct.pack("<I", 4 + len(pad2)) + b"\0\0\0\0" + pad2)


PROV_ALT = PROV + "; push_rpc_confirmation alternative form in mtproto/mtproto-proxy.c"
for l1, l2 in ((0, 0), (3, 0), (4, 7), (7, 2)):
    pad1, pad2 = rbytes(l1), rbytes(l2)
    add("quick_ack_alt", f"quick_ack_alt_pads_{l1}_{l2}", "padded_intermediate", PROV_ALT, confirm=0x81020304,
        pad1=pad1.hex(), pad2=pad2.hex(), wire=alt(0x81020304, pad1, pad2).hex())


# client-side decoding of proxy->client bytes
def cdec(name, transport, wire, items, error=None):
    add("client_decode", name, transport, input=wire.hex(), items=items, error=error)


cdec("client_decode_abridged_packet_ack_packet", "abridged",
     s_frame("abridged", p8) + bytes.fromhex("81020304") + s_frame("abridged", p508),
     [{"packet": p8.hex()}, {"quick_ack": 0x81020304}, {"packet": p508.hex()}])
cdec("client_decode_intermediate_ack_then_packet", "intermediate",
     bytes.fromhex("04030281") + s_frame("intermediate", p40),
     [{"quick_ack": 0x81020304}, {"packet": p40.hex()}])
pad3 = rbytes(3)
cdec("client_decode_padded_strips_padding", "padded_intermediate",
     s_frame("padded_intermediate", p40, pad3) + bytes.fromhex("04030281"),
     [{"packet": p40.hex()}, {"quick_ack": 0x81020304}])
cdec("client_decode_padded_alt_quick_ack", "padded_intermediate", alt(0x81020304, b"\x01\x02\x03\x04\x05", b"\x09"),
     [{"packet": ("ffffffff04030281" + "01020304")}, {"packet": "00000000"}])
cdec("client_decode_intermediate_incomplete", "intermediate", s_frame("intermediate", p40)[:20], [])
cdec("client_decode_intermediate_bit30", "intermediate", struct.pack("<I", 0x40000004) + p8[:4], [], "ReservedBit")
cdec("client_decode_intermediate_not_aligned", "intermediate", struct.pack("<I", 6) + p8[:6], [], "NotAligned")

print(json.dumps({"family": "transport", "provenance": PROV, "vectors": vectors}, indent=1))
