//! The systemd units shipped in `dist/systemd/`:
//! * `systemd-analyze verify` accepts them (with `ExecStart=` pointed at this build), with
//!   no warning about them;
//! * `systemd-analyze security --offline=true` rates both services "OK" or better, with an
//!   exposure of at most 2.5 (they reach 2.1 and 2.2 with systemd 252; see the README
//!   there);
//! * the unit files hold the settings the README there describes (hardening, capability
//!   sets, drain and stop timeout, open-file limit, the handover socket's directory, the
//!   socket unit's ports matching the service's `-H` and `-p`);
//! * the socket unit's sockets, passed the way systemd passes them (`LISTEN_FDS`, in the
//!   unit's order), serve this build run with the service's own command line: clients and
//!   `/stats` on the inherited sockets, exit 0 on the unit's stop signal.
//!
//! Where `systemd-analyze` is missing, its two tests say "skipped" on stderr and return
//! (CI installs it: `.ci/run`). A client-only activation run is also part of
//! `tests/e2e/handover.rs`.
#![allow(clippy::print_stderr)] // the skips are said plainly

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program path in the shipped `ExecStart=` lines.
const INSTALLED: &str = "/usr/local/bin/mtproto-proxy";
/// This build.
const BUILT: &str = env!("CARGO_BIN_EXE_mtproto-proxy");
/// The unit files, by file name.
const UNITS: [&str; 3] = [
    "mtproto-proxy.service",
    "mtproto-proxy.socket",
    "mtproto-proxy@.service",
];
/// The worst exposure `systemd-analyze security` may give either service (0–10): the
/// units reach 2.1 (socket-activated) and 2.2 (handover slot) with systemd 252.
const MAX_EXPOSURE: f64 = 2.5;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd")
}

fn unit_text(name: &str) -> String {
    let path = unit_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A unit file: section → key → every value given, in order.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Reads a unit file (systemd's INI dialect: `#`/`;` comments, `\` continuations; a key
/// may repeat).
fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line:?}"));
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a [String] {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map_or(&[], Vec::as_slice)
}

/// The one value of `key` (the last one, as systemd takes it), which must be there.
fn value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    values(unit, section, key)
        .last()
        .unwrap_or_else(|| panic!("[{section}] {key}= is missing"))
}

/// Splits a command line or an assignment list into words, honouring double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// The `Environment=` defaults of a service.
fn environment(unit: &Unit) -> BTreeMap<String, String> {
    values(unit, "Service", "Environment")
        .iter()
        .flat_map(|line| words(line))
        .filter_map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The service's `ExecStart=` as systemd runs it with its default environment: `$VAR`
/// becomes the variable's words, `${VAR}` its value as one word.
fn exec_start(unit: &Unit) -> Vec<String> {
    let env = environment(unit);
    let lookup = |name: &str| {
        env.get(name)
            .unwrap_or_else(|| panic!("ExecStart uses {name}, which Environment= does not set"))
            .clone()
    };
    words(value(unit, "Service", "ExecStart"))
        .into_iter()
        .flat_map(|w| {
            if let Some(name) = w.strip_prefix("${").and_then(|n| n.strip_suffix('}')) {
                vec![lookup(name)]
            } else if let Some(name) = w.strip_prefix('$') {
                words(&lookup(name))
            } else {
                vec![w]
            }
        })
        .collect()
}

/// The value following `option` in a command line.
fn option<'a>(argv: &'a [String], option: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == option)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|e| panic!("{v:?} is not a number of seconds: {e}"))
}

/// A private scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mtproxy-systemd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `systemd-analyze`, or `None` after saying the test is skipped.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: systemd-analyze not found (Debian's systemd package has it)");
    }
    found
}

/// The units copied into `dir` with `ExecStart=` running this build. systemd-analyze
/// checks that every command's program exists: `/bin/kill` (`ExecReload=`, from procps) is
/// replaced by this build too where procps is not installed.
fn staged(dir: &Path) {
    let kill_missing = !Path::new("/bin/kill").is_file();
    if kill_missing {
        eprintln!("note: /bin/kill is not installed here; ExecReload= is verified with a stand-in");
    }
    for name in UNITS {
        let mut text = unit_text(name);
        if name.ends_with(".service") {
            assert!(
                text.contains(&format!("ExecStart={INSTALLED} ")),
                "{name}: ExecStart= does not run {INSTALLED}"
            );
            text = text.replace(INSTALLED, BUILT);
            if kill_missing {
                text = text.replace("=+/bin/kill ", &format!("=+{BUILT} "));
            }
        }
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn analyze(tool: &Path, args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", tool.display()))
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let dir = Scratch::new("verify");
    staged(&dir.0);
    let paths: Vec<String> = UNITS
        .iter()
        .map(|n| dir.0.join(n).display().to_string())
        .collect();
    let mut args = vec!["verify", "--man=no"];
    args.extend(paths.iter().map(String::as_str));
    let out = analyze(&tool, &args, &dir.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        out.status
    );
    // Unknown keys and bad values are warnings with exit 0; none may be about our units.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mtproto-proxy"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns about the units:\n{stderr}"
    );
}

#[test]
fn systemd_analyze_security_rates_both_services_ok() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let dir = Scratch::new("security");
    staged(&dir.0);
    for name in ["mtproto-proxy.service", "mtproto-proxy@.service"] {
        let path = dir.0.join(name).display().to_string();
        let out = analyze(
            &tool,
            &["security", "--no-pager", "--offline=true", &path],
            &dir.0,
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if stderr.contains("unrecognized option") {
            eprintln!("skipped: this systemd-analyze has no --offline (systemd 250 and later)");
            return;
        }
        let line = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{name}: no overall exposure\n{stdout}\n{stderr}"));
        let mut rating = line
            .rsplit_once(": ")
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace();
        let score: f64 = rating
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no score in {line:?}"));
        let level = rating.next().unwrap_or_default();
        assert!(
            ["PERFECT", "SAFE", "OK"].contains(&level),
            "{name}: exposure level {level} ({score}), want OK or better\n{stdout}"
        );
        assert!(
            score <= MAX_EXPOSURE,
            "{name}: exposure {score} above {MAX_EXPOSURE}: a hardening option was lost\n{stdout}"
        );
    }
}

/// The sandbox both services share.
fn assert_hardened(name: &str, unit: &Unit) {
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(value(unit, "Service", key), want, "{name}: {key}=");
    }
    let families: BTreeSet<&str> = value(unit, "Service", "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]),
        "{name}: RestrictAddressFamilies="
    );
    // -c: the default connection count plus the descriptors kept aside must fit.
    let nofile: u64 = value(unit, "Service", "LimitNOFILE")
        .parse()
        .unwrap_or_else(|e| panic!("{name}: LimitNOFILE=: {e}"));
    let default_c = u64::try_from(mtproxy::config::cli::DEFAULT_MAX_CONNECTIONS).unwrap();
    assert!(
        nofile >= default_c + mtproxy::os::FD_GAP,
        "{name}: LimitNOFILE={nofile} is below the default -c"
    );
    // The stop timeout covers the whole grace (drain, close, cut) and the master's wait
    // for its workers (one more cut).
    let argv = exec_start(unit);
    let drain = seconds(option(&argv, "--drain-timeout").unwrap_or("5"));
    let g = mtproxy::net::shared::Grace::new(std::time::Duration::from_secs(drain));
    let needed = (g.total() + g.cut).as_secs();
    let stop = seconds(value(unit, "Service", "TimeoutStopSec"));
    assert!(
        stop > needed,
        "{name}: TimeoutStopSec={stop} does not cover --drain-timeout {drain} and its grace ({needed} s)"
    );
    // Reloading signals a process of the -u user: outside the sandbox (no CAP_KILL).
    assert!(
        value(unit, "Service", "ExecReload").starts_with("+/bin/kill -HUP $MAINPID"),
        "{name}: ExecReload="
    );
    assert_eq!(
        value(unit, "Service", "EnvironmentFile"),
        "-/etc/default/mtproto-proxy",
        "{name}"
    );
    assert_eq!(argv.first().map(String::as_str), Some(INSTALLED), "{name}");
    assert_eq!(option(&argv, "-u"), Some("mtproxy"), "{name}: -u");
}

fn capabilities(unit: &Unit) -> BTreeSet<&str> {
    value(unit, "Service", "CapabilityBoundingSet")
        .split_whitespace()
        .collect()
}

/// The socket unit's `ListenStream=` values.
fn listen_streams() -> Vec<String> {
    let socket = parse_unit(&unit_text("mtproto-proxy.socket"));
    values(&socket, "Socket", "ListenStream").to_vec()
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("ListenStream={listen}: no port"))
}

#[test]
fn the_units_ask_for_the_hardening_and_the_ports_agree() {
    let service = parse_unit(&unit_text("mtproto-proxy.service"));
    assert_hardened("mtproto-proxy.service", &service);
    // Switching to the -u user is all the root start is for: the ports come from systemd.
    assert_eq!(
        capabilities(&service),
        BTreeSet::from(["CAP_SETUID", "CAP_SETGID"]),
        "mtproto-proxy.service: CapabilityBoundingSet="
    );
    assert!(values(&service, "Unit", "Requires").contains(&"mtproto-proxy.socket".to_string()));

    // The socket unit passes exactly the ports the service's -H and -p name, stats on
    // loopback only (the proxy matches the sockets by port).
    let argv = exec_start(&service);
    let listens = listen_streams();
    let client = option(&argv, "-H").expect("-H");
    let stats = option(&argv, "-p").expect("-p");
    assert!(argv.iter().any(|a| a == "--http-stats"), "{argv:?}");
    let want: BTreeSet<u16> = client
        .split(',')
        .chain([stats])
        .map(|p| p.parse().unwrap())
        .collect();
    let got: BTreeSet<u16> = listens.iter().map(|l| port_of(l)).collect();
    assert_eq!(got, want, "ListenStream= {listens:?} against {argv:?}");
    let stats_listen = listens
        .iter()
        .find(|l| port_of(l).to_string() == stats)
        .unwrap();
    assert_eq!(
        stats_listen,
        &format!("127.0.0.1:{stats}"),
        "the stats port listens on loopback only"
    );

    // The handover slot binds -H itself and keeps its handover socket across stops.
    let slot = parse_unit(&unit_text("mtproto-proxy@.service"));
    assert_hardened("mtproto-proxy@.service", &slot);
    assert_eq!(
        capabilities(&slot),
        BTreeSet::from(["CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"]),
        "mtproto-proxy@.service: CapabilityBoundingSet="
    );
    let argv = exec_start(&slot);
    let handover = Path::new(option(&argv, "--handover-socket").expect("--handover-socket"));
    assert_eq!(
        handover.parent(),
        Some(
            Path::new("/run")
                .join(value(&slot, "Service", "RuntimeDirectory"))
                .as_path()
        ),
        "the handover socket lives in the RuntimeDirectory"
    );
    assert_eq!(value(&slot, "Service", "RuntimeDirectoryPreserve"), "yes");
    let conflicts: Vec<&str> = values(&slot, "Unit", "Conflicts")
        .iter()
        .flat_map(|c| c.split_whitespace())
        .collect();
    for unit in ["mtproto-proxy.service", "mtproto-proxy.socket"] {
        assert!(
            conflicts.contains(&unit),
            "the slot does not conflict with {unit}"
        );
    }
}

/// Kills the child when the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_stats(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

#[test]
fn the_socket_units_sockets_serve_the_services_command_line() {
    let service = parse_unit(&unit_text("mtproto-proxy.service"));
    let dir = Scratch::new("activation");
    let conf = dir.0.join("proxy-multi.conf");
    let secret = dir.0.join("proxy-secret");
    std::fs::write(&conf, "default 2;\nproxy_for 2 127.0.0.1:1;\n").unwrap();
    std::fs::write(&secret, [0x42u8; 128]).unwrap();

    // One loopback listener per ListenStream=, in the unit's order, on ports the OS picks.
    let listens = listen_streams();
    let listeners: Vec<TcpListener> = listens
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port_map: BTreeMap<String, String> = listens
        .iter()
        .zip(&listeners)
        .map(|(l, s)| {
            (
                port_of(l).to_string(),
                s.local_addr().unwrap().port().to_string(),
            )
        })
        .collect();

    // The service's command line as systemd runs it, with this build, the scratch files,
    // the test's ports, and a user that exists everywhere.
    let mut argv = exec_start(&service);
    argv.remove(0);
    let secret_arg = argv.iter().position(|a| a == "-S").expect("-S") + 1;
    argv[secret_arg] = "00112233445566778899aabbccddeeff".into();
    for i in 1..argv.len() {
        let replacement = match argv[i - 1].as_str() {
            "-u" => Some("nobody".to_string()),
            "-H" | "-p" => Some(
                port_map
                    .get(&argv[i])
                    .unwrap_or_else(|| panic!("port {} has no ListenStream=", argv[i]))
                    .clone(),
            ),
            _ => None,
        };
        if let Some(r) = replacement {
            argv[i] = r;
        }
    }
    for a in &mut argv {
        if a == "/etc/mtproxy/proxy-secret" {
            *a = secret.display().to_string();
        } else if a == "/etc/mtproxy/proxy-multi.conf" {
            *a = conf.display().to_string();
        }
    }

    // systemd passes the sockets from fd 3 on, with LISTEN_FDS and LISTEN_PID (the pid
    // bash keeps when it execs). Copies at 10 and above, without close-on-exec, so that the
    // redirections cannot overwrite one another.
    let copies: Vec<i32> = listeners
        .iter()
        .map(|l| {
            use std::os::fd::AsRawFd;
            nix::fcntl::fcntl(l.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD(10)).unwrap()
        })
        .collect();
    let mut redirections = String::new();
    for (i, fd) in copies.iter().enumerate() {
        redirections.push_str(&format!(" {}<&{fd}", 3 + i));
    }
    for fd in &copies {
        redirections.push_str(&format!(" {fd}<&-"));
    }
    let log = dir.0.join("proxy.log");
    let spawned = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "export LISTEN_PID=$$ LISTEN_FDS={}; exec \"$0\" \"$@\"{redirections}",
            copies.len()
        ))
        .arg(BUILT)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn();
    for fd in copies {
        nix::unistd::close(fd).unwrap();
    }
    let mut proxy = Running(spawned.unwrap());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready when /stats answers; the test holds both ports, so a proxy that bound its own
    // sockets would have failed to start.
    let stats_addr = listeners[listens
        .iter()
        .position(|l| l.starts_with("127.0.0.1:"))
        .expect("a loopback ListenStream=")]
    .local_addr()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            panic!("the proxy exited ({status}) with {argv:?}:\n{}", read_log());
        }
        match get_stats(stats_addr) {
            Ok(text) if text.contains("\r\n\r\n") => break text,
            _ if Instant::now() > deadline => {
                panic!("/stats did not answer within 30 s:\n{}", read_log())
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(
        stats.starts_with("HTTP/1.1 200") && stats.contains(&format!("pid\t{}\n", proxy.0.id())),
        "/stats from another process?\n{stats}"
    );
    let said = read_log();
    assert!(
        said.contains(&format!(
            "listening sockets from systemd (LISTEN_FDS) sockets={}",
            listens.len()
        )),
        "{said}"
    );

    // The client socket is served: the proxy's workers accept from it.
    let client_addr = listeners[listens
        .iter()
        .position(|l| !l.starts_with("127.0.0.1:"))
        .expect("a client ListenStream=")]
    .local_addr()
    .unwrap();
    let client = TcpStream::connect(client_addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = get_stats(stats_addr).unwrap();
        if stats.contains("\ninbound_connections_accepted\t1\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client was not accepted within 30 s:\n{stats}\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    drop(client);

    // The unit's stop signal: drain, exit 0.
    let signal: nix::sys::signal::Signal =
        value(&service, "Service", "KillSignal").parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(proxy.0.id()).unwrap()),
        signal,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit 20 s after {signal}:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status} after {signal}:\n{}", read_log());
}
