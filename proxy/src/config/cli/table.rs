//! The option table: every option C's `mtproto-proxy` accepts, in C's order, then ours; and
//! the ones that change nothing here.

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

/// Whether an option takes an argument (getopt's `no_argument`, `required_argument`,
/// `optional_argument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    No,
    Required,
    Optional,
}

/// Which option it is: what its handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Id {
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
    MaxConnectionsPerIp,
}

/// One row of the option table.
pub(super) struct OptDef {
    /// The long name, without `--`.
    pub(super) long: &'static str,
    /// The short letter, if any.
    pub(super) short: Option<u8>,
    /// Whether it takes an argument.
    pub(super) arg: Arg,
    /// Which option it is.
    pub(super) id: Id,
}

/// How many entries at the end of [`OPTS`] are ours, not C's.
pub(super) const OWN_OPTIONS: usize = 7;

/// The option table in C's order (which is also glibc's order for ambiguity lists).
pub(super) const OPTS: &[OptDef] = &[
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
    // Ours, not C's (the last `OWN_OPTIONS` entries): see `getopt::find_long` for abbreviations.
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
    OptDef {
        long: "max-connections-per-ip",
        short: None,
        arg: Arg::Required,
        id: Id::MaxConnectionsPerIp,
    },
];
