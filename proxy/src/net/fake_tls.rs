//! `-D`: the fake-TLS front door of a client connection (§4.4, §12.1), around the sans-IO
//! [`crate::protocol::fake_tls`] core.
//!
//! With `-D` every client connection goes through [`accept`]:
//! 1. A connection that comes from one of our own fronting sockets is closed (loop).
//! 2. Once 9 bytes are buffered (as C), the first bytes are classified. Not
//!    `16 03 01 02..7f` (plain obfuscated2, HTTP, garbage…): fronted to the default domain.
//! 3. The whole ClientHello record is buffered. On local port 80 the connection is
//!    fronted to `<SNI domain or default>:80`.
//! 4. [`validate_client_hello`] in C's order; the replay check goes to the instance-wide
//!    [`crate::net::replay_store::ReplayStore`] (see [`check_hello`]). Any rejection is
//!    fronted to the SNI's domain (unknown SNI: the default one) with every byte read.
//! 5. No decision within [`HELLO_TIMEOUT`] (10 s from accept, C's timer): fronted to the
//!    default domain.
//! 6. Accepted: the ServerHello (profile of the SNI's domain) is sent, then the client's
//!    ChangeCipherSpec and first application-data record must bring a `dd` obfuscated2
//!    header under a `-S` secret, never seen before, within the same 10 s. Then the caller
//!    relays the session with TLS record framing.
//!
//! Divergences from C, all after a valid (HMAC-authenticated) ClientHello, so only a
//! holder of the secret can see them: a bad inner header, bad records or the 10 s timer
//! expiring after the ServerHello close the connection (C splices the rest of the stream to
//! the default domain or enters its silent skip mode).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::client::Outcome;
use crate::net::replay_store::CacheKind;
use crate::net::splice::{self, LoopGuard};
use crate::net::Shared;
use crate::protocol::fake_tls::{
    build_server_hello, classify_first_bytes, sni_domain, validate_client_hello, AcceptedHello,
    Classification, ClientRecordDecoder, DomainProfile, HelloReject, ReplayCheck, DEFAULT_DOMAIN,
    MAX_CLIENT_HELLO_LEN,
};
use crate::protocol::obfuscated2::{self, ServerHandshake, HEADER_LEN};
use crate::stats::inc;

/// C's pre-handshake timer: a connection still undecided this long after accept is
/// fronted to the default domain.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// C decides on the transport once this many bytes are buffered.
const DECISION_BYTES: usize = 9;

/// What the proxy knows about one `-D` domain.
#[derive(Debug, Clone)]
struct DomainTarget {
    name: String,
    /// The resolved address (None until resolved).
    addr: Option<IpAddr>,
    /// How to imitate its ServerHello.
    profile: DomainProfile,
    /// Whether `profile` was learnt by a probe (else it is the fallback).
    probed: bool,
}

/// The `-D` state of one process: the domains, their profiles and addresses, and the
/// fronting-loop guard.
#[derive(Debug)]
pub struct FakeTlsState {
    names: Vec<String>,
    targets: RwLock<Vec<DomainTarget>>,
    /// Refuses relays to ourselves.
    pub loops: LoopGuard,
}

impl FakeTlsState {
    /// State for the `-D` names (the first is the default), each starting with C's fallback
    /// profile, for a process listening on `listen`.
    pub fn new(domains: &[String], listen: Vec<SocketAddr>, rng: &mut impl RngCore) -> Self {
        let targets = domains
            .iter()
            .map(|name| DomainTarget {
                name: name.clone(),
                addr: None,
                profile: DomainProfile::fallback(rng),
                probed: false,
            })
            .collect();
        Self {
            names: domains.to_vec(),
            targets: RwLock::new(targets),
            loops: LoopGuard::new(listen),
        }
    }

    /// The `-D` names.
    pub fn domains(&self) -> &[String] {
        &self.names
    }

    /// How many domains.
    pub fn domain_count(&self) -> usize {
        self.names.len()
    }

    /// Domain `i`'s name (the default one's for an out-of-range index).
    pub fn domain_name(&self, i: usize) -> &str {
        self.names
            .get(i)
            .or_else(|| self.names.first())
            .map_or("", String::as_str)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<DomainTarget>> {
        self.targets.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<DomainTarget>> {
        self.targets.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Domain `i`'s current profile.
    pub fn profile(&self, i: usize) -> Option<DomainProfile> {
        self.read().get(i).map(|t| t.profile)
    }

    /// Whether domain `i`'s profile was learnt by a probe.
    pub fn is_probed(&self, i: usize) -> bool {
        self.read().get(i).is_some_and(|t| t.probed)
    }

    /// Records a probe's result for domain `i`.
    pub fn set_profile(&self, i: usize, profile: DomainProfile) {
        if let Some(t) = self.write().get_mut(i) {
            t.profile = profile;
            t.probed = true;
        }
    }

    /// Domain `i`'s resolved address, if known.
    pub fn address(&self, i: usize) -> Option<IpAddr> {
        self.read().get(i).and_then(|t| t.addr)
    }

    /// Records domain `i`'s address.
    pub fn set_address(&self, i: usize, ip: IpAddr) {
        if let Some(t) = self.write().get_mut(i) {
            t.addr = Some(ip);
        }
    }

    /// Domain `i`'s address, resolving it now if the probe has not yet.
    pub async fn target_ip(&self, i: usize) -> Option<IpAddr> {
        if let Some(ip) = self.address(i) {
            return Some(ip);
        }
        let name = self.read().get(i).map(|t| t.name.clone())?;
        let ip = crate::net::domain_probe::resolve(&name).await?;
        self.set_address(i, ip);
        Some(ip)
    }
}

/// How the fake-TLS front door ended.
#[derive(Debug)]
pub enum TlsStart {
    /// The connection was fronted, closed or timed out.
    Done(Outcome),
    /// A fake-TLS client was accepted; relay it.
    Session(Box<TlsSession>),
}

/// An accepted fake-TLS client, ready for the relay.
#[derive(Debug)]
pub struct TlsSession {
    /// The inner obfuscated2 handshake (decrypt positioned after the 64-byte header).
    pub handshake: ServerHandshake,
    /// The client record decoder, past the first record's header.
    pub decoder: ClientRecordDecoder,
    /// Wire bytes read but not yet de-recorded.
    pub raw: BytesMut,
    /// Payload after the obfuscated2 header, de-recorded but still encrypted.
    pub payload: BytesMut,
}

/// A [`ReplayCheck`] for the first pass: records the key and claims a replay, so that
/// validation stops right there (before the HMAC).
#[derive(Default)]
struct KeyProbe {
    key: Option<[u8; 16]>,
}

impl ReplayCheck for KeyProbe {
    fn check_and_insert(&mut self, key: [u8; 16], _now: i64) -> bool {
        self.key = Some(key);
        false
    }
    fn oldest_time(&self) -> Option<i64> {
        None
    }
}

/// A [`ReplayCheck`] for the second pass: the instance cache's answer, already obtained.
struct Answered {
    oldest: Option<i64>,
}

impl ReplayCheck for Answered {
    fn check_and_insert(&mut self, _key: [u8; 16], _now: i64) -> bool {
        true
    }
    fn oldest_time(&self) -> Option<i64> {
        self.oldest
    }
}

/// Validates a ClientHello against the instance-wide replay cache, in C's order.
///
/// The cache may live in another process, so validation runs in two passes: the first
/// stops at the replay step (SNI, single record and size checks passed → the key is
/// known); the key is then checked and inserted in the instance cache (before the HMAC, as
/// C does); the second pass runs the HMAC, timestamp and cipher-suite checks with the
/// cache's oldest entry time. A cache that cannot be asked counts as a replay.
pub async fn check_hello(
    shared: &Shared,
    record: &[u8],
    extra: usize,
    domains: &[String],
    now: i64,
) -> Result<AcceptedHello, HelloReject> {
    let secrets = &shared.settings.secrets;
    let mut probe = KeyProbe::default();
    let first = validate_client_hello(record, extra, domains, secrets, now, &mut probe);
    let domain = match (&first, probe.key) {
        (Err(HelloReject::Replay { domain }), Some(_)) => *domain,
        _ => return first,
    };
    let Some(key) = probe.key else {
        return first;
    };
    match shared.replay.check(CacheKind::Hello, key, now).await {
        Err(_) => {
            inc(&shared.counters.replay_cache_errors);
            Err(HelloReject::Replay { domain })
        }
        Ok(v) if !v.fresh => Err(HelloReject::Replay { domain }),
        Ok(v) => validate_client_hello(
            record,
            extra,
            domains,
            secrets,
            now,
            &mut Answered { oldest: v.oldest },
        ),
    }
}

/// Bumps the counters of one rejected hello.
fn count_reject(shared: &Shared, r: &HelloReject) {
    let c = &shared.counters;
    inc(&c.tls_rejected_hellos);
    inc(match r {
        HelloReject::Malformed { .. } => &c.tls_hello_malformed,
        HelloReject::UnknownSni { .. } => &c.tls_hello_unknown_sni,
        HelloReject::TooMuchData { .. } => &c.tls_hello_too_much_data,
        HelloReject::TooBig { .. } => &c.tls_hello_too_big,
        HelloReject::Replay { .. } => &c.tls_replayed_hellos,
        HelloReject::BadHmac { .. } => &c.tls_hello_bad_hmac,
        HelloReject::FutureTimestamp { .. } => &c.tls_hello_future_timestamp,
        HelloReject::StaleTimestamp { .. } => &c.tls_hello_stale_timestamp,
        HelloReject::BadCipherSuite { .. } => &c.tls_hello_bad_cipher_suite,
    });
}

/// What a read before the deadline gave.
enum Read {
    Data,
    Eof,
    Timeout,
    Shutdown,
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Read {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    tokio::select! {
        () = cancel.cancelled() => Read::Shutdown,
        () = tokio::time::sleep_until(deadline) => Read::Timeout,
        r = stream.read_buf(buf) => match r {
            Ok(0) | Err(_) => Read::Eof,
            Ok(_) => Read::Data,
        },
    }
}

/// Runs the fake-TLS front door for one accepted connection (see the module docs).
pub async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Arc<Shared>,
    state: &FakeTlsState,
    cancel: &CancellationToken,
) -> TlsStart {
    let c = &shared.counters;
    if state.loops.came_from_us(peer) {
        inc(&c.tls_fronting_loops);
        state.loops.log_once(&format!(
            "a connection from {peer} is our own relay to the fronting domain"
        ));
        return TlsStart::Done(Outcome::Rejected);
    }
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let domains = state.domains();
    let mut buf = BytesMut::with_capacity(1024);

    // 1. Classify once 9 bytes are buffered; then buffer the whole record.
    let mut record_len = None;
    loop {
        if record_len.is_none() && buf.len() >= DECISION_BYTES {
            match classify_first_bytes(&buf) {
                Classification::FakeTls { record_len: n } => record_len = Some(n),
                Classification::NotTls | Classification::NeedMore => {
                    inc(&c.tls_not_tls_connections);
                    tracing::debug!(%peer, "Expected TLS-transport");
                    return TlsStart::Done(
                        splice::front(stream, local, shared, state, DEFAULT_DOMAIN, &buf, cancel)
                            .await,
                    );
                }
            }
        }
        if record_len.is_some_and(|n| buf.len() >= n) {
            break;
        }
        match read_more(stream, &mut buf, deadline, cancel).await {
            Read::Data => {}
            Read::Eof => return TlsStart::Done(Outcome::ClientClosed),
            Read::Shutdown => return TlsStart::Done(Outcome::Shutdown),
            Read::Timeout => {
                inc(&c.tls_hello_timeouts);
                tracing::debug!(%peer, bytes = buf.len(), "no ClientHello in 10 s");
                return TlsStart::Done(
                    splice::front(stream, local, shared, state, DEFAULT_DOMAIN, &buf, cancel).await,
                );
            }
        }
    }
    let record_len = record_len.unwrap_or(buf.len()).min(buf.len());

    // 2. Local port 80: front to the SNI's domain (unknown SNI: the default one) on :80.
    if local.port() == 80 {
        let seen = &buf[..buf.len().min(MAX_CLIENT_HELLO_LEN)];
        let domain = match sni_domain(seen, domains) {
            Some(d) => {
                inc(&c.tls_port80_connections);
                d
            }
            None => {
                count_reject(shared, &HelloReject::UnknownSni { domain: 0 });
                DEFAULT_DOMAIN
            }
        };
        return TlsStart::Done(
            splice::front(stream, local, shared, state, domain, &buf, cancel).await,
        );
    }

    // 3. Validate.
    let now = crate::clock::unix_now();
    let extra = buf.len() - record_len;
    let accepted = match check_hello(shared, &buf[..record_len], extra, domains, now).await {
        Ok(a) => a,
        Err(r) => {
            count_reject(shared, &r);
            tracing::debug!(%peer, reason = %r, "fake-TLS hello rejected, fronting");
            let domain = r.splice_domain();
            return TlsStart::Done(
                splice::front(stream, local, shared, state, domain, &buf, cancel).await,
            );
        }
    };

    // 4. ServerHello.
    let profile = state
        .profile(accepted.domain)
        .unwrap_or_else(|| DomainProfile::fallback(&mut rand::thread_rng()));
    let Some(secret) = shared.settings.secrets.get(accepted.secret_index) else {
        return TlsStart::Done(Outcome::Rejected);
    };
    let reply = build_server_hello(&accepted, secret, &profile, &mut rand::thread_rng());
    if stream.write_all(&reply).await.is_err() {
        return TlsStart::Done(Outcome::IoError);
    }
    inc(&c.tls_handshakes);
    tracing::debug!(%peer, domain = state.domain_name(accepted.domain), "fake-TLS handshake");
    buf.advance(record_len);

    // 5. The client's CCS and first record: the obfuscated2 header.
    let mut decoder = ClientRecordDecoder::new();
    let mut payload = BytesMut::new();
    while payload.len() < HEADER_LEN {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => payload.extend_from_slice(&p),
                Ok(None) => break,
                Err(e) => {
                    inc(&c.tls_bad_client_records);
                    tracing::debug!(%peer, error = %e, "bad fake-TLS records, closing");
                    return TlsStart::Done(Outcome::TransportError);
                }
            }
        }
        if payload.len() >= HEADER_LEN {
            break;
        }
        match read_more(stream, &mut buf, deadline, cancel).await {
            Read::Data => {}
            Read::Eof => return TlsStart::Done(Outcome::ClientClosed),
            Read::Shutdown => return TlsStart::Done(Outcome::Shutdown),
            Read::Timeout => {
                inc(&c.handshake_timeouts);
                return TlsStart::Done(Outcome::PreAuthTimeout);
            }
        }
    }
    let rest = payload.split_off(HEADER_LEN);
    let mut hdr = [0u8; HEADER_LEN];
    hdr.copy_from_slice(&payload);
    let Some(handshake) = obfuscated2::parse_header(
        &hdr,
        &shared.settings.secrets,
        shared.settings.accept_policy,
    ) else {
        inc(&c.tls_bad_client_records);
        tracing::debug!(%peer, "fake-TLS client without a dd header under a secret, closing");
        return TlsStart::Done(Outcome::Rejected);
    };
    if !crate::net::client::header_is_fresh(shared, &hdr).await {
        return TlsStart::Done(Outcome::Rejected);
    }
    TlsStart::Session(Box::new(TlsSession {
        handshake,
        decoder,
        raw: buf,
        payload: rest,
    }))
}
