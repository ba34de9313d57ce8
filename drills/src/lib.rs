//! Drills (soak, fd, memory, faults) run through `cargo xtask drill`, outside the default test run.
#![forbid(unsafe_code)]
