//! The validated command line ([`Options`]): its limits and defaults, and the checks C makes
//! on it after parsing.

use std::net::Ipv4Addr;

use super::exit::{CliExit, StderrLine};
use crate::config::secret::NatInfo;

/// Most `-S` secrets (C asserts on the 17th; we refuse it with exit 2).
pub const MAX_SECRETS: usize = 16;
/// Most `-H` ports, over all `-H` options together (C `MAX_HTTP_LISTEN_PORTS`).
pub const MAX_HTTP_PORTS: usize = 128;
/// Most `-M` workers (C `MAX_WORKERS`).
pub const MAX_WORKERS: i32 = 256;
/// Default `-c` (C `MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: i32 = 65536;
/// Default `-b` (C `DEFAULT_BACKLOG`).
pub const DEFAULT_BACKLOG: i32 = 8192;
/// Default `-T` in seconds (C `PING_INTERVAL`).
pub const DEFAULT_PING_INTERVAL: f64 = 5.0;
/// Default `--msg-buffers-size` (C `MSG_DEFAULT_MAX_ALLOCATED_BYTES`).
pub const DEFAULT_MSG_BUFFERS_SIZE: i64 = 268_435_456;
/// Default `-W` when `-D` is not given.
pub const DEFAULT_WINDOW_CLAMP: i32 = 131_072;

/// `-p`: one port or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// `-p N`.
    Port(i32),
    /// `-p S:E` (the first free port of the range is taken).
    Range(i32, i32),
}

/// The validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// argv\[0\] (used in usage texts).
    pub argv0: String,
    /// The ME config file (the one positional).
    pub config_file: String,
    /// Verbosity (`-v` increments, `--verbosity=N` sets).
    pub verbosity: i32,
    /// `-6`.
    pub ipv6: bool,
    /// `-C`; `None` means "same as -c". Negative values become 0.
    pub max_special_connections: Option<i32>,
    /// `-D`, in order; the first is the default domain.
    pub domains: Vec<String>,
    /// `-H`, over all `-H` options.
    pub http_ports: Vec<u16>,
    /// `-M`, 0..256.
    pub workers: i32,
    /// `-P`.
    pub proxy_tag: Option<[u8; 16]>,
    /// `-R`.
    pub random_padding_only: bool,
    /// `-S`, in order (at most 16).
    pub secrets: Vec<[u8; 16]>,
    /// `-T` seconds (parsed, unused by C).
    pub ping_interval: f64,
    /// `-W` as given (`None`: 131072 without `-D`, unset with `-D`).
    pub window_clamp: Option<i32>,
    /// `-b`.
    pub backlog: i32,
    /// `-c` (values <= 0 mean the default 65536).
    pub max_connections: i32,
    /// `-d` (toggles; `--daemonize=N` sets N != 0).
    pub daemonize: bool,
    /// `-l`.
    pub log_file: Option<String>,
    /// `-p`.
    pub port: Option<PortSpec>,
    /// `-u`.
    pub user: Option<String>,
    /// `--aes-pwd`.
    pub aes_pwd_file: Option<String>,
    /// `--nice` (C calls `nice()` while parsing).
    pub nice: Option<i32>,
    /// `--msg-buffers-size` in bytes.
    pub msg_buffers_size: i64,
    /// `--disable-tcp`.
    pub disable_tcp: bool,
    /// `--max-accept-rate`.
    pub max_accept_rate: i32,
    /// `--max-dh-accept-rate`.
    pub max_dh_accept_rate: i32,
    /// `--nat-info` rules.
    pub nat_info: NatInfo,
    /// `--address`.
    pub address: Option<Ipv4Addr>,
    /// `--http-stats`.
    pub http_stats: bool,
    /// `--handover-socket` (ours, not C's): the unix socket through which a running proxy
    /// hands its listening sockets to a new one (see [`crate::handover`]).
    pub handover_socket: Option<String>,
    /// `--handover-timeout` (ours): how long a running proxy waits for the new one.
    pub handover_timeout: std::time::Duration,
    /// `--drain-timeout` (ours): how long clients may finish after SIGTERM or a handover.
    pub drain_timeout: std::time::Duration,
    /// `--public-host` (ours): the server address written into the links logged at
    /// start-up (see [`crate::links`]).
    pub public_host: Option<String>,
    /// `--check` (ours): validate the configuration and the environment, print one line
    /// per check and exit (see [`crate::check`]).
    pub check: bool,
    /// `--threads` (ours): runtime threads of a process without `-M` (default 1, one event
    /// loop as C's; a `-M` worker always has one).
    pub threads: usize,
    /// `--max-connections-per-ip` (ours): client connections one IP address may hold at
    /// once per process (0: no limit, as C).
    pub max_connections_per_ip: usize,
    /// Options given that C accepts and that have no effect here (long names, in order,
    /// without duplicates); see [`ignored_options`](super::table::ignored_options).
    pub ignored: Vec<&'static str>,
}

impl Options {
    /// Every option at its default (C's, and ours for our own options); the config file
    /// still unset.
    pub(super) fn new(argv0: &str) -> Self {
        Options {
            argv0: argv0.to_string(),
            config_file: String::new(),
            verbosity: 0,
            ipv6: false,
            max_special_connections: None,
            domains: Vec::new(),
            http_ports: Vec::new(),
            workers: 0,
            proxy_tag: None,
            random_padding_only: false,
            secrets: Vec::new(),
            ping_interval: DEFAULT_PING_INTERVAL,
            window_clamp: None,
            backlog: DEFAULT_BACKLOG,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            daemonize: false,
            log_file: None,
            port: None,
            user: None,
            aes_pwd_file: None,
            nice: None,
            msg_buffers_size: DEFAULT_MSG_BUFFERS_SIZE,
            disable_tcp: false,
            max_accept_rate: 0,
            max_dh_accept_rate: 0,
            nat_info: NatInfo::default(),
            address: None,
            http_stats: false,
            handover_socket: None,
            handover_timeout: crate::handover::DEFAULT_TIMEOUT,
            drain_timeout: crate::net::shared::DRAIN_GRACE,
            public_host: None,
            check: false,
            threads: 1,
            max_connections_per_ip: 0,
            ignored: Vec::new(),
        }
    }

    /// The check C makes right after the config syntax check (pre_init): `-D` needs at
    /// least one `-S` (`kprintf`, exit 2).
    pub fn check_tls_secrets(&self) -> Result<(), CliExit> {
        if !self.domains.is_empty() && self.secrets.is_empty() {
            return Err(CliExit::fatal(
                2,
                StderrLine::Log(
                    "You must specify at least one mtproto-secret to use when using TLS-transport"
                        .into(),
                ),
            ));
        }
        Ok(())
    }

    /// The warning C logs (same place) for `-D` with `-M`.
    pub fn tls_workers_warning(&self) -> Option<&'static str> {
        (!self.domains.is_empty() && self.workers > 0)
            .then_some("It is recommended to not use workers with TLS-transport")
    }

    /// The check C makes when it opens the stats port (server_init, after the config is
    /// applied): `--http-stats` without a usable `-p` is `fatal: port isn't defined`,
    /// exit 1. A `-p S:E` range counts as defined.
    pub fn check_stats_port(&self) -> Result<(), CliExit> {
        if self.http_stats && self.port.is_none() {
            return Err(CliExit::fatal(
                1,
                StderrLine::Log("fatal: port isn't defined".into()),
            ));
        }
        Ok(())
    }

    /// The effective `-W`: the given value, else 131072 without `-D`, else none.
    pub fn effective_window_clamp(&self) -> Option<i32> {
        self.window_clamp
            .or_else(|| self.domains.is_empty().then_some(DEFAULT_WINDOW_CLAMP))
    }

    /// The effective `-C`: the given value, else `-c`.
    pub fn effective_max_special_connections(&self) -> i32 {
        self.max_special_connections.unwrap_or(self.max_connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A default [`Options`] changed by `edit`.
    fn with(edit: impl FnOnce(&mut Options)) -> Options {
        let mut o = Options::new("mtproto-proxy");
        edit(&mut o);
        o
    }

    #[test]
    fn defaults_are_cs_and_the_runtime_timeouts() {
        let o = Options::new("p");
        assert_eq!(o.argv0, "p");
        assert_eq!(
            (o.backlog, o.max_connections, o.msg_buffers_size),
            (
                DEFAULT_BACKLOG,
                DEFAULT_MAX_CONNECTIONS,
                DEFAULT_MSG_BUFFERS_SIZE
            )
        );
        assert_eq!(o.ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(o.drain_timeout, crate::net::shared::DRAIN_GRACE);
        assert_eq!(o.handover_timeout, crate::handover::DEFAULT_TIMEOUT);
        assert_eq!((o.threads, o.verbosity, o.workers), (1, 0, 0));
        assert!(o.secrets.is_empty() && o.domains.is_empty() && o.ignored.is_empty());
    }

    #[test]
    fn startup_checks() {
        let tls = |o: &mut Options| o.domains.push("x.com".into());
        let o = with(tls);
        let e = o.check_tls_secrets().unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.stdout.is_empty());
        assert!(o.effective_window_clamp().is_none());
        let o = with(|o| {
            tls(o);
            o.secrets.push([7; 16]);
        });
        assert!(o.check_tls_secrets().is_ok());
        assert!(o.tls_workers_warning().is_none());
        assert!(with(|o| {
            tls(o);
            o.secrets.push([7; 16]);
            o.workers = 1;
        })
        .tls_workers_warning()
        .is_some());
        let e = with(|o| o.http_stats = true)
            .check_stats_port()
            .unwrap_err();
        assert_eq!(
            (e.code, e.stderr.clone()),
            (1, vec![StderrLine::Log("fatal: port isn't defined".into())])
        );
        assert!(with(|o| {
            o.http_stats = true;
            o.port = Some(PortSpec::Range(1, 9));
        })
        .check_stats_port()
        .is_ok());
        assert!(with(|o| o.port = Some(PortSpec::Port(1)))
            .check_stats_port()
            .is_ok());
        let o = with(|_| {});
        assert_eq!(o.effective_window_clamp(), Some(DEFAULT_WINDOW_CLAMP));
        assert_eq!(
            o.effective_max_special_connections(),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(
            with(|o| o.max_special_connections = Some(3)).effective_max_special_connections(),
            3
        );
    }
}
