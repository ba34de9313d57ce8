//! `cargo xtask <command>`: the project's automation, one module per subcommand.
//!
//! * `dualrun` — run the reference (C build) and the candidate side by side on the same
//!   seeded workload and write `artifacts/dualrun/dualrun-report.json` (exit 1 on FAIL).
//! * `vectors` — replay every vector family, print a count per family and write
//!   `artifacts/vectors/vectors-report.json`; fails when any vector fails.
//! * `bench` — the candidate against the C build on loopback (throughput, connection
//!   rate, latency, idle memory and CPU, start-up); writes `artifacts/bench/bench-report.json`
//!   and `bench.svg`.
//! * `drill` — soak, descriptor, memory and fault drills against the candidate and the C
//!   build; writes `artifacts/drills/drills-report.json` and `drills.svg` (exit 1 when
//!   the candidate FAILs a drill).
//! * `cutover` — the cutover and rollback rehearsal under live traffic (C → port, port →
//!   C, the naive baseline, the port's own zero-downtime upgrade); writes
//!   `artifacts/cutover/cutover-report.json` and `cutover.svg` (exit 1 when a gated
//!   criterion fails).
//! * `gate` — the migration's go/no-go: the dual-run, the quick drills and the quick
//!   cutover rehearsal in one run; writes `artifacts/gate/gate-report.json` and
//!   `gate-report.md` (and appends the Markdown to `$GITHUB_STEP_SUMMARY`); exit 0 on GO,
//!   1 on NO-GO.
//! * `image` — linux/amd64 images from local material (debootstrap base, cached; the
//!   candidate from the release binary; the reference wrapping a given C binary).
//! * `coverage` — the functional coverage report of the migration (13 domains: modules,
//!   tests found by attribute, the latest evidence, divergences, line coverage).
//! * `fuzz` — seed (`--seed`), run and minimize the cargo-fuzz targets of `fuzz/`.
//! * `tidy` — the source checks that also run as tests under `cargo test` (the protocol
//!   core stays sans-IO; every crate root forbids unsafe code; no crate has an import
//!   circle; the proxy's network layer names nothing of the application layer).
//!
//! Adding a subcommand: write a module with a `#[derive(clap::Args)]` struct that has a
//! `fn run(self) -> anyhow::Result<()>`, then add a variant to [`Command`] and an arm to
//! [`Command::run`].
//!
//! This file only declares the modules and dispatches: what several subcommands share
//! lives in leaf modules ([`workspace`], [`args`]), so no module depends back on the
//! crate root (`cargo xtask tidy` rejects import circles).
#![forbid(unsafe_code)]
// Printing is this binary's job: it is a command-line tool, not a library.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod bench;
mod coverage;
mod cutover;
mod drill;
mod dualrun;
mod fuzz;
mod gate;
mod image;
mod tidy;
mod vectors;
mod workspace;

/// Project automation for mtproxy-rs.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version, about)]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, one module each.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference and the candidate side by side and write the gating report.
    Dualrun(dualrun::Dualrun),
    /// Benchmark the candidate against the C build and write artifacts/bench/.
    Bench(bench::Bench),
    /// Replay every vector family and write artifacts/vectors/vectors-report.json.
    Vectors(vectors::Vectors),
    /// Run the soak, descriptor, memory and fault drills and write artifacts/drills/.
    Drill(drill::Drill),
    /// Rehearse the cutover C → port, the rollback, and the port's upgrade under live
    /// traffic; write artifacts/cutover/.
    Cutover(cutover::Cutover),
    /// The migration gate: dual-run, quick drills and quick cutover rehearsal, one
    /// go/no-go in artifacts/gate/ (exit 0 GO, 1 NO-GO).
    Gate(gate::Gate),
    /// Build linux/amd64 images from local material (candidate, and reference from a C binary).
    Image(image::Image),
    /// Write the functional coverage report of the migration (artifacts/coverage/).
    Coverage(coverage::Coverage),
    /// Run the source checks (also run as tests by `cargo test`).
    Tidy(tidy::Tidy),
    /// Seed, run and minimize the cargo-fuzz targets of fuzz/ (needs cargo-fuzz).
    Fuzz(fuzz::Fuzz),
}

impl Command {
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Dualrun(cmd) => cmd.run(),
            Command::Bench(cmd) => cmd.run(),
            Command::Vectors(cmd) => cmd.run(),
            Command::Drill(cmd) => cmd.run(),
            Command::Cutover(cmd) => cmd.run(),
            Command::Gate(cmd) => cmd.run(),
            Command::Image(cmd) => cmd.run(),
            Command::Coverage(cmd) => cmd.run(),
            Command::Tidy(cmd) => cmd.run(),
            Command::Fuzz(cmd) => cmd.run(),
        }
    }
}

fn main() -> ExitCode {
    match Xtask::parse().command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Xtask::command().debug_assert();
    }
}
