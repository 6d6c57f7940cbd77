//! Open v2 watches (`wait=true`) on one member: not replicated, fired from the store's events.

#[allow(unused_imports)]
use super::*;

/// One open v2 watch (`wait=true`): on a member, not replicated.
#[derive(Clone, Debug)]
struct Watcher {
    key: String,
    recursive: bool,
    stream: bool,
    since: u64,
}

/// Open v2 watches on one member. Each fires once (unless `stream`) with the first matching
/// event at or after its `since` index, as etcd's watcher hub does.
#[derive(Debug, Default)]
pub struct V2Watchers {
    watchers: BTreeMap<u64, Watcher>,
}

pub type V2WatchId = u64;

impl V2Watchers {
    /// Opens watch `id` on `store`: returns the store's index and, if history already holds a
    /// matching event, that event (the watch is then done).
    pub fn open(
        &mut self,
        id: V2WatchId,
        store: &V2Store,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<(u64, Option<V2Event>)> {
        let key = clean(key);
        if let Some(e) = store.scan(&key, recursive, since)? {
            return Ok((store.index(), Some(e)));
        }
        let since = if since == 0 { store.index() + 1 } else { since };
        self.watchers.insert(id, Watcher { key, recursive, stream, since });
        Ok((store.index(), None))
    }

    pub fn cancel(&mut self, id: V2WatchId) -> bool {
        self.watchers.remove(&id).is_some()
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// The watchers `event` fires (removing the one-shot ones). `removed` are the paths the
    /// event deleted (a directory's subtree): watchers on them fire too.
    pub fn on_event(&mut self, event: &V2Event, removed: &[String]) -> Vec<(V2WatchId, Result<V2Event>)> {
        if event.refresh || self.watchers.is_empty() {
            return vec![];
        }
        let key = &event.node.key;
        let fired: Vec<V2WatchId> = self
            .watchers
            .iter()
            .filter(|(_, w)| event.index() >= w.since)
            .filter(|(_, w)| {
                let on_path = w.key == "/" || *key == w.key || key.starts_with(&format!("{}/", w.key));
                let via_path = on_path && (*key == w.key || (w.recursive && !is_hidden(&w.key, key)));
                via_path || removed.contains(&w.key)
            })
            .map(|(&id, _)| id)
            .collect();
        fired
            .into_iter()
            .map(|id| {
                if !self.watchers[&id].stream {
                    self.watchers.remove(&id);
                }
                (id, Ok(event.clone()))
            })
            .collect()
    }

    /// The store was replaced by a snapshot: every watcher ends with error 400, as in etcd.
    pub fn clear(&mut self, index: u64) -> Vec<(V2WatchId, Result<V2Event>)> {
        std::mem::take(&mut self.watchers)
            .into_keys()
            .map(|id| (id, Err(err(code::WATCHER_CLEARED, "", index))))
            .collect()
    }
}
