//! The bodies of the fuzz targets, one function per parser entry point of `mtproxy`.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name through
//! [`TARGETS`]; `proxy/tests/fuzz_corpus.rs` includes this file as a module and runs every
//! file of `fuzz/corpus/<name>/` through the same function on the stable toolchain. So
//! this file must use only what the `mtproxy` crate's tests can use (`mtproxy`, `bytes`,
//! `rand`), never libfuzzer.
//!
//! Every body must not panic on any input; where it is cheap it also asserts an
//! invariant (a decoder never consumes more than it was given, an accepted value encodes
//! back to the bytes it came from, ...).
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mtproxy::protocol::fake_tls::{
    classify_first_bytes, parse_probe_response, sni_domain, validate_client_hello,
    ClientRecordDecoder, DomainProfile, ReplayCache,
};
use mtproxy::protocol::obfuscated2::{parse_header, AcceptPolicy, HEADER_LEN};
use mtproxy::protocol::packet::classify;
use mtproxy::protocol::rpc::frame::{CrcMode, FrameDecoder};
use mtproxy::protocol::rpc::handshake::{Handshake, HandshakeError, Nonce, ProcessId};
use mtproxy::protocol::rpc::link::{LinkEvent, LinkParams, RpcLink};
use mtproxy::protocol::rpc::messages::RpcMessage;
use mtproxy::protocol::session::{ClientSession, SessionEvent, SessionRules};
use mtproxy::protocol::transport::{ClientDecoder, ServerDecoder, Transport};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A fuzz target body: must not panic on any input.
pub type Body = fn(&[u8]);

/// Every target: its name (the file `fuzz_targets/<name>.rs` and the folder
/// `corpus/<name>/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("fake_tls_client_hello", fake_tls_client_hello),
    ("fake_tls_sni", fake_tls_sni),
    ("fake_tls_classify", fake_tls_classify),
    ("fake_tls_records", fake_tls_records),
    ("fake_tls_probe_response", fake_tls_probe_response),
    ("transport_server", transport_server),
    ("transport_client", transport_client),
    ("packet_classify", packet_classify),
    ("session_plain", session_plain),
    ("session_tls", session_tls),
    ("rpc_frame", rpc_frame),
    ("rpc_message", rpc_message),
    ("rpc_handshake", rpc_handshake),
    ("rpc_link_client", rpc_link_client),
    ("obfuscated2_header", obfuscated2_header),
    ("multi_conf", multi_conf),
    ("cli", cli),
    ("stats_http_head", stats_http_head),
];

/// The body of target `name`, if there is one.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// A fixed "now" (unix seconds, the one most fake-TLS vectors use) so that runs are
/// reproducible and the vectors' hellos pass the timestamp check.
const NOW_UNIX: i64 = 1_750_000_000;

/// The `-S` secrets: those of `vectors/data/` (so that seeded hellos and headers get past
/// the authentication and the fuzzer explores what follows) and two simple ones.
const SECRETS_HEX: &[&str] = &[
    "0123456789abcdef0123456789abcdef",
    "dd00112233445566778899aabbccddee",
    "ffeeddccbbaa99887766554433221100",
    "11182a850538b747463f7dde31a32f77",
    "1edd9abce25390238a9a25a29391fc67",
    "297a53fcace1218f2f23d5972cae933a",
    "3837ac0ac4a564ee330673c76a3250ab",
    "46ba7e7d1b1c963dd62c12276792aa88",
    "4c42bda36e0f2b781a76013bbec5712f",
    "6f56091be6e88b187ff63ccca0066c33",
    "7aa3d5ecf74306558133b575cebc1d35",
    "8859cecbc13a21917b6ca8fa648d1097",
    "8a6115585e6b2544ca671ca2ff2eb276",
    "91edcc3aa25ea3bc8f558327fe9d56a8",
    "9cc49718724ceb27d90ba272c1903f05",
    "b1f5c892ad1ee9aa0ee97ee118bbc43b",
    "c02545ea05669f92accd123953fe7f95",
    "c4fc32deb53d85f3b1675960b8b450a9",
    "eaab926793b5f80ea7cbfaca3dc6417d",
    "eb237fa5c8be11fa78732d6c7a25c901",
    "f38efd9edbbb11c037ab215705aed513",
    "f4e8d3f841f4a687c277a795f7cac622",
    "f9e75e64c3d46de234c5de85539b1135",
    "ff12339454af8825f5ee3119db778353",
    "42424242424242424242424242424242",
    "00000000000000000000000000000000",
];

/// [`SECRETS_HEX`] as bytes.
fn secrets() -> Vec<[u8; 16]> {
    SECRETS_HEX
        .iter()
        .map(|h| {
            let mut s = [0u8; 16];
            for (i, b) in s.iter_mut().enumerate() {
                *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex secret");
            }
            s
        })
        .collect()
}

/// The `-D` names: those of the vectors, and one more.
fn domains() -> Vec<String> {
    [
        "default.example",
        "www.google.com",
        "cdn.example.org",
        "example.com",
    ]
    .map(String::from)
    .to_vec()
}

/// Splits `data` into chunks whose sizes come from `data` itself (first byte: the seed).
fn chunks(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&c, rest)) => (usize::from(c % 64) + 1, rest),
        None => (1, data),
    }
}

/// `fake_tls::validate_client_hello` with a replay cache, the input as the record; the
/// same record twice must not be accepted twice.
pub fn fake_tls_client_hello(data: &[u8]) {
    let mut cache = ReplayCache::with_max_entries(16);
    let domains = domains();
    let secrets = secrets();
    let first = validate_client_hello(data, 0, &domains, &secrets, NOW_UNIX, &mut cache);
    let second = validate_client_hello(data, 0, &domains, &secrets, NOW_UNIX, &mut cache);
    assert!(
        !(first.is_ok() && second.is_ok()),
        "a replayed hello was accepted"
    );
    if let Err(e) = first {
        assert!(
            e.splice_domain() < domains.len(),
            "splice domain out of range"
        );
        let _ = e.class();
    }
    let _ = validate_client_hello(data, 1, &domains, &secrets, NOW_UNIX, &mut cache);
}

/// `fake_tls::sni_domain`: the index returned is in range.
pub fn fake_tls_sni(data: &[u8]) {
    let domains = domains();
    if let Some(i) = sni_domain(data, &domains) {
        assert!(i < domains.len());
    }
}

/// `fake_tls::classify_first_bytes` on every prefix of the input.
pub fn fake_tls_classify(data: &[u8]) {
    for n in 0..=data.len().min(16) {
        let _ = classify_first_bytes(&data[..n]);
    }
}

/// `fake_tls::ClientRecordDecoder::decode` fed in chunks: it never consumes more than it
/// was given, nor yields more payload than it consumed.
pub fn fake_tls_records(data: &[u8]) {
    let (cut, data) = chunks(data);
    let mut dec = ClientRecordDecoder::new();
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut yielded = 0usize;
    'outer: for chunk in data.chunks(cut) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let r = dec.decode(&mut buf);
            assert!(buf.len() <= before, "the decoder grew its input");
            consumed += before - buf.len();
            match r {
                Ok(Some(payload)) => yielded += payload.len(),
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(consumed <= fed);
    assert!(yielded <= consumed);
}

/// `fake_tls::parse_probe_response` on every prefix length the chunking gives.
pub fn fake_tls_probe_response(data: &[u8]) {
    let session_id = [0x5a; 32];
    let (cut, data) = chunks(data);
    let mut end = 0;
    loop {
        end = (end + cut).min(data.len());
        match parse_probe_response(&data[..end], &session_id) {
            Ok(Some(facts)) => {
                assert!(facts.consumed <= end, "consumed more than given");
                break;
            }
            Ok(None) => {}
            Err(_) => break,
        }
        if end == data.len() {
            break;
        }
    }
}

/// `transport::ServerDecoder::decode` (the proxy reading a client), the transport taken
/// from the first byte, the rest fed in chunks.
pub fn transport_server(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let transport = transport_of(sel);
    let (cut, rest) = chunks(rest);
    let mut dec = ServerDecoder::new(transport);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    'outer: for chunk in rest.chunks(cut) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let r = dec.decode(&mut buf);
            assert!(buf.len() <= before);
            consumed += before - buf.len();
            match r {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= before - buf.len());
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(consumed <= fed);
}

/// `transport::ClientDecoder::decode` (a client reading the proxy), as [`transport_server`].
pub fn transport_client(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let transport = transport_of(sel);
    let (cut, rest) = chunks(rest);
    let mut dec = ClientDecoder::new(transport);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    'outer: for chunk in rest.chunks(cut) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let r = dec.decode(&mut buf);
            assert!(buf.len() <= before);
            consumed += before - buf.len();
            match r {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(consumed <= fed);
}

fn transport_of(sel: u8) -> Transport {
    match sel % 3 {
        0 => Transport::Abridged,
        1 => Transport::Intermediate,
        _ => Transport::PaddedIntermediate,
    }
}

/// `packet::classify` on the whole input.
pub fn packet_classify(data: &[u8]) {
    let _ = classify(data);
}

/// Drives a [`ClientSession`] with `data` in chunks, answering its requests.
fn drive_session(rules: SessionRules, data: &[u8]) {
    let (cut, data) = chunks(data);
    let fresh = data.first().is_none_or(|b| b & 1 == 0);
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(2);
    let mut s = ClientSession::new(Arc::new(rules), now, 443, &mut rng);
    for chunk in data.chunks(cut) {
        s.feed(chunk);
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::CheckReplay { .. } => {
                    s.replay_answer(fresh, Some(NOW_UNIX - 5), NOW_UNIX);
                }
                SessionEvent::HelloAccepted { .. } => {
                    let mut rng = StdRng::seed_from_u64(1);
                    s.send_server_hello(&DomainProfile::fallback(&mut rng), &mut rng);
                }
                SessionEvent::Forward { .. } => {
                    let _ = s.handle_answer(&[1; 8]);
                    s.handle_quick_ack(7);
                }
                _ => {}
            }
        }
        let n = s.transmit().len();
        s.advance_transmit(n);
    }
    s.handle_timeout(now + Duration::from_secs(60));
    while s.poll_event().is_some() {}
}

/// A [`ClientSession`] without `-D` (obfuscated2 first), bytes in arbitrary chunks.
pub fn session_plain(data: &[u8]) {
    drive_session(SessionRules::new(secrets()), data);
}

/// A [`ClientSession`] with `-D` domains (the fake-TLS front door), bytes in chunks.
pub fn session_tls(data: &[u8]) {
    let mut rules = SessionRules::new(secrets());
    rules.domains = domains();
    rules.accept_policy = AcceptPolicy { padded_only: true };
    drive_session(rules, data);
}

/// `rpc::frame::FrameDecoder::decode` in both CRC modes, fed in chunks.
pub fn rpc_frame(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let crc = if sel & 1 == 0 {
        CrcMode::Crc32
    } else {
        CrcMode::Crc32c
    };
    let first_seq = if sel & 2 == 0 { -2 } else { 0 };
    let max_len = if sel & 4 == 0 { usize::MAX } else { 1 << 12 };
    let (cut, rest) = chunks(rest);
    let mut dec = FrameDecoder::new(crc, first_seq, max_len);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    'outer: for chunk in rest.chunks(cut) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            let r = dec.decode(&mut buf);
            assert!(buf.len() <= before);
            consumed += before - buf.len();
            match r {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= before - buf.len());
                    let _ = RpcMessage::decode(frame.payload.freeze());
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(consumed <= fed);
}

/// `rpc::messages::RpcMessage::decode`: what decodes encodes back to the same length.
pub fn rpc_message(data: &[u8]) {
    if let Ok(msg) = RpcMessage::decode(Bytes::copy_from_slice(data)) {
        let _ = msg.op();
        let mut out = BytesMut::new();
        msg.encode(&mut out);
        assert_eq!(
            out.len(),
            msg.encoded_len(),
            "encoded_len disagrees with encode"
        );
    }
}

/// The handshake decoders (`Nonce`, `Handshake`, `HandshakeError`): what decodes,
/// re-encodes and decodes to the same value.
pub fn rpc_handshake(data: &[u8]) {
    if let Ok(n) = Nonce::decode(data) {
        let mut out = BytesMut::new();
        n.encode(&mut out);
        assert_eq!(out.len(), n.encoded_len());
        assert_eq!(
            Nonce::decode(&out).ok().as_ref(),
            Some(&n),
            "nonce round trip"
        );
    }
    if let Ok(h) = Handshake::decode(data) {
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(
            Handshake::decode(&out).ok().as_ref(),
            Some(&h),
            "handshake round trip"
        );
    }
    if let Ok(e) = HandshakeError::decode(data) {
        let mut out = BytesMut::new();
        e.encode(&mut out);
        assert_eq!(
            HandshakeError::decode(&out).ok().as_ref(),
            Some(&e),
            "handshake error round trip"
        );
    }
}

/// The proxy-secret both sides of [`rpc_link_client`] share.
fn link_secret() -> Vec<u8> {
    (0u8..128)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// Moves everything `from` has queued into `to` (in one piece).
fn pump(from: &mut RpcLink, to: &mut RpcLink, inbox: &mut BytesMut) -> Result<bool, ()> {
    let mut out = BytesMut::new();
    from.poll_transmit(&mut out);
    if out.is_empty() {
        return Ok(false);
    }
    inbox.extend_from_slice(&out);
    to.handle_input(inbox, NOW_UNIX).map_err(drop)?;
    Ok(true)
}

/// `RpcLink` in the client role after a real in-memory handshake against
/// `RpcLink::server_with_nonce`: the input is cut into messages (`0xff` bytes separate
/// them, each padded to whole words), which the server side sends encrypted; the client
/// decodes them. The fuzzer thus controls the plaintext of every post-handshake message.
pub fn rpc_link_client(data: &[u8]) {
    let proxy: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001);
    let me: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 18888);
    let proxy_pid = ProcessId {
        ip: 0,
        port: 18080,
        pid: 4242,
        utime: 1_699_999_000,
    };
    let me_pid = ProcessId {
        ip: 0x7f00_0001,
        port: 18888,
        pid: 1,
        utime: 5,
    };
    let mut client_params = LinkParams::new(link_secret(), proxy, me, proxy_pid);
    let crc32c = data.first().is_none_or(|b| b & 1 == 0);
    client_params.crc32c = crc32c;
    let server_params = LinkParams::new(link_secret(), me, proxy, me_pid);
    let mut c = RpcLink::client_with_nonce(client_params, NOW_UNIX, [0xc1; 16]);
    let mut s = RpcLink::server_with_nonce(server_params, [0x5e; 16]);
    let (mut c2s, mut s2c) = (BytesMut::new(), BytesMut::new());
    loop {
        let a = pump(&mut c, &mut s, &mut c2s).expect("handshake: server side failed");
        let b = pump(&mut s, &mut c, &mut s2c).expect("handshake: client side failed");
        if !a && !b {
            break;
        }
    }
    assert!(
        c.is_ready() && s.is_ready(),
        "the in-memory handshake did not complete"
    );
    while c.poll_event().is_some() {}
    while s.poll_event().is_some() {}

    for piece in data.get(1..).unwrap_or_default().split(|&b| b == 0xff) {
        let mut payload = piece.to_vec();
        payload.resize(payload.len().max(4).next_multiple_of(4), 0);
        let op = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let msg = RpcMessage::Unknown {
            op,
            body: Bytes::copy_from_slice(&payload[4..]),
        };
        s.send(&msg)
            .expect("the server link refused a whole-word payload");
        let mut out = BytesMut::new();
        s.poll_transmit(&mut out);
        s2c.extend_from_slice(&out);
        if c.handle_input(&mut s2c, NOW_UNIX).is_err() {
            return;
        }
        while let Some(e) = c.poll_event() {
            if let LinkEvent::Message(m) = e {
                let _ = m.encoded_len();
            }
        }
        // The client's answers (PONGs) go back to the server, which must accept them.
        let mut back = BytesMut::new();
        c.poll_transmit(&mut back);
        c2s.extend_from_slice(&back);
        s.handle_input(&mut c2s, NOW_UNIX)
            .expect("the server rejected the client's answer");
        while s.poll_event().is_some() {}
    }
}

/// `obfuscated2::parse_header` on the first 64 bytes (zero padded), with the secrets,
/// secretless, and padded only.
pub fn obfuscated2_header(data: &[u8]) {
    let secrets = secrets();
    let mut hdr = [0u8; HEADER_LEN];
    let n = data.len().min(HEADER_LEN);
    hdr[..n].copy_from_slice(&data[..n]);
    for (secrets, padded_only) in [
        (&secrets[..], false),
        (&[][..], false),
        (&secrets[..], true),
    ] {
        if let Some(hs) = parse_header(&hdr, secrets, AcceptPolicy { padded_only }) {
            if let Some(i) = hs.secret_index {
                assert!(i < secrets.len());
            }
            if padded_only {
                assert_eq!(hs.transport, Transport::PaddedIntermediate);
            }
        }
    }
}

/// `config::multi_conf::parse_multi_conf` with a resolver that knows `localhost`.
pub fn multi_conf(data: &[u8]) {
    let resolve = |host: &str| (host == "localhost").then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let _ = mtproxy::config::multi_conf::parse_multi_conf(data, "fuzz.conf", &resolve);
}

/// `config::cli::parse_from`, argv split on NUL bytes (argv\[0\] first), lossy UTF-8.
pub fn cli(data: &[u8]) {
    let argv: Vec<String> = std::iter::once("mtproto-proxy".to_string())
        .chain(
            data.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        )
        .collect();
    if let Ok(o) = mtproxy::config::cli::parse_from(argv) {
        let _ = o.check_tls_secrets();
        let _ = o.tls_workers_warning();
        let _ = o.check_stats_port();
    }
}

/// `net::stats_http::find_head_end`: where a request head ends, inside the input.
pub fn stats_http_head(data: &[u8]) {
    use mtproxy::net::stats_http::{classify, find_head_end, Route};
    use std::net::{IpAddr, Ipv4Addr};
    let Some(i) = find_head_end(data) else { return };
    assert!(i < data.len());
    let head = &data[..i];
    let local = classify(head, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let remote = classify(head, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    // Only loopback reads the counters; a remote peer gets 404 or 501, never more.
    assert!(matches!(remote, Route::NotFound | Route::NotImplemented));
    match local {
        Route::Stats => assert!(head.starts_with(b"GET /stats")),
        Route::Metrics => assert!(head.starts_with(b"GET /metrics")),
        Route::NotImplemented => assert_eq!(remote, Route::NotImplemented),
        Route::NotFound => assert_eq!(remote, Route::NotFound),
    }
}
