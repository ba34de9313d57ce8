//! The measurements, one function each: first accept, bulk throughput, connection rate,
//! latency at light load, idle clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use mtproxy::protocol::transport::Transport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::bench_me::{BenchMe, MeMode};
use super::cpu::{CpuUse, CpuWindow};
use super::proxy::BenchProxy;
use super::script::{next_phase, read_echo, request_payload, script, warmup_packet, WRITE_PIECE};
use crate::client::{ClientConfig, SimClient};

// ---------------------------------------------------------------------------------------
// First accept.

/// Start-up timing of a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Startup {
    /// Spawn → a TCP connect to the client port succeeds (the socket listens).
    pub listen_ms: f64,
    /// Spawn → a client's header and first packet got its echo back (accepted, served).
    pub first_served_ms: f64,
}

/// Polls the freshly spawned `proxy` every millisecond until a client is served.
///
/// # Errors
/// Not served within `timeout`, or the proxy exited.
pub async fn first_accept(
    proxy: &mut BenchProxy,
    secret: [u8; 16],
    timeout: Duration,
) -> anyhow::Result<Startup> {
    let started = proxy.started();
    let addr = proxy.client_addr();
    let mut rng = StdRng::seed_from_u64(0x5747);
    let mut listen = None;
    while started.elapsed() < timeout {
        if !proxy.running() {
            bail!("the proxy exited during start-up:\n{}", proxy.log_tail(20));
        }
        let attempt = async {
            let mut s = TcpStream::connect(addr).await?;
            let at = started.elapsed();
            listen.get_or_insert(at);
            let _ = s.set_nodelay(true);
            let first = request_payload(&mut rng, 64);
            let mut sc = script(&mut rng, &secret, &first, &[], 0)?;
            s.write_all(&sc.opening).await?;
            tokio::time::timeout(
                Duration::from_millis(25),
                read_echo(&mut s, &mut sc.decrypt, &first),
            )
            .await
            .map_err(|_| anyhow!("no answer yet"))??;
            anyhow::Ok(started.elapsed())
        };
        if let Ok(served) = attempt.await {
            let listen = listen.unwrap_or(served);
            return Ok(Startup {
                listen_ms: listen.as_secs_f64() * 1e3,
                first_served_ms: served.as_secs_f64() * 1e3,
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!(
        "no client served within {timeout:?}:\n{}",
        proxy.log_tail(20)
    )
}

// ---------------------------------------------------------------------------------------
// Bulk throughput.

/// One bulk phase: `clients` clients each send `requests` requests of `request_size`
/// bytes with at most `window` unanswered; the ME answers each with `answer_size` bytes.
/// With `answer_size` 0 nothing is answered: the ME counts, and a request reaching the ME
/// gives its client the credit for one more (an unbounded upload would only measure how
/// much a proxy buffers — the C build aborts with "cannot allocate tcp receive buffer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per client.
    pub requests: usize,
    /// Request payload bytes (a multiple of 4, at least 56).
    pub request_size: usize,
    /// Answer payload bytes (a multiple of 4; 0 for none).
    pub answer_size: usize,
    /// Unanswered requests per client at most (ignored without answers).
    pub window: usize,
}

/// What a bulk phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BulkResult {
    /// Payload bytes counted (answers, or requests when there are none).
    pub bytes: u64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Payload MB per CPU second of the proxy (a contention-proof efficiency figure).
    pub mb_per_proxy_cpu_s: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

/// Runs one bulk phase against `proxy` (whose ME is `me`).
///
/// # Errors
/// A client failing, the proxy not carrying the traffic within `timeout`.
pub async fn bulk(
    me: &BenchMe,
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    spec: BulkSpec,
    timeout: Duration,
) -> anyhow::Result<BulkResult> {
    let phase = next_phase();
    let mut rng = StdRng::seed_from_u64(phase);
    let request = request_payload(&mut rng, spec.request_size);
    let answer = Bytes::from(request_payload(&mut rng, spec.answer_size.max(4)));
    me.set_mode(MeMode::Echo);
    // Precompute, connect and warm up every client (its warm-up tells the ME its link).
    let mut clients = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        let warm = warmup_packet(phase, i as u32);
        let mut sc = script(&mut rng, &secret, &warm, &request, spec.requests)?;
        let mut s = TcpStream::connect(addr).await.context("connect")?;
        let _ = s.set_nodelay(true);
        s.write_all(&sc.opening).await?;
        tokio::time::timeout(timeout, read_echo(&mut s, &mut sc.decrypt, &warm))
            .await
            .map_err(|_| anyhow!("warm-up answer timed out"))??;
        clients.push((s, sc.stream));
    }
    let answered = spec.answer_size > 0;
    let window = spec.window.max(1);
    let credits = if answered {
        let armed = me.arm(phase, answer, spec.requests).await?;
        if armed != spec.clients {
            bail!("the ME armed {armed} of {} clients", spec.clients);
        }
        me.set_mode(MeMode::Stream);
        (0..spec.clients)
            .map(|_| Arc::new(Semaphore::new(window)))
            .collect()
    } else {
        let c = me.arm_sink(phase, spec.clients, window)?;
        me.set_mode(MeMode::Sink);
        c
    };
    me.reset_received();
    let answer_wire = 4 + spec.answer_size;
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for ((s, stream), credit) in clients.into_iter().zip(credits) {
        tasks.spawn(bulk_client(s, stream, spec, answered, answer_wire, credit));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    // Connections stay open until the phase is over (the ME may still be counting).
    let mut open = Vec::with_capacity(spec.clients);
    while let Some(r) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("bulk phase timed out after {timeout:?}"))?
    {
        open.push(r.context("bulk client task")??);
    }
    let bytes = if answered {
        (spec.clients * spec.requests * spec.answer_size) as u64
    } else {
        let total = (spec.clients * spec.requests * spec.request_size) as u64;
        me.wait_request_bytes(
            total,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await?;
        total
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    drop(open);
    me.set_mode(MeMode::Echo);
    Ok(BulkResult {
        bytes,
        mb_per_s: bytes as f64 / elapsed / 1e6,
        mb_per_proxy_cpu_s: if cpu.proxy_cpu_s > 0.0 {
            bytes as f64 / cpu.proxy_cpu_s / 1e6
        } else {
            0.0
        },
        cpu,
    })
}

async fn bulk_client(
    s: TcpStream,
    stream: Vec<u8>,
    spec: BulkSpec,
    answered: bool,
    answer_wire: usize,
    credit: Arc<Semaphore>,
) -> anyhow::Result<TcpStream> {
    let (mut rd, mut wr) = s.into_split();
    let frame = spec.request_size + 4;
    let total = spec.requests;
    let c2 = credit.clone();
    let writer = async move {
        let mut i = 0;
        while i < total {
            let p = c2.acquire().await.map_err(|_| anyhow!("credit closed"))?;
            p.forget();
            let mut k = 1;
            while i + k < total && k * frame < WRITE_PIECE {
                match c2.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        k += 1;
                    }
                    Err(_) => break,
                }
            }
            wr.write_all(&stream[i * frame..(i + k) * frame]).await?;
            i += k;
        }
        anyhow::Ok(wr)
    };
    let reader = async move {
        if !answered {
            // The ME hands out the credit; nothing comes back through the proxy.
            return anyhow::Ok(rd);
        }
        let mut buf = vec![0u8; WRITE_PIECE];
        let mut got = 0usize;
        let mut answers = 0usize;
        let want = total * answer_wire;
        while got < want {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                bail!("the proxy closed the connection after {answers} answers");
            }
            got += n;
            let now = got / answer_wire;
            if now > answers {
                credit.add_permits(now - answers);
                answers = now;
            }
        }
        if got != want {
            bail!("{got} answer bytes, expected {want}");
        }
        anyhow::Ok(rd)
    };
    let (w, r) = tokio::join!(writer, reader);
    Ok(r?.reunite(w?)?)
}

// ---------------------------------------------------------------------------------------
// Connection rate.

/// What the connection-rate phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnRateResult {
    /// Connections completed (connect, header, one packet echoed, close).
    pub connections: u64,
    /// Connections that failed.
    pub failures: u64,
    /// Completed connections per second.
    pub per_s: f64,
    /// Completed connections per CPU second of the proxy.
    pub per_proxy_cpu_s: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

/// `concurrency` tasks open connections back to back for `duration` (at most `max`
/// connections, all precomputed): connect, send header and a 64-byte packet, read its
/// echo (every 8th checked byte for byte), close.
///
/// # Errors
/// More than 1 % of the connections failing.
pub async fn conn_rate(
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    concurrency: usize,
    duration: Duration,
    max: usize,
) -> anyhow::Result<ConnRateResult> {
    let mut rng = StdRng::seed_from_u64(CONN_SEED);
    // Every 8th connection checks the echo byte for byte; the others check its length
    // (so the precomputed set stays small: no keystream state kept for them).
    let mut scripts = Vec::with_capacity(max);
    for i in 0..max {
        let first = request_payload(&mut rng, 64);
        let sc = script(&mut rng, &secret, &first, &[], 0)?;
        let check = (i % 8 == 0).then_some((sc.decrypt, sc.first));
        scripts.push(Mutex::new(Some((sc.opening, check))));
    }
    let scripts = Arc::new(scripts);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let stop_at = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (scripts, next, done, failed) =
            (scripts.clone(), next.clone(), done.clone(), failed.clone());
        tasks.spawn(async move {
            while Instant::now() < stop_at {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = scripts.get(i) else { break };
                let Some((opening, check)) =
                    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
                else {
                    continue;
                };
                let one = async {
                    let mut s = TcpStream::connect(addr).await?;
                    let _ = s.set_nodelay(true);
                    s.write_all(&opening).await?;
                    match check {
                        Some((mut decrypt, first)) => read_echo(&mut s, &mut decrypt, &first).await,
                        None => {
                            let mut b = [0u8; 68];
                            s.read_exact(&mut b).await?;
                            anyhow::Ok(())
                        }
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    let connections = done.load(Ordering::Relaxed);
    let failures = failed.load(Ordering::Relaxed);
    if failures * 100 > connections.max(1) {
        bail!(
            "{failures} of {} connections failed",
            connections + failures
        );
    }
    Ok(ConnRateResult {
        connections,
        failures,
        per_s: connections as f64 / elapsed,
        per_proxy_cpu_s: if cpu.proxy_cpu_s > 0.0 {
            connections as f64 / cpu.proxy_cpu_s
        } else {
            0.0
        },
        cpu,
    })
}

/// Seed of the connection-rate scripts.
const CONN_SEED: u64 = u64::from_le_bytes(*b"connrate");

// ---------------------------------------------------------------------------------------
// Latency at light load.

/// Round-trip latency percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyResult {
    /// Round trips measured.
    pub samples: u64,
    /// Requests per second offered (all clients).
    pub offered_per_s: f64,
    /// Median (µs).
    pub p50_us: f64,
    /// 90th percentile (µs).
    pub p90_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// 99.9th percentile (µs).
    pub p999_us: f64,
    /// Maximum (µs).
    pub max_us: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

/// `clients` clients each send a `size`-byte packet at exponentially distributed
/// intervals (together `rate` per second) for `duration`, timing each echo.
///
/// # Errors
/// A client failing.
pub async fn latency(
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    clients: usize,
    rate: f64,
    size: usize,
    duration: Duration,
) -> anyhow::Result<LatencyResult> {
    // Every call has its own seeds: a client header seen before is a replay, which the
    // candidate answers with silence (a second latency phase against the same proxy
    // would time out on its first client).
    let phase = next_phase();
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        let cfg = ClientConfig::new(Transport::Intermediate)
            .secret(secret)
            .dc(2)
            .seed(phase.wrapping_mul(0x1_0000).wrapping_add(0x1a7e + i as u64))
            .timeout(Duration::from_secs(5));
        let mut c = SimClient::connect(addr, cfg).await?;
        let warm = request_payload(&mut StdRng::seed_from_u64(i as u64), size);
        let ex = c.request(&warm, false).await?;
        if ex.answer != warm {
            bail!("latency warm-up: the answer is not the echo");
        }
        conns.push(c);
    }
    let per_client_gap = clients as f64 / rate.max(1.0);
    let cpu = CpuWindow::start(pid);
    let stop = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x7a7e_0000 + i as u64);
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                // Exponential gaps: a Poisson arrival process per client.
                let u: f64 = rng.gen_range(1e-9..1.0);
                let gap = Duration::from_secs_f64(-u.ln() * per_client_gap);
                if Instant::now() + gap >= stop {
                    break;
                }
                tokio::time::sleep(gap).await;
                let payload = request_payload(&mut rng, size);
                let ex = c.request(&payload, false).await?;
                if ex.answer != payload {
                    bail!("the answer is not the echo");
                }
                h.record(ex.latency.as_micros().max(1) as u64)?;
            }
            c.close().await;
            anyhow::Ok(h)
        });
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Some(r) = tasks.join_next().await {
        all.add(r.context("latency client task")??)?;
    }
    let cpu = cpu.finish();
    let q = |x: f64| all.value_at_quantile(x) as f64;
    Ok(LatencyResult {
        samples: all.len(),
        offered_per_s: rate,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: all.max() as f64,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------
// Idle clients.

/// Connected clients that did one round trip and now sit idle.
#[derive(Debug, Default)]
pub struct IdleClients {
    conns: Vec<TcpStream>,
}

impl IdleClients {
    /// How many are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Opens `n` more (at most `concurrency` handshakes at a time): connect, header, a
    /// 64-byte packet, its echo checked.
    ///
    /// # Errors
    /// A connection failing.
    pub async fn open(
        &mut self,
        addr: SocketAddr,
        secret: [u8; 16],
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let base = self.conns.len() as u64;
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let sem = sem.clone();
            tasks.spawn(async move {
                let _p = sem.acquire_owned().await?;
                let mut rng = StdRng::seed_from_u64(0x1d1e_0000_0000 + base + i as u64);
                let first = request_payload(&mut rng, 64);
                let mut sc = script(&mut rng, &secret, &first, &[], 0)?;
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(&sc.opening).await?;
                tokio::time::timeout(
                    Duration::from_secs(10),
                    read_echo(&mut s, &mut sc.decrypt, &first),
                )
                .await
                .map_err(|_| anyhow!("idle client: no echo"))??;
                anyhow::Ok(s)
            });
        }
        while let Some(r) = tasks.join_next().await {
            self.conns.push(r.context("idle client task")??);
        }
        Ok(())
    }

    /// Closes them all.
    pub fn close(&mut self) {
        self.conns.clear();
    }
}
