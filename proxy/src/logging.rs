//! Logging: tracing with C-like line prefixes, to stderr or a `-l` file that SIGUSR1
//! reopens (for logrotate).
//!
//! Lines look like C's: `[pid][YYYY-MM-DD HH:MM:SS.uuuuuu UTC] LEVEL message k=v`.
//! Verbosity follows `-v`: 0 → info (start-up facts, ME links up/down), 1 → debug
//! (client events), 2+ → trace (per packet). `RUST_LOG` overrides.
//!
//! Divergence from C: SIGUSR1 without `-l` keeps logging to stderr (C redirects its
//! output to /dev/null then, silently ending logging).
//!
//! Under `-M` only the master opens the `-l` file. Each worker writes its lines (with its
//! own pid) to its stderr, a pipe the master reads and copies into the file, so a worker
//! running as the `-u` user needs no rights on the file, and SIGUSR1 is one reopen by the
//! master (which keeps the right to create the file; see `os::drop_privileges`). C opens
//! the file in every process by its path, so after a rotation in a directory only root
//! may write, its workers stop logging. A line that cannot be written is dropped and
//! counted (`log_write_failures` in `/stats`), never blocks or stops the process.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Log lines this process could not write (reported as `log_write_failures`).
static WRITE_FAILURES: AtomicI64 = AtomicI64::new(0);

/// How many log lines this process failed to write (or dropped) since it started.
pub fn write_failures() -> i64 {
    WRITE_FAILURES.load(Ordering::Relaxed)
}

/// The longest line a worker writes into its pipe in one piece: a pipe write of at most
/// `PIPE_BUF` (4096 on Linux) bytes is atomic, so lines of several writers never mix.
const PIPE_LINE_MAX: usize = 4096;

/// Where log lines go; cloneable handle that can reopen its file.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<Sink>>,
}

struct Sink {
    target: Target,
    /// Whether the last write failed (the failure is announced on stderr once).
    failing: bool,
}

enum Target {
    Stderr,
    /// A `-M` worker's stderr: a non-blocking pipe to its master, which writes the lines
    /// into the `-l` file (or its own stderr). A full pipe drops the line, never blocks.
    MasterPipe,
    File {
        path: PathBuf,
        file: File,
        /// Whether this process created the file (rather than appending to one that was
        /// there): only such a file is handed to the `-u` user.
        created: bool,
    },
}

impl LogSink {
    /// A sink writing to `path` (appending), or to stderr when `None`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let target = match path {
            None => Target::Stderr,
            Some(p) => {
                let (file, created) = open_append(p)?;
                Target::File {
                    path: p.to_path_buf(),
                    file,
                    created,
                }
            }
        };
        Ok(Self::with(target))
    }

    /// A `-M` worker's sink: its stderr, a pipe that the master reads and writes into the
    /// log. The worker never opens the `-l` file itself, so it needs no rights on it
    /// (the master opened it before dropping privileges, and reopens it on SIGUSR1).
    ///
    /// # Errors
    /// When stderr cannot be made non-blocking.
    pub fn to_master() -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::AsRawFd;
        let fd = io::stderr().as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Self::with(Target::MasterPipe))
    }

    fn with(target: Target) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Sink {
                target,
                failing: false,
            })),
        }
    }

    /// Reopens the log file (SIGUSR1); a no-op for stderr.
    ///
    /// # Errors
    /// When the file cannot be reopened (the old handle is kept then).
    pub fn reopen(&self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Target::File {
            path,
            file,
            created,
        } = &mut g.target
        {
            (*file, *created) = open_append(path)?;
        }
        Ok(())
    }

    /// Before a single process drops privileges (`-u`): a log file this process created
    /// (as root) is given to the user it becomes, so SIGUSR1 can still reopen it when it
    /// was not rotated away — as C, whose log file is created by the `-u` user. A file
    /// that existed before is left as it is (the operator's file, whoever owns it); a
    /// no-op for stderr and a worker's pipe.
    ///
    /// # Errors
    /// When the owner cannot be changed.
    pub fn give_created_file_to(&self, uid: u32, gid: u32) -> io::Result<()> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &g.target {
            Target::File {
                file,
                created: true,
                ..
            } => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
            _ => Ok(()),
        }
    }

    /// Writes one complete line (with its newline) as it is: a worker's line, relayed
    /// by the master.
    pub fn write_line(&self, line: &[u8]) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_line(line);
    }
}

impl Sink {
    /// Writes one line; a line that cannot be written is counted and dropped, never an
    /// error. The first failure after a success is announced on stderr (when the sink is
    /// not stderr itself).
    fn write_line(&mut self, line: &[u8]) {
        let result = match &mut self.target {
            Target::Stderr => io::stderr().write_all(line),
            Target::MasterPipe => write_to_pipe(line),
            Target::File { file, .. } => file.write_all(line),
        };
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    if let Target::File { path, .. } = &self.target {
                        let _ = writeln!(
                            io::stderr(),
                            "[{}] cannot write to log file {}: {e}; lines are dropped and \
                             counted in /stats log_write_failures",
                            std::process::id(),
                            path.display()
                        );
                    }
                }
            }
        }
    }
}

/// One write of at most [`PIPE_LINE_MAX`] bytes (atomic; a longer line is cut and ends
/// with a newline); `WouldBlock` when the master is not keeping up.
fn write_to_pipe(line: &[u8]) -> io::Result<()> {
    let mut err = io::stderr();
    if line.len() <= PIPE_LINE_MAX {
        let n = err.write(line)?;
        return if n == line.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        };
    }
    let mut cut = line[..PIPE_LINE_MAX - 1].to_vec();
    cut.push(b'\n');
    write_to_pipe(&cut)
}

/// Opens `p` for appending, creating it with mode 0640 (as C; the umask may only make it
/// stricter); also says whether it was created now.
fn open_append(p: &Path) -> io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |create_new: bool| {
        OpenOptions::new()
            .create_new(create_new)
            .append(true)
            .mode(0o640)
            .open(p)
    };
    match open(true) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((open(false)?, false)),
        Err(e) => Err(e),
    }
}

/// One log line's writer.
pub struct LineWriter(Arc<Mutex<Sink>>);

impl Write for LineWriter {
    /// Writes one line; a line that cannot be written is dropped, never an error.
    ///
    /// tracing-subscriber reports a failed write with `eprintln!`, which panics when stderr
    /// is a broken pipe (the reader of our output is gone), so an error here would kill
    /// whichever task was logging — e.g. a worker's control task, leaving an orphaned
    /// worker that never notices its master died.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.inner.clone())
    }
}

/// The C-like line format.
struct CFormat {
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for CFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(
            w,
            "[{}][{}] {} ",
            self.pid,
            crate::clock::log_stamp(std::time::SystemTime::now()),
            event.metadata().level()
        )?;
        ctx.format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the global subscriber at verbosity `v` writing to `sink`.
pub fn init(verbosity: u32, sink: LogSink) {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_ansi(false)
        .event_format(CFormat {
            pid: std::process::id(),
        })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mtproxy-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_log_file_is_created_0640_or_stricter_and_recreated_so_on_reopen() {
        let d = scratch("mode");
        let path = d.join("proxy.log");
        let sink = LogSink::open(Some(&path)).unwrap();
        // Whatever the umask, no bit beyond rw-r-----.
        assert_eq!(mode(&path) & !0o640, 0, "mode {:o}", mode(&path));
        assert_eq!(mode(&path) & 0o600, 0o600, "the owner must read and write");
        sink.write_line(b"before\n");

        // logrotate moves the file away; SIGUSR1 reopens by the path.
        let rotated = d.join("proxy.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        sink.write_line(b"after\n");
        assert_eq!(mode(&path) & !0o640, 0, "mode {:o}", mode(&path));
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "before\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_a_log_file_created_here_is_given_to_the_user() {
        use std::os::unix::fs::MetadataExt;
        let d = scratch("owner");
        let created = d.join("new.log");
        let sink = LogSink::open(Some(&created)).unwrap();
        let existing = d.join("old.log");
        std::fs::write(&existing, b"x\n").unwrap();
        let old_owner = std::fs::metadata(&existing).unwrap().uid();
        let appended = LogSink::open(Some(&existing)).unwrap();
        let root = nix::unistd::Uid::effective().is_root();
        let r = sink.give_created_file_to(65534, 65534);
        if root {
            r.unwrap();
            let m = std::fs::metadata(&created).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534));
        } else {
            // Only root may give a file away.
            assert!(r.is_err());
        }
        // A file that was there before is never given away.
        appended.give_created_file_to(65534, 65534).unwrap();
        assert_eq!(std::fs::metadata(&existing).unwrap().uid(), old_owner);
        // Stderr: nothing to give.
        LogSink::open(None)
            .unwrap()
            .give_created_file_to(65534, 65534)
            .unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_reopen_keeps_writing_to_the_old_file() {
        let d = scratch("gone");
        let sub = d.join("logs");
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join("proxy.log");
        let sink = LogSink::open(Some(&path)).unwrap();
        let kept = d.join("kept.log");
        std::fs::rename(&path, &kept).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        assert!(sink.reopen().is_err());
        sink.write_line(b"still here\n");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "still here\n");
        let _ = std::fs::remove_dir_all(&d);
    }
}
