//! Admission at the `-C` cap: connections that have not authenticated yet never starve
//! authenticated ones. When the cap is reached and a new connection arrives, the oldest
//! connection still before its header (or being fronted under `-D`) is closed to make
//! room; connections of clients that presented a valid header are never evicted.
//!
//! C keeps every pre-authentication connection until the cap is full and then stops
//! accepting, so a few hundred silent sockets lock every legitimate client out (the
//! slowloris drill).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The connections still before authentication, oldest first.
#[derive(Debug, Default)]
pub struct Admission {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<(u64, CancellationToken)>,
}

/// One connection's place in the queue: its id and the token that evicts it.
#[derive(Debug, Clone)]
pub struct Ticket {
    id: u64,
    /// Cancelled when the connection is evicted, or when `parent` (the drain) fires.
    pub token: CancellationToken,
}

impl Admission {
    /// Registers a new (unauthenticated) connection; its token is a child of `parent`.
    pub fn enter(&self, parent: &CancellationToken) -> Ticket {
        let mut q = self.lock();
        let id = q.next_id;
        q.next_id += 1;
        let token = parent.child_token();
        q.waiting.push_back((id, token.clone()));
        Ticket { id, token }
    }

    /// The connection authenticated (or ended): it can no longer be evicted.
    pub fn leave(&self, ticket: &Ticket) {
        let mut q = self.lock();
        if let Some(i) = q.waiting.iter().position(|(id, _)| *id == ticket.id) {
            q.waiting.remove(i);
        }
    }

    /// Whether some connection could be evicted.
    pub fn has_waiting(&self) -> bool {
        !self.lock().waiting.is_empty()
    }

    /// Evicts the oldest unauthenticated connection; `false` when there is none.
    pub fn evict_oldest(&self) -> bool {
        let oldest = self.lock().waiting.pop_front();
        match oldest {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `--max-connections-per-ip`: how many connections each client address holds.
#[derive(Debug, Default)]
pub struct PerIp {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's share of its address's count (given back on drop).
#[derive(Debug)]
pub struct PerIpGuard {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A limit of `limit` connections per address (0: none).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::default(),
        })
    }

    /// Admits one more connection from `ip`, or `None` when it holds the limit already.
    /// Without a limit every connection is admitted (and nothing is counted).
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Option<Option<PerIpGuard>> {
        if self.limit == 0 {
            return Some(None);
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Some(PerIpGuard {
            owner: Arc::clone(self),
            ip,
        }))
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_is_evicted_and_authenticated_ones_never() {
        let a = Admission::default();
        let drain = CancellationToken::new();
        let (t1, t2, t3) = (a.enter(&drain), a.enter(&drain), a.enter(&drain));
        a.leave(&t1); // authenticated
        assert!(a.evict_oldest());
        assert!(!t1.token.is_cancelled());
        assert!(t2.token.is_cancelled());
        assert!(!t3.token.is_cancelled());
        a.leave(&t3);
        assert!(!a.has_waiting());
        assert!(!a.evict_oldest());
        // The drain reaches every ticket.
        let t4 = a.enter(&drain);
        drain.cancel();
        assert!(t4.token.is_cancelled());
    }

    #[test]
    fn each_address_holds_at_most_the_limit_and_gets_its_slots_back() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = p.try_enter(a).unwrap();
        let _g2 = p.try_enter(mapped).unwrap();
        assert!(
            p.try_enter(a).is_none(),
            "the same address, IPv4-mapped or not"
        );
        assert!(p.try_enter(b).is_some());
        drop(g1);
        assert!(p.try_enter(a).is_some());
        assert!(
            PerIp::new(0).try_enter(a).unwrap().is_none(),
            "no limit: not counted"
        );
    }
}
