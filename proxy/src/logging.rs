//! Logging: tracing with C-like line prefixes, to stderr or a `-l` file that SIGUSR1
//! reopens (for logrotate).
//!
//! Lines look like C's: `[pid][YYYY-MM-DD HH:MM:SS.uuuuuu UTC] LEVEL message k=v`.
//! Verbosity follows `-v`: 0 → info (start-up facts, ME links up/down), 1 → debug
//! (client events), 2+ → trace (per packet). `RUST_LOG` overrides.
//!
//! Divergence from C: SIGUSR1 without `-l` keeps logging to stderr (C redirects its
//! output to /dev/null then, silently ending logging).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Where log lines go; cloneable handle that can reopen its file.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<Sink>>,
}

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

impl LogSink {
    /// A sink writing to `path` (appending), or to stderr when `None`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let sink = match path {
            None => Sink::Stderr,
            Some(p) => Sink::File {
                path: p.to_path_buf(),
                file: open_append(p)?,
            },
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(sink)),
        })
    }

    /// Reopens the log file (SIGUSR1); a no-op for stderr.
    ///
    /// # Errors
    /// When the file cannot be reopened (the old handle is kept then).
    pub fn reopen(&self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::File { path, file } = &mut *g {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
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
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = match &mut *g {
            Sink::Stderr => io::stderr().write_all(buf),
            Sink::File { file, .. } => file.write_all(buf),
        };
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as i64;
        let (y, mo, d) = crate::net::stats_http::civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        write!(
            w,
            "[{}][{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:06} UTC] {} ",
            self.pid,
            t / 3600,
            t % 3600 / 60,
            t % 60,
            now.subsec_micros(),
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
