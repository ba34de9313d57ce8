//! The `mtproto-proxy` binary.
fn main() {
    std::process::exit(2);
}
