//! How many heap bytes the replicated state holds per key: applies `KEYS` puts of 256-byte
//! values to distinct 8-byte keys (the memory benchmark's load, docs/benchmarks.md) through
//! `StateMachine::apply`, as a member does, and counts live heap bytes with a counting
//! allocator, then encodes a snapshot.
//!
//!   cargo run --release -p cairn-core --example state_memory [KEYS]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_core::kv::PutRequest;
use cairn_core::request::{Caller, Command, Origin, Proposal};
use cairn_core::state_machine::StateMachine;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let keys: u64 = std::env::args().nth(1).map_or(1_000_000, |s| s.parse().expect("KEYS is a number"));
    let mut sm = StateMachine::new();
    let base = LIVE.load(Ordering::Relaxed);
    for n in 0..keys {
        let put = PutRequest {
            key: format!("{n:08}").into_bytes().into(),
            value: vec![b'x'; 256].into(),
            ..PutRequest::default()
        };
        let proposal = Proposal {
            origin: Some(Origin { member: 1, nonce: 7, seq: n + 1 }),
            caller: Caller::Member,
            command: Command::Put(put),
        };
        // As the member does: the entry's bytes are decoded into the command that applies.
        let data = proposal.encode();
        let decoded = Proposal::decode(&data).expect("decodes");
        let index = n + 1;
        assert!(sm.first_application(decoded.origin.expect("has an origin"), index));
        let applied = sm.apply(index, 1, &data, &decoded.command, &decoded.caller, 1);
        assert!(applied.result.is_ok());
    }
    let state = LIVE.load(Ordering::Relaxed) - base;
    println!("state: {:.1} MB for {keys} keys = {} B/key", mb(state), state as u64 / keys);
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let before = LIVE.load(Ordering::Relaxed);
    let t = std::time::Instant::now();
    let snap = sm.encode();
    println!(
        "snapshot: {:.1} MB encoded in {:.2} s; peak while encoding {:.1} MB over the state",
        mb(snap.len()),
        t.elapsed().as_secs_f64(),
        mb(PEAK.load(Ordering::Relaxed) - before)
    );
}
