//! The fronting-loop guard: a relay to one of this proxy's own listening addresses is
//! refused (C would connect to itself, be relayed to itself again, and burn CPU and
//! sockets until a limit is hit). Two checks, logged once per process:
//! * static — before connecting: the target `ip:port` is one of our listeners, or a
//!   listener on the wildcard address has that port and the target IP is local (loopback
//!   or bindable on this host);
//! * dynamic — on accept: the peer is the local end of one of our own live fronting
//!   sockets (catches loops through NAT or port forwarding, within this process).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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

    pub(crate) fn register(&self, local: SocketAddr) {
        lock(&self.fronting).insert(normalize(local));
    }

    pub(crate) fn unregister(&self, local: SocketAddr) {
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
