//! `-M 2 -u nobody -l FILE`, the command line operators run (issue #18): workers log to
//! FILE whatever user they run as, SIGUSR1 after a rotation creates FILE again (also in a
//! directory only root may write) and every process writes to it, a respawned worker logs
//! there too, and workers that cannot start make the master exit 1 with their error.
//!
//! Run as root (as CI does), the workers become `nobody` and the log lies in a root-owned
//! 0755 directory; as another user `-u` has no effect, and a note says so.
//!
//! C, as it stands (divergence `log-file-from-start`): without `-d` C does not open FILE
//! at start-up (its lines go to stderr) and opens it only on SIGUSR1, by path, in every
//! process as the `-u` user, so in a root-only directory no FILE appears and logging goes
//! to /dev/null.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use mtproxy::protocol::transport::Transport;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, Uid};
use parity::client::encrypted_message;
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{
    candidate, children_of, each_subject, note, poll, Rig, Scratch, Setup, LINKS_PER_TARGET,
};

const WORKERS: usize = 2;
const WAIT: Duration = Duration::from_secs(15);

/// Whether `file` holds a line written by process `pid` (C and we both start lines with
/// `[pid]`).
fn has_line_of(file: &Path, pid: u32) -> bool {
    let tag = format!("[{pid}]");
    std::fs::read_to_string(file).is_ok_and(|t| t.lines().any(|l| l.starts_with(&tag)))
}

/// Every client of a few transports gets its echo.
async fn clients_echo(rig: &Rig, seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..6u64 {
        let t = [
            Transport::Intermediate,
            Transport::Abridged,
            Transport::PaddedIntermediate,
        ][i as usize % 3];
        let mut c = rig.client(t, 2, seed + i).await?;
        let p = encrypted_message(&mut rng, 64 + 4 * i as usize);
        let ex = rig
            .step(&format!("client {i}"), c.request(&p, i % 2 == 0))
            .await?;
        ensure!(ex.answer[..] == p[..], "client {i}: echo differs");
    }
    Ok(())
}

async fn operators_command_line(subject: &Subject) -> anyhow::Result<()> {
    let root = Uid::effective().is_root();
    let dir = Scratch::new("worker-log")?;
    // A directory only root may write (when we are root).
    let logs = dir.join("logs");
    std::fs::create_dir(&logs)?;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755))?;
    let file = logs.join("proxy.log");
    // The fixture passes `-u nobody` (without effect unless we are root).
    let args = vec!["-l".to_string(), file.display().to_string()];
    if !root {
        note("not root: -u nobody has no effect; the log directory is writable by this user");
    }
    let processes_with_links = if subject.is_candidate() {
        WORKERS
    } else {
        WORKERS + 1
    };
    let rig = Rig::start(
        subject,
        Setup {
            workers: WORKERS as u32,
            handshakes_per_me: LINKS_PER_TARGET * processes_with_links,
            extra_args: args,
            ..Setup::default()
        },
    )
    .await?;
    let master = rig.proxy.pid();
    let kids = poll("two worker processes", WAIT, || {
        let k = children_of(master);
        (k.len() == WORKERS).then_some(k)
    })
    .await
    .with_context(|| rig.ctx("workers"))?;
    clients_echo(&rig, 100).await?;

    if subject.is_reference() {
        ensure!(
            !file.exists(),
            "C was expected not to open -l FILE before SIGUSR1 without -d"
        );
        rig.proxy.signal(Signal::SIGUSR1)?;
        // Each C process handles the signal and reopens by path as nobody.
        poll("C's workers handling SIGUSR1", WAIT, || {
            let text = rig.proxy.log_tail(200);
            kids.iter()
                .all(|k| text.contains(&format!("[pid {k}]")))
                .then_some(())
        })
        .await
        .with_context(|| rig.ctx("SIGUSR1"))?;
        if root {
            ensure!(
                !file.exists(),
                "C as nobody was expected to fail to create FILE in a root-only directory"
            );
        }
        clients_echo(&rig, 200).await?;
        return rig.alive();
    }

    // Every process writes to FILE: the master and both workers.
    poll(
        "lines of the master and of every worker in FILE",
        WAIT,
        || {
            std::iter::once(master)
                .chain(kids.iter().copied())
                .all(|p| has_line_of(&file, p))
                .then_some(())
        },
    )
    .await
    .with_context(|| rig.ctx(&format!("log file {}", file.display())))?;

    // logrotate: move FILE away, SIGUSR1; a new FILE gets lines from every process.
    let rotated = logs.join("proxy.log.1");
    std::fs::rename(&file, &rotated)?;
    rig.proxy.signal(Signal::SIGUSR1)?;
    poll("a new FILE with every process's lines", WAIT, || {
        std::iter::once(master)
            .chain(kids.iter().copied())
            .all(|p| has_line_of(&file, p))
            .then_some(())
    })
    .await
    .with_context(|| rig.ctx("after SIGUSR1"))?;
    let before = std::fs::read_to_string(&rotated)?.len();
    clients_echo(&rig, 300).await?;

    // A SIGKILLed worker is respawned and its replacement logs to the same FILE.
    kill(Pid::from_raw(kids[0] as i32), Signal::SIGKILL)?;
    let replaced = poll("a replacement worker", WAIT, || {
        let k = children_of(master);
        (k.len() == WORKERS && !k.contains(&kids[0])).then_some(k)
    })
    .await
    .with_context(|| rig.ctx("respawn"))?;
    let fresh = replaced
        .iter()
        .copied()
        .find(|p| !kids.contains(p))
        .context("the new worker's pid")?;
    poll("the replacement's lines in FILE", WAIT, || {
        has_line_of(&file, fresh).then_some(())
    })
    .await
    .with_context(|| rig.ctx("replacement logging"))?;
    rig.wait_stats("a ready replacement", WAIT, |s| {
        crate::support::num(s, "worker_restarts").is_ok_and(|v| v >= 1)
            && crate::support::num(s, "ready_outbound_connections")
                .is_ok_and(|v| v >= (LINKS_PER_TARGET * WORKERS) as i64)
    })
    .await?;
    clients_echo(&rig, 400).await?;
    let s = rig.proxy.stats().await?;
    ensure!(
        s.get("log_write_failures").map(String::as_str) == Some("0"),
        "log_write_failures = {:?}",
        s.get("log_write_failures")
    );
    ensure!(
        std::fs::read_to_string(&rotated)?.len() == before,
        "the rotated file was still written after SIGUSR1"
    );
    rig.alive()
}

/// The operators' `-M 2 -u nobody -l FILE` serves clients; FILE receives lines from every
/// process, again after a rotation with SIGUSR1, and from a respawned worker.
#[tokio::test]
async fn workers_with_user_and_log_file_serve_and_log() {
    each_subject(
        "workers_with_user_and_log_file_serve_and_log",
        |t| async move { operators_command_line(&t).await },
    )
    .await;
}

/// A worker that fails at start-up, again and again, is a configuration error: the
/// master exits 1 and says the worker's own error (candidate only: the failure is planted
/// through a debug-build switch; C's master exits 1 when any worker dies).
#[tokio::test]
async fn workers_that_cannot_start_stop_the_master() {
    const PLANTED: &str = "planted start-up failure for the test";
    let subject = candidate();
    let dir = Scratch::new("worker-fail").expect("scratch dir");
    let file = dir.join("proxy.log");
    let proxy = parity::process::ProxyProcess::builder(&subject.binary)
        .label("candidate")
        .secrets(&[crate::support::SECRET])
        .me_targets(&[(2, "127.0.0.1:1".parse().expect("addr"))])
        .workers(WORKERS as u32)
        .extra_args(["-l".to_string(), file.display().to_string()])
        .env("MTPROXY_TEST_WORKER_FAIL", PLANTED)
        .spawn()
        .await
        .expect("spawn");
    // Three failed starts with a 1 s and a 2 s backoff between them.
    let exit = proxy.wait_exit(Duration::from_secs(30)).await;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        exit.as_ref().is_some_and(|e| e.code == Some(1)),
        "the master should exit 1 when its workers cannot start, got {:?}\n{text}",
        exit.map(|e| e.class())
    );
    assert!(
        text.lines()
            .any(|l| l.contains("fatal: workers cannot start") && l.contains(PLANTED)),
        "the master's last word should carry the worker's error:\n{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("worker failed to start") && l.contains(PLANTED))
            .count()
            >= 3,
        "each failed start should be logged with the worker's error:\n{text}"
    );
}

/// A log that cannot be written (`-l /dev/full`: every write fails with ENOSPC) never
/// stops the service: clients are served, the failures are counted in `/stats`
/// `log_write_failures`, and stderr says so (candidate only: C writes nothing to FILE
/// before SIGUSR1).
#[tokio::test]
async fn an_unwritable_log_is_counted_and_never_stops_the_service() {
    let subject = candidate();
    let rig = Rig::start(
        &subject,
        Setup {
            workers: WORKERS as u32,
            handshakes_per_me: LINKS_PER_TARGET * WORKERS,
            extra_args: vec!["-l".into(), "/dev/full".into()],
            ..Setup::default()
        },
    )
    .await
    .expect("-M 2 -l /dev/full starts");
    clients_echo(&rig, 500).await.expect("clients served");
    let s = rig
        .wait_stats("log_write_failures > 0", WAIT, |s| {
            crate::support::num(s, "log_write_failures").is_ok_and(|v| v > 0)
        })
        .await
        .expect("failures counted");
    let _ = s;
    let said = poll("the failure said on stderr", WAIT, || {
        rig.proxy
            .log_lines()
            .iter()
            .any(|l| l.line.contains("cannot write to log file /dev/full"))
            .then_some(())
    })
    .await;
    assert!(said.is_ok(), "{}", rig.proxy.log_tail(20));
    rig.alive().expect("still running");
}
