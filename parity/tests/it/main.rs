//! Integration tests for the parity harness (one test binary, topic modules).

mod process;
