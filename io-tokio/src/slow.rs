//! Steps that hold the member loop, or the storage thread behind it, too long are logged: every
//! request and heartbeat waits behind them.

use std::time::{Duration, Instant};

/// A step longer than this is logged (etcd warns likewise when applying a request takes over
/// 100 ms).
pub const STEP_SLOW: Duration = Duration::from_millis(100);

/// Logs `step` if it took longer than `STEP_SLOW` since `started`.
pub fn warn_if_slow(step: &str, started: Instant) {
    let took = started.elapsed();
    if took > STEP_SLOW {
        tracing::warn!(step, took_ms = took.as_millis() as u64, "member loop step took too long");
    }
}
