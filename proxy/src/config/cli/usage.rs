//! The usage text: C's option list verbatim, behind our version line.

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `--help` output OBSERVED from the C binary (GetPageSpeed v3.0.10 build,
    /// `mtproto-proxy --help`, stdout, exit 2), with argv[0] set to `./mtproto-proxy`. Its second line (C's version banner, `mtproxy-3.0.5 compiled at
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
}
