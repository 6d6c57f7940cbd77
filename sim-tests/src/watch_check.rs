//! The watch checker: what each watch session received against the reference event history
//! (`Invariants::reference_events`, every revision as the members applied it), by etcd's watch
//! guarantees (etcd "API guarantees", watch APIs):
//!
//! - Ordered: events arrive in revision order (within a revision, in the order they were made).
//! - Unique: no event arrives twice.
//! - Reliable: no gap: every revision from the start revision up to the last one received that
//!   has events in the watched range arrives.
//! - Atomic: a revision arrives whole: all of its events in the range, together.
//! - Accurate (Cairn's addition): every event is the reference's, field for field (kind, kv,
//!   prev_kv), and nothing arrives for a revision no member applied or for a key out of range.
//!
//! A session that ended `Compacted { compact_revision }` is checked the same way on what it
//! received; it also must have needed a revision below `compact_revision` (the store keeps
//! everything from the compacted revision on, so a watcher needing only that was not owed a
//! compaction).
//!
//! The simulated watch server sends `prev_kv` always; should watches learn to ask for it, a
//! `prev_kv: bool` on the session would say when to expect it stripped.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_core::kv::Event;

use crate::invariants::{describe_bytes, describe_event, describe_events};
use crate::observe::Violation;

/// What one watch received, as its client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchSession {
    pub client: u64,
    pub watch: u64,
    pub key: Bytes,
    /// etcd's conventions: empty for the single key `key`, `[0]` for every key `>= key`,
    /// otherwise `[key, range_end)`.
    pub range_end: Bytes,
    /// The first revision the watch asked for; `<= 0` for "from now on" (then the first revision
    /// owed is unknown and gaps are checked from the first revision received).
    pub start_revision: i64,
    /// Every event received, in arrival order.
    pub received: Vec<Event>,
    pub end: WatchEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Still open when the run ended (or the client stopped listening).
    Open,
    Canceled,
    /// The server ended it: what it needed was compacted away.
    Compacted {
        compact_revision: i64,
    },
}

/// The key `k` is in the range `key`/`range_end` (etcd's conventions).
pub fn key_in_range(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// Checks every session; the first violation found.
pub fn check_watches(
    reference: &BTreeMap<i64, Vec<Event>>,
    sessions: &[WatchSession],
) -> Result<(), Violation> {
    sessions.iter().try_for_each(|s| check_session(reference, s))
}

/// Checks one session against the reference history.
pub fn check_session(reference: &BTreeMap<i64, Vec<Event>>, session: &WatchSession) -> Result<(), Violation> {
    SessionCheck { reference, s: session }.run()
}

struct SessionCheck<'a> {
    reference: &'a BTreeMap<i64, Vec<Event>>,
    s: &'a WatchSession,
}

impl<'a> SessionCheck<'a> {
    fn fail(&self, property: &'static str, detail: String) -> Violation {
        let s = self.s;
        let range = match &s.range_end[..] {
            [] => describe_bytes(&s.key),
            [0] => format!("keys >= {}", describe_bytes(&s.key)),
            end => format!("[{}, {})", describe_bytes(&s.key), describe_bytes(end)),
        };
        Violation {
            property,
            section: "etcd watch API",
            detail: format!(
                "client {} watch {} (on {range} from revision {}, ended {:?}): {detail}",
                s.client, s.watch, s.start_revision, s.end
            ),
        }
    }

    fn in_range(&self, e: &Event) -> bool {
        key_in_range(&self.s.key, &self.s.range_end, &e.kv.key)
    }

    /// The reference's events of `revision` in the watched range.
    fn expected(&self, revision: i64) -> Vec<&'a Event> {
        let s = self.s;
        match self.reference.get(&revision) {
            Some(events) => events.iter().filter(|e| key_in_range(&s.key, &s.range_end, &e.kv.key)).collect(),
            None => Vec::new(),
        }
    }

    fn run(&self) -> Result<(), Violation> {
        let received = &self.s.received;
        let applied_last = self.reference.keys().next_back().copied().unwrap_or(1);
        // Revisions delivered so far, ascending (anything else fails first).
        let mut delivered: Vec<i64> = Vec::new();
        // The lowest revision not yet delivered and owed, if known.
        let mut owed_from = (self.s.start_revision > 0).then_some(self.s.start_revision);
        let mut i = 0;
        while i < received.len() {
            let revision = received[i].kv.mod_revision;
            let n = received[i..].iter().take_while(|e| e.kv.mod_revision == revision).count();
            let (got, later) = (&received[i..i + n], &received[i + n..]);
            if revision > applied_last {
                return Err(self.fail(
                    "Watch Accurate",
                    format!(
                        "received {} at revision {revision}, which no member applied (the last applied \
                         is {applied_last})",
                        describe_event(&got[0])
                    ),
                ));
            }
            if let Some(&p) = delivered.last() {
                if revision < p {
                    return Err(if delivered.binary_search(&revision).is_ok() {
                        self.fail(
                            "Watch Unique",
                            format!(
                                "revision {revision} delivered again, after revision {p}: {}",
                                describe_events(got)
                            ),
                        )
                    } else {
                        self.fail(
                            "Watch Ordered",
                            format!("revision {revision} delivered after revision {p}"),
                        )
                    });
                }
            }
            if self.s.start_revision > 0 && revision < self.s.start_revision {
                return Err(self.fail(
                    "Watch Accurate",
                    format!("received {} before the start revision", describe_event(&got[0])),
                ));
            }
            if let Some(from) = owed_from {
                self.check_no_gap(from, revision, later)?;
            }
            self.check_revision(revision, got, later)?;
            delivered.push(revision);
            owed_from = Some(revision + 1);
            i += n;
        }
        if let (WatchEnd::Compacted { compact_revision }, Some(needed)) = (self.s.end, owed_from) {
            if needed >= compact_revision {
                return Err(self.fail(
                    "Watch Reliable",
                    format!(
                        "ended as compacted at revision {compact_revision}, yet it needed only revisions \
                         from {needed} on, which compaction keeps"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every reference revision in `[from, revision)` with events in range was owed before
    /// `revision`.
    fn check_no_gap(&self, from: i64, revision: i64, later: &[Event]) -> Result<(), Violation> {
        if from >= revision {
            return Ok(());
        }
        for (&q, events) in self.reference.range(from..revision) {
            if !events.iter().any(|e| self.in_range(e)) {
                continue;
            }
            return Err(if later.iter().any(|e| e.kv.mod_revision == q) {
                self.fail("Watch Ordered", format!("revision {q} delivered after revision {revision}"))
            } else {
                self.fail(
                    "Watch Reliable",
                    format!(
                        "missed revision {q}, {}, before revision {revision}",
                        describe_events(self.expected(q))
                    ),
                )
            });
        }
        Ok(())
    }

    /// `got`, the events received together for `revision`, are the reference's in range, in order.
    fn check_revision(&self, revision: i64, got: &[Event], later: &[Event]) -> Result<(), Violation> {
        let expected = self.expected(revision);
        if expected.len() == got.len() && expected.iter().zip(got).all(|(x, y)| *x == y) {
            return Ok(());
        }
        if expected.len() == got.len() && got.iter().all(|y| expected.contains(&y)) {
            let all_distinct = got.iter().enumerate().all(|(k, y)| !got[..k].contains(y));
            if all_distinct {
                return Err(self.fail(
                    "Watch Ordered",
                    format!(
                        "revision {revision} delivered in another order than made: got {}, made {}",
                        describe_events(got),
                        describe_events(expected.iter().copied())
                    ),
                ));
            }
        }
        for k in 0..expected.len().max(got.len()) {
            match (expected.get(k), got.get(k)) {
                (Some(x), Some(y)) if *x == y => continue,
                (_, Some(y)) => return Err(self.unexpected(revision, &expected, &got[..k], y)),
                (Some(x), None) => {
                    let when = if later.contains(*x) { " (it came later, apart)" } else { "" };
                    return Err(self.fail(
                        "Watch Atomic",
                        format!(
                            "revision {revision} delivered torn: {} of its {} events in range; missing {}{when}",
                            got.len(),
                            expected.len(),
                            describe_event(x)
                        ),
                    ));
                }
                (None, None) => unreachable!("k is below one of the lengths"),
            }
        }
        Ok(())
    }

    /// `y` came where the reference has something else (or nothing more) at `revision`.
    fn unexpected(&self, revision: i64, expected: &[&Event], before: &[Event], y: &Event) -> Violation {
        if before.contains(y) {
            return self.fail("Watch Unique", format!("received {} twice", describe_event(y)));
        }
        if !self.in_range(y) {
            return self.fail(
                "Watch Accurate",
                format!("received {}, for a key outside the watched range", describe_event(y)),
            );
        }
        match expected.iter().find(|x| x.kv.key == y.kv.key) {
            Some(x) if *x == y => self.fail(
                "Watch Ordered",
                format!(
                    "revision {revision} delivered in another order than made: got {} first, made {}",
                    describe_events(before.iter().chain([y])),
                    describe_events(expected.iter().copied())
                ),
            ),
            Some(x) => self.fail(
                "Watch Accurate",
                format!(
                    "wrong event for {}: expected {}, got {}",
                    describe_bytes(&y.kv.key),
                    describe_event(x),
                    describe_event(y)
                ),
            ),
            None if self.reference.contains_key(&revision) => self.fail(
                "Watch Accurate",
                format!(
                    "received {}, but at revision {revision} members applied {}",
                    describe_event(y),
                    describe_events(expected.iter().copied())
                ),
            ),
            None => self.fail(
                "Watch Accurate",
                format!("received {} at revision {revision}, which no member applied", describe_event(y)),
            ),
        }
    }
}
