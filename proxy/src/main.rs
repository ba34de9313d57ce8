//! The `mtproto-proxy` binary: the C MTProxy's command line, served by the Rust port.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use mtproxy::app::App;
use mtproxy::config::cli::{self, StderrLine};
use mtproxy::logging::{self, LogSink};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let opts = match cli::parse_from(args) {
        Ok(o) => o,
        Err(exit) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(exit.stdout.as_bytes());
            let _ = out.flush();
            let mut err = std::io::stderr().lock();
            for line in &exit.stderr {
                let text = match line {
                    StderrLine::Raw(s) => s.clone(),
                    StderrLine::Log(s) => log_prefix(s),
                };
                let _ = writeln!(err, "{text}");
            }
            return exit_code(exit.code);
        }
    };
    if opts.check {
        return self_check(&opts);
    }
    // A `-M` worker never opens the `-l` file: it logs through its master (see
    // `LogSink::to_master`), so it needs no rights on the file or its directory.
    let is_worker = std::env::var_os(mtproxy::supervisor::WORKER_ENV).is_some();
    let opened = if is_worker {
        LogSink::to_master()
    } else {
        LogSink::open(opts.log_file.as_deref().map(std::path::Path::new))
    };
    let sink = match opened {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                log_prefix(&format!(
                    "fatal: cannot open log file {}: {e}",
                    opts.log_file.as_deref().unwrap_or("")
                ))
            );
            return exit_code(1);
        }
    };
    logging::init(
        u32::try_from(opts.verbosity.max(0)).unwrap_or(0),
        sink.clone(),
    );
    if let Some(n) = opts.nice {
        if let Err(e) = mtproxy::sys::nice(n) {
            tracing::warn!(error = %e, "cannot change niceness");
        }
    }
    tracing::info!("Invoking engine {}", cli::version_line());
    tracing::info!("config_filename = '{}'", opts.config_file);
    let workers = opts.workers;
    let threads_opt = opts.threads;
    let app = match App::prepare(opts, sink) {
        Ok(a) => Arc::new(a),
        Err(f) => return fatal(&f),
    };
    // One event loop per process, as C: a second runtime thread on a busy machine costs
    // more in cross-thread wake-ups than it gives (see README, Performance). `-M N` spreads
    // clients over N processes; `--threads N` gives one process a multi-thread runtime.
    let threads = if workers > 0 || is_worker {
        1
    } else {
        threads_opt
    };
    let runtime = match mtproxy::os::runtime(threads) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "fatal: cannot start the runtime: {e}");
            return exit_code(1);
        }
    };
    let result = runtime.block_on(app.run());
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => exit_code(code),
        Err(f) => fatal(&f),
    }
}

/// `--check`: one line per check on stdout; exit 1 when any failed.
fn self_check(opts: &cli::Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "fatal: cannot start the runtime: {e}");
            return exit_code(1);
        }
    };
    let lines = runtime.block_on(mtproxy::check::run(opts));
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    let code = mtproxy::check::exit_code(&lines);
    let failed = lines
        .iter()
        .filter(|l| l.status == mtproxy::check::Status::Fail)
        .count();
    let _ = writeln!(
        out,
        "{}",
        if failed == 0 {
            "check passed".to_string()
        } else {
            format!("check failed: {failed} of {} checks", lines.len())
        }
    );
    let _ = out.flush();
    exit_code(code)
}

fn fatal(f: &mtproxy::app::Fatal) -> ExitCode {
    for l in &f.lines {
        tracing::error!("{l}");
    }
    exit_code(f.code)
}

fn log_prefix(line: &str) -> String {
    format!("[{}] {line}", std::process::id())
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
