//! What the process prints and exits with when the command line stops it.

use super::usage::usage_text;

/// One line C writes to stderr before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrLine {
    /// Written as-is (getopt's complaints, plain `fprintf`).
    Raw(String),
    /// A `kprintf` line: the runtime prefixes it with `[pid][time] `.
    Log(String),
}

/// "Stop and exit": what the process must print and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    /// The exit code (2 for usage, 1 for fatal, 4 for a bad `--address`).
    pub code: i32,
    /// Text for stdout (the usage text, or empty).
    pub stdout: String,
    /// Lines for stderr, in order, each without its trailing newline.
    pub stderr: Vec<StderrLine>,
}

impl CliExit {
    /// Usage (exit 2): the usage text on stdout after the `stderr` lines.
    pub(super) fn usage(argv0: &str, stderr: Vec<StderrLine>) -> Self {
        CliExit {
            code: 2,
            stdout: usage_text(argv0),
            stderr,
        }
    }

    /// Exit `code` after one line on stderr, nothing on stdout.
    pub(super) fn fatal(code: i32, line: StderrLine) -> Self {
        CliExit {
            code,
            stdout: String::new(),
            stderr: vec![line],
        }
    }
}
