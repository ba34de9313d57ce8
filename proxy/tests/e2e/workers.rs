//! `-M 2` (§7): the candidate respawns a killed worker; C's master exits 1 instead
//! (divergence: the candidate's supervisor is a deliberate improvement).

use std::time::Duration;

use anyhow::{ensure, Context};
use mtproxy::protocol::transport::Transport;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parity::client::encrypted_message;
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{
    children_of, each_subject, num, poll, Rig, Scratch, Setup, LINKS_PER_TARGET, SECRET,
};

const WORKERS: usize = 2;

async fn killed_worker(subject: &Subject) -> anyhow::Result<()> {
    // C's master opens its own links too (§5.1), the candidate's master does not.
    let processes_with_links = if subject.is_candidate() {
        WORKERS
    } else {
        WORKERS + 1
    };
    let links = LINKS_PER_TARGET * processes_with_links;
    let rig = Rig::start(
        subject,
        Setup {
            workers: WORKERS as u32,
            handshakes_per_me: links,
            ..Setup::default()
        },
    )
    .await?;
    let pid = rig.proxy.pid();
    let s = rig
        .wait_stats("workers 2", Duration::from_secs(10), |s| {
            num(s, "workers").is_ok_and(|v| v == WORKERS as i64)
        })
        .await?;
    let _ = s;
    let kids = poll("two worker processes", Duration::from_secs(10), || {
        let k = children_of(pid);
        (k.len() == WORKERS).then_some(k)
    })
    .await
    .with_context(|| rig.ctx("workers"))?;
    let victim = kids[0];
    let before = rig.me().handshakes();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL)?;

    if subject.is_reference() {
        // C: "Child N terminated, aborting" — the master SIGTERMs the rest and exits 1.
        let exit = rig.proxy.wait_exit(Duration::from_secs(10)).await;
        ensure!(
            exit.is_some_and(|e| e.code == Some(1)),
            "{}",
            rig.ctx(&format!(
                "C's master was expected to exit 1 when a worker is killed (no respawn; the \
                 candidate's respawn is a documented divergence), got {:?}",
                exit.map(|e| e.class())
            ))
        );
        return Ok(());
    }

    let replaced = poll("a replacement worker", Duration::from_secs(15), || {
        let k = children_of(pid);
        (k.len() == WORKERS && !k.contains(&victim)).then_some(k)
    })
    .await
    .with_context(|| rig.ctx("respawn"))?;
    rig.step(
        "the replacement's ME links",
        rig.me()
            .wait_handshakes(before + LINKS_PER_TARGET, Duration::from_secs(15)),
    )
    .await?;
    let s = rig
        .wait_stats(
            "worker_restarts >= 1 and every worker ready",
            Duration::from_secs(15),
            |s| {
                num(s, "worker_restarts").is_ok_and(|v| v >= 1)
                    && num(s, "ready_outbound_connections").is_ok_and(|v| v >= links as i64)
                    && num(s, "workers").is_ok_and(|v| v == WORKERS as i64)
            },
        )
        .await?;
    let _ = s;
    // Clients land on either worker; every one must echo.
    let mut rng = StdRng::seed_from_u64(16);
    for i in 0..8u64 {
        let t = [Transport::Intermediate, Transport::Abridged][i as usize % 2];
        let mut c = rig.client(t, 2, 160 + i).await?;
        let p = encrypted_message(&mut rng, 64 + 4 * i as usize);
        let ex = rig
            .step(
                &format!("client {i} after the respawn"),
                c.request(&p, i % 2 == 0),
            )
            .await?;
        ensure!(ex.answer[..] == p[..], "client {i}: echo differs");
    }
    ensure!(
        children_of(pid) == replaced,
        "workers changed again while serving: {:?} → {:?}",
        replaced,
        children_of(pid)
    );
    rig.alive()
}

/// Scenario 16: `-M 2` reports `workers 2`; a SIGKILLed worker is replaced, clients still
/// echo and `worker_restarts` counts it. C exits 1 instead (asserted as it stands).
#[tokio::test]
async fn killed_worker_is_respawned() {
    each_subject("killed_worker_is_respawned", |t| async move {
        killed_worker(&t).await
    })
    .await;
}

/// Starts `-M 2` with its output on pipes, waits until master and workers reached their
/// main loop, closes the pipes (whoever read the output is gone), SIGKILLs the master and
/// waits for the workers to exit.
async fn orphaned_workers(subject: &Subject) -> anyhow::Result<()> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = Scratch::new("orphans")?;
    let conf = dir.join("proxy-multi.conf");
    let secret = dir.join("proxy-secret");
    // Nothing listens on port 1: the ME links are refused, which keeps this loopback-only.
    std::fs::write(&conf, "default 2;\nproxy_for 2 127.0.0.1:1;\n")?;
    std::fs::write(&secret, [0x42u8; 128])?;
    let port = parity::process::free_port()?;
    let mut child = tokio::process::Command::new(&subject.binary)
        .args(["-u", "nobody", "-c", "4096", "-H", &port.to_string()])
        .args(["--address", "127.0.0.1", "-S", &hex::encode(SECRET)])
        .arg("--aes-pwd")
        .arg(&secret)
        .arg(&conf)
        .args(["-M", &WORKERS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("master pid")?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(15), async {
        let mut loops = 0;
        while let Some(l) = lines.next_line().await? {
            loops += usize::from(l.contains("main loop"));
            seen.push(l);
            if loops > WORKERS {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("output ended before every process reached its main loop")
    })
    .await;
    let kids = children_of(pid);
    let cleanup = |kids: &[u32]| {
        for k in kids {
            let _ = kill(Pid::from_raw(*k as i32), Signal::SIGKILL);
        }
    };
    if !matches!(up, Ok(Ok(()))) || kids.len() != WORKERS {
        cleanup(&kids);
        anyhow::bail!(
            "{}: -M {WORKERS} did not come up ({up:?}, children {kids:?}):\n{}",
            subject.name(),
            seen.join("\n")
        );
    }
    // The reader of the output goes away, then the master dies.
    drop(lines);
    drop(child.stdout.take());
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    let _ = child.wait().await;
    let gone = poll(
        "the orphaned workers exiting",
        Duration::from_secs(15),
        || {
            kids.iter()
                .all(|k| !std::path::Path::new(&format!("/proc/{k}")).exists())
                .then_some(())
        },
    )
    .await;
    cleanup(&kids);
    gone.with_context(|| {
        format!(
            "{}: workers {kids:?} outlived their SIGKILLed master (output pipes closed)",
            subject.name()
        )
    })
}

/// Workers exit when their master is killed, even when their stderr is a broken pipe
/// (regression: a failed log write panicked the candidate's control task, so the worker
/// never noticed and kept serving the port as an orphan).
#[tokio::test]
async fn workers_exit_when_the_master_is_killed() {
    each_subject("workers_exit_when_the_master_is_killed", |t| async move {
        orphaned_workers(&t).await
    })
    .await;
}
