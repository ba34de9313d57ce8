//! Both roles against each other in memory.

use super::*;
use crate::protocol::rpc::frame::PADDING_WORD;
use crate::protocol::rpc::messages::flags;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;

fn secret() -> Vec<u8> {
    (0u8..128)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

fn proxy_pid() -> ProcessId {
    ProcessId {
        ip: 0,
        port: 18080,
        pid: 4242,
        utime: 1_699_999_000,
    }
}

fn me_pid() -> ProcessId {
    ProcessId {
        ip: 0x7f00_0001,
        port: 18888,
        pid: 1,
        utime: 5,
    }
}

fn pair_params() -> (LinkParams, LinkParams) {
    let proxy: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let me: SocketAddr = "127.0.0.1:18888".parse().unwrap();
    (
        LinkParams::new(secret(), proxy, me, proxy_pid()),
        LinkParams::new(secret(), me, proxy, me_pid()),
    )
}

fn links(c: LinkParams, s: LinkParams) -> (RpcLink, RpcLink) {
    (
        RpcLink::client_with_nonce(c, NOW, [0xc1; 16]),
        RpcLink::server_with_nonce(s, [0x5e; 16]),
    )
}

/// One direction: the receiver's inbox (leftover bytes) and the chunk sizes to cut with.
struct Pipe {
    inbox: BytesMut,
    chunks: Vec<usize>,
    at: usize,
}

impl Pipe {
    fn new(chunks: Vec<usize>) -> Self {
        Self {
            inbox: BytesMut::new(),
            chunks,
            at: 0,
        }
    }

    fn deliver(&mut self, from: &mut RpcLink, to: &mut RpcLink) -> Result<bool, LinkError> {
        let mut out = BytesMut::new();
        from.poll_transmit(&mut out);
        let moved = !out.is_empty();
        while !out.is_empty() {
            let n = if self.chunks.is_empty() {
                out.len()
            } else {
                self.at += 1;
                self.chunks[(self.at - 1) % self.chunks.len()]
            };
            let n = n.clamp(1, out.len());
            self.inbox.extend_from_slice(&out.split_to(n));
            to.handle_input(&mut self.inbox, NOW)?;
        }
        Ok(moved)
    }
}

/// Which side failed first, and how.
#[derive(Debug, PartialEq)]
enum Failure {
    Client(LinkError),
    Server(LinkError),
}

fn settle(c: &mut RpcLink, s: &mut RpcLink, c2s: &mut Pipe, s2c: &mut Pipe) -> Result<(), Failure> {
    loop {
        let a = c2s.deliver(c, s).map_err(Failure::Server)?;
        let b = s2c.deliver(s, c).map_err(Failure::Client)?;
        if !a && !b {
            return Ok(());
        }
    }
}

fn events(l: &mut RpcLink) -> Vec<LinkEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn req_header() -> ProxyReqHeader {
    ProxyReqHeader::new(
        flags::QUICKACK | flags::MEDIUM | flags::EXTMODE2 | flags::EXT | flags::UNENCRYPTED,
        0x40000c,
        "127.0.0.1:36476".parse().unwrap(),
        "127.0.0.1:18443".parse().unwrap(),
        Some([0xfe; 16]),
    )
}

/// A full session: handshake, a PROXY_REQ, the ME's ACK/ANS/PING/unknown, CLOSE_CONN.
fn session(
    c: LinkParams,
    s: LinkParams,
    cs: Vec<usize>,
    sc: Vec<usize>,
) -> (Vec<LinkEvent>, Vec<LinkEvent>) {
    let (mut cl, mut sv) = links(c, s);
    let (mut c2s, mut s2c) = (Pipe::new(cs), Pipe::new(sc));
    settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
    assert!(cl.is_ready() && sv.is_ready());
    cl.send_proxy_req(&req_header(), &[0x11; 40]).unwrap();
    cl.send(&RpcMessage::CloseConn { conn_id: 7 }).unwrap();
    settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
    sv.send(&RpcMessage::SimpleAck {
        conn_id: 0x40000c,
        confirm: 0x1234_5678,
    })
    .unwrap();
    sv.send(&RpcMessage::ProxyAns {
        flags: 0,
        conn_id: 0x40000c,
        data: Bytes::from_static(&[0x22; 52]),
    })
    .unwrap();
    sv.send(&RpcMessage::Ping { ping_id: -5 }).unwrap();
    sv.send(&RpcMessage::Unknown {
        op: 0xdead_beef,
        body: Bytes::from_static(&[1, 2, 3, 4]),
    })
    .unwrap();
    sv.send(&RpcMessage::Unknown {
        op: crate::protocol::rpc::messages::RPC_SIMPLE_ACK,
        body: Bytes::from_static(&[0; 8]),
    })
    .unwrap();
    settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
    (events(&mut cl), events(&mut sv))
}

fn check_session(cev: &[LinkEvent], sev: &[LinkEvent], crc32c: bool) {
    assert_eq!(
        cev[0],
        LinkEvent::HandshakeDone {
            crc32c,
            peer_flags: if crc32c { 0x800 } else { 0 },
            peer_pid: me_pid(),
        }
    );
    assert_eq!(
        sev[0],
        LinkEvent::HandshakeDone {
            crc32c,
            peer_flags: 0x800,
            peer_pid: proxy_pid(),
        }
    );
    let LinkEvent::Message(RpcMessage::ProxyReq(req)) = &sev[1] else {
        panic!("{:?}", sev[1])
    };
    assert_eq!(req.header, req_header());
    assert_eq!(&req.payload[..], &[0x11; 40]);
    assert_eq!(
        sev[2],
        LinkEvent::Message(RpcMessage::CloseConn { conn_id: 7 })
    );
    assert_eq!(sev[3], LinkEvent::Message(RpcMessage::Pong { ping_id: -5 }));
    assert_eq!(sev.len(), 4);
    assert_eq!(
        cev[1],
        LinkEvent::Message(RpcMessage::SimpleAck {
            conn_id: 0x40000c,
            confirm: 0x1234_5678
        })
    );
    assert!(
        matches!(&cev[2], LinkEvent::Message(RpcMessage::ProxyAns { data, .. }) if data.len() == 52)
    );
    assert_eq!(cev[3], LinkEvent::Message(RpcMessage::Ping { ping_id: -5 }));
    assert!(matches!(
        cev[4],
        LinkEvent::Message(RpcMessage::Unknown {
            op: 0xdead_beef,
            ..
        })
    ));
    assert!(matches!(cev[5], LinkEvent::Malformed { len: 12, .. }));
    assert_eq!(cev.len(), 6);
}

#[test]
fn roles_complete_a_session_with_crc32c() {
    let (c, s) = pair_params();
    let (cev, sev) = session(c, s, vec![], vec![]);
    check_session(&cev, &sev, true);
}

#[test]
fn roles_complete_a_session_with_crc32_when_the_me_declines() {
    let (c, mut s) = pair_params();
    s.server.accept_crc32c = false;
    let (cev, sev) = session(c, s, vec![], vec![]);
    check_session(&cev, &sev, false);
}

#[test]
fn byte_by_byte_delivery_gives_the_same_events() {
    let (c, s) = pair_params();
    let whole = session(c.clone(), s.clone(), vec![], vec![]);
    let bytewise = session(c, s, vec![1], vec![1, 3, 16, 5]);
    assert_eq!(whole, bytewise);
}

#[test]
fn client_sends_plain_nonce_then_padded_cbc_handshake() {
    let (c, s) = pair_params();
    let (mut cl, mut sv) = links(c, s);
    let mut out = BytesMut::new();
    cl.poll_transmit(&mut out);
    assert_eq!(out.len(), 44);
    assert_eq!(
        &out[..12],
        &[0x2c, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xaa, 0x87, 0xcb, 0x7a]
    );
    assert_eq!(&out[12..16], &key_select_of(&secret()).to_le_bytes());
    assert_eq!(&out[16..20], &[1, 0, 0, 0]);
    assert_eq!(&out[20..24], &(NOW as i32).to_le_bytes());
    assert_eq!(&out[24..40], &[0xc1; 16]);
    sv.handle_input(&mut out, NOW).unwrap();
    let mut reply = BytesMut::new();
    sv.poll_transmit(&mut reply);
    assert_eq!(reply.len(), 44, "the server's nonce is plaintext and alone");
    cl.handle_input(&mut reply, NOW).unwrap();
    let mut hs = BytesMut::new();
    cl.poll_transmit(&mut hs);
    assert_eq!(
        hs.len(),
        48,
        "44-byte handshake frame padded with one 04000000 word"
    );
    // Decrypt with the server's read keys to see the padding word.
    let keys = link_keys(
        &KeyInputs {
            nonce_server: [0x5e; 16],
            nonce_client: [0xc1; 16],
            client_ts: NOW as i32,
            addrs: KeyAddrs::V4 {
                server_ip: "127.0.0.1".parse().unwrap(),
                client_ip: "127.0.0.1".parse().unwrap(),
            },
            server_port: 18888,
            client_port: 40001,
            secret: &secret(),
        },
        false,
    )
    .unwrap();
    let mut plain = hs.clone();
    CbcDecryptor::new(&keys.read_key, &keys.read_iv)
        .decrypt(&mut plain)
        .unwrap();
    assert_eq!(&plain[..8], &[0x2c, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(&plain[44..], &PADDING_WORD);
    sv.handle_input(&mut hs, NOW).unwrap();
    assert!(sv.is_ready());
}

#[test]
fn send_before_handshake_is_refused() {
    let (c, _) = pair_params();
    let mut cl = RpcLink::client_with_nonce(c, NOW, [0; 16]);
    assert_eq!(
        cl.send(&RpcMessage::Ping { ping_id: 1 }),
        Err(LinkError::NotReady)
    );
    assert_eq!(
        cl.send_proxy_req(&req_header(), &[0; 4]),
        Err(LinkError::NotReady)
    );
}

fn fail_with(c: LinkParams, s: LinkParams) -> Failure {
    let (mut cl, mut sv) = links(c, s);
    let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
    settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap_err()
}

fn client_code(f: Failure) -> i32 {
    match f {
        Failure::Client(e) => e.c_code().unwrap(),
        Failure::Server(e) => panic!("server failed first: {e}"),
    }
}

#[test]
fn client_refuses_bad_me_nonces_with_c_codes() {
    let (c, mut s) = pair_params();
    s.server.nonce_key_select = Some(0x0bad_0bad);
    assert_eq!(client_code(fail_with(c.clone(), s)), -3);

    let (_, mut s) = pair_params();
    s.server.nonce_ts_offset = 31;
    assert_eq!(client_code(fail_with(c.clone(), s)), -6);
    let (_, mut s) = pair_params();
    s.server.nonce_ts_offset = -30;
    assert!(client_code_ok(c.clone(), s));

    let (_, mut s) = pair_params();
    s.server.nonce_schema = Some(NonceSchema::None);
    assert_eq!(client_code(fail_with(c.clone(), s)), -3);
    let (_, mut s) = pair_params();
    s.server.nonce_schema = Some(NonceSchema::None);
    s.server.nonce_key_select = Some(0);
    assert_eq!(client_code(fail_with(c.clone(), s)), -5);

    let (_, mut s) = pair_params();
    s.server.nonce_schema = Some(NonceSchema::AesDh {
        extra_key_select: vec![],
        dh_params_select: crate::protocol::rpc::handshake::DH_PARAMS_SELECT,
        g_a: Box::new([3; 256]),
    });
    assert_eq!(client_code(fail_with(c, s)), -7);
}

fn client_code_ok(c: LinkParams, s: LinkParams) -> bool {
    let (mut cl, mut sv) = links(c, s);
    let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
    settle(&mut cl, &mut sv, &mut c2s, &mut s2c).is_ok() && cl.is_ready()
}

#[test]
fn client_refuses_bad_me_handshakes_and_answers_handshake_error() {
    let (c, mut s) = pair_params();
    s.server.reply_peer_pid = Some(ProcessId {
        pid: 9,
        ..proxy_pid()
    });
    // CRC32 both ways: the client's error frame uses CRC32 (it never switched), as in C.
    s.server.accept_crc32c = false;
    let (mut cl, mut sv) = links(c.clone(), s);
    let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
    let err = settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap_err();
    assert_eq!(client_code(err), -4);
    // The client queued RPC_HANDSHAKE_ERROR(-4) at seq 0; the server sees it as a message.
    c2s.deliver(&mut cl, &mut sv).unwrap();
    let ev = events(&mut sv);
    assert!(matches!(
        ev.last(),
        Some(LinkEvent::Message(RpcMessage::HandshakeError(
            HandshakeError { error_code: -4, .. }
        )))
    ));
    assert_eq!(
        cl.handle_input(&mut BytesMut::new(), NOW),
        Err(LinkError::Closed)
    );

    let (_, mut s) = pair_params();
    s.server.reply_peer_pid = Some(ProcessId::default());
    assert!(
        client_code_ok(c.clone(), s),
        "a zero peer_pid matches anything"
    );

    let (_, mut s) = pair_params();
    s.server.reply_flags = Some(0x801);
    assert_eq!(client_code(fail_with(c.clone(), s)), -7);

    let (mut c2, mut s) = pair_params();
    c2.crc32c = false;
    s.server.reply_flags = Some(0x800);
    assert_eq!(client_code(fail_with(c2, s)), -8);
}

#[test]
fn server_refuses_bad_proxy_nonce_and_handshake() {
    let (mut c, s) = pair_params();
    c.key_select ^= 1;
    match fail_with(c, s) {
        Failure::Server(e) => assert_eq!(e.c_code(), Some(-3)),
        f => panic!("{f:?}"),
    }
    let (c, mut s) = pair_params();
    s.server.check_peer_pid = true;
    s.our_pid.port = 1234;
    match fail_with(c, s) {
        Failure::Server(e) => assert_eq!(
            e,
            LinkError::Handshake(HandshakeReject::PeerPid {
                peer_pid: client_peer_pid("127.0.0.1:18888".parse().unwrap()),
                ours: ProcessId {
                    port: 1234,
                    ..me_pid()
                },
            })
        ),
        f => panic!("{f:?}"),
    }
    // Same key select, different secret: the CBC keys differ, the handshake frame is garbage.
    let (c, mut s) = pair_params();
    if let Some(b) = s.secret.last_mut() {
        *b ^= 1;
    }
    match fail_with(c, s) {
        Failure::Server(LinkError::Frame(_)) => {}
        f => panic!("{f:?}"),
    }
}

#[test]
fn nonce_with_handshake_in_the_same_read_is_split_at_the_cbc_switch() {
    // The client's nonce and its (already encrypted) handshake arrive in one buffer.
    let (c, s) = pair_params();
    let (mut cl, mut sv) = links(c, s);
    let mut to_server = BytesMut::new();
    cl.poll_transmit(&mut to_server);
    let mut probe = RpcLink::server_with_nonce(pair_params().1, [0x5e; 16]);
    probe.handle_input(&mut to_server.clone(), NOW).unwrap();
    let mut reply = BytesMut::new();
    probe.poll_transmit(&mut reply);
    cl.handle_input(&mut reply, NOW).unwrap();
    cl.poll_transmit(&mut to_server);
    assert_eq!(to_server.len(), 44 + 48);
    sv.handle_input(&mut to_server, NOW).unwrap();
    assert!(sv.is_ready());
}

#[test]
fn ipv6_links_handshake() {
    let proxy: SocketAddr = "[2001:db8::2]:40001".parse().unwrap();
    let me: SocketAddr = "[2001:db8::1]:18888".parse().unwrap();
    let c = LinkParams::new(secret(), proxy, me, proxy_pid());
    let s = LinkParams::new(secret(), me, proxy, me_pid());
    assert!(client_code_ok(c, s));
    let mixed = LinkParams::new(secret(), "127.0.0.1:1".parse().unwrap(), me, proxy_pid());
    let s = LinkParams::new(secret(), me, proxy, me_pid());
    assert_eq!(client_code(fail_with(mixed, s)), -6);
}

#[test]
fn peer_pid_hides_loopback_me_ip() {
    assert_eq!(client_peer_pid("127.0.0.1:18888".parse().unwrap()).ip, 0);
    let p = client_peer_pid("149.154.175.50:8888".parse().unwrap());
    assert_eq!((p.ip, p.port), (0x959a_af32, 8888));
}

proptest! {
    #[test]
    fn link_is_split_invariant(
        cs in proptest::collection::vec(1usize..64, 0..8),
        sc in proptest::collection::vec(1usize..64, 0..8),
        crc32c in any::<bool>(),
    ) {
        let (c, mut s) = pair_params();
        s.server.accept_crc32c = crc32c;
        let whole = session(c.clone(), s.clone(), vec![], vec![]);
        let split = session(c, s, cs, sc);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn client_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400), ready in any::<bool>()) {
        let (c, s) = pair_params();
        let (mut cl, mut sv) = links(c, s);
        if ready {
            let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
            settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
        }
        let mut b = BytesMut::from(&data[..]);
        let _ = cl.handle_input(&mut b, NOW);
        let _ = sv.handle_input(&mut BytesMut::from(&data[..]), NOW);
        let mut sink = BytesMut::new();
        cl.poll_transmit(&mut sink);
        sv.poll_transmit(&mut sink);
    }

    #[test]
    fn links_survive_arbitrary_valid_frames_after_handshake(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..6),
    ) {
        // Well-framed, correctly encrypted garbage payloads must never panic the receiver.
        let (c, s) = pair_params();
        let (mut cl, mut sv) = links(c, s);
        let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
        settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
        for p in &payloads {
            let mut w = p.clone();
            w.resize(p.len().div_ceil(4).max(1) * 4, 0);
            let op = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let _ = sv.send(&RpcMessage::Unknown { op, body: Bytes::copy_from_slice(&w[4..]) });
        }
        let _ = settle(&mut cl, &mut sv, &mut c2s, &mut s2c);
        let _ = events(&mut cl);
    }
}

#[test]
fn sealing_several_links_gives_the_bytes_poll_transmit_gives() {
    // Two identical pairs per lane: one lane flushes with `seal_pending` over every link,
    // its twin with plain `poll_transmit`. The wire bytes must not differ.
    let ready = || {
        let (c, s) = pair_params();
        let (mut cl, mut sv) = links(c, s);
        let (mut c2s, mut s2c) = (Pipe::new(vec![]), Pipe::new(vec![]));
        settle(&mut cl, &mut sv, &mut c2s, &mut s2c).unwrap();
        assert!(cl.is_ready() && sv.is_ready());
        let _ = events(&mut cl);
        let _ = events(&mut sv);
        (cl, sv)
    };
    let mut sealed: Vec<(RpcLink, RpcLink)> = (0..3).map(|_| ready()).collect();
    let mut plain: Vec<(RpcLink, RpcLink)> = (0..3).map(|_| ready()).collect();
    for round in 0..3usize {
        for (i, ((a, _), (b, _))) in sealed.iter_mut().zip(plain.iter_mut()).enumerate() {
            // Lane i sends i + round requests of different sizes (some lanes none).
            for k in 0..(i + round) % 3 {
                let payload = vec![(i * 10 + k) as u8; 4 * (k + i + round + 1)];
                a.send_proxy_req(&req_header(), &payload).unwrap();
                b.send_proxy_req(&req_header(), &payload).unwrap();
            }
        }
        let mut refs: Vec<&mut RpcLink> = sealed.iter_mut().map(|(c, _)| c).collect();
        RpcLink::seal_pending(&mut refs);
        for ((a, sa), (b, _)) in sealed.iter_mut().zip(plain.iter_mut()) {
            assert_eq!(a.pending_len(), 0);
            let (mut wa, mut wb) = (BytesMut::new(), BytesMut::new());
            a.poll_transmit(&mut wa);
            b.poll_transmit(&mut wb);
            assert_eq!(wa, wb, "round {round}");
            sa.handle_input(&mut wa, NOW).unwrap();
            assert!(events(sa)
                .iter()
                .all(|e| matches!(e, LinkEvent::Message(RpcMessage::ProxyReq(_)))));
        }
    }
}
