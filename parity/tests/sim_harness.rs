//! The FakeMe against a loopback RpcLink client, and the client simulator against a tiny
//! in-test echo server driving the proxy's own client session (obfuscated2 and fake TLS). Every
//! wait is bounded; no proxy binary is needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::{Bytes, BytesMut};
use mtproxy::protocol::fake_tls::{DomainProfile, HelloShape, ReplayCache, ReplayCheck};
use mtproxy::protocol::obfuscated2::AcceptPolicy;
use mtproxy::protocol::rpc::messages::flags;
use mtproxy::protocol::rpc::{
    LinkEvent, LinkParams, ProcessId, ProxyReqHeader, RpcLink, RpcMessage, ServerPolicy,
};
use mtproxy::protocol::session::{ClientSession, SessionEvent, SessionRules};
use mtproxy::protocol::transport::Transport;
use parity::client::{
    self, encrypted_message, expected_confirm, unencrypted_req_dh_params, unencrypted_req_pq_multi,
    ClientConfig, Reaction, Received, SimClient,
};
use parity::fake_me::{quick_ack_confirm, FakeMe};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::{CancellationToken, DropGuard};

const T: Duration = Duration::from_secs(5);
/// How long a "silence" observation waits.
const QUIET: Duration = Duration::from_millis(300);

fn proxy_secret() -> Vec<u8> {
    (0u8..128)
        .map(|i| i.wrapping_mul(29).wrapping_add(3))
        .collect()
}

// ------------------------------------------------------------------------------------
// The proxy's side of an ME link, driven by the test.

struct ProxySide {
    stream: TcpStream,
    link: RpcLink,
    buf: BytesMut,
}

impl ProxySide {
    async fn connect(me: SocketAddr, secret: Vec<u8>, crc32c: bool) -> Self {
        Self::connect_with(me, secret, crc32c, None).await
    }

    /// `rcvbuf`: a small receive buffer makes the FakeMe's writes back up quickly.
    async fn connect_with(
        me: SocketAddr,
        secret: Vec<u8>,
        crc32c: bool,
        rcvbuf: Option<u32>,
    ) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).unwrap();
        }
        let stream = sock.connect(me).await.unwrap();
        let local = stream.local_addr().unwrap();
        let pid = ProcessId {
            ip: 0,
            port: 8888,
            pid: 4321,
            utime: 1_700_000_000,
        };
        let mut params = LinkParams::new(secret, local, me, pid);
        params.crc32c = crc32c;
        let link = RpcLink::client(params, mtproxy::clock::unix_now(), &mut rand::thread_rng());
        let mut p = Self {
            stream,
            link,
            buf: BytesMut::new(),
        };
        p.flush().await;
        p
    }

    async fn flush(&mut self) {
        let mut out = BytesMut::new();
        self.link.poll_transmit(&mut out);
        if !out.is_empty() {
            self.stream.write_all(&out).await.unwrap();
        }
    }

    /// The next link event (flushing whatever the link queued, e.g. a PONG).
    async fn next_event(&mut self) -> anyhow::Result<LinkEvent> {
        timeout(T, async {
            loop {
                if let Some(e) = self.link.poll_event() {
                    self.flush().await;
                    return Ok(e);
                }
                let n = self.stream.read_buf(&mut self.buf).await?;
                if n == 0 {
                    bail!("EOF from the FakeMe");
                }
                self.link
                    .handle_input(&mut self.buf, mtproxy::clock::unix_now())?;
                self.flush().await;
            }
        })
        .await
        .map_err(|_| anyhow!("no link event within {T:?}"))?
    }

    async fn handshake(&mut self) -> bool {
        match self.next_event().await.unwrap() {
            LinkEvent::HandshakeDone { crc32c, .. } => crc32c,
            e => panic!("expected the handshake, got {e:?}"),
        }
    }

    async fn message(&mut self) -> RpcMessage {
        match self.next_event().await.unwrap() {
            LinkEvent::Message(m) => m,
            e => panic!("expected a message, got {e:?}"),
        }
    }

    async fn send_req(&mut self, header: &ProxyReqHeader, payload: &[u8]) {
        self.link.send_proxy_req(header, payload).unwrap();
        self.flush().await;
    }

    async fn send(&mut self, m: &RpcMessage) {
        self.link.send(m).unwrap();
        self.flush().await;
    }
}

fn header(quick_ack: bool, conn_id: i64, tag: Option<[u8; 16]>) -> ProxyReqHeader {
    let mut f = flags::EXT | flags::EXTMODE2 | flags::MEDIUM;
    if quick_ack {
        f |= flags::QUICKACK;
    }
    ProxyReqHeader::new(
        f,
        conn_id,
        "127.0.0.1:36476".parse().unwrap(),
        "10.1.2.3:443".parse().unwrap(),
        tag,
    )
}

async fn fake_me() -> FakeMe {
    FakeMe::builder()
        .secret(proxy_secret())
        .spawn()
        .await
        .unwrap()
}

// ------------------------------------------------------------------------------------
// FakeMe tests.

#[tokio::test]
async fn fake_me_handshake_crc32c_records_and_echoes() {
    let me = fake_me().await;
    let mut p = ProxySide::connect(me.addr(), proxy_secret(), true).await;
    assert!(p.handshake().await, "CRC32C negotiated");
    me.wait_handshakes(1, T).await.unwrap();
    assert_eq!(me.live_links(), 1);

    let payload = unencrypted_req_pq_multi(&mut StdRng::seed_from_u64(1));
    let h = header(true, 0x40000c, Some([0xfe; 16]));
    p.send_req(&h, &payload).await;
    assert_eq!(
        p.message().await,
        RpcMessage::SimpleAck {
            conn_id: 0x40000c,
            confirm: quick_ack_confirm(&payload)
        }
    );
    match p.message().await {
        RpcMessage::ProxyAns {
            conn_id,
            data,
            flags,
        } => {
            assert_eq!((conn_id, flags), (0x40000c, 0));
            assert_eq!(&data[..], &payload[..]);
        }
        m => panic!("expected PROXY_ANS, got {m:?}"),
    }

    let recs = me.wait_records(1, T).await.unwrap();
    let r = &recs[0];
    assert_eq!(r.link, 0);
    assert_eq!(r.flags, h.flags);
    assert_ne!(r.flags & flags::PROXY_TAG, 0);
    assert_eq!(r.proxy_tag, Some([0xfe; 16]));
    assert_eq!(&r.payload[..], &payload[..]);
    assert_eq!(r.ext_conn_id, 0x40000c);
    assert_eq!(r.client, "127.0.0.1:36476".parse::<SocketAddr>().unwrap());
    assert_eq!(r.proxy, "10.1.2.3:443".parse::<SocketAddr>().unwrap());
    assert_eq!(r.header, h);

    // Without the quick-ack flag: only the PROXY_ANS.
    let h2 = header(false, 0x40000d, None);
    p.send_req(&h2, &payload).await;
    assert!(matches!(
        p.message().await,
        RpcMessage::ProxyAns {
            conn_id: 0x40000d,
            ..
        }
    ));
    let r2 = &me.wait_records(2, T).await.unwrap()[1];
    assert_eq!(r2.proxy_tag, None);

    // CLOSE_CONN is recorded.
    p.send(&RpcMessage::CloseConn { conn_id: 0x40000d }).await;
    let cc = me.wait_close_conns(1, T).await.unwrap();
    assert_eq!((cc[0].link, cc[0].conn_id), (0, 0x40000d));
}

#[tokio::test]
async fn fake_me_handshake_crc32_both_ways() {
    // The proxy does not offer CRC32C.
    let me = fake_me().await;
    let mut p = ProxySide::connect(me.addr(), proxy_secret(), false).await;
    assert!(!p.handshake().await);
    // The FakeMe does not allow it.
    let me2 = FakeMe::builder()
        .secret(proxy_secret())
        .crc32c(false)
        .spawn()
        .await
        .unwrap();
    let mut q = ProxySide::connect(me2.addr(), proxy_secret(), true).await;
    assert!(!q.handshake().await);
    for (s, m) in [(&mut p, &me), (&mut q, &me2)] {
        let payload = encrypted_message(&mut StdRng::seed_from_u64(2), 200);
        s.send_req(&header(true, 7, None), &payload).await;
        assert!(matches!(
            s.message().await,
            RpcMessage::SimpleAck { conn_id: 7, .. }
        ));
        assert!(matches!(
            s.message().await,
            RpcMessage::ProxyAns { conn_id: 7, .. }
        ));
        m.wait_records(1, T).await.unwrap();
    }
}

#[tokio::test]
async fn fake_me_wrong_secret_fails_the_handshake() {
    let me = fake_me().await;
    let mut other = proxy_secret();
    other[10] ^= 1; // same key select, different keys
    let mut p = ProxySide::connect(me.addr(), other, true).await;
    assert!(p.next_event().await.is_err());
    me.wait_for("the link to end", T, |s| s.link_ends.len() == 1)
        .await
        .unwrap();
    assert_eq!(me.handshakes(), 0);
    assert!(me.link_ends()[0].reason.is_some());
}

#[tokio::test]
async fn fake_me_ping_close_ext_unsolicited_and_drop_all() {
    let me = fake_me().await;
    let mut p = ProxySide::connect(me.addr(), proxy_secret(), true).await;
    p.handshake().await;
    me.wait_live_links(1, T).await.unwrap();

    assert_eq!(me.send_ping(77).await.unwrap(), 1);
    assert_eq!(p.message().await, RpcMessage::Ping { ping_id: 77 });
    let pongs = me.wait_pongs(1, T).await.unwrap();
    assert_eq!((pongs[0].link, pongs[0].ping_id), (0, 77));

    let payload = encrypted_message(&mut StdRng::seed_from_u64(3), 64);
    p.send_req(&header(false, 0x55, None), &payload).await;
    p.message().await;
    assert_eq!(me.close_ext(0x55).await.unwrap(), 0);
    assert_eq!(p.message().await, RpcMessage::CloseExt { conn_id: 0x55 });
    assert!(me.close_ext(0x56).await.is_err());

    me.send_proxy_ans(0x99, Bytes::from_static(&[1, 2, 3, 4]))
        .await
        .unwrap();
    me.send_simple_ack(0x99, 0x8000_0001).await.unwrap();
    assert!(matches!(
        p.message().await,
        RpcMessage::ProxyAns { conn_id: 0x99, .. }
    ));
    assert_eq!(
        p.message().await,
        RpcMessage::SimpleAck {
            conn_id: 0x99,
            confirm: 0x8000_0001
        }
    );

    assert_eq!(me.drop_all().await, 1);
    assert!(p.next_event().await.is_err(), "EOF after drop_all");
    assert_eq!(me.live_links(), 0);
    assert!(me.send_ping(1).await.is_ok_and(|n| n == 0));
}

#[tokio::test]
async fn fake_me_refuse_echo_delay_and_reading_knobs() {
    let me = fake_me().await;
    me.set_refuse(true);
    let mut s = TcpStream::connect(me.addr()).await.unwrap();
    assert_eq!(client::observe(&mut s, T).await, Reaction::Closed);
    me.wait_for("a refusal", T, |s| s.refused == 1)
        .await
        .unwrap();
    me.set_refuse(false);

    let mut p = ProxySide::connect_with(me.addr(), proxy_secret(), true, Some(4096)).await;
    p.handshake().await;
    let mut rng = StdRng::seed_from_u64(4);
    let a = encrypted_message(&mut rng, 64);
    let b = encrypted_message(&mut rng, 64);

    // Echo off: A is recorded but not answered; B (echo back on) is the first answer.
    me.set_echo(false);
    p.send_req(&header(false, 1, None), &a).await;
    me.wait_records(1, T).await.unwrap();
    me.set_echo(true);
    p.send_req(&header(false, 2, None), &b).await;
    assert!(matches!(
        p.message().await,
        RpcMessage::ProxyAns { conn_id: 2, .. }
    ));

    // Answer delay.
    me.set_answer_delay(Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    p.send_req(&header(true, 3, None), &a).await;
    assert!(matches!(
        p.message().await,
        RpcMessage::SimpleAck { conn_id: 3, .. }
    ));
    assert!(matches!(
        p.message().await,
        RpcMessage::ProxyAns { conn_id: 3, .. }
    ));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    me.set_answer_delay(Duration::ZERO);

    // Reading off: nothing is decoded until reading resumes.
    me.set_reading(false);
    p.send_req(&header(false, 4, None), &a).await;
    assert!(me.wait_records(4, QUIET).await.is_err());
    me.set_reading(true);
    me.wait_records(4, T).await.unwrap();
    assert!(matches!(
        p.message().await,
        RpcMessage::ProxyAns { conn_id: 4, .. }
    ));

    // A proxy that stops reading: the FakeMe's answers back up, yet it keeps reading
    // requests and drop_all stays prompt.
    let big = encrypted_message(&mut rng, 64 * 1024);
    for i in 0..32 {
        p.send_req(&header(false, 100 + i, None), &big).await;
    }
    me.wait_records(4 + 32, T).await.unwrap();
    assert_eq!(timeout(T, me.drop_all()).await.unwrap(), 1);
}

// ------------------------------------------------------------------------------------
// A tiny echo "proxy": the proxy's own client session, answering every packet with itself.

#[derive(Clone)]
enum EchoMode {
    Obfuscated(Vec<[u8; 16]>),
    FakeTls { secret: [u8; 16], domain: String },
}

struct EchoServer {
    addr: SocketAddr,
    _guard: DropGuard,
}

impl EchoServer {
    async fn spawn(mode: EchoMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            let mut seed = 0u64;
            loop {
                tokio::select! {
                    _ = c.cancelled() => return,
                    a = listener.accept() => if let Ok((s, _)) = a {
                        seed += 1;
                        let (m, c2) = (mode.clone(), c.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = c2.cancelled() => {}
                                _ = serve(s, m, seed) => {}
                            }
                        });
                    }
                }
            }
        });
        Self {
            addr,
            _guard: cancel.drop_guard(),
        }
    }
}

/// Serves one client with the proxy's own [`ClientSession`] (header or fake-TLS
/// handshake, framing, packet rules, quick acks), echoing every packet it forwards, with
/// a quick ack first when asked. Returns (closing the socket) when the session ends; with
/// an unknown secret the session discards input (C's "global skip mode").
async fn serve(mut s: TcpStream, mode: EchoMode, seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rules = match mode {
        EchoMode::Obfuscated(secrets) => SessionRules::new(secrets),
        EchoMode::FakeTls { secret, domain } => {
            let mut r = SessionRules::new(vec![secret]);
            r.domains = vec![domain];
            r.accept_policy = AcceptPolicy { padded_only: true };
            r
        }
    };
    let mut session = ClientSession::new(Arc::new(rules), std::time::Instant::now(), 443, &mut rng);
    let mut replay = ReplayCache::new();
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::CheckReplay { key, .. } => {
                    let now = mtproxy::clock::unix_now();
                    let fresh = replay.check_and_insert(key, now);
                    session.replay_answer(fresh, replay.oldest_time(), now);
                }
                SessionEvent::HelloAccepted { .. } => {
                    let profile = DomainProfile::fallback(&mut rng);
                    session.send_server_hello(&profile, &mut rng);
                }
                SessionEvent::Forward { payload, flags } => {
                    if flags & flags::QUICKACK != 0 {
                        session.handle_quick_ack(quick_ack_confirm(&payload));
                    }
                    session.handle_answer(&payload);
                }
                SessionEvent::Front { reason, .. } => bail!("fronted: {reason:?}"),
                SessionEvent::Close(reason) => bail!("closed: {reason:?}"),
                _ => {}
            }
        }
        let out = session.transmit();
        if !out.is_empty() {
            let n = out.len();
            s.write_all(out).await?;
            session.advance_transmit(n);
        }
        session.park();
        let buf = session.recv_buffer();
        buf.reserve(4096);
        if s.read_buf(buf).await? == 0 {
            bail!("EOF");
        }
    }
}

const SECRET: [u8; 16] = [0x5c; 16];
const ALL: [Transport; 3] = [
    Transport::Abridged,
    Transport::Intermediate,
    Transport::PaddedIntermediate,
];

/// Requests the three packet shapes (and a large one) with and without quick acks.
async fn exercise(c: &mut SimClient, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let payloads = [
        unencrypted_req_pq_multi(&mut rng),
        unencrypted_req_dh_params(&mut rng),
        encrypted_message(&mut rng, 56),
        encrypted_message(&mut rng, 5000),
    ];
    for (i, p) in payloads.iter().enumerate() {
        for quick_ack in [false, true] {
            let ex = c.request(p, quick_ack).await.unwrap();
            assert_eq!(&ex.answer[..], &p[..], "echo of payload {i}");
            let want = quick_ack.then(|| expected_confirm(p));
            assert_eq!(ex.quick_ack, want, "quick ack of payload {i}");
        }
    }
}

#[tokio::test]
async fn client_echo_on_every_transport_with_and_without_secret() {
    let with = EchoServer::spawn(EchoMode::Obfuscated(vec![[1; 16], SECRET])).await;
    let without = EchoServer::spawn(EchoMode::Obfuscated(vec![])).await;
    for (i, t) in ALL.into_iter().enumerate() {
        let cfg = ClientConfig::new(t).secret(SECRET).dc(-2).seed(i as u64);
        let mut c = SimClient::connect(with.addr, cfg).await.unwrap();
        assert_eq!(c.transport(), t);
        exercise(&mut c, i as u64).await;
        c.close().await;

        let cfg = ClientConfig::new(t).seed(100 + i as u64);
        let mut c = SimClient::connect(without.addr, cfg).await.unwrap();
        exercise(&mut c, 100 + i as u64).await;
    }
}

#[tokio::test]
async fn client_echo_over_fake_tls_both_hello_shapes() {
    let server = EchoServer::spawn(EchoMode::FakeTls {
        secret: SECRET,
        domain: "example.com".into(),
    })
    .await;
    for (i, shape) in [HelloShape::Chrome, HelloShape::LongTdlib]
        .into_iter()
        .enumerate()
    {
        let cfg = ClientConfig::new(Transport::Abridged)
            .secret(SECRET)
            .fake_tls("example.com", shape)
            .seed(7 + i as u64);
        let mut c = SimClient::connect(server.addr, cfg).await.unwrap();
        let info = c.server_hello().unwrap();
        assert!((2499..=3620).contains(&info.app_data_len));
        exercise(&mut c, 7 + i as u64).await;
    }
    // Fake TLS without a secret, or not padded, is a config error.
    let cfg = ClientConfig {
        secret: None,
        ..ClientConfig::new(Transport::Abridged).fake_tls("example.com", HelloShape::Chrome)
    };
    assert!(matches!(
        SimClient::connect(server.addr, cfg).await,
        Err(client::SimError::Config(_))
    ));
    // A wrong SNI is refused by this server (it closes: no splice target here).
    let cfg = ClientConfig::new(Transport::PaddedIntermediate)
        .secret(SECRET)
        .fake_tls("other.org", HelloShape::Chrome);
    assert!(SimClient::connect(server.addr, cfg)
        .await
        .unwrap_err()
        .is_closed());
}

#[tokio::test]
async fn client_recv_reports_quick_acks_and_closes() {
    let server = EchoServer::spawn(EchoMode::Obfuscated(vec![SECRET])).await;
    let cfg = ClientConfig::new(Transport::PaddedIntermediate)
        .secret(SECRET)
        .seed(3);
    let mut c = SimClient::connect(server.addr, cfg).await.unwrap();
    let p = encrypted_message(&mut StdRng::seed_from_u64(3), 60);
    // Both quick-ack encodings of padded intermediate come out as one QuickAck.
    for _ in 0..8 {
        c.send_packet(&p, true).await.unwrap();
        assert_eq!(
            c.recv().await.unwrap(),
            Received::QuickAck(expected_confirm(&p))
        );
        assert_eq!(
            c.recv().await.unwrap(),
            Received::Packet(Bytes::from(p.clone()))
        );
    }
    // Nothing more: a bounded recv times out.
    assert!(matches!(
        c.recv_timeout(Duration::from_millis(50)).await,
        Err(client::SimError::Timeout(_))
    ));
    // An invalid frame (zero length) makes the server close.
    c.send_plain(&[0, 0, 0, 0]).await.unwrap();
    assert!(c.recv().await.unwrap_err().is_closed());
}

#[tokio::test]
async fn bad_clients_react_as_the_rules_say() {
    let server = EchoServer::spawn(EchoMode::Obfuscated(vec![SECRET])).await;
    let addr = server.addr;
    let cfg = |t| ClientConfig::new(t).secret(SECRET).seed(11);
    let (wrong, junk, http, big_a, big_i, short2, short3, invalid) = tokio::join!(
        client::wrong_secret(addr, Transport::Intermediate, 1, QUIET),
        client::garbage(addr, 200, 2, QUIET),
        client::http_get(addr, QUIET),
        client::oversize_frame(addr, cfg(Transport::Abridged), T),
        client::oversize_frame(addr, cfg(Transport::Intermediate), T),
        client::short_padded_frame(addr, cfg(Transport::Intermediate), 2, T),
        client::short_padded_frame(addr, cfg(Transport::PaddedIntermediate), 3, T),
        client::invalid_packet_then_valid(addr, cfg(Transport::PaddedIntermediate)),
    );
    assert_eq!(wrong.unwrap(), Reaction::Silence);
    assert_eq!(junk.unwrap(), Reaction::Silence);
    assert_eq!(http.unwrap(), Reaction::Silence);
    assert_eq!(big_a.unwrap(), Reaction::Closed);
    assert_eq!(big_i.unwrap(), Reaction::Closed);
    assert_eq!(short2.unwrap(), Reaction::Closed);
    assert_eq!(short3.unwrap(), Reaction::Closed);
    let (valid, ex) = invalid.unwrap();
    assert_eq!(&ex.answer[..], &valid[..]);
}

#[tokio::test]
async fn fake_me_rejects_a_bad_handshake_policy() {
    // A knob from ServerPolicy reaches the link: flags 0x801 make the proxy side fail (-7).
    let me = FakeMe::builder()
        .secret(proxy_secret())
        .policy(ServerPolicy {
            reply_flags: Some(0x801),
            ..ServerPolicy::default()
        })
        .spawn()
        .await
        .unwrap();
    let mut p = ProxySide::connect(me.addr(), proxy_secret(), true).await;
    let err = p.next_event().await.unwrap_err();
    let link_err = err
        .downcast_ref::<mtproxy::protocol::rpc::LinkError>()
        .unwrap_or_else(|| panic!("not a link error: {err}"));
    assert_eq!(link_err.c_code(), Some(-7), "{link_err}");
    // The FakeMe itself counted its side of the handshake as done.
    me.wait_handshakes(1, T).await.unwrap();
}
