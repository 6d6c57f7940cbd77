//! The etcd v2 keys store: a tree of directories and string values with TTLs, its own index
//! counter, and the history of its last `HISTORY_EVENTS` changes for `waitIndex` watches.
//!
//! It is replicated like everything else: every change is a `Command::V2` in the Raft log and
//! applies identically on every member; expiry is a command too (`V2Write::Expire`, proposed
//! with the proposing member's wall clock), so every replica removes the same keys at the same
//! index. Semantics follow etcd 3.4's v2 store exactly, quirks included: which operation fails
//! with which code and cause, which index a node carries after each action, which watchers an
//! event wakes.
//!
//! Paths are clean absolute paths ("/", "/a", "/a/b"); `clean` turns what a client sent into
//! one. The root "/" is a directory that always exists and cannot be changed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod store;
mod watchers;

pub use store::{V2Applied, V2Store};
pub use watchers::{V2WatchId, V2Watchers};

/// How many events the history keeps (etcd keeps 1000). A `waitIndex` older than the oldest
/// kept event answers error 401.
pub const HISTORY_EVENTS: usize = 1000;

/// Largest v2 write accepted, encoded: etcd's v2 API is bounded by Go's 10 MiB form limit
/// rather than `--max-request-bytes`; this leaves room for a 10 MiB value and its key.
pub const REQUEST_BYTES_MAX: usize = 11 << 20;

/// Expiry times before 2000-01-01 count as "no TTL", as in etcd (times that far in the past
/// come from clients that serialised a zero time).
const MIN_EXPIRE_NS: i64 = 946_684_800_000_000_000;

/// etcd's v2 error codes used by the store.
pub mod code {
    pub const KEY_NOT_FOUND: u32 = 100;
    pub const TEST_FAILED: u32 = 101;
    pub const NOT_FILE: u32 = 102;
    pub const NOT_DIR: u32 = 104;
    pub const NODE_EXIST: u32 = 105;
    pub const ROOT_READ_ONLY: u32 = 107;
    pub const DIR_NOT_EMPTY: u32 = 108;
    pub const WATCHER_CLEARED: u32 = 400;
    pub const EVENT_INDEX_CLEARED: u32 = 401;
}

/// A change to the v2 store, as carried in the log. Which of these a PUT, POST or DELETE
/// becomes is decided from its parameters by the front end, as etcd's v2 applier does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum V2Write {
    /// Create or replace a file, or create a directory (`dir`). Fails on an existing directory.
    Set {
        path: String,
        dir: bool,
        value: String,
        expire_ns: Option<i64>,
        refresh: bool,
    },
    /// Create a node that must not exist; `unique` appends a child named by the new index
    /// (in-order keys: POST).
    Create {
        path: String,
        dir: bool,
        value: String,
        unique: bool,
        expire_ns: Option<i64>,
    },
    /// Change an existing node's value (files) or TTL.
    Update {
        path: String,
        value: String,
        expire_ns: Option<i64>,
        refresh: bool,
    },
    CompareAndSwap {
        path: String,
        prev_value: String,
        prev_index: u64,
        value: String,
        expire_ns: Option<i64>,
        refresh: bool,
    },
    Delete {
        path: String,
        dir: bool,
        recursive: bool,
    },
    CompareAndDelete {
        path: String,
        prev_value: String,
        prev_index: u64,
    },
    /// Remove every node whose expiry time is at or before `now_ns` (the proposer's wall
    /// clock, Unix nanoseconds).
    Expire {
        now_ns: i64,
    },
}

/// A read of the v2 store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Get {
    pub path: String,
    pub recursive: bool,
    pub sorted: bool,
    /// Linearizable (through a ReadIndex round) rather than this member's applied state.
    pub quorum: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum V2Action {
    Get,
    Set,
    Create,
    Update,
    Delete,
    CompareAndSwap,
    CompareAndDelete,
    Expire,
}

impl V2Action {
    /// The action's name in etcd's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            V2Action::Get => "get",
            V2Action::Set => "set",
            V2Action::Create => "create",
            V2Action::Update => "update",
            V2Action::Delete => "delete",
            V2Action::CompareAndSwap => "compareAndSwap",
            V2Action::CompareAndDelete => "compareAndDelete",
            V2Action::Expire => "expire",
        }
    }
}

/// A node as clients see it (etcd's `NodeExtern`). The TTL is not stored: front ends compute
/// it from `expiration_ns` and their clock when they answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct V2Node {
    pub key: String,
    pub value: Option<String>,
    pub dir: bool,
    pub expiration_ns: Option<i64>,
    pub nodes: Vec<V2Node>,
    pub modified_index: u64,
    pub created_index: u64,
}

/// What a v2 operation did (etcd's `Event`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct V2Event {
    pub action: V2Action,
    pub node: V2Node,
    pub prev_node: Option<V2Node>,
    /// The store's index after the operation (etcd's `X-Etcd-Index`).
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history for index arithmetic, never sent to watchers.
    pub refresh: bool,
}

impl V2Event {
    /// The index this event happened at (its node's modified index).
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// etcd answers 201 Created for these.
    pub fn is_created(&self) -> bool {
        self.action == V2Action::Create || (self.action == V2Action::Set && self.prev_node.is_none())
    }
}

/// etcd's message for a v2 error code (kept with the core's other error text).
pub use crate::error::v2_message as message;

fn err(code: u32, cause: impl Into<String>, index: u64) -> Error {
    Error::V2 { code, cause: cause.into(), index }
}

/// `path`'s parent directory and last segment ("/" has parent "/" and an empty name).
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// "/a/b/c" -> "/a", "/a/b", "/a/b/c"; "/" -> nothing.
fn ancestors(path: &str) -> Vec<String> {
    let mut out = vec![];
    for (i, c) in path.char_indices().skip(1) {
        if c == '/' {
            out.push(path[..i].to_string());
        }
    }
    if path != "/" {
        out.push(path.to_string());
    }
    out
}

/// Go's `path.Clean(path.Join("/", p))`: an absolute path without empty, "." or ".." segments
/// and without a trailing slash.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// Whether an event on `key` is hidden from a recursive watcher on `watch`: some segment
/// below the watched path starts with '_' (etcd's `isHidden`).
pub fn is_hidden(watch: &str, key: &str) -> bool {
    if watch.len() > key.len() || !key.starts_with(watch) {
        return false;
    }
    clean(&format!("/{}", &key[watch.len()..])).contains("/_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_path_clean() {
        for (i, o) in [
            ("", "/"),
            ("/", "/"),
            ("a", "/a"),
            ("/a/", "/a"),
            ("//a//b/", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../..", "/"),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    #[test]
    fn split_and_ancestors() {
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(ancestors("/a/b/c"), vec!["/a", "/a/b", "/a/b/c"]);
        assert!(ancestors("/").is_empty());
    }

    #[test]
    fn hidden_follows_etcd() {
        assert!(is_hidden("/", "/_a"));
        assert!(is_hidden("/a", "/a/_b/c"));
        assert!(!is_hidden("/a", "/a/b"));
        assert!(!is_hidden("/a/_b", "/a/_b"));
        assert!(!is_hidden("/a/b/c", "/a/b"));
    }
}
