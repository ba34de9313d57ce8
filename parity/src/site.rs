//! A stand-in for the website behind a `-D` domain: a local TLS 1.3 server (rustls, with a
//! self-signed ECDSA certificate for the name) that records every byte each connection
//! sends it. Fake-TLS tests and the dual-run's fake-TLS phase point the proxy's `-D` at it
//! (as an IP literal on port 443, which C's resolver and ours both accept), so the proxy's
//! domain probe learns a real ServerHello and anything it fronts can be checked byte for
//! byte.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::rustls;

/// A loopback address for a stand-in site on port 443: `127.<100 + pid % 100>.<block>.n`,
/// a new `n` on every call, so concurrent harness processes and the callers sharing one
/// process (each with its own `block`) never share a `:443`.
pub fn loopback_ip(block: u8) -> std::net::Ipv4Addr {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::net::Ipv4Addr::new(
        127,
        100 + (std::process::id() % 100) as u8,
        block,
        1 + (n % 250) as u8,
    )
}

/// How long the site keeps one connection before it closes it.
const CONN_LIFETIME: Duration = Duration::from_secs(30);

/// What one connection to the site sent.
#[derive(Debug, Default)]
pub struct Conn {
    bytes: Mutex<Vec<u8>>,
    done: AtomicBool,
}

impl Conn {
    /// Every byte received so far.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.bytes).clone()
    }

    /// Whether the connection has ended.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// A socket that appends every byte read to its [`Conn`].
struct Tee {
    inner: TcpStream,
    log: Arc<Conn>,
}

impl AsyncRead for Tee {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            lock(&me.log.bytes).extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The stand-in site; stops listening when dropped.
pub struct DomainServer {
    /// Where it listens.
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DomainServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS 1.3 acceptor for `name` with a fresh self-signed certificate.
///
/// ECDSA P-256 (C's probe offers no Ed25519): the signature's DER length varies by a few
/// bytes, so the first encrypted record does too, as on many real sites.
///
/// # Errors
/// When the certificate or the TLS configuration cannot be made.
pub fn tls_acceptor(name: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl DomainServer {
    /// Listens on `addr`; serves TLS 1.3 for `name` when `tls`, else only records.
    ///
    /// # Errors
    /// When `addr` cannot be bound (port 443 needs root) or TLS cannot be set up.
    pub async fn start(addr: SocketAddr, name: &str, tls: bool) -> anyhow::Result<Self> {
        Self::start_with(addr, name, tls, false).await
    }

    /// Like [`start`](Self::start) with TLS, but a connection that does not speak TLS is
    /// closed by the site as soon as its first bytes arrived (a site hanging up on a
    /// prober), for the half-open fronting drill.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_closing(addr: SocketAddr, name: &str) -> anyhow::Result<Self> {
        Self::start_with(addr, name, true, true).await
    }

    async fn start_with(
        addr: SocketAddr,
        name: &str,
        tls: bool,
        close_plain: bool,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the stand-in site at {addr}: {e}"))?;
        let acceptor = if tls { Some(tls_acceptor(name)?) } else { None };
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let list = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let conn = Arc::new(Conn::default());
                lock(&list).push(conn.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        CONN_LIFETIME,
                        serve_conn(s, conn.clone(), acceptor, close_plain),
                    )
                    .await;
                    conn.done.store(true, Ordering::SeqCst);
                });
            }
        });
        Ok(Self { addr, conns, task })
    }

    /// Every connection so far, oldest first.
    pub fn conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).clone()
    }

    /// Waits up to `wait` until some connection satisfies `pred(bytes, finished)`.
    pub async fn wait_for(&self, wait: Duration, pred: impl Fn(&[u8], bool) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.conns().iter().any(|c| pred(&c.bytes(), c.done())) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `wait` until a finished connection received exactly `expected`.
    pub async fn received_exactly(&self, expected: &[u8], wait: Duration) -> bool {
        self.wait_for(wait, |b, done| done && b == expected).await
    }

    /// What each connection received: length, first bytes, finished.
    pub fn summary(&self) -> String {
        self.conns()
            .iter()
            .map(|c| {
                let b = c.bytes();
                format!(
                    "{} bytes {} done={}",
                    b.len(),
                    hex::encode(&b[..b.len().min(8)]),
                    c.done()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

async fn serve_conn(
    s: TcpStream,
    conn: Arc<Conn>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    close_plain: bool,
) {
    let tee = Tee {
        inner: s,
        log: conn,
    };
    let mut raw = match acceptor {
        Some(acc) => match acc.accept(tee).into_fallible().await {
            Ok(mut tls) => {
                let mut b = [0u8; 4096];
                while let Ok(n) = tls.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
                tls.into_inner().0
            }
            Err(_) if close_plain => return,
            Err((_, io)) => io,
        },
        None => tee,
    };
    let mut b = [0u8; 4096];
    while let Ok(n) = raw.read(&mut b).await {
        if n == 0 {
            break;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
