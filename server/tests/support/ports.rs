//! Ports for test servers, shared by every harness in a test binary (include it once at the
//! crate root as `mod ports`).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port for a test server: from a range below Linux's ephemeral ports (so no outgoing
/// connection can take it between this check and the server's bind), distinct within this
/// process, offset by the process id so concurrent test processes rarely meet.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97) % 18_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (offset + n) % 18_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
