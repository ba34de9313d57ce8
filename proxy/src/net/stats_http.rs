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

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

/// Decides the answer for a request head: `(status, content type, body)`.
async fn route(head: &[u8], peer: IpAddr, source: &StatsSource) -> (u16, &'static str, String) {
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
        return (501, "text/html", error_page(501));
    }
    if peer != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return (404, "text/html", error_page(404));
    }
    match uri {
        "/stats" => (200, "text/plain", source().await.render_stats()),
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            source().await.render_prometheus(),
        ),
        _ => (404, "text/html", error_page(404)),
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let head = format!(
        "HTTP/1.1 {code} {}\r\nServer: {SERVER}\r\nDate: {}\r\nContent-Type: {ctype}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        reason(code),
        http_date(now),
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

/// Formats unix time as an RFC 7231 date (`Wed, 25 Nov 2026 18:44:50 GMT`).
pub fn http_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_matches_known_instants() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_624_644), "Wed, 25 Nov 2026 16:37:24 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

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
