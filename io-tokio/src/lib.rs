//! # cairn-io-tokio
//!
//! The real driver for `cairn-core`: tokio timers, the TCP peer transport and durable storage
//! on fjall. Not built yet: this crate reserves its place in the workspace layout. Until it
//! exists, `cairn-core` runs only inside tests.
