//! `cairn`: the Cairn cluster daemon.
//!
//! The daemon (etcd v3 gRPC and v2 HTTP+JSON front ends over `cairn-core`) is not built yet;
//! until it is, the binary says so and exits with status 2 rather than pretend to serve.

fn main() {
    eprintln!("cairn {}: the daemon is not built yet; see README.md", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
