//! `--check`: validates the configuration as start-up would, then checks the environment
//! the proxy is about to run in, printing one line per check. The exit status is 1 when
//! any check failed, else 0 (warnings do not fail).
//!
//! The checks, in order:
//! * the command line's own rules (`-D` needs `-S`);
//! * the config file (`proxy-multi.conf`) and the proxy-secret file (`--aes-pwd`): regular
//!   files, readable and well-formed;
//! * the client ports (`-H`) and the stats port (`-p`) are free to bind;
//! * the descriptor limit fits `-c`;
//! * privileges can be dropped to the `-u` user;
//! * every middle-end target accepts TCP (within [`CONNECT_TIMEOUT`]);
//! * every `-D` domain resolves and answers a TLS ClientHello on port 443;
//! * the address this host uses towards the middle ends is not private while no
//!   `--nat-info` maps it (the middle end derives its keys from the address it sees: a
//!   private one without `--nat-info` is why a proxy behind NAT "does not work");
//! * the address the links will carry.
//!
//! Nothing here changes the system: sockets are bound and closed at once, the descriptor
//! limit is only read, privileges are not dropped.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::cli::{Options, PortSpec};
use crate::links::{self, HostSource};
use crate::net::listener::ListenSpec;

/// How long a middle-end target may take to accept TCP.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but probably not as meant.
    Warn,
    /// Start-up would fail, or the proxy would start and not serve.
    Fail,
    /// Not applicable.
    Skip,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "[ OK ]",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[SKIP]",
        })
    }
}

/// One printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Outcome.
    pub status: Status,
    /// What was checked (`config`, `port 443`, `middle end 1.2.3.4:8888`…).
    pub what: String,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.what, self.detail)
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn line(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Line {
    Line {
        status,
        what: what.into(),
        detail: detail.into(),
    }
}

/// The exit status for `lines`: 1 when any failed.
pub fn exit_code(lines: &[Line]) -> i32 {
    i32::from(lines.iter().any(|l| l.status == Status::Fail))
}

/// The largest config or secret file read (C reads far smaller ones).
const MAX_FILE: u64 = 16 << 20;

/// A regular, readable file of at most [`MAX_FILE`] bytes.
fn read_regular(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{path}: {} bytes is too large", meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

/// Runs every check.
pub async fn run(o: &Options) -> Vec<Line> {
    let mut out = Vec::new();
    match o.check_tls_secrets() {
        Ok(()) => out.push(line(Status::Ok, "options", "the command line is valid")),
        Err(e) => out.push(line(
            Status::Fail,
            "options",
            e.stderr
                .iter()
                .map(|l| match l {
                    crate::config::cli::StderrLine::Raw(s)
                    | crate::config::cli::StderrLine::Log(s) => s.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
    let conf = match read_regular(&o.config_file) {
        Err(e) => {
            out.push(line(Status::Fail, "config", e));
            None
        }
        Ok(text) => match crate::app::load_config_text(&text, &o.config_file) {
            Ok(c) => {
                out.push(line(
                    Status::Ok,
                    "config",
                    format!(
                        "{}: {}, {}, default dc {}",
                        o.config_file,
                        count(c.conf.auth_clusters(), "cluster"),
                        count(c.conf.total_declared_targets(), "middle-end target"),
                        c.conf.default_cluster_id
                    ),
                ));
                Some(c.conf)
            }
            Err(f) => {
                out.push(line(Status::Fail, "config", f.lines.join("; ")));
                None
            }
        },
    };
    out.push(secret_check(o));
    out.extend(port_checks(o));
    out.push(fd_check(o));
    out.push(user_check(o));
    let mut local_to_me = None;
    if let Some(conf) = &conf {
        for target in &conf.targets {
            let (l, local) = me_check(*target).await;
            out.push(l);
            if local_to_me.is_none() {
                local_to_me = local.map(|a| (a, *target));
            }
        }
    }
    for d in &o.domains {
        out.push(domain_check(d).await);
    }
    out.push(nat_check(o, local_to_me));
    out.push(links_check(o));
    out
}

fn secret_check(o: &Options) -> Line {
    let (path, explicit) = match &o.aes_pwd_file {
        Some(p) => (p.as_str(), true),
        None => (crate::config::secret::DEFAULT_PWD_FILE, false),
    };
    match read_regular(path) {
        Ok(bytes) => match crate::config::secret::ProxySecret::from_bytes(&bytes) {
            Ok(s) => line(
                Status::Ok,
                "proxy-secret",
                format!("{path}: {} bytes, md5 {}", bytes.len(), s.md5_hex()),
            ),
            Err(e) => line(Status::Fail, "proxy-secret", format!("{path}: {e}")),
        },
        Err(e) if explicit => line(Status::Fail, "proxy-secret", e),
        Err(e) => line(
            Status::Fail,
            "proxy-secret",
            format!("{e} (no --aes-pwd): the proxy would start, but no middle-end handshake can succeed"),
        ),
    }
}

fn port_checks(o: &Options) -> Vec<Line> {
    let mut out = Vec::new();
    if o.handover_socket.is_some() || std::env::var_os("LISTEN_FDS").is_some() {
        out.push(line(
            Status::Skip,
            "ports",
            "the listening sockets may come from a running proxy (--handover-socket) or systemd",
        ));
        return out;
    }
    for port in &o.http_ports {
        let addr = ListenSpec::address_for(*port, o.address.map(IpAddr::V4), o.ipv6);
        out.push(match std::net::TcpListener::bind(addr) {
            Ok(_) => line(
                Status::Ok,
                format!("port {port}"),
                format!("{addr} is free"),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => line(
                Status::Fail,
                format!("port {port}"),
                format!("{addr}: {e} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"),
            ),
            Err(e) => line(Status::Fail, format!("port {port}"), format!("{addr}: {e}")),
        });
    }
    if o.http_ports.is_empty() {
        out.push(line(
            Status::Warn,
            "client ports",
            "no -H: the proxy accepts no clients",
        ));
    }
    if o.http_stats {
        let ports: Vec<i32> = match o.port {
            Some(PortSpec::Port(p)) => vec![p],
            Some(PortSpec::Range(s, e)) => (s..=e.min(s.saturating_add(1024))).collect(),
            None => Vec::new(),
        };
        let free = ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .find(|p| {
                std::net::TcpListener::bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, *p)))
                    .is_ok()
            });
        out.push(match (ports.is_empty(), free) {
            (true, _) => line(
                Status::Fail,
                "stats port",
                "--http-stats without -p: no port to answer on",
            ),
            (false, Some(p)) => line(
                Status::Ok,
                format!("stats port {p}"),
                format!("127.0.0.1:{p} is free"),
            ),
            (false, None) => line(
                Status::Fail,
                "stats port",
                format!("no free port among {:?} on 127.0.0.1", o.port),
            ),
        });
    }
    out
}

fn fd_check(o: &Options) -> Line {
    use nix::sys::resource::{getrlimit, Resource};
    let want = u64::try_from(o.max_connections.max(1)).unwrap_or(1);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return line(Status::Warn, "descriptors", "cannot read RLIMIT_NOFILE");
    };
    let need = want + crate::os::FD_GAP;
    let root = nix::unistd::Uid::effective().is_root();
    if hard >= need || root {
        line(
            Status::Ok,
            "descriptors",
            format!(
                "-c {want} needs {need} descriptors; limit soft {soft}, hard {hard}{}",
                if hard < need {
                    " (raised at start as root)"
                } else {
                    ""
                }
            ),
        )
    } else {
        line(
            Status::Fail,
            "descriptors",
            format!(
                "-c {want} needs {need} descriptors but the hard limit is {hard}: at most {} connections (raise LimitNOFILE or `ulimit -Hn`, or lower -c)",
                hard.saturating_sub(crate::os::FD_GAP)
            ),
        )
    }
}

fn user_check(o: &Options) -> Line {
    use nix::unistd::{Uid, User};
    let name = o
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(crate::os::DEFAULT_USER);
    if !Uid::effective().is_root() && !Uid::current().is_root() {
        return line(
            Status::Ok,
            "user",
            format!(
                "not started as root: runs as uid {} (-u {name} applies only when started as root)",
                Uid::current()
            ),
        );
    }
    match User::from_name(name) {
        Ok(Some(u)) => line(
            Status::Ok,
            "user",
            format!(
                "privileges will be dropped to {name} (uid {}, gid {})",
                u.uid, u.gid
            ),
        ),
        Ok(None) => line(
            Status::Fail,
            "user",
            format!("can't find the user {name} to switch to"),
        ),
        Err(e) => line(
            Status::Fail,
            "user",
            format!("can't find the user {name} to switch to: {e}"),
        ),
    }
}

async fn me_check(target: SocketAddr) -> (Line, Option<IpAddr>) {
    let what = format!("middle end {target}");
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(s)) => {
            let local = s.local_addr().ok().map(|a| a.ip());
            (line(Status::Ok, what, "accepts TCP"), local)
        }
        Ok(Err(e)) => (line(Status::Fail, what, e.to_string()), None),
        Err(_) => (
            line(
                Status::Fail,
                what,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
            None,
        ),
    }
}

async fn domain_check(domain: &str) -> Line {
    use crate::net::fronting::dns::resolve;
    use crate::net::fronting::probe::{probe_domain, PROBE_PORT};
    let what = format!("domain {domain}");
    let Some(ip) = resolve(domain).await else {
        return line(Status::Fail, what, "does not resolve");
    };
    let addr = SocketAddr::new(ip, PROBE_PORT);
    match probe_domain(domain, addr).await {
        Ok(_) => line(
            Status::Ok,
            what,
            format!("{addr} answers TLS 1.3 (its ServerHello shapes ours)"),
        ),
        Err(e) => line(Status::Fail, what, format!("{addr}: {e}")),
    }
}

/// The NAT check's verdict for the local address `local` towards middle end `target`.
pub fn nat_verdict(o: &Options, local: IpAddr, target: SocketAddr) -> Line {
    let what = "nat";
    let mapped = match local {
        IpAddr::V4(v4) => o.nat_info.rules().iter().find(|r| r.local == v4),
        IpAddr::V6(_) => None,
    };
    if let Some(r) = mapped {
        return line(
            Status::Ok,
            what,
            format!(
                "local address {local} is announced as {} (--nat-info)",
                r.global
            ),
        );
    }
    if links::is_private(target.ip()) {
        return line(
            Status::Ok,
            what,
            format!("middle end {target} is on a private network; local address {local}"),
        );
    }
    if links::is_private(local) {
        return line(
            Status::Fail,
            what,
            format!(
                "local address {local} is private and no --nat-info maps it: the middle end derives its keys from the public address it sees, so every handshake would fail; add --nat-info {local}:<public address>"
            ),
        );
    }
    line(Status::Ok, what, format!("local address {local} is public"))
}

fn nat_check(o: &Options, local_to_me: Option<(IpAddr, SocketAddr)>) -> Line {
    match local_to_me {
        Some((local, target)) => nat_verdict(o, local, target),
        None => line(
            Status::Skip,
            "nat",
            "no middle end answered: the local address towards them is unknown",
        ),
    }
}

fn links_check(o: &Options) -> Line {
    let host = links::public_host(o);
    let n = links::links(o, &host.host).len();
    let source = match host.source {
        HostSource::PublicHost => "--public-host",
        HostSource::NatInfo => "--nat-info",
        HostSource::Address => "--address",
        HostSource::Route => "the routing table",
        HostSource::Unknown => "nothing",
    };
    let private = host.host.parse().is_ok_and(links::is_private);
    let status = if host.source == HostSource::Unknown || private {
        Status::Warn
    } else {
        Status::Ok
    };
    let hint = if status == Status::Warn {
        ": set --public-host (or --nat-info behind NAT) for links that work from outside"
    } else {
        ""
    };
    line(
        status,
        "links",
        format!(
            "{}, server address {} (from {source}){hint}",
            count(n, "link"),
            host.host
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli::parse_for_test as opts;

    #[test]
    fn nat_fails_only_for_an_unmapped_private_address_towards_a_public_middle_end() {
        let me: SocketAddr = "149.154.175.50:8888".parse().unwrap();
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(nat_verdict(&opts(&[]), private, me).status, Status::Fail);
        let mapped = opts(&["--nat-info", "10.0.0.5:203.0.113.9"]);
        let l = nat_verdict(&mapped, private, me);
        assert_eq!(l.status, Status::Ok);
        assert!(l.detail.contains("203.0.113.9"), "{l}");
        let public: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(nat_verdict(&opts(&[]), public, me).status, Status::Ok);
        let local_me: SocketAddr = "127.0.0.1:8888".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(nat_verdict(&opts(&[]), lo, local_me).status, Status::Ok);
    }

    #[test]
    fn a_failed_line_fails_the_exit_status_and_a_warning_does_not() {
        let ok = line(Status::Ok, "a", "b");
        let warn = line(Status::Warn, "a", "b");
        let fail = line(Status::Fail, "a", "b");
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 0);
        assert_eq!(exit_code(&[ok, warn, fail.clone()]), 1);
        assert_eq!(fail.to_string(), "[FAIL] a: b");
    }
}
