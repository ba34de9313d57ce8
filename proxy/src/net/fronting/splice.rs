//! Fronting ("proxy pass", §4.4.6): a connection that is not a valid fake-TLS client is
//! relayed byte for byte — the bytes already read first, then everything in both
//! directions — to the real website of a `-D` domain, at `:443` (`:80` when the client
//! came in on local port 80), so that a prober sees nothing but that website.
//!
//! Beyond C: a relay to one of this proxy's own listening addresses is refused (see
//! [`super::loops`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::domains::Domains;
use crate::protocol::session::CloseReason;
use crate::stats::{inc, Counters};

/// How long connecting to the domain may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relays `client` to domain `domain` (index into `-D`), sending `buffered` first.
///
/// Returns when both directions are done, on `cancel`, or at once when the domain has no
/// address, the connect fails, or the target is ourselves.
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
    let port = if local.port() == 80 { 80 } else { 443 };
    let name = state.domain_name(domain).to_string();
    let Some(ip) = state.target_ip(domain).await else {
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
    let relay = async {
        upstream.write_all(buffered).await?;
        tokio::io::copy_bidirectional(client, &mut upstream).await
    };
    let outcome = tokio::select! {
        () = cancel.cancelled() => CloseReason::Shutdown,
        r = relay => match r {
            Ok(_) => CloseReason::Fronted,
            Err(_) => CloseReason::Fronted,
        },
    };
    if let Some(a) = up_local {
        state.loops.unregister(a);
    }
    outcome
}
