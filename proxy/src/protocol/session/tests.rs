use std::time::{Duration, Instant};

use bytes::BytesMut;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::protocol::fake_tls::{
    build_client_hello, verify_server_hello, HelloShape, APP_DATA_HEADER, CHANGE_CIPHER_SPEC,
};
use crate::protocol::obfuscated2::ClientHandshake;
use crate::protocol::packet::{RPC_PING, RPC_PONG};
use crate::protocol::transport::{encode_client_frame, ClientDecoder, ServerFrame};

const SECRET: [u8; 16] = [0x42; 16];
const ALL: [Transport; 3] = [
    Transport::Abridged,
    Transport::Intermediate,
    Transport::PaddedIntermediate,
];
const NOW_UNIX: i64 = 1_796_000_000;

fn rules() -> Arc<SessionRules> {
    Arc::new(SessionRules::new(vec![[1; 16], SECRET]))
}

fn tls_rules() -> Arc<SessionRules> {
    let mut r = SessionRules::new(vec![SECRET]);
    r.domains = vec!["example.com".into(), "example.org".into()];
    r.accept_policy = AcceptPolicy { padded_only: true };
    Arc::new(r)
}

/// An encrypted MTProto packet (nonzero auth_key_id, 56+ bytes) numbered `n`.
fn packet(n: u8, len: usize) -> Vec<u8> {
    let mut p = vec![n; len];
    p[..8].copy_from_slice(&[n | 1, 2, 3, 4, 5, 6, 7, 8]);
    p
}

/// A key-exchange request (auth_key_id 0, req_pq_multi).
fn unencrypted_packet() -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[16..20].copy_from_slice(&20i32.to_le_bytes());
    p[20..24].copy_from_slice(&0xbe7e_8ef1u32.to_le_bytes());
    p
}

/// A client: its header and streams.
struct Client {
    hs: ClientHandshake,
    transport: Transport,
    decoder: ClientDecoder,
    rx: BytesMut,
}

impl Client {
    fn new(transport: Transport, secret: Option<&[u8; 16]>, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            hs: ClientHandshake::generate(&mut rng, secret, transport, 2),
            transport,
            decoder: ClientDecoder::new(transport),
            rx: BytesMut::new(),
        }
    }

    /// One encrypted frame.
    fn frame(&mut self, payload: &[u8], quick_ack: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        let pad: &[u8] = if self.transport == Transport::PaddedIntermediate {
            &[7, 7]
        } else {
            &[]
        };
        encode_client_frame(self.transport, payload, quick_ack, pad, &mut out).unwrap();
        self.hs.encrypt.apply(&mut out);
        out.to_vec()
    }

    /// Decrypts and decodes what the proxy sent.
    fn receive(&mut self, wire: &[u8]) -> Vec<ServerFrame> {
        let mut b = BytesMut::from(wire);
        self.hs.decrypt.apply(&mut b);
        self.rx.extend_from_slice(&b);
        let mut out = Vec::new();
        while let Some(f) = self.decoder.decode(&mut self.rx).unwrap() {
            out.push(f);
        }
        out
    }
}

/// Every event until the session waits, answering replay checks with `fresh`.
fn drain(s: &mut ClientSession, fresh: bool) -> Vec<SessionEvent> {
    let mut out = Vec::new();
    while let Some(e) = s.poll_event() {
        if matches!(e, SessionEvent::CheckReplay { .. }) {
            s.replay_answer(fresh, None, NOW_UNIX);
        }
        out.push(e);
    }
    out
}

fn take_transmit(s: &mut ClientSession) -> Vec<u8> {
    let out = s.transmit().to_vec();
    s.advance_transmit(out.len());
    out
}

fn forwards(events: &[SessionEvent]) -> Vec<(Vec<u8>, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Forward { payload, flags } => Some((payload.to_vec(), *flags)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_plain_client_is_identified_after_its_replay_check_and_its_packets_forwarded() {
    for (i, t) in ALL.into_iter().enumerate() {
        let now = Instant::now();
        let mut c = Client::new(t, Some(&SECRET), i as u64);
        let mut s = ClientSession::new(rules(), now, 443, &mut StdRng::seed_from_u64(9));
        s.feed(&c.hs.header[..63]);
        assert_eq!(s.poll_event(), None, "{t:?}: 63 bytes are no header");
        s.feed(&c.hs.header[63..]);
        let p = packet(3, 64);
        s.feed(&c.frame(&p, true));
        let mut key = [0u8; 16];
        key.copy_from_slice(&c.hs.header[8..24]);
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::CheckReplay {
                kind: ReplayKind::Header,
                key
            })
        );
        assert_eq!(s.poll_event(), None, "nothing before the replay answer");
        assert_eq!(s.poll_timeout(), now.checked_add(PRE_AUTH_TIMEOUT));
        s.replay_answer(true, None, NOW_UNIX);
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::Identified {
                transport: t,
                dc: 2,
                secret_index: Some(1),
                tls: false
            })
        );
        assert_eq!(
            s.poll_timeout(),
            Some(now + IDLE_TIMEOUT),
            "the idle deadline once relaying"
        );
        let expected_mode = if t == Transport::Abridged {
            req_flags::COMPACT
        } else {
            req_flags::MEDIUM
        };
        let flags = req_flags::EXT | req_flags::EXTMODE2 | expected_mode | req_flags::QUICKACK;
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::Forward {
                payload: BytesMut::from(&p[..]),
                flags
            })
        );
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.in_flight(), 1);
        // The answer and a quick ack go back framed and encrypted.
        let answer = packet(9, 80);
        assert_eq!(s.handle_answer(&answer), None);
        s.handle_quick_ack(0x8000_1234);
        let got = c.receive(&take_transmit(&mut s));
        assert_eq!(
            got,
            vec![
                ServerFrame::Packet(BytesMut::from(&answer[..])),
                ServerFrame::QuickAck(0x8000_1234)
            ],
            "{t:?}"
        );
        assert_eq!(s.in_flight(), 0);
    }
}

#[test]
fn padded_quick_acks_take_either_of_cs_two_forms() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut StdRng::seed_from_u64(5));
    let mut c = Client::new(Transport::PaddedIntermediate, Some(&SECRET), 12);
    s.feed(&c.hs.header);
    drain(&mut s, true);
    let (mut plain, mut alt) = (0, 0);
    for i in 0..64u32 {
        let confirm = 0x8000_0000 | i;
        s.handle_quick_ack(confirm);
        let wire = take_transmit(&mut s);
        let got = c.receive(&wire);
        if wire.len() == 4 {
            assert_eq!(got, vec![ServerFrame::QuickAck(confirm)]);
            plain += 1;
            continue;
        }
        // Two padded frames: `ff ff ff ff <confirm> [4 random]`, `00 00 00 00 [4 random]`.
        let [ServerFrame::Packet(a), ServerFrame::Packet(b)] = got.as_slice() else {
            panic!("unexpected quick-ack shape {got:?}");
        };
        assert_eq!(a[..4], [0xff; 4]);
        assert_eq!(a[4..8], confirm.to_le_bytes());
        assert!(a.len() == 8 || a.len() == 12, "{a:?}");
        assert_eq!(b[..4], [0; 4]);
        assert!(b.len() == 4 || b.len() == 8, "{b:?}");
        alt += 1;
    }
    assert!(plain > 10 && alt > 10, "plain {plain}, two-frame {alt}");
}

#[test]
fn unencrypted_packets_are_flagged_and_the_planted_xor_applies() {
    let mut r = SessionRules::new(vec![SECRET]);
    r.flag_xor = 0x10;
    let mut s = ClientSession::new(Arc::new(r), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Intermediate, Some(&SECRET), 1);
    s.feed(&c.hs.header);
    s.feed(&c.frame(&unencrypted_packet(), false));
    let f = forwards(&drain(&mut s, true));
    assert_eq!(
        f,
        vec![(
            unencrypted_packet(),
            (req_flags::EXT | req_flags::EXTMODE2 | req_flags::MEDIUM | req_flags::UNENCRYPTED)
                ^ 0x10
        )]
    );
}

#[test]
fn a_header_under_no_secret_is_skipped_silently_until_the_deadline() {
    let now = Instant::now();
    let mut s = ClientSession::new(rules(), now, 443, &mut rand::thread_rng());
    let c = Client::new(Transport::Intermediate, Some(&[9; 16]), 1);
    s.feed(&c.hs.header);
    s.feed(&[1; 1000]);
    assert_eq!(
        drain(&mut s, true),
        vec![SessionEvent::Skipping(SkipReason::NoSecret)]
    );
    s.feed(&[2; 5000]);
    assert_eq!(s.poll_event(), None);
    s.park();
    assert_eq!(s.recv_buffer().capacity(), 0, "skipped input is not kept");
    assert!(s.transmit().is_empty(), "nothing is ever sent");
    s.handle_timeout(now + PRE_AUTH_TIMEOUT - Duration::from_millis(1));
    assert_eq!(s.poll_event(), None, "not before the deadline");
    s.handle_timeout(now + PRE_AUTH_TIMEOUT);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::PreAuthTimeout))
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn a_replayed_header_is_skipped() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Abridged, Some(&SECRET), 4);
    s.feed(&c.hs.header);
    s.feed(&c.frame(&packet(1, 56), false));
    let ev = drain(&mut s, false);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1], SessionEvent::Skipping(SkipReason::Replayed));
}

#[test]
fn an_identified_client_silent_both_ways_is_closed_at_the_idle_timeout() {
    let now = Instant::now();
    let mut s = ClientSession::new(rules(), now, 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Intermediate, Some(&SECRET), 21);
    s.feed(&c.hs.header);
    drain(&mut s, true);
    assert_eq!(s.poll_timeout(), Some(now + IDLE_TIMEOUT));
    // Traffic moves the deadline.
    let later = now + Duration::from_secs(300);
    s.feed(&c.frame(&packet(1, 64), false));
    s.touch(later);
    assert_eq!(forwards(&drain(&mut s, true)).len(), 1);
    assert!(s.buffered_input() == 0);
    s.handle_timeout(now + IDLE_TIMEOUT);
    assert_eq!(s.poll_event(), None, "not idle: it spoke at +300 s");
    assert_eq!(s.poll_timeout(), Some(later + IDLE_TIMEOUT));
    // A half-sent frame is held (and counted) until it completes.
    let f = c.frame(&packet(2, 4000), false);
    s.feed(&f[..1000]);
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.buffered_input(), 1000);
    s.handle_timeout(later + IDLE_TIMEOUT);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::IdleTimeout))
    );
}

#[test]
fn a_header_that_never_comes_times_out() {
    let now = Instant::now();
    let mut s = ClientSession::new(rules(), now, 443, &mut rand::thread_rng());
    s.feed(&[5; 10]);
    s.handle_timeout(now + Duration::from_secs(29));
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::PreAuthTimeout))
    );
}

#[test]
fn pings_are_answered_locally_and_bad_packets_dropped() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Intermediate, Some(&SECRET), 5);
    let mut ping = RPC_PING.to_le_bytes().to_vec();
    ping.extend_from_slice(&[7; 8]);
    s.feed(&c.hs.header);
    s.feed(&c.frame(&ping, false));
    s.feed(&c.frame(&[1; 8], false));
    let ev = drain(&mut s, true);
    assert!(forwards(&ev).is_empty());
    assert!(matches!(
        ev.last(),
        Some(SessionEvent::Dropped(DropReason::TooShort { len: 8 }))
    ));
    let mut pong = RPC_PONG.to_le_bytes().to_vec();
    pong.extend_from_slice(&[7; 8]);
    assert_eq!(
        c.receive(&take_transmit(&mut s)),
        vec![ServerFrame::Packet(BytesMut::from(&pong[..]))]
    );
    assert_eq!(s.in_flight(), 0, "a ping is not in flight");
}

#[test]
fn a_framing_error_closes_the_session() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Intermediate, Some(&SECRET), 6);
    s.feed(&c.hs.header);
    let mut bad = 6u32.to_le_bytes().to_vec(); // not a multiple of 4
    c.hs.encrypt.apply(&mut bad);
    s.feed(&bad);
    let ev = drain(&mut s, true);
    assert_eq!(
        ev.last(),
        Some(&SessionEvent::Close(CloseReason::TransportError))
    );
    assert!(!s.wants_input());
}

#[test]
fn shutdown_closes_before_the_header_at_once_and_a_relay_once_answered() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    s.feed(&[1; 10]);
    s.begin_shutdown();
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::Shutdown))
    );

    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::Abridged, Some(&SECRET), 7);
    s.feed(&c.hs.header);
    s.feed(&c.frame(&packet(1, 60), false));
    assert_eq!(forwards(&drain(&mut s, true)).len(), 1);
    s.begin_shutdown();
    assert!(!s.wants_input());
    s.feed(&c.frame(&packet(2, 60), false));
    assert_eq!(s.poll_event(), None, "one packet is still unanswered");
    assert_eq!(s.handle_answer(&packet(3, 60)), None);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::Shutdown)),
        "no new packet is taken while draining"
    );
    assert!(
        !take_transmit(&mut s).is_empty(),
        "the answer still goes out"
    );
}

#[test]
fn parking_gives_everything_back_and_the_streams_resume() {
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut rand::thread_rng());
    let mut c = Client::new(Transport::PaddedIntermediate, Some(&SECRET), 8);
    s.feed(&c.hs.header);
    let mut sent = Vec::new();
    for i in 0..4u8 {
        let p = packet(i, 64 + 4 * usize::from(i));
        s.feed(&c.frame(&p, false));
        let ev = drain(&mut s, true);
        assert_eq!(
            forwards(&ev),
            vec![(
                p.clone(),
                proxy_req_flags(Transport::PaddedIntermediate, false, false)
            )]
        );
        s.handle_answer(&p);
        sent.push(p);
        let wire = take_transmit(&mut s);
        s.park();
        assert_eq!(s.recv_buffer().capacity(), 0);
        assert_eq!(
            c.receive(&wire),
            vec![ServerFrame::Packet(BytesMut::from(&sent[i as usize][..]))]
        );
    }
}

/// A fake-TLS client's first flight: the hello record.
fn tls_hello(shape: HelloShape, sni: &str, seed: u64) -> (Vec<u8>, [u8; 32]) {
    build_client_hello(
        &SECRET,
        sni,
        NOW_UNIX,
        &mut StdRng::seed_from_u64(seed),
        shape,
    )
}

/// Wraps client bytes in one application-data record.
fn app_record(payload: &[u8]) -> Vec<u8> {
    let mut r = APP_DATA_HEADER.to_vec();
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

#[test]
fn a_fake_tls_client_gets_its_server_hello_and_then_records() {
    for shape in [HelloShape::Chrome, HelloShape::LongTdlib] {
        let now = Instant::now();
        let mut s = ClientSession::new(tls_rules(), now, 443, &mut rand::thread_rng());
        let (hello, random) = tls_hello(shape, "example.org", 1);
        s.feed(&hello[..8]);
        assert_eq!(s.poll_event(), None, "no decision before 9 bytes");
        s.feed(&hello[8..]);
        let mut key = [0u8; 16];
        key.copy_from_slice(&random[..16]);
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::CheckReplay {
                kind: ReplayKind::Hello,
                key
            })
        );
        s.replay_answer(true, None, NOW_UNIX);
        assert_eq!(
            s.poll_event(),
            Some(SessionEvent::HelloAccepted {
                domain: 1,
                secret_index: 0
            })
        );
        let mut rng = StdRng::seed_from_u64(3);
        let profile = DomainProfile::fallback(&mut rng);
        s.send_server_hello(&profile, &mut rng);
        let reply = take_transmit(&mut s);
        let info = verify_server_hello(&reply, &random, &SECRET)
            .unwrap()
            .unwrap();
        assert_eq!(info.consumed, reply.len());

        let mut c = Client::new(Transport::PaddedIntermediate, Some(&SECRET), 2);
        let mut first = c.hs.header.to_vec();
        let p = packet(4, 100);
        first.extend_from_slice(&c.frame(&p, false));
        let mut flight = CHANGE_CIPHER_SPEC.to_vec();
        // The first packet split over two records, as a client may (the first record
        // must hold the whole header).
        flight.extend_from_slice(&app_record(&first[..70]));
        flight.extend_from_slice(&app_record(&first[70..]));
        s.feed(&flight);
        let ev = drain(&mut s, true);
        assert_eq!(
            ev[1],
            SessionEvent::Identified {
                transport: Transport::PaddedIntermediate,
                dc: 2,
                secret_index: Some(0),
                tls: true
            }
        );
        assert_eq!(
            forwards(&ev),
            vec![(
                p,
                proxy_req_flags(Transport::PaddedIntermediate, false, false)
            )]
        );
        // A long answer comes back in records of at most 1425 bytes.
        let answer = packet(5, 4000);
        s.handle_answer(&answer);
        let mut wire = BytesMut::from(&take_transmit(&mut s)[..]);
        let mut payload = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[..3], APP_DATA_HEADER);
            let n = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            assert!(n <= MAX_SERVER_RECORD_PAYLOAD);
            payload.extend_from_slice(&wire[5..5 + n]);
            let _ = wire.split_to(5 + n);
        }
        assert_eq!(
            c.receive(&payload),
            vec![ServerFrame::Packet(BytesMut::from(&answer[..]))]
        );
    }
}

#[test]
fn not_tls_is_fronted_to_the_default_domain_with_every_byte_read() {
    let mut s = ClientSession::new(tls_rules(), Instant::now(), 443, &mut rand::thread_rng());
    let bytes = b"GET / HTTP/1.1\r\n";
    s.feed(&bytes[..5]);
    assert_eq!(s.poll_event(), None);
    s.feed(&bytes[5..]);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Front {
            domain: DEFAULT_DOMAIN,
            buffered: BytesMut::from(&bytes[..]),
            reason: FrontReason::NotTls
        })
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn rejected_hellos_are_fronted_to_their_sni_domain() {
    // Replayed.
    let mut s = ClientSession::new(tls_rules(), Instant::now(), 443, &mut rand::thread_rng());
    let (hello, _) = tls_hello(HelloShape::Chrome, "example.org", 2);
    s.feed(&hello);
    let ev = drain(&mut s, false);
    assert_eq!(
        ev[1],
        SessionEvent::Front {
            domain: 1,
            buffered: BytesMut::from(&hello[..]),
            reason: FrontReason::Rejected(HelloReject::Replay { domain: 1 })
        }
    );
    // Unknown SNI: the default domain, no cache question.
    let mut s = ClientSession::new(tls_rules(), Instant::now(), 443, &mut rand::thread_rng());
    let (hello, _) = tls_hello(HelloShape::Chrome, "example.net", 2);
    s.feed(&hello);
    assert!(matches!(
        drain(&mut s, true).as_slice(),
        [SessionEvent::Front {
            domain: 0,
            reason: FrontReason::Rejected(HelloReject::UnknownSni { .. }),
            ..
        }]
    ));
    // Port 80: fronted to the SNI's domain without validation.
    let mut s = ClientSession::new(tls_rules(), Instant::now(), 80, &mut rand::thread_rng());
    let (hello, _) = tls_hello(HelloShape::Chrome, "example.org", 2);
    s.feed(&hello);
    assert!(matches!(
        drain(&mut s, true).as_slice(),
        [SessionEvent::Front {
            domain: 1,
            reason: FrontReason::Port80 { known_sni: true },
            ..
        }]
    ));
}

#[test]
fn the_hello_deadline_fronts_an_undecided_connection_and_closes_a_late_header() {
    let now = Instant::now();
    let mut s = ClientSession::new(tls_rules(), now, 443, &mut rand::thread_rng());
    s.feed(&[0x16, 0x03, 0x01, 0x02]);
    assert_eq!(s.poll_timeout(), Some(now + HELLO_TIMEOUT));
    s.handle_timeout(now + HELLO_TIMEOUT);
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Front {
            domain: 0,
            reason: FrontReason::HelloTimeout,
            ..
        })
    ));
    // After the ServerHello, the same deadline closes.
    let mut s = ClientSession::new(tls_rules(), now, 443, &mut rand::thread_rng());
    let (hello, _) = tls_hello(HelloShape::Chrome, "example.com", 3);
    s.feed(&hello);
    drain(&mut s, true);
    let mut rng = StdRng::seed_from_u64(1);
    s.send_server_hello(&DomainProfile::fallback(&mut rng), &mut rng);
    s.feed(&CHANGE_CIPHER_SPEC);
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(now + HELLO_TIMEOUT);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Close(CloseReason::PreAuthTimeout))
    );
}

#[test]
fn a_tls_client_without_a_padded_header_or_with_bad_records_is_closed() {
    let accepted = || {
        let mut s = ClientSession::new(tls_rules(), Instant::now(), 443, &mut rand::thread_rng());
        let (hello, _) = tls_hello(HelloShape::Chrome, "example.com", 4);
        s.feed(&hello);
        drain(&mut s, true);
        let mut rng = StdRng::seed_from_u64(1);
        s.send_server_hello(&DomainProfile::fallback(&mut rng), &mut rng);
        s
    };
    // An intermediate (not dd) header: -D accepts padded only.
    let mut s = accepted();
    let c = Client::new(Transport::Intermediate, Some(&SECRET), 5);
    let mut flight = CHANGE_CIPHER_SPEC.to_vec();
    flight.extend_from_slice(&app_record(&c.hs.header));
    s.feed(&flight);
    assert_eq!(
        drain(&mut s, true),
        vec![SessionEvent::Close(CloseReason::TlsHeaderNoSecret)]
    );
    // A handshake record instead of the CCS.
    let mut s = accepted();
    s.feed(&[0x16, 0x03, 0x03, 0x00, 0x01, 0x01]);
    assert_eq!(
        drain(&mut s, true),
        vec![SessionEvent::Close(CloseReason::BadRecord)]
    );
    // A replayed inner header: closed (no skip mode inside TLS).
    let mut s = accepted();
    let c = Client::new(Transport::PaddedIntermediate, Some(&SECRET), 5);
    let mut flight = CHANGE_CIPHER_SPEC.to_vec();
    flight.extend_from_slice(&app_record(&c.hs.header));
    s.feed(&flight);
    let ev = drain(&mut s, false);
    assert_eq!(ev.last(), Some(&SessionEvent::Close(CloseReason::Rejected)));
}

/// The forwarded packets and the client's view of the answers, for one input cut into
/// `cuts` pieces, with the middle end answering each packet with its reverse.
fn run_split(
    t: Transport,
    packets: &[Vec<u8>],
    quick: &[bool],
    cuts: &[usize],
) -> (Vec<(Vec<u8>, u32)>, Vec<ServerFrame>) {
    let mut c = Client::new(t, Some(&SECRET), 11);
    let mut input = c.hs.header.to_vec();
    for (p, q) in packets.iter().zip(quick) {
        input.extend_from_slice(&c.frame(p, *q));
    }
    let mut s = ClientSession::new(rules(), Instant::now(), 443, &mut StdRng::seed_from_u64(1));
    let mut fwd = Vec::new();
    let mut seen = Vec::new();
    let mut rest = &input[..];
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&1)).clamp(1, rest.len());
        s.feed(&rest[..n]);
        rest = &rest[n..];
        let ev = drain(&mut s, true);
        for (p, f) in forwards(&ev) {
            let mut answer = p.clone();
            answer.reverse();
            s.handle_answer(&answer);
            fwd.push((p, f));
        }
        seen.extend(c.receive(&take_transmit(&mut s)));
        s.park();
    }
    (fwd, seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Under any split of the input (and parking between reads), the same packets go to
    /// the middle end with the same flags, and the client sees the same answers.
    #[test]
    fn any_split_forwards_the_same_packets(
        t in 0usize..3,
        sizes in prop::collection::vec(14usize..300, 1..8),
        quick in prop::collection::vec(any::<bool>(), 8),
        cuts in prop::collection::vec(1usize..200, 1..10),
    ) {
        let t = ALL[t];
        let packets: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| packet(i as u8, n * 4)).collect();
        let (whole_fwd, whole_seen) = run_split(t, &packets, &quick, &[usize::MAX]);
        let (fwd, seen) = run_split(t, &packets, &quick, &cuts);
        prop_assert_eq!(whole_fwd.len(), packets.len());
        for ((p, f), (want, q)) in whole_fwd.iter().zip(packets.iter().zip(&quick)) {
            prop_assert_eq!(p, want);
            prop_assert_eq!(*f, proxy_req_flags(t, false, *q));
        }
        prop_assert_eq!(&fwd, &whole_fwd);
        let answers: Vec<ServerFrame> = packets.iter().map(|p| {
            let mut a = p.clone();
            a.reverse();
            ServerFrame::Packet(BytesMut::from(&a[..]))
        }).collect();
        prop_assert_eq!(&seen, &answers);
        prop_assert_eq!(whole_seen, answers);
    }

    /// Arbitrary bytes never panic the session, in either front door, under any split.
    #[test]
    fn arbitrary_input_never_panics(
        tls in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..2000),
        cut in 1usize..100,
        fresh in any::<bool>(),
    ) {
        let r = if tls { tls_rules() } else { rules() };
        let now = Instant::now();
        let mut s = ClientSession::new(r, now, 443, &mut StdRng::seed_from_u64(2));
        for chunk in data.chunks(cut) {
            s.feed(chunk);
            while let Some(e) = s.poll_event() {
                match e {
                    SessionEvent::CheckReplay { .. } => s.replay_answer(fresh, Some(NOW_UNIX - 5), NOW_UNIX),
                    SessionEvent::HelloAccepted { .. } => {
                        let mut rng = StdRng::seed_from_u64(1);
                        s.send_server_hello(&DomainProfile::fallback(&mut rng), &mut rng);
                    }
                    SessionEvent::Forward { .. } => { let _ = s.handle_answer(&[1; 8]); }
                    _ => {}
                }
            }
            let _ = take_transmit(&mut s);
        }
        s.handle_timeout(now + Duration::from_secs(60));
        let _ = s.poll_event();
        prop_assert!(s.poll_timeout().is_none() || s.poll_event().is_none());
    }
}
