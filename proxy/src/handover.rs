//! Zero-downtime upgrade: a running proxy hands its listening sockets to a newly started
//! one (`--handover-socket PATH`), in the style of HAProxy's `-x` and Pingora's upgrade
//! socket; and systemd socket activation (`LISTEN_FDS`).
//!
//! The C proxy cannot do either: it binds with `SO_REUSEADDR` only, passes no
//! descriptors and exits at once on SIGTERM.
//!
//! # The handover
//! Every proxy started with `--handover-socket PATH` listens on the unix socket `PATH`
//! (created before privileges are dropped, mode 0600). A new proxy started with the same
//! option first connects to `PATH`:
//! 1. new → old: `takeover <pid>\n`.
//! 2. old → new: one JSON line naming each descriptor (`client` listeners with their
//!    address, the `stats` listener, the `handover` socket itself), with the descriptors
//!    attached (`SCM_RIGHTS`). The old process keeps serving.
//! 3. The new process sets up with these sockets instead of binding (a `-M` master starts
//!    its workers and waits until every one is ready), then says `ready\n`. It does not
//!    accept a client yet.
//! 4. old → new: `ok\n`. The old process stops accepting (the sockets stay open in the
//!    new one, so nothing queued in the kernel is lost and no connection is refused),
//!    keeps relaying for its established clients until they leave or `--drain-timeout`
//!    passes, closes the rest gracefully and exits 0. The new process starts accepting.
//!
//! If the new process fails before `ready`, or is not ready within `--handover-timeout`,
//! the old one drops the conversation and keeps serving; the new one, without `ok`,
//! exits 1 without having accepted anyone.
//!
//! No connection to `PATH` (no file, or a stale one) means a fresh start: bind, then
//! create `PATH`.

use std::io::{self, BufRead, IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::{Deserialize, Serialize};

/// The default of `--handover-timeout`: how long a running proxy waits for the new one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process waits for the old one's `ok` after `ready`.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first answer (the descriptors) may take.
const OFFER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most descriptors one handover carries.
const MAX_FDS: usize = 64;

/// What a descriptor handed over is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A client listening socket (`-H`).
    Client,
    /// The `/stats` listening socket.
    Stats,
    /// The handover unix socket itself.
    Handover,
}

/// One descriptor of an offer, as described in its JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    kind: Kind,
    /// The socket's local address (TCP sockets).
    #[serde(default)]
    addr: Option<SocketAddr>,
}

/// The JSON line of an offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfferLine {
    pid: u32,
    fds: Vec<Entry>,
}

/// The sockets a new process got from the old one (or from systemd).
#[derive(Debug, Default)]
pub struct Inherited {
    /// Client listening sockets with their local addresses.
    pub client: Vec<(SocketAddr, OwnedFd)>,
    /// The `/stats` listening socket (with its address).
    pub stats: Option<(SocketAddr, OwnedFd)>,
    /// The handover unix socket.
    pub handover: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the client socket listening on `addr`, else one on `addr`'s port (systemd's
    /// `ListenStream=443` is `[::]:443` where `-H 443` would bind `0.0.0.0:443`).
    pub fn take_client(&mut self, addr: SocketAddr) -> Option<OwnedFd> {
        let i = self
            .client
            .iter()
            .position(|(a, _)| *a == addr)
            .or_else(|| {
                self.client
                    .iter()
                    .position(|(a, _)| a.port() == addr.port())
            })?;
        Some(self.client.remove(i).1)
    }

    /// Takes the stats socket when it listens on `addr`'s port.
    pub fn take_stats(&mut self, port: u16) -> Option<OwnedFd> {
        match &self.stats {
            Some((a, _)) if a.port() == port => self.stats.take().map(|(_, fd)| fd),
            _ => None,
        }
    }
}

/// The new side's conversation with the old process, between the offer and `ok`.
#[derive(Debug)]
pub struct Takeover {
    stream: UnixStream,
    /// The old process's pid.
    pub old_pid: u32,
}

/// Tries to take the sockets over from a process serving `path`.
///
/// `Ok(None)`: nobody serves `path` (no file, or a stale one): start fresh.
///
/// # Errors
/// A process answered but the conversation failed.
pub fn take_over(path: &Path) -> io::Result<Option<(Takeover, Inherited)>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(OFFER_TIMEOUT))?;
    stream.set_write_timeout(Some(OFFER_TIMEOUT))?;
    stream.write_all(format!("takeover {}\n", std::process::id()).as_bytes())?;
    let (line, fds) = recv_offer(&stream)?;
    let offer: OfferLine = serde_json::from_slice(&line)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("offer: {e}")))?;
    if offer.fds.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "offer names {} sockets but carries {}",
                offer.fds.len(),
                fds.len()
            ),
        ));
    }
    let mut inherited = Inherited::default();
    for (entry, fd) in offer.fds.into_iter().zip(fds) {
        match (entry.kind, entry.addr) {
            (Kind::Client, Some(a)) => inherited.client.push((a, fd)),
            (Kind::Stats, Some(a)) => inherited.stats = Some((a, fd)),
            (Kind::Handover, _) => inherited.handover = Some(fd),
            _ => {}
        }
    }
    Ok(Some((
        Takeover {
            stream,
            old_pid: offer.pid,
        },
        inherited,
    )))
}

fn recv_offer(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, raw) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut raw = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, raw)
    };
    let fds = raw
        .into_iter()
        .map(crate::sys::adopt_inherited_fd)
        .collect::<io::Result<Vec<_>>>()?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the running proxy closed the handover socket",
        ));
    }
    buf.truncate(n);
    // The rest of the line, should it come in more than one piece.
    let mut r = io::BufReader::new(stream);
    while !buf.ends_with(b"\n") {
        let mut more = Vec::new();
        if r.read_until(b'\n', &mut more)? == 0 || buf.len() > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "incomplete offer from the running proxy",
            ));
        }
        buf.extend(more);
    }
    Ok((buf, fds))
}

impl Takeover {
    /// Says `ready` and waits for the old process's `ok`: after that the sockets are ours.
    ///
    /// # Errors
    /// The old process refused (it gave up waiting) or is gone.
    pub fn confirm(self) -> io::Result<u32> {
        let mut s = self.stream;
        s.set_read_timeout(Some(CONFIRM_TIMEOUT))?;
        s.write_all(b"ready\n")?;
        let mut answer = [0u8; 3];
        s.read_exact(&mut answer).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the running proxy (pid {}) did not confirm: {e}",
                    self.old_pid
                ),
            )
        })?;
        if &answer != b"ok\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the running proxy answered something else than ok",
            ));
        }
        Ok(self.old_pid)
    }
}

/// Creates the handover socket at `path` (a stale file there is replaced), mode 0600.
///
/// # Errors
/// When the path cannot be bound, or a live process already serves it.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process serves this handover socket",
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// The descriptors a running process offers.
pub struct Offer {
    /// Client listeners (raw descriptors owned by the serving code; they outlive the offer).
    pub client: Vec<(SocketAddr, RawFd)>,
    /// The stats listener.
    pub stats: Option<(SocketAddr, RawFd)>,
    /// The handover socket.
    pub handover: RawFd,
}

/// What came of one takeover attempt on the old side.
#[derive(Debug)]
pub enum Outcome {
    /// The new process (pid) is ready and was told `ok`: retire now.
    HandedOver(u32),
    /// It failed or was too slow; keep serving.
    Aborted(String),
}

/// Serves one takeover conversation (blocking; run it off the async threads).
pub fn serve_one(stream: UnixStream, offer: &Offer, timeout: Duration) -> Outcome {
    match converse(stream, offer, timeout) {
        Ok(pid) => Outcome::HandedOver(pid),
        Err(e) => Outcome::Aborted(e.to_string()),
    }
}

fn converse(mut stream: UnixStream, offer: &Offer, timeout: Duration) -> io::Result<u32> {
    stream.set_read_timeout(Some(OFFER_TIMEOUT))?;
    stream.set_write_timeout(Some(OFFER_TIMEOUT))?;
    let mut r = io::BufReader::new(stream.try_clone()?);
    let mut hello = String::new();
    r.read_line(&mut hello)?;
    let pid: u32 = hello
        .strip_prefix("takeover ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a takeover request"))?;
    let mut entries = Vec::new();
    let mut fds = Vec::new();
    for (a, fd) in &offer.client {
        entries.push(Entry {
            kind: Kind::Client,
            addr: Some(*a),
        });
        fds.push(*fd);
    }
    if let Some((a, fd)) = offer.stats {
        entries.push(Entry {
            kind: Kind::Stats,
            addr: Some(a),
        });
        fds.push(fd);
    }
    entries.push(Entry {
        kind: Kind::Handover,
        addr: None,
    });
    fds.push(offer.handover);
    let mut line = serde_json::to_vec(&OfferLine {
        pid: std::process::id(),
        fds: entries,
    })?;
    line.push(b'\n');
    sendmsg::<UnixAddr>(
        stream.as_fd().as_raw_fd(),
        &[IoSlice::new(&line)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    tracing::info!(
        pid,
        "handover: sockets sent to the new process; waiting until it is ready"
    );
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let mut ready = String::new();
    match r.read_line(&mut ready) {
        Ok(_) if ready == "ready\n" => {}
        Ok(0) => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the new process (pid {pid}) went away before it was ready"),
            ))
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the new process (pid {pid}) said {ready:?}"),
            ))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the new process (pid {pid}) was not ready within {} s",
                    timeout.as_secs()
                ),
            ))
        }
        Err(e) => return Err(e),
    }
    stream.write_all(b"ok\n")?;
    Ok(pid)
}

/// systemd socket activation: the descriptors passed with `LISTEN_FDS` (from fd 3) when
/// `LISTEN_PID` is this process; each with its local address when it is a TCP listener.
/// The variables are removed so that children do not see them.
pub fn systemd_listeners() -> Vec<(SocketAddr, OwnedFd)> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<i32>().ok())
        .unwrap_or(0);
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !ours || n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for fd in 3..3 + n.min(MAX_FDS as i32) {
        let Ok(owned) = crate::sys::adopt_inherited_fd(fd) else {
            continue;
        };
        let sock = socket2::Socket::from(owned);
        let listening = sock.is_listener().unwrap_or(false);
        match sock.local_addr().ok().and_then(|a| a.as_socket()) {
            Some(addr) if listening => out.push((addr, OwnedFd::from(sock))),
            _ => tracing::warn!(
                fd,
                "LISTEN_FDS: descriptor is not a TCP listening socket; ignored"
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private scratch folder, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "mtproxy-handover-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn an_offer_carries_its_sockets_and_a_ready_new_process_gets_ok() {
        let dir = TempDir::new();
        let path = dir.0.join("h.sock");
        let unix = bind(&path).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let offer = Offer {
            client: vec![(tcp_addr, tcp.as_raw_fd())],
            stats: None,
            handover: unix.as_raw_fd(),
        };
        let new_side = std::thread::spawn({
            let path = path.clone();
            move || {
                let (t, mut inh) = take_over(&path).unwrap().unwrap();
                let fd = inh.take_client(tcp_addr).unwrap();
                assert!(inh.handover.is_some());
                let l = std::net::TcpListener::from(fd);
                assert_eq!(l.local_addr().unwrap(), tcp_addr);
                (t.confirm().unwrap(), l)
            }
        });
        let (s, _) = unix.accept().unwrap();
        match serve_one(s, &offer, Duration::from_secs(5)) {
            Outcome::HandedOver(pid) => assert_eq!(pid, std::process::id()),
            Outcome::Aborted(e) => panic!("{e}"),
        }
        let (old_pid, l) = new_side.join().unwrap();
        assert_eq!(old_pid, std::process::id());
        // The same kernel queue: a connection made now is accepted by the new side.
        let _c = std::net::TcpStream::connect(tcp_addr).unwrap();
        l.set_nonblocking(false).unwrap();
        assert!(l.accept().is_ok());
    }

    #[test]
    fn a_new_process_that_never_gets_ready_is_dropped_after_the_timeout() {
        let dir = TempDir::new();
        let path = dir.0.join("h.sock");
        let unix = bind(&path).unwrap();
        let offer = Offer {
            client: Vec::new(),
            stats: None,
            handover: unix.as_raw_fd(),
        };
        let new_side = std::thread::spawn({
            let path = path.clone();
            move || {
                let (t, _inh) = take_over(&path).unwrap().unwrap();
                std::thread::sleep(Duration::from_millis(600));
                t.confirm()
            }
        });
        let (s, _) = unix.accept().unwrap();
        match serve_one(s, &offer, Duration::from_millis(200)) {
            Outcome::Aborted(e) => assert!(e.contains("not ready"), "{e}"),
            Outcome::HandedOver(_) => panic!("handed over to a process that was never ready"),
        }
        assert!(
            new_side.join().unwrap().is_err(),
            "a refused takeover must fail"
        );
    }

    #[test]
    fn no_file_or_a_stale_file_means_a_fresh_start() {
        let dir = TempDir::new();
        let path = dir.0.join("h.sock");
        assert!(take_over(&path).unwrap().is_none());
        drop(bind(&path).unwrap());
        // The file stays behind with nobody listening.
        assert!(path.exists());
        assert!(take_over(&path).unwrap().is_none());
        let _live = bind(&path).unwrap();
        assert_eq!(
            bind(&path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse,
            "a live handover socket is not replaced"
        );
    }
}
