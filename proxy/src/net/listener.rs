//! Client listening sockets (`-H`), built with socket2 so that C's socket options apply:
//! backlog (`-b`), `SO_REUSEADDR`, `SO_REUSEPORT` when several workers share a port,
//! dual-stack IPv6 (`-6`), the TCP window clamp (`-W`), and `SO_KEEPALIVE`. Beyond C:
//! keepalive probes after [`KEEPALIVE_IDLE`] (C's "often" timing; its default leaves the
//! system's two hours) and `TCP_USER_TIMEOUT` ([`USER_TIMEOUT`]), so a vanished client's
//! socket is reclaimed in minutes. Accepted sockets inherit all of them; listeners from
//! systemd or a handover get them too ([`adopt`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

/// Keepalive: idle time before the first probe, and between probes (C's 40 s).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(40);
/// Keepalive probes before the connection is dropped (C's 5).
pub const KEEPALIVE_PROBES: u32 = 5;
/// `TCP_USER_TIMEOUT`: how long sent data (or a keepalive probe) may stay unacknowledged
/// before the kernel drops the connection.
pub const USER_TIMEOUT: Duration = Duration::from_secs(120);

/// How to open one client listening socket.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// The address to bind (`--address`, else the unspecified address of the family).
    pub addr: SocketAddr,
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// Set `SO_REUSEPORT` (several worker processes share the port).
    pub reuse_port: bool,
    /// `TCP_WINDOW_CLAMP` for the listening socket (inherited by accepted sockets).
    pub window_clamp: Option<u32>,
}

impl ListenSpec {
    /// The bind address for `port` given `--address` and `-6`.
    pub fn address_for(port: u16, address: Option<IpAddr>, ipv6: bool) -> SocketAddr {
        let ip = address.unwrap_or(if ipv6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
        SocketAddr::new(ip, port)
    }
}

/// Opens a non-blocking listening socket per `spec`.
///
/// # Errors
/// Any socket, bind or listen error (for example the port is in use).
pub fn bind(spec: &ListenSpec) -> io::Result<std::net::TcpListener> {
    let domain = Domain::for_address(spec.addr);
    let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if spec.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if spec.addr.is_ipv6() {
        // Dual-stack, as C's -6.
        sock.set_only_v6(false)?;
    }
    if let Some(clamp) = spec.window_clamp {
        crate::sys::set_window_clamp(&sock, clamp)?;
    }
    // Accepted sockets inherit it on Linux (checked on the first accept, see
    // [`AcceptTuning`]), which saves a system call per connection.
    sock.set_nodelay(true)?;
    // Inherited by accepted sockets, as TCP_NODELAY: no system call per connection.
    set_liveness(&sock)?;
    sock.set_nonblocking(true)?;
    sock.bind(&spec.addr.into())?;
    sock.listen(spec.backlog)?;
    Ok(sock.into())
}

/// Keepalive ([`KEEPALIVE_IDLE`], [`KEEPALIVE_PROBES`]) and [`USER_TIMEOUT`] on a
/// listening socket; accepted sockets inherit them.
fn set_liveness(sock: &Socket) -> io::Result<()> {
    sock.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_IDLE)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    sock.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Prepares a client listening socket this process did not open (systemd socket
/// activation, a handover from the previous proxy): non-blocking, with the keepalive and
/// [`USER_TIMEOUT`] that [`bind`] sets (a systemd `.socket` unit may set neither).
///
/// # Errors
/// A failing `setsockopt`/`fcntl`.
pub fn adopt(l: &std::net::TcpListener) -> io::Result<()> {
    l.set_nonblocking(true)?;
    set_liveness(&socket2::SockRef::from(l))
}

/// Per-listener memory of whether accepted sockets inherit TCP_NODELAY from the listening
/// socket (Linux does): the first accepted socket is checked with one `getsockopt`; when
/// it did, later sockets skip that `setsockopt`. The window clamp is always set on the
/// accepted socket, as C does: an inherited clamp is not the same (Linux limits it by the
/// window scale chosen for the handshake, 65 536 instead of 131 072).
#[derive(Debug, Default)]
pub struct AcceptTuning {
    nodelay_inherited: Option<bool>,
}

impl AcceptTuning {
    /// Makes sure `stream` has TCP_NODELAY and the window clamp.
    pub fn apply(&mut self, stream: &tokio::net::TcpStream, window_clamp: Option<u32>) {
        let inherited = *self
            .nodelay_inherited
            .get_or_insert_with(|| stream.nodelay().unwrap_or(false));
        if !inherited {
            let _ = stream.set_nodelay(true);
        }
        if let Some(clamp) = window_clamp {
            let _ = crate::sys::set_window_clamp(stream, clamp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `stream` has the options [`AcceptTuning::apply`] makes sure of.
    fn has_tuning(stream: &tokio::net::TcpStream, window_clamp: Option<u32>) -> bool {
        stream.nodelay().unwrap_or(false)
            && window_clamp
                .is_none_or(|c| crate::sys::window_clamp(stream).is_ok_and(|got| got == c))
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_keepalive_and_the_user_timeout() {
        let l = bind(&ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            backlog: 16,
            reuse_port: false,
            window_clamp: None,
        })
        .unwrap();
        assert_accepted_liveness(l).await;
    }

    #[tokio::test]
    async fn an_adopted_listener_gets_keepalive_and_the_user_timeout() {
        // As systemd hands one over: bound and listening, no option of ours.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!socket2::SockRef::from(&l).keepalive().unwrap());
        adopt(&l).unwrap();
        assert_accepted_liveness(l).await;
    }

    /// A socket accepted from `l` has our keepalive and [`USER_TIMEOUT`].
    async fn assert_accepted_liveness(l: std::net::TcpListener) {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        let s = socket2::SockRef::from(&s);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(s.keepalive_interval().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(s.keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
    }

    #[tokio::test]
    async fn every_accepted_socket_gets_nodelay_and_the_clamp() {
        for clamp in [Some(131_072u32), None] {
            let l = bind(&ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                backlog: 16,
                reuse_port: false,
                window_clamp: clamp,
            })
            .unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let addr = l.local_addr().unwrap();
            let mut tuning = AcceptTuning::default();
            let mut keep = Vec::new();
            for _ in 0..3 {
                let c = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (s, _) = l.accept().await.unwrap();
                tuning.apply(&s, clamp);
                assert!(has_tuning(&s, clamp), "clamp {clamp:?}");
                keep.push((c, s));
            }
            assert!(tuning.nodelay_inherited.is_some());
        }
        // A socket that did not inherit anything is tuned.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        plain.set_nonblocking(true).unwrap();
        let plain = tokio::net::TcpListener::from_std(plain).unwrap();
        let c = tokio::net::TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = plain.accept().await.unwrap();
        assert!(!has_tuning(&s, Some(65_536)));
        let mut tuning = AcceptTuning::default();
        tuning.apply(&s, Some(65_536));
        assert!(has_tuning(&s, Some(65_536)));
        assert_eq!(tuning.nodelay_inherited, Some(false));
        drop(c);
    }

    #[test]
    fn two_reuse_port_sockets_share_a_port_and_a_plain_one_cannot() {
        let first = bind(&ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            backlog: 16,
            reuse_port: true,
            window_clamp: Some(131_072),
        })
        .unwrap();
        let addr = first.local_addr().unwrap();
        let spec = ListenSpec {
            addr,
            backlog: 16,
            reuse_port: true,
            window_clamp: None,
        };
        let second = bind(&spec).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        let plain = ListenSpec {
            reuse_port: false,
            ..spec
        };
        assert!(bind(&plain).is_err());
    }
}
