//! `-D`: the domain registry — the fronting domains, each one's resolved address and the
//! ServerHello profile learnt by the probe ([`super::probe`]), and the fronting-loop guard.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use rand::RngCore;

use super::loops::LoopGuard;
use crate::protocol::fake_tls::DomainProfile;

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
    /// The port fronting connects to instead of `:443`/`:80` (tests and tools only).
    port: Option<u16>,
}

/// The on-demand lookup of one domain's address, shared by the connections that need it
/// at the same time.
#[derive(Debug, Default)]
struct Lookup {
    /// Held while a lookup is in flight; the others wait on it.
    in_flight: tokio::sync::Mutex<()>,
    /// How many lookups have finished (successfully or not).
    finished: AtomicU64,
}

/// The `-D` state of one process: the domains, their profiles and addresses, and the
/// fronting-loop guard.
#[derive(Debug)]
pub struct Domains {
    names: Vec<String>,
    targets: RwLock<Vec<DomainTarget>>,
    /// One on-demand lookup per domain.
    lookups: Vec<Lookup>,
    /// Refuses relays to ourselves.
    pub loops: LoopGuard,
}

impl Domains {
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
                port: None,
            })
            .collect();
        Self {
            names: domains.to_vec(),
            targets: RwLock::new(targets),
            lookups: domains.iter().map(|_| Lookup::default()).collect(),
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

    /// Makes fronting to domain `i` connect to `port` instead of `:443` (`:80` for
    /// clients that came in on port 80). For tests and tools that run a stand-in site on
    /// a port chosen by the OS; the proxy itself never sets it.
    pub fn set_port_override(&self, i: usize, port: u16) {
        if let Some(t) = self.write().get_mut(i) {
            t.port = Some(port);
        }
    }

    /// The port set by [`Self::set_port_override`] for domain `i`, if any.
    pub fn port_override(&self, i: usize) -> Option<u16> {
        self.read().get(i).and_then(|t| t.port)
    }

    /// Domain `i`'s address, resolving it now if the probe has not yet.
    ///
    /// One lookup per domain is in flight at a time: connections that arrive while it runs
    /// wait for its result rather than starting their own, and a lookup takes at most
    /// [`super::dns::DNS_TIMEOUT`]. A failed lookup is not remembered: the next
    /// connection (after the waiters have had their None) tries again.
    pub async fn target_ip(&self, i: usize) -> Option<IpAddr> {
        self.target_ip_with(i, |name| async move { super::dns::resolve(&name).await })
            .await
    }

    /// [`Self::target_ip`] with `resolve` as the resolver.
    async fn target_ip_with<F, Fut>(&self, i: usize, resolve: F) -> Option<IpAddr>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Option<IpAddr>>,
    {
        if let Some(ip) = self.address(i) {
            return Some(ip);
        }
        let name = self.read().get(i).map(|t| t.name.clone())?;
        let lookup = self.lookups.get(i)?;
        let seen = lookup.finished.load(Ordering::Acquire);
        let _in_flight = lookup.in_flight.lock().await;
        if let Some(ip) = self.address(i) {
            return Some(ip);
        }
        if lookup.finished.load(Ordering::Acquire) != seen {
            // A lookup finished while we waited, and failed: share its answer.
            return None;
        }
        let ip = tokio::time::timeout(super::dns::DNS_TIMEOUT, resolve(name))
            .await
            .ok()
            .flatten();
        if let Some(ip) = ip {
            self.set_address(i, ip);
        }
        lookup.finished.fetch_add(1, Ordering::AcqRel);
        ip
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::net::fronting::dns::DNS_TIMEOUT;

    fn domains(names: &[&str]) -> Domains {
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        Domains::new(&names, vec![], &mut rand::thread_rng())
    }

    /// Many connections needing a hung name at once: one lookup, every one of them gets
    /// None after the lookup bound, not later.
    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_are_shared_and_bounded() {
        let d = Arc::new(domains(&["hung.example"]));
        let calls = Arc::new(AtomicUsize::new(0));
        let start = tokio::time::Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (d, calls) = (Arc::clone(&d), Arc::clone(&calls));
            set.spawn(async move {
                d.target_ip_with(0, |_| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Option<IpAddr>>().await
                })
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), None);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(start.elapsed() >= DNS_TIMEOUT);
        assert!(start.elapsed() < DNS_TIMEOUT + Duration::from_millis(100));
        // A later connection tries again (a failure is not cached).
        let again = d
            .target_ip_with(0, |_| async { Some(IpAddr::from([192, 0, 2, 7])) })
            .await;
        assert_eq!(again, Some(IpAddr::from([192, 0, 2, 7])));
        assert_eq!(d.address(0), again);
    }

    /// Waiters get the in-flight lookup's success; later calls do not look up at all.
    #[tokio::test(start_paused = true)]
    async fn a_shared_lookup_success_is_kept() {
        let d = Arc::new(domains(&["slow.example"]));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let (d, calls) = (Arc::clone(&d), Arc::clone(&calls));
            set.spawn(async move {
                d.target_ip_with(0, |_| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some(IpAddr::from([192, 0, 2, 1]))
                })
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), Some(IpAddr::from([192, 0, 2, 1])));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let cached = d.target_ip_with(0, |_| async { None }).await;
        assert_eq!(cached, Some(IpAddr::from([192, 0, 2, 1])));
    }

    /// The real resolver on an unresolvable name: None, within the bound.
    #[tokio::test]
    async fn unresolvable_domain_has_no_target() {
        let d = domains(&["no-such-host.mtproxy-test.invalid"]);
        let start = std::time::Instant::now();
        let got = tokio::time::timeout(DNS_TIMEOUT + Duration::from_secs(2), d.target_ip(0))
            .await
            .expect("target_ip outlived its bound");
        assert_eq!(got, None);
        assert!(start.elapsed() < DNS_TIMEOUT + Duration::from_secs(1));
    }

    #[test]
    fn port_override_is_per_domain() {
        let d = domains(&["a.example", "b.example"]);
        assert_eq!(d.port_override(0), None);
        d.set_port_override(1, 8443);
        assert_eq!(d.port_override(0), None);
        assert_eq!(d.port_override(1), Some(8443));
    }
}
