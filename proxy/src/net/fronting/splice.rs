//! Fronting ("proxy pass", §4.4.6): a connection that is not a valid fake-TLS client is
//! relayed byte for byte — the bytes already read first, then everything in both
//! directions — to the real website of a `-D` domain, at `:443` (`:80` when the client
//! came in on local port 80), so that a prober sees nothing but that website.
//!
//! Beyond C: a relay to one of this proxy's own listening addresses is refused (see
//! [`super::loops`]).
//!
//! The relay is bounded (a connection without a secret must not hold a proxy slot and a
//! socket to the site for ever):
//! * idle — when no byte has gone either way for [`FRONT_IDLE`], both sockets are closed
//!   (`tls_fronting_idle_timeouts`);
//! * half-close — when one side ends its direction (EOF; its write side towards the other
//!   is then shut down, as a proxy passes a FIN on), the other direction may go on only
//!   while it moves: no byte for [`FRONT_HALF_CLOSE`] and both sockets are closed
//!   (`tls_fronting_half_close_timeouts`). A site that has answered and closed to a silent
//!   client is thus released within 3 s, as C does; a client that half-closes after its
//!   request (`shutdown(SHUT_WR)`) still gets the whole of a long answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::domains::Domains;
use crate::protocol::session::CloseReason;
use crate::stats::{inc, Counters};

/// How long connecting to the domain may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A relay with no byte in either direction for this long is closed. Long enough for a
/// browser's keep-alive pause between requests on one connection (servers commonly keep
/// idle HTTP/1.1 and HTTP/2 connections 60 s or less, so the site itself closes first),
/// short enough that silent connections give their slot back within a minute.
pub const FRONT_IDLE: Duration = Duration::from_secs(60);

/// Once one side has closed its direction, the relay is closed when the other direction
/// has moved no byte for this long (counted from the close or the last byte, whichever is
/// later). C releases a relay whose site has closed within 3 s; a site that has answered
/// and closed is done, and a client that keeps its side open after that holds nothing
/// worth keeping.
pub const FRONT_HALF_CLOSE: Duration = Duration::from_secs(3);

/// The largest piece copied at once in each direction (as `copy_bidirectional`).
const RELAY_BUFFER: usize = 8 * 1024;

/// Relays `client` to domain `domain` (index into `-D`), sending `buffered` first.
///
/// Returns when both directions are done, at an error or a timeout ([`FRONT_IDLE`],
/// [`FRONT_HALF_CLOSE`]), on `cancel`, or at once when the domain has no address, the
/// connect fails, or the target is ourselves. The client's write side is shut down and
/// the site's socket closed before it returns.
pub async fn front(
    client: &mut TcpStream,
    local: SocketAddr,
    counters: &Counters,
    state: &Domains,
    domain: usize,
    buffered: &[u8],
    cancel: &CancellationToken,
) -> CloseReason {
    let c = counters;
    let port = state
        .port_override(domain)
        .unwrap_or(if local.port() == 80 { 80 } else { 443 });
    let name = state.domain_name(domain).to_string();
    let resolved = tokio::select! {
        () = cancel.cancelled() => return CloseReason::Shutdown,
        ip = state.target_ip(domain) => ip,
    };
    let Some(ip) = resolved else {
        inc(&c.tls_fronting_failures);
        tracing::warn!("failed to proxy request to {name}: no address");
        return CloseReason::Rejected;
    };
    let target = SocketAddr::new(ip, port);
    if state.loops.is_own_address(target) {
        inc(&c.tls_fronting_loops);
        state.loops.log_once(&format!(
            "{name} ({target}) is this proxy's own listening address"
        ));
        return CloseReason::Rejected;
    }
    let connect = tokio::select! {
        () = cancel.cancelled() => return CloseReason::Shutdown,
        r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => r,
    };
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&c.tls_fronting_failures);
            tracing::debug!(%target, error = %e, "failed to create proxy pass connection");
            return CloseReason::Rejected;
        }
        Err(_) => {
            inc(&c.tls_fronting_failures);
            tracing::debug!(%target, "proxy pass connection timed out");
            return CloseReason::Rejected;
        }
    };
    let _ = upstream.set_nodelay(true);
    let up_local = upstream.local_addr().ok();
    if let Some(a) = up_local {
        state.loops.register(a);
    }
    inc(&c.tls_fronted_connections);
    tracing::debug!(%target, domain = %name, bytes = buffered.len(), "proxy pass");
    let outcome = tokio::select! {
        () = cancel.cancelled() => CloseReason::Shutdown,
        end = relay(client, &mut upstream, buffered) => {
            match end {
                RelayEnd::Idle => {
                    inc(&c.tls_fronting_idle_timeouts);
                    tracing::debug!(%target, "proxy pass idle, closed");
                }
                RelayEnd::HalfClose => {
                    inc(&c.tls_fronting_half_close_timeouts);
                    tracing::debug!(%target, "proxy pass half-closed too long, closed");
                }
                RelayEnd::Done | RelayEnd::Error => {}
            }
            CloseReason::Fronted
        }
    };
    // Tell the client at once (the caller may keep the socket a little longer); the site's
    // socket closes when `upstream` is dropped below.
    let _ = client.shutdown().await;
    if let Some(a) = up_local {
        state.loops.unregister(a);
    }
    outcome
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayEnd {
    /// Both directions ended (EOF each way).
    Done,
    /// A socket error in either direction.
    Error,
    /// No byte either way for [`FRONT_IDLE`].
    Idle,
    /// One direction ended and the other then moved no byte for [`FRONT_HALF_CLOSE`].
    HalfClose,
}

/// The time of the last byte relayed in either direction, shared by both directions.
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the last byte moved (the start if none has).
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn idle_deadline(&self) -> Instant {
        self.last() + FRONT_IDLE
    }
}

/// Relays between `client` and `upstream` (after sending `buffered` to `upstream`) until
/// both directions end, an error, or a timeout.
async fn relay(client: &mut TcpStream, upstream: &mut TcpStream, buffered: &[u8]) -> RelayEnd {
    let activity = Activity::new();
    let (mut client_r, mut client_w) = client.split();
    let (mut up_r, mut up_w) = upstream.split();
    let to_site = async {
        copy_bytes(&mut up_w, buffered, &activity).await?;
        pump(&mut client_r, &mut up_w, &activity).await
    };
    let to_client = pump(&mut up_r, &mut client_w, &activity);
    tokio::pin!(to_site, to_client);
    let (mut site_done, mut client_done) = (false, false);
    // When one direction ended.
    let mut half_closed_at: Option<Instant> = None;
    let half_close_deadline = |since: Instant| activity.last().max(since) + FRONT_HALF_CLOSE;
    loop {
        let idle = activity.idle_deadline();
        let deadline = half_closed_at.map_or(idle, |h| half_close_deadline(h).min(idle));
        tokio::select! {
            r = &mut to_site, if !site_done => {
                if r.is_err() {
                    return RelayEnd::Error;
                }
                site_done = true;
            }
            r = &mut to_client, if !client_done => {
                if r.is_err() {
                    return RelayEnd::Error;
                }
                client_done = true;
            }
            () = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if half_closed_at.is_some_and(|h| now >= half_close_deadline(h)) {
                    return RelayEnd::HalfClose;
                }
                if now >= activity.idle_deadline() {
                    return RelayEnd::Idle;
                }
                // Bytes moved meanwhile: wait again from the new deadline.
            }
        }
        if site_done && client_done {
            return RelayEnd::Done;
        }
        if half_closed_at.is_none() && (site_done || client_done) {
            half_closed_at = Some(Instant::now());
        }
    }
}

/// Copies `from` to `to` until EOF, then shuts `to`'s write side down.
async fn pump<R, W>(from: &mut R, to: &mut W, activity: &Activity) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RELAY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        activity.touch();
        copy_bytes(to, &buf[..n], activity).await?;
    }
}

/// Writes all of `bytes`, counting each partial write as activity (a slow reader that
/// still reads is not idle).
async fn copy_bytes<W>(to: &mut W, mut bytes: &[u8], activity: &Activity) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while !bytes.is_empty() {
        let n = to.write(bytes).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        activity.touch();
        bytes = &bytes[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;

    /// A relay under test: the test's client socket, the stand-in site, and the relay task.
    struct Setup {
        client: TcpStream,
        site: TcpListener,
        domains: Arc<Domains>,
        counters: Arc<Counters>,
        cancel: CancellationToken,
        relay: JoinHandle<CloseReason>,
    }

    /// Starts `front` for a fresh loopback client towards a loopback "site" (both on ports
    /// chosen by the OS), with `buffered` as the bytes already read from the client.
    async fn start(buffered: &'static [u8]) -> Setup {
        let site = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site_addr = site.local_addr().unwrap();
        let domains = Arc::new(Domains::new(
            &["site.example".to_string()],
            vec![],
            &mut rand::thread_rng(),
        ));
        domains.set_address(0, site_addr.ip());
        domains.set_port_override(0, site_addr.port());
        let front_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, accepted) = tokio::join!(
            TcpStream::connect(front_listener.local_addr().unwrap()),
            front_listener.accept()
        );
        let (client, (mut proxy_side, _)) = (client.unwrap(), accepted.unwrap());
        let local = proxy_side.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let relay = tokio::spawn({
            let (domains, counters, cancel) = (domains.clone(), counters.clone(), cancel.clone());
            async move {
                front(
                    &mut proxy_side,
                    local,
                    &counters,
                    &domains,
                    0,
                    buffered,
                    &cancel,
                )
                .await
            }
        });
        Setup {
            client,
            site,
            domains,
            counters,
            cancel,
            relay,
        }
    }

    /// Accepts the relay's connection at the site and reads the `n` bytes sent first.
    async fn accept_site(s: &Setup, n: usize) -> (TcpStream, SocketAddr) {
        let (mut sock, peer) = s.site.accept().await.unwrap();
        let mut first = vec![0u8; n];
        sock.read_exact(&mut first).await.unwrap();
        (sock, peer)
    }

    /// Whether the next read on `sock` finds it closed by its peer (EOF or reset) rather
    /// than data.
    async fn sees_close(sock: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(sock.read(&mut b).await, Ok(0) | Err(_))
    }

    #[tokio::test(start_paused = true)]
    async fn site_close_ends_relay_within_half_close_bound() {
        let mut s = start(b"GET / HTTP/1.1\r\n\r\n").await;
        let (mut site, peer) = accept_site(&s, 18).await;
        assert!(s.domains.loops.came_from_us(peer));
        site.write_all(b"HTTP/1.1 200 OK\r\n\r\nhi").await.unwrap();
        drop(site);
        let closed_at = Instant::now();
        // The site's FIN is passed on: the client gets the answer then EOF.
        let mut got = Vec::new();
        s.client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nhi");
        // The client keeps its side open and silent: the relay ends at the bound.
        let reason = (&mut s.relay).await.unwrap();
        let took = closed_at.elapsed();
        assert_eq!(reason, CloseReason::Fronted);
        assert!(
            took >= FRONT_HALF_CLOSE - Duration::from_millis(10),
            "{took:?}"
        );
        assert!(
            took <= FRONT_HALF_CLOSE + Duration::from_millis(500),
            "{took:?}"
        );
        assert_eq!(s.counters.tls_fronting_half_close_timeouts.load(Relaxed), 1);
        assert_eq!(s.counters.tls_fronting_idle_timeouts.load(Relaxed), 0);
        assert_eq!(s.counters.tls_fronted_connections.load(Relaxed), 1);
        // The slot is given back: the fronting socket is no longer registered.
        assert!(!s.domains.loops.came_from_us(peer));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_relay_is_closed_after_idle_bound() {
        let begun = Instant::now();
        let mut s = start(b"x").await;
        let (mut site, peer) = accept_site(&s, 1).await;
        assert!(s.domains.loops.came_from_us(peer));
        let reason = (&mut s.relay).await.unwrap();
        let took = begun.elapsed();
        assert_eq!(reason, CloseReason::Fronted);
        assert!(took >= FRONT_IDLE - Duration::from_millis(10), "{took:?}");
        assert!(took <= FRONT_IDLE + Duration::from_secs(1), "{took:?}");
        assert_eq!(s.counters.tls_fronting_idle_timeouts.load(Relaxed), 1);
        assert_eq!(s.counters.tls_fronting_half_close_timeouts.load(Relaxed), 0);
        // Both sockets are closed: the client and the site each see it.
        assert!(sees_close(&mut s.client).await);
        assert!(sees_close(&mut site).await);
        assert!(!s.domains.loops.came_from_us(peer));
    }

    #[tokio::test(start_paused = true)]
    async fn steady_small_traffic_outlives_idle_bound() {
        let mut s = start(b"hello").await;
        let (mut site, peer) = accept_site(&s, 5).await;
        let begun = Instant::now();
        let mut b = [0u8; 4];
        // One small piece each way every 10 s, for more than three idle bounds.
        while begun.elapsed() < FRONT_IDLE * 3 + Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_secs(10)).await;
            s.client.write_all(b"ping").await.unwrap();
            site.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
            site.write_all(b"pong").await.unwrap();
            s.client.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"pong");
            assert!(!s.relay.is_finished());
        }
        assert!(s.domains.loops.came_from_us(peer));
        // An orderly close both ways ends it at once, with no timeout counted.
        s.client.shutdown().await.unwrap();
        assert!(sees_close(&mut site).await);
        drop(site);
        let before = Instant::now();
        let reason = (&mut s.relay).await.unwrap();
        assert_eq!(reason, CloseReason::Fronted);
        assert!(before.elapsed() < Duration::from_millis(100));
        assert!(sees_close(&mut s.client).await);
        assert_eq!(s.counters.tls_fronting_idle_timeouts.load(Relaxed), 0);
        assert_eq!(s.counters.tls_fronting_half_close_timeouts.load(Relaxed), 0);
        assert!(!s.domains.loops.came_from_us(peer));
    }

    /// A client that half-closes after its request still gets a long answer that keeps
    /// moving (the half-close bound is on silence, not on the answer's length).
    #[tokio::test(start_paused = true)]
    async fn half_closed_client_gets_a_slow_but_moving_answer() {
        let mut s = start(b"GET / HTTP/1.0\r\n\r\n").await;
        let (mut site, peer) = accept_site(&s, 18).await;
        s.client.shutdown().await.unwrap();
        assert!(sees_close(&mut site).await);
        let begun = Instant::now();
        let mut b = [0u8; 5];
        while begun.elapsed() < FRONT_HALF_CLOSE * 5 {
            tokio::time::sleep(FRONT_HALF_CLOSE / 2).await;
            site.write_all(b"chunk").await.unwrap();
            s.client.read_exact(&mut b).await.unwrap();
            assert!(!s.relay.is_finished());
        }
        drop(site);
        assert!(sees_close(&mut s.client).await);
        assert_eq!((&mut s.relay).await.unwrap(), CloseReason::Fronted);
        assert_eq!(s.counters.tls_fronting_half_close_timeouts.load(Relaxed), 0);
        assert!(!s.domains.loops.came_from_us(peer));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_ends_relay_as_shutdown() {
        let mut s = start(b"x").await;
        let (mut site, peer) = accept_site(&s, 1).await;
        s.cancel.cancel();
        assert_eq!((&mut s.relay).await.unwrap(), CloseReason::Shutdown);
        assert!(sees_close(&mut site).await);
        assert!(sees_close(&mut s.client).await);
        assert!(!s.domains.loops.came_from_us(peer));
    }
}
