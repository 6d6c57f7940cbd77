//! # cairn-sim-tests
//!
//! Cairn under deterministic simulation: a whole cluster of `cairn-core` members runs under
//! madsim (`cairn-io-sim`) with faults injected, client histories are checked, and any run
//! replays bit-for-bit from its seed.
//!
//! - `params`: one seed derives every parameter of a run.
//! - `run` (madsim builds): the run itself: safety phase with faults, heal phase, checks.
//! - `workload` (madsim builds): key-value, lease and watch clients.
//! - `observer` (madsim builds): member outputs to observations, trace lines and invariant checks.
//! - `invariants`: Raft's safety properties, one module each.
//! - `linearizability`: the history checker; `watch_check`: the watch guarantees;
//!   `auth_check`: no operation without the permission in force when it applied.
//! - `auth_workload` (madsim builds): an admin granting and revoking, users reading and writing.
//! - `history`, `observe`, `trace`: the data the checkers read.
//!
//! The checkers are plain Rust and tested in every build; the simulation itself builds only
//! with `RUSTFLAGS="--cfg madsim"` (see the README for the seed runner).

pub mod auth_check;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod observe;
pub mod params;
pub mod trace;
pub mod watch_check;

#[cfg(madsim)]
pub mod auth_workload;
#[cfg(madsim)]
pub mod observer;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod workload;
