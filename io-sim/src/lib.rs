//! # cairn-io-sim
//!
//! The simulated driver for `cairn-core`: a disk that loses unsynced writes on crash
//! (`disk`), per-member clocks with skew (`clock`), and, under `--cfg madsim`, the driver loop
//! on madsim's network with fault injection.

pub mod clock;
pub mod disk;
#[cfg(madsim)]
pub mod member;
pub mod wire;
