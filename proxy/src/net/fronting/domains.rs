//! `-D`: the domain registry — the fronting domains, each one's resolved address and the
//! ServerHello profile learnt by the probe ([`super::probe`]), and the fronting-loop guard.

use std::net::{IpAddr, SocketAddr};
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
}

/// The `-D` state of one process: the domains, their profiles and addresses, and the
/// fronting-loop guard.
#[derive(Debug)]
pub struct Domains {
    names: Vec<String>,
    targets: RwLock<Vec<DomainTarget>>,
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
        let ip = super::dns::resolve(&name).await?;
        self.set_address(i, ip);
        Some(ip)
    }
}
