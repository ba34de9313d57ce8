//! Socket reads and writes without surplus system calls.

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Reads what the socket holds into `buf` (which must have spare capacity), returning 0
/// at end of stream and `WouldBlock` when nothing is there.
///
/// A read that leaves part of the spare capacity unused drained the socket: its readiness
/// is cleared right away, saving the `EAGAIN` read that would otherwise follow (a newer
/// readiness event is never lost: tokio only clears the event it saw).
pub fn read_into(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let mut n = 0;
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        let spare = buf.capacity() - buf.len();
        n = stream.try_read_buf(buf)?;
        if n > 0 && n < spare {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match r {
        Err(e) if n == 0 || e.kind() != std::io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(n),
    }
}
