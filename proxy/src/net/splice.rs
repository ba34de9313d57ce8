//! Fronting ("proxy pass", §4.4.6): a connection that is not a valid fake-TLS client is
//! relayed byte for byte — the bytes already read first, then everything in both
//! directions — to the real website of a `-D` domain, at `:443` (`:80` when the client
//! came in on local port 80), so that a prober sees nothing but that website.
//!
//! Beyond C: a relay to one of this proxy's own listening addresses is refused (C would
//! connect to itself, be relayed to itself again, and burn CPU and sockets until a limit
//! is hit). Two checks, logged once per process:
//! * static — before connecting: the target `ip:port` is one of our listeners, or a
//!   listener on the wildcard address has that port and the target IP is local (loopback
//!   or bindable on this host);
//! * dynamic — on accept: the peer is the local end of one of our own live fronting
//!   sockets (catches loops through NAT or port forwarding, within this process).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::net::client::Outcome;
use crate::net::fake_tls::FakeTlsState;
use crate::net::Shared;
use crate::stats::inc;

/// How long connecting to the domain may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's own addresses, for the fronting-loop checks.
#[derive(Debug, Default)]
pub struct LoopGuard {
    /// The client listening sockets' addresses.
    listen: Vec<SocketAddr>,
    /// Local addresses of live fronting sockets.
    fronting: Mutex<HashSet<SocketAddr>>,
    /// Whether a loop was logged already.
    logged: AtomicBool,
    /// [`is_local_ip`] answers, per target address (a bind test per relay is wasteful).
    local_ips: Mutex<HashMap<IpAddr, bool>>,
}

impl LoopGuard {
    /// A guard for a process listening on `listen`.
    pub fn new(listen: Vec<SocketAddr>) -> Self {
        Self {
            listen,
            ..Self::default()
        }
    }

    /// Whether `target` reaches one of our listening sockets.
    pub fn is_own_address(&self, target: SocketAddr) -> bool {
        self.listen.iter().any(|l| {
            l.port() == target.port()
                && (same_ip(l.ip(), target.ip())
                    || (l.ip().is_unspecified() && self.is_local(target.ip())))
        })
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        if let Some(&known) = lock(&self.local_ips).get(&ip) {
            return known;
        }
        let local = is_local_ip(ip);
        lock(&self.local_ips).insert(ip, local);
        local
    }

    /// Whether `peer` is the local end of one of our live fronting sockets.
    pub fn came_from_us(&self, peer: SocketAddr) -> bool {
        lock(&self.fronting).contains(&normalize(peer))
    }

    /// Logs a refused loop, once per process.
    pub fn log_once(&self, what: &str) {
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::error!("fronting loop refused: {what}; fix -D/-H/--address (logged once)");
        }
    }

    fn register(&self, local: SocketAddr) {
        lock(&self.fronting).insert(normalize(local));
    }

    fn unregister(&self, local: SocketAddr) {
        lock(&self.fronting).remove(&normalize(local));
    }
}

fn normalize(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    normalize(SocketAddr::new(a, 0)).ip() == normalize(SocketAddr::new(b, 0)).ip()
}

/// Whether `ip` is an address of this host (loopback, or one a socket can bind to).
pub fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Relays `client` to domain `domain` (index into `-D`), sending `buffered` first.
///
/// Returns when both directions are done, on `cancel`, or at once when the domain has no
/// address, the connect fails, or the target is ourselves.
pub async fn front(
    client: &mut TcpStream,
    local: SocketAddr,
    shared: &Shared,
    state: &FakeTlsState,
    domain: usize,
    buffered: &[u8],
    cancel: &CancellationToken,
) -> Outcome {
    let c = &shared.counters;
    let port = if local.port() == 80 { 80 } else { 443 };
    let name = state.domain_name(domain).to_string();
    let Some(ip) = state.target_ip(domain).await else {
        inc(&c.tls_fronting_failures);
        tracing::warn!("failed to proxy request to {name}: no address");
        return Outcome::Rejected;
    };
    let target = SocketAddr::new(ip, port);
    if state.loops.is_own_address(target) {
        inc(&c.tls_fronting_loops);
        state.loops.log_once(&format!(
            "{name} ({target}) is this proxy's own listening address"
        ));
        return Outcome::Rejected;
    }
    let connect = tokio::select! {
        () = cancel.cancelled() => return Outcome::Shutdown,
        r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => r,
    };
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&c.tls_fronting_failures);
            tracing::debug!(%target, error = %e, "failed to create proxy pass connection");
            return Outcome::Rejected;
        }
        Err(_) => {
            inc(&c.tls_fronting_failures);
            tracing::debug!(%target, "proxy pass connection timed out");
            return Outcome::Rejected;
        }
    };
    let _ = upstream.set_nodelay(true);
    let up_local = upstream.local_addr().ok();
    if let Some(a) = up_local {
        state.loops.register(a);
    }
    inc(&c.tls_fronted_connections);
    tracing::debug!(%target, domain = %name, bytes = buffered.len(), "proxy pass");
    let relay = async {
        upstream.write_all(buffered).await?;
        tokio::io::copy_bidirectional(client, &mut upstream).await
    };
    let outcome = tokio::select! {
        () = cancel.cancelled() => Outcome::Shutdown,
        r = relay => match r {
            Ok(_) => Outcome::Fronted,
            Err(_) => Outcome::Fronted,
        },
    };
    if let Some(a) = up_local {
        state.loops.unregister(a);
    }
    outcome
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_recognised() {
        let g = LoopGuard::new(vec![
            "127.0.0.1:443".parse().unwrap(),
            "0.0.0.0:8443".parse().unwrap(),
        ]);
        assert!(g.is_own_address("127.0.0.1:443".parse().unwrap()));
        assert!(!g.is_own_address("127.0.0.2:443".parse().unwrap()));
        assert!(!g.is_own_address("127.0.0.1:444".parse().unwrap()));
        // The wildcard listener covers every local address on its port.
        assert!(g.is_own_address("127.0.0.9:8443".parse().unwrap()));
        assert!(g.is_own_address("[::ffff:127.0.0.1]:443".parse().unwrap()));
        // 192.0.2.1 (TEST-NET-1) is not configured here, so not local.
        assert!(!g.is_own_address("192.0.2.1:8443".parse().unwrap()));
    }

    #[test]
    fn fronting_sockets_are_tracked() {
        let g = LoopGuard::new(vec![]);
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        g.register(a);
        assert!(g.came_from_us("[::ffff:127.0.0.1]:40000".parse().unwrap()));
        g.unregister(a);
        assert!(!g.came_from_us(a));
    }
}
