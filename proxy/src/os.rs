//! Process-level setup done once at start-up: the open-file limit (`-c`) and dropping
//! root privileges (`-u`), with C's rules and messages.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{setgid, setgroups, setuid, Uid, User};

/// Descriptors kept aside beyond the `-c` connections (C's `gap`).
pub const FD_GAP: u64 = 16;

/// What raising the open-file limit achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
    /// Connections allowed: `min(-c, soft - gap)`.
    pub max_connections: u64,
}

/// Raises `RLIMIT_NOFILE` towards `max_connections + 16`.
///
/// C raises the soft (and, as root, the hard) limit and dies when that fails. We raise
/// as far as the hard limit allows (root may raise the hard limit too), never fail, and
/// clamp the connection count to what we got; the caller logs the result.
pub fn raise_fd_limit(max_connections: u64) -> FdLimit {
    let want = max_connections.saturating_add(FD_GAP);
    let (mut soft, mut hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft < want {
        if Uid::effective().is_root()
            && hard < want
            && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok()
        {
            soft = want;
            hard = want;
        } else {
            let target = want.min(hard);
            if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
                soft = target;
            }
        }
    }
    FdLimit {
        soft,
        hard,
        max_connections: max_connections.min(soft.saturating_sub(FD_GAP)),
    }
}

/// The tokio runtime for `threads` worker threads: with one thread (a `-M` worker, a
/// one-CPU affinity mask) the current-thread scheduler, with no cross-thread wake-ups or
/// work stealing; otherwise the multi-thread one.
///
/// # Errors
/// The OS error when the runtime cannot start.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build()
}

/// The user a root process switches to without `-u` (C's `DEFAULT_ENGINE_USER`).
pub const DEFAULT_USER: &str = "mtproxy";

/// Drops root privileges to `user` (default `mtproxy`), as C's `change_user`: only when
/// running as root; a missing user is fatal.
///
/// With `keep_file_access` (the `-M` master when `-l` is given) the process keeps one
/// capability, `CAP_DAC_OVERRIDE`, so that SIGUSR1 can create the log file again after a
/// rotation in a directory only root may write: the workers log through the master, so
/// none of them needs that right. The master accepts no clients. Failing to keep it is
/// not fatal: the reopen may then fail, which is logged and leaves the old file in use.
///
/// # Errors
/// A one-line message in C's words (`can't find the user X to switch to`, …).
pub fn drop_privileges(
    user: Option<&str>,
    keep_file_access: bool,
) -> Result<Option<String>, String> {
    if !Uid::effective().is_root() && !Uid::current().is_root() {
        return Ok(None);
    }
    let name = user.filter(|u| !u.is_empty()).unwrap_or(DEFAULT_USER);
    let pw = User::from_name(name)
        .map_err(|e| format!("can't find the user {name} to switch to: {e}"))?
        .ok_or_else(|| format!("can't find the user {name} to switch to"))?;
    let keep = keep_file_access && caps::securebits::set_keepcaps(true).is_ok();
    setgroups(&[pw.gid]).map_err(|e| format!("failed to clear supplementary groups list: {e}"))?;
    setgid(pw.gid).map_err(|e| format!("setgid ({}) failed: {e}", pw.gid))?;
    setuid(pw.uid).map_err(|e| format!("failed to assume identity of user {name}: {e}"))?;
    if keep {
        if let Err(e) = keep_only_dac_override() {
            // Keep-caps left the whole permitted set: never run on with it.
            caps::clear(None, caps::CapSet::Effective)
                .and_then(|()| caps::clear(None, caps::CapSet::Permitted))
                .and_then(|()| caps::securebits::set_keepcaps(false))
                .map_err(|e| format!("cannot drop the capabilities kept across setuid: {e}"))?;
            tracing::warn!(error = %e, "cannot keep CAP_DAC_OVERRIDE: SIGUSR1 may fail to recreate the log file");
        }
    }
    Ok(Some(name.to_string()))
}

/// After `setuid` with keep-caps: effective and permitted sets become exactly
/// `{CAP_DAC_OVERRIDE}`; keep-caps is cleared again (and execve clears every capability
/// of a non-root process, so the workers the master starts have none).
fn keep_only_dac_override() -> Result<(), caps::errors::CapsError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let only: CapsHashSet = std::iter::once(Capability::CAP_DAC_OVERRIDE).collect();
    caps::set(None, CapSet::Effective, &only)?;
    caps::set(None, CapSet::Permitted, &only)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::securebits::set_keepcaps(false)
}

/// Reads resident, virtual and data sizes of this process (bytes).
pub fn memory_usage() -> (u64, u64, u64) {
    std::fs::read_to_string("/proc/self/status")
        .map(|t| crate::stats::parse_proc_status(&t))
        .unwrap_or_default()
}

/// Open file descriptors of this process (entries of `/proc/self/fd`; 0 when unreadable).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The soft `RLIMIT_NOFILE`.
pub fn max_fds() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limit_is_raised_within_the_hard_limit_and_clamps_connections() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let got = raise_fd_limit(100);
        assert!(got.soft >= 116.min(hard));
        assert_eq!(got.max_connections, 100.min(got.soft - FD_GAP));
        // Asking for more than the hard limit never fails; the count is clamped.
        let big = raise_fd_limit(u64::from(u32::MAX));
        assert!(big.max_connections <= big.soft);
    }
}
