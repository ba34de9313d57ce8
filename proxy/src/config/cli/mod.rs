//! The `mtproto-proxy` command line, parsed exactly like the C engine does it.
//!
//! C parses with glibc `getopt_long` (permuting: options may follow the config file;
//! unique prefixes of long names are accepted; `--` ends options) and runs each option's
//! handler **as it is met**, so e.g. `-h` prints usage at once and `-v -v --verbosity=1 -v`
//! ends at verbosity 2. The short options `-v` and `-d` take **no** argument (only
//! `--verbosity=N`, `--daemonize=N` and `--multithread=N` have an optional argument, and it
//! must be attached with `=`; `--verbosity 3` makes `3` a positional).
//!
//! We do not use clap here: clap cannot express getopt's order-dependent handlers, the
//! optional-argument rules or glibc's diagnostics, which are part of the observable
//! behaviour. The emulation is small and table-driven; [`parse_from`] is pure and
//! returns either the validated [`Options`] or a [`CliExit`] (exit code plus the exact text
//! for stdout and stderr).
//!
//! Texts observed on the GetPageSpeed v3.0.10 build: usage goes to **stdout** (exit 2);
//! getopt's own complaint (`<argv0>: invalid option -- 'Q'`) and plain `fprintf` lines go
//! to stderr as-is; `kprintf` lines (marked [`StderrLine::Log`]) get the log prefix
//! `[pid][time] ` from the runtime's logger.
//!
//! Layout: [`Options`] with its limits, defaults and start-up checks (`options`); the exit
//! a parse can end in, [`CliExit`] (`exit`); the usage text (`usage`); the option table
//! (`table`); C's value conversions (`values`); and the getopt emulation that ties them
//! together, [`parse_from`] (`getopt`). This file only declares them and re-exports their
//! public items.

mod exit;
mod getopt;
mod options;
mod table;
mod usage;
mod values;

pub use exit::{CliExit, StderrLine};
#[cfg(test)]
pub(crate) use getopt::parse_for_test;
pub use getopt::parse_from;
pub use options::{
    Options, PortSpec, DEFAULT_BACKLOG, DEFAULT_MAX_CONNECTIONS, DEFAULT_MSG_BUFFERS_SIZE,
    DEFAULT_PING_INTERVAL, DEFAULT_WINDOW_CLAMP, MAX_HTTP_PORTS, MAX_SECRETS, MAX_WORKERS,
};
pub use table::ignored_options;
pub use usage::{usage_text, version_line};
