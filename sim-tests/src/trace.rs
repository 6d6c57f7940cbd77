//! The run's trace: one JSON object per line (messages, faults, elections, client operations,
//! commits), in the order things happened. A seed's trace is byte-identical on every replay;
//! the determinism test compares hashes of two runs.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::observe::hash_bytes;

#[derive(Clone, Default)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Kept only when the run writes a trace file; the hash is always kept.
    lines: Option<Vec<String>>,
    hash: u64,
    count: u64,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        let t = Trace::default();
        if keep_lines {
            t.inner.lock().unwrap().lines = Some(Vec::new());
        }
        t
    }

    /// Appends one record: `at_ms` is global simulated time, `kind` what happened.
    pub fn record(&self, at_ms: u64, kind: &str, mut fields: Value) {
        fields["t"] = json!(at_ms);
        fields["kind"] = json!(kind);
        let line = fields.to_string();
        let mut t = self.inner.lock().unwrap();
        t.hash = hash_bytes(line.as_bytes()) ^ t.hash.rotate_left(5).wrapping_mul(0x0100_0000_01b3);
        t.count += 1;
        if let Some(lines) = &mut t.lines {
            lines.push(line);
        }
    }

    /// Appends one record already written as its JSON line (keys in sorted order, with `kind`
    /// and `t`, as `record` writes them): for the most frequent records, which `record` would
    /// build as a JSON value first.
    pub fn record_line(&self, line: String) {
        let mut t = self.inner.lock().unwrap();
        t.hash = hash_bytes(line.as_bytes()) ^ t.hash.rotate_left(5).wrapping_mul(0x0100_0000_01b3);
        t.count += 1;
        if let Some(lines) = &mut t.lines {
            lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.inner.lock().unwrap().hash
    }

    pub fn len(&self) -> u64 {
        self.inner.lock().unwrap().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().unwrap().lines.clone().unwrap_or_default()
    }
}
