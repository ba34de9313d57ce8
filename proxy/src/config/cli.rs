//! The `mtproto-proxy` command line, parsed exactly like the C engine does it.
//!
//! C parses with glibc `getopt_long` (permuting: options may follow the config file;
//! unique prefixes of long names are accepted; `--` ends options) and runs each option's
//! handler **as it is met**, so e.g. `-h` prints usage at once and `-v -v --verbosity=1 -v`
//! ends at verbosity 2. The short options `-v` and `-d` take **no** argument (only
//! `--verbosity=N`, `--daemonize=N` and `--multithread=N` have an optional argument, and it
//! must be attached with `=`; `--verbosity 3` makes `3` a positional).
//!
//! We do not use clap here: clap cannot express getopt's order-dependent handlers, the
//! optional-argument rules or glibc's diagnostics, which are part of the observable
//! behaviour. The emulation below is small and table-driven; [`parse_from`] is pure and
//! returns either the validated [`Options`] or a [`CliExit`] (exit code plus the exact text
//! for stdout and stderr).
//!
//! Texts observed on the GetPageSpeed v3.0.10 build: usage goes to **stdout** (exit 2);
//! getopt's own complaint (`<argv0>: invalid option -- 'Q'`) and plain `fprintf` lines go
//! to stderr as-is; `kprintf` lines (marked [`StderrLine::Log`]) get the log prefix
//! `[pid][time] ` from the runtime's logger.

use std::net::Ipv4Addr;

use super::secret::{parse_hex16, parse_inet_pton4, NatInfo};

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

/// Our version line, printed where C prints `FullVersionStr`.
pub fn version_line() -> String {
    format!(
        "mtproxy-rs-{} (Rust port of mtproxy-0.02)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Everything after the version line of C's usage (verbatim, tabs included). The `-R` line
/// sits between `-P` and `-S` as in the GetPageSpeed build.
const HELP_BODY: &str = "\tSimple MT-Proto proxy
\t--ipv6/-6                          \tenables ipv6 TCP/UDP support
\t--max-special-connections/-C <arg> \tsets maximal number of accepted client connections per worker
\t--domain/-D <arg>                  \tadds allowed domain for TLS-transport mode, disables other transports; can be specified more than once
\t--http-ports/-H <arg>              \tcomma-separated list of client (HTTP) ports to listen
\t--slaves/-M <arg>                  \tspawn several slave workers; not recommended for TLS-transport mode for better replay protection
\t--proxy-tag/-P <arg>               \t16-byte proxy tag in hex mode to be passed along with all forwarded queries
\t--random-padding-only/-R           \tallow only clients with random padding option enabled
\t--mtproto-secret/-S <arg>          \t16-byte secret in hex mode
\t--ping-interval/-T <arg>           \tsets ping interval in second for local TCP connections (default 5.000)
\t--window-clamp/-W <arg>            \tsets window clamp for client TCP connections
\t--backlog/-b <arg>                 \tsets backlog size
\t--connections/-c <arg>             \tsets maximal connections number
\t--daemonize/-d {arg}               \tchanges between daemonize/not daemonize mode
\t--help/-h                          \tprints help and exits
\t--log/-l <arg>                     \tsets log file name
\t--port/-p <arg>                    \t<port> or <sport>:<eport> sets listening port number or port range
\t--user/-u <arg>                    \tsets user name to make setuid
\t--verbosity/-v {arg}               \tsets or increases verbosity level
\t--aes-pwd <arg>                    \tsets custom secret.conf file
\t--nice <arg>                       \tsets niceness
\t--msg-buffers-size <arg>           \tsets maximal buffers size (default 268435456)
\t--disable-tcp                      \tdo not open listening tcp socket
\t--crc32c                           \tTry to use crc32c instead of crc32 in tcp rpc
\t--cpu-threads <arg>                \tNumber of CPU threads (1-64, default 8)
\t--io-threads <arg>                 \tNumber of I/O threads (1-64, default 16)
\t--allow-skip-dh                    \tAllow skipping DH during RPC handshake
\t--force-dh                         \tForce using DH for all outbound RPC connections
\t--max-accept-rate <arg>            \tmax number of connections per second that is allowed to accept
\t--max-dh-accept-rate <arg>         \tmax number of DH connections per second that is allowed to accept
\t--multithread {arg}                \trun in multithread mode
\t--tcp-cpu-threads <arg>            \tnumber of tcp-cpu threads
\t--tcp-iothreads <arg>              \tnumber of tcp-io threads
\t--nat-info <arg>                   \t<local-addr>:<global-addr>\tsets network address translation for RPC protocol handshake
\t--address <arg>                    \ttries to bind socket only to specified address
\t--http-stats                       \tallow http server to answer on stats queries
";

/// The full usage text C prints (to stdout) for `-h` and every usage error.
pub fn usage_text(argv0: &str) -> String {
    format!(
        "usage: {argv0} [-v] [-6] [-p<port>] [-H<http-port>{{,<http-port>}}] [-M<workers>] [-u<username>] [-b<backlog>] [-c<max-conn>] [-l<log-name>] [-W<window-size>] <config-file>\n{}\n{HELP_BODY}",
        version_line()
    )
}

/// One line C writes to stderr before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrLine {
    /// Written as-is (getopt's complaints, plain `fprintf`).
    Raw(String),
    /// A `kprintf` line: the runtime prefixes it with `[pid][time] `.
    Log(String),
}

/// "Stop and exit": what the process must print and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    /// The exit code (2 for usage, 1 for fatal, 4 for a bad `--address`).
    pub code: i32,
    /// Text for stdout (the usage text, or empty).
    pub stdout: String,
    /// Lines for stderr, in order, each without its trailing newline.
    pub stderr: Vec<StderrLine>,
}

impl CliExit {
    fn usage(argv0: &str, stderr: Vec<StderrLine>) -> Self {
        CliExit {
            code: 2,
            stdout: usage_text(argv0),
            stderr,
        }
    }

    fn fatal(code: i32, line: StderrLine) -> Self {
        CliExit {
            code,
            stdout: String::new(),
            stderr: vec![line],
        }
    }
}

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
    /// Options given that C accepts and that have no effect here (long names, in order,
    /// without duplicates); see [`ignored_options`].
    pub ignored: Vec<&'static str>,
}

impl Options {
    fn new(argv0: &str) -> Self {
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
            drain_timeout: crate::net::DRAIN_GRACE,
            public_host: None,
            check: false,
            threads: 1,
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

/// Long names of the options C accepts but which change nothing in this port (or in C):
/// the runtime may say so at `-v`.
pub fn ignored_options() -> &'static [&'static str] {
    &[
        "ping-interval",
        "crc32c",
        "allow-skip-dh",
        "force-dh",
        "cpu-threads",
        "io-threads",
        "multithread",
        "tcp-cpu-threads",
        "tcp-iothreads",
        "disable-tcp",
        "daemonize",
        "max-accept-rate",
        "max-dh-accept-rate",
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Ipv6,
    MaxSpecial,
    Domain,
    HttpPorts,
    Slaves,
    ProxyTag,
    RandomPadding,
    Secret,
    PingInterval,
    WindowClamp,
    Backlog,
    Connections,
    Daemonize,
    Help,
    Log,
    Port,
    User,
    Verbosity,
    AesPwd,
    Nice,
    MsgBuffers,
    DisableTcp,
    Crc32c,
    CpuThreads,
    IoThreads,
    AllowSkipDh,
    ForceDh,
    MaxAcceptRate,
    MaxDhAcceptRate,
    Multithread,
    TcpCpuThreads,
    TcpIoThreads,
    NatInfo,
    Address,
    HttpStats,
    HandoverSocket,
    HandoverTimeout,
    DrainTimeout,
    PublicHost,
    Check,
    Threads,
}

struct OptDef {
    long: &'static str,
    short: Option<u8>,
    arg: Arg,
    id: Id,
}

/// How many entries at the end of [`OPTS`] are ours, not C's.
const OWN_OPTIONS: usize = 6;

/// The option table in C's order (which is also glibc's order for ambiguity lists).
const OPTS: &[OptDef] = &[
    OptDef {
        long: "ipv6",
        short: Some(b'6'),
        arg: Arg::No,
        id: Id::Ipv6,
    },
    OptDef {
        long: "max-special-connections",
        short: Some(b'C'),
        arg: Arg::Required,
        id: Id::MaxSpecial,
    },
    OptDef {
        long: "domain",
        short: Some(b'D'),
        arg: Arg::Required,
        id: Id::Domain,
    },
    OptDef {
        long: "http-ports",
        short: Some(b'H'),
        arg: Arg::Required,
        id: Id::HttpPorts,
    },
    OptDef {
        long: "slaves",
        short: Some(b'M'),
        arg: Arg::Required,
        id: Id::Slaves,
    },
    OptDef {
        long: "proxy-tag",
        short: Some(b'P'),
        arg: Arg::Required,
        id: Id::ProxyTag,
    },
    OptDef {
        long: "random-padding-only",
        short: Some(b'R'),
        arg: Arg::No,
        id: Id::RandomPadding,
    },
    OptDef {
        long: "mtproto-secret",
        short: Some(b'S'),
        arg: Arg::Required,
        id: Id::Secret,
    },
    OptDef {
        long: "ping-interval",
        short: Some(b'T'),
        arg: Arg::Required,
        id: Id::PingInterval,
    },
    OptDef {
        long: "window-clamp",
        short: Some(b'W'),
        arg: Arg::Required,
        id: Id::WindowClamp,
    },
    OptDef {
        long: "backlog",
        short: Some(b'b'),
        arg: Arg::Required,
        id: Id::Backlog,
    },
    OptDef {
        long: "connections",
        short: Some(b'c'),
        arg: Arg::Required,
        id: Id::Connections,
    },
    OptDef {
        long: "daemonize",
        short: Some(b'd'),
        arg: Arg::Optional,
        id: Id::Daemonize,
    },
    OptDef {
        long: "help",
        short: Some(b'h'),
        arg: Arg::No,
        id: Id::Help,
    },
    OptDef {
        long: "log",
        short: Some(b'l'),
        arg: Arg::Required,
        id: Id::Log,
    },
    OptDef {
        long: "port",
        short: Some(b'p'),
        arg: Arg::Required,
        id: Id::Port,
    },
    OptDef {
        long: "user",
        short: Some(b'u'),
        arg: Arg::Required,
        id: Id::User,
    },
    OptDef {
        long: "verbosity",
        short: Some(b'v'),
        arg: Arg::Optional,
        id: Id::Verbosity,
    },
    OptDef {
        long: "aes-pwd",
        short: None,
        arg: Arg::Required,
        id: Id::AesPwd,
    },
    OptDef {
        long: "nice",
        short: None,
        arg: Arg::Required,
        id: Id::Nice,
    },
    OptDef {
        long: "msg-buffers-size",
        short: None,
        arg: Arg::Required,
        id: Id::MsgBuffers,
    },
    OptDef {
        long: "disable-tcp",
        short: None,
        arg: Arg::No,
        id: Id::DisableTcp,
    },
    OptDef {
        long: "crc32c",
        short: None,
        arg: Arg::No,
        id: Id::Crc32c,
    },
    OptDef {
        long: "cpu-threads",
        short: None,
        arg: Arg::Required,
        id: Id::CpuThreads,
    },
    OptDef {
        long: "io-threads",
        short: None,
        arg: Arg::Required,
        id: Id::IoThreads,
    },
    OptDef {
        long: "allow-skip-dh",
        short: None,
        arg: Arg::No,
        id: Id::AllowSkipDh,
    },
    OptDef {
        long: "force-dh",
        short: None,
        arg: Arg::No,
        id: Id::ForceDh,
    },
    OptDef {
        long: "max-accept-rate",
        short: None,
        arg: Arg::Required,
        id: Id::MaxAcceptRate,
    },
    OptDef {
        long: "max-dh-accept-rate",
        short: None,
        arg: Arg::Required,
        id: Id::MaxDhAcceptRate,
    },
    OptDef {
        long: "multithread",
        short: None,
        arg: Arg::Optional,
        id: Id::Multithread,
    },
    OptDef {
        long: "tcp-cpu-threads",
        short: None,
        arg: Arg::Required,
        id: Id::TcpCpuThreads,
    },
    OptDef {
        long: "tcp-iothreads",
        short: None,
        arg: Arg::Required,
        id: Id::TcpIoThreads,
    },
    OptDef {
        long: "nat-info",
        short: None,
        arg: Arg::Required,
        id: Id::NatInfo,
    },
    OptDef {
        long: "address",
        short: None,
        arg: Arg::Required,
        id: Id::Address,
    },
    OptDef {
        long: "http-stats",
        short: None,
        arg: Arg::No,
        id: Id::HttpStats,
    },
    // Ours, not C's (the last `OWN_OPTIONS` entries): see `find_long` for abbreviations.
    OptDef {
        long: "handover-socket",
        short: None,
        arg: Arg::Required,
        id: Id::HandoverSocket,
    },
    OptDef {
        long: "handover-timeout",
        short: None,
        arg: Arg::Required,
        id: Id::HandoverTimeout,
    },
    OptDef {
        long: "drain-timeout",
        short: None,
        arg: Arg::Required,
        id: Id::DrainTimeout,
    },
    OptDef {
        long: "public-host",
        short: None,
        arg: Arg::Required,
        id: Id::PublicHost,
    },
    OptDef {
        long: "check",
        short: None,
        arg: Arg::No,
        id: Id::Check,
    },
    OptDef {
        long: "threads",
        short: None,
        arg: Arg::Required,
        id: Id::Threads,
    },
];

/// C `atoi`: leading whitespace, optional sign, digits; the long result cut to `int`.
fn atoi(s: &str) -> i32 {
    strtoll_prefix(s).map_or(0, |(v, _)| v as i32)
}

/// `strtoll`-like prefix parse: `Some((value, bytes consumed))` or `None` when no digits.
/// Saturates on overflow like glibc.
fn strtoll_prefix(s: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        let d = i64::from(d - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
        i += 1;
    }
    (i > start).then_some((v, i))
}

/// C `atof` (prefix of `strtod`), enough for `-T`.
fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    (1..=t.len())
        .rev()
        .filter(|&n| t.is_char_boundary(n))
        .find_map(|n| t.get(..n).and_then(|p| p.parse::<f64>().ok()))
        .unwrap_or(0.0)
}

/// C `parse_memory_limit` (`--msg-buffers-size`): a number and an optional k/m/g/t suffix.
fn parse_memory_limit(s: &str) -> Result<i64, String> {
    let Some((x, used)) = strtoll_prefix(s) else {
        return Err(format!("Parsing limit for option fail: {s}"));
    };
    let c = s.as_bytes().get(used).copied().unwrap_or(0);
    let shift = match c | 0x20 {
        b' ' => 0,
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        _ => {
            let shown = s.get(used..).and_then(|r| r.chars().next()).unwrap_or('?');
            return Err(format!("Parsing limit fail. Unknown suffix '{shown}'."));
        }
    };
    Ok(x.wrapping_shl(shift))
}

/// C `sscanf(optarg, "%d:%d")` for `-p`.
fn parse_port(s: &str) -> Option<PortSpec> {
    let (start, used) = strtoll_prefix(s)?;
    let start = start as i32;
    let rest = s.get(used..).unwrap_or("");
    let end = rest
        .strip_prefix(':')
        .and_then(strtoll_prefix)
        .map(|(v, _)| v as i32);
    match end {
        None => (start > 0).then_some(PortSpec::Port(start)),
        Some(end) => (start > 0 && start <= end).then_some(PortSpec::Range(start, end)),
    }
}

enum Flow {
    Continue,
    Exit(CliExit),
}

/// Parses a full argv (argv\[0\] first) like the C binary.
///
/// # Errors
/// A [`CliExit`] when C would exit during option parsing: usage (exit 2) for `-h`, unknown
/// options, bad values and a positional count other than one; exit 1 for a repeated `-u`;
/// exit 4 for a bad `--address`.
pub fn parse_from<I, S>(args: I) -> Result<Options, CliExit>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let argv0 = args
        .first()
        .cloned()
        .unwrap_or_else(|| "mtproto-proxy".into());
    let mut o = Options::new(&argv0);
    let mut positionals: Vec<String> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args.get(i).cloned().unwrap_or_default();
        i += 1;
        if a == "--" {
            positionals.extend(args.iter().skip(i).cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let def = match find_long(name) {
                Ok(d) => d,
                Err(LongErr::Unknown) => {
                    return Err(getopt_error(&argv0, format!("unrecognized option '{a}'")));
                }
                Err(LongErr::Ambiguous(list)) => {
                    let poss: Vec<String> = list.iter().map(|l| format!("'--{l}'")).collect();
                    return Err(getopt_error(
                        &argv0,
                        format!(
                            "option '--{name}' is ambiguous; possibilities: {}",
                            poss.join(" ")
                        ),
                    ));
                }
            };
            let value = match def.arg {
                Arg::No => {
                    if inline.is_some() {
                        return Err(getopt_error(
                            &argv0,
                            format!("option '--{}' doesn't allow an argument", def.long),
                        ));
                    }
                    None
                }
                Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => match args.get(i) {
                        Some(v) => {
                            i += 1;
                            Some(v.clone())
                        }
                        None => {
                            return Err(getopt_error(
                                &argv0,
                                format!("option '--{}' requires an argument", def.long),
                            ));
                        }
                    },
                },
            };
            if let Flow::Exit(e) = apply(&mut o, def, value) {
                return Err(e);
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let bytes = a.as_bytes();
            let mut j = 1;
            while let Some(&c) = bytes.get(j) {
                j += 1;
                let Some(def) = OPTS.iter().find(|d| d.short == Some(c)) else {
                    let shown = a.get(j - 1..).and_then(|r| r.chars().next()).unwrap_or('?');
                    return Err(getopt_error(&argv0, format!("invalid option -- '{shown}'")));
                };
                // In C's short-option string only required arguments get a ':'.
                let value = if def.arg == Arg::Required {
                    let rest = a.get(j..).unwrap_or("");
                    j = bytes.len();
                    if !rest.is_empty() {
                        Some(rest.to_string())
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        Some(v.clone())
                    } else {
                        return Err(getopt_error(
                            &argv0,
                            format!("option requires an argument -- '{}'", c as char),
                        ));
                    }
                } else {
                    None
                };
                if let Flow::Exit(e) = apply(&mut o, def, value) {
                    return Err(e);
                }
            }
        } else {
            positionals.push(a);
        }
    }
    if positionals.len() != 1 {
        return Err(CliExit::usage(&argv0, Vec::new()));
    }
    o.config_file = positionals.swap_remove(0);
    Ok(o)
}

enum LongErr {
    Unknown,
    Ambiguous(Vec<&'static str>),
}

fn find_long(name: &str) -> Result<&'static OptDef, LongErr> {
    if let Some(d) = OPTS.iter().find(|d| d.long == name) {
        return Ok(d);
    }
    // An abbreviation C knows keeps C's meaning (and C's ambiguity list); ours are
    // matched only when no C option starts with it.
    let (c_opts, ours) = OPTS.split_at(OPTS.len() - OWN_OPTIONS);
    let mut matches: Vec<&OptDef> = c_opts.iter().filter(|d| d.long.starts_with(name)).collect();
    if matches.is_empty() {
        matches = ours.iter().filter(|d| d.long.starts_with(name)).collect();
    }
    match matches.as_slice() {
        [] => Err(LongErr::Unknown),
        [one] => Ok(one),
        many => Err(LongErr::Ambiguous(many.iter().map(|d| d.long).collect())),
    }
}

fn getopt_error(argv0: &str, msg: String) -> CliExit {
    CliExit::usage(
        argv0,
        vec![
            StderrLine::Raw(format!("{argv0}: {msg}")),
            StderrLine::Log("Unrecognized option".into()),
        ],
    )
}

fn note_ignored(o: &mut Options, name: &'static str) {
    if !o.ignored.contains(&name) {
        o.ignored.push(name);
    }
}

/// Runs one option's handler, as C does when getopt returns it.
fn apply(o: &mut Options, def: &OptDef, value: Option<String>) -> Flow {
    let present = value.is_some();
    let v = value.unwrap_or_default();
    let usage_with = |lines: Vec<StderrLine>| Flow::Exit(CliExit::usage(&o.argv0, lines));
    match def.id {
        Id::Ipv6 => o.ipv6 = true,
        Id::MaxSpecial => o.max_special_connections = Some(atoi(&v).max(0)),
        Id::Domain => o.domains.push(v),
        Id::HttpPorts => return apply_http_ports(o, &v),
        Id::Slaves => {
            let w = atoi(&v);
            if !(0..=MAX_WORKERS).contains(&w) {
                // C: assert failure (crash). We: a clear message and usage.
                return usage_with(vec![StderrLine::Log(format!(
                    "'M' option: {w} workers out of range 0..{MAX_WORKERS}"
                ))]);
            }
            o.workers = w;
        }
        Id::ProxyTag | Id::Secret => {
            let letter = if def.id == Id::Secret { 'S' } else { 'P' };
            match parse_hex16(letter, &v) {
                Err(e) => return usage_with(vec![StderrLine::Log(e.to_string())]),
                Ok(b) if def.id == Id::ProxyTag => o.proxy_tag = Some(b),
                Ok(b) => {
                    if o.secrets.len() >= MAX_SECRETS {
                        // C: assert failure (crash) on the 17th. We: message and usage.
                        return usage_with(vec![StderrLine::Log(format!(
                            "too many secrets: at most {MAX_SECRETS} -S options are allowed"
                        ))]);
                    }
                    o.secrets.push(b);
                }
            }
        }
        Id::RandomPadding => o.random_padding_only = true,
        Id::PingInterval => {
            let t = atof(&v);
            o.ping_interval = if t > 0.0 { t } else { DEFAULT_PING_INTERVAL };
            note_ignored(o, "ping-interval");
        }
        Id::WindowClamp => o.window_clamp = Some(atoi(&v)),
        Id::Backlog => o.backlog = atoi(&v),
        Id::Connections => {
            let c = atoi(&v);
            o.max_connections = if c <= 0 { DEFAULT_MAX_CONNECTIONS } else { c };
        }
        Id::Daemonize => {
            o.daemonize = if !present {
                !o.daemonize
            } else {
                atoi(&v) != 0
            };
            note_ignored(o, "daemonize");
        }
        Id::Help => return usage_with(Vec::new()),
        Id::Log => o.log_file = Some(v),
        Id::Port => match parse_port(&v) {
            Some(p) => o.port = Some(p),
            None => return usage_with(Vec::new()),
        },
        Id::User => {
            if let Some(prev) = &o.user {
                return Flow::Exit(CliExit::fatal(
                    1,
                    StderrLine::Log(format!(
                        "wrong option -u{v}, username is already defined as '{prev}'."
                    )),
                ));
            }
            o.user = Some(v);
        }
        Id::Verbosity => {
            o.verbosity = if !present {
                o.verbosity.saturating_add(1)
            } else {
                atoi(&v)
            };
        }
        Id::AesPwd => o.aes_pwd_file = Some(v),
        Id::Nice => {
            o.nice = Some(atoi(&v));
        }
        Id::MsgBuffers => match parse_memory_limit(&v) {
            Ok(n) => {
                o.msg_buffers_size = n;
            }
            Err(msg) => return usage_with(vec![StderrLine::Log(msg)]),
        },
        Id::DisableTcp => {
            o.disable_tcp = true;
            note_ignored(o, "disable-tcp");
        }
        Id::Crc32c => note_ignored(o, "crc32c"),
        Id::CpuThreads => note_ignored(o, "cpu-threads"),
        Id::IoThreads => note_ignored(o, "io-threads"),
        Id::AllowSkipDh => note_ignored(o, "allow-skip-dh"),
        Id::ForceDh => note_ignored(o, "force-dh"),
        Id::MaxAcceptRate => {
            o.max_accept_rate = atoi(&v);
            note_ignored(o, "max-accept-rate");
        }
        Id::MaxDhAcceptRate => {
            o.max_dh_accept_rate = atoi(&v);
            note_ignored(o, "max-dh-accept-rate");
        }
        Id::Multithread => note_ignored(o, "multithread"),
        Id::TcpCpuThreads => note_ignored(o, "tcp-cpu-threads"),
        Id::TcpIoThreads => note_ignored(o, "tcp-iothreads"),
        Id::NatInfo => {
            if let Err(e) = o.nat_info.add(&v) {
                return usage_with(vec![StderrLine::Raw(e.to_string())]);
            }
        }
        Id::Address => match parse_inet_pton4(&v) {
            Some(ip) => o.address = Some(ip),
            None => {
                return Flow::Exit(CliExit::fatal(
                    4,
                    StderrLine::Log(format!("Can not convert '{v}' to ip addr: Success")),
                ))
            }
        },
        Id::HttpStats => o.http_stats = true,
        Id::HandoverSocket => o.handover_socket = Some(v),
        Id::PublicHost => o.public_host = Some(v),
        Id::Check => o.check = true,
        Id::Threads => match v.trim().parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => o.threads = n,
            _ => {
                return usage_with(vec![StderrLine::Log(format!(
                    "--threads: '{v}' is not a thread count (1 to 256)"
                ))])
            }
        },
        Id::HandoverTimeout | Id::DrainTimeout => match parse_seconds(&v) {
            Some(d) if def.id == Id::HandoverTimeout => o.handover_timeout = d,
            Some(d) => o.drain_timeout = d,
            None => {
                return usage_with(vec![StderrLine::Log(format!(
                    "--{}: '{v}' is not a number of seconds (0 to 86400)",
                    def.long
                ))])
            }
        },
    }
    Flow::Continue
}

/// Seconds for our own timeouts: a decimal number from 0 to a day.
fn parse_seconds(s: &str) -> Option<std::time::Duration> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && (0.0..=86_400.0).contains(&v)).then(|| std::time::Duration::from_secs_f64(v))
}

fn apply_http_ports(o: &mut Options, s: &str) -> Flow {
    let usage = |o: &Options, lines| Flow::Exit(CliExit::usage(&o.argv0, lines));
    if s.is_empty() {
        return usage(o, Vec::new());
    }
    let b = s.as_bytes();
    let mut p = 0;
    while b.get(p).is_some_and(|c| (b'1'..=b'9').contains(c)) && o.http_ports.len() < MAX_HTTP_PORTS
    {
        let start = p;
        while b.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        let n: u64 = s
            .get(start..p)
            .and_then(|d| d.parse().ok())
            .unwrap_or(u64::MAX);
        let Some(port) = u16::try_from(n).ok().filter(|&x| x > 0) else {
            // C: assert failure (crash). We: a clear message and usage.
            return usage(
                o,
                vec![StderrLine::Log(format!(
                    "'H' option: port {} out of range 1..65535",
                    s.get(start..p).unwrap_or("")
                ))],
            );
        };
        o.http_ports.push(port);
        if b.get(p) != Some(&b',') {
            break;
        }
        p += 1;
    }
    if p < b.len() {
        return usage(o, Vec::new());
    }
    Flow::Continue
}

/// Test helper: `mtproto-proxy ARGS proxy-multi.conf`, parsed (panics on a usage error).
#[cfg(test)]
pub(crate) fn parse_for_test(args: &[&str]) -> Options {
    let mut v = vec!["mtproto-proxy".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v.push("proxy-multi.conf".into());
    parse_from(v).expect("test arguments parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_operator_options_parse_and_leave_c_abbreviations_alone() {
        let o = parse_from([
            "p",
            "--threads",
            "4",
            "--public-host=p.example",
            "--check",
            "conf",
        ])
        .unwrap();
        assert_eq!(
            (o.threads, o.public_host.as_deref(), o.check),
            (4, Some("p.example"), true)
        );
        let d = parse_from(["p", "conf"]).unwrap();
        assert_eq!((d.threads, d.public_host, d.check), (1, None, false));
        for bad in ["--threads=0", "--threads=257", "--threads=many"] {
            let e = parse_from(["p", bad, "conf"]).unwrap_err();
            assert_eq!(e.code, 2, "{bad}");
            assert!(format!("{:?}", e.stderr).contains("--threads"), "{bad}");
        }
        // `--t` stays ambiguous among C's tcp-* options; `--ch` and `--pu` are ours.
        let amb = parse_from(["p", "--t=1", "conf"]).unwrap_err();
        assert!(
            !format!("{:?}", amb.stderr).contains("'--threads'"),
            "{:?}",
            amb.stderr
        );
        let o = parse_from(["p", "--ch", "--pu=h", "conf"]).unwrap();
        assert!(o.check);
        assert_eq!(o.public_host.as_deref(), Some("h"));
    }

    #[test]
    fn our_handover_options_parse_and_leave_c_abbreviations_alone() {
        let o = parse_from([
            "p",
            "--handover-socket",
            "/run/x.sock",
            "--handover-timeout=2.5",
            "--drain-timeout",
            "0",
            "-u",
            "nobody",
            "conf",
        ])
        .unwrap();
        assert_eq!(o.handover_socket.as_deref(), Some("/run/x.sock"));
        assert_eq!(o.handover_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(o.drain_timeout, std::time::Duration::ZERO);
        // Defaults.
        let d = parse_from(["p", "conf"]).unwrap();
        assert_eq!(d.drain_timeout, crate::net::DRAIN_GRACE);
        assert_eq!(d.handover_timeout, crate::handover::DEFAULT_TIMEOUT);
        // Abbreviations of ours work when no C option starts the same way.
        let a = parse_from(["p", "--handover-s=/x", "--dr=3", "conf"]).unwrap();
        assert_eq!(a.handover_socket.as_deref(), Some("/x"));
        assert_eq!(a.drain_timeout, std::time::Duration::from_secs(3));
        // `--u` is still `--user`; `--d` is ambiguous among C's options only, as in C.
        assert_eq!(
            parse_from(["p", "--u=nobody", "conf"])
                .unwrap()
                .user
                .as_deref(),
            Some("nobody")
        );
        let amb = parse_from(["p", "--d", "conf"]).unwrap_err();
        let said = format!("{:?}", amb.stderr);
        assert!(
            said.contains("ambiguous") && !said.contains("drain-timeout"),
            "{said}"
        );
        // A bad number is a usage error (exit 2) that names the option.
        for bad in [
            "--drain-timeout=-1",
            "--handover-timeout=soon",
            "--drain-timeout=1e9",
        ] {
            let e = parse_from(["p", bad, "conf"]).unwrap_err();
            assert_eq!(e.code, 2, "{bad}");
            assert!(
                format!("{:?}", e.stderr).contains("not a number of seconds"),
                "{bad}"
            );
        }
    }

    /// The `--help` output OBSERVED from the C binary (GetPageSpeed v3.0.10 build,
    /// `/tmp/cref/gps/objs/bin/mtproto-proxy --help`, stdout, exit 2), with argv[0] set to
    /// `./mtproto-proxy`. Its second line (C's version banner, `mtproxy-3.0.5 compiled at
    /// … after commit 4333caf…`) is the one line we replace with [`version_line`].
    const C_HELP_OBSERVED: &str = "usage: ./mtproto-proxy [-v] [-6] [-p<port>] [-H<http-port>{,<http-port>}] [-M<workers>] [-u<username>] [-b<backlog>] [-c<max-conn>] [-l<log-name>] [-W<window-size>] <config-file>
mtproxy-3.0.5 compiled at Nov 25 2026 18:36:54 by gcc 12.2.0 64-bit after commit 4333cafad15acaf6f627b23c852ef3a4e4b68ae0
\tSimple MT-Proto proxy
\t--ipv6/-6                          \tenables ipv6 TCP/UDP support
\t--max-special-connections/-C <arg> \tsets maximal number of accepted client connections per worker
\t--domain/-D <arg>                  \tadds allowed domain for TLS-transport mode, disables other transports; can be specified more than once
\t--http-ports/-H <arg>              \tcomma-separated list of client (HTTP) ports to listen
\t--slaves/-M <arg>                  \tspawn several slave workers; not recommended for TLS-transport mode for better replay protection
\t--proxy-tag/-P <arg>               \t16-byte proxy tag in hex mode to be passed along with all forwarded queries
\t--random-padding-only/-R           \tallow only clients with random padding option enabled
\t--mtproto-secret/-S <arg>          \t16-byte secret in hex mode
\t--ping-interval/-T <arg>           \tsets ping interval in second for local TCP connections (default 5.000)
\t--window-clamp/-W <arg>            \tsets window clamp for client TCP connections
\t--backlog/-b <arg>                 \tsets backlog size
\t--connections/-c <arg>             \tsets maximal connections number
\t--daemonize/-d {arg}               \tchanges between daemonize/not daemonize mode
\t--help/-h                          \tprints help and exits
\t--log/-l <arg>                     \tsets log file name
\t--port/-p <arg>                    \t<port> or <sport>:<eport> sets listening port number or port range
\t--user/-u <arg>                    \tsets user name to make setuid
\t--verbosity/-v {arg}               \tsets or increases verbosity level
\t--aes-pwd <arg>                    \tsets custom secret.conf file
\t--nice <arg>                       \tsets niceness
\t--msg-buffers-size <arg>           \tsets maximal buffers size (default 268435456)
\t--disable-tcp                      \tdo not open listening tcp socket
\t--crc32c                           \tTry to use crc32c instead of crc32 in tcp rpc
\t--cpu-threads <arg>                \tNumber of CPU threads (1-64, default 8)
\t--io-threads <arg>                 \tNumber of I/O threads (1-64, default 16)
\t--allow-skip-dh                    \tAllow skipping DH during RPC handshake
\t--force-dh                         \tForce using DH for all outbound RPC connections
\t--max-accept-rate <arg>            \tmax number of connections per second that is allowed to accept
\t--max-dh-accept-rate <arg>         \tmax number of DH connections per second that is allowed to accept
\t--multithread {arg}                \trun in multithread mode
\t--tcp-cpu-threads <arg>            \tnumber of tcp-cpu threads
\t--tcp-iothreads <arg>              \tnumber of tcp-io threads
\t--nat-info <arg>                   \t<local-addr>:<global-addr>\tsets network address translation for RPC protocol handshake
\t--address <arg>                    \ttries to bind socket only to specified address
\t--http-stats                       \tallow http server to answer on stats queries
";

    const S1: &str = "0123456789abcdef0123456789abcdef";

    fn ok(args: &[&str]) -> Options {
        let mut v = vec!["mtproto-proxy"];
        v.extend_from_slice(args);
        parse_from(v).unwrap()
    }

    fn fail(args: &[&str]) -> CliExit {
        let mut v = vec!["mtproto-proxy"];
        v.extend_from_slice(args);
        parse_from(v).unwrap_err()
    }

    fn is_usage(e: &CliExit) -> bool {
        e.code == 2 && e.stdout.starts_with("usage: mtproto-proxy [-v]")
    }

    #[test]
    fn help_text_equals_c_except_version_line() {
        let ours = usage_text("./mtproto-proxy");
        let mut c_lines: Vec<&str> = C_HELP_OBSERVED.split('\n').collect();
        let mut our_lines: Vec<&str> = ours.split('\n').collect();
        assert_eq!(our_lines.get(1).copied(), Some(version_line().as_str()));
        c_lines.remove(1);
        our_lines.remove(1);
        assert_eq!(our_lines, c_lines);
        assert!(version_line().starts_with("mtproxy-rs-"));
    }

    #[test]
    fn help_and_usage_exit_2_on_stdout() {
        for args in [
            &["-h"][..],
            &["--help"],
            &["--help", "x.conf"],
            &["x.conf", "-h"],
            &["-vh", "x"],
            &[],
            &["a", "b"],
            &["--he"],
        ] {
            let e = fail(args);
            assert!(is_usage(&e), "{args:?}");
        }
        assert!(fail(&["-h"]).stderr.is_empty());
    }

    #[test]
    fn getopt_diagnostics() {
        let e = fail(&["--bogus", "x.conf"]);
        assert!(is_usage(&e));
        assert_eq!(
            e.stderr,
            vec![
                StderrLine::Raw("mtproto-proxy: unrecognized option '--bogus'".into()),
                StderrLine::Log("Unrecognized option".into())
            ]
        );
        let raw = |args: &[&str]| match fail(args).stderr.first() {
            Some(StderrLine::Raw(s)) => s.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(raw(&["-Q", "x"]), "mtproto-proxy: invalid option -- 'Q'");
        assert_eq!(
            raw(&["a", "b", "-Q"]),
            "mtproto-proxy: invalid option -- 'Q'"
        );
        assert_eq!(raw(&["-v3", "x"]), "mtproto-proxy: invalid option -- '3'");
        assert_eq!(raw(&["-d1", "x"]), "mtproto-proxy: invalid option -- '1'");
        assert_eq!(
            raw(&["--bogus=3", "x"]),
            "mtproto-proxy: unrecognized option '--bogus=3'"
        );
        assert_eq!(
            raw(&["--help=3"]),
            "mtproto-proxy: option '--help' doesn't allow an argument"
        );
        assert_eq!(
            raw(&["--http-stats=1", "x"]),
            "mtproto-proxy: option '--http-stats' doesn't allow an argument"
        );
        assert_eq!(
            raw(&["-p"]),
            "mtproto-proxy: option requires an argument -- 'p'"
        );
        assert_eq!(
            raw(&["-u"]),
            "mtproto-proxy: option requires an argument -- 'u'"
        );
        assert_eq!(
            raw(&["--port"]),
            "mtproto-proxy: option '--port' requires an argument"
        );
        assert_eq!(
            raw(&["--http", "x"]),
            "mtproto-proxy: option '--http' is ambiguous; possibilities: '--http-ports' '--http-stats'"
        );
    }

    #[test]
    fn every_option_long_and_short() {
        let o = ok(&[
            "-6",
            "-C",
            "100",
            "-D",
            "a.com",
            "-D",
            "b.com",
            "-H",
            "443,8443",
            "-M",
            "2",
            "-P",
            S1,
            "-R",
            "-S",
            S1,
            "-T",
            "2.5",
            "-W",
            "1000",
            "-b",
            "10",
            "-c",
            "4096",
            "-d",
            "-l",
            "log.txt",
            "-p",
            "8888",
            "-u",
            "nobody",
            "-v",
            "-v",
            "--aes-pwd",
            "ps",
            "--nice",
            "5",
            "--msg-buffers-size",
            "10M",
            "--disable-tcp",
            "--crc32c",
            "--cpu-threads",
            "4",
            "--io-threads",
            "4",
            "--allow-skip-dh",
            "--force-dh",
            "--max-accept-rate",
            "7",
            "--max-dh-accept-rate",
            "8",
            "--multithread",
            "--tcp-cpu-threads",
            "1",
            "--tcp-iothreads",
            "1",
            "--nat-info",
            "10.0.0.1:1.2.3.4",
            "--address",
            "127.0.0.1",
            "--http-stats",
            "cfg.conf",
        ]);
        assert!(o.ipv6);
        assert_eq!(o.max_special_connections, Some(100));
        assert_eq!(o.domains, vec!["a.com", "b.com"]);
        assert_eq!(o.http_ports, vec![443, 8443]);
        assert_eq!(o.workers, 2);
        assert_eq!(o.proxy_tag.map(hex::encode).as_deref(), Some(S1));
        assert!(o.random_padding_only);
        assert_eq!(o.secrets.len(), 1);
        assert_eq!(o.ping_interval, 2.5);
        assert_eq!(o.window_clamp, Some(1000));
        assert_eq!(o.effective_window_clamp(), Some(1000));
        assert_eq!((o.backlog, o.max_connections), (10, 4096));
        assert!(o.daemonize);
        assert_eq!(o.log_file.as_deref(), Some("log.txt"));
        assert_eq!(o.port, Some(PortSpec::Port(8888)));
        assert_eq!(o.user.as_deref(), Some("nobody"));
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.aes_pwd_file.as_deref(), Some("ps"));
        assert_eq!(o.nice, Some(5));
        assert_eq!(o.msg_buffers_size, 10 << 20);
        assert!(o.disable_tcp);
        assert_eq!((o.max_accept_rate, o.max_dh_accept_rate), (7, 8));
        assert_eq!(
            o.nat_info.translate("10.0.0.1".parse().unwrap()),
            "1.2.3.4".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(o.address, Some("127.0.0.1".parse().unwrap()));
        assert!(o.http_stats);
        assert_eq!(o.config_file, "cfg.conf");
        for name in &o.ignored {
            assert!(ignored_options().contains(name));
        }
        assert!(o.ignored.contains(&"force-dh") && o.ignored.contains(&"multithread"));

        let o = ok(&[
            "--ipv6",
            "--max-special-connections=-5",
            "--domain",
            "a.com",
            "--http-ports=443",
            "--slaves",
            "0",
            "--proxy-tag",
            S1,
            "--random-padding-only",
            "--mtproto-secret",
            S1,
            "--ping-interval",
            "0",
            "--window-clamp",
            "1",
            "--backlog",
            "1",
            "--connections",
            "0",
            "--daemonize=0",
            "--log",
            "l",
            "--port",
            "1:2",
            "--user",
            "u",
            "--verbosity=7",
            "cfg.conf",
        ]);
        assert!(o.ipv6);
        assert_eq!(o.max_special_connections, Some(0));
        assert_eq!(o.ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(o.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert!(!o.daemonize);
        assert_eq!(o.port, Some(PortSpec::Range(1, 2)));
        assert_eq!(o.verbosity, 7);
    }

    #[test]
    fn order_dependent_handlers() {
        assert_eq!(ok(&["-vvv", "x"]).verbosity, 3);
        assert_eq!(ok(&["-v", "-v", "--verbosity=1", "-v", "x"]).verbosity, 2);
        assert_eq!(ok(&["--verbosity=", "x"]).verbosity, 0);
        assert_eq!(ok(&["--verb=3", "x"]).verbosity, 3);
        // `--verbosity 3`: the 3 is a positional, so there are two.
        assert!(is_usage(&fail(&["--verbosity", "3", "x"])));
        assert!(!ok(&["-d", "-d", "x"]).daemonize);
        assert!(ok(&["--daemonize=5", "x"]).daemonize);
        assert!(ok(&["--multithread=0", "x"])
            .ignored
            .contains(&"multithread"));
        // Options after the positional, and `--`.
        assert_eq!(
            ok(&["x.conf", "-u", "nobody"]).user.as_deref(),
            Some("nobody")
        );
        assert_eq!(ok(&["--", "-x.conf"]).config_file, "-x.conf");
        assert_eq!(ok(&["-"]).config_file, "-");
        // A required argument takes the next word even if it looks like an option.
        assert_eq!(ok(&["-u", "-v", "x"]).user.as_deref(), Some("-v"));
        assert_eq!(ok(&["-unobody", "x"]).user.as_deref(), Some("nobody"));
        assert_eq!(ok(&["-6vp80", "x"]).port, Some(PortSpec::Port(80)));
    }

    #[test]
    fn user_twice_is_fatal_1() {
        let e = fail(&["-u", "a", "-u", "b", "x"]);
        assert_eq!(e.code, 1);
        assert!(e.stdout.is_empty());
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log(
                "wrong option -ub, username is already defined as 'a'.".into()
            )]
        );
    }

    #[test]
    fn secrets_and_tags() {
        let e = fail(&["-S", "123", "x"]);
        assert!(is_usage(&e));
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log(
                "'S' option requires exactly 32 hex digits".into()
            )]
        );
        let e = fail(&["-P", "0123456789abcdef0123456789abcdeg", "x"]);
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log(
                "'S' option requires exactly 32 hex digits. 'g' is not hexdigit".into()
            )]
        );
        assert!(is_usage(&fail(&["-P", "12", "x"])));
        let mut args: Vec<&str> = Vec::new();
        for _ in 0..16 {
            args.extend_from_slice(&["-S", S1]);
        }
        args.push("x");
        assert_eq!(ok(&args).secrets.len(), 16);
        args.insert(0, S1);
        args.insert(0, "-S");
        // Divergence: C asserts (crash) on the 17th -S; we print usage, exit 2.
        assert!(is_usage(&fail(&args)));
        assert_eq!(
            ok(&["-S", &S1.to_uppercase(), "x"]).secrets[0],
            ok(&["-S", S1, "x"]).secrets[0]
        );
    }

    #[test]
    fn ports() {
        for bad in ["abc", "0", "5:3", "", "-80", "0:5"] {
            assert!(is_usage(&fail(&["-p", bad, "x"])), "{bad}");
        }
        assert_eq!(ok(&["-p", "80x", "x"]).port, Some(PortSpec::Port(80)));
        assert_eq!(ok(&["-p", "80:", "x"]).port, Some(PortSpec::Port(80)));
        assert_eq!(ok(&["-p", " 80", "x"]).port, Some(PortSpec::Port(80)));
        assert_eq!(ok(&["-p", "99999", "x"]).port, Some(PortSpec::Port(99999)));
        assert_eq!(ok(&["-p", "3:3", "x"]).port, Some(PortSpec::Range(3, 3)));
    }

    #[test]
    fn http_ports() {
        assert_eq!(ok(&["-H", "443,", "x"]).http_ports, vec![443]);
        assert_eq!(ok(&["-H", "1,2", "-H", "3", "x"]).http_ports, vec![1, 2, 3]);
        for bad in ["0", "", " 443", "443,,444", "443x", "-1"] {
            assert!(is_usage(&fail(&["-H", bad, "x"])), "{bad:?}");
        }
        // Divergence: C asserts on a port >= 65536; we print usage, exit 2.
        assert!(is_usage(&fail(&["-H", "70000", "x"])));
        let list: Vec<String> = (1..=128).map(|p| p.to_string()).collect();
        assert_eq!(ok(&["-H", &list.join(","), "x"]).http_ports.len(), 128);
        let list: Vec<String> = (1..=129).map(|p| p.to_string()).collect();
        assert!(is_usage(&fail(&["-H", &list.join(","), "x"])));
    }

    #[test]
    fn workers_range() {
        assert_eq!(ok(&["-M", "256", "x"]).workers, 256);
        assert_eq!(ok(&["-M", "abc", "x"]).workers, 0);
        // Divergence: C asserts; we print usage, exit 2.
        assert!(is_usage(&fail(&["-M", "257", "x"])));
        assert!(is_usage(&fail(&["-M", "-1", "x"])));
    }

    #[test]
    fn misc_value_errors() {
        let e = fail(&["--nat-info", "1.2.3.4", "x"]);
        assert!(is_usage(&e));
        assert_eq!(
            e.stderr,
            vec![StderrLine::Raw(
                "expected <local-addr>:<global-addr> in --nat-info".into()
            )]
        );
        let e = fail(&["--address", "::1", "x"]);
        assert_eq!(e.code, 4);
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log(
                "Can not convert '::1' to ip addr: Success".into()
            )]
        );
        let e = fail(&["--msg-buffers-size", "10x", "x"]);
        assert!(is_usage(&e));
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log(
                "Parsing limit fail. Unknown suffix 'x'.".into()
            )]
        );
        let e = fail(&["--msg-buffers-size", "", "x"]);
        assert_eq!(
            e.stderr,
            vec![StderrLine::Log("Parsing limit for option fail: ".into())]
        );
        assert_eq!(
            ok(&["--msg-buffers-size", " 10 ", "x"]).msg_buffers_size,
            10
        );
        assert_eq!(
            ok(&["--msg-buffers-size", "2g", "x"]).msg_buffers_size,
            2 << 30
        );
    }

    #[test]
    fn startup_checks() {
        let o = ok(&["-D", "x.com", "c"]);
        let e = o.check_tls_secrets().unwrap_err();
        assert_eq!(e.code, 2);
        assert!(o.effective_window_clamp().is_none());
        assert!(ok(&["-D", "x.com", "-S", S1, "c"])
            .check_tls_secrets()
            .is_ok());
        assert!(ok(&["-D", "x.com", "-S", S1, "-M", "1", "c"])
            .tls_workers_warning()
            .is_some());
        let e = ok(&["--http-stats", "c"]).check_stats_port().unwrap_err();
        assert_eq!(
            (e.code, e.stderr.clone()),
            (1, vec![StderrLine::Log("fatal: port isn't defined".into())])
        );
        assert!(ok(&["--http-stats", "-p", "1:9", "c"])
            .check_stats_port()
            .is_ok());
        assert!(ok(&["-p", "1", "c"]).check_stats_port().is_ok());
        let o = ok(&["c"]);
        assert_eq!(o.effective_window_clamp(), Some(DEFAULT_WINDOW_CLAMP));
        assert_eq!(
            o.effective_max_special_connections(),
            DEFAULT_MAX_CONNECTIONS
        );
    }
}
