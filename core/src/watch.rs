//! Watches: which changes each watcher is owed, from any uncompacted revision on.
//!
//! A watcher starts at a revision; the hub first replays the store's history from there, a
//! page at a time as the driver asks (`WatchPage`), then passes on each applied revision as it
//! happens. Each watcher remembers the next revision it
//! is owed, so nothing is sent twice and nothing is skipped: when the state jumps (a snapshot
//! from the leader replaces it without events), `catch_up` replays what the jump covered from
//! the new state's history, as etcd re-syncs its watchers after restoring a snapshot. A member
//! that lags behind a watcher's start revision holds events back until it reaches it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::kv::{Event, EventKind};
use crate::state_machine::StateMachine;
use crate::{Error, Result};

/// The driver's name for a watch; unique among the watches open on one member.
pub type WatchId = u64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Bytes,
    /// etcd's conventions: empty for the key alone, `[0]` for every key from `key` on.
    pub range_end: Bytes,
    /// First revision to report; 0 (or less) for "changes after now".
    pub start_revision: i64,
    /// Include each event's previous key-value.
    pub prev_kv: bool,
    /// etcd's `NOPUT` filter: leave out puts.
    pub no_put: bool,
    /// etcd's `NODELETE` filter: leave out deletes.
    pub no_delete: bool,
}

/// What a watcher is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Changes for the watcher, in revision order, whole revisions at a time.
    Events(Vec<Event>),
    /// The revisions the watcher is owed were compacted away; the watch is over (etcd cancels
    /// it with the compact revision, and the client may watch again from there).
    Compacted { compact_revision: i64 },
}

/// Part of the history a watcher is owed: `Core::watch` answers with the first page, and
/// `Core::watch_next_page` with each next one while `more`. Live changes go to the watcher
/// (in `Output::watch_updates`) only once it has taken the last page, so a page and a live
/// update never overlap or leave a gap, and a watcher replaying a long history holds one page
/// at a time: the driver asks for the next page when the client has taken the last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchPage {
    pub events: Vec<Event>,
    /// More history is owed: ask `Core::watch_next_page`.
    pub more: bool,
}

#[derive(Clone, Debug)]
struct Watcher {
    req: WatchRequest,
    /// The next revision this watcher is owed.
    next_revision: i64,
    /// It is still taking its history a page at a time: live changes are not its yet.
    paging: bool,
}

#[derive(Clone, Debug, Default)]
pub struct WatchHub {
    watchers: BTreeMap<WatchId, Watcher>,
}

impl WatchHub {
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Opens a watch and returns the first page of the history it is owed already (possibly
    /// empty), at most `page_bytes` of it unless one revision is larger. A start revision below
    /// the store's compacted revision fails with `Error::Compacted` and opens nothing.
    pub fn create(
        &mut self,
        id: WatchId,
        req: WatchRequest,
        state: &StateMachine,
        page_bytes: usize,
    ) -> Result<WatchPage> {
        if self.watchers.contains_key(&id) {
            return Err(Error::DuplicateRequestId(id));
        }
        let current = state.mvcc().current_revision();
        let start = if req.start_revision <= 0 { current + 1 } else { req.start_revision };
        let mut w = Watcher { req, next_revision: start, paging: true };
        let page = w.page(state, page_bytes)?;
        self.watchers.insert(id, w);
        Ok(page)
    }

    /// The next page of the history watch `id` is owed (see `WatchPage`); an empty page
    /// without `more` once it has all of it, or if it is not open. A watcher whose next
    /// revision was compacted away meanwhile is closed: `Error::Compacted`.
    pub fn next_page(&mut self, id: WatchId, state: &StateMachine, page_bytes: usize) -> Result<WatchPage> {
        let Some(w) = self.watchers.get_mut(&id).filter(|w| w.paging) else {
            return Ok(WatchPage::default());
        };
        let page = w.page(state, page_bytes);
        if page.is_err() {
            self.watchers.remove(&id);
        }
        page
    }

    /// Closes a watch; false if it was not open.
    pub fn cancel(&mut self, id: WatchId) -> bool {
        self.watchers.remove(&id).is_some()
    }

    /// Distributes newly applied events (in revision order) to the watchers owed them.
    pub fn on_events(&mut self, events: &[Event]) -> Vec<(WatchId, WatchUpdate)> {
        let Some(last) = events.last() else { return vec![] };
        let last_revision = last.kv.mod_revision;
        let mut out = Vec::new();
        for (&id, w) in self.watchers.iter_mut().filter(|(_, w)| !w.paging) {
            let mine = w.take(events);
            w.next_revision = w.next_revision.max(last_revision + 1);
            if !mine.is_empty() {
                out.push((id, WatchUpdate::Events(mine)));
            }
        }
        out
    }

    /// After the state jumped ahead without events (a snapshot installed), replays to each
    /// watcher what the jump covered. Watchers whose revisions were compacted away are closed
    /// and told so.
    pub fn catch_up(&mut self, state: &StateMachine) -> Vec<(WatchId, WatchUpdate)> {
        let current = state.mvcc().current_revision();
        let mut out = Vec::new();
        let mut closed = Vec::new();
        for (&id, w) in self.watchers.iter_mut() {
            // A paging watcher reads the new state's history with its next page.
            if w.paging || w.next_revision > current {
                continue;
            }
            match state.mvcc().events(&w.req.key, &w.req.range_end, w.next_revision) {
                Ok(history) => {
                    let mine = w.take(&history);
                    w.next_revision = current + 1;
                    if !mine.is_empty() {
                        out.push((id, WatchUpdate::Events(mine)));
                    }
                }
                Err(Error::Compacted { compacted_revision }) => {
                    closed.push(id);
                    out.push((id, WatchUpdate::Compacted { compact_revision: compacted_revision }));
                }
                Err(e) => unreachable!("events() fails only for compaction, got {e}"),
            }
        }
        for id in closed {
            self.watchers.remove(&id);
        }
        out
    }
}

impl Watcher {
    /// The next page of history from `next_revision`; the watcher stops paging once it has
    /// reached the current revision.
    fn page(&mut self, state: &StateMachine, page_bytes: usize) -> Result<WatchPage> {
        let current = state.mvcc().current_revision();
        if self.next_revision > current {
            self.paging = false;
            return Ok(WatchPage::default());
        }
        let (history, next) =
            state.mvcc().events_page(&self.req.key, &self.req.range_end, self.next_revision, page_bytes)?;
        let events = self.take(&history);
        self.next_revision = next;
        self.paging = next <= current;
        Ok(WatchPage { events, more: self.paging })
    }

    /// The events of `events` this watcher is owed, shaped as it asked.
    fn take(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.kv.mod_revision >= self.next_revision)
            .filter(|e| in_range(&e.kv.key, &self.req.key, &self.req.range_end))
            .filter(|e| match e.kind {
                EventKind::Put => !self.req.no_put,
                EventKind::Delete => !self.req.no_delete,
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.req.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// etcd's range conventions: empty end is the key alone; `[0]` is every key from `key` on.
pub fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}
