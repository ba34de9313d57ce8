//! `cargo xtask fuzz`: seed, run and minimize the cargo-fuzz targets of `fuzz/`.
//!
//! * `--seed` writes the inputs of `vectors/data/*.json` (and a few built-in ones) into
//!   `fuzz/corpus/<target>/`, one file per input named after its content hash; nothing
//!   is run.
//! * otherwise every target (or each `--target NAME`) runs for `--minutes` CPU-minutes
//!   each with `cargo fuzz run -s none` (no sanitizer: works on the stable toolchain),
//!   then its corpus is minimized with `cargo fuzz cmin`. The time is CPU time, not wall
//!   time: the target is built first (its compile time is not counted), then run in
//!   slices of libFuzzer's wall-clock `-max_total_time` until the CPU time its processes
//!   used (`cutime + cstime` of `/proc/self/stat`, which counts waited-for descendants)
//!   reaches the goal, so a run on a busy machine gets its full share. A table reports
//!   per target the CPU and wall time, the runs, the corpus size after minimizing and the
//!   crashes (their inputs are left in
//!   `fuzz/artifacts/<target>/`, which is not committed). Exit 1 on any crash. A
//!   corpus over [`MAX_CORPUS_FILES`] files after minimizing is cut down to that many.
//!
//! The target bodies are `fuzz/src/lib.rs`; `proxy/tests/fuzz_corpus.rs` replays the
//! committed corpus through them under `cargo test`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::workspace::project_root;

/// Seed, run and minimize the fuzz targets.
#[derive(Debug, clap::Args)]
pub(crate) struct Fuzz {
    /// Write the vectors' inputs into fuzz/corpus/ and stop.
    #[arg(long)]
    seed: bool,
    /// CPU-minutes per target (fractions allowed: 0.5 is 30 seconds).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Run only these targets (file names of fuzz/fuzz_targets/ without `.rs`; repeat
    /// the option for several).
    #[arg(long)]
    target: Vec<String>,
    /// Skip the `cargo fuzz cmin` step after each run.
    #[arg(long)]
    no_minimize: bool,
}

/// Which vector fields seed which targets, and the bytes put before each input (the
/// targets that read a selector or a chunk size from their first bytes).
struct Seeding {
    family: &'static str,
    fields: &'static [&'static str],
    target: &'static str,
    prefixes: &'static [&'static [u8]],
}

const NONE: &[&[u8]] = &[b""];
const CHUNK: &[&[u8]] = &[&[0x3f], &[0x06]];
const TRANSPORT: &[&[u8]] = &[&[0, 0x3f], &[1, 0x3f], &[2, 0x3f], &[2, 0x02]];
const FRAME: &[&[u8]] = &[&[0, 0x3f], &[1, 0x3f], &[2, 0x3f], &[3, 0x3f], &[4, 0x05]];

const SEEDING: &[Seeding] = &[
    Seeding {
        family: "fake_tls_client_hello",
        fields: &["record", "bytes"],
        target: "fake_tls_client_hello",
        prefixes: NONE,
    },
    Seeding {
        family: "fake_tls_client_hello",
        fields: &["record", "bytes"],
        target: "fake_tls_sni",
        prefixes: NONE,
    },
    Seeding {
        family: "fake_tls_client_hello",
        fields: &["record", "bytes"],
        target: "fake_tls_classify",
        prefixes: NONE,
    },
    Seeding {
        family: "fake_tls_client_hello",
        fields: &["record", "bytes"],
        target: "fake_tls_records",
        prefixes: CHUNK,
    },
    Seeding {
        family: "fake_tls_client_hello",
        fields: &["record", "bytes"],
        target: "session_tls",
        prefixes: CHUNK,
    },
    Seeding {
        family: "fake_tls_server_hello",
        fields: &["response"],
        target: "fake_tls_probe_response",
        prefixes: CHUNK,
    },
    Seeding {
        family: "transport",
        fields: &["input", "wire"],
        target: "transport_server",
        prefixes: TRANSPORT,
    },
    Seeding {
        family: "transport",
        fields: &["input", "wire"],
        target: "transport_client",
        prefixes: TRANSPORT,
    },
    Seeding {
        family: "packet_rules",
        fields: &["payload"],
        target: "packet_classify",
        prefixes: NONE,
    },
    Seeding {
        family: "session",
        fields: &["input"],
        target: "session_plain",
        prefixes: CHUNK,
    },
    Seeding {
        family: "rpc_frames",
        fields: &["wire", "plaintext"],
        target: "rpc_frame",
        prefixes: FRAME,
    },
    Seeding {
        family: "rpc_messages",
        fields: &["payload", "message"],
        target: "rpc_message",
        prefixes: NONE,
    },
    Seeding {
        family: "rpc_messages",
        fields: &["payload", "message"],
        target: "rpc_handshake",
        prefixes: NONE,
    },
    Seeding {
        family: "rpc_messages",
        fields: &["payload", "message"],
        target: "rpc_link_client",
        prefixes: &[&[0], &[1]],
    },
    Seeding {
        family: "obfuscated2",
        fields: &["header", "random"],
        target: "obfuscated2_header",
        prefixes: NONE,
    },
    Seeding {
        family: "multi_conf",
        fields: &["text"],
        target: "multi_conf",
        prefixes: NONE,
    },
];

/// Inputs with no vector family: argv (NUL-separated) and HTTP request heads.
const BUILT_IN: &[(&str, &[u8])] = &[
    ("cli", b"-u\x00nobody\x00-p\x008888\x00-H\x00443\x00-S\x000123456789abcdef0123456789abcdef\x00--aes-pwd\x00proxy-secret\x00proxy-multi.conf"),
    ("cli", b"-H\x00443\x00-D\x00www.google.com\x00-S\x000123456789abcdef0123456789abcdef\x00-M\x002\x00--http-stats\x00proxy-multi.conf"),
    ("cli", b"-h"),
    ("cli", b"--address\x00127.0.0.1\x00-R\x00-P\x000123456789abcdef0123456789abcdef\x00-c\x00100\x00--nat-info\x0010.0.0.1:1.2.3.4\x00x.conf"),
    ("stats_http_head", b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("stats_http_head", b"GET /metrics HTTP/1.0\n\n"),
    ("stats_http_head", b"POST /stats HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
];

impl Fuzz {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = project_root();
        let fuzz_dir = root.join("fuzz");
        let targets = self.targets(&fuzz_dir)?;
        if self.seed {
            return seed(&root, &fuzz_dir, &targets);
        }
        if !cargo_fuzz_installed() {
            bail!(
                "cargo-fuzz is missing: install it with `cargo install cargo-fuzz --locked` \
                 (then `cargo xtask fuzz` again)"
            );
        }
        let seconds = (self.minutes * 60.0).round().max(1.0) as u64;
        let mut rows = Vec::new();
        for t in &targets {
            rows.push(self.run_one(&fuzz_dir, t, seconds)?);
        }
        println!(
            "{:<26} {:>7} {:>7} {:>12} {:>9} {:>8}",
            "target", "cpu_s", "wall_s", "runs", "corpus", "crashes"
        );
        for r in &rows {
            println!(
                "{:<26} {:>7} {:>7} {:>12} {:>9} {:>8}",
                r.target,
                r.cpu_seconds,
                r.seconds,
                r.runs.map_or_else(|| "?".into(), |n| n.to_string()),
                r.corpus,
                r.crashes.len()
            );
        }
        let crashes: Vec<&PathBuf> = rows.iter().flat_map(|r| &r.crashes).collect();
        if crashes.is_empty() {
            println!("no crash");
            Ok(())
        } else {
            for c in &crashes {
                println!("crash input: {}", c.display());
            }
            bail!("{} crashing input(s) under fuzz/artifacts/", crashes.len())
        }
    }

    /// The targets to handle: all of `fuzz/fuzz_targets/`, or the ones asked for.
    fn targets(&self, fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut all: Vec<String> = std::fs::read_dir(fuzz_dir.join("fuzz_targets"))
            .context("reading fuzz/fuzz_targets")?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect();
        all.sort();
        if self.target.is_empty() {
            return Ok(all);
        }
        for t in &self.target {
            if !all.contains(t) {
                bail!("no fuzz target {t} (targets: {})", all.join(", "));
            }
        }
        Ok(self.target.clone())
    }

    fn run_one(&self, fuzz_dir: &Path, target: &str, seconds: u64) -> anyhow::Result<Row> {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let artifacts = fuzz_dir.join("artifacts").join(target);
        let before = list_files(&artifacts);
        println!("== {target}: {seconds} CPU-seconds");
        let status = Command::new("cargo")
            .current_dir(fuzz_dir)
            .args(["fuzz", "build", "-s", "none", target])
            .status()
            .context("running cargo fuzz build")?;
        if !status.success() {
            bail!("cargo fuzz build {target} failed ({status})");
        }
        let started = Instant::now();
        let ticks = clock_ticks();
        let cpu0 = children_cpu_seconds(ticks)?;
        // Failing inputs this run left (slow-unit notes are not failures).
        let new_failures = || -> Vec<PathBuf> {
            list_files(&artifacts)
                .into_iter()
                .filter(|p| !before.contains(p) && is_failure(p))
                .collect()
        };
        let mut log = String::new();
        let mut runs = None;
        let mut ok = true;
        loop {
            let used = children_cpu_seconds(ticks)? - cpu0;
            let left = seconds.saturating_sub(used.floor() as u64);
            if left == 0 || !ok {
                break;
            }
            // libFuzzer's limit is wall-clock: on a busy machine a slice gets less CPU,
            // and the loop runs another one for what is left.
            let out = Command::new("cargo")
                .current_dir(fuzz_dir)
                .args(["fuzz", "run", "-s", "none", target])
                .arg(&corpus)
                .arg("--")
                .arg(format!("-max_total_time={}", left.max(10)))
                .arg("-timeout=10")
                .arg("-print_final_stats=1")
                .stdout(Stdio::inherit())
                .stderr(Stdio::piped())
                .output()
                .context("running cargo fuzz run")?;
            let slice = String::from_utf8_lossy(&out.stderr).into_owned();
            if let Some(n) = runs_of(&slice) {
                runs = Some(runs.unwrap_or(0) + n);
            }
            ok = out.status.success();
            log = slice;
            // A failed run that left no failing input is a failure of the tool.
            if !ok && new_failures().is_empty() {
                eprintln!("{log}");
                bail!("cargo fuzz run {target} failed ({})", out.status);
            }
        }
        let cpu_seconds = (children_cpu_seconds(ticks)? - cpu0).round() as u64;
        let elapsed = started.elapsed().as_secs();
        let crashes = new_failures();
        if !ok {
            // Show the panic message with the crash.
            for line in log
                .lines()
                .filter(|l| l.contains("panicked") || l.contains("Test unit written"))
            {
                println!("{target}: {line}");
            }
        }
        if !self.no_minimize {
            let status = Command::new("cargo")
                .current_dir(fuzz_dir)
                .args(["fuzz", "cmin", "-s", "none", target])
                .arg(&corpus)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running cargo fuzz cmin")?;
            if !status.success() {
                bail!("cargo fuzz cmin {target} failed ({status})");
            }
        }
        let dropped = cap_corpus(&corpus, MAX_CORPUS_FILES)?;
        if dropped > 0 {
            println!("{target}: {dropped} corpus file(s) over {MAX_CORPUS_FILES} removed");
        }
        Ok(Row {
            target: target.to_string(),
            cpu_seconds,
            seconds: elapsed,
            runs,
            corpus: list_files(&corpus).len(),
            crashes,
        })
    }
}

/// One target's outcome.
struct Row {
    target: String,
    /// CPU time of the fuzzing processes.
    cpu_seconds: u64,
    /// Wall-clock time of the runs.
    seconds: u64,
    runs: Option<u64>,
    corpus: usize,
    crashes: Vec<PathBuf>,
}

/// The most files a committed corpus keeps per target (the replay under `cargo test`
/// must stay fast and the repository small).
const MAX_CORPUS_FILES: usize = 300;

/// Keeps the first `max` files of `dir` by name (names are content hashes, so this is a
/// stable pseudo-random sample) and removes the others; returns how many were removed.
fn cap_corpus(dir: &Path, max: usize) -> anyhow::Result<usize> {
    let mut files = list_files(dir);
    files.sort();
    let extra = files.get(max..).unwrap_or_default();
    for f in extra {
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    Ok(extra.len())
}

/// Whether a file libFuzzer left in `artifacts/` is a failing input (crash, timeout,
/// out-of-memory, leak) rather than a `slow-unit-*` note (an input that took long: a
/// stopped or starved process also leaves one; it is not a failure).
fn is_failure(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with("slow-unit-"))
}

/// The CPU time (user + system, seconds) of this process's waited-for descendants:
/// fields 16 and 17 (`cutime`, `cstime`) of `/proc/self/stat`, in clock ticks
/// ([`clock_ticks`] per second).
fn children_cpu_seconds(ticks_per_second: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    children_cpu_of(&stat, ticks_per_second).context("parsing /proc/self/stat")
}

/// `cutime + cstime` of a `/proc/<pid>/stat` line, in seconds.
fn children_cpu_of(stat: &str, ticks_per_second: f64) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted from
    // after its last ')'; field 3 is the first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let cutime: f64 = fields.get(16 - 3)?.parse().ok()?;
    let cstime: f64 = fields.get(17 - 3)?.parse().ok()?;
    Some((cutime + cstime) / ticks_per_second)
}

/// `getconf CLK_TCK`, or Linux's usual 100.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cargo_fuzz_installed() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The run count from libFuzzer's final stats (`stat::number_of_executed_units: N`) or
/// its `Done N runs` line.
fn runs_of(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        if let Some(n) = l.strip_prefix("stat::number_of_executed_units:") {
            return n.trim().parse().ok();
        }
        l.strip_prefix("Done ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the seeds of [`SEEDING`] and [`BUILT_IN`] for `targets`.
fn seed(root: &Path, fuzz_dir: &Path, targets: &[String]) -> anyhow::Result<()> {
    let mut written = std::collections::BTreeMap::<&str, usize>::new();
    let mut put = |target: &'static str, data: &[u8]| -> anyhow::Result<()> {
        if !targets.iter().any(|t| t == target) {
            return Ok(());
        }
        let dir = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        let mut h = DefaultHasher::new();
        data.hash(&mut h);
        std::fs::write(dir.join(format!("seed-{:016x}", h.finish())), data)?;
        *written.entry(target).or_default() += 1;
        Ok(())
    };
    for s in SEEDING {
        let path = root.join("vectors/data").join(format!("{}.json", s.family));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)?;
        let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
        let text_input = s.target == "multi_conf";
        for v in &vectors {
            for field in s.fields {
                for value in strings_of(&v[*field]) {
                    let Some(bytes) = (if text_input {
                        Some(value.as_bytes().to_vec())
                    } else {
                        unhex(value)
                    }) else {
                        continue;
                    };
                    for prefix in s.prefixes {
                        let mut data = prefix.to_vec();
                        data.extend_from_slice(&bytes);
                        put(s.target, &data)?;
                    }
                }
            }
        }
    }
    for (target, data) in BUILT_IN {
        put(target, data)?;
    }
    for (target, n) in &written {
        println!("{target}: {n} seed(s) written");
    }
    Ok(())
}

/// The strings in a JSON value: itself, or the strings of an array (one level).
fn strings_of(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// Lower- or upper-case hex to bytes; `None` if `s` is not hex.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_runs_parse() {
        assert_eq!(unhex("00ff1A"), Some(vec![0, 0xff, 0x1a]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(
            runs_of("#9 DONE\nDone 1234 runs in 2 second(s)\n"),
            Some(1234)
        );
        assert_eq!(runs_of("stat::number_of_executed_units: 77\n"), Some(77));
    }

    #[test]
    fn slow_units_are_not_failures() {
        assert!(!is_failure(Path::new("a/slow-unit-7404cd")));
        assert!(is_failure(Path::new("a/crash-7404cd")));
        assert!(is_failure(Path::new("a/timeout-7404cd")));
        assert!(is_failure(Path::new("a/oom-1")));
    }

    #[test]
    fn children_cpu_is_fields_16_and_17_after_the_command_name() {
        // A command name with a space and a ')' in it; utime 5, stime 6, cutime 700,
        // cstime 300 (ticks).
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 700 300 20 0 1 0 9 1 1";
        assert_eq!(children_cpu_of(stat, 100.0), Some(10.0));
        assert_eq!(children_cpu_of("42 (x) S 1", 100.0), None);
        assert!(children_cpu_seconds(clock_ticks()).is_ok_and(|s| s >= 0.0));
    }
}
