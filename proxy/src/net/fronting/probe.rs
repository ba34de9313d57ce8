//! The domain probe (§4.4.5): learn how each `-D` domain's real TLS 1.3 server answers, so
//! the fake ServerHello looks like it — the extension order and the size of the first
//! encrypted record.
//!
//! As C: resolve the name, open [`PROBE_CONNECTIONS`] (20) parallel TCP connections to
//! `:443`, send C's 517-byte Chrome-like ClientHello on each, check each answer
//! ([`parse_probe_response`]), all within [`PROBE_BUDGET`] (5 s); only when all 20 succeed
//! are the results combined ([`aggregate_probe_results`]). Otherwise the domain keeps
//! C's fallback profile ([`DomainProfile::fallback`]: size 2500..=3619, ±1 per connection,
//! normal order).
//!
//! Beyond C, which probes once, blocking start-up:
//! * the probe runs in the background; until it finishes, clients get the fallback profile
//!   (and fronting resolves the name on demand);
//! * it is repeated every [`REFRESH_INTERVAL`] after a success and every
//!   [`RETRY_INTERVAL`] after a failure (`MTPROXY_DOMAIN_PROBE_INTERVAL` seconds overrides
//!   both). A failed refresh keeps the last learnt profile rather than falling back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::dns::resolve;
use super::domains::Domains;
use crate::net::shared::Shared;
use crate::protocol::fake_tls::{
    aggregate_probe_results, parse_probe_response, probe_client_hello, DomainProfile, ProbeFacts,
    PROBE_CONNECTIONS,
};
use crate::stats::inc;

/// The whole probe of one domain has this long (C: 5 s).
pub const PROBE_BUDGET: Duration = Duration::from_secs(5);
/// Probe again this long after a success.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Probe again this long after a failure.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(300);
/// The port probed (C: always 443).
pub const PROBE_PORT: u16 = 443;

/// The largest answer read from one probe connection (a ServerHello record, the CCS and one
/// application-data record, each at most 5 + 65535 bytes).
const MAX_RESPONSE: usize = 3 * (5 + 65_535);

/// Probes `domain` at `addr` with 20 parallel connections within the 5-second budget.
///
/// # Errors
/// The first failure's description (C's message where there is one).
pub async fn probe_domain(domain: &str, addr: SocketAddr) -> Result<DomainProfile, String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..PROBE_CONNECTIONS {
        let hello = {
            let mut rng = StdRng::from_entropy();
            probe_client_hello(&mut rng, domain).map_err(|e| e.to_string())?
        };
        set.spawn(probe_once(addr, hello));
    }
    let collect = async {
        let mut facts = Vec::with_capacity(PROBE_CONNECTIONS);
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(f)) => facts.push(f),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(facts)
    };
    let facts = tokio::time::timeout(PROBE_BUDGET, collect)
        .await
        .map_err(|_| format!("Failed to check domain {domain} in 5 seconds"))??;
    if facts
        .iter()
        .any(|f| f.reversed_extension_order != facts[0].reversed_extension_order)
    {
        tracing::warn!("Upstream server {domain} uses non-deterministic extension order");
    }
    aggregate_probe_results(&facts).ok_or_else(|| "no probe results".to_string())
}

async fn probe_once(addr: SocketAddr, hello: Vec<u8>) -> Result<ProbeFacts, String> {
    let mut session_id = [0u8; 32];
    session_id.copy_from_slice(hello.get(44..76).ok_or("short probe hello")?);
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Failed to connect to {addr}: {e}"))?;
    s.write_all(&hello)
        .await
        .map_err(|e| format!("Failed to write request to {addr}: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        match parse_probe_response(&buf, &session_id) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if buf.len() >= MAX_RESPONSE {
            return Err("response too long".into());
        }
        let n = s
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("Failed to read response from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "Failed to read response from {addr}: connection closed"
            ));
        }
    }
}

/// The interval override from `MTPROXY_DOMAIN_PROBE_INTERVAL` (whole seconds), if any.
fn interval_override() -> Option<Duration> {
    std::env::var("MTPROXY_DOMAIN_PROBE_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Probes one domain (resolving it again first) and records the result in `state`.
/// Returns whether the probe succeeded.
pub async fn refresh_domain(shared: &Shared, state: &Domains, index: usize) -> bool {
    let name = state.domain_name(index).to_string();
    let started = Instant::now();
    let ip = match resolve(&name).await {
        Some(ip) => {
            state.set_address(index, ip);
            Some(ip)
        }
        None => {
            tracing::warn!("Failed to resolve host {name}");
            state.address(index)
        }
    };
    let result = match ip {
        Some(ip) => probe_domain(&name, SocketAddr::new(ip, PROBE_PORT)).await,
        None => Err(format!("no address for {name}")),
    };
    match result {
        Ok(profile) => {
            inc(&shared.counters.tls_domain_probes_ok);
            tracing::info!(
                "Successfully checked domain {name} in {:.3} seconds: is_reversed_extension_order = {}, server_hello_encrypted_size = {}, use_random_encrypted_size = {}",
                started.elapsed().as_secs_f64(),
                u8::from(profile.reversed_extension_order),
                profile.encrypted_size,
                u8::from(profile.randomize)
            );
            if profile.reversed_extension_order && profile.encrypted_size <= 1250 {
                tracing::warn!("Multiple encrypted client data packets are unsupported, so handshake with {name} will not be fully emulated");
            }
            state.set_profile(index, profile);
            true
        }
        Err(e) => {
            inc(&shared.counters.tls_domain_probes_failed);
            tracing::warn!("{e}");
            if state.is_probed(index) {
                tracing::warn!("Failed to refresh response data about {name}; the last learnt settings stay in use");
            } else {
                tracing::warn!("Failed to update response data about {name}, so default response settings will be used");
            }
            false
        }
    }
}

/// Probes every domain now, then again periodically, until `shutdown`.
pub async fn run(shared: Arc<Shared>, state: Arc<Domains>, shutdown: CancellationToken) {
    let overridden = interval_override();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..state.domain_count() {
        let shared = shared.clone();
        let state = state.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let ok = tokio::select! {
                    () = stop.cancelled() => return,
                    ok = refresh_domain(&shared, &state, index) => ok,
                };
                let wait = overridden.unwrap_or(if ok { REFRESH_INTERVAL } else { RETRY_INTERVAL });
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
