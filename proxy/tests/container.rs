//! The container path (issue #12), for real wherever a Docker engine answers (CI runs as
//! root with the engine up): the base image from debootstrap (cached after the first run),
//! the candidate image from this build, then
//! * `docker run` of the image under the official image's environment contract, with the
//!   proxy-secret and proxy-multi.conf mounted (no network), serving a simulated client,
//!   printing its tg:// links, and exiting 0 on `docker stop` (SIGTERM to PID 1);
//! * the contract's exit codes (bad secret 1, bad SECRET_COUNT 5) and generated secrets;
//! * a short dual-run in containers (the candidate image against itself: self mode) whose
//!   report names docker, the platform and the image id, and one drill in a container.
//!
//! Where no engine answers (or the base cannot be made: not root), each test says "skip"
//! on stderr and returns.
#![allow(clippy::print_stderr)] // the skips are said plainly

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, ClientConfig, SimClient};
use parity::fake_me::FakeMe;
use parity::image;
use parity::process::{free_port, ProxyProcess};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const CANDIDATE: &str = env!("CARGO_BIN_EXE_mtproto-proxy");
const TAG: &str = "mtproxy-rs:cargo-test";

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The candidate image, built once per test run; `Err` says why the container tests skip.
fn candidate_image() -> Result<String, String> {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let engine = image::engine().map_err(|e| format!("no Docker engine answers: {e:#}"))?;
            eprintln!("container tests: docker {engine}");
            if image::image_id(image::BASE_TAG).is_none()
                && !nix::unistd::Uid::effective().is_root()
            {
                return Err("no base image and not root (debootstrap needs root)".into());
            }
            let base = image::ensure_base(None, &|m| eprintln!("container tests: {m}"))
                .map_err(|e| format!("the base image cannot be made: {e:#}"))?;
            eprintln!(
                "container tests: base {} ({:.1} s{})",
                base.id,
                base.seconds,
                if base.cached { ", cached" } else { "" }
            );
            // A copy without debug information keeps the build context small.
            let bin =
                std::env::temp_dir().join(format!("mtproxy-image-bin-{}", std::process::id()));
            std::fs::copy(CANDIDATE, &bin).map_err(|e| e.to_string())?;
            let _ = Command::new("strip")
                .arg("--strip-debug")
                .arg(&bin)
                .status();
            let built = image::build_image(&project(), &base.tag, &bin, TAG);
            let _ = std::fs::remove_file(&bin);
            let built = built.map_err(|e| format!("{e:#}"))?;
            eprintln!(
                "container tests: candidate image {} ({:.1} s)",
                built.id, built.seconds
            );
            Ok(built.tag)
        })
        .clone()
}

/// The image, or `None` after saying why this test skips. An engine that answers but
/// cannot build the image is a failure, not a skip.
fn image_or_skip(test: &str) -> Option<String> {
    match candidate_image() {
        Ok(t) => Some(t),
        Err(why) if why.starts_with("no Docker engine") || why.contains("not root") => {
            eprintln!("skip: {test}: {why}");
            None
        }
        Err(why) => panic!("{test}: {why}"),
    }
}

/// The container tests share one engine; one at a time keeps them clear of each other.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

fn docker(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch `/data` folder with Telegram's two files pointing at `me`.
fn data_dir(tag: &str, me: &FakeMe, proxy_secret: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtproxy-container-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let routes: Vec<(i16, std::net::SocketAddr)> = (1..=5i16)
        .flat_map(|dc| [(dc, me.addr()), (-dc, me.addr())])
        .collect();
    let conf = ProxyProcess::builder("unused")
        .me_targets(&routes)
        .default_dc(2)
        .multi_conf();
    std::fs::write(dir.join("proxy-multi.conf"), conf).unwrap();
    std::fs::write(dir.join("proxy-secret"), proxy_secret).unwrap();
    dir
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn logs(id: &str) -> String {
    let (_, out, err) = docker(&["logs", id]);
    format!("{out}{err}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only keeps the container tests (each on its own runtime) from overlapping.
#[allow(clippy::await_holding_lock)]
async fn the_image_serves_a_client_with_a_secret_and_mounted_files() {
    let Some(image) = image_or_skip("the_image_serves_a_client") else {
        return;
    };
    let _one = serial();
    let mut proxy_secret = vec![0u8; 128];
    rand::thread_rng().fill_bytes(&mut proxy_secret);
    let me = FakeMe::builder()
        .secret(proxy_secret.clone())
        .spawn()
        .await
        .unwrap();
    let data = data_dir("serve", &me, &proxy_secret);
    let secret = [0x3cu8; 16];
    let (port, stats) = (free_port().unwrap(), free_port().unwrap());
    let (code, out, err) = docker(&[
        "run",
        "-d",
        "--network",
        "host",
        "--platform",
        "linux/amd64",
        "-v",
        &format!("{}:/data", data.display()),
        "-e",
        &format!("SECRET={}", hex::encode(secret)),
        "-e",
        "EXTERNAL_IP=127.0.0.1",
        "-e",
        "INTERNAL_IP=127.0.0.1",
        "-e",
        &format!("PORT={port}"),
        "-e",
        &format!("STATS_PORT={stats}"),
        "-e",
        "WORKERS=1",
        &image,
    ]);
    assert_eq!(code, 0, "docker run: {err}");
    let c = Container(out.trim().to_string());
    // Ready: the ME links are up (the one worker's four).
    if let Err(e) = me.wait_handshakes(4, Duration::from_secs(30)).await {
        panic!("the container is not serving: {e:#}\n{}", logs(&c.0));
    }
    let text = logs(&c.0);
    assert!(
        text.contains(&format!(
            "tg://proxy?server=127.0.0.1&port={port}&secret={}",
            hex::encode(secret)
        )),
        "no tg:// link in the output:\n{text}"
    );
    assert!(
        text.contains("Using the provided /data/proxy-secret"),
        "{text}"
    );
    let mut rng = StdRng::seed_from_u64(4);
    for (i, t) in [
        Transport::Intermediate,
        Transport::Abridged,
        Transport::PaddedIntermediate,
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = ClientConfig::new(t)
            .secret(secret)
            .dc(2)
            .seed(i as u64)
            .timeout(Duration::from_secs(10));
        let mut client = SimClient::connect(([127, 0, 0, 1], port).into(), cfg)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", logs(&c.0)));
        let p = encrypted_message(&mut rng, 64);
        let ex = client.request(&p, false).await.unwrap();
        assert_eq!(ex.answer[..], p[..], "{t:?}: the echo differs");
    }
    // PID 1 is the proxy: SIGTERM drains and exits 0, well before docker's SIGKILL.
    let t = Instant::now();
    let (code, _, err) = docker(&["stop", "-t", "20", &c.0]);
    assert_eq!(code, 0, "{err}");
    let stopped = t.elapsed();
    let (_, exit, _) = docker(&["inspect", "-f", "{{.State.ExitCode}}", &c.0]);
    assert_eq!(
        exit.trim(),
        "0",
        "exit status after docker stop:\n{}",
        logs(&c.0)
    );
    assert!(
        stopped < Duration::from_secs(15),
        "docker stop took {stopped:?}"
    );
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn the_image_contract_exit_codes_and_generated_secrets() {
    let Some(image) = image_or_skip("the_image_contract") else {
        return;
    };
    let _one = serial();
    let data =
        std::env::temp_dir().join(format!("mtproxy-container-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let mount = format!("{}:/data", data.display());
    let run = |env: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "host", "-v", &mount];
        for e in env {
            args.extend(["-e", e]);
        }
        args.push(&image);
        docker(&args)
    };
    let (code, out, _) = run(&["SECRET=nothex"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[F] Bad secret format"), "{out}");
    let (code, out, _) = run(&["SECRET_COUNT=17"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("between 1 and 16"), "{out}");
    // Three generated secrets, saved in /data/secret, and their links printed. The mounted
    // config is broken on purpose, so the proxy stops at once (exit 1) and nothing goes
    // out to the network.
    std::fs::write(data.join("proxy-multi.conf"), "this is not a config\n").unwrap();
    std::fs::write(data.join("proxy-secret"), [7u8; 128]).unwrap();
    let net = ["EXTERNAL_IP=127.0.0.1", "INTERNAL_IP=127.0.0.1"];
    let (code, out, _) = run(&["SECRET_COUNT=3", net[0], net[1]]);
    assert!(out.contains("Will generate 3 random ones"), "{out}");
    let saved = std::fs::read_to_string(data.join("secret")).unwrap();
    let saved: Vec<&str> = saved.trim().split(',').collect();
    assert_eq!(saved.len(), 3, "{saved:?}");
    for s in &saved {
        assert!(
            s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            "{s}"
        );
        assert!(
            out.contains(&format!("tg://proxy?server=127.0.0.1&port=443&secret={s}")),
            "{out}"
        );
    }
    assert_eq!(
        code, 1,
        "the broken config stops the proxy with exit 1: {out}"
    );
    // Next time, the saved secrets are reused.
    let (_, out, _) = run(&[net[0], net[1]]);
    assert!(out.contains("Using the secret in /data/secret"), "{out}");
    assert!(out.contains(saved[2]), "{out}");
    let _ = std::fs::remove_dir_all(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only keeps the container tests (each on its own runtime) from overlapping.
#[allow(clippy::await_holding_lock)]
async fn a_dual_run_a_drill_and_an_upgrade_rehearsal_in_containers() {
    let Some(image) = image_or_skip("a_dual_run_in_containers") else {
        return;
    };
    let _one = serial();
    let out =
        std::env::temp_dir().join(format!("mtproxy-container-dualrun-{}", std::process::id()));
    let mut o = parity::dualrun::DualrunOptions::new(Path::new(CANDIDATE));
    o.reference_from_env = false;
    o.workload = Some(
        parity::workload::WorkloadSpec::new(11)
            .load_requests(300)
            .untagged_requests(60)
            .workers_requests(80)
            .fake_tls_requests(60)
            .canary_sessions(3),
    );
    o.noise_baseline = false;
    o.out_dir = out.clone();
    o.driver = Some(Arc::new(parity::driver::SimDriver::default()));
    o.divergences = Some(project().join("parity/divergences.json"));
    o.runtime =
        parity::runtime::Runtime::Docker(parity::runtime::DockerImages::new(None, image.clone()));
    let report = parity::dualrun::run(o)
        .await
        .expect("the container dual-run runs");
    assert!(report.verdict.pass, "{:?}", report.verdict.reasons);
    assert_eq!(report.runtime, "docker");
    assert_eq!(report.platform.as_deref(), Some("linux/amd64"));
    assert!(report.engine.is_some());
    let id = image::image_id(&image).unwrap();
    assert_eq!(
        report.candidate.sha256.as_deref(),
        Some(id.trim_start_matches("sha256:"))
    );
    let schema = project().join("artifacts/dualrun/schema.json");
    parity::report::validate_against_schema(&out.join("dualrun-report.json"), &schema).unwrap();
    let _ = std::fs::remove_dir_all(&out);

    // One drill with the proxy in a container.
    let mut target =
        parity::subject::Subject::new("candidate", parity::runtime::DEFAULT_IMAGE_BINARY);
    target.image = Some(image.clone());
    let target_image = image;
    let dout = std::env::temp_dir().join(format!("mtproxy-container-drill-{}", std::process::id()));
    let said: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = said.clone();
    let report = drills::report::run(drills::report::RunOptions {
        candidate: target,
        reference: None,
        only: vec!["burst".into()],
        settings: drills::Settings::new(drills::Scale::Tiny, 1),
        out_dir: dout.clone(),
        progress: Some(Arc::new(move |m: &str| {
            s2.lock().unwrap().push(m.to_string())
        })),
    })
    .await
    .unwrap();
    assert_eq!(report.exit_code(), 0, "{}", report.table());
    let _ = std::fs::remove_dir_all(dout);

    // The port's upgrade from one container to another (the handover socket's folder is
    // mounted into both; the listening sockets pass between them).
    let cout =
        std::env::temp_dir().join(format!("mtproxy-container-cutover-{}", std::process::id()));
    let image = target_image;
    let report = tokio::task::spawn_blocking(move || {
        drills::cutover::run_blocking(drills::cutover::CutoverOptions {
            candidate: PathBuf::from(CANDIDATE),
            reference: None,
            scale: drills::Scale::Tiny,
            only: vec!["upgrade_port".into()],
            out_dir: cout,
            candidate_env: Vec::new(),
            isolate: true,
            images: Some(drills::cutover::CutoverImages {
                candidate: image,
                reference: None,
            }),
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.runtime, "docker");
    assert_eq!(report.platform.as_deref(), Some("linux/amd64"));
    assert!(report.images.contains_key("candidate"));
    let step = &report.steps[0];
    assert_eq!(step.result, "PASS", "{}", report.table());
    let m = step.metrics.as_ref().unwrap();
    assert!(
        m.served_by.get("old").copied().unwrap_or(0) > 0
            && m.served_by.get("new").copied().unwrap_or(0) > 0
    );
}
