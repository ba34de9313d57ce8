//! The links a user needs to connect (`tg://proxy?…` and `https://t.me/proxy?…`), one per
//! secret, client port and mode, logged at start-up.
//!
//! Modes follow what the proxy accepts: without `-D`, the plain secret (any transport;
//! not under `-R`) and `dd` (random padding); with `-D`, only fake TLS (`ee`, the secret
//! followed by the domain's bytes, once per `-D` domain).
//!
//! The server address in the links is, in this order: `--public-host`; the global address
//! of the first `--nat-info` rule; `--address`; the source address this host uses towards
//! the internet (read from the routing table with an unconnected UDP socket: no packet is
//! sent). A private or unknown address is flagged, since a link with it works only inside
//! that network.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use crate::config::cli::Options;

/// How a client must present the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The 16 bytes in hex: abridged, intermediate or padded intermediate.
    Plain,
    /// `dd` + hex: padded intermediate only (random padding).
    Padded,
    /// `ee` + hex + the domain's bytes in hex: fake TLS towards this `-D` domain.
    FakeTls(String),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Plain => f.write_str("plain"),
            Mode::Padded => f.write_str("dd"),
            Mode::FakeTls(d) => write!(f, "ee {d}"),
        }
    }
}

/// One link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Index of the secret among the `-S` options.
    pub secret_index: usize,
    /// The mode.
    pub mode: Mode,
    /// The server address.
    pub host: String,
    /// The client port (`-H`).
    pub port: u16,
    /// The `secret` parameter: the secret as the client needs it for `mode`.
    pub secret: String,
}

impl Link {
    fn query(&self) -> String {
        format!(
            "server={}&port={}&secret={}",
            self.host, self.port, self.secret
        )
    }

    /// `tg://proxy?server=…&port=…&secret=…`.
    pub fn tg(&self) -> String {
        format!("tg://proxy?{}", self.query())
    }

    /// `https://t.me/proxy?server=…&port=…&secret=…`.
    pub fn t_me(&self) -> String {
        format!("https://t.me/proxy?{}", self.query())
    }
}

/// Where the server address in the links came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    /// `--public-host`.
    PublicHost,
    /// The global side of `--nat-info`.
    NatInfo,
    /// `--address`.
    Address,
    /// The routing table's source address towards the internet.
    Route,
    /// Nothing known: a placeholder.
    Unknown,
}

/// The server address for links and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicHost {
    /// Host name or address, as it goes into a link.
    pub host: String,
    /// Its source.
    pub source: HostSource,
}

/// The placeholder used when no address is known.
pub const UNKNOWN_HOST: &str = "SERVER_ADDRESS";

/// The server address for the links (see the module doc for the order).
pub fn public_host(opts: &Options) -> PublicHost {
    if let Some(h) = opts.public_host.as_ref().filter(|h| !h.is_empty()) {
        return PublicHost {
            host: h.clone(),
            source: HostSource::PublicHost,
        };
    }
    if let Some(r) = opts.nat_info.rules().first() {
        return PublicHost {
            host: r.global.to_string(),
            source: HostSource::NatInfo,
        };
    }
    if let Some(a) = opts.address.filter(|a| !a.is_unspecified()) {
        return PublicHost {
            host: a.to_string(),
            source: HostSource::Address,
        };
    }
    match route_source(opts.ipv6) {
        Some(ip) => PublicHost {
            host: ip.to_string(),
            source: HostSource::Route,
        },
        None => PublicHost {
            host: UNKNOWN_HOST.into(),
            source: HostSource::Unknown,
        },
    }
}

/// The source address the routing table picks towards a public address (an unconnected
/// UDP socket's `connect` sends nothing).
pub fn route_source(ipv6: bool) -> Option<IpAddr> {
    // Telegram's well-known DC 2 address; only the route to it matters.
    let (bind, target): (SocketAddr, SocketAddr) = if ipv6 {
        (
            "[::]:0".parse().ok()?,
            "[2001:67c:4e8:f002::a]:443".parse().ok()?,
        )
    } else {
        (
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::from((Ipv4Addr::new(149, 154, 167, 51), 443)),
        )
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Whether `ip` is only reachable inside a private network (RFC 1918, shared address space
/// RFC 6598, loopback, link-local, IPv6 unique-local).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Every link for `opts`, with the server address `host`.
pub fn links(opts: &Options, host: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (i, secret) in opts.secrets.iter().enumerate() {
        let hex = hex::encode(secret);
        let mut modes: Vec<(Mode, String)> = Vec::new();
        if opts.domains.is_empty() {
            if !opts.random_padding_only {
                modes.push((Mode::Plain, hex.clone()));
            }
            modes.push((Mode::Padded, format!("dd{hex}")));
        } else {
            for d in &opts.domains {
                modes.push((
                    Mode::FakeTls(d.clone()),
                    format!("ee{hex}{}", hex::encode(d.as_bytes())),
                ));
            }
        }
        for port in &opts.http_ports {
            for (mode, s) in &modes {
                out.push(Link {
                    secret_index: i,
                    mode: mode.clone(),
                    host: host.to_string(),
                    port: *port,
                    secret: s.clone(),
                });
            }
        }
    }
    out
}

/// Logs the links (at info), and a warning when the address in them is private or unknown.
pub fn log_links(opts: &Options) {
    let host = public_host(opts);
    let all = links(opts, &host.host);
    if all.is_empty() {
        return;
    }
    match host.source {
        HostSource::Unknown => tracing::warn!(
            "no public address known for the links: set --public-host (or --nat-info behind NAT)"
        ),
        _ if host.host.parse().is_ok_and(is_private) => tracing::warn!(
            host = %host.host,
            "the links carry a private address: they work only inside that network; set --public-host (or --nat-info behind NAT)"
        ),
        _ => {}
    }
    for l in &all {
        tracing::info!(
            "link for secret {} ({}, port {}): {}",
            l.secret_index,
            l.mode,
            l.port,
            l.tg()
        );
        tracing::info!(
            "link for secret {} ({}, port {}): {}",
            l.secret_index,
            l.mode,
            l.port,
            l.t_me()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli::parse_for_test as opts;

    #[test]
    fn modes_follow_what_the_proxy_accepts() {
        let s = "0123456789abcdef0123456789abcdef";
        let o = opts(&["-H", "443,8443", "-S", s, "--public-host", "proxy.example"]);
        let l = links(&o, &public_host(&o).host);
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0].tg(),
            format!("tg://proxy?server=proxy.example&port=443&secret={s}")
        );
        assert_eq!(
            l[1].t_me(),
            format!("https://t.me/proxy?server=proxy.example&port=443&secret=dd{s}")
        );
        assert_eq!(l[3].port, 8443);

        let o = opts(&["-H", "443", "-S", s, "-R", "--address", "10.1.2.3"]);
        let l = links(&o, &public_host(&o).host);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].mode, Mode::Padded);
        assert_eq!(l[0].host, "10.1.2.3");

        let o = opts(&["-H", "443", "-S", s, "-D", "a.example", "-D", "b.example"]);
        let l = links(&o, "1.2.3.4");
        assert_eq!(
            l.iter().map(|l| l.secret.clone()).collect::<Vec<_>>(),
            vec![
                format!("ee{s}{}", hex::encode("a.example")),
                format!("ee{s}{}", hex::encode("b.example"))
            ]
        );
    }

    #[test]
    fn the_address_comes_from_the_most_explicit_option() {
        let base = ["-H", "443", "-S", "0123456789abcdef0123456789abcdef"];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            public_host(&opts(&a))
        };
        let h = with(&[
            "--nat-info",
            "10.0.0.2:203.0.113.7",
            "--address",
            "10.0.0.2",
        ]);
        assert_eq!(
            (h.host.as_str(), h.source),
            ("203.0.113.7", HostSource::NatInfo)
        );
        let h = with(&[
            "--public-host",
            "p.example",
            "--nat-info",
            "10.0.0.2:1.2.3.4",
        ]);
        assert_eq!(h.source, HostSource::PublicHost);
        let h = with(&["--address", "192.0.2.1"]);
        assert_eq!(
            (h.host.as_str(), h.source),
            ("192.0.2.1", HostSource::Address)
        );
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.1.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "172.32.0.1", "2001:db8::1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
