//! The middle-end side's bounds (issue #14 item 7), driven in-process against a fake
//! middle end on loopback: a middle end that pings and does not read, one that makes us
//! queue RPC_CLOSE_CONN it does not read, and one that floods junk each get their link
//! closed (counted, then reconnected), with the link's memory held under the bound all
//! along; a middle end with heavy but ordinary ping traffic is not affected.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mtproxy::config::multi_conf::parse_multi_conf;
use mtproxy::net::me_link::{apply, CTL_GATE, JUNK_LIMIT, PONG_GATE};
use mtproxy::net::me_pool::{MeConn, CTL_QUEUE_LIMIT};
use mtproxy::net::shared::{Settings, Shared};
use mtproxy::protocol::rpc::RpcMessage;
use mtproxy::protocol::session::SessionRules;
use parity::fake_me::FakeMe;
use tokio_util::sync::CancellationToken;

const PROXY_SECRET: [u8; 32] = [0x42; 32];
/// Bytes a link reader asks for in one read: one read's worth of pings may land past the
/// PONG bound before the check (its buffer may hold somewhat more than one chunk free, so
/// the tests allow two).
const READ_CHUNK: usize = 256 * 1024;
/// An op no middle end sends.
const JUNK_OP: u32 = 0x1234_5678;

/// A proxy core with one middle-end link to a fresh fake middle end.
struct Rig {
    me: FakeMe,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Rig {
    async fn new() -> Self {
        let me = FakeMe::builder()
            .secret(PROXY_SECRET.to_vec())
            .spawn()
            .await
            .unwrap();
        let mut settings = Settings::new(Arc::new(SessionRules::new(vec![[0x11; 16]])));
        settings.proxy_secret = PROXY_SECRET.to_vec();
        let shared = Shared::new(settings);
        let text = format!("min_connections 1;\nproxy_for 2 {};\n", me.addr());
        let conf = parse_multi_conf(text.as_bytes(), "me_bounds.conf", &|_| None).unwrap();
        let shutdown = CancellationToken::new();
        apply(&shared, Arc::new(conf), &shutdown);
        me.wait_live_links(1, Duration::from_secs(5)).await.unwrap();
        let rig = Rig {
            me,
            shared,
            shutdown,
        };
        rig.conn().await;
        rig
    }

    /// The proxy's ready link (waits until the pool has one).
    async fn conn(&self) -> Arc<MeConn> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = self.shared.pool.pick(2) {
                if c.is_alive() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "no ready link in the pool");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The fake middle end's one ready link.
    fn link(&self) -> usize {
        let links = self.me.ready_links();
        assert_eq!(links.len(), 1, "{links:?}");
        links[0]
    }

    /// Waits until the proxy's side of `conn` is closed.
    async fn closed(&self, conn: &MeConn) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while conn.is_alive() {
            assert!(Instant::now() < deadline, "the link was not closed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The three close-cause counters: (control backlog, PONG backlog, junk).
    fn closes(&self) -> (i64, i64, i64) {
        let c = &self.shared.counters;
        (
            c.me_links_closed_ctl_backlog.load(Relaxed),
            c.me_links_closed_pong_backlog.load(Relaxed),
            c.me_links_closed_junk.load(Relaxed),
        )
    }

    /// After a close the pool reconnects (C's backoff: about 1 s).
    async fn reconnects(&self) {
        self.me
            .wait_for("a reconnected link", Duration::from_secs(5), |s| {
                s.handshakes >= 2 && s.live_links == 1
            })
            .await
            .unwrap();
        let _ = self.conn().await;
    }
}

/// Sends `batch` on `link` until the proxy closes it (the send fails), while `watch`
/// samples the link's state; bounded in time and in how much is sent.
async fn flood(
    rig: &Rig,
    link: usize,
    conn: &MeConn,
    batch: impl Fn(usize) -> Vec<RpcMessage>,
    max_batches: usize,
    mut watch: impl FnMut(&MeConn),
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..max_batches {
        watch(conn);
        if !conn.is_alive() {
            return i;
        }
        let sent =
            tokio::time::timeout(Duration::from_secs(5), rig.me.send_to_link(link, batch(i))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return i;
        }
        assert!(Instant::now() < deadline, "flood took too long");
    }
    panic!("the link survived {max_batches} batches");
}

fn pings(from: usize, n: usize) -> Vec<RpcMessage> {
    (from..from + n)
        .map(|i| RpcMessage::Ping { ping_id: i as i64 })
        .collect()
}

/// A middle end that pings and does not read our PONGs gets its link closed: the reader
/// stops reading it at [`PONG_GATE`] unsent, and the writer makes no progress for
/// `WRITER_STALL` (5 s); the unsent PONGs never grew further than a read or two past the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middle_end_that_pings_without_reading_is_closed_at_the_pong_bound() {
    let rig = Rig::new().await;
    let conn = rig.conn().await;
    let link = rig.link();
    rig.me.set_reading(false);
    let mut peak = 0;
    const BATCH: usize = 8192;
    flood(
        &rig,
        link,
        &conn,
        |i| pings(i * BATCH, BATCH),
        400,
        |c| {
            peak = peak.max(c.unsent_pongs());
        },
    )
    .await;
    rig.closed(&conn).await;
    peak = peak.max(conn.unsent_pongs());
    // Closed for a stall, the reader was waiting for the backlog to come down to half the
    // gate (the writer may have written some before its socket filled).
    assert!(peak > PONG_GATE / 2, "the backlog never built up: {peak}");
    assert!(
        peak <= PONG_GATE + 2 * READ_CHUNK,
        "unsent PONGs grew to {peak}"
    );
    assert_eq!(rig.closes(), (0, 1, 0));
    rig.me.set_reading(true);
    rig.reconnects().await;
}

/// A middle end that keeps answering for connections we do not know (each answer makes
/// us queue RPC_CLOSE_CONN) and does not read gets its link closed: the reader stops at
/// [`CTL_GATE`] queued, the writer makes no progress for `WRITER_STALL` (5 s); the queue stays
/// within [`CTL_QUEUE_LIMIT`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middle_end_that_makes_us_queue_close_conns_without_reading_is_closed() {
    let rig = Rig::new().await;
    let conn = rig.conn().await;
    let link = rig.link();
    rig.me.set_reading(false);
    let mut peak = 0;
    const BATCH: usize = 8192;
    let answers = |i: usize| -> Vec<RpcMessage> {
        (0..BATCH)
            .map(|j| RpcMessage::ProxyAns {
                flags: 0,
                conn_id: (1 << 40) + (i * BATCH + j) as i64,
                data: Bytes::from_static(&[0; 16]),
            })
            .collect()
    };
    flood(&rig, link, &conn, answers, 400, |c| {
        peak = peak.max(c.ctl_queued());
    })
    .await;
    rig.closed(&conn).await;
    peak = peak.max(conn.ctl_queued());
    assert!(peak <= CTL_QUEUE_LIMIT, "control queue grew to {peak}");
    assert!(
        peak > CTL_GATE / 2,
        "the control queue never filled: {peak}"
    );
    assert_eq!(rig.closes(), (1, 0, 0));
    let c = &rig.shared.counters;
    assert!(c.dropped_responses.load(Relaxed) > CTL_QUEUE_LIMIT as i64);
    rig.me.set_reading(true);
    rig.reconnects().await;
}

/// A burst of [`JUNK_LIMIT`] unknown ops closes the link; fewer, or as many with a valid
/// message between, do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middle_end_that_floods_junk_is_closed() {
    let rig = Rig::new().await;
    let conn = rig.conn().await;
    let link = rig.link();
    let junk = |n: u32| -> Vec<RpcMessage> {
        (0..n)
            .map(|i| RpcMessage::Unknown {
                op: JUNK_OP,
                body: Bytes::copy_from_slice(&i.to_le_bytes()),
            })
            .collect()
    };
    // Just under the limit, a valid message, just under again: the link stays. A ping
    // after the junk is answered: everything before it was read and survived.
    let mut msgs = junk(JUNK_LIMIT - 1);
    msgs.push(RpcMessage::Pong { ping_id: 7 });
    msgs.extend(junk(JUNK_LIMIT - 1));
    msgs.extend(pings(1, 1));
    rig.me.send_to_link(link, msgs).await.unwrap();
    rig.me.wait_pongs(1, Duration::from_secs(5)).await.unwrap();
    assert!(conn.is_alive());
    assert_eq!(rig.closes(), (0, 0, 0));
    // A burst of JUNK_LIMIT: closed.
    rig.me.send_to_link(link, junk(JUNK_LIMIT)).await.unwrap();
    rig.closed(&conn).await;
    assert_eq!(rig.closes(), (0, 0, 1));
    rig.reconnects().await;
}

/// A middle end that reads sees every one of many more pings answered than the PONG bound
/// holds, and its link stays up: the bounds only catch a peer that does not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_ping_traffic_from_a_reading_middle_end_is_answered() {
    let rig = Rig::new().await;
    let conn = rig.conn().await;
    let link = rig.link();
    const BATCH: usize = 8192;
    const BATCHES: usize = 12; // ~2.4 MB of PONGs, over twice the bound
    for i in 0..BATCHES {
        rig.me
            .send_to_link(link, pings(i * BATCH, BATCH))
            .await
            .unwrap();
    }
    let pongs = match rig
        .me
        .wait_pongs(BATCH * BATCHES, Duration::from_secs(10))
        .await
    {
        Ok(p) => p,
        Err(e) => panic!(
            "{e}; closes {:?}; link ends {:?}",
            rig.closes(),
            rig.me.link_ends()
        ),
    };
    assert_eq!(pongs.len(), BATCH * BATCHES);
    assert!(pongs.iter().all(|p| p.link == link));
    assert!(conn.is_alive());
    assert_eq!(rig.closes(), (0, 0, 0));
    assert_eq!(rig.me.state().handshakes, 1);
    // Everything written: nothing is left counted as unsent.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.unsent_pongs() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes of PONG unsent",
            conn.unsent_pongs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A middle end that reads may answer for many more closed connections than the control
/// queue holds: each answer gets its RPC_CLOSE_CONN and the link stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_answers_for_unknown_connections_from_a_reading_middle_end_are_closed_one_by_one() {
    let rig = Rig::new().await;
    let conn = rig.conn().await;
    let link = rig.link();
    const BATCH: usize = 8192;
    let total = 2 * CTL_QUEUE_LIMIT + 100;
    let mut sent = 0;
    while sent < total {
        let n = BATCH.min(total - sent);
        let answers = (sent..sent + n)
            .map(|j| RpcMessage::ProxyAns {
                flags: 0,
                conn_id: (1 << 40) + j as i64,
                data: Bytes::from_static(&[0; 16]),
            })
            .collect();
        rig.me.send_to_link(link, answers).await.unwrap();
        sent += n;
    }
    let closes = rig
        .me
        .wait_close_conns(total, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(closes.len(), total);
    assert!(conn.is_alive());
    assert_eq!(rig.closes(), (0, 0, 0));
    assert_eq!(rig.me.state().handshakes, 1);
    assert_eq!(
        rig.shared.counters.dropped_responses.load(Relaxed),
        total as i64
    );
}
