//! Arbitrary sequences of v2 writes (with odd paths: "..", "//", "_hidden", the root), reads,
//! history scans and watches against the v2 keys store: each gets an answer or one of etcd's
//! errors, never a panic, and the store keeps its invariants.
#![no_main]

use cairn_core::v2::{V2Store, V2Watchers, V2Write};
use libfuzzer_sys::fuzz_target;

fn path(b: u8) -> String {
    const SEGS: [&str; 8] = ["a", "b", "_h", "..", ".", "", "a/b", "c"];
    let mut p = String::new();
    for i in 0..(b % 4) {
        p.push('/');
        p.push_str(SEGS[((b >> (2 * i)) as usize + i as usize) % SEGS.len()]);
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let mut store = V2Store::default();
    let mut watchers = V2Watchers::default();
    let mut now = 1_000_000_000_000_000_000i64;
    for (i, op) in data.chunks(4).enumerate() {
        let [kind, a, b, c] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0), *op.get(3).unwrap_or(&0)];
        let expire_ns = (c & 1 == 1).then_some(now + (b as i64) * 100_000_000);
        let value = format!("v{b}");
        let w = match kind % 9 {
            0 => Some(V2Write::Set { path: path(a), dir: b & 1 == 1, value, expire_ns, refresh: c & 2 != 0 }),
            1 => Some(V2Write::Create { path: path(a), dir: b & 1 == 1, value, unique: c & 4 != 0, expire_ns }),
            2 => Some(V2Write::Update { path: path(a), value, expire_ns, refresh: c & 2 != 0 }),
            3 => Some(V2Write::CompareAndSwap {
                path: path(a),
                prev_value: format!("v{c}"),
                prev_index: (b % 8) as u64,
                value,
                expire_ns,
                refresh: false,
            }),
            4 => Some(V2Write::Delete { path: path(a), dir: b & 1 == 1, recursive: b & 2 != 0 }),
            5 => Some(V2Write::CompareAndDelete { path: path(a), prev_value: format!("v{c}"), prev_index: (b % 8) as u64 }),
            6 => {
                now += (a as i64) * 50_000_000;
                Some(V2Write::Expire { now_ns: now })
            }
            7 => {
                let _ = store.get(&path(a), b & 1 == 1, b & 2 != 0);
                let _ = store.scan(&path(a), b & 1 == 1, (c as u64) % (store.index() + 2));
                None
            }
            _ => {
                let _ = watchers.open(i as u64, &store, &path(a), b & 1 == 1, b & 2 != 0, c as u64 % 4);
                None
            }
        };
        if let Some(w) = w {
            let before = store.index();
            match store.apply(&w) {
                Ok(applied) => {
                    for (e, removed) in &applied.events {
                        let _ = watchers.on_event(e, removed);
                    }
                    assert!(store.index() >= before);
                }
                Err(_) => assert_eq!(store.index(), before, "a failed write changed the index"),
            }
        }
        store.check_invariants().expect("v2 store invariants");
    }
});
