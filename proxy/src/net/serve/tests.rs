//! The serving lifecycle in-process, under tokio's paused clock: deadlines and the drain
//! take no real time, and every bound is checked against the virtual clock.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::multi_conf::parse_multi_conf;
use crate::net::me_pool::{MeCmd, MeConn};
use crate::net::shared::{Settings, Shared};
use crate::protocol::obfuscated2::ClientHandshake;
use crate::protocol::rpc::{LinkParams, RpcLink};
use crate::protocol::session::{proxy_req_flags, SessionRules, PRE_AUTH_TIMEOUT};
use crate::protocol::transport::{encode_client_frame, Transport};

const SECRET: [u8; 16] = [0x11; 16];

/// A process serving one loopback listener: its shared state, address and stop token.
struct Served {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<Drained>,
}

async fn serve_one() -> Served {
    serve_with(Settings::new(Arc::new(SessionRules::new(vec![SECRET])))).await
}

/// A process with `settings` serving one loopback listener.
async fn serve_with(settings: Settings) -> Served {
    let shared = Shared::new(settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let done = tokio::spawn(serve(
        shared.clone(),
        vec![listener],
        Gates::open(shutdown.clone()),
    ));
    Served {
        shared,
        addr,
        shutdown,
        done,
    }
}

/// Waits (in virtual time) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition never held");
}

/// A middle-end link in the pool for dc 2 whose commands the test reads.
fn fake_link(shared: &Arc<Shared>) -> (mpsc::Receiver<MeCmd>, mpsc::UnboundedReceiver<MeCmd>) {
    let conf = parse_multi_conf(b"proxy_for 2 127.0.0.1:9;", "test.conf", &|_| None).unwrap();
    let change = shared
        .pool
        .update(Arc::new(conf), &CancellationToken::new());
    let target = change.added.first().unwrap().clone();
    let (tx, rx) = mpsc::channel(16);
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(MeConn::new(target.addr(), tx, ctl));
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let link = RpcLink::client(
        LinkParams::new(vec![0; 32], a, a, Default::default()),
        0,
        &mut StdRng::seed_from_u64(1),
    );
    target.add_ready(conn, Arc::new(Mutex::new(link)));
    (rx, ctl_rx)
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_pre_auth_deadline() {
    let s = serve_one().await;
    let start = Instant::now();
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&[1; 10]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let waited = start.elapsed();
    assert!(
        waited >= PRE_AUTH_TIMEOUT && waited < PRE_AUTH_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(s.shared.counters.handshake_timeouts.load(Relaxed), 1);
    s.shutdown.cancel();
    assert_eq!(
        s.done.await.unwrap(),
        Drained {
            handed_over: false,
            cut: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_a_client_before_its_header_at_once() {
    let s = serve_one().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&[1; 10]).await.unwrap();
    let sh = s.shared.clone();
    until(|| sh.counters.total_special_connections.load(Relaxed) == 1).await;
    let start = Instant::now();
    s.shutdown.cancel();
    let drained = s.done.await.unwrap();
    assert_eq!(drained.cut, 0);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
    assert_eq!(s.shared.counters.total_special_connections.load(Relaxed), 0);
    // No new client is accepted once stopped.
    let refused = match TcpStream::connect(s.addr).await {
        Err(_) => true,
        Ok(mut c) => c.read(&mut buf).await.map_or(true, |n| n == 0),
    };
    assert!(refused);
}

#[tokio::test(start_paused = true)]
async fn a_client_waiting_for_an_answer_is_cut_when_the_grace_is_over() {
    let s = serve_one().await;
    let (mut data, mut ctl) = fake_link(&s.shared);
    let mut hs = ClientHandshake::generate(
        &mut StdRng::seed_from_u64(3),
        Some(&SECRET),
        Transport::Intermediate,
        2,
    );
    let mut out = BytesMut::from(&hs.header[..]);
    let mut frame = BytesMut::new();
    let packet = [7u8; 64];
    encode_client_frame(Transport::Intermediate, &packet, false, &[], &mut frame).unwrap();
    hs.encrypt.apply(&mut frame);
    out.extend_from_slice(&frame);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&out).await.unwrap();
    let Some(MeCmd::ProxyReq {
        conn_id,
        flags,
        payload,
        ..
    }) = data.recv().await
    else {
        panic!("no PROXY_REQ");
    };
    assert_eq!(payload, packet[..]);
    assert_eq!(
        flags,
        proxy_req_flags(Transport::Intermediate, false, false)
    );
    // The answer never comes: the drain waits the whole grace, then cuts the client.
    let grace = s.shared.settings.grace;
    let start = Instant::now();
    s.shutdown.cancel();
    let drained = s.done.await.unwrap();
    let took = start.elapsed();
    assert_eq!(drained.cut, 1);
    assert!(took >= grace.drain && took <= grace.total(), "{took:?}");
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
    // The middle end is told the client is gone.
    match ctl.recv().await {
        Some(MeCmd::CloseConn { conn_id: id }) => assert_eq!(id, conn_id),
        other => panic!("expected CLOSE_CONN, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_answered_client_leaves_the_drain_at_once() {
    let s = serve_one().await;
    let (mut data, _ctl) = fake_link(&s.shared);
    let mut hs = ClientHandshake::generate(
        &mut StdRng::seed_from_u64(4),
        Some(&SECRET),
        Transport::Abridged,
        2,
    );
    let mut out = BytesMut::from(&hs.header[..]);
    let mut frame = BytesMut::new();
    encode_client_frame(Transport::Abridged, &[9u8; 64], false, &[], &mut frame).unwrap();
    hs.encrypt.apply(&mut frame);
    out.extend_from_slice(&frame);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&out).await.unwrap();
    let Some(MeCmd::ProxyReq { conn_id, .. }) = data.recv().await else {
        panic!("no PROXY_REQ");
    };
    let start = Instant::now();
    s.shutdown.cancel();
    // Answer through the pool as the link's reader would.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = s.shared.pool.pick(2).unwrap();
    let handle = conn.client(conn_id).unwrap();
    assert!(crate::net::me_link::deliver(
        &s.shared,
        &handle,
        bytes::Bytes::from_static(&[5u8; 32])
    ));
    let drained = s.done.await.unwrap();
    assert_eq!(drained.cut, 0);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got).await;
    let mut plain = BytesMut::from(&got[..]);
    hs.decrypt.apply(&mut plain);
    assert_eq!(plain[0], 8, "one abridged frame of 8 words");
    assert_eq!(&plain[1..], &[5u8; 32][..]);
}

/// A client identified with one packet forwarded through [`fake_link`]: its socket, its
/// handshake and its `conn_id` at the middle end.
async fn identified_client(
    s: &Served,
    data: &mut mpsc::Receiver<MeCmd>,
    seed: u64,
) -> (TcpStream, ClientHandshake, i64) {
    let mut hs = ClientHandshake::generate(
        &mut StdRng::seed_from_u64(seed),
        Some(&SECRET),
        Transport::Intermediate,
        2,
    );
    let mut out = BytesMut::from(&hs.header[..]);
    let mut frame = BytesMut::new();
    encode_client_frame(Transport::Intermediate, &[3u8; 64], false, &[], &mut frame).unwrap();
    hs.encrypt.apply(&mut frame);
    out.extend_from_slice(&frame);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&out).await.unwrap();
    let Some(MeCmd::ProxyReq { conn_id, .. }) = data.recv().await else {
        panic!("no PROXY_REQ");
    };
    (c, hs, conn_id)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_and_its_memory_released() {
    let s = serve_one().await;
    let (mut data, mut ctl) = fake_link(&s.shared);
    let (stalled, _hs, conn_id) = identified_client(&s, &mut data, 5).await;
    // 24 MiB of answers the client never reads: more than the sockets hold, less than
    // the per-connection cap.
    let conn = s.shared.pool.pick(2).unwrap();
    let handle = conn.client(conn_id).unwrap();
    let start = Instant::now();
    for _ in 0..6 {
        assert!(crate::net::me_link::deliver(
            &s.shared,
            &handle,
            bytes::Bytes::from(vec![7u8; 4 << 20])
        ));
    }
    // Closed once its socket has stayed full for the stall bound.
    match ctl.recv().await {
        Some(MeCmd::CloseConn { conn_id: id }) => assert_eq!(id, conn_id),
        other => panic!("expected CLOSE_CONN, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= crate::net::client::WRITE_STALL
            && took < crate::net::client::WRITE_STALL + Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(s.shared.counters.client_write_stalls.load(Relaxed), 1);
    let sh = s.shared.clone();
    until(|| sh.buffered.load(Relaxed) == 0).await;
    // Another client is served as usual.
    let (mut other, mut hs, id) = identified_client(&s, &mut data, 6).await;
    let h = s.shared.pool.pick(2).unwrap().client(id).unwrap();
    assert!(crate::net::me_link::deliver(
        &s.shared,
        &h,
        bytes::Bytes::from_static(&[9u8; 16])
    ));
    let mut got = [0u8; 20];
    other.read_exact(&mut got).await.unwrap();
    hs.decrypt.apply(&mut got);
    assert_eq!(got[..4], 16u32.to_le_bytes());
    assert_eq!(got[4..], [9u8; 16]);
    drop(stalled);
    s.shutdown.cancel();
    let _ = s.done.await;
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_the_oldest_unauthenticated_connection_makes_room() {
    let mut settings = Settings::new(Arc::new(SessionRules::new(vec![SECRET])));
    settings.max_client_connections = 3;
    let s = serve_with(settings).await;
    let (mut data, _ctl) = fake_link(&s.shared);
    // The cap filled with silent connections (a slowloris).
    let mut silent = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(&[1; 8]).await.unwrap();
        silent.push(c);
        let sh = s.shared.clone();
        let n = silent.len() as i64;
        until(|| sh.counters.total_special_connections.load(Relaxed) == n).await;
    }
    // A legitimate client is still served: the oldest silent one made room.
    let (_c, _hs, _id) = identified_client(&s, &mut data, 7).await;
    assert_eq!(s.shared.counters.preauth_evictions.load(Relaxed), 1);
    let mut buf = [0u8; 8];
    assert_eq!(
        silent[0].read(&mut buf).await.unwrap_or(0),
        0,
        "the oldest is closed"
    );
    // Authenticated clients are never evicted: with the cap full of them and one silent
    // connection, the next newcomer evicts the silent one, not a client.
    let (_c2, _hs2, _id2) = identified_client(&s, &mut data, 8).await;
    assert_eq!(s.shared.counters.preauth_evictions.load(Relaxed), 2);
    assert_eq!(silent[1].read(&mut buf).await.unwrap_or(0), 0);
    s.shutdown.cancel();
    let _ = s.done.await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_identified_client_is_closed_at_the_idle_timeout() {
    let s = serve_one().await;
    let (mut data, mut ctl) = fake_link(&s.shared);
    let start = Instant::now();
    let (mut c, _hs, conn_id) = identified_client(&s, &mut data, 9).await;
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
    let took = start.elapsed();
    let idle = crate::protocol::session::IDLE_TIMEOUT;
    assert!(
        took >= idle && took < idle + Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(s.shared.counters.client_idle_timeouts.load(Relaxed), 1);
    match ctl.recv().await {
        Some(MeCmd::CloseConn { conn_id: id }) => assert_eq!(id, conn_id),
        other => panic!("expected CLOSE_CONN, got {other:?}"),
    }
    s.shutdown.cancel();
    let _ = s.done.await;
}

#[tokio::test(start_paused = true)]
async fn half_sent_frames_count_in_the_buffer_budget_and_the_largest_holders_go() {
    let mut settings = Settings::new(Arc::new(SessionRules::new(vec![SECRET])));
    // ¾ of 2 MiB: the third client holding 700 KiB crosses it.
    settings.msg_buffers_size = 2 << 20;
    let Served {
        shared,
        addr,
        shutdown,
        done,
    } = serve_with(settings).await;
    let mut clients = Vec::new();
    for seed in 0..3u64 {
        let mut hs = ClientHandshake::generate(
            &mut StdRng::seed_from_u64(20 + seed),
            Some(&SECRET),
            Transport::Intermediate,
            2,
        );
        // A frame announcing 1 000 000 bytes of which 700 KiB arrive, then nothing.
        let mut frame = BytesMut::new();
        encode_client_frame(
            Transport::Intermediate,
            &vec![5u8; 1_000_000],
            false,
            &[],
            &mut frame,
        )
        .unwrap();
        frame.truncate(700 << 10);
        hs.encrypt.apply(&mut frame);
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&hs.header).await.unwrap();
        c.write_all(&frame).await.unwrap();
        clients.push(c);
    }
    let sh = shared.clone();
    until(|| sh.counters.connections_failed_input.load(Relaxed) >= 1).await;
    // What the closed ones held is given back; the budget holds what is still open.
    let open = 3 - shared.counters.connections_failed_input.load(Relaxed) as usize;
    let sh = shared.clone();
    until(|| sh.buffered.load(Relaxed) <= open * (700 << 10)).await;
    assert!(shared.buffered.load(Relaxed) <= (2 << 20) / 4 * 3);
    drop(clients);
    let sh = shared.clone();
    until(|| sh.buffered.load(Relaxed) == 0).await;
    shutdown.cancel();
    let _ = done.await;
}

#[tokio::test(start_paused = true)]
async fn one_address_holds_at_most_the_per_ip_limit_and_others_are_unaffected() {
    let mut settings = Settings::new(Arc::new(SessionRules::new(vec![SECRET])));
    settings.max_connections_per_ip = 2;
    let Served {
        shared,
        addr,
        shutdown,
        done,
    } = serve_with(settings).await;
    let from = |ip: &str| {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(addr)
    };
    let (_a, _b) = (
        from("127.0.0.1").await.unwrap(),
        from("127.0.0.1").await.unwrap(),
    );
    let sh = shared.clone();
    until(|| sh.counters.total_special_connections.load(Relaxed) == 2).await;
    let mut third = from("127.0.0.1").await.unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        third.read(&mut buf).await.unwrap_or(0),
        0,
        "over the limit: closed"
    );
    assert_eq!(shared.counters.per_ip_refusals.load(Relaxed), 1);
    // Another address is admitted.
    let _other = from("127.0.0.2").await.unwrap();
    let sh = shared.clone();
    until(|| sh.counters.total_special_connections.load(Relaxed) == 3).await;
    assert_eq!(shared.counters.per_ip_refusals.load(Relaxed), 1);
    shutdown.cancel();
    let _ = done.await;
}
