//! Fake TLS (`-D`) end to end on loopback, with a local TLS 1.3 server (rustls) standing in
//! for the domain on `<127.x.y.z>:443` (the domain is given as that IP literal, which C's
//! resolver and ours both accept, and the clients use it as the SNI).
//!
//! Every scenario runs against this build; with `MTPROXY_C_BIN` set, the ones C can run also
//! run against the C build and must give the same outcome, except the documented
//! divergences (C's per-process replay cache, its blocking one-shot probe, its relay to
//! itself), which run against this build only.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mtproxy::protocol::crypto::hmac_sha256;
use mtproxy::protocol::fake_tls::{
    aggregate_probe_results, build_client_hello, parse_probe_response, probe_client_hello,
    verify_server_hello, DomainProfile, HelloShape, VerifyError, PROBE_CONNECTIONS,
};
use mtproxy::protocol::obfuscated2::ClientHandshake;
use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, ClientConfig, SimClient};
use parity::fake_me::FakeMe;
use parity::process::ProxyProcess;
use parity::site::DomainServer;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const CANDIDATE: &str = env!("CARGO_BIN_EXE_mtproto-proxy");
const SECRET: [u8; 16] = [
    0x5e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f,
];
const WAIT: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------------
// Which binaries to run.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rust,
    C,
}

/// This build, then the C build when `MTPROXY_C_BIN` names one.
#[allow(clippy::print_stderr)]
fn binaries() -> Vec<(Kind, PathBuf)> {
    let mut v = vec![(Kind::Rust, PathBuf::from(CANDIDATE))];
    match std::env::var_os("MTPROXY_C_BIN").map(PathBuf::from) {
        Some(p) if p.exists() => v.push((Kind::C, p)),
        _ => eprintln!("MTPROXY_C_BIN not set: fake-TLS scenarios run against this build only"),
    }
    v
}

/// A loopback address of our own for each stand-in domain, so parallel tests (and other
/// test binaries using 127.0.0.1) never share a `:443`.
fn fresh_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        (n / 250) as u8,
        1 + (n % 250) as u8,
    )
}

/// What the domain's real TLS server looks like, probed by the core's own probe functions.
async fn learn_profile(addr: SocketAddr, name: &str) -> DomainProfile {
    let mut facts = Vec::new();
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..PROBE_CONNECTIONS {
        let hello = probe_client_hello(&mut rng, name).unwrap();
        let mut sid = [0u8; 32];
        sid.copy_from_slice(&hello[44..76]);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut buf = Vec::new();
        let f = loop {
            if let Some(f) = parse_probe_response(&buf, &sid).unwrap() {
                break f;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "stand-in closed");
        };
        facts.push(f);
    }
    aggregate_probe_results(&facts).unwrap()
}

/// Whether a ServerHello's application-data size is the one learnt from the domain (our
/// own 20-connection sample may aggregate a byte or two apart from the proxy's), not the
/// 2500..=3619 fallback.
fn learnt(size: usize, profile: &DomainProfile) -> bool {
    let want = usize::from(profile.encrypted_size);
    size + 3 >= want && size <= want + 3
}

// ---------------------------------------------------------------------------------------
// A proxy with a FakeMe and a stand-in domain.

struct Rig {
    kind: Kind,
    me: FakeMe,
    domain: Option<DomainServer>,
    /// The second `-D` domain and its stand-in (`RigOpts::second_domain`).
    second: Option<(String, DomainServer)>,
    /// The stand-in's plain `:80` recorder (`RigOpts::port_80`).
    port_80: Option<DomainServer>,
    name: String,
    domain_ip: Ipv4Addr,
    proxy: ProxyProcess,
}

#[derive(Default)]
struct RigOpts {
    workers: u32,
    /// Do not start the stand-in domain.
    no_domain: bool,
    /// No `-D` at all.
    no_fake_tls: bool,
    client_port: Option<u16>,
    /// Use this `-D` name (and do not start a stand-in).
    domain_name: Option<String>,
    env: Vec<(String, String)>,
    /// A second `-D` domain with its own stand-in.
    second_domain: bool,
    /// A plain recorder on the domain's `:80` too.
    port_80: bool,
}

impl Rig {
    async fn start(kind: Kind, binary: &Path, opts: RigOpts) -> Rig {
        let domain_ip = fresh_ip();
        let name = opts
            .domain_name
            .clone()
            .unwrap_or_else(|| domain_ip.to_string());
        let domain = if opts.no_domain || opts.domain_name.is_some() || opts.no_fake_tls {
            None
        } else {
            Some(
                DomainServer::start(SocketAddr::from((domain_ip, 443)), &name, true)
                    .await
                    .expect("the stand-in domain"),
            )
        };
        let second = if opts.second_domain {
            let ip = fresh_ip();
            let server = DomainServer::start(SocketAddr::from((ip, 443)), &ip.to_string(), true)
                .await
                .expect("the stand-in domain");
            Some((ip.to_string(), server))
        } else {
            None
        };
        let port_80 = if opts.port_80 {
            Some(
                DomainServer::start(SocketAddr::from((domain_ip, 80)), &name, false)
                    .await
                    .expect("the stand-in domain"),
            )
        } else {
            None
        };
        let mut ps = vec![0u8; 128];
        rand::thread_rng().fill_bytes(&mut ps);
        let me = FakeMe::builder().secret(ps.clone()).spawn().await.unwrap();
        let mut b = ProxyProcess::builder(binary)
            .label(match kind {
                Kind::Rust => "rust",
                Kind::C => "c",
            })
            .secrets(&[SECRET])
            .proxy_secret(ps)
            .me_targets(&[(2, me.addr())])
            .workers(opts.workers);
        if !opts.no_fake_tls {
            b = b.extra_args(["-D".to_string(), name.clone()]);
        }
        if let Some((second_name, _)) = &second {
            b = b.extra_args(["-D".to_string(), second_name.clone()]);
        }
        if let Some(p) = opts.client_port {
            b = b.client_port(p);
        }
        for (k, v) in &opts.env {
            b = b.env(k.clone(), v.clone());
        }
        let proxy = b.spawn().await.unwrap();
        proxy.wait_ready(Duration::from_secs(30)).await.unwrap();
        me.wait_live_links(4, Duration::from_secs(20))
            .await
            .unwrap();
        Rig {
            kind,
            me,
            domain,
            second,
            port_80,
            name,
            domain_ip,
            proxy,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.client_addr()
    }

    fn domain(&self) -> &DomainServer {
        self.domain.as_ref().expect("a stand-in domain")
    }

    fn ee(&self, seed: u64, shape: HelloShape) -> ClientConfig {
        ClientConfig::new(Transport::PaddedIntermediate)
            .secret(SECRET)
            .fake_tls(self.name.clone(), shape)
            .seed(seed)
            .timeout(WAIT)
    }

    /// A counter from `/stats` (this build's extra keys).
    async fn counter(&self, key: &str) -> i64 {
        let stats = self.proxy.stats().await.unwrap();
        stats.get(key).and_then(|v| v.parse().ok()).unwrap_or(-1)
    }

    fn ctx(&self, what: &str) -> String {
        let seen = self.domain.as_ref().map(DomainServer::summary);
        format!(
            "{:?} {what}\ndomain saw: {seen:?}\n{}",
            self.kind,
            self.proxy.log_tail(30)
        )
    }
}

/// Sends `bytes` as a prober would (without closing), waits until the domain has received
/// exactly them, then half-closes; returns what came back before EOF and asserts the
/// domain's connection ended with exactly those bytes.
///
/// (C does not relay a connection whose FIN arrives with its first bytes; a prober that
/// waits for the answer is relayed by both builds.)
async fn relayed(rig: &Rig, bytes: &[u8], what: &str) -> Vec<u8> {
    relayed_to(rig, rig.domain(), bytes, what).await
}

/// [`relayed`], to the given stand-in.
async fn relayed_to(rig: &Rig, site: &DomainServer, bytes: &[u8], what: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(rig.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    assert!(
        site.wait_for(WAIT, |b, _| b == bytes).await,
        "{}",
        rig.ctx(&format!("{what}: not relayed"))
    );
    let _ = s.shutdown().await;
    let mut back = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut back)).await;
    assert!(
        site.received_exactly(bytes, WAIT).await,
        "{}",
        rig.ctx(&format!(
            "{what}: the domain did not get exactly the client's bytes"
        ))
    );
    back
}

/// Sends `bytes` and returns what came back before the proxy closed (at most `WAIT`).
async fn refused_quickly(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut back = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut back)).await;
    back
}

/// Puts the HMAC random (with `ts` masked in) into a hello built with any content.
fn sign(mut rec: Vec<u8>, secret: &[u8; 16], ts: i64) -> Vec<u8> {
    rec[11..43].fill(0);
    let mut r = hmac_sha256(secret, &[&rec]);
    for (a, b) in r[28..].iter_mut().zip((ts as i32).to_le_bytes()) {
        *a ^= b;
    }
    rec[11..43].copy_from_slice(&r);
    rec
}

fn hello(name: &str, secret: &[u8; 16], ts: i64, seed: u64) -> (Vec<u8>, [u8; 32]) {
    build_client_hello(
        secret,
        name,
        ts,
        &mut StdRng::seed_from_u64(seed),
        HelloShape::Chrome,
    )
}

/// Sends a hello and reads until the ServerHello verifies (or fails to).
async fn handshake(addr: SocketAddr, rec: &[u8], random: &[u8; 32]) -> Result<usize, String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(rec).await.unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        match verify_server_hello(&buf, random, &SECRET) {
            Ok(Some(info)) => return Ok(info.app_data_len),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err("closed".into()),
            Ok(Ok(_)) => {}
            Err(_) => return Err("timeout".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ee_clients_complete_the_handshake_and_round_trip_through_the_middle_end() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let profile = learn_profile(rig.domain().addr, &rig.name).await;
        // The probe runs in the background here (C: before serving); wait until the
        // ServerHello carries the size learnt from the domain.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seed = 1;
        let mut client = loop {
            let c = SimClient::connect(rig.addr(), rig.ee(seed, HelloShape::Chrome))
                .await
                .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("ee handshake: {e}"))));
            let info = c.server_hello().expect("a verified ServerHello").clone();
            if learnt(info.app_data_len, &profile) {
                assert_eq!(info.cipher_suite, [0x13, 0x01]);
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "{}",
                rig.ctx(&format!(
                    "ServerHello size {} never became the domain's {}",
                    info.app_data_len, profile.encrypted_size
                ))
            );
            seed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut rng = StdRng::seed_from_u64(5);
        for (len, quick_ack) in [(64, true), (3000, false), (40, false)] {
            let payload = encrypted_message(&mut rng, len);
            let ex = client
                .request(&payload, quick_ack)
                .await
                .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("round trip: {e}"))));
            assert_eq!(&ex.answer[..], &payload[..], "{kind:?}");
            assert_eq!(ex.quick_ack.is_some(), quick_ack);
        }
        // The long hello of current Telegram clients (L = 1752) is accepted too.
        let mut long = SimClient::connect(rig.addr(), rig.ee(1000, HelloShape::LongTdlib))
            .await
            .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("long hello: {e}"))));
        let payload = encrypted_message(&mut rng, 128);
        assert_eq!(
            &long.request(&payload, false).await.unwrap().answer[..],
            &payload[..]
        );
        assert!(!rig.me.records().is_empty());
        if kind == Kind::Rust {
            assert!(rig.counter("tls_handshakes").await >= 2);
            assert!(rig.counter("tls_domain_probes_ok").await >= 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_hello_is_fronted_on_another_connection() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let (rec, random) = hello(&rig.name, &SECRET, mtproxy::clock::unix_now(), 42);
        handshake(rig.addr(), &rec, &random)
            .await
            .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("first use: {e}"))));
        // The same hello again, on a new connection: the real domain answers it.
        let back = relayed(&rig, &rec, "replay").await;
        assert_eq!(
            back.get(..3),
            Some(&[0x16, 0x03, 0x03][..]),
            "the domain's ServerHello"
        );
        assert_eq!(
            verify_server_hello(&back, &random, &SECRET),
            Err(VerifyError::BadHmac),
            "{kind:?}: the answer is the real site's, not ours"
        );
        if kind == Kind::Rust {
            assert_eq!(rig.counter("tls_replayed_hellos").await, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_another_worker_is_caught() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(
            kind,
            &bin,
            RigOpts {
                workers: 2,
                ..RigOpts::default()
            },
        )
        .await;
        const REPLAYS: usize = 12;
        let mut passed = 0;
        let mut fronted = 0;
        for i in 0..4u64 {
            let (rec, random) = hello(&rig.name, &SECRET, mtproxy::clock::unix_now(), 500 + i);
            handshake(rig.addr(), &rec, &random)
                .await
                .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("first use: {e}"))));
            // Replays in parallel, so they spread over both workers.
            let addr = rig.addr();
            let tries = (0..REPLAYS / 4).map(|_| {
                let rec = rec.clone();
                async move { handshake(addr, &rec, &random).await }
            });
            for r in futures_join(tries).await {
                match r {
                    Ok(_) => passed += 1,
                    Err(_) => fronted += 1,
                }
            }
        }
        match kind {
            Kind::Rust => assert_eq!(
                (passed, fronted),
                (0, REPLAYS),
                "{}",
                rig.ctx("every replay, whichever worker took it, must be fronted")
            ),
            // C keeps one cache per worker: a replay that lands on the other worker passes.
            // Reported, not asserted (which worker accepts is up to the kernel).
            Kind::C => report(&format!(
                "C -M 2: {passed} of {REPLAYS} replays accepted (per-process cache)"
            )),
        }
    }
}

#[allow(clippy::print_stderr)]
fn report(line: &str) {
    eprintln!("{line}");
}

async fn futures_join<F>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_window_are_fronted() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let now = mtproxy::clock::unix_now();
        for (i, (offset, accepted)) in [(2, true), (-590, true), (10, false), (-700, false)]
            .into_iter()
            .enumerate()
        {
            let (rec, random) = hello(&rig.name, &SECRET, now + offset, 700 + i as u64);
            let r = handshake(rig.addr(), &rec, &random).await;
            assert_eq!(
                r.is_ok(),
                accepted,
                "{}",
                rig.ctx(&format!("timestamp now{offset:+}: {r:?}"))
            );
            if !accepted {
                assert!(
                    rig.domain().wait_for(WAIT, |b, _| b == rec).await,
                    "{}",
                    rig.ctx("not fronted")
                );
            }
        }
        if kind == Kind::Rust {
            assert_eq!(rig.counter("tls_hello_future_timestamp").await, 1);
            assert_eq!(rig.counter("tls_hello_stale_timestamp").await, 1);
        }
    }
}

/// The byte strings of every bad-client class, and the counter each must bump.
fn bad_clients(name: &str) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let now = mtproxy::clock::unix_now();
    let mut rng = StdRng::seed_from_u64(77);
    let mut v = Vec::new();
    v.push((
        "bad HMAC (another secret)",
        hello(name, &[0x42; 16], now, 1).0,
        "tls_hello_bad_hmac",
    ));
    v.push((
        "unknown SNI",
        hello("unknown.example", &SECRET, now, 2).0,
        "tls_hello_unknown_sni",
    ));
    let mut extra = hello(name, &SECRET, now, 3).0;
    extra.push(0x14);
    v.push(("data after the hello", extra, "tls_hello_too_much_data"));
    // A record of 4092 bytes (5 + L > 4096): padding appended after the extensions.
    let mut big = hello(name, &SECRET, now, 4).0;
    big.resize(5 + 4092, 0);
    big[3..5].copy_from_slice(&4092u16.to_be_bytes());
    v.push(("hello longer than 4096", big, "tls_hello_too_big"));
    // A correctly signed hello whose first suite is not TLS 1.3.
    let mut weak = hello(name, &SECRET, now, 5).0;
    let cs = 76 + 2 + 2; // after the length and the GREASE suite
    weak[cs..cs + 6].copy_from_slice(&[0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c]);
    v.push((
        "no TLS 1.3 cipher suite",
        sign(weak, &SECRET, now),
        "tls_hello_bad_cipher_suite",
    ));
    // A plain obfuscated2 dd client with the right secret, and one packet.
    let hs = ClientHandshake::generate(&mut rng, Some(&SECRET), Transport::PaddedIntermediate, 2);
    let mut plain = hs.header.to_vec();
    plain.extend_from_slice(&[0x55; 48]);
    v.push(("plain obfuscated2", plain, "tls_not_tls_connections"));
    v.push((
        "HTTP",
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
        "tls_not_tls_connections",
    ));
    let mut junk = vec![0u8; 300];
    rng.fill_bytes(&mut junk);
    junk[0] = 0x42;
    v.push(("garbage", junk, "tls_not_tls_connections"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_client_is_relayed_byte_for_byte_to_the_domain() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let cases = bad_clients(&rig.name);
        for (what, bytes, counter) in &cases {
            let _ = relayed(&rig, bytes, what).await;
            if kind == Kind::Rust {
                assert!(rig.counter(counter).await >= 1, "{what}: {counter}");
            }
        }
        if kind == Kind::Rust {
            assert_eq!(
                rig.counter("tls_fronted_connections").await,
                cases.len() as i64
            );
            assert_eq!(rig.counter("tls_rejected_hellos").await, 5);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_full_hello_is_relayed_after_10_s() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let (rec, _) = hello(&rig.name, &SECRET, mtproxy::clock::unix_now(), 9);
        let started = Instant::now();
        let mut s = TcpStream::connect(rig.addr()).await.unwrap();
        s.write_all(&rec[..100]).await.unwrap();
        let relayed = rig
            .domain()
            .wait_for(Duration::from_secs(15), |b, _| b == &rec[..100])
            .await;
        let after = started.elapsed();
        assert!(relayed, "{}", rig.ctx("the 10 s timer did not relay"));
        assert!(
            after >= Duration::from_secs(9) && after < Duration::from_secs(13),
            "{kind:?}: relayed after {after:?}"
        );
        // The rest of the hello follows on the relay.
        s.write_all(&rec[100..]).await.unwrap();
        assert!(
            rig.domain().wait_for(WAIT, |b, _| b == rec).await,
            "{}",
            rig.ctx("the rest did not follow")
        );
        s.shutdown().await.unwrap();
        assert!(
            rig.domain().received_exactly(&rec, WAIT).await,
            "{}",
            rig.ctx("the relay did not end with exactly the client's bytes")
        );
        if kind == Kind::Rust {
            assert_eq!(rig.counter("tls_hello_timeouts").await, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_never_relays_to_itself() {
    // -D names the proxy's own listening address: C would connect to itself, relay to
    // itself again, and so on. Not run against C for that reason.
    let rig = Rig::start(
        Kind::Rust,
        Path::new(CANDIDATE),
        RigOpts {
            client_port: Some(443),
            domain_name: Some("127.0.0.1".into()),
            ..RigOpts::default()
        },
    )
    .await;
    for i in 0..3 {
        let mut junk = vec![0x42u8; 64];
        junk[1] = i;
        let started = Instant::now();
        let back = refused_quickly(rig.addr(), &junk).await;
        assert!(back.is_empty());
        assert!(started.elapsed() < Duration::from_secs(3), "closed at once");
    }
    // The background probe of 127.0.0.1:443 reaches us too and is refused the same way.
    let loops = rig.counter("tls_fronting_loops").await;
    assert!(loops >= 3, "loops {loops}");
    assert_eq!(rig.counter("tls_fronted_connections").await, 0);
    let logged = rig
        .proxy
        .log_lines()
        .iter()
        .filter(|l| l.line.contains("fronting loop refused"))
        .count();
    assert_eq!(logged, 1, "{}", rig.ctx("logged once"));
    // The proxy still serves ee clients.
    let mut c = SimClient::connect(rig.addr(), rig.ee(3, HelloShape::Chrome))
        .await
        .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("ee: {e}"))));
    let p = encrypted_message(&mut StdRng::seed_from_u64(1), 64);
    assert_eq!(&c.request(&p, false).await.unwrap().answer[..], &p[..]);
    let _ = rig.domain_ip;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_does_not_wait_for_the_probe_and_the_refresh_learns_the_domain() {
    // C probes once, blocking start-up; not run against C.
    let rig = Rig::start(
        Kind::Rust,
        Path::new(CANDIDATE),
        RigOpts {
            no_domain: true,
            env: vec![("MTPROXY_DOMAIN_PROBE_INTERVAL".into(), "1".into())],
            ..RigOpts::default()
        },
    )
    .await;
    // Nothing listens for the domain: the fallback size (2500..=3619, ±1).
    let c = SimClient::connect(rig.addr(), rig.ee(1, HelloShape::Chrome))
        .await
        .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("fallback ee: {e}"))));
    let size = c.server_hello().unwrap().app_data_len;
    assert!((2499..=3620).contains(&size), "fallback size {size}");
    // The domain comes up; a refresh learns it.
    let domain = DomainServer::start(SocketAddr::from((rig.domain_ip, 443)), &rig.name, true)
        .await
        .expect("the stand-in domain");
    let profile = learn_profile(domain.addr, &rig.name).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seed = 10;
    loop {
        let c = SimClient::connect(rig.addr(), rig.ee(seed, HelloShape::Chrome))
            .await
            .unwrap();
        if learnt(c.server_hello().unwrap().app_data_len, &profile) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", rig.ctx("never refreshed"));
        seed += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.counter("tls_domain_probes_failed").await >= 1);
    assert!(rig.counter("tls_domain_probes_ok").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_obfuscated2_header_gets_silence() {
    // Beyond C (which serves the replay): plain mode, no -D.
    let rig = Rig::start(
        Kind::Rust,
        Path::new(CANDIDATE),
        RigOpts {
            no_fake_tls: true,
            ..RigOpts::default()
        },
    )
    .await;
    let cfg = ClientConfig::new(Transport::PaddedIntermediate)
        .secret(SECRET)
        .seed(31)
        .timeout(Duration::from_secs(2));
    let p = encrypted_message(&mut StdRng::seed_from_u64(2), 64);
    let mut first = SimClient::connect(rig.addr(), cfg.clone()).await.unwrap();
    assert_eq!(&first.request(&p, false).await.unwrap().answer[..], &p[..]);
    // The same seed gives the same header: a replay.
    let mut again = SimClient::connect(rig.addr(), cfg).await.unwrap();
    assert!(
        again.request(&p, false).await.is_err(),
        "a replay is not served"
    );
    assert_eq!(rig.counter("obfs2_replayed_headers").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hello_is_fronted_to_its_sni_domain_and_the_rest_to_the_first() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(
            kind,
            &bin,
            RigOpts {
                second_domain: true,
                ..RigOpts::default()
            },
        )
        .await;
        let (second_name, second) = rig.second.as_ref().unwrap();
        // An ee client of the second domain is served.
        let cfg = ClientConfig::new(Transport::PaddedIntermediate)
            .secret(SECRET)
            .fake_tls(second_name.clone(), HelloShape::Chrome)
            .seed(1)
            .timeout(WAIT);
        let mut c = SimClient::connect(rig.addr(), cfg)
            .await
            .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("second-domain ee: {e}"))));
        let p = encrypted_message(&mut StdRng::seed_from_u64(3), 64);
        assert_eq!(&c.request(&p, false).await.unwrap().answer[..], &p[..]);
        // A forged hello for the second domain goes to the second site...
        let forged = hello(second_name, &[0x42; 16], mtproxy::clock::unix_now(), 2).0;
        relayed_to(&rig, second, &forged, "forged hello, second SNI").await;
        // ...an unknown SNI and a non-TLS client to the first (default) one.
        let unknown = hello("unknown.example", &SECRET, mtproxy::clock::unix_now(), 3).0;
        relayed(&rig, &unknown, "unknown SNI").await;
        relayed(&rig, b"GET / HTTP/1.0\r\n\r\n", "HTTP").await;
        assert!(
            !second.conns().iter().any(|c| c.bytes() == unknown),
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_local_port_80_everything_is_fronted_to_port_80() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(
            kind,
            &bin,
            RigOpts {
                client_port: Some(80),
                port_80: true,
                ..RigOpts::default()
            },
        )
        .await;
        let site = rig.port_80.as_ref().unwrap();
        // Even a valid ee hello: C's port-80 rule comes before the HMAC.
        let (valid, _) = hello(&rig.name, &SECRET, mtproxy::clock::unix_now(), 4);
        relayed_to(&rig, site, &valid, "valid hello on port 80").await;
        relayed_to(
            &rig,
            site,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP on port 80",
        )
        .await;
        if kind == Kind::Rust {
            assert_eq!(rig.counter("tls_port80_connections").await, 1);
            assert_eq!(rig.counter("tls_handshakes").await, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minus_d_without_a_secret_exits_2() {
    let dir = std::env::temp_dir().join(format!("fake-tls-nos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("proxy-multi.conf");
    std::fs::write(&conf, "default 2;\nproxy_for 2 127.0.0.1:1;\n").unwrap();
    for (kind, bin) in binaries() {
        let port = parity::process::free_port().unwrap().to_string();
        let out = tokio::process::Command::new(&bin)
            .args(["-u", "nobody", "-H", &port, "--address", "127.0.0.1"])
            .args(["-D", "127.0.0.1"])
            .arg(&conf)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{kind:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("You must specify at least one mtproto-secret"),
            "{kind:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback relay between a client and the proxy that records what the proxy sends.
async fn tap(proxy: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let upstream = TcpStream::connect(proxy).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
            let _ = uw.shutdown().await;
        });
        let mut b = [0u8; 8192];
        while let Ok(n) = ur.read(&mut b).await {
            if n == 0 {
                break;
            }
            log.lock().unwrap().extend_from_slice(&b[..n]);
            if cw.write_all(&b[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
        let _ = up.await;
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_to_client_records_carry_at_most_1425_bytes() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let (addr, seen) = tap(rig.addr()).await;
        let mut c = SimClient::connect(addr, rig.ee(77, HelloShape::Chrome))
            .await
            .unwrap_or_else(|e| panic!("{}", rig.ctx(&format!("ee: {e}"))));
        let consumed = c.server_hello().unwrap().consumed;
        let mut rng = StdRng::seed_from_u64(8);
        for len in [5000, 1424, 1428, 64] {
            let p = encrypted_message(&mut rng, len);
            assert_eq!(&c.request(&p, true).await.unwrap().answer[..], &p[..]);
        }
        let wire = seen.lock().unwrap().clone();
        let mut pos = consumed;
        let mut records = 0;
        let mut payload = 0;
        while pos < wire.len() {
            assert_eq!(
                &wire[pos..pos + 3],
                &[0x17, 0x03, 0x03],
                "{kind:?} at {pos}"
            );
            let len = usize::from(u16::from_be_bytes([wire[pos + 3], wire[pos + 4]]));
            assert!(len <= 1425, "{kind:?}: a {len}-byte record");
            pos += 5 + len;
            payload += len;
            records += 1;
        }
        assert_eq!(pos, wire.len());
        assert!(records >= 4 + 4, "{kind:?}: {records} records");
        assert!(payload > 5000 + 1424 + 1428 + 64, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_tls_client_whose_inner_header_is_not_dd_is_not_served() {
    for (kind, bin) in binaries() {
        let rig = Rig::start(kind, &bin, RigOpts::default()).await;
        let (rec, random) = hello(&rig.name, &SECRET, mtproxy::clock::unix_now(), 88);
        let mut s = TcpStream::connect(rig.addr()).await.unwrap();
        s.write_all(&rec).await.unwrap();
        let mut buf = Vec::new();
        let info = loop {
            if let Some(info) = verify_server_hello(&buf, &random, &SECRET).unwrap() {
                break info;
            }
            assert!(
                s.read_buf(&mut buf).await.unwrap() > 0,
                "{}",
                rig.ctx("closed")
            );
        };
        assert_eq!(buf.len(), info.consumed);
        // An intermediate (ee-tag) header inside the first record, then one packet.
        let mut rng = StdRng::seed_from_u64(4);
        let mut hs = ClientHandshake::generate(&mut rng, Some(&SECRET), Transport::Intermediate, 2);
        let mut first = hs.header.to_vec();
        let mut frame = 64u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&encrypted_message(&mut rng, 64));
        hs.encrypt.apply(&mut frame);
        first.extend_from_slice(&frame);
        let mut wire = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03];
        wire.extend_from_slice(&(first.len() as u16).to_be_bytes());
        wire.extend_from_slice(&first);
        s.write_all(&wire).await.unwrap();
        let mut back = Vec::new();
        let r = tokio::time::timeout(WAIT, s.read_to_end(&mut back)).await;
        // Nothing reaches the middle end, on either build.
        assert!(rig.me.records().is_empty(), "{kind:?}");
        match kind {
            Kind::Rust => {
                assert!(r.is_ok() && back.is_empty(), "closed without an answer");
                assert_eq!(rig.counter("tls_bad_client_records").await, 1);
            }
            // C splices the rest to the default domain ("Expected random padding mode").
            Kind::C => report(&format!(
                "C, ee tag inside fake TLS: closed={}, domain connections={}",
                r.is_ok(),
                rig.domain().conns().len()
            )),
        }
    }
}
