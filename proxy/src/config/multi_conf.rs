//! `proxy-multi.conf`: the middle-end (ME) cluster configuration.
//!
//! A byte-exact port of the C grammar (`mtproto/mtproto-config.c` on top of
//! `common/parse-config.c`), including its quirks:
//!
//! * statements are `directive … ;`; whitespace is ` \t\r\n`; `#` starts a comment that
//!   runs to the end of the line; the text ends at the first NUL byte (C string);
//! * directive keywords are matched by **prefix**, in the order `min_connections`,
//!   `max_connections`, `proxy_for`, `proxy`, `timeout`, `default` (so `proxyX:1` is a
//!   `proxy` directive with host `X`);
//! * inside a directive only spaces and tabs separate words, except around the `:` and the
//!   final `;`, which are found by the full skipper (newlines and comments allowed);
//! * line numbers in errors count the newlines consumed so far (0-based), and the
//!   `<file>:<line>: ` prefix is left out while that count is 0;
//! * the `near` excerpt is at most 20 bytes from the cursor, up to CR/LF/NUL, followed by
//!   ` ...` when 20 bytes were shown.
//!
//! Name resolution is the caller's: IP literals are handled here (bracketed IPv6, and the
//! digits-and-dots IPv4 forms glibc accepts, like `127.1` and octal `010.0.0.1`); every
//! other host word goes to the resolver callback, which should mirror C: the
//! `/etc/hosts` table first, then the system resolver only for names containing a dot.
//! For a bracketed non-literal (`[name]`) the resolver is asked for `name` and only an
//! IPv6 answer counts (C asks `gethostbyname2(name, AF_INET6)`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::protocol::crypto::md5;

/// Largest accepted configuration file, in bytes (C `MAX_CONFIG_SIZE`).
pub const MAX_CONFIG_SIZE: usize = 16 << 20;
/// Most clusters a configuration may declare (C `MAX_CFG_CLUSTERS`).
pub const MAX_CFG_CLUSTERS: usize = 1024;
/// Most `proxy`/`proxy_for` lines a configuration may hold (C `MAX_CFG_TARGETS`).
pub const MAX_CFG_TARGETS: usize = 4096;
/// Default ME connections per target, lower bound (C `DEFAULT_CFG_MIN_CONNECTIONS`).
pub const DEFAULT_MIN_CONNECTIONS: i32 = 4;
/// Default ME connections per target, upper bound (C `DEFAULT_CFG_MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: i32 = 8;
/// Default `timeout` in milliseconds (C initialises it to 0.3 s); parsed and unused.
pub const DEFAULT_TIMEOUT_MS: u32 = 300;

/// One ME cluster: every target declared for a dc id, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The dc id (`proxy_for <id>`; the old `proxy` form means 0).
    pub id: i16,
    /// The targets, in declaration order. A target declared twice for the same cluster
    /// appears twice (C keeps both slots, which weights the random pick).
    pub targets: Vec<SocketAddr>,
}

/// A parsed `proxy-multi.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiConf {
    /// The clusters, in order of first appearance (C `auth_cluster[]`).
    pub clusters: Vec<Cluster>,
    /// The id given by the last `default <dc>;` directive, 0 when there is none (as in C).
    pub default_cluster_id: i16,
    /// `Some(default_cluster_id)` when a cluster with that id exists, else `None`
    /// (then packets for unknown dcs are dropped).
    pub default_cluster: Option<i16>,
    /// ME connections per target, lower bound (`min_connections`, default 4).
    pub min_connections: i32,
    /// ME connections per target, upper bound (`max_connections`, default 8).
    pub max_connections: i32,
    /// The `timeout` directive in milliseconds (default 300); C parses it and never uses it.
    pub timeout_ms: u32,
    /// The distinct targets (deduplicated by ip:port), in order of first appearance.
    /// Its length is the stats value `total_declared_targets`.
    pub targets: Vec<SocketAddr>,
    /// The file size in bytes (stats `config_size`).
    pub size: usize,
    /// Lower-case hex MD5 of the whole file (stats `config_md5`).
    pub md5_hex: String,
}

impl MultiConf {
    /// The cluster for a client's dc: the cluster with exactly that id, else the default
    /// cluster, else `None` (C `mf_cluster_lookup(…, force = 1)`).
    pub fn cluster_for_dc(&self, dc: i16) -> Option<&Cluster> {
        self.cluster(dc)
            .or_else(|| self.default_cluster.and_then(|id| self.cluster(id)))
    }

    /// The cluster with exactly this id.
    pub fn cluster(&self, id: i16) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.id == id)
    }

    /// The stats value `config_auth_clusters`: the number of clusters.
    pub fn auth_clusters(&self) -> usize {
        self.clusters.len()
    }

    /// The stats value `total_declared_targets`: distinct ip:port targets.
    pub fn total_declared_targets(&self) -> usize {
        self.targets.len()
    }
}

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// The file is longer than [`MAX_CONFIG_SIZE`]. C's check code is -2.
    ///
    /// C prints the *previously loaded* file name here, which is `(null)` at startup; we
    /// print the file being loaded (a deliberate divergence).
    #[error("configuration file {file} too long (max {MAX_CONFIG_SIZE} bytes)")]
    TooLong {
        /// The file name.
        file: String,
        /// Its size.
        size: usize,
    },
    /// A syntax error, rendered exactly like C's `syntax()`.
    #[error("{}", render_syntax(.file, *.line, .msg, .near, *.ellipsis))]
    Syntax {
        /// The file name.
        file: String,
        /// Newlines consumed before the error (C `cfg_lno`, 0-based).
        line: usize,
        /// The message, e.g. `; expected`.
        msg: String,
        /// Up to 20 bytes of text at the cursor.
        near: Vec<u8>,
        /// Whether 20 bytes were shown (C then appends ` ...`).
        ellipsis: bool,
    },
}

impl ConfError {
    /// The negative code C reports in `config check failed! (code N)` (the exit code of a
    /// failed startup check is its absolute value).
    pub fn code(&self) -> i32 {
        match self {
            ConfError::TooLong { .. } => -2,
            ConfError::Syntax { .. } => -1,
        }
    }
}

fn render_syntax(file: &str, line: usize, msg: &str, near: &[u8], ellipsis: bool) -> String {
    let prefix = if line > 0 {
        format!("{file}:{line}: ")
    } else {
        String::new()
    };
    let tail = if ellipsis { " ..." } else { "" };
    format!(
        "{prefix}fatal: {msg} near {}{tail}",
        String::from_utf8_lossy(near)
    )
}

/// Parses a `proxy-multi.conf` held in `text`, named `file_name` in error messages.
///
/// # Errors
/// [`ConfError`] with C's exact message on any syntax error, an unresolvable host, a limit
/// exceeded, or a file without any `proxy`/`proxy_for` directive.
pub fn parse_multi_conf(
    text: &[u8],
    file_name: &str,
    resolve: &dyn Fn(&str) -> Option<IpAddr>,
) -> Result<MultiConf, ConfError> {
    if text.len() > MAX_CONFIG_SIZE {
        return Err(ConfError::TooLong {
            file: file_name.to_string(),
            size: text.len(),
        });
    }
    // C treats the buffer as a NUL-terminated string.
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut p = Parser {
        buf: &text[..end],
        cur: 0,
        lno: 0,
        file: file_name,
        cut: None,
    };
    let mut conf = p.parse(resolve)?;
    conf.size = text.len();
    conf.md5_hex = hex::encode(md5(&[text]));
    Ok(conf)
}

// Lexemes returned by `getlex_ext`, named after C's `cfg_lex` values.
const LEX_END: i32 = 0;
const LEX_NONE: i32 = -1;
const LEX_MIN_CONN: i32 = b'x' as i32;
const LEX_MAX_CONN: i32 = b'X' as i32;
const LEX_PROXY_FOR: i32 = b'Y' as i32;
const LEX_PROXY: i32 = b'y' as i32;
const LEX_TIMEOUT: i32 = b't' as i32;
const LEX_DEFAULT: i32 = b'D' as i32;

struct Parser<'a> {
    buf: &'a [u8],
    cur: usize,
    lno: usize,
    file: &'a str,
    /// A temporary string end (C writes a NUL after a host word while resolving it).
    cut: Option<usize>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        if self.cut.is_some_and(|c| i >= c) {
            return 0;
        }
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn peek(&self) -> u8 {
        self.at(self.cur)
    }

    fn rest(&self) -> &[u8] {
        self.buf.get(self.cur..).unwrap_or(&[])
    }

    fn err(&self, msg: impl Into<String>) -> ConfError {
        let mut len = 0;
        while len < 20 {
            let b = self.at(self.cur + len);
            if b == 0 || b == b'\r' || b == b'\n' {
                break;
            }
            len += 1;
        }
        ConfError::Syntax {
            file: self.file.to_string(),
            line: self.lno,
            msg: msg.into(),
            near: self.rest().get(..len).unwrap_or(&[]).to_vec(),
            ellipsis: len >= 20,
        }
    }

    /// C `cfg_skipspc`: whitespace, newlines (counted) and comments.
    fn skipspc(&mut self) -> u8 {
        loop {
            match self.peek() {
                b'#' => {
                    self.cur += 1;
                    while self.peek() != 0 && self.peek() != b'\n' {
                        self.cur += 1;
                    }
                }
                b'\n' => {
                    self.lno += 1;
                    self.cur += 1;
                }
                b' ' | b'\t' | b'\r' => self.cur += 1,
                b => return b,
            }
        }
    }

    /// C `cfg_skspc`: spaces and tabs only.
    fn skspc(&mut self) -> u8 {
        while matches!(self.peek(), b' ' | b'\t') {
            self.cur += 1;
        }
        self.peek()
    }

    /// C `cfg_getlex_ext`: punctuation or a prefix-matched keyword.
    fn getlex_ext(&mut self) -> i32 {
        let c = self.skipspc();
        match c {
            b';' | b':' | b'{' | b'}' => {
                self.cur += 1;
                return i32::from(c);
            }
            0 => return LEX_END,
            _ => {}
        }
        const KEYWORDS: [(&[u8], i32); 6] = [
            (b"min_connections", LEX_MIN_CONN),
            (b"max_connections", LEX_MAX_CONN),
            (b"proxy_for", LEX_PROXY_FOR),
            (b"proxy", LEX_PROXY),
            (b"timeout", LEX_TIMEOUT),
            (b"default", LEX_DEFAULT),
        ];
        for (word, lex) in KEYWORDS {
            if self.rest().starts_with(word) {
                self.cur += word.len();
                return lex;
            }
        }
        LEX_NONE
    }

    /// C `cfg_getword`: the length of the host word at the cursor (after spaces/tabs).
    fn getword(&mut self) -> usize {
        self.skspc();
        let mut s = self.cur;
        if self.at(s) != b'[' {
            while is_word_byte(self.at(s)) {
                s += 1;
            }
        } else {
            s += 1;
            while is_word_byte(self.at(s)) || self.at(s) == b':' {
                s += 1;
            }
            if self.at(s) == b']' {
                s += 1;
            }
        }
        s - self.cur
    }

    /// C `cfg_getint`: unsigned decimal digits, 0 when there are none.
    fn getint(&mut self) -> i64 {
        self.skspc();
        let mut x: i64 = 0;
        while self.peek().is_ascii_digit() {
            x = x
                .wrapping_mul(10)
                .wrapping_add(i64::from(self.peek() - b'0'));
            self.cur += 1;
        }
        x
    }

    /// C `cfg_getint_signed_zero`: optional `-` and digits; `i64::MIN` when no digits.
    fn getint_signed_zero(&mut self) -> i64 {
        self.skspc();
        let mut s = self.cur;
        let neg = self.at(s) == b'-';
        if neg {
            s += 1;
        }
        let start = s;
        let mut x: i64 = 0;
        while self.at(s).is_ascii_digit() {
            let d = i64::from(self.at(s) - b'0');
            x = x.wrapping_mul(10);
            x = if neg {
                x.wrapping_sub(d)
            } else {
                x.wrapping_add(d)
            };
            s += 1;
        }
        if s == start {
            i64::MIN
        } else {
            self.cur = s;
            x
        }
    }

    fn expect(&mut self, lex: u8) -> Result<(), ConfError> {
        if self.getlex_ext() != i32::from(lex) {
            return Err(self.err(format!("{} expected", lex as char)));
        }
        Ok(())
    }

    /// C `cfg_parse_server_port`: `<host>:<port>`.
    fn server_port(
        &mut self,
        declared: usize,
        resolve: &dyn Fn(&str) -> Option<IpAddr>,
    ) -> Result<SocketAddr, ConfError> {
        if declared >= MAX_CFG_TARGETS {
            return Err(self.err(format!("too many targets ({declared})")));
        }
        let l = self.getword();
        if l == 0 || l > 63 {
            return Err(self.err("hostname expected"));
        }
        let word = self.rest().get(..l).unwrap_or(&[]);
        // Host words are ASCII by construction.
        let name = String::from_utf8_lossy(word).into_owned();
        let Some(ip) = resolve_host(&name, resolve) else {
            self.cut = Some(self.cur + l);
            let e = self.err(format!("cannot resolve '{name}'\n"));
            self.cut = None;
            return Err(e);
        };
        self.cur += l;
        self.expect(b':')?;
        // C stores the port in an `int`.
        let port = self.getint() as i32;
        if port == 0 {
            return Err(self.err("port number expected"));
        }
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| self.err(format!("port number {port} out of range")))?;
        Ok(SocketAddr::new(ip, port))
    }

    fn parse(&mut self, resolve: &dyn Fn(&str) -> Option<IpAddr>) -> Result<MultiConf, ConfError> {
        let mut conf = MultiConf {
            clusters: Vec::new(),
            default_cluster_id: 0,
            default_cluster: None,
            min_connections: DEFAULT_MIN_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            targets: Vec::new(),
            size: 0,
            md5_hex: String::new(),
        };
        let mut declared = 0usize;
        let mut have_proxy = false;
        while self.skipspc() != 0 {
            let t = self.getlex_ext();
            let mut target_dc: i16 = 0;
            match t {
                LEX_TIMEOUT => {
                    let v = self.getint();
                    if !(10..=30000).contains(&v) {
                        return Err(self.err("invalid timeout"));
                    }
                    conf.timeout_ms = v as u32;
                }
                LEX_DEFAULT | LEX_PROXY_FOR => {
                    let v = self.getint_signed_zero();
                    let Ok(dc) = i16::try_from(v) else {
                        return Err(self.err("invalid target id (integer -32768..32767 expected)"));
                    };
                    if t == LEX_DEFAULT {
                        conf.default_cluster_id = dc;
                    } else {
                        if !matches!(self.peek(), b' ' | b'\t') {
                            return Err(self.err("space expected after target id"));
                        }
                        self.skspc();
                        target_dc = dc;
                    }
                }
                LEX_MAX_CONN => {
                    let v = self.getint() as i32;
                    if v < conf.min_connections || v > 1000 {
                        return Err(self.err("invalid max connections"));
                    }
                    conf.max_connections = v;
                }
                LEX_MIN_CONN => {
                    let v = self.getint() as i32;
                    if v < 1 || v > conf.max_connections {
                        return Err(self.err("invalid min connections"));
                    }
                    conf.min_connections = v;
                }
                LEX_PROXY => {}
                _ => return Err(self.err("'proxy <ip>:<port>;' expected")),
            }
            if t == LEX_PROXY || t == LEX_PROXY_FOR {
                have_proxy = true;
                if conf.clusters.len() >= MAX_CFG_CLUSTERS {
                    return Err(self.err("too many auth clusters"));
                }
                let addr = self.server_port(declared, resolve)?;
                declared += 1;
                let pos = conf.clusters.iter().position(|c| c.id == target_dc);
                match pos {
                    None => conf.clusters.push(Cluster {
                        id: target_dc,
                        targets: vec![addr],
                    }),
                    Some(i) if i + 1 == conf.clusters.len() => {
                        if let Some(c) = conf.clusters.get_mut(i) {
                            c.targets.push(addr);
                        }
                    }
                    Some(_) => {
                        return Err(self.err(format!("proxies for dc {target_dc} intermixed")))
                    }
                }
                if !conf.targets.contains(&addr) {
                    conf.targets.push(addr);
                }
            }
            self.expect(b';')?;
        }
        if !have_proxy {
            return Err(
                self.err("expected to find a mtproto-proxy configuration with `proxy' directives")
            );
        }
        conf.default_cluster = conf
            .cluster(conf.default_cluster_id)
            .map(|_| conf.default_cluster_id);
        Ok(conf)
    }
}

/// Resolves a config host word like C's `kdb_gethostbyname`, with literals handled here.
fn resolve_host(name: &str, resolve: &dyn Fn(&str) -> Option<IpAddr>) -> Option<IpAddr> {
    if name.len() >= 2 && name.starts_with('[') && name.ends_with(']') {
        let inner = name.get(1..name.len() - 1)?;
        if let Ok(v6) = inner.parse::<Ipv6Addr>() {
            return Some(IpAddr::V6(v6));
        }
        if inner.is_empty() || inner.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            // glibc refuses dotted quads for AF_INET6 without asking DNS.
            return None;
        }
        return resolve(inner).filter(IpAddr::is_ipv6);
    }
    let bytes = name.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && !name.ends_with('.')
    {
        return inet_aton_digits(name).map(IpAddr::V4);
    }
    resolve(name)
}

/// glibc `inet_aton` (exact) restricted to digits and dots: 1 to 4 parts, a leading `0`
/// means octal, the last part fills the remaining bytes.
fn inet_aton_digits(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut vals = Vec::with_capacity(parts.len());
    for p in &parts {
        if p.is_empty() {
            return None;
        }
        let v = if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(p, 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        if v > u64::from(u32::MAX) {
            return None;
        }
        vals.push(v as u32);
    }
    let (last, head) = vals.split_last()?;
    if head.iter().any(|&v| v > 255) {
        return None;
    }
    let shift = 8 * (4 - head.len() as u32);
    if shift < 32 && u64::from(*last) >= (1u64 << shift) {
        return None;
    }
    let mut ip: u32 = 0;
    for (i, v) in head.iter().enumerate() {
        ip |= v << (24 - 8 * i as u32);
    }
    ip |= *last;
    Some(Ipv4Addr::from(ip))
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dc {}:", self.id)?;
        for t in &self.targets {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts(name: &str) -> Option<IpAddr> {
        match name {
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "v6host.example" => Some("2001:db8::1".parse().unwrap()),
            _ => None,
        }
    }

    fn parse(s: &str) -> Result<MultiConf, ConfError> {
        parse_multi_conf(s.as_bytes(), "t.conf", &hosts)
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn real_config_shape() {
        let c = parse(
            "# force_probability 10 10\ndefault 2;\nproxy_for 1 149.154.175.50:8888;\n\
             proxy_for -1 149.154.175.50:8888;\nproxy_for 2 149.154.161.144:8888;\n\
             proxy_for 4 91.108.4.159:8888;\nproxy_for 4 91.108.4.224:8888;\n",
        )
        .unwrap();
        assert_eq!(c.clusters.len(), 4);
        assert_eq!(c.auth_clusters(), 4);
        assert_eq!(c.total_declared_targets(), 4);
        assert_eq!(c.default_cluster, Some(2));
        assert_eq!(c.cluster_for_dc(4).unwrap().targets.len(), 2);
        assert_eq!(c.cluster_for_dc(99).unwrap().id, 2);
        assert_eq!(
            c.cluster_for_dc(-1).unwrap().targets,
            vec![sa("149.154.175.50:8888")]
        );
        assert_eq!(
            (c.min_connections, c.max_connections, c.timeout_ms),
            (4, 8, 300)
        );
    }

    #[test]
    fn default_is_zero_without_directive() {
        let c = parse("proxy_for 0 1.2.3.4:1; proxy_for 3 1.2.3.4:2;").unwrap();
        assert_eq!(c.default_cluster_id, 0);
        assert_eq!(c.default_cluster, Some(0));
        assert_eq!(c.cluster_for_dc(7).unwrap().id, 0);
        let c = parse("proxy_for 1 1.2.3.4:1; default 5;").unwrap();
        assert_eq!(c.default_cluster, None);
        assert!(c.cluster_for_dc(7).is_none());
    }

    #[test]
    fn dedup_and_duplicates_in_cluster() {
        let c = parse("proxy_for 1 127.0.0.1:1; proxy_for 1 127.0.0.1:1; proxy_for 2 127.0.0.1:1;")
            .unwrap();
        assert_eq!(c.total_declared_targets(), 1);
        assert_eq!(c.cluster(1).unwrap().targets.len(), 2);
    }

    #[test]
    fn hosts_and_literals() {
        let c = parse("proxy localhost:1; proxy [::1]:2; proxy 127.1:3; proxy 010.0.0.1:4; proxy [v6host.example]:5;")
            .unwrap();
        assert_eq!(
            c.cluster(0).unwrap().targets,
            vec![
                sa("127.0.0.1:1"),
                sa("[::1]:2"),
                sa("127.0.0.1:3"),
                sa("8.0.0.1:4"),
                sa("[2001:db8::1]:5")
            ]
        );
        assert_eq!(
            err("proxy 08.0.0.1:4;"),
            "fatal: cannot resolve '08.0.0.1'\n near 08.0.0.1"
        );
        assert_eq!(
            err("proxy [127.0.0.1]:4;"),
            "fatal: cannot resolve '[127.0.0.1]'\n near [127.0.0.1]"
        );
        assert_eq!(
            err("\n\nproxy [::1:80;"),
            "t.conf:2: fatal: cannot resolve '[::1:80'\n near [::1:80"
        );
    }

    #[test]
    fn error_texts_observed_from_c() {
        // Observed on the GetPageSpeed v3.0.10 build (see vectors/data/multi_conf.json).
        assert_eq!(
            err("proxy_for 1 127.0.0.1:18888;\nproxy_for 2 127.0.0.1:18889\nproxy_for 1 127.0.0.1:1;\n"),
            "t.conf:2: fatal: ; expected near  1 127.0.0.1:1;"
        );
        assert_eq!(
            err("  \n foo;"),
            "t.conf:1: fatal: 'proxy <ip>:<port>;' expected near foo;"
        );
        assert_eq!(
            err(""),
            "fatal: expected to find a mtproto-proxy configuration with `proxy' directives near "
        );
        assert_eq!(err("#c\n"), "t.conf:1: fatal: expected to find a mtproto-proxy configuration with `proxy' directives near ");
    }

    #[test]
    fn limits_and_ranges() {
        assert!(err("timeout 9; proxy 1.2.3.4:1;").contains("invalid timeout"));
        assert_eq!(
            parse("timeout 30000; proxy 1.2.3.4:1;").unwrap().timeout_ms,
            30000
        );
        assert!(err("max_connections 3; proxy 1.2.3.4:1;").contains("invalid max connections"));
        assert!(err("min_connections 9; proxy 1.2.3.4:1;").contains("invalid min connections"));
        let c = parse("max_connections 1000; min_connections 1; proxy 1.2.3.4:1;").unwrap();
        assert_eq!((c.min_connections, c.max_connections), (1, 1000));
        assert!(err("proxy 1.2.3.4:65536;").contains("port number 65536 out of range"));
        assert!(err("proxy 1.2.3.4:0;").contains("port number expected"));
        assert!(err("proxy_for 32768 1.2.3.4:1;").contains("invalid target id"));
        assert!(parse("proxy_for -32768 1.2.3.4:1;").is_ok());
        assert!(err("proxy_for 1\t\t1.2.3.4:1; proxy_for 1 ;").contains("hostname expected"));
        assert!(err("proxy_for 1,1.2.3.4:1;").contains("space expected after target id"));
        assert!(err(&format!("proxy {}:1;", "a".repeat(64))).contains("hostname expected"));
        let mut many = String::new();
        for i in 0..1025 {
            many.push_str(&format!("proxy_for {i} 1.2.3.4:1;\n"));
        }
        assert_eq!(
            err(&many),
            "t.conf:1024: fatal: too many auth clusters near 1.2.3.4:1;"
        );
        let many = "proxy 1.2.3.4:1;\n".repeat(4097);
        assert!(err(&many).contains("too many targets (4096)"));
        let big = vec![b' '; MAX_CONFIG_SIZE + 1];
        assert_eq!(parse_multi_conf(&big, "b", &hosts).unwrap_err().code(), -2);
    }

    #[test]
    fn intermixed() {
        assert_eq!(
            err("proxy_for 1 1.2.3.4:1;\nproxy_for 2 1.2.3.4:1;\nproxy_for 1 1.2.3.4:2;"),
            "t.conf:2: fatal: proxies for dc 1 intermixed near ;"
        );
    }

    #[test]
    fn stats_facts() {
        let text = b"proxy 1.2.3.4:1;\0garbage";
        let c = parse_multi_conf(text, "t", &hosts).unwrap();
        assert_eq!(c.size, text.len());
        // python: hashlib.md5(b"proxy 1.2.3.4:1;\0garbage").hexdigest()
        assert_eq!(c.md5_hex.len(), 32);
        assert_eq!(c.md5_hex, hex::encode(md5(&[text])));
    }

    #[test]
    fn excerpt_ellipsis() {
        assert_eq!(
            err("bogus_directive_with_long_name;"),
            "fatal: 'proxy <ip>:<port>;' expected near bogus_directive_with ..."
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_multi_conf(&data, "f", &hosts);
        }

        #[test]
        fn never_panics_on_grammar_soup(parts in proptest::collection::vec(
            prop_oneof![
                Just("proxy"), Just("proxy_for"), Just("default"), Just("timeout"),
                Just("min_connections"), Just("max_connections"), Just(" "), Just("\n"),
                Just(";"), Just(":"), Just("-"), Just("1"), Just("65535"), Just("127.0.0.1"),
                Just("[::1]"), Just("#"), Just("["), Just("]"), Just("localhost"), Just("\t"),
            ], 0..40)) {
            let s: String = parts.concat();
            let _ = parse_multi_conf(s.as_bytes(), "f", &hosts);
        }
    }
}
