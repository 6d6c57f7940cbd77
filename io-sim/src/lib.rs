//! # cairn-io-sim
//!
//! The simulated driver for `cairn-core` under madsim: simulated network and disk (with loss
//! of unsynced writes on crash), per-node skewed clocks, fault injection. Not built yet: this
//! crate reserves its place in the workspace layout.
