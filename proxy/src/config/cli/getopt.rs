//! The getopt_long emulation: walks argv as glibc does (permuting, long-name prefixes,
//! `--`) and runs each option's handler as it is met, as C does.

use super::exit::{CliExit, StderrLine};
use super::options::{
    Options, DEFAULT_MAX_CONNECTIONS, DEFAULT_PING_INTERVAL, MAX_HTTP_PORTS, MAX_SECRETS,
    MAX_WORKERS,
};
use super::table::{Arg, Id, OptDef, OPTS, OWN_OPTIONS};
use super::values::{atof, atoi, parse_memory_limit, parse_port, parse_seconds};
use crate::config::secret::{parse_hex16, parse_inet_pton4};

/// What a handler tells the parser: go on, or stop with this exit.
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

/// Why a long name found no option.
enum LongErr {
    Unknown,
    Ambiguous(Vec<&'static str>),
}

/// The option a long name (or its unique prefix) names, with glibc's rules.
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

/// getopt's own complaint, then C's "Unrecognized option" and usage.
fn getopt_error(argv0: &str, msg: String) -> CliExit {
    CliExit::usage(
        argv0,
        vec![
            StderrLine::Raw(format!("{argv0}: {msg}")),
            StderrLine::Log("Unrecognized option".into()),
        ],
    )
}

/// Records that an option without effect here was given (once).
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
        Id::MaxConnectionsPerIp => match v.trim().parse::<usize>() {
            Ok(n) if n <= 1_000_000 => o.max_connections_per_ip = n,
            _ => {
                return usage_with(vec![StderrLine::Log(format!(
                    "--max-connections-per-ip: '{v}' is not a connection count (0 to 1000000)"
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

/// `-H`: a comma-separated list of ports, added to those of earlier `-H` options.
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
    use crate::config::cli::options::PortSpec;
    use crate::config::cli::table::ignored_options;

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
        // Without options, every field keeps the default of `Options::new`.
        let d = parse_from(["p", "conf"]).unwrap();
        assert_eq!(
            d,
            Options {
                config_file: "conf".into(),
                ..Options::new("p")
            }
        );
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
}

#[cfg(test)]
mod per_ip_option {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, CliExit> {
        let mut v = vec!["mtproto-proxy".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.push("proxy-multi.conf".into());
        parse_from(v)
    }

    #[test]
    fn max_connections_per_ip_is_parsed_and_bad_values_are_usage_errors() {
        assert_eq!(
            parse_for_test(&["--max-connections-per-ip", "16"]).max_connections_per_ip,
            16
        );
        assert_eq!(
            parse_for_test(&[]).max_connections_per_ip,
            0,
            "no limit by default, as C"
        );
        for bad in ["-1", "lots", "1000001"] {
            let e = parse(&["--max-connections-per-ip", bad]).err();
            assert_eq!(e.map(|e| e.code), Some(2), "{bad}");
        }
    }
}
