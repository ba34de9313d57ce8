//! What operators read: the links logged at start-up, the `--check` self-check against local
//! stand-ins (a fake middle end, a TLS site, ports in use), and snapshots of the human-facing
//! text (usage, the `/stats` key list, the links, the self-check output).

#![allow(clippy::print_stderr)] // what is not exercised on this machine is said plainly

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use parity::fake_me::FakeMe;
use parity::process::{free_port, ProxyProcess, Signal};
use parity::site::{loopback_ip, DomainServer};

const BIN: &str = env!("CARGO_BIN_EXE_mtproto-proxy");
const SECRETS: [[u8; 16]; 2] = [[0x5a; 16], [0xc3; 16]];

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("mtproxy-operator-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `mtproto-proxy --check …`, bounded: (exit code, stdout).
async fn check(args: &[String]) -> (i32, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .arg("--check")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("--check finished within 60 s")
    .unwrap();
    assert!(
        out.stderr.is_empty(),
        "--check wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The output with what differs between runs and machines replaced by names.
fn normalize(out: &str, subs: &[(&str, &str)]) -> String {
    let mut text = out.to_string();
    for (from, to) in subs {
        text = text.replace(from, to);
    }
    text.lines()
        .map(|l| {
            // Limits and users are the machine's.
            for what in ["descriptors: ", "user: ", "proxy-secret: "] {
                if let Some(i) = l.find(what) {
                    return format!("{}{what}<machine>", &l[..i]);
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn base_args(conf: &str, secret: &str, port: u16, stats: u16) -> Vec<String> {
    let mut a: Vec<String> = [
        "-u",
        "nobody",
        "-p",
        &stats.to_string(),
        "--http-stats",
        "-H",
        &port.to_string(),
        "--address",
        "127.0.0.1",
        "--aes-pwd",
        secret,
        "-c",
        "1024",
        "--public-host",
        "proxy.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in SECRETS {
        a.extend(["-S".to_string(), hex::encode(s)]);
    }
    a.push(conf.to_string());
    a
}

/// Every check passes against stand-ins: a fake middle end accepting TCP, a TLS 1.3 site on
/// a loopback `:443` for `-D`, free ports, a well-formed config and proxy-secret.
#[tokio::test]
async fn the_self_check_passes_against_working_stand_ins() {
    let dir = Scratch::new("pass");
    let me = FakeMe::builder()
        .secret(vec![7u8; 128])
        .spawn()
        .await
        .unwrap();
    let conf = dir.file(
        "proxy-multi.conf",
        format!(
            "default 2;\nproxy_for 2 {};\nproxy_for -2 {};\n",
            me.addr(),
            me.addr()
        )
        .as_bytes(),
    );
    let secret = dir.file("proxy-secret", &[7u8; 128]);
    let (port, stats) = (free_port().unwrap(), free_port().unwrap());
    let mut args = base_args(&conf, &secret, port, stats);
    let site_ip = loopback_ip(61);
    // Port 443 needs root (CI runs as root); without it the domain check is left out.
    let site = DomainServer::start(SocketAddr::from((site_ip, 443)), &site_ip.to_string(), true)
        .await
        .ok();
    if site.is_some() {
        args.splice(0..0, ["-D".to_string(), site_ip.to_string()]);
    } else {
        eprintln!("note: cannot bind {site_ip}:443 (not root): the domain check is not exercised");
    }
    let (code, out) = check(&args).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("check passed\n"), "{out}");
    for l in out.lines().filter(|l| l.starts_with('[')) {
        assert!(l.starts_with("[ OK ]"), "not OK: {l}\n{out}");
    }
    let me_addr = me.addr().to_string();
    let text = normalize(
        &out,
        &[
            (&conf, "<dir>/proxy-multi.conf"),
            (&me_addr, "<fake-me>"),
            (&format!("{site_ip}"), "<site>"),
            (&format!(":{port} "), ":<port> "),
            (&format!("port {port}:"), "port <port>:"),
            (&format!(":{stats} "), ":<stats> "),
            (&format!("port {stats}:"), "port <stats>:"),
        ],
    );
    if site.is_some() {
        insta::assert_snapshot!("self_check_pass", text);
    }
}

/// Each broken part fails its own line, and the exit status is 1: a client port in use, a
/// proxy-secret too short, a middle end that refuses, a `-D` domain with no site.
#[tokio::test]
async fn the_self_check_fails_where_it_should() {
    let dir = Scratch::new("fail");
    let closed = free_port().unwrap();
    let me = SocketAddr::from((Ipv4Addr::LOCALHOST, closed));
    let conf = dir.file(
        "proxy-multi.conf",
        format!("default 2;\nproxy_for 2 {me};\n").as_bytes(),
    );
    let secret = dir.file("proxy-secret", &[7u8; 16]);
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let stats = free_port().unwrap();
    let nowhere = loopback_ip(62);
    let mut args = base_args(&conf, &secret, port, stats);
    args.splice(0..0, ["-D".to_string(), nowhere.to_string()]);
    let (code, out) = check(&args).await;
    assert_eq!(code, 1, "{out}");
    let status = |what: &str| {
        out.lines()
            .find(|l| l.get(7..).is_some_and(|r| r.starts_with(what)))
            .map(|l| l[..6].to_string())
            .unwrap_or_else(|| panic!("no line for {what}:\n{out}"))
    };
    assert_eq!(status(&format!("port {port}")), "[FAIL]", "{out}");
    assert_eq!(status("proxy-secret"), "[FAIL]");
    assert_eq!(status(&format!("middle end {me}")), "[FAIL]");
    assert_eq!(status(&format!("domain {nowhere}")), "[FAIL]");
    assert_eq!(status("nat"), "[SKIP]");
    assert_eq!(status("config"), "[ OK ]");
    assert!(out.ends_with("check failed: 4 of 11 checks\n"), "{out}");
    drop(taken);

    // A config that does not parse fails as start-up would, in C's words.
    let bad = dir.file("bad.conf", b"proxy_for 2 127.0.0.1:1\n");
    let (code, out) = check(&base_args(&bad, &secret, free_port().unwrap(), stats)).await;
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .any(|l| l.starts_with("[FAIL] config:") && l.contains("config check failed!")),
        "{out}"
    );
}

/// The links are logged at start-up for every secret and mode, with the `--public-host`
/// address; the secrets appear in no other line, even at the highest verbosity.
#[tokio::test]
async fn links_are_logged_at_start_up_and_secrets_nowhere_else() {
    let proxy_secret = vec![9u8; 128];
    let me = FakeMe::builder()
        .secret(proxy_secret.clone())
        .spawn()
        .await
        .unwrap();
    let p = ProxyProcess::builder(BIN)
        .secrets(&SECRETS)
        .proxy_secret(proxy_secret)
        .me_targets(&[(2, me.addr()), (-2, me.addr())])
        .extra_args(["--public-host", "proxy.example", "-vvv"])
        .spawn()
        .await
        .unwrap();
    p.wait_ready(Duration::from_secs(20)).await.unwrap();
    let port = p.client_addr().port();
    let _ = p.stats().await.unwrap();
    p.stop(Signal::SIGTERM).await.unwrap();
    let lines: Vec<String> = p.log_lines().into_iter().map(|l| l.line).collect();
    let links: Vec<String> = lines
        .iter()
        .filter_map(|l| l.find("link for secret").map(|i| l[i..].to_string()))
        .collect();
    // 2 secrets × (plain, dd) × (tg://, https://t.me).
    assert_eq!(links.len(), 8, "{lines:#?}");
    let text = links
        .join("\n")
        .replace(&format!("port {port}"), "port <port>")
        .replace(&format!("port={port}"), "port=<port>");
    insta::assert_snapshot!("start_up_links", text);
    for s in SECRETS {
        let hex = hex::encode(s);
        for l in lines.iter().filter(|l| l.contains(&hex)) {
            assert!(l.contains("link for secret"), "a secret in a log line: {l}");
        }
    }
}

/// The usage text is C's, byte for byte (a change shows up here first).
#[test]
fn usage_text_snapshot() {
    insta::assert_snapshot!(
        "usage",
        mtproxy::config::cli::usage_text("mtproto-proxy")
            .replace(&mtproxy::config::cli::version_line(), "<version>")
    );
}

/// The `/stats` keys in their order: dashboards and scripts of C operators key on them.
#[test]
fn stats_key_list_snapshot() {
    let body = mtproxy::stats::Snapshot::default().render_stats();
    let keys: Vec<&str> = body
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(k, _)| k))
        .collect();
    insta::assert_snapshot!("stats_keys", keys.join("\n"));
}

/// `-6`: clients over IPv6 (and IPv4 on the same dual-stack socket) reach a middle end that
/// is itself on IPv6 (`proxy_for 2 [::1]:port;`), all on `::1`; the middle end sees each
/// client's own address.
#[tokio::test]
async fn ipv6_clients_and_an_ipv6_middle_end() {
    use mtproxy::protocol::transport::Transport;
    use parity::client::{encrypted_message, ClientConfig, SimClient};
    use rand::SeedableRng;
    let any6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    if std::net::TcpListener::bind(any6).is_err() {
        eprintln!("note: no IPv6 loopback on this machine: the IPv6 test is not exercised");
        return;
    }
    let dir = Scratch::new("ipv6");
    let proxy_secret = vec![4u8; 128];
    let me = FakeMe::builder()
        .secret(proxy_secret.clone())
        .bind(any6)
        .spawn()
        .await
        .unwrap();
    assert!(me.addr().is_ipv6());
    let conf = dir.file(
        "proxy-multi.conf",
        format!("default 2;\nproxy_for 2 {};\n", me.addr()).as_bytes(),
    );
    let secret_file = dir.file("proxy-secret", &proxy_secret);
    let (port, stats) = (free_port().unwrap(), free_port().unwrap());
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "-u",
            "nobody",
            "-6",
            "-H",
            &port.to_string(),
            "-p",
            &stats.to_string(),
        ])
        .args(["--http-stats", "-c", "1024", "--aes-pwd", &secret_file])
        .args(["-S", &hex::encode(SECRETS[0]), &conf])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready: the stats page answers and a middle-end link is up on the proxy's side (the
    // fake middle end's count can run ahead of it). Polled, bounded by 20 s.
    let stats_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, stats));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = parity::process::fetch_stats(stats_addr, Duration::from_secs(2))
            .await
            .ok()
            .and_then(|s| s.get("ready_outbound_connections")?.parse::<u32>().ok())
            .is_some_and(|n| n >= 1);
        if ready {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the proxy exited");
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready within 20 s"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), child.wait()).await;
    }
    let at6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let at4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    for (n, addr) in [at6, at4].into_iter().enumerate() {
        // Readiness: the listener accepts (bounded by the client's own timeout and 20 tries).
        let mut client = None;
        for _ in 0..20 {
            let cfg = ClientConfig::new(Transport::Intermediate)
                .secret(SECRETS[0])
                .dc(2)
                .seed(n as u64);
            match SimClient::connect(addr, cfg).await {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => {
                    assert!(child.try_wait().unwrap().is_none(), "the proxy exited");
                    let _ = tokio::time::timeout(Duration::from_millis(100), child.wait()).await;
                }
            }
        }
        let mut c = client.unwrap_or_else(|| panic!("{addr} never accepted"));
        let p = encrypted_message(&mut rng, 64);
        let ex = c.request(&p, false).await.unwrap();
        assert_eq!(ex.answer[..], p[..], "echo through {addr}");
        let rec = me
            .wait_records(n + 1, Duration::from_secs(10))
            .await
            .unwrap();
        let last = rec.last().unwrap();
        assert_eq!(
            last.client.ip(),
            addr.ip(),
            "the client address the middle end saw"
        );
        assert_eq!(last.proxy.port(), port);
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
