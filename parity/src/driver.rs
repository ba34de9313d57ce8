//! The traffic driver of the dual-run: one [`FakeMe`] per side and instance group, and
//! the client simulator replaying the seeded workload against each proxy.
//!
//! Both sides get byte-identical sessions (same transports, dcs, packets and quick-ack
//! requests, same client randomness); the FakeMe answers are a pure function of the
//! request (echo, plus a SIMPLE_ACK whose confirm is derived from the payload), so what
//! the two sides' clients receive can be compared byte for byte.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use mtproxy::protocol::fake_tls::HelloShape;
use mtproxy::protocol::transport::Transport;
use tokio::sync::Semaphore;

use crate::client::{self, ClientConfig, SimClient, SimError};
use crate::dualrun::{BoxFuture, Driver, InstanceConfig, PhaseResult, SidePrep, DEPLOYED_WORKERS};
use crate::fake_me::FakeMe;
use crate::metrics::Recorder;
use crate::process::ProxyProcess;
use crate::site::DomainServer;
use crate::transcript::{
    ClientEvent, ClientRecord, MeRecord, ProbeRecord, ReactionClass, SessionEnd, Side, Wire,
};
use crate::workload::{Deployment, Phase, Probe, ProbeClass, Session};

/// How long a probe waits for the proxy's reaction.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);
/// How long one request may take before the session counts as timed out.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Middle-end links that must be up before a proxy counts as ready (C's default
/// `min_connections` for the one target every dc maps to).
pub const READY_LINKS: usize = 4;
/// The FakeMe + client-simulator driver.
#[derive(Default)]
pub struct SimDriver {
    mes: Mutex<HashMap<Side, Arc<FakeMe>>>,
    /// The stand-in site behind `-D` (one for every side), started on first use.
    site: tokio::sync::Mutex<Option<Arc<DomainServer>>>,
}

impl SimDriver {
    /// The stand-in site, started on first use.
    async fn site(&self) -> anyhow::Result<Arc<DomainServer>> {
        let mut slot = self.site.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let ip = crate::site::loopback_ip(253);
        let site = Arc::new(
            DomainServer::start(SocketAddr::from((ip, 443)), &ip.to_string(), true)
                .await
                .context("the stand-in site behind -D")?,
        );
        *slot = Some(site.clone());
        Ok(site)
    }

    /// The `-D` domain (the site's IP literal), when the site runs.
    async fn domain(&self) -> Option<String> {
        self.site
            .lock()
            .await
            .as_ref()
            .map(|s| s.addr.ip().to_string())
    }

    fn me(&self, side: Side) -> anyhow::Result<Arc<FakeMe>> {
        self.mes
            .lock()
            .map_err(|_| anyhow::anyhow!("driver state poisoned"))?
            .get(&side)
            .cloned()
            .with_context(|| format!("no FakeMe prepared for {}", side.name()))
    }
}

fn client_config(
    cfg: &InstanceConfig,
    session: &Session,
    seed: u64,
    domain: Option<&str>,
) -> ClientConfig {
    let mut c = ClientConfig::new(session.transport.framing())
        .dc(session.dc)
        .seed(seed ^ u64::from(session.id).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .timeout(REQUEST_TIMEOUT);
    if let Some(s) = cfg.secrets.first() {
        c = c.secret(*s);
    }
    if session.transport == Wire::FakeTls {
        // Current clients' long hellos and the classic 517-byte one, alternately.
        let shape = if session.id.is_multiple_of(2) {
            HelloShape::LongTdlib
        } else {
            HelloShape::Chrome
        };
        c = c.fake_tls(domain.unwrap_or("localhost"), shape);
    }
    c
}

/// Runs one session; returns its record and feeds `rec`.
async fn run_session(
    addr: SocketAddr,
    cfg: ClientConfig,
    session: &Session,
    rec: &mut Recorder,
) -> ClientRecord {
    let mut events = Vec::new();
    let end = match SimClient::connect(addr, cfg).await {
        Err(e) => {
            rec.error(error_class(&e));
            end_of(&e)
        }
        Ok(mut c) => {
            let mut end = SessionEnd::Completed;
            for p in &session.packets {
                match c.request(&p.bytes, p.quick_ack).await {
                    Ok(x) => {
                        if let Some(confirm) = x.quick_ack {
                            events.push(ClientEvent::QuickAck { confirm });
                        }
                        rec.success(x.latency, p.bytes.len(), x.answer.len());
                        events.push(ClientEvent::Packet {
                            data: x.answer.to_vec(),
                        });
                    }
                    Err(e) => {
                        rec.error(error_class(&e));
                        end = end_of(&e);
                        break;
                    }
                }
            }
            c.close().await;
            end
        }
    };
    ClientRecord {
        session: session.id,
        transport: session.transport,
        dc: session.dc,
        events,
        end,
    }
}

fn error_class(e: &SimError) -> &'static str {
    match e {
        SimError::Closed => "closed_by_proxy",
        SimError::Timeout(_) => "timeout",
        SimError::Io(_) => "io",
        SimError::Transport(_) | SimError::Record(_) | SimError::ServerHello(_) => "framing",
        SimError::Encode(_) | SimError::Config(_) => "client",
        SimError::Unexpected(_) => "unexpected",
    }
}

fn end_of(e: &SimError) -> SessionEnd {
    match e {
        SimError::Closed => SessionEnd::ClosedByProxy,
        SimError::Timeout(_) => SessionEnd::TimedOut,
        other => SessionEnd::Error(error_class(other).to_string()),
    }
}

fn reaction_of(r: client::Reaction) -> ReactionClass {
    match r {
        client::Reaction::Silence => ReactionClass::Silence,
        client::Reaction::Closed => ReactionClass::Close,
        client::Reaction::Data(_) => ReactionClass::Relay,
    }
}

/// A connection id no proxy hands out (C's start at `1 << 22` plus an fd).
const UNKNOWN_CONN_ID: i64 = 0x7eee_0000_0000_0001;

impl SimDriver {
    /// Runs a middle-end fault probe; `None` for the client-side classes.
    async fn me_fault(
        &self,
        side: Side,
        class: ProbeClass,
        addr: SocketAddr,
        cfg: &ClientConfig,
    ) -> Option<(ReactionClass, String)> {
        let me = match self.me(side) {
            Ok(m) => m,
            Err(e) => return Some((ReactionClass::NotRun, e.to_string())),
        };
        let wait = Duration::from_secs(3);
        let r = match class {
            ProbeClass::MePing => {
                let before = me.pongs().len();
                match me.send_ping(0x5049_4e47).await {
                    Ok(0) => (ReactionClass::NotRun, "no ready link to ping".into()),
                    Ok(n) => match me.wait_pongs(before + n, wait).await {
                        Ok(p) => (
                            ReactionClass::Relay,
                            format!("{} PONG(s) for {n} PING(s)", p.len() - before),
                        ),
                        Err(e) => (ReactionClass::Silence, e.to_string()),
                    },
                    Err(e) => (ReactionClass::NotRun, e.to_string()),
                }
            }
            ProbeClass::MeUnknownAnswer => {
                let before = me.close_conns().len();
                match me
                    .send_proxy_ans(UNKNOWN_CONN_ID, bytes::Bytes::from_static(&[0u8; 16]))
                    .await
                {
                    Ok(_) => match me.wait_close_conns(before + 1, wait).await {
                        Ok(c) if c.iter().any(|x| x.conn_id == UNKNOWN_CONN_ID) => {
                            (ReactionClass::Relay, "CLOSE_CONN for the unknown id".into())
                        }
                        Ok(_) => (ReactionClass::Silence, "CLOSE_CONN for another id".into()),
                        Err(e) => (ReactionClass::Silence, e.to_string()),
                    },
                    Err(e) => (ReactionClass::NotRun, e.to_string()),
                }
            }
            ProbeClass::MeCloseExt | ProbeClass::MeDrop => {
                let mut c = match SimClient::connect(addr, cfg.clone()).await {
                    Ok(c) => c,
                    Err(e) => return Some((ReactionClass::NotRun, format!("connect: {e}"))),
                };
                let payload = client::encrypted_message(
                    &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9),
                    64,
                );
                if let Err(e) = c.request(&payload, false).await {
                    return Some((ReactionClass::NotRun, format!("first request: {e}")));
                }
                let conn_id = me
                    .records()
                    .iter()
                    .rev()
                    .find(|r| r.payload.as_ref() == payload.as_slice())
                    .map(|r| r.ext_conn_id);
                if class == ProbeClass::MeCloseExt {
                    let Some(id) = conn_id else {
                        return Some((
                            ReactionClass::NotRun,
                            "request not seen by the FakeMe".into(),
                        ));
                    };
                    if let Err(e) = me.close_ext(id).await {
                        return Some((ReactionClass::NotRun, e.to_string()));
                    }
                    if c.closed_within(wait).await {
                        (ReactionClass::Close, "client closed after CLOSE_EXT".into())
                    } else {
                        (
                            ReactionClass::Silence,
                            "client still open after CLOSE_EXT".into(),
                        )
                    }
                } else {
                    let handshakes = me.handshakes();
                    let dropped = me.drop_all().await;
                    let closed = c.closed_within(wait).await;
                    let back = me
                        .wait_handshakes(handshakes + 1, Duration::from_secs(15))
                        .await
                        .is_ok();
                    let reaction = if closed {
                        ReactionClass::Close
                    } else {
                        ReactionClass::Silence
                    };
                    (
                        reaction,
                        format!("{dropped} link(s) dropped; client closed: {closed}; links back: {back}"),
                    )
                }
            }
            _ => return None,
        };
        Some(r)
    }
}

impl SimDriver {
    /// The fronting probe: a prober's plain HTTP request to a `-D` proxy must reach the
    /// site behind the domain byte for byte ("relay").
    async fn fronting(&self, side: Side, addr: SocketAddr, seed: u64) -> (ReactionClass, String) {
        use tokio::io::AsyncWriteExt;
        let site = match self.site().await {
            Ok(s) => s,
            Err(e) => return (ReactionClass::NotRun, format!("{e:#}")),
        };
        let request = format!(
            "GET /probe-{}-{seed:x} HTTP/1.1\r\nHost: {}\r\n\r\n",
            side.name(),
            site.addr.ip()
        )
        .into_bytes();
        let mut s = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return (ReactionClass::NotRun, format!("connect: {e}")),
        };
        if let Err(e) = s.write_all(&request).await {
            return (ReactionClass::Close, format!("write: {e}"));
        }
        let seen = site
            .wait_for(PROBE_WAIT * 2, |b, _| b == request.as_slice())
            .await;
        drop(s);
        if seen {
            (
                ReactionClass::Relay,
                format!("the site received the {} bytes", request.len()),
            )
        } else {
            (
                ReactionClass::Silence,
                format!("not relayed; the site saw: {}", site.summary()),
            )
        }
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &str {
        "fake-me+client-sim"
    }

    fn prepare<'a>(
        &'a self,
        side: Side,
        config: &'a InstanceConfig,
    ) -> BoxFuture<'a, anyhow::Result<SidePrep>> {
        Box::pin(async move {
            let mut extra_args = Vec::new();
            if config.deployment == Deployment::FakeTls {
                let site = self.site().await?;
                extra_args.extend(["-D".to_string(), site.addr.ip().to_string()]);
            }
            // Every worker opens its own links (C's master too).
            let links = match config.deployment {
                Deployment::Workers => READY_LINKS * DEPLOYED_WORKERS as usize,
                _ => READY_LINKS,
            };
            let secret: Vec<u8> = {
                use rand::RngCore;
                let mut s = vec![0u8; 128];
                rand::thread_rng().fill_bytes(&mut s);
                s
            };
            let me = Arc::new(
                FakeMe::builder()
                    .secret(secret.clone())
                    .spawn()
                    .await
                    .context("starting the FakeMe")?,
            );
            let addr = me.addr();
            self.mes
                .lock()
                .map_err(|_| anyhow::anyhow!("driver state poisoned"))?
                .insert(side, me.clone());
            let targets = (1..=5).flat_map(|dc| [(dc, addr), (-dc, addr)]).collect();
            Ok(SidePrep {
                me_targets: targets,
                ready: Some(Box::pin(async move {
                    me.wait_handshakes(links, Duration::from_secs(15)).await
                })),
                extra_args,
                proxy_secret: Some(secret),
            })
        })
    }

    fn run_phase<'a>(
        &'a self,
        side: Side,
        phase: &'a Phase,
        config: &'a InstanceConfig,
        target: &'a ProxyProcess,
    ) -> BoxFuture<'a, anyhow::Result<PhaseResult>> {
        Box::pin(async move {
            let me = self.me(side)?;
            let _ = me.take_records();
            let addr = target.client_addr();
            let permits = Arc::new(Semaphore::new(phase.concurrency.max(1)));
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            let seed = phase.sessions.len() as u64;
            let domain = self.domain().await;
            for (i, session) in phase.sessions.iter().enumerate() {
                let cfg = client_config(config, session, seed, domain.as_deref());
                let session = session.clone();
                let permits = permits.clone();
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let mut rec = Recorder::new();
                    let record = run_session(addr, cfg, &session, &mut rec).await;
                    (i, record, rec)
                });
            }
            let mut records = vec![None; phase.sessions.len()];
            let mut total = Recorder::new();
            while let Some(r) = tasks.join_next().await {
                let (i, record, rec) = r.context("session task")?;
                total.merge(&rec);
                if let Some(slot) = records.get_mut(i) {
                    *slot = Some(record);
                }
            }
            let elapsed = started.elapsed();
            let me_records = me
                .take_records()
                .into_iter()
                .map(|r| MeRecord {
                    flags: r.flags,
                    tag: r.proxy_tag,
                    payload: r.payload.to_vec(),
                    dc_hint: None,
                    conn_id: r.ext_conn_id,
                    client_addr: r.client,
                    proxy_addr: r.proxy,
                })
                .collect();
            Ok(PhaseResult {
                metrics: total.finish(elapsed),
                me_records,
                client_records: records.into_iter().flatten().collect(),
            })
        })
    }

    fn run_probes<'a>(
        &'a self,
        side: Side,
        probes: &'a [Probe],
        config: &'a InstanceConfig,
        target: &'a ProxyProcess,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ProbeRecord>>> {
        Box::pin(async move {
            let addr = target.client_addr();
            let mut out = Vec::with_capacity(probes.len());
            for (i, probe) in probes.iter().enumerate() {
                if side != Side::Candidate && !probe.send_to_reference {
                    out.push(ProbeRecord {
                        class: probe.class.name().to_string(),
                        reaction: ReactionClass::NotRun,
                        detail: "not sent to the reference (it would crash it)".into(),
                    });
                    continue;
                }
                if target.exit_info().is_some() {
                    out.push(ProbeRecord {
                        class: probe.class.name().to_string(),
                        reaction: ReactionClass::Crash,
                        detail: "the proxy had already exited".into(),
                    });
                    continue;
                }
                let seed = 0x7072_6f62_6500 + i as u64;
                let mut cfg = ClientConfig::new(Transport::Intermediate)
                    .seed(seed)
                    .timeout(PROBE_WAIT);
                if let Some(s) = config.secrets.first() {
                    cfg = cfg.secret(*s);
                }
                if probe.class == ProbeClass::TlsFronting {
                    let (reaction, detail) = self.fronting(side, addr, seed).await;
                    out.push(ProbeRecord {
                        class: probe.class.name().to_string(),
                        reaction,
                        detail,
                    });
                    continue;
                }
                if let Some(me_probe) = self.me_fault(side, probe.class, addr, &cfg).await {
                    let (reaction, detail) = me_probe;
                    out.push(ProbeRecord {
                        class: probe.class.name().to_string(),
                        reaction,
                        detail,
                    });
                    continue;
                }
                let observed = match probe.class {
                    ProbeClass::WrongSecret => {
                        client::wrong_secret(addr, Transport::Intermediate, seed, PROBE_WAIT).await
                    }
                    ProbeClass::Garbage => client::garbage(addr, 256, seed, PROBE_WAIT).await,
                    ProbeClass::Http => client::http_get(addr, PROBE_WAIT).await,
                    ProbeClass::Oversize => client::oversize_frame(addr, cfg, PROBE_WAIT).await,
                    ProbeClass::ShortPaddedFrame => {
                        client::short_padded_frame(addr, cfg, 2, PROBE_WAIT).await
                    }
                    ProbeClass::MePing
                    | ProbeClass::MeUnknownAnswer
                    | ProbeClass::MeCloseExt
                    | ProbeClass::MeDrop
                    | ProbeClass::TlsFronting => unreachable!("handled above"),
                };
                let (mut reaction, detail) = match observed {
                    Ok(r) => {
                        let d = format!("{r:?}");
                        (reaction_of(r), d)
                    }
                    Err(e) if e.is_closed() => (ReactionClass::Close, e.to_string()),
                    Err(e) => (ReactionClass::Close, format!("probe error: {e}")),
                };
                if probe.class == ProbeClass::ShortPaddedFrame
                    && target.wait_exit(Duration::from_secs(1)).await.is_some()
                {
                    reaction = ReactionClass::Crash;
                }
                out.push(ProbeRecord {
                    class: probe.class.name().to_string(),
                    reaction,
                    detail,
                });
            }
            Ok(out)
        })
    }
}
