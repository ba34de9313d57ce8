//! The few system calls that have no safe wrapper in `socket2` or `nix`.
//!
//! This is the only module of the workspace allowed to use `unsafe`: `TCP_WINDOW_CLAMP`
//! (the C proxy's `-W`), `nice(2)` (`--nice`) and glibc's `malloc_trim(3)` are plain
//! integer-argument calls with no safe binding in the crates we use. Each call passes a
//! pointer to a local integer of the size the kernel expects (or only an integer) and
//! checks the return value.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Sets `TCP_WINDOW_CLAMP` on a TCP socket.
///
/// # Errors
/// The OS error when the kernel refuses the option.
pub fn set_window_clamp(sock: &impl AsRawFd, clamp: u32) -> io::Result<()> {
    let value: libc::c_int = libc::c_int::try_from(clamp).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live c_int on our stack and we pass its exact size; the fd is
    // borrowed from a live socket for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_WINDOW_CLAMP,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `TCP_WINDOW_CLAMP` of a TCP socket.
///
/// # Errors
/// The OS error when the kernel refuses the query.
pub fn window_clamp(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; `len` holds `value`'s exact size and the
    // kernel writes at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_WINDOW_CLAMP,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(u32::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Adds `inc` to the process niceness (`--nice`).
///
/// # Errors
/// The OS error when the change is refused.
pub fn nice(inc: i32) -> io::Result<()> {
    // nice(2) may legitimately return -1, so errno must be cleared and checked.
    // SAFETY: nice takes an integer and touches no memory of ours.
    let rc = unsafe {
        *libc::__errno_location() = 0;
        libc::nice(inc)
    };
    if rc == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error().unwrap_or(0) != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Returns the heap's free pages to the kernel (glibc `malloc_trim(0)`); `true` when
/// memory was released. A no-op elsewhere than glibc.
///
/// A burst of connections leaves freed buffers scattered between live allocations;
/// glibc only gives back the top of the heap by itself, so without this the proxy's RSS
/// stays at its peak.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain size and only walks the allocator's own
        // free lists under its own locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Takes ownership of a file descriptor inherited from the `-M` master, after checking
/// that it is open. The master passes the numbers of the descriptors it left open
/// across `exec` (listening sockets and the control socket) through the worker
/// bootstrap; each is adopted exactly once.
///
/// # Errors
/// `EBADF` when `fd` is not an open descriptor.
pub fn adopt_inherited_fd(fd: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(io::Error::from)?;
    // Mark it close-on-exec again so it does not leak into anything we spawn.
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(io::Error::from)?;
    // SAFETY: the descriptor is open (checked above), was created by the master for this
    // worker and is adopted once; nothing else in this process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Clears `FD_CLOEXEC` so that a child spawned next inherits `fd` (the `-M` master does
/// this for the listening sockets and each worker's control socket).
///
/// # Errors
/// The OS error from `fcntl`.
pub fn make_inheritable(fd: &impl AsRawFd) -> io::Result<()> {
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(drop)
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_clamp_is_applied_to_a_tcp_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_window_clamp(&l, 131_072).unwrap();
        assert_eq!(window_clamp(&l).unwrap(), 131_072);
        // A UDP socket does not take a TCP option: the error surfaces, no panic.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(set_window_clamp(&u, 131_072).is_err());
    }
}
