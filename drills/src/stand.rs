//! A proxy under drill: its fake middle ends and the process, ready for clients — the
//! parity fixtures put together, plus the client moves the drills repeat.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, ClientConfig, SimClient};
use parity::fake_me::FakeMe;
use parity::process::ProxyProcess;
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// The client secret of every drill.
pub const SECRET: [u8; 16] = [0x5d; 16];
/// Links each process opens per middle end (C's default; C's `-M` master opens its own).
pub const LINKS: usize = 4;
/// How long a proxy may take to come up.
const READY: Duration = Duration::from_secs(25);

/// How to start a [`Stand`].
#[derive(Debug, Clone)]
pub struct StandOpts {
    /// Middle ends: dc 2 → the first, dc 4 → the second (when there are two).
    pub mes: usize,
    /// `-c`.
    pub max_connections: u32,
    /// Extra proxy arguments.
    pub extra_args: Vec<String>,
}

impl Default for StandOpts {
    fn default() -> Self {
        Self {
            mes: 1,
            max_connections: 4096,
            extra_args: Vec::new(),
        }
    }
}

/// A proxy with its middle ends.
pub struct Stand {
    /// The middle ends.
    pub mes: Vec<FakeMe>,
    /// The proxy process.
    pub proxy: ProxyProcess,
}

impl Stand {
    /// Starts the middle ends and the proxy; resolves once every non-refusing middle end
    /// has its links.
    ///
    /// # Errors
    /// When a fixture cannot start or the proxy is not ready in time.
    pub async fn start(subject: &Subject, opts: StandOpts) -> anyhow::Result<Stand> {
        let mut proxy_secret = vec![0u8; 128];
        rand::thread_rng().fill_bytes(&mut proxy_secret);
        let mut mes = Vec::new();
        for _ in 0..opts.mes.max(1) {
            mes.push(
                FakeMe::builder()
                    .secret(proxy_secret.clone())
                    .spawn()
                    .await?,
            );
        }
        let mut routes = Vec::new();
        for dc in 1..=5i16 {
            let addr = if dc == 4 && mes.len() > 1 {
                mes[1].addr()
            } else {
                mes[0].addr()
            };
            routes.push((dc, addr));
            routes.push((-dc, addr));
        }
        let mut b = ProxyProcess::builder(&subject.binary)
            .label(subject.label.clone())
            .secrets(&[SECRET])
            .me_targets(&routes)
            .default_dc(2)
            .max_connections(opts.max_connections)
            .proxy_secret(proxy_secret)
            .extra_args(opts.extra_args.clone());
        for (k, v) in &subject.env {
            b = b.env(k.clone(), v.clone());
        }
        if let Some(image) = &subject.image {
            b = b.launcher(parity::process::Launcher::Docker {
                image: image.clone(),
                platform: "linux/amd64".into(),
            });
        }
        let proxy = b.spawn().await?;
        proxy.wait_ready(READY).await?;
        for me in &mes {
            me.wait_handshakes(LINKS, READY)
                .await
                .with_context(|| proxy.log_tail(20))?;
        }
        Ok(Stand { mes, proxy })
    }

    /// The client port.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.client_addr()
    }

    /// The proxy's pid.
    pub fn pid(&self) -> u32 {
        self.proxy.pid()
    }

    /// Drops what the middle ends recorded (long drills keep the harness's memory flat).
    pub fn forget_records(&self) {
        for me in &self.mes {
            let _ = me.take_records();
        }
    }
}

/// A client config for the drills' secret.
pub fn client(transport: Transport, dc: i16, seed: u64, timeout: Duration) -> ClientConfig {
    ClientConfig::new(transport)
        .secret(SECRET)
        .dc(dc)
        .seed(seed)
        .timeout(timeout)
}

/// Connects and makes one round trip whose answer must be the payload (the middle end
/// echoes); returns the client, still open, and the round trip's duration.
///
/// # Errors
/// When the client cannot connect, gets no answer in time, or a wrong one.
pub async fn served(
    addr: SocketAddr,
    cfg: ClientConfig,
    len: usize,
) -> anyhow::Result<(SimClient, Duration)> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let start = tokio::time::Instant::now();
    let mut c = SimClient::connect(addr, cfg).await?;
    let p = encrypted_message(&mut rng, len);
    let ex = c.request(&p, false).await?;
    ensure!(
        ex.answer[..] == p[..],
        "the answer differs from the request"
    );
    Ok((c, start.elapsed()))
}

/// One connect, round trip and close; the round trip's duration.
///
/// # Errors
/// As [`served`].
pub async fn round_trip(
    addr: SocketAddr,
    seed: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let transport = [
        Transport::Intermediate,
        Transport::Abridged,
        Transport::PaddedIntermediate,
    ][(seed % 3) as usize];
    let (c, d) = served(addr, client(transport, 2, seed, timeout), 64).await?;
    c.close().await;
    Ok(d)
}
