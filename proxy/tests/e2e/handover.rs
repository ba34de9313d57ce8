//! Zero-downtime upgrade (`--handover-socket`, issue #11): a new process started with the
//! running one's command line takes its listening sockets over; the old one stops
//! accepting, keeps relaying for its established clients until they leave, and exits 0.
//! A new binary that fails, or is never ready, leaves the old one serving.
//!
//! C cannot hand over (it passes no descriptors); these run against the candidate only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, SimClient};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::process::{Child, Command};

use crate::support::{candidate, note, num, poll, Rig, Scratch, Setup, LINKS_PER_TARGET};

const WAIT: Duration = Duration::from_secs(20);
const DRAIN: &str = "6";

/// A second proxy with the running one's command line (plus `env`), logging to a file.
fn start_new(
    rig: &Rig,
    dir: &Scratch,
    name: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, PathBuf)> {
    start_with_args(rig.proxy.binary(), rig.proxy.args(), dir, name, env)
}

fn start_with_args(
    binary: &Path,
    args: &[String],
    dir: &Scratch,
    name: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, PathBuf)> {
    let log = dir.join(&format!("{name}.log"));
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok((cmd.spawn()?, log))
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// One connect + round trip (the FakeMe echoes) + close.
async fn served(rig: &Rig, seed: u64) -> anyhow::Result<()> {
    let t = [
        Transport::Intermediate,
        Transport::Abridged,
        Transport::PaddedIntermediate,
    ][seed as usize % 3];
    let mut c = SimClient::connect(rig.addr(), rig.cfg(t, 2, seed))
        .await
        .with_context(|| format!("new client {seed}: connect"))?;
    echo(&mut c, seed).await?;
    c.close().await;
    Ok(())
}

async fn echo(c: &mut SimClient, seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let p = encrypted_message(&mut rng, 48 + (seed as usize % 5) * 16);
    let ex = c
        .request(&p, false)
        .await
        .with_context(|| format!("client {seed}: round trip"))?;
    ensure!(ex.answer[..] == p[..], "client {seed}: the echo differs");
    Ok(())
}

fn rig_setup(workers: u32, extra: &[String]) -> Setup {
    Setup {
        workers,
        handshakes_per_me: LINKS_PER_TARGET * workers.max(1) as usize,
        extra_args: extra.to_vec(),
        ..Setup::default()
    }
}

fn handover_args(sock: &Path, more: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--handover-socket".to_string(),
        sock.display().to_string(),
        "--drain-timeout".to_string(),
        DRAIN.to_string(),
    ];
    a.extend(more.iter().map(|s| (*s).to_string()));
    a
}

/// The upgrade under traffic: a long-lived client keeps its old process until it leaves;
/// new clients are served all along; the old process exits 0 as soon as its last client
/// left (well before the drain deadline); the new one owns the client and stats ports.
async fn upgrade_under_traffic(workers: u32) -> anyhow::Result<()> {
    let dir = Scratch::new("handover")?;
    let sock = dir.join("handover.sock");
    let rig = Rig::start(&candidate(), rig_setup(workers, &handover_args(&sock, &[]))).await?;
    let old = rig.proxy.pid();
    let mut long = rig.client(Transport::PaddedIntermediate, 2, 7).await?;
    echo(&mut long, 7).await?;

    let started = tokio::time::Instant::now();
    let (mut new, new_log) = start_new(&rig, &dir, "new", &[])?;
    let mut seed = 100u64;
    // New clients and the long one's round trips, until the old process has handed over.
    loop {
        served(&rig, seed).await.with_context(|| read(&new_log))?;
        echo(&mut long, seed)
            .await
            .context("the long-lived client during the swap")?;
        seed += 1;
        if rig.proxy.log_tail(60).contains("handed over") {
            break;
        }
        if let Some(st) = new.try_wait()? {
            bail!("the new process exited ({st}): {}", read(&new_log));
        }
        ensure!(
            started.elapsed() < WAIT,
            "no handover within {WAIT:?}: {}",
            read(&new_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handed = started.elapsed();
    // The old process keeps relaying for its established client.
    for i in 0..5 {
        echo(&mut long, 1000 + i)
            .await
            .context("the long-lived client after the handover")?;
        served(&rig, seed + i).await?;
    }
    ensure!(
        rig.proxy.exit_info().is_none(),
        "the old process left while it still had a client"
    );
    let left = tokio::time::Instant::now();
    long.close().await;
    let exit = rig
        .proxy
        .wait_exit(WAIT)
        .await
        .context("the old process did not exit after its last client left")?;
    let drained_in = left.elapsed();
    ensure!(exit.code == Some(0), "the old process exited {exit:?}");
    ensure!(
        drained_in < Duration::from_secs(DRAIN.parse::<u64>()?),
        "the old process waited for the drain deadline ({drained_in:?}) although its clients had left"
    );
    note(&format!(
        "handover -M {workers}: new process ready and old one retired {handed:?} after start; old exited {drained_in:?} after its last client left"
    ));
    // The new process serves the client port and `/stats`.
    for i in 0..6 {
        served(&rig, 5000 + i).await?;
    }
    let stats = rig.stats().await?;
    let new_pid = new.id().context("new pid")?;
    ensure!(
        num(&stats, "pid")? == i64::from(new_pid),
        "/stats answered by pid {} (new is {new_pid}, old was {old})",
        num(&stats, "pid")?
    );
    ensure!(
        read(&new_log).contains("handover complete"),
        "{}",
        read(&new_log)
    );
    // And is itself upgradable: the handover socket came with it.
    ensure!(sock.exists(), "the handover socket is gone");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let st = tokio::time::timeout(WAIT, new.wait()).await??;
    ensure!(st.code() == Some(0), "the new process exited {st}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_without_workers_keeps_every_client() {
    upgrade_under_traffic(0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_with_workers_keeps_every_client() {
    upgrade_under_traffic(2).await.unwrap();
}

/// New binaries that fail: one that dies after taking the sockets, one that is never
/// ready in time (3 s late; the old gives up after `--handover-timeout` 1 s), one whose config is broken. The
/// old process serves throughout, and a good upgrade afterwards still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_new_binary_leaves_the_old_one_serving() {
    let run = async {
        let dir = Scratch::new("handover-fail")?;
        let sock = dir.join("handover.sock");
        let rig = Rig::start(
            &candidate(),
            rig_setup(0, &handover_args(&sock, &["--handover-timeout", "1"])),
        )
        .await?;
        let mut long = rig.client(Transport::Intermediate, 2, 3).await?;
        echo(&mut long, 3).await?;
        let cases = [
            (
                "dies",
                ("MTPROXY_TEST_HANDOVER_DIE", "1"),
                "planted failure",
            ),
            (
                "stalls",
                ("MTPROXY_TEST_HANDOVER_STALL", "3"),
                "handover not confirmed",
            ),
        ];
        let mut seed = 10u64;
        for (name, env, says) in cases {
            let (mut new, log) = start_new(&rig, &dir, name, &[env])?;
            // Clients keep being served while the new one fails.
            let st = loop {
                served(&rig, seed)
                    .await
                    .with_context(|| format!("while the new one {name}"))?;
                echo(&mut long, seed).await?;
                seed += 1;
                if let Some(st) = new.try_wait()? {
                    break st;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            ensure!(st.code() == Some(1), "a new binary that {name} exited {st}");
            ensure!(read(&log).contains(says), "{name}: {}", read(&log));
            rig.alive()?;
            if name == "stalls" {
                ensure!(
                    rig.proxy.log_tail(60).contains("was not ready within"),
                    "the old process did not say it gave up: {}",
                    rig.proxy.log_tail(20)
                );
            }
        }
        // A broken config: the new binary stops before it talks to the old one.
        let bad = dir.join("bad.conf");
        std::fs::write(&bad, "proxy_for 2 nonsense;\n")?;
        let mut args = rig.proxy.args().to_vec();
        let conf = rig.proxy.conf_path().display().to_string();
        for a in &mut args {
            if *a == conf {
                *a = bad.display().to_string();
            }
        }
        let (mut new, log) = start_with_args(rig.proxy.binary(), &args, &dir, "badconf", &[])?;
        let st = tokio::time::timeout(WAIT, new.wait()).await??;
        ensure!(
            st.code() == Some(1),
            "a new binary with a broken config exited {st}: {}",
            read(&log)
        );
        for i in 0..3 {
            served(&rig, 900 + i).await?;
            echo(&mut long, 950 + i).await?;
        }
        rig.alive()?;
        ensure!(
            !rig.proxy.log_tail(200).contains("handed over"),
            "the old process retired"
        );
        // A good one still takes over.
        let (mut new, log) = start_new(&rig, &dir, "good", &[])?;
        long.close().await;
        let exit = rig
            .proxy
            .wait_exit(WAIT)
            .await
            .with_context(|| read(&log))?;
        ensure!(exit.code == Some(0), "old exited {exit:?}");
        served(&rig, 4242).await?;
        let _ = new.start_kill();
        anyhow::Ok(())
    };
    run.await.unwrap();
}

/// The planted regression the cutover gate must catch also shows here: with
/// `MTPROXY_TEST_HANDOVER_CUT` the old process closes its clients at the handover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cut_at_handover_closes_the_established_client() {
    let run = async {
        let dir = Scratch::new("handover-cut")?;
        let sock = dir.join("handover.sock");
        let mut setup = rig_setup(0, &handover_args(&sock, &[]));
        setup.env = vec![("MTPROXY_TEST_HANDOVER_CUT".into(), "1".into())];
        let rig = Rig::start(&candidate(), setup).await?;
        let mut long = rig.client(Transport::Intermediate, 2, 5).await?;
        echo(&mut long, 5).await?;
        let (_new, log) = start_new(&rig, &dir, "new", &[])?;
        poll("the handover", WAIT, || {
            rig.proxy.log_tail(60).contains("handed over").then_some(())
        })
        .await
        .with_context(|| read(&log))?;
        ensure!(
            long.closed_within(Duration::from_secs(3)).await,
            "the planted cut did not close the established client"
        );
        anyhow::Ok(())
    };
    run.await.unwrap();
}

/// systemd socket activation: the client port comes as fd 3 with `LISTEN_PID`/
/// `LISTEN_FDS` (as `systemd-socket-activate` passes it). The proxy serves on it without
/// binding (the test keeps its own copy open, so a bind of that port would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activation_serves_on_the_passed_socket() {
    use std::os::fd::AsRawFd;
    let run = async {
        let dir = Scratch::new("systemd")?;
        let rig = Rig::start(&candidate(), rig_setup(0, &[])).await?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        nix::fcntl::fcntl(
            listener.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        let stats_port = parity::process::free_port()?;
        let mut args = rig.proxy.args().to_vec();
        for i in 1..args.len() {
            match args[i - 1].as_str() {
                "-H" => args[i] = addr.port().to_string(),
                "-p" => args[i] = stats_port.to_string(),
                _ => {}
            }
        }
        let log = dir.join("activated.log");
        let script = format!(
            "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\" 3<&{}",
            listener.as_raw_fd()
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(rig.proxy.binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        poll("the activated proxy's main loop", WAIT, || {
            read(&log).contains("main loop").then_some(())
        })
        .await
        .with_context(|| read(&log))?;
        ensure!(
            read(&log).contains("listening sockets from systemd"),
            "{}",
            read(&log)
        );
        ensure!(child.try_wait()?.is_none(), "{}", read(&log));
        drop(listener);
        // A middle-end link is up on its side: a packet that arrives before that is
        // dropped, as C drops it.
        poll("the activated proxy's middle-end link", WAIT, || {
            read(&log)
                .contains("connected to RPC middle-end")
                .then_some(())
        })
        .await
        .with_context(|| read(&log))?;
        let mut rng = StdRng::seed_from_u64(9);
        for seed in 0..3u64 {
            let mut c = SimClient::connect(addr, rig.cfg(Transport::Intermediate, 2, seed)).await?;
            let p = encrypted_message(&mut rng, 64);
            let ex = c.request(&p, false).await?;
            ensure!(ex.answer[..] == p[..], "echo differs");
            c.close().await;
        }
        let _ = child.start_kill();
        anyhow::Ok(())
    };
    run.await.unwrap();
}
