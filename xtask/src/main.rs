//! `cargo xtask <command>`.
fn main() {}
