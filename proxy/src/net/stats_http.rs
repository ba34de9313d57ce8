//! The `-p` stats listener (`--http-stats`): C-compatible `GET /stats`, plus Prometheus
//! text at `/metrics`.
//!
//! C rules kept (§6 of the reference): bound to 127.0.0.1 only; only `GET` without a body
//! (else 501); only peer 127.0.0.1 (else 404); the URI must be exactly `/stats` (else a
//! 404 HTML page); `Server: MTProxy/1.0`; `Connection: close`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::stats::Snapshot;

/// Produces the snapshot to render (summed over workers in the `-M` master).
pub type StatsSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Snapshot> + Send>> + Send + Sync>;

const SERVER: &str = "MTProxy/1.0";
const MAX_HEAD: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves stats requests on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    source: StatsSource,
    on_query: Arc<dyn Fn() + Send + Sync>,
    shutdown: CancellationToken,
) {
    loop {
        let (sock, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "stats accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let source = source.clone();
        let on_query = on_query.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, handle(sock, peer, source, on_query)).await;
        });
    }
}

async fn handle(
    mut sock: TcpStream,
    peer: SocketAddr,
    source: StatsSource,
    on_query: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if find_head_end(&head).is_some() {
            break;
        }
        if head.len() > MAX_HEAD {
            return write_response(&mut sock, 400, "text/html", &error_page(400)).await;
        }
    }
    on_query();
    let (status, ctype, body) = route(&head, peer.ip(), &source).await;
    write_response(&mut sock, status, ctype, &body).await
}

/// Where a request head ends: the index of the first `\r\n\r\n`, else of the first
/// `\n\n`; `None` while the head is incomplete. Public for the fuzz targets.
pub fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

/// What a request head asks for, by C's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /stats` from 127.0.0.1.
    Stats,
    /// `GET /metrics` from 127.0.0.1.
    Metrics,
    /// Another path, or another peer: 404.
    NotFound,
    /// Not `GET`, or a request with a body: 501.
    NotImplemented,
}

/// Classifies a request head (pure: public for the fuzz targets).
pub fn classify(head: &[u8], peer: IpAddr) -> Route {
    let text = String::from_utf8_lossy(head);
    let first = text.lines().next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("");
    let uri = parts.next().unwrap_or("");
    let has_body = text.lines().any(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .is_some_and(|v| v.trim() != "0")
    });
    if method != "GET" || has_body {
        return Route::NotImplemented;
    }
    if peer != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Route::NotFound;
    }
    match uri {
        "/stats" => Route::Stats,
        "/metrics" => Route::Metrics,
        _ => Route::NotFound,
    }
}

/// Decides the answer for a request head: `(status, content type, body)`.
async fn route(head: &[u8], peer: IpAddr, source: &StatsSource) -> (u16, &'static str, String) {
    match classify(head, peer) {
        Route::NotImplemented => (501, "text/html", error_page(501)),
        Route::NotFound => (404, "text/html", error_page(404)),
        Route::Stats => (200, "text/plain", source().await.render_stats()),
        Route::Metrics => (
            200,
            "text/plain; version=0.0.4",
            source().await.render_prometheus(),
        ),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        501 => "Not Implemented",
        _ => "Internal Server Error",
    }
}

/// The C HTML error page (`error_text_pattern` of the C HTTP server).
fn error_page(code: u16) -> String {
    let r = reason(code);
    format!(
        "<html>\r\n<head><title>{code} {r}</title></head>\r\n<body bgcolor=\"white\">\r\n<center><h1>{code} {r}</h1></center>\r\n<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
    )
}

async fn write_response(
    sock: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let now = crate::clock::unix_now();
    let head = format!(
        "HTTP/1.1 {code} {}\r\nServer: {SERVER}\r\nDate: {}\r\nContent-Type: {ctype}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        reason(code),
        crate::clock::http_date(now),
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> StatsSource {
        Arc::new(|| Box::pin(async { Snapshot::default() }))
    }

    #[tokio::test]
    async fn routes_follow_the_c_rules() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let get = |uri: &str| format!("GET {uri} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        assert_eq!(route(&get("/stats"), lo, &src()).await.0, 200);
        assert_eq!(route(&get("/metrics"), lo, &src()).await.0, 200);
        assert_eq!(route(&get("/stats?x"), lo, &src()).await.0, 404);
        assert_eq!(route(&get("/foo"), lo, &src()).await.0, 404);
        assert_eq!(route(&get("/stats"), other, &src()).await.0, 404);
        let post = b"POST /stats HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        assert_eq!(route(&post, lo, &src()).await.0, 501);
        let (_, _, body) = route(&get("/nope"), lo, &src()).await;
        assert!(body.contains("<h1>404 Not Found</h1>"));
    }
}
