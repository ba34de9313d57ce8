//! The replay caches of one proxy instance, shared by every task, core and worker.
//!
//! Two caches, both [`ReplayCache`]s (entries live [`REPLAY_ENTRY_LIFETIME_SECS`] = 2 days,
//! as C):
//! * [`CacheKind::Hello`] — fake-TLS `client_random[0..16]` (C's cache; §4.4.1 step 4).
//! * [`CacheKind::Header`] — obfuscated2 header nonces, `hdr[8..24]` (the first half of the
//!   key seed). C has no such cache: a captured obfuscated2 header can be replayed to it and
//!   a prober sees a proxy. Here a replayed header is treated as one that matches no secret.
//!
//! Each cache holds at most [`MAX_ENTRIES_PER_CACHE`] keys (about 20 MB worst case per
//! cache: a 16-byte key in a hash set plus a 24-byte slot in a time-ordered queue, with the
//! tables' growth slack). A full cache evicts its oldest entries only once they are past a
//! minimum retention; while it is full of younger ones, a new key is refused
//! ([`Verdict::full`]) and the client rejected as if it were a replay (fail closed, counted
//! by the caller as `tls_replay_cache_full` / `obfs2_replay_cache_full`):
//! * hello cache: [`HELLO_MIN_RETENTION_SECS`] (603 s). A hello cached earlier can no
//!   longer pass the 600-second timestamp window, and eviction (oldest first) keeps the
//!   "newer than the oldest cached entry + 3 s" rule sound, so no random that could still
//!   be accepted is ever forgotten. Since the HMAC is checked first, only secret holders
//!   fill it: refusals need more than 2^18 hellos made with a secret within 10 minutes.
//! * header cache: [`HEADER_MIN_RETENTION_SECS`] (10 minutes). A header has no timestamp,
//!   so any forgotten nonce could be replayed; the cache guarantees that a nonce seen in
//!   the last 10 minutes (the time a prober typically takes to replay what it captured) is
//!   never forgotten, and keeps older ones up to the 2-day lifetime as long as there is
//!   room. Never evicting before the lifetime would cap an instance at 2^18 obfuscated2
//!   connections per 2 days (and without `-S`, anyone could fill it).
//!
//! Where the caches live:
//! * one process (no `-M`): [`ReplayStore::Local`], one mutex shared by every tokio worker
//!   thread (C keeps one per process, too);
//! * `-M N`: the master owns the caches and answers queries on a dedicated socket pair per
//!   worker ([`serve_replay`]); workers use [`ReplayStore::Remote`]. So a hello replayed to
//!   another worker is caught, which C (one cache per forked process) misses, and the cache
//!   survives a worker respawn. A query that gets no answer within [`QUERY_TIMEOUT`] is an
//!   error and the caller rejects the client (fail closed).
//!
//! The query line protocol (one request per line, answers in order):
//! `h|o <32 hex key> <unix now>` → `1|0 <oldest insertion time or ->[ f]`, where `h` is the
//! hello cache, `o` the header cache, `1` fresh (inserted now), `0` a replay, and a trailing
//! `f` marks a `0` given because the cache is full.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::protocol::fake_tls::{ReplayCache, ReplayCheck, ReplayVerdict};

pub use crate::protocol::fake_tls::{HELLO_MIN_RETENTION_SECS, REPLAY_ENTRY_LIFETIME_SECS};

/// The bound on each cache: 2^18 = 262 144 keys.
pub const MAX_ENTRIES_PER_CACHE: usize = 1 << 18;

/// How long an obfuscated2 nonce is kept at least, even when the header cache is full
/// (see the module documentation).
pub const HEADER_MIN_RETENTION_SECS: i64 = 10 * 60;

/// How long a worker waits for the master's answer before rejecting the client.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Which cache a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Fake-TLS `client_random[0..16]`.
    Hello,
    /// Obfuscated2 header nonce `hdr[8..24]`.
    Header,
}

/// The answer to a check-and-insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `true`: the key was new and is now cached; `false`: a replay.
    pub fresh: bool,
    /// The insertion time of the oldest entry after the operation (for the fake-TLS
    /// timestamp rule).
    pub oldest: Option<i64>,
    /// The key was not cached but could not be inserted: the cache is full of entries
    /// younger than its minimum retention. `fresh` is `false`: the client must be rejected.
    pub full: bool,
}

/// The replay cache could not be asked (the master is gone or too slow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay cache unavailable")]
pub struct ReplayUnavailable;

/// Both caches of an instance.
#[derive(Debug)]
pub struct Caches {
    hello: ReplayCache,
    header: ReplayCache,
    /// Whether the last new key of each cache (hello, header) was refused: a warning is
    /// logged when a cache starts refusing.
    refusing: [bool; 2],
}

impl Default for Caches {
    fn default() -> Self {
        Self::with_max_entries(MAX_ENTRIES_PER_CACHE)
    }
}

impl Caches {
    /// Empty caches holding at most `max` keys each (minimum retentions
    /// [`HELLO_MIN_RETENTION_SECS`] and [`HEADER_MIN_RETENTION_SECS`]).
    pub fn with_max_entries(max: usize) -> Self {
        Self {
            hello: ReplayCache::with_retention(max, HELLO_MIN_RETENTION_SECS),
            header: ReplayCache::with_retention(max, HEADER_MIN_RETENTION_SECS),
            refusing: [false; 2],
        }
    }

    /// Checks `key` in the `kind` cache and inserts it if new (C's order: lookup, insert,
    /// expire); a full cache refuses it (see [`Verdict::full`]).
    pub fn check(&mut self, kind: CacheKind, key: [u8; 16], now_unix: i64) -> Verdict {
        let (cache, refusing, name) = match kind {
            CacheKind::Hello => (&mut self.hello, &mut self.refusing[0], "fake-TLS hello"),
            CacheKind::Header => (
                &mut self.header,
                &mut self.refusing[1],
                "obfuscated2 header",
            ),
        };
        let verdict = cache.check(key, now_unix);
        match verdict {
            ReplayVerdict::Full if !*refusing => {
                *refusing = true;
                tracing::warn!(
                    entries = cache.len(),
                    "{name} replay cache full of recent entries: new clients are rejected until entries age"
                );
            }
            ReplayVerdict::Fresh => *refusing = false,
            ReplayVerdict::Full | ReplayVerdict::Replay => {}
        }
        Verdict {
            fresh: verdict == ReplayVerdict::Fresh,
            oldest: cache.oldest_time(),
            full: verdict == ReplayVerdict::Full,
        }
    }
}

type Pending = (CacheKind, [u8; 16], i64, oneshot::Sender<Verdict>);

/// Where this process's replay checks go.
#[derive(Debug)]
pub enum ReplayStore {
    /// The caches live in this process (boxed: they are larger than a channel handle).
    Local(Box<Mutex<Caches>>),
    /// The caches live in the `-M` master; queries go over a socket.
    Remote(mpsc::Sender<Pending>),
}

impl Default for ReplayStore {
    fn default() -> Self {
        Self::Local(Box::new(Mutex::new(Caches::default())))
    }
}

impl ReplayStore {
    /// A store asking the master over `stream` (a worker's end of its replay socket pair).
    /// The connection task ends with `shutdown` or when the master closes the socket.
    pub fn remote(stream: UnixStream, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(remote_task(stream, rx, shutdown));
        Self::Remote(tx)
    }

    /// Checks and inserts `key` in the `kind` cache.
    ///
    /// # Errors
    /// [`ReplayUnavailable`] when the master does not answer in time.
    pub async fn check(
        &self,
        kind: CacheKind,
        key: [u8; 16],
        now_unix: i64,
    ) -> Result<Verdict, ReplayUnavailable> {
        match self {
            Self::Local(m) => Ok(m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .check(kind, key, now_unix)),
            Self::Remote(tx) => {
                let (otx, orx) = oneshot::channel();
                let ask = async {
                    tx.send((kind, key, now_unix, otx))
                        .await
                        .map_err(|_| ReplayUnavailable)?;
                    orx.await.map_err(|_| ReplayUnavailable)
                };
                tokio::time::timeout(QUERY_TIMEOUT, ask)
                    .await
                    .map_err(|_| ReplayUnavailable)?
            }
        }
    }
}

fn request_line(kind: CacheKind, key: &[u8; 16], now: i64) -> String {
    let k = match kind {
        CacheKind::Hello => 'h',
        CacheKind::Header => 'o',
    };
    format!("{k} {} {now}\n", hex::encode(key))
}

fn parse_request(line: &str) -> Option<(CacheKind, [u8; 16], i64)> {
    let mut it = line.split_ascii_whitespace();
    let kind = match it.next()? {
        "h" => CacheKind::Hello,
        "o" => CacheKind::Header,
        _ => return None,
    };
    let key: [u8; 16] = hex::decode(it.next()?).ok()?.try_into().ok()?;
    let now = it.next()?.parse().ok()?;
    Some((kind, key, now))
}

fn answer_line(v: Verdict) -> String {
    let full = if v.full { " f" } else { "" };
    match v.oldest {
        Some(t) => format!("{} {t}{full}\n", u8::from(v.fresh)),
        None => format!("{} -{full}\n", u8::from(v.fresh)),
    }
}

fn parse_answer(line: &str) -> Option<Verdict> {
    let mut it = line.split_ascii_whitespace();
    let fresh = match it.next()? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    let oldest = match it.next()? {
        "-" => None,
        t => Some(t.parse().ok()?),
    };
    let full = match it.next() {
        None => false,
        Some("f") if !fresh => true,
        Some(_) => return None,
    };
    Some(Verdict {
        fresh,
        oldest,
        full,
    })
}

/// Queries a worker may have written and not yet had answered; beyond, new queries fail
/// at once (the master is far behind: its clients are rejected, fail closed).
const MAX_IN_FLIGHT: usize = 4096;

/// The worker side: writes queries in order, matches answers in order.
///
/// Writing and reading run concurrently: while a request waits for the master to read
/// (its socket buffer full), answers keep being read. A worker that stopped reading while
/// it wrote would deadlock with a master blocked writing answers to it, each waiting for
/// the other to read. A query is queued as waiting before its line is written, so every
/// answer finds its query; a query whose asker gave up (timeout) keeps its place and its
/// answer is dropped, so later answers never go to the wrong query.
async fn remote_task(
    stream: UnixStream,
    mut rx: mpsc::Receiver<Pending>,
    shutdown: CancellationToken,
) {
    let (rd, mut wr) = stream.into_split();
    let waiting: Mutex<VecDeque<oneshot::Sender<Verdict>>> = Mutex::new(VecDeque::new());
    let pending = || waiting.lock().unwrap_or_else(|p| p.into_inner());
    let write = async {
        while let Some((kind, key, now, reply)) = rx.recv().await {
            {
                let mut w = pending();
                if w.len() >= MAX_IN_FLIGHT {
                    // Dropping `reply` fails the query.
                    continue;
                }
                w.push_back(reply);
            }
            if wr
                .write_all(request_line(kind, &key, now).as_bytes())
                .await
                .is_err()
            {
                return true;
            }
        }
        // The store is gone: nobody asks any more.
        false
    };
    let read = async {
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(v) = parse_answer(&line) else { return };
            // An answer to no query: the master is out of step, stop trusting it.
            let Some(reply) = pending().pop_front() else {
                return;
            };
            let _ = reply.send(v);
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => return,
        lost = write => if !lost { return },
        () = read => {}
    }
    tracing::warn!("replay cache connection to the master lost: fake-TLS and obfuscated2 clients are rejected until restart");
    // Dropping `waiting` and `rx` fails every pending and later query.
}

/// The master side: answers one worker's queries against the instance's caches until the
/// worker closes its end or `shutdown` fires.
pub async fn serve_replay(
    stream: UnixStream,
    caches: Arc<Mutex<Caches>>,
    shutdown: CancellationToken,
) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    loop {
        let line = tokio::select! {
            () = shutdown.cancelled() => return,
            l = lines.next_line() => l,
        };
        let Ok(Some(line)) = line else { return };
        let Some((kind, key, now)) = parse_request(&line) else {
            return;
        };
        let v = caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(kind, key, now);
        if wr.write_all(answer_line(v).as_bytes()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let key = [0xab; 16];
        let l = request_line(CacheKind::Hello, &key, 1234);
        assert_eq!(parse_request(&l), Some((CacheKind::Hello, key, 1234)));
        let l = request_line(CacheKind::Header, &key, -5);
        assert_eq!(parse_request(&l), Some((CacheKind::Header, key, -5)));
        assert_eq!(parse_request("x 00 1"), None);
        for v in [
            Verdict {
                fresh: true,
                oldest: Some(7),
                full: false,
            },
            Verdict {
                fresh: false,
                oldest: None,
                full: false,
            },
            Verdict {
                fresh: false,
                oldest: Some(-3),
                full: true,
            },
        ] {
            assert_eq!(parse_answer(&answer_line(v)), Some(v));
        }
    }

    #[test]
    fn caches_are_separate() {
        let mut c = Caches::with_max_entries(4);
        let k = [1; 16];
        assert!(c.check(CacheKind::Hello, k, 10).fresh);
        assert!(!c.check(CacheKind::Hello, k, 11).fresh);
        assert!(c.check(CacheKind::Header, k, 11).fresh);
        assert_eq!(c.check(CacheKind::Header, [2; 16], 12).oldest, Some(11));
    }

    #[test]
    fn answer_lines_reject_a_bad_full_mark() {
        assert_eq!(parse_answer("1 5 f"), None);
        assert_eq!(parse_answer("0 5 x"), None);
        assert_eq!(
            parse_answer("0 5"),
            Some(Verdict {
                fresh: false,
                oldest: Some(5),
                full: false
            })
        );
    }

    #[test]
    fn a_full_hello_cache_refuses_new_keys_and_stays_bounded() {
        let mut c = Caches::with_max_entries(4);
        for i in 0..4u8 {
            assert!(c.check(CacheKind::Hello, [i; 16], 100).fresh);
        }
        for i in 4..200u8 {
            let v = c.check(CacheKind::Hello, [i; 16], 100 + i64::from(i));
            assert_eq!(
                v,
                Verdict {
                    fresh: false,
                    oldest: Some(100),
                    full: true
                }
            );
        }
        assert_eq!(c.hello.len(), 4);
        // The recorded keys are all still caught, and a replay is not a "full" refusal.
        for i in 0..4u8 {
            let v = c.check(CacheKind::Hello, [i; 16], 300);
            assert!(!v.fresh && !v.full);
        }
        // Once the oldest entries are past the timestamp window, new keys fit again.
        let v = c.check(CacheKind::Hello, [200; 16], 100 + HELLO_MIN_RETENTION_SECS);
        assert!(v.fresh && !v.full);
        assert_eq!(c.hello.len(), 4);
        assert!(!c.check(CacheKind::Header, [0; 16], 100).full);
    }

    #[test]
    fn a_flood_never_evicts_a_recent_header_nonce() {
        let mut c = Caches::with_max_entries(8);
        let nonce = [0xab; 16];
        assert!(c.check(CacheKind::Header, nonce, 1000).fresh);
        let mut refused = 0;
        for i in 0..10_000u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            let v = c.check(CacheKind::Header, k, 1000 + i64::from(i % 600));
            refused += usize::from(v.full);
            assert!(c.header.len() <= 8);
        }
        assert_eq!(refused, 10_000 - 7);
        // Replayed 9 minutes later, the nonce is still caught.
        let v = c.check(CacheKind::Header, nonce, 1000 + 599);
        assert!(!v.fresh && !v.full);
        // After the minimum retention it may go, to make room.
        let v = c.check(
            CacheKind::Header,
            [0xcd; 16],
            1000 + HEADER_MIN_RETENTION_SECS,
        );
        assert!(v.fresh);
        // (The trade-off of a bounded header cache: once gone, the nonce is new again.)
        assert!(
            c.check(CacheKind::Header, nonce, 1000 + HEADER_MIN_RETENTION_SECS)
                .fresh
        );
    }

    #[tokio::test]
    async fn a_full_refusal_reaches_a_worker() {
        let caches = Arc::new(Mutex::new(Caches::with_max_entries(1)));
        let stop = CancellationToken::new();
        let (a, b) = UnixStream::pair().unwrap();
        tokio::spawn(serve_replay(b, caches, stop.clone()));
        let store = ReplayStore::remote(a, stop.clone());
        assert!(
            store
                .check(CacheKind::Hello, [1; 16], 50)
                .await
                .unwrap()
                .fresh
        );
        assert_eq!(
            store.check(CacheKind::Hello, [2; 16], 51).await.unwrap(),
            Verdict {
                fresh: false,
                oldest: Some(50),
                full: true
            }
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn remote_queries_reach_one_shared_cache() {
        let caches = Arc::new(Mutex::new(Caches::default()));
        let stop = CancellationToken::new();
        let mut stores = Vec::new();
        for _ in 0..2 {
            let (a, b) = UnixStream::pair().unwrap();
            tokio::spawn(serve_replay(b, caches.clone(), stop.clone()));
            stores.push(ReplayStore::remote(a, stop.clone()));
        }
        let k = [9; 16];
        let first = stores[0].check(CacheKind::Hello, k, 100).await.unwrap();
        assert_eq!(
            first,
            Verdict {
                fresh: true,
                oldest: Some(100),
                full: false,
            }
        );
        // The same key through the other "worker" is a replay.
        let again = stores[1].check(CacheKind::Hello, k, 101).await.unwrap();
        assert!(!again.fresh);
        assert!(
            stores[1]
                .check(CacheKind::Header, k, 101)
                .await
                .unwrap()
                .fresh
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_lost_master_fails_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let store = ReplayStore::remote(a, CancellationToken::new());
        assert_eq!(
            store.check(CacheKind::Hello, [1; 16], 1).await,
            Err(ReplayUnavailable)
        );
    }

    /// A master that reads 3000 requests before it answers any (busy for a moment), then
    /// answers line by line, echoing each request's time as the oldest entry, so a worker
    /// sees which request an answer belongs to. Reports when the first 3000 answers are
    /// written.
    async fn slow_master(stream: UnixStream, first_written: oneshot::Sender<()>) {
        let (rd, mut wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let mut held = Vec::new();
        while held.len() < 3000 {
            let Ok(Some(l)) = lines.next_line().await else {
                return;
            };
            held.push(parse_request(&l).unwrap().2);
        }
        // Each answer echoes its request's time as the oldest entry.
        let answer = |now| {
            answer_line(Verdict {
                fresh: true,
                oldest: Some(now),
                full: false,
            })
        };
        for now in held {
            if wr.write_all(answer(now).as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = first_written.send(());
        while let Ok(Some(l)) = lines.next_line().await {
            let now = parse_request(&l).unwrap().2;
            if wr.write_all(answer(now).as_bytes()).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_reads_answers_while_its_requests_wait_and_never_mixes_them_up() {
        let (a, b) = UnixStream::pair().unwrap();
        let (written_tx, written) = oneshot::channel();
        tokio::spawn(slow_master(b, written_tx));
        let stop = CancellationToken::new();
        let store = Arc::new(ReplayStore::remote(a, stop.clone()));
        let mut asks = tokio::task::JoinSet::new();
        for i in 0..8000i64 {
            let s = store.clone();
            asks.spawn(async move { (i, s.check(CacheKind::Hello, [1; 16], i).await) });
        }
        // The master blocks writing its answers unless the worker reads them while its own
        // requests wait for the master to read: a worker that stops reading while it
        // writes deadlocks with it here (the bound only ends the test).
        tokio::time::timeout(Duration::from_secs(60), written)
            .await
            .expect("worker and master deadlocked")
            .unwrap();
        // Every answer went to its own query (those that gave up waiting included).
        let mut answered = 0;
        while let Some(r) = asks.join_next().await {
            if let (i, Ok(v)) = r.unwrap() {
                assert_eq!(v.oldest, Some(i), "query {i} got another query's answer");
                answered += 1;
            }
        }
        assert!(answered > 0);
        let v = store
            .check(CacheKind::Header, [2; 16], 123_456)
            .await
            .unwrap();
        assert_eq!(v.oldest, Some(123_456));
        stop.cancel();
    }
}
