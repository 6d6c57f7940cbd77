//! # cairn-sim-tests
//!
//! Simulation scenarios, workloads, the linearizability and watch checkers, Raft invariants
//! and the seed runner. Not built yet: this crate reserves its place in the workspace layout.
//! The core's own deterministic multi-member tests live in `core/tests`.
