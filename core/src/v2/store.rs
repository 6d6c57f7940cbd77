//! The v2 keys store: etcd's v2 tree of directories and keys with TTLs, its index, and the
//! window of recent events `waitIndex` replays from. Replicated: every member applies the same
//! writes in the same order.

#[allow(unused_imports)]
use super::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Node {
    dir: bool,
    value: String,
    created: u64,
    modified: u64,
    expire_ns: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Store {
    /// Every node but the root, by path.
    nodes: BTreeMap<String, Node>,
    index: u64,
    /// The last `HISTORY_EVENTS` events, oldest first; their indexes are consecutive.
    history: VecDeque<V2Event>,
    /// Nodes with a TTL, by expiry time.
    expiring: BTreeSet<(i64, String)>,
    /// Nodes removed by expiry so far (etcd's `expireCount`).
    expired: u64,
}

/// What a write did: its event, and the paths it removed (a deleted directory's whole
/// subtree), which wake watchers on those paths.
#[derive(Debug)]
pub struct V2Applied {
    pub events: Vec<(V2Event, Vec<String>)>,
}

impl V2Store {
    /// The index of the last change (etcd's `X-Etcd-Index`).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many nodes expired so far.
    pub fn expired_count(&self) -> u64 {
        self.expired
    }

    /// The earliest expiry time of any node, if any node has a TTL.
    pub fn next_expiry_ns(&self) -> Option<i64> {
        self.expiring.first().map(|(t, _)| *t)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Reads a node (and, for a directory, its children; with `recursive` their subtrees).
    pub fn get(&self, path: &str, recursive: bool, sorted: bool) -> Result<V2Event> {
        let path = clean(path);
        let n = self.lookup(&path)?;
        let mut node = self.repr(&path, n, recursive, sorted, true);
        if path == "/" {
            node.key = path;
        }
        Ok(V2Event { action: V2Action::Get, node, prev_node: None, etcd_index: self.index, refresh: false })
    }

    /// Applies one write. An error leaves the store unchanged.
    pub fn apply(&mut self, w: &V2Write) -> Result<V2Applied> {
        let single = |r: Result<(V2Event, Vec<String>)>| r.map(|e| V2Applied { events: vec![e] });
        match w {
            V2Write::Set { path, dir, value, expire_ns, refresh } => {
                single(self.set(&clean(path), *dir, value, norm_expiry(*expire_ns), *refresh))
            }
            V2Write::Create { path, dir, value, unique, expire_ns } => {
                let mut path = clean(path);
                if *unique {
                    path = clean(&format!("{path}/{:020}", self.index + 1));
                }
                single(self.create(&path, *dir, value, false, V2Action::Create, norm_expiry(*expire_ns)))
            }
            V2Write::Update { path, value, expire_ns, refresh } => {
                single(self.update(&clean(path), value, norm_expiry(*expire_ns), *refresh))
            }
            V2Write::CompareAndSwap { path, prev_value, prev_index, value, expire_ns, refresh } => {
                single(self.compare_and_swap(
                    &clean(path),
                    prev_value,
                    *prev_index,
                    value,
                    norm_expiry(*expire_ns),
                    *refresh,
                ))
            }
            V2Write::Delete { path, dir, recursive } => single(self.delete(&clean(path), *dir, *recursive)),
            V2Write::CompareAndDelete { path, prev_value, prev_index } => {
                single(self.compare_and_delete(&clean(path), prev_value, *prev_index))
            }
            V2Write::Expire { now_ns } => Ok(self.expire(*now_ns)),
        }
    }

    /// Where a watch from `since` (0: the next change) on `key` stands: `Ok(Some(event))` if
    /// the history already holds a matching event, `Ok(None)` to wait for one, error 401 if
    /// `since` is older than the history.
    pub fn scan(&self, key: &str, recursive: bool, since: u64) -> Result<Option<V2Event>> {
        let key = clean(key);
        let since = if since == 0 { self.index + 1 } else { since };
        let Some(first) = self.history.front().map(V2Event::index) else { return Ok(None) };
        if since < first {
            return Err(err(
                code::EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{first}/{since}]"),
                self.index,
            ));
        }
        let offset = (since - first) as usize;
        let dir_prefix = if key == "/" { "/".to_string() } else { format!("{key}/") };
        for e in self.history.iter().skip(offset) {
            if e.refresh {
                continue;
            }
            let mut ok = e.node.key == key || (recursive && e.node.key.starts_with(&dir_prefix));
            if matches!(e.action, V2Action::Delete | V2Action::Expire) {
                if let Some(p) = &e.prev_node {
                    ok = ok || (p.dir && key.starts_with(&p.key));
                }
            }
            if ok {
                let mut e = e.clone();
                e.etcd_index = self.index;
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Checks the store's own consistency (after decoding a snapshot).
    pub fn check_invariants(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Corrupt(format!("v2 store: {what}")));
        for (path, n) in &self.nodes {
            if clean(path) != *path || path == "/" {
                return bad(format!("unclean path {path:?}"));
            }
            let (parent, _) = split(path);
            if parent != "/" && !self.nodes.get(parent).is_some_and(|p| p.dir) {
                return bad(format!("{path} has no parent directory"));
            }
            if n.modified > self.index || n.created > self.index {
                return bad(format!("{path} is newer than the store"));
            }
            if let Some(t) = n.expire_ns {
                if !self.expiring.contains(&(t, path.clone())) {
                    return bad(format!("{path} has a TTL but is not scheduled"));
                }
            }
        }
        if self.expiring.iter().any(|(t, p)| self.nodes.get(p).and_then(|n| n.expire_ns) != Some(*t)) {
            return bad("a scheduled expiry has no node".into());
        }
        if self.history.len() > HISTORY_EVENTS
            || self.history.iter().zip(self.history.iter().skip(1)).any(|(a, b)| a.index() + 1 != b.index())
        {
            return bad("history indexes are not consecutive".into());
        }
        Ok(())
    }

    // ---- operations, as etcd's v2 store has them ----

    fn set(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expire_ns: Option<i64>,
        refresh: bool,
    ) -> Result<(V2Event, Vec<String>)> {
        let prev = match self.lookup(path) {
            Ok(n) => Some(n.clone()),
            // A refresh needs the key: it fails as the lookup did (cause: the path up to the
            // first missing component), as etcd's Set returns its getErr.
            Err(e @ Error::V2 { code: code::KEY_NOT_FOUND, .. }) if refresh => return Err(e),
            Err(Error::V2 { code: code::KEY_NOT_FOUND, .. }) => None,
            Err(e) => return Err(e),
        };
        let value = match &prev {
            Some(p) if refresh => p.value.clone(),
            _ => value.to_string(),
        };
        let prev_node = prev.as_ref().map(|p| self.repr(path, p, false, false, false));
        let (mut event, removed) = self.create(path, dir, &value, true, V2Action::Set, expire_ns)?;
        event.prev_node = prev_node;
        event.refresh = refresh;
        self.record(&event);
        Ok((event, removed))
    }

    /// etcd's `internalCreate`. Records the event in the history unless it is a `Set` (which
    /// adds the previous node first).
    fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        replace: bool,
        action: V2Action,
        expire_ns: Option<i64>,
    ) -> Result<(V2Event, Vec<String>)> {
        let cur = self.index;
        let next = cur + 1;
        if path == "/" {
            return Err(err(code::ROOT_READ_ONLY, "/", cur));
        }
        let (parent, _) = split(path);
        // Walk the parent path: every component must be a directory or missing. A file there
        // is "not a directory" (etcd's `checkDir`), with the file as the cause.
        let mut missing = vec![];
        for p in ancestors(parent) {
            match self.nodes.get(&p) {
                Some(n) if n.dir => {}
                Some(_) => return Err(err(code::NOT_DIR, p, cur)),
                None => missing.push(p),
            }
        }
        if let Some(n) = self.nodes.get(path) {
            if !replace {
                return Err(err(code::NODE_EXIST, path, cur));
            }
            if n.dir {
                return Err(err(code::NOT_FILE, path, cur));
            }
            self.remove_one(path);
        }
        for p in missing {
            let d = Node { dir: true, value: String::new(), created: next, modified: next, expire_ns: None };
            self.nodes.insert(p, d);
        }
        let n = Node {
            dir,
            value: if dir { String::new() } else { value.to_string() },
            created: next,
            modified: next,
            expire_ns,
        };
        if let Some(t) = expire_ns {
            self.expiring.insert((t, path.to_string()));
        }
        let node = V2Node {
            key: path.to_string(),
            value: (!dir).then(|| value.to_string()),
            dir,
            expiration_ns: expire_ns,
            nodes: vec![],
            modified_index: next,
            created_index: next,
        };
        self.nodes.insert(path.to_string(), n);
        self.index = next;
        let event = V2Event { action, node, prev_node: None, etcd_index: next, refresh: false };
        if action != V2Action::Set {
            self.record(&event);
        }
        Ok((event, vec![]))
    }

    fn update(
        &mut self,
        path: &str,
        value: &str,
        expire_ns: Option<i64>,
        refresh: bool,
    ) -> Result<(V2Event, Vec<String>)> {
        let cur = self.index;
        let next = cur + 1;
        if path == "/" {
            return Err(err(code::ROOT_READ_ONLY, "/", cur));
        }
        let n = self.lookup(path)?.clone();
        if n.dir && !value.is_empty() {
            return Err(err(code::NOT_FILE, path, cur));
        }
        let value = if refresh { n.value.clone() } else { value.to_string() };
        let prev_node = self.repr(path, &n, false, false, false);
        let mut node = V2Node {
            key: path.to_string(),
            dir: n.dir,
            modified_index: next,
            created_index: n.created,
            ..V2Node::default()
        };
        {
            let stored = self.nodes.get_mut(path).expect("looked up above");
            if !stored.dir {
                // etcd does not move a directory's modified index on update (its write fails).
                stored.value = value.clone();
                stored.modified = next;
                node.value = Some(value);
            }
        }
        self.set_ttl(path, expire_ns);
        node.expiration_ns = expire_ns;
        self.index = next;
        let event =
            V2Event { action: V2Action::Update, node, prev_node: Some(prev_node), etcd_index: next, refresh };
        self.record(&event);
        Ok((event, vec![]))
    }

    fn compare_and_swap(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expire_ns: Option<i64>,
        refresh: bool,
    ) -> Result<(V2Event, Vec<String>)> {
        let cur = self.index;
        if path == "/" {
            return Err(err(code::ROOT_READ_ONLY, "/", cur));
        }
        let n = self.lookup(path)?.clone();
        if n.dir {
            return Err(err(code::NOT_FILE, path, cur));
        }
        compare(&n, prev_value, prev_index, cur)?;
        let value = if refresh { n.value.clone() } else { value.to_string() };
        let next = cur + 1;
        let prev_node = self.repr(path, &n, false, false, false);
        {
            let stored = self.nodes.get_mut(path).expect("looked up above");
            stored.value = value.clone();
            stored.modified = next;
        }
        self.set_ttl(path, expire_ns);
        self.index = next;
        let node = V2Node {
            key: path.to_string(),
            value: Some(value),
            expiration_ns: expire_ns,
            modified_index: next,
            created_index: n.created,
            ..V2Node::default()
        };
        let event = V2Event {
            action: V2Action::CompareAndSwap,
            node,
            prev_node: Some(prev_node),
            etcd_index: next,
            refresh,
        };
        self.record(&event);
        Ok((event, vec![]))
    }

    fn delete(&mut self, path: &str, dir: bool, recursive: bool) -> Result<(V2Event, Vec<String>)> {
        let cur = self.index;
        if path == "/" {
            return Err(err(code::ROOT_READ_ONLY, "/", cur));
        }
        let dir = dir || recursive;
        let n = self.lookup(path)?.clone();
        if n.dir {
            if !dir {
                return Err(err(code::NOT_FILE, path, cur));
            }
            if !recursive && !self.children(path).is_empty() {
                return Err(err(code::DIR_NOT_EMPTY, path, cur));
            }
        }
        Ok(self.remove_with_event(path, &n, V2Action::Delete))
    }

    fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
    ) -> Result<(V2Event, Vec<String>)> {
        let cur = self.index;
        let n = self.lookup(path)?.clone();
        if n.dir {
            // etcd names the root by its internal path, which it trims to nothing.
            let cause = if path == "/" { "" } else { path };
            return Err(err(code::NOT_FILE, cause, cur));
        }
        compare(&n, prev_value, prev_index, cur)?;
        Ok(self.remove_with_event(path, &n, V2Action::CompareAndDelete))
    }

    fn expire(&mut self, now_ns: i64) -> V2Applied {
        let mut events = vec![];
        while let Some((t, path)) = self.expiring.first().cloned() {
            if t > now_ns {
                break;
            }
            let n = self.nodes.get(&path).cloned().expect("scheduled nodes exist");
            events.push(self.remove_with_event(&path, &n, V2Action::Expire));
            self.expired += 1;
        }
        V2Applied { events }
    }

    /// Removes `path` and its subtree as one change at the next index.
    fn remove_with_event(&mut self, path: &str, n: &Node, action: V2Action) -> (V2Event, Vec<String>) {
        let next = self.index + 1;
        let prev_node = self.repr(path, n, false, false, false);
        let removed = self.remove_subtree(path);
        self.index = next;
        let node = V2Node {
            key: path.to_string(),
            dir: n.dir,
            modified_index: next,
            created_index: n.created,
            ..V2Node::default()
        };
        let event = V2Event { action, node, prev_node: Some(prev_node), etcd_index: next, refresh: false };
        self.record(&event);
        (event, removed)
    }

    // ---- tree helpers ----

    fn record(&mut self, e: &V2Event) {
        if self.history.len() == HISTORY_EVENTS {
            self.history.pop_front();
        }
        self.history.push_back(e.clone());
    }

    fn set_ttl(&mut self, path: &str, expire_ns: Option<i64>) {
        let Some(n) = self.nodes.get_mut(path) else { return };
        if let Some(t) = n.expire_ns.take() {
            self.expiring.remove(&(t, path.to_string()));
        }
        n.expire_ns = expire_ns;
        if let Some(t) = expire_ns {
            self.expiring.insert((t, path.to_string()));
        }
    }

    fn remove_one(&mut self, path: &str) {
        if let Some(n) = self.nodes.remove(path) {
            if let Some(t) = n.expire_ns {
                self.expiring.remove(&(t, path.to_string()));
            }
        }
    }

    /// Removes `path` and everything below it; returns the removed paths, deepest first.
    fn remove_subtree(&mut self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed: Vec<String> = below.into_iter().rev().collect();
        removed.push(path.to_string());
        for p in &removed {
            self.remove_one(p);
        }
        removed
    }

    /// The node at `path`, walking from the root as etcd does: a file on the way is error 104
    /// (cause: the file), a missing component error 100 (cause: the path up to it).
    fn lookup(&self, path: &str) -> Result<&Node> {
        static ROOT: Node =
            Node { dir: true, value: String::new(), created: 0, modified: 0, expire_ns: None };
        if path == "/" {
            return Ok(&ROOT);
        }
        let mut parent_is_file: Option<String> = None;
        for p in ancestors(path) {
            if let Some(f) = parent_is_file {
                return Err(err(code::NOT_DIR, f, self.index));
            }
            match self.nodes.get(&p) {
                Some(n) if p == path => return Ok(n),
                Some(n) if !n.dir => parent_is_file = Some(p),
                Some(_) => {}
                None => return Err(err(code::KEY_NOT_FOUND, p, self.index)),
            }
        }
        Err(err(code::KEY_NOT_FOUND, path, self.index))
    }

    /// Direct children of directory `dir`, in key order: (path, node).
    fn children(&self, dir: &str) -> Vec<(&String, &Node)> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        let mut out = vec![];
        let mut start = Included(prefix.clone());
        while let Some((k, n)) = self.nodes.range::<String, _>((start, Unbounded)).next() {
            let Some(rest) = k.strip_prefix(&prefix) else { break };
            match rest.find('/') {
                None => {
                    out.push((k, n));
                    start = Excluded(k.clone());
                }
                // A grandchild: skip the rest of that child's subtree. "p/b/..." sorts before
                // "p/b0" ('0' follows '/'); siblings such as "p/b-c" sort before "p/b/".
                Some(i) => start = Included(format!("{prefix}{}0", &rest[..i])),
            }
        }
        out
    }

    /// etcd's `Repr` / `loadInternalNode`: a directory lists its visible children (each child
    /// directory with its own children only when `recursive`); `top` is the node asked for,
    /// whose children are always listed.
    fn repr(&self, path: &str, n: &Node, recursive: bool, sorted: bool, top: bool) -> V2Node {
        let mut node = V2Node {
            key: path.to_string(),
            value: (!n.dir).then(|| n.value.clone()),
            dir: n.dir,
            expiration_ns: n.expire_ns,
            nodes: vec![],
            modified_index: n.modified,
            created_index: n.created,
        };
        let _ = sorted; // children come in key order, which is etcd's sorted order
        if n.dir && (recursive || top) {
            node.nodes = self
                .children(path)
                .into_iter()
                .filter(|(k, _)| !split(k).1.starts_with('_'))
                .map(|(k, c)| self.repr(k, c, recursive, sorted, false))
                .collect();
        }
        node
    }
}

fn norm_expiry(t: Option<i64>) -> Option<i64> {
    t.filter(|&t| t >= MIN_EXPIRE_NS)
}

fn compare(n: &Node, prev_value: &str, prev_index: u64, cur: u64) -> Result<()> {
    let index_ok = prev_index == 0 || n.modified == prev_index;
    let value_ok = prev_value.is_empty() || n.value == prev_value;
    let cause = match (value_ok, index_ok) {
        (true, true) => return Ok(()),
        (false, true) => format!("[{prev_value} != {}]", n.value),
        (true, false) => format!("[{prev_index} != {}]", n.modified),
        (false, false) => format!("[{prev_value} != {}] [{prev_index} != {}]", n.value, n.modified),
    };
    Err(err(code::TEST_FAILED, cause, cur))
}
