//! Name resolution for `-D` domains.
//!
//! Every lookup is bounded by [`DNS_TIMEOUT`]; fronting shares one lookup per domain
//! between the connections that need it at the same time (see
//! [`super::domains::Domains::target_ip`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long one lookup may take (C's probe budget for a whole domain is 5 s too). A
/// lookup that outlasts it counts as failed; the blocking resolver thread is left to
/// finish on its own, its answer dropped.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `domain` as C's `gethostbyname` then `gethostbyname2(AF_INET6)` do: the first
/// IPv4 address, else the first IPv6 one. None when the name does not resolve within
/// [`DNS_TIMEOUT`].
pub async fn resolve(domain: &str) -> Option<IpAddr> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((domain, 443)))
            .await
            .ok()?
            .ok()?
            .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(SocketAddr::ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name under `.invalid` (RFC 6761) never resolves: the answer is None, and it comes
    /// within the bound whatever the host's resolver does (real clock: the lookup runs on
    /// a blocking thread, which a paused clock would not wait for).
    #[tokio::test]
    async fn unresolvable_name_gives_none_within_the_bound() {
        let start = std::time::Instant::now();
        let got = tokio::time::timeout(
            DNS_TIMEOUT + Duration::from_secs(2),
            resolve("no-such-host.mtproxy-test.invalid"),
        )
        .await
        .expect("resolve outlived its own timeout");
        assert_eq!(got, None);
        assert!(start.elapsed() < DNS_TIMEOUT + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_ip_literal_resolves_to_itself() {
        assert_eq!(
            resolve("127.0.0.1").await,
            Some(IpAddr::from([127, 0, 0, 1]))
        );
    }
}
