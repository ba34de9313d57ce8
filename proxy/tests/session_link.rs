//! The client session and the middle-end link wired together in memory, as the proxy
//! wires them, with a fake middle end (the link's server role) at the far end: under any
//! split of the client's input, any split of the link's bytes and any order of the
//! middle end's answers, the same packets reach the middle end with the same PROXY_REQ
//! flags and the client gets every answer and quick ack — what the e2e tests see through
//! real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mtproxy::protocol::obfuscated2::ClientHandshake;
use mtproxy::protocol::rpc::messages::flags;
use mtproxy::protocol::rpc::{
    LinkEvent, LinkParams, ProcessId, ProxyReqHeader, RpcLink, RpcMessage,
};
use mtproxy::protocol::session::{proxy_req_flags, ClientSession, SessionEvent, SessionRules};
use mtproxy::protocol::transport::{encode_client_frame, ClientDecoder, ServerFrame, Transport};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: i64 = 1_796_000_000;
const SECRET: [u8; 16] = [0x33; 16];
const CONN_ID: i64 = 0x40_0001;
const ALL: [Transport; 3] = [
    Transport::Abridged,
    Transport::Intermediate,
    Transport::PaddedIntermediate,
];

fn link_pair() -> (RpcLink, RpcLink) {
    let secret: Vec<u8> = (0u8..128)
        .map(|i| i.wrapping_mul(31).wrapping_add(7))
        .collect();
    let proxy: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let me: SocketAddr = "127.0.0.1:18888".parse().unwrap();
    let pid = ProcessId {
        ip: 0,
        port: 443,
        pid: 7,
        utime: 1,
    };
    (
        RpcLink::client_with_nonce(
            LinkParams::new(secret.clone(), proxy, me, pid),
            NOW,
            [1; 16],
        ),
        RpcLink::server_with_nonce(LinkParams::new(secret, me, proxy, pid), [2; 16]),
    )
}

/// Moves what `from` has for `to`, cut by `cuts`.
fn pump(
    from: &mut RpcLink,
    to: &mut RpcLink,
    inbox: &mut BytesMut,
    cuts: &[usize],
    at: &mut usize,
) -> bool {
    let mut out = BytesMut::new();
    from.poll_transmit(&mut out);
    let moved = !out.is_empty();
    while !out.is_empty() {
        let n = cuts[*at % cuts.len()].clamp(1, out.len());
        *at += 1;
        inbox.extend_from_slice(&out.split_to(n));
        to.handle_input(inbox, NOW).expect("link input");
    }
    moved
}

/// What one run observed.
#[derive(Debug, PartialEq)]
struct Seen {
    /// (payload, flags) of every PROXY_REQ the middle end received, in order.
    at_me: Vec<(Vec<u8>, u32)>,
    /// What the client decoded, sorted (the answer order is the test's choice).
    at_client: Vec<ServerFrame>,
}

fn run(
    t: Transport,
    packets: &[(Vec<u8>, bool)],
    client_cuts: &[usize],
    link_cuts: &[usize],
    answer_order: &[usize],
) -> Seen {
    let mut rng = StdRng::seed_from_u64(9);
    let mut hs = ClientHandshake::generate(&mut rng, Some(&SECRET), t, 2);
    let mut input = hs.header.to_vec();
    for (p, quick) in packets {
        let mut f = BytesMut::new();
        let pad: &[u8] = if t == Transport::PaddedIntermediate {
            &[1, 2]
        } else {
            &[]
        };
        encode_client_frame(t, p, *quick, pad, &mut f).unwrap();
        hs.encrypt.apply(&mut f);
        input.extend_from_slice(&f);
    }
    let mut session = ClientSession::new(
        Arc::new(SessionRules::new(vec![SECRET])),
        Instant::now(),
        443,
        &mut rng,
    );
    let (mut proxy, mut me) = link_pair();
    let (mut to_me, mut to_proxy) = (BytesMut::new(), BytesMut::new());
    let (mut a, mut b) = (0, 0);
    while pump(&mut proxy, &mut me, &mut to_me, link_cuts, &mut a)
        | pump(&mut me, &mut proxy, &mut to_proxy, link_cuts, &mut b)
    {}
    assert!(proxy.is_ready() && me.is_ready(), "handshake");
    while proxy.poll_event().is_some() {}
    while me.poll_event().is_some() {}

    // Client → session → link → middle end.
    let mut at_me = Vec::new();
    let mut rest = &input[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = client_cuts[i % client_cuts.len()].clamp(1, rest.len());
        i += 1;
        session.feed(&rest[..n]);
        rest = &rest[n..];
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::CheckReplay { .. } => session.replay_answer(true, None, NOW),
                SessionEvent::Forward { payload, flags } => {
                    let h = ProxyReqHeader::new(
                        flags,
                        CONN_ID,
                        "127.0.0.1:5555".parse().unwrap(),
                        "127.0.0.1:443".parse().unwrap(),
                        None,
                    );
                    proxy.send_proxy_req(&h, &payload).unwrap();
                }
                SessionEvent::Identified { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        pump(&mut proxy, &mut me, &mut to_me, link_cuts, &mut a);
        while let Some(ev) = me.poll_event() {
            if let LinkEvent::Message(RpcMessage::ProxyReq(r)) = ev {
                assert_eq!(r.header.ext_conn_id, CONN_ID);
                at_me.push((r.payload.to_vec(), r.header.flags));
            }
        }
    }

    // Middle end → link → session → client, in the test's order: a quick ack for each
    // packet that asked, and the packet reversed as its answer.
    let mut order: Vec<usize> = (0..at_me.len()).collect();
    for (k, &j) in answer_order.iter().enumerate() {
        if !order.is_empty() {
            let len = order.len();
            order.swap(k % len, j % len);
        }
    }
    for &k in &order {
        let (p, f) = &at_me[k];
        if f & flags::QUICKACK != 0 {
            me.send(&RpcMessage::SimpleAck {
                conn_id: CONN_ID,
                confirm: 0x8000_0000 | k as u32,
            })
            .unwrap();
        }
        let mut answer = p.clone();
        answer.reverse();
        me.send(&RpcMessage::ProxyAns {
            flags: 0,
            conn_id: CONN_ID,
            data: Bytes::from(answer),
        })
        .unwrap();
    }
    pump(&mut me, &mut proxy, &mut to_proxy, link_cuts, &mut b);
    while let Some(ev) = proxy.poll_event() {
        match ev {
            LinkEvent::Message(RpcMessage::ProxyAns { conn_id, data, .. }) => {
                assert_eq!(conn_id, CONN_ID);
                assert_eq!(session.handle_answer(&data), None);
            }
            LinkEvent::Message(RpcMessage::SimpleAck { conn_id, confirm }) => {
                assert_eq!(conn_id, CONN_ID);
                session.handle_quick_ack(confirm);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(session.in_flight(), 0);
    let mut wire = BytesMut::from(session.transmit());
    hs.decrypt.apply(&mut wire);
    let mut dec = ClientDecoder::new(t);
    let mut at_client = Vec::new();
    while let Some(f) = dec.decode(&mut wire).unwrap() {
        if let Some(f) = as_client_sees(t, f) {
            at_client.push(f);
        }
    }
    assert!(wire.is_empty());
    at_client.sort_by_key(|f| format!("{f:?}"));
    Seen { at_me, at_client }
}

/// Padded intermediate's two-frame quick ack (§4.3), read as TDLib and the simulator do:
/// `ff ff ff ff <confirm> [4 random]` is the quick ack, `00 00 00 00 [4 random]` is skipped.
fn as_client_sees(t: Transport, f: ServerFrame) -> Option<ServerFrame> {
    match f {
        ServerFrame::Packet(p) if t == Transport::PaddedIntermediate => {
            if let (Some([0xff, 0xff, 0xff, 0xff]), Some(c)) = (p.get(..4), p.get(4..8)) {
                return Some(ServerFrame::QuickAck(u32::from_le_bytes([
                    c[0], c[1], c[2], c[3],
                ])));
            }
            if p.len() <= 8 && p.get(..4) == Some(&[0, 0, 0, 0]) {
                return None;
            }
            Some(ServerFrame::Packet(p))
        }
        f => Some(f),
    }
}

fn packets_strategy() -> impl Strategy<Value = Vec<(Vec<u8>, bool)>> {
    prop::collection::vec((14usize..200, any::<u8>(), any::<bool>()), 1..6).prop_map(|v| {
        v.into_iter()
            .map(|(words, fill, quick)| {
                let mut p = vec![fill; words * 4];
                // A nonzero auth_key_id: an encrypted MTProto message (56+ bytes).
                p[0] = fill | 1;
                // Its answer (the packet reversed) must not start `ff ff ff ff`: a padded
                // client reads that as the two-frame quick ack (§4.3), as TDLib does.
                let last = p.len() - 1;
                p[last] = fill & 0x7f;
                (p, quick)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn session_and_link_carry_the_same_packets_under_any_split_and_order(
        t in 0usize..3,
        packets in packets_strategy(),
        client_cuts in prop::collection::vec(1usize..300, 1..6),
        link_cuts in prop::collection::vec(1usize..500, 1..6),
        answer_order in prop::collection::vec(0usize..8, 0..8),
    ) {
        let t = ALL[t];
        let whole = run(t, &packets, &[usize::MAX], &[usize::MAX], &[]);
        let cut = run(t, &packets, &client_cuts, &link_cuts, &answer_order);
        // Every packet reaches the middle end once, in order, with the e2e flags.
        let expected: Vec<(Vec<u8>, u32)> = packets
            .iter()
            .map(|(p, q)| (p.clone(), proxy_req_flags(t, false, *q)))
            .collect();
        prop_assert_eq!(&whole.at_me, &expected);
        prop_assert_eq!(&cut.at_me, &expected);
        // The client gets each answer and each quick ack, whatever the order.
        let quick = packets.iter().filter(|(_, q)| *q).count();
        prop_assert_eq!(whole.at_client.len(), packets.len() + quick);
        prop_assert_eq!(&cut.at_client, &whole.at_client);
        for (k, (p, q)) in packets.iter().enumerate() {
            let mut a = p.clone();
            a.reverse();
            prop_assert!(cut.at_client.contains(&ServerFrame::Packet(BytesMut::from(&a[..]))));
            if *q {
                prop_assert!(cut.at_client.contains(&ServerFrame::QuickAck(0x8000_0000 | k as u32)));
            }
        }
        // Observed flags as the reference records them (§5.7): intermediate with a quick
        // ack is 0xa0021000 before the proxy tag and UNENCRYPTED bits.
        if t == Transport::Intermediate {
            for ((_, f), (_, q)) in cut.at_me.iter().zip(&packets) {
                prop_assert_eq!(*f, if *q { 0xa002_1000 } else { 0x2002_1000 });
            }
        }
    }
}
