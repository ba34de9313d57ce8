//! Name resolution for `-D` domains.

use std::net::{IpAddr, SocketAddr};

/// Resolves `domain` as C's `gethostbyname` then `gethostbyname2(AF_INET6)` do: the first
/// IPv4 address, else the first IPv6 one.
pub async fn resolve(domain: &str) -> Option<IpAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, 443)).await.ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(SocketAddr::ip)
}
