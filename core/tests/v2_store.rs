//! The v2 keys store (`cairn_core::v2`) against etcd 3.4's v2 store, as etcd's own
//! `etcdserver/api/v2store` tests and source define it: `store_test.go` (results, indexes,
//! errors), `store_ttl_test.go` (expiry, refresh), `event_test.go` (the history and `scan`),
//! `watcher_hub.go` / `watcher.go` (which watchers an event wakes).
//!
//! Each test is a short script: writes, then the exact event or error etcd gives. The property
//! test at the end runs random writes against a tree model written the way etcd's store is
//! (nodes holding their children, walked one path component at a time), which shares no code
//! with the store's flat map of paths.

use std::collections::BTreeMap;

use cairn_core::request::Command;
use cairn_core::state_machine::StateMachine;
use cairn_core::v2::{V2Action, V2Event, V2Node, V2Store, V2Watchers, V2Write, HISTORY_EVENTS};
use cairn_core::{Error, ResponseBody};
use proptest::prelude::*;

// ---- Writing scripts ----

/// A time well after 2000-01-01 (earlier expiry times count as none, as in etcd).
const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

fn at(secs: i64) -> Option<i64> {
    Some(T0 + secs * SEC)
}

fn set(path: &str, value: &str) -> V2Write {
    V2Write::Set { path: path.into(), dir: false, value: value.into(), expire_ns: None, refresh: false }
}

fn set_ttl(path: &str, value: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Set { path: path.into(), dir: false, value: value.into(), expire_ns, refresh: false }
}

fn set_dir(path: &str) -> V2Write {
    V2Write::Set { path: path.into(), dir: true, value: String::new(), expire_ns: None, refresh: false }
}

fn refresh_set(path: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Set { path: path.into(), dir: false, value: String::new(), expire_ns, refresh: true }
}

fn create(path: &str, value: &str) -> V2Write {
    create_ttl(path, value, None)
}

fn create_ttl(path: &str, value: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Create { path: path.into(), dir: false, value: value.into(), unique: false, expire_ns }
}

fn create_dir(path: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Create { path: path.into(), dir: true, value: String::new(), unique: false, expire_ns }
}

fn create_unique(path: &str, value: &str) -> V2Write {
    V2Write::Create { path: path.into(), dir: false, value: value.into(), unique: true, expire_ns: None }
}

fn update(path: &str, value: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Update { path: path.into(), value: value.into(), expire_ns, refresh: false }
}

fn refresh_update(path: &str, expire_ns: Option<i64>) -> V2Write {
    V2Write::Update { path: path.into(), value: String::new(), expire_ns, refresh: true }
}

fn cas(path: &str, prev_value: &str, prev_index: u64, value: &str) -> V2Write {
    V2Write::CompareAndSwap {
        path: path.into(),
        prev_value: prev_value.into(),
        prev_index,
        value: value.into(),
        expire_ns: None,
        refresh: false,
    }
}

fn delete(path: &str, dir: bool, recursive: bool) -> V2Write {
    V2Write::Delete { path: path.into(), dir, recursive }
}

fn cad(path: &str, prev_value: &str, prev_index: u64) -> V2Write {
    V2Write::CompareAndDelete { path: path.into(), prev_value: prev_value.into(), prev_index }
}

fn expire(secs: i64) -> V2Write {
    V2Write::Expire { now_ns: T0 + secs * SEC }
}

/// Applies a write that must succeed with one event; returns it.
fn ok(s: &mut V2Store, w: V2Write) -> V2Event {
    ok_removed(s, w).0
}

/// Applies a write that must succeed with one event; returns it and the paths it removed.
fn ok_removed(s: &mut V2Store, w: V2Write) -> (V2Event, Vec<String>) {
    let applied = s.apply(&w).unwrap_or_else(|e| panic!("{w:?}: {e:?}"));
    assert_eq!(applied.events.len(), 1, "{w:?}");
    let (e, removed) = applied.events.into_iter().next().unwrap();
    assert_eq!(e.etcd_index, s.index(), "a write's event carries the store's new index");
    assert_eq!(e.index(), s.index(), "{w:?} happened at the new index");
    s.check_invariants().unwrap();
    (e, removed)
}

/// Applies a write that must fail; checks the store is unchanged; returns (code, cause, index).
fn fail(s: &mut V2Store, w: V2Write) -> (u32, String, u64) {
    let before = s.clone();
    match s.apply(&w) {
        Err(Error::V2 { code, cause, index }) => {
            assert_eq!(*s, before, "{w:?} failed and must leave the store as it was");
            (code, cause, index)
        }
        other => panic!("{w:?}: expected a v2 error, got {other:?}"),
    }
}

fn get_err(s: &V2Store, path: &str) -> (u32, String, u64) {
    match s.get(path, false, false) {
        Err(Error::V2 { code, cause, index }) => (code, cause, index),
        other => panic!("get {path}: expected a v2 error, got {other:?}"),
    }
}

fn value(s: &V2Store, path: &str) -> Option<String> {
    s.get(path, false, false).ok().and_then(|e| e.node.value)
}

fn file(key: &str, value: &str, created: u64, modified: u64) -> V2Node {
    V2Node {
        key: key.into(),
        value: Some(value.into()),
        modified_index: modified,
        created_index: created,
        ..V2Node::default()
    }
}

fn dir(key: &str, created: u64, modified: u64, nodes: Vec<V2Node>) -> V2Node {
    V2Node {
        key: key.into(),
        dir: true,
        nodes,
        modified_index: modified,
        created_index: created,
        ..V2Node::default()
    }
}

fn keys(n: &V2Node) -> Vec<&str> {
    n.nodes.iter().map(|c| c.key.as_str()).collect()
}

// ---- Results of each write (store_test.go: TestSet, TestStoreCreate*, TestStoreUpdate*, ...) ----

#[test]
fn set_creates_then_replaces_with_the_previous_node() {
    let mut s = V2Store::default();
    let e = ok(&mut s, set("/foo", ""));
    assert_eq!(e.action, V2Action::Set);
    assert_eq!(e.node, file("/foo", "", 1, 1));
    assert!(e.is_created(), "a set that made the key answers 201");
    assert_eq!((e.prev_node, e.etcd_index, e.refresh), (None, 1, false));

    let e = ok(&mut s, set("/foo", "bar"));
    // Set replaces the node: the new one is created at this index too.
    assert_eq!(e.node, file("/foo", "bar", 2, 2));
    assert_eq!(e.prev_node, Some(file("/foo", "", 1, 1)));
    assert!(!e.is_created());

    let e = ok(&mut s, set("/foo", "baz"));
    assert_eq!((e.node.modified_index, e.prev_node.unwrap()), (3, file("/foo", "bar", 2, 2)));

    let e = ok(&mut s, set_dir("/dir"));
    assert_eq!(e.node, dir("/dir", 4, 4, vec![]));
    assert_eq!(e.node.value, None, "a directory has no value");

    // A directory may replace a file.
    let e = ok(&mut s, set_dir("/foo"));
    assert_eq!(e.node, dir("/foo", 5, 5, vec![]));
    assert_eq!(e.prev_node, Some(file("/foo", "baz", 3, 3)));
    assert_eq!(s.get("/foo", false, false).unwrap().node, dir("/foo", 5, 5, vec![]));
}

#[test]
fn deep_writes_make_the_missing_directories_at_their_index() {
    let mut s = V2Store::default();
    ok(&mut s, set("/x", "1"));
    let e = ok(&mut s, set("/a/b/c/d", "efg"));
    assert_eq!(e.node, file("/a/b/c/d", "efg", 2, 2));
    for p in ["/a", "/a/b", "/a/b/c"] {
        let n = s.get(p, false, false).unwrap().node;
        assert!(n.dir && n.created_index == 2 && n.modified_index == 2, "{p}: {n:?}");
    }
    // Create makes them too, and existing directories keep their indexes.
    let e = ok(&mut s, create("/a/b/e/f", "g"));
    assert_eq!(e.node, file("/a/b/e/f", "g", 3, 3));
    assert_eq!(s.get("/a/b/e", false, false).unwrap().node.created_index, 3);
    assert_eq!(s.get("/a/b", false, false).unwrap().node.modified_index, 2);
    assert_eq!(s.len(), 7);
}

#[test]
fn create_makes_a_new_node_and_refuses_an_existing_one() {
    let mut s = V2Store::default();
    let e = ok(&mut s, create("/foo", "bar"));
    assert!(e.is_created());
    assert_eq!((e.action, e.node, e.prev_node), (V2Action::Create, file("/foo", "bar", 1, 1), None));
    let e = ok(&mut s, create("/empty", ""));
    assert_eq!(e.node, file("/empty", "", 2, 2));
    let e = ok(&mut s, create_dir("/dir", None));
    assert_eq!(e.node, dir("/dir", 3, 3, vec![]));

    assert_eq!(fail(&mut s, create("/foo", "x")), (105, "/foo".into(), 3));
    assert_eq!(fail(&mut s, create_dir("/dir", None)), (105, "/dir".into(), 3));
    assert_eq!(fail(&mut s, create("/dir", "x")), (105, "/dir".into(), 3));
    assert_eq!(fail(&mut s, create("/", "x")), (107, "/".into(), 3));
}

#[test]
fn update_changes_a_file_and_only_the_ttl_of_a_directory() {
    let mut s = V2Store::default();
    ok(&mut s, create("/foo", "bar"));
    let e = ok(&mut s, update("/foo", "baz", None));
    assert_eq!(e.action, V2Action::Update);
    assert_eq!(e.node, file("/foo", "baz", 1, 2));
    assert_eq!(e.prev_node, Some(file("/foo", "bar", 1, 1)));
    let e = ok(&mut s, update("/foo", "", None));
    assert_eq!((e.node, e.prev_node.unwrap()), (file("/foo", "", 1, 3), file("/foo", "baz", 1, 2)));
    assert_eq!(s.get("/foo", false, false).unwrap().node, file("/foo", "", 1, 3));

    ok(&mut s, create_dir("/d", None));
    ok(&mut s, create("/d/x", "1"));
    assert_eq!(fail(&mut s, update("/d", "v", None)), (102, "/d".into(), 5));
    let e = ok(&mut s, update("/d", "", at(10)));
    let mut expected = dir("/d", 4, 6, vec![]);
    expected.expiration_ns = at(10);
    assert_eq!(e.node, expected);
    assert_eq!(e.prev_node, Some(dir("/d", 4, 4, vec![])), "the previous directory without children");
    // The stored directory keeps its modified index (etcd's write to a directory fails).
    let n = s.get("/d", false, false).unwrap().node;
    assert_eq!((n.modified_index, n.expiration_ns), (4, at(10)));

    assert_eq!(fail(&mut s, update("/nope", "v", None)), (100, "/nope".into(), 6));
    assert_eq!(fail(&mut s, update("/", "", None)), (107, "/".into(), 6));
}

#[test]
fn compare_and_swap_tests_value_index_or_both() {
    let mut s = V2Store::default();
    ok(&mut s, create("/foo", "bar"));
    let e = ok(&mut s, cas("/foo", "bar", 0, "baz"));
    assert_eq!(e.action, V2Action::CompareAndSwap);
    assert_eq!((e.node, e.prev_node.unwrap()), (file("/foo", "baz", 1, 2), file("/foo", "bar", 1, 1)));
    let e = ok(&mut s, cas("/foo", "", 2, "qux"));
    assert_eq!(e.node, file("/foo", "qux", 1, 3));
    let e = ok(&mut s, cas("/foo", "qux", 3, "quux"));
    assert_eq!(e.node, file("/foo", "quux", 1, 4));
    // Neither given: an unconditional swap.
    assert_eq!(ok(&mut s, cas("/foo", "", 0, "z")).node, file("/foo", "z", 1, 5));

    assert_eq!(fail(&mut s, cas("/foo", "wrong", 0, "x")), (101, "[wrong != z]".into(), 5));
    assert_eq!(fail(&mut s, cas("/foo", "", 100, "x")), (101, "[100 != 5]".into(), 5));
    assert_eq!(fail(&mut s, cas("/foo", "wrong", 100, "x")), (101, "[wrong != z] [100 != 5]".into(), 5));
    assert_eq!(fail(&mut s, cas("/foo", "z", 100, "x")), (101, "[100 != 5]".into(), 5));
    assert_eq!(fail(&mut s, cas("/foo", "wrong", 5, "x")), (101, "[wrong != z]".into(), 5));
    assert_eq!(value(&s, "/foo").as_deref(), Some("z"));

    ok(&mut s, create_dir("/d", None));
    assert_eq!(fail(&mut s, cas("/d", "", 0, "x")), (102, "/d".into(), 6));
    assert_eq!(fail(&mut s, cas("/nope", "", 0, "x")), (100, "/nope".into(), 6));
    assert_eq!(fail(&mut s, cas("/", "", 0, "x")), (107, "/".into(), 6));
}

#[test]
fn delete_files_and_directories() {
    let mut s = V2Store::default();
    ok(&mut s, create("/foo", "bar"));
    let (e, removed) = ok_removed(&mut s, delete("/foo", false, false));
    assert_eq!(e.action, V2Action::Delete);
    assert_eq!(
        e.node,
        V2Node { key: "/foo".into(), modified_index: 2, created_index: 1, ..V2Node::default() }
    );
    assert_eq!(e.prev_node, Some(file("/foo", "bar", 1, 1)));
    assert_eq!(removed, vec!["/foo".to_string()]);
    assert_eq!(get_err(&s, "/foo"), (100, "/foo".into(), 2));

    ok(&mut s, create_dir("/d", None));
    assert_eq!(fail(&mut s, delete("/d", false, false)), (102, "/d".into(), 3));
    let e = ok(&mut s, delete("/d", true, false));
    assert_eq!(e.node, dir("/d", 3, 4, vec![]));
    assert_eq!(e.prev_node, Some(dir("/d", 3, 3, vec![])));

    ok(&mut s, create_dir("/d/e", None));
    ok(&mut s, create("/d/e/f", "1"));
    assert_eq!(fail(&mut s, delete("/d", true, false)), (108, "/d".into(), 6));
    // recursive implies dir
    let (e, removed) = ok_removed(&mut s, delete("/d", false, true));
    assert_eq!(e.node, dir("/d", 5, 7, vec![]));
    assert_eq!(e.prev_node, Some(dir("/d", 5, 5, vec![])), "no children in the previous node");
    assert_eq!(removed, vec!["/d/e/f".to_string(), "/d/e".into(), "/d".into()]);
    assert!(s.is_empty());

    // dir=true deletes a file as well.
    ok(&mut s, create("/f", "1"));
    assert_eq!(ok(&mut s, delete("/f", true, false)).prev_node, Some(file("/f", "1", 8, 8)));

    assert_eq!(fail(&mut s, delete("/nope", false, false)), (100, "/nope".into(), 9));
    assert_eq!(fail(&mut s, delete("/", true, true)), (107, "/".into(), 9));
}

#[test]
fn compare_and_delete_tests_value_or_index() {
    let mut s = V2Store::default();
    ok(&mut s, create("/foo", "bar"));
    assert_eq!(fail(&mut s, cad("/foo", "baz", 0)), (101, "[baz != bar]".into(), 1));
    assert_eq!(fail(&mut s, cad("/foo", "", 100)), (101, "[100 != 1]".into(), 1));
    assert_eq!(fail(&mut s, cad("/foo", "baz", 100)), (101, "[baz != bar] [100 != 1]".into(), 1));
    let e = ok(&mut s, cad("/foo", "bar", 0));
    assert_eq!(e.action, V2Action::CompareAndDelete);
    assert_eq!(
        e.node,
        V2Node { key: "/foo".into(), modified_index: 2, created_index: 1, ..V2Node::default() }
    );
    assert_eq!(e.prev_node, Some(file("/foo", "bar", 1, 1)));

    ok(&mut s, create("/foo", "bar"));
    assert_eq!(ok(&mut s, cad("/foo", "", 3)).prev_node, Some(file("/foo", "bar", 3, 3)));

    ok(&mut s, create_dir("/d", None));
    assert_eq!(fail(&mut s, cad("/d", "", 0)), (102, "/d".into(), 5));
    assert_eq!(fail(&mut s, cad("/nope", "", 0)), (100, "/nope".into(), 5));
    // etcd has no read-only check here: the root is a directory, named by its internal path,
    // which etcd trims to nothing.
    assert_eq!(fail(&mut s, cad("/", "", 0)), (102, "".into(), 5));
}

// ---- Errors: codes, causes, indexes ----

#[test]
fn missing_component_is_100_with_the_path_up_to_it() {
    let mut s = V2Store::default();
    assert_eq!(get_err(&s, "/a/b/c"), (100, "/a".into(), 0));
    ok(&mut s, create_dir("/a", None));
    assert_eq!(get_err(&s, "/a/b/c"), (100, "/a/b".into(), 1));
    assert_eq!(fail(&mut s, update("/a/b/c", "v", None)), (100, "/a/b".into(), 1));
    assert_eq!(fail(&mut s, delete("/a/b/c", false, true)), (100, "/a/b".into(), 1));
    assert_eq!(fail(&mut s, cas("/a/b/c", "", 0, "v")), (100, "/a/b".into(), 1));
    assert_eq!(fail(&mut s, cad("/a/b/c", "", 0)), (100, "/a/b".into(), 1));
    // A refreshing set needs the key, and fails as a get of it would.
    assert_eq!(fail(&mut s, refresh_set("/a/b/c", at(1))), (100, "/a/b".into(), 1));
    assert_eq!(fail(&mut s, refresh_set("/a/x", at(1))), (100, "/a/x".into(), 1));
}

#[test]
fn a_file_on_the_path_is_104_with_the_file_as_cause() {
    let mut s = V2Store::default();
    ok(&mut s, set("/a/f", "1"));
    assert_eq!(get_err(&s, "/a/f/g/h"), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, set("/a/f/g", "v")), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, set_dir("/a/f/g/h")), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, update("/a/f/g", "v", None)), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, cas("/a/f/g", "", 0, "v")), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, delete("/a/f/g", true, true)), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, cad("/a/f/g", "", 0)), (104, "/a/f".into(), 1));
    // Create walks the parent with etcd's checkDir, which answers EcodeNotDir with the file.
    assert_eq!(fail(&mut s, create("/a/f/g", "v")), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, create_dir("/a/f/g/h", None)), (104, "/a/f".into(), 1));
    assert_eq!(fail(&mut s, create_unique("/a/f", "v")), (104, "/a/f".into(), 1));
}

#[test]
fn a_value_onto_a_directory_is_102() {
    let mut s = V2Store::default();
    ok(&mut s, set_dir("/d"));
    assert_eq!(fail(&mut s, set("/d", "v")), (102, "/d".into(), 1));
    assert_eq!(fail(&mut s, set_dir("/d")), (102, "/d".into(), 1));
    assert_eq!(fail(&mut s, update("/d", "v", None)), (102, "/d".into(), 1));
    assert_eq!(fail(&mut s, cas("/d", "", 0, "v")), (102, "/d".into(), 1));
}

#[test]
fn the_root_is_read_only() {
    let mut s = V2Store::default();
    ok(&mut s, set("/x", "1"));
    for w in [
        set("/", "v"),
        set_dir("/"),
        create("/", "v"),
        create_dir("/", None),
        update("/", "", None),
        cas("/", "", 0, "v"),
        delete("/", true, true),
        // Paths are cleaned first.
        set("/a/..", "v"),
        delete("//", false, true),
    ] {
        assert_eq!(fail(&mut s, w), (107, "/".into(), 1));
    }
    let root = s.get("/", false, false).unwrap();
    assert_eq!(root.node.key, "/");
    assert_eq!((root.node.dir, root.node.created_index, root.node.modified_index), (true, 0, 0));
}

#[test]
fn paths_are_cleaned() {
    let mut s = V2Store::default();
    assert_eq!(ok(&mut s, set("a//b/./c/", "1")).node.key, "/a/b/c");
    assert_eq!(value(&s, "/a/x/../b/c").as_deref(), Some("1"));
    assert_eq!(ok(&mut s, update("/a/b/c/../c", "2", None)).node.key, "/a/b/c");
}

// ---- Reads and listings (TestStoreGetSorted, TestStoreGetDirectory) ----

#[test]
fn get_lists_direct_children_or_the_whole_subtree_without_hidden_keys() {
    let mut s = V2Store::default();
    ok(&mut s, create_dir("/foo", None)); // 1
    ok(&mut s, create("/foo/x", "0")); // 2
    ok(&mut s, create("/foo/z", "0")); // 3
    ok(&mut s, create_dir("/foo/y", None)); // 4
    ok(&mut s, create("/foo/y/a", "0")); // 5
    ok(&mut s, create("/foo/y/b", "0")); // 6
    ok(&mut s, create("/foo/_hidden", "*")); // 7
    ok(&mut s, create("/foo/y/_hidden", "*")); // 8
    ok(&mut s, create_dir("/foo/_hd", None)); // 9

    let e = s.get("/foo", false, true).unwrap();
    assert_eq!((e.action, e.etcd_index, e.prev_node), (V2Action::Get, 9, None));
    let y_alone = dir("/foo/y", 4, 4, vec![]);
    let expected = dir("/foo", 1, 1, vec![file("/foo/x", "0", 2, 2), y_alone, file("/foo/z", "0", 3, 3)]);
    assert_eq!(e.node, expected, "direct children; a child directory without its own");

    let e = s.get("/foo", true, true).unwrap();
    let y_full = dir("/foo/y", 4, 4, vec![file("/foo/y/a", "0", 5, 5), file("/foo/y/b", "0", 6, 6)]);
    let expected = dir("/foo", 1, 1, vec![file("/foo/x", "0", 2, 2), y_full, file("/foo/z", "0", 3, 3)]);
    assert_eq!(e.node, expected);

    // A hidden key is read by its own path, and a hidden directory lists its children.
    assert_eq!(s.get("/foo/_hidden", false, false).unwrap().node, file("/foo/_hidden", "*", 7, 7));
    ok(&mut s, create("/foo/_hd/v", "1"));
    assert_eq!(keys(&s.get("/foo/_hd", false, false).unwrap().node), vec!["/foo/_hd/v"]);

    // A file reads as itself; the root lists the top level.
    assert_eq!(s.get("/foo/x", true, true).unwrap().node, file("/foo/x", "0", 2, 2));
    assert_eq!(keys(&s.get("/", false, false).unwrap().node), vec!["/foo"]);
}

#[test]
fn children_are_listed_in_key_order_whatever_their_names() {
    let mut s = V2Store::default();
    // '-' and '.' sort before '/', which sorts before '0': siblings interleave with a
    // directory's subtree in a flat key order.
    for p in ["/p/b/x", "/p/b-c", "/p/b.d", "/p/b0", "/p/a", "/p/b/y/z", "/pq"] {
        ok(&mut s, set(p, "v"));
    }
    let n = s.get("/p", false, true).unwrap().node;
    assert_eq!(keys(&n), vec!["/p/a", "/p/b", "/p/b-c", "/p/b.d", "/p/b0"]);
    let n = s.get("/p", true, true).unwrap().node;
    assert_eq!(keys(&n.nodes[1]), vec!["/p/b/x", "/p/b/y"]);
    assert_eq!(keys(&n.nodes[1].nodes[1]), vec!["/p/b/y/z"]);
    assert_eq!(keys(&s.get("/", false, false).unwrap().node), vec!["/p", "/pq"]);
}

#[test]
fn in_order_keys_are_named_by_their_index() {
    let mut s = V2Store::default();
    let e = ok(&mut s, create_unique("/queue", "a"));
    assert_eq!(e.action, V2Action::Create);
    assert_eq!(e.node, file("/queue/00000000000000000001", "a", 1, 1));
    ok(&mut s, set("/other", "x"));
    assert_eq!(ok(&mut s, create_unique("/queue", "b")).node.key, "/queue/00000000000000000003");
    assert_eq!(ok(&mut s, create_unique("/", "c")).node.key, "/00000000000000000004");
    let e = ok(
        &mut s,
        V2Write::Create {
            path: "/q2/".into(),
            dir: true,
            value: String::new(),
            unique: true,
            expire_ns: None,
        },
    );
    assert_eq!(e.node, dir("/q2/00000000000000000005", 5, 5, vec![]));
    let q = s.get("/queue", false, true).unwrap().node;
    assert_eq!(keys(&q), vec!["/queue/00000000000000000001", "/queue/00000000000000000003"]);
}

// ---- TTLs and expiry (store_ttl_test.go) ----

#[test]
fn expire_removes_exactly_the_due_nodes_one_event_each() {
    let mut s = V2Store::default();
    ok(&mut s, create_ttl("/foo", "bar", at(4))); // 1
    ok(&mut s, create_ttl("/foofoo", "barbarbar", at(5))); // 2
    ok(&mut s, create_dir("/foodir", at(6))); // 3
    ok(&mut s, create("/perm", "p")); // 4
    assert_eq!(s.next_expiry_ns(), at(4));
    assert_eq!(s.get("/foo", false, false).unwrap().node.expiration_ns, at(4));

    let applied = s.apply(&expire(3)).unwrap();
    assert!(applied.events.is_empty());
    assert_eq!(s.index(), 4, "nothing due, nothing changes");

    // Due exactly at now_ns counts.
    let applied = s.apply(&expire(5)).unwrap();
    let got: Vec<_> = applied
        .events
        .iter()
        .map(|(e, r)| (e.node.key.as_str(), e.index(), e.etcd_index, r.clone()))
        .collect();
    assert_eq!(
        got,
        vec![("/foo", 5, 5, vec!["/foo".to_string()]), ("/foofoo", 6, 6, vec!["/foofoo".to_string()])]
    );
    let (e, _) = &applied.events[0];
    assert_eq!(e.action, V2Action::Expire);
    assert_eq!(
        e.node,
        V2Node { key: "/foo".into(), modified_index: 5, created_index: 1, ..V2Node::default() }
    );
    let mut prev = file("/foo", "bar", 1, 1);
    prev.expiration_ns = at(4);
    assert_eq!(e.prev_node, Some(prev));
    assert_eq!((s.index(), s.next_expiry_ns()), (6, at(6)));
    s.check_invariants().unwrap();

    let applied = s.apply(&expire(100)).unwrap();
    assert_eq!(applied.events.len(), 1);
    assert_eq!(applied.events[0].0.node, dir("/foodir", 3, 7, vec![]));
    assert_eq!(applied.events[0].0.prev_node.as_ref().map(|p| p.dir), Some(true));
    assert_eq!(s.next_expiry_ns(), None);
    assert_eq!(keys(&s.get("/", false, false).unwrap().node), vec!["/perm"]);
}

#[test]
fn an_expired_directory_takes_its_subtree_and_the_subtree_ttls() {
    let mut s = V2Store::default();
    ok(&mut s, create_dir("/d", at(10))); // 1
    ok(&mut s, create("/d/x", "1")); // 2
    ok(&mut s, create_ttl("/d/e/y", "2", at(20))); // 3
    ok(&mut s, create_ttl("/z", "3", at(30))); // 4
    let applied = s.apply(&expire(15)).unwrap();
    assert_eq!(applied.events.len(), 1);
    let (e, removed) = &applied.events[0];
    assert_eq!((e.action, e.node.key.as_str(), e.node.dir, e.index()), (V2Action::Expire, "/d", true, 5));
    assert_eq!(removed, &vec!["/d/x".to_string(), "/d/e/y".into(), "/d/e".into(), "/d".into()]);
    assert_eq!(s.next_expiry_ns(), at(30), "/d/e/y went with its directory");
    s.check_invariants().unwrap();
    assert!(s.apply(&expire(25)).unwrap().events.is_empty());
    assert_eq!(s.index(), 5);
}

#[test]
fn a_child_due_before_its_directory_expires_first() {
    let mut s = V2Store::default();
    ok(&mut s, create_dir("/d", at(10)));
    ok(&mut s, create_ttl("/d/x", "1", at(5)));
    let applied = s.apply(&expire(10)).unwrap();
    let got: Vec<_> = applied.events.iter().map(|(e, _)| (e.node.key.as_str(), e.index())).collect();
    assert_eq!(got, vec![("/d/x", 3), ("/d", 4)]);
    assert!(s.is_empty());
}

#[test]
fn expiry_times_before_2000_mean_no_ttl() {
    // TestMinExpireTime
    let mut s = V2Store::default();
    let e = ok(&mut s, create_ttl("/foo", "Y", Some(3 * SEC)));
    assert_eq!(e.node.expiration_ns, None);
    assert_eq!(s.next_expiry_ns(), None);
    assert!(s.apply(&expire(0)).unwrap().events.is_empty());
    assert_eq!(value(&s, "/foo").as_deref(), Some("Y"));
}

#[test]
fn update_and_set_move_or_clear_a_ttl() {
    let mut s = V2Store::default();
    ok(&mut s, create("/foo", "bar"));
    let e = ok(&mut s, update("/foo", "baz", at(1)));
    assert_eq!(e.node.expiration_ns, at(1));
    assert_eq!(s.next_expiry_ns(), at(1));
    // Moving it.
    ok(&mut s, update("/foo", "baz", at(9)));
    assert_eq!(s.next_expiry_ns(), at(9));
    assert!(s.apply(&expire(5)).unwrap().events.is_empty());
    // Clearing it: an update without an expiry makes the key permanent.
    let e = ok(&mut s, update("/foo", "q", None));
    assert_eq!(e.node.expiration_ns, None);
    assert_eq!(s.next_expiry_ns(), None);
    assert!(s.apply(&expire(100)).unwrap().events.is_empty());
    assert_eq!(value(&s, "/foo").as_deref(), Some("q"));

    // A set without a TTL over a key with one replaces it with a permanent one.
    ok(&mut s, set_ttl("/k", "1", at(3)));
    ok(&mut s, set("/k", "2"));
    assert_eq!(s.next_expiry_ns(), None);
    // So does a compare-and-swap.
    ok(&mut s, set_ttl("/k", "3", at(3)));
    ok(&mut s, cas("/k", "3", 0, "4"));
    assert_eq!(s.next_expiry_ns(), None);
    // Deleting a key unschedules it.
    ok(&mut s, set_ttl("/k", "5", at(3)));
    ok(&mut s, delete("/k", false, false));
    assert_eq!(s.next_expiry_ns(), None);

    // TestStoreUpdateDirTTL: a directory's TTL takes its files.
    ok(&mut s, create_dir("/d", None));
    ok(&mut s, create("/d/bar", "baz"));
    ok(&mut s, update("/d", "", at(200)));
    s.apply(&expire(200)).unwrap();
    assert_eq!(get_err(&s, "/d/bar").0, 100);
}

#[test]
fn refresh_keeps_the_value_and_moves_the_ttl_quietly() {
    let mut s = V2Store::default();
    ok(&mut s, create_ttl("/foo", "bar", at(5))); // 1
    ok(&mut s, create_dir("/dir", at(5))); // 2

    let e = ok(&mut s, refresh_update("/foo", at(10))); // 3
    assert!(e.refresh);
    assert_eq!(
        (e.action, e.node.value.as_deref(), e.node.expiration_ns),
        (V2Action::Update, Some("bar"), at(10))
    );
    let e = ok(&mut s, refresh_set("/foo", at(11))); // 4
    assert!(e.refresh);
    assert_eq!(e.node.value.as_deref(), Some("bar"));
    assert_eq!(e.prev_node.and_then(|p| p.value).as_deref(), Some("bar"));
    let e = ok(&mut s, refresh_update("/dir", at(12))); // 5
    assert!(e.refresh && e.node.dir);
    let e = ok(
        &mut s,
        V2Write::CompareAndSwap {
            path: "/foo".into(),
            prev_value: "bar".into(),
            prev_index: 0,
            value: String::new(),
            expire_ns: at(13),
            refresh: true,
        },
    ); // 6
    assert!(e.refresh);
    assert_eq!(e.node.value.as_deref(), Some("bar"));
    assert_eq!(value(&s, "/foo").as_deref(), Some("bar"));
    assert_eq!(s.next_expiry_ns(), at(12));

    // Refreshes are in the history (for index arithmetic) but never match a scan.
    assert_eq!(s.scan("/foo", false, 3).unwrap(), None);
    assert_eq!(s.scan("/", true, 1).unwrap().map(|e| e.index()), Some(1));
    assert_eq!(s.scan("/", true, 2).unwrap().map(|e| e.index()), Some(2));
    assert_eq!(s.scan("/", true, 3).unwrap(), None);

    // TestStoreWatchExpireRefresh: the next thing a watcher from 3 sees is the expiry.
    s.apply(&expire(12)).unwrap(); // 7: /dir
    let e = s.scan("/", true, 3).unwrap().unwrap();
    assert_eq!((e.action, e.node.key.as_str(), e.index(), e.etcd_index), (V2Action::Expire, "/dir", 7, 7));
    s.apply(&expire(13)).unwrap(); // 8: /foo
    let e = s.scan("/foo", false, 3).unwrap().unwrap();
    assert_eq!((e.action, e.index(), e.etcd_index), (V2Action::Expire, 8, 8));
    assert_eq!(e.prev_node.and_then(|p| p.value).as_deref(), Some("bar"));
}

// ---- The event history (event_test.go) and scan ----

#[test]
fn history_keeps_the_last_thousand_events() {
    let mut s = V2Store::default();
    assert_eq!(s.scan("/foo", true, 1).unwrap(), None, "an empty history waits");
    let n = HISTORY_EVENTS as u64 + 10;
    for i in 1..=n {
        ok(&mut s, set("/foo", &i.to_string()));
    }
    assert_eq!(HISTORY_EVENTS, 1000);
    let first = n - 999;
    let cleared = Error::V2 {
        code: 401,
        cause: format!("the requested history has been cleared [{first}/{}]", first - 1),
        index: n,
    };
    assert_eq!(s.scan("/foo", false, first - 1), Err(cleared));
    assert_eq!(
        s.scan("/foo", false, 1).unwrap_err(),
        Error::V2 {
            code: 401,
            cause: format!("the requested history has been cleared [{first}/1]"),
            index: n,
        }
    );
    let e = s.scan("/foo", false, first).unwrap().unwrap();
    assert_eq!((e.index(), e.etcd_index), (first, n), "an old event carries the current index");
    assert_eq!(e.node.value, Some(first.to_string()));
    assert_eq!(s.scan("/foo", false, n).unwrap().unwrap().index(), n);
    assert_eq!(s.scan("/foo", false, n + 1).unwrap(), None);
    assert_eq!(s.scan("/foo", false, 0).unwrap(), None, "0 waits for the next change");
    s.check_invariants().unwrap();
}

#[test]
fn scan_matches_key_prefix_and_deleted_parents() {
    // TestScanHistory, through the store.
    let mut s = V2Store::default();
    ok(&mut s, create_dir("/foo", None)); // 1
    ok(&mut s, create_dir("/foo/bar", None)); // 2
    ok(&mut s, create_dir("/foo/foo", None)); // 3
    ok(&mut s, create("/foo/bar/bar", "x")); // 4
    ok(&mut s, create("/foo/foo/foo", "x")); // 5
    ok(&mut s, create("/foobar", "x")); // 6
    ok(&mut s, delete("/foo", false, true)); // 7

    let at_index =
        |key: &str, recursive: bool, since: u64| s.scan(key, recursive, since).unwrap().map(|e| e.index());
    assert_eq!(at_index("/foo", false, 1), Some(1));
    assert_eq!(at_index("/foo/bar", false, 1), Some(2));
    assert_eq!(at_index("/foo/bar", false, 3), Some(7), "exact key only: the delete of its parent");
    assert_eq!(at_index("/foo/bar", true, 3), Some(4));
    assert_eq!(at_index("/foo", true, 6), Some(7), "/foobar is not under /foo");
    assert_eq!(at_index("/foo", false, 2), Some(7));
    assert_eq!(at_index("/foo/foo/foo", false, 6), Some(7));
    assert_eq!(at_index("/foo/never/was", false, 6), Some(7), "any key under the deleted dir");
    // etcd matches a deleted directory by raw string prefix: "/foobar" starts with "/foo".
    assert_eq!(at_index("/foobar", false, 7), Some(7));
    assert_eq!(at_index("/", true, 6), Some(6));
    assert_eq!(at_index("/foo/bar", true, 8), None, "a future index waits");
    // etcd's scan does not hide '_' keys (only live notification does).
    let mut s = V2Store::default();
    ok(&mut s, create("/d/_h", "x"));
    assert_eq!(s.scan("/d", true, 1).unwrap().map(|e| e.node.key), Some("/d/_h".to_string()));
}

#[test]
fn scan_matches_the_expiry_of_a_parent_directory() {
    let mut s = V2Store::default();
    ok(&mut s, create_dir("/d", at(1))); // 1
    ok(&mut s, create("/d/x", "1")); // 2
    ok(&mut s, create("/e", "2")); // 3
    s.apply(&expire(1)).unwrap(); // 4
    let e = s.scan("/d/x", false, 3).unwrap().unwrap();
    assert_eq!((e.action, e.node.key.as_str(), e.index()), (V2Action::Expire, "/d", 4));
    // A file's delete does not match keys below it.
    ok(&mut s, create("/f", "1")); // 5
    ok(&mut s, cad("/f", "1", 0)); // 6
    ok(&mut s, set("/g", "1")); // 7
    ok(&mut s, delete("/g", false, false)); // 8
    assert_eq!(s.scan("/f/x", false, 5).unwrap(), None);
    assert_eq!(s.scan("/g/x", false, 5).unwrap(), None);
}

// ---- Watchers (watcher_hub.go, watcher.go; TestStoreWatch*) ----

/// Applies `w` and hands each event to the watchers: (watcher, event index) for each one fired.
fn notify(s: &mut V2Store, ws: &mut V2Watchers, w: V2Write) -> Vec<(u64, u64)> {
    let applied = s.apply(&w).unwrap_or_else(|e| panic!("{w:?}: {e:?}"));
    let mut fired = vec![];
    for (e, removed) in &applied.events {
        for (id, r) in ws.on_event(e, removed) {
            let got = r.expect("a live watcher gets events");
            assert_eq!(&got, e);
            fired.push((id, got.index()));
        }
    }
    fired
}

#[test]
fn one_shot_watchers_fire_once_and_stream_watchers_keep_going() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    assert_eq!(ws.open(1, &s, "/foo", false, false, 0).unwrap(), (0, None));
    assert_eq!(ws.open(2, &s, "/foo", false, true, 0).unwrap(), (0, None));
    assert_eq!(ws.len(), 2);
    assert_eq!(notify(&mut s, &mut ws, create("/foo", "bar")), vec![(1, 1), (2, 1)]);
    assert_eq!(ws.len(), 1, "the one-shot watcher is done");
    assert_eq!(notify(&mut s, &mut ws, update("/foo", "baz", None)), vec![(2, 2)]);
    assert_eq!(notify(&mut s, &mut ws, cas("/foo", "baz", 0, "q")), vec![(2, 3)]);
    assert_eq!(notify(&mut s, &mut ws, set("/other", "q")), vec![]);
    assert_eq!(notify(&mut s, &mut ws, delete("/foo", false, false)), vec![(2, 5)]);
    assert!(ws.cancel(2));
    assert!(!ws.cancel(2));
    assert!(ws.is_empty());
}

#[test]
fn recursive_watchers_see_changes_below_and_plain_ones_only_their_key() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    ok(&mut s, create("/foo/bar", "baz")); // 1
    ws.open(1, &s, "/foo", true, true, 0).unwrap();
    ws.open(2, &s, "/foo", false, true, 0).unwrap();
    ws.open(3, &s, "/", true, true, 0).unwrap();
    ws.open(4, &s, "/fo", true, true, 0).unwrap();
    assert_eq!(notify(&mut s, &mut ws, update("/foo/bar", "x", None)), vec![(1, 2), (3, 2)]);
    assert_eq!(notify(&mut s, &mut ws, create("/foo/a/b", "x")), vec![(1, 3), (3, 3)]);
    assert_eq!(notify(&mut s, &mut ws, create("/foobar", "x")), vec![(3, 4)], "/foobar is not under /foo");
    assert_eq!(notify(&mut s, &mut ws, delete("/foo/bar", false, false)), vec![(1, 5), (3, 5)]);
    assert_eq!(notify(&mut s, &mut ws, update("/foo", "", at(1))), vec![(1, 6), (2, 6), (3, 6)]);
}

#[test]
fn hidden_keys_wake_only_watchers_on_their_exact_path() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    ws.open(1, &s, "/_foo", false, true, 0).unwrap();
    ws.open(2, &s, "/", true, true, 0).unwrap();
    ws.open(3, &s, "/foo", true, true, 0).unwrap();
    ws.open(4, &s, "/_foo/bar", true, true, 0).unwrap();
    assert_eq!(notify(&mut s, &mut ws, create("/_foo", "bar")), vec![(1, 1)]);
    assert_eq!(notify(&mut s, &mut ws, update("/_foo", "baz", None)), vec![(1, 2)]);
    assert_eq!(notify(&mut s, &mut ws, create("/foo/_bar", "baz")), vec![]);
    assert_eq!(notify(&mut s, &mut ws, create_dir("/foo/_baz", None)), vec![]);
    assert_eq!(notify(&mut s, &mut ws, create("/foo/_baz/quux", "q")), vec![]);
    assert_eq!(notify(&mut s, &mut ws, delete("/foo/_bar", false, false)), vec![]);
    assert_eq!(notify(&mut s, &mut ws, delete("/_foo", false, false)), vec![(1, 7)]);
    // Watching below a hidden key sees what happens there (deeper than the hidden segment).
    assert_eq!(notify(&mut s, &mut ws, create("/_foo/bar/baz", "b")), vec![(4, 8)]);
    // TestStoreWatchExpireWithHiddenKey
    ok(&mut s, create_ttl("/_t", "x", at(1))); // 9
    ok(&mut s, create_ttl("/t", "x", at(2))); // 10
    assert_eq!(notify(&mut s, &mut ws, expire(1)), vec![]);
    assert_eq!(notify(&mut s, &mut ws, expire(2)), vec![(2, 12)]);
}

#[test]
fn deleting_a_directory_wakes_watchers_on_paths_inside_it() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    ok(&mut s, create("/foo/bar/baz", "x")); // 1
    ok(&mut s, create("/foo/_h", "x")); // 2
    ws.open(1, &s, "/foo/bar/baz", false, false, 0).unwrap();
    ws.open(2, &s, "/foo/bar", false, false, 0).unwrap();
    ws.open(3, &s, "/foo/_h", false, false, 0).unwrap();
    ws.open(4, &s, "/foo/missing", false, false, 0).unwrap();
    ws.open(5, &s, "/foo", false, false, 0).unwrap();
    ws.open(6, &s, "/foo/bar/baz/deeper", true, false, 0).unwrap();
    let fired = notify(&mut s, &mut ws, delete("/foo", true, true));
    let ids: Vec<u64> = fired.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 2, 3, 5], "every removed path's watchers, hidden ones too");
    assert!(fired.iter().all(|(_, i)| *i == 3));
    assert_eq!(ws.len(), 2);

    // Expiry of a directory likewise.
    ok(&mut s, create_dir("/d", at(1))); // 4
    ok(&mut s, create("/d/x", "1")); // 5
    ws.open(7, &s, "/d/x", false, false, 0).unwrap();
    assert_eq!(notify(&mut s, &mut ws, expire(1)), vec![(7, 6)]);
}

#[test]
fn watchers_start_at_their_index_from_history_or_the_future() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    ok(&mut s, create("/foo", "1")); // 1
    ok(&mut s, update("/foo", "2", None)); // 2
    ok(&mut s, create("/bar", "1")); // 3

    // In history: answered at once with the current index, and not kept.
    let (index, e) = ws.open(1, &s, "/foo", false, true, 2).unwrap();
    let e = e.unwrap();
    assert_eq!((index, e.index(), e.etcd_index, e.action), (3, 2, 3, V2Action::Update));
    assert!(ws.is_empty());
    let (_, e) = ws.open(2, &s, "/", true, false, 1).unwrap();
    assert_eq!(e.unwrap().index(), 1);

    // Past the history's end: waits, and fires only at or after its index.
    assert_eq!(ws.open(3, &s, "/foo", false, false, 6).unwrap(), (3, None));
    assert_eq!(ws.open(4, &s, "/foo", false, false, 3).unwrap(), (3, None), "nothing at 3 for /foo");
    assert_eq!(notify(&mut s, &mut ws, update("/foo", "3", None)), vec![(4, 4)]);
    assert_eq!(notify(&mut s, &mut ws, update("/foo", "4", None)), vec![]);
    assert_eq!(notify(&mut s, &mut ws, update("/bar", "2", None)), vec![]);
    assert_eq!(notify(&mut s, &mut ws, update("/foo", "5", None)), vec![(3, 7)]);

    // Refreshes wake no one.
    ok(&mut s, update("/foo", "6", at(100))); // 8
    ws.open(5, &s, "/foo", true, false, 0).unwrap();
    assert_eq!(notify(&mut s, &mut ws, refresh_update("/foo", at(200))), vec![]);
    assert_eq!(notify(&mut s, &mut ws, refresh_set("/foo", at(300))), vec![]);
    assert_eq!(notify(&mut s, &mut ws, expire(300)), vec![(5, 11)]);
}

#[test]
fn watchers_from_a_cleared_index_fail_and_a_restore_ends_them_all() {
    let mut s = V2Store::default();
    let mut ws = V2Watchers::default();
    for i in 0..HISTORY_EVENTS + 5 {
        ok(&mut s, set("/k", &i.to_string()));
    }
    let err = ws.open(1, &s, "/k", false, false, 5).unwrap_err();
    assert_eq!(
        err,
        Error::V2 { code: 401, cause: "the requested history has been cleared [6/5]".into(), index: 1005 }
    );
    assert!(ws.is_empty());
    ws.open(2, &s, "/k", false, false, 0).unwrap();
    ws.open(3, &s, "/j", true, true, 0).unwrap();
    let cleared = ws.clear(1005);
    assert_eq!(cleared.len(), 2);
    for (_, r) in cleared {
        assert_eq!(r, Err(Error::V2 { code: 400, cause: String::new(), index: 1005 }));
    }
    assert!(ws.is_empty());
}

// ---- Through the state machine ----

#[test]
fn a_snapshot_carries_the_v2_store_with_its_history_and_ttls() {
    let mut sm = StateMachine::new();
    let writes = [
        set("/a/b", "1"),
        create_dir("/d", at(50)),
        create_ttl("/d/x", "2", at(10)),
        create_unique("/q", "job"),
        cas("/a/b", "1", 0, "3"),
        create("/_hidden", "h"),
        delete("/a", true, true),
        expire(10),
    ];
    for (i, w) in writes.iter().enumerate() {
        let applied =
            sm.apply(i as u64 + 1, 1, b"v2", &Command::V2(w.clone()), &cairn_core::Caller::Member, 1);
        match applied.result {
            Ok(ResponseBody::V2(Some(e))) => assert_eq!(e.index(), sm.v2().index()),
            other => panic!("{w:?}: {other:?}"),
        }
        assert!(!applied.v2_events.is_empty());
    }
    assert_eq!(sm.v2().index(), 8);
    // A failed write answers its error and changes nothing but the applied index.
    let applied = sm.apply(9, 1, b"v2", &Command::V2(create("/q", "x")), &cairn_core::Caller::Member, 1);
    assert_eq!(applied.result.unwrap_err(), Error::V2 { code: 105, cause: "/q".into(), index: 8 });

    let decoded = StateMachine::decode(&sm.encode()).unwrap();
    assert_eq!(decoded, sm);
    let v2 = decoded.v2();
    v2.check_invariants().unwrap();
    assert_eq!(v2.get("/", true, true).unwrap(), sm.v2().get("/", true, true).unwrap());
    assert_eq!(v2.next_expiry_ns(), at(50));
    assert_eq!(v2.scan("/d/x", false, 3).unwrap().map(|e| e.index()), Some(3));
    assert_eq!(
        v2.scan("/d/x", false, 4).unwrap().map(|e| (e.action, e.index())),
        Some((V2Action::Expire, 8))
    );
    assert_eq!(v2.scan("/a/b", false, 6).unwrap().map(|e| e.index()), Some(7));
    assert_eq!(value(v2, "/_hidden").as_deref(), Some("h"));
}

// ---- Random writes against a tree model ----

/// etcd's node: a file with a value, or a directory holding its children by name.
#[derive(Clone, Debug)]
struct MNode {
    created: u64,
    modified: u64,
    expire: Option<i64>,
    kind: MKind,
}

#[derive(Clone, Debug)]
enum MKind {
    File(String),
    Dir(BTreeMap<String, MNode>),
}

impl MNode {
    fn is_dir(&self) -> bool {
        matches!(self.kind, MKind::Dir(_))
    }
    fn value(&self) -> &str {
        match &self.kind {
            MKind::File(v) => v,
            MKind::Dir(_) => "",
        }
    }
    fn children(&mut self) -> &mut BTreeMap<String, MNode> {
        match &mut self.kind {
            MKind::Dir(c) => c,
            MKind::File(_) => panic!("not a directory"),
        }
    }
}

type MErr = (u32, String);

/// The v2 store as etcd's `store.go` is written: a root node walked component by component.
#[derive(Clone, Debug)]
struct Model {
    root: MNode,
    index: u64,
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(String::from).collect()
}

fn join(segs: &[String]) -> String {
    format!("/{}", segs.join("/"))
}

impl Model {
    fn new() -> Model {
        Model {
            root: MNode { created: 0, modified: 0, expire: None, kind: MKind::Dir(BTreeMap::new()) },
            index: 0,
        }
    }

    /// etcd's internalGet.
    fn get(&self, path: &str) -> Result<&MNode, MErr> {
        let segs = segments(path);
        let mut cur = &self.root;
        for (i, seg) in segs.iter().enumerate() {
            match &cur.kind {
                MKind::File(_) => return Err((104, join(&segs[..i]))),
                MKind::Dir(children) => match children.get(seg) {
                    Some(c) => cur = c,
                    None => return Err((100, join(&segs[..=i]))),
                },
            }
        }
        Ok(cur)
    }

    fn get_mut(&mut self, path: &str) -> &mut MNode {
        let mut cur = &mut self.root;
        for seg in segments(path) {
            cur = cur.children().get_mut(&seg).expect("checked by get");
        }
        cur
    }

    /// etcd's internalCreate: walk the parent making directories (a file there is 104), then
    /// add the node. Returns (created index, previous node).
    fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        replace: bool,
        expire: Option<i64>,
    ) -> Result<Option<MNode>, MErr> {
        let segs = segments(path);
        if segs.is_empty() {
            return Err((107, "/".into()));
        }
        let next = self.index + 1;
        // Check first (the store must be unchanged on error), then build.
        {
            let mut cur = &self.root;
            for (i, seg) in segs[..segs.len() - 1].iter().enumerate() {
                match cur.children_ref().get(seg) {
                    Some(c) if c.is_dir() => cur = c,
                    Some(_) => return Err((104, join(&segs[..=i]))),
                    None => break,
                }
            }
        }
        let mut cur = &mut self.root;
        for seg in &segs[..segs.len() - 1] {
            cur = cur.children().entry(seg.clone()).or_insert(MNode {
                created: next,
                modified: next,
                expire: None,
                kind: MKind::Dir(BTreeMap::new()),
            });
        }
        let name = segs.last().unwrap().clone();
        let prev = match cur.children_ref().get(&name) {
            Some(_) if !replace => return Err((105, path.into())),
            Some(n) if n.is_dir() => return Err((102, path.into())),
            p => p.cloned(),
        };
        let kind = if dir { MKind::Dir(BTreeMap::new()) } else { MKind::File(value.into()) };
        cur.children().insert(name, MNode { created: next, modified: next, expire, kind });
        self.index = next;
        Ok(prev)
    }

    fn compare(n: &MNode, prev_value: &str, prev_index: u64) -> Result<(), MErr> {
        let vok = prev_value.is_empty() || n.value() == prev_value;
        let iok = prev_index == 0 || n.modified == prev_index;
        let cause = match (vok, iok) {
            (true, true) => return Ok(()),
            (false, true) => format!("[{prev_value} != {}]", n.value()),
            (true, false) => format!("[{prev_index} != {}]", n.modified),
            (false, false) => format!("[{prev_value} != {}] [{prev_index} != {}]", n.value(), n.modified),
        };
        Err((101, cause))
    }

    fn remove(&mut self, path: &str) -> MNode {
        let segs = segments(path);
        let parent = self.get_mut(&join(&segs[..segs.len() - 1]));
        parent.children().remove(segs.last().unwrap()).expect("checked by get")
    }

    /// Applies `w`; on success, the (action, key, index) of each event.
    fn apply(&mut self, w: &V2Write) -> Result<Vec<(V2Action, String, u64)>, MErr> {
        let norm = |t: &Option<i64>| t.filter(|&t| t >= 946_684_800_000_000_000);
        let one = |m: &Model, a: V2Action, p: &str| vec![(a, p.to_string(), m.index)];
        match w {
            V2Write::Set { path, dir, value, expire_ns, refresh } => {
                let path = join(&segments(path));
                let value = match self.get(&path) {
                    Ok(n) if *refresh => n.value().to_string(),
                    Ok(_) => value.clone(),
                    Err((100, c)) if *refresh => return Err((100, c)),
                    Err((100, _)) => value.clone(),
                    Err(e) => return Err(e),
                };
                self.create(&path, *dir, &value, true, norm(expire_ns))?;
                Ok(one(self, V2Action::Set, &path))
            }
            V2Write::Create { path, dir, value, unique, expire_ns } => {
                let mut path = join(&segments(path));
                if *unique {
                    path = join(&segments(&format!("{path}/{:020}", self.index + 1)));
                }
                self.create(&path, *dir, value, false, norm(expire_ns))?;
                Ok(one(self, V2Action::Create, &path))
            }
            V2Write::Update { path, value, expire_ns, refresh } => {
                let path = join(&segments(path));
                if path == "/" {
                    return Err((107, "/".into()));
                }
                let n = self.get(&path)?;
                if n.is_dir() && !value.is_empty() {
                    return Err((102, path));
                }
                let value = if *refresh { n.value().to_string() } else { value.clone() };
                self.index += 1;
                let index = self.index;
                let n = self.get_mut(&path);
                if let MKind::File(v) = &mut n.kind {
                    *v = value;
                    n.modified = index;
                }
                n.expire = norm(expire_ns);
                Ok(one(self, V2Action::Update, &path))
            }
            V2Write::CompareAndSwap { path, prev_value, prev_index, value, expire_ns, refresh } => {
                let path = join(&segments(path));
                if path == "/" {
                    return Err((107, "/".into()));
                }
                let n = self.get(&path)?;
                if n.is_dir() {
                    return Err((102, path));
                }
                Model::compare(n, prev_value, *prev_index)?;
                let value = if *refresh { n.value().to_string() } else { value.clone() };
                self.index += 1;
                let index = self.index;
                let n = self.get_mut(&path);
                n.kind = MKind::File(value);
                n.modified = index;
                n.expire = norm(expire_ns);
                Ok(one(self, V2Action::CompareAndSwap, &path))
            }
            V2Write::Delete { path, dir, recursive } => {
                let path = join(&segments(path));
                if path == "/" {
                    return Err((107, "/".into()));
                }
                let n = self.get(&path)?;
                if let MKind::Dir(children) = &n.kind {
                    if !(*dir || *recursive) {
                        return Err((102, path));
                    }
                    if !children.is_empty() && !*recursive {
                        return Err((108, path));
                    }
                }
                self.remove(&path);
                self.index += 1;
                Ok(one(self, V2Action::Delete, &path))
            }
            V2Write::CompareAndDelete { path, prev_value, prev_index } => {
                let path = join(&segments(path));
                let n = self.get(&path)?;
                if n.is_dir() {
                    // The root's cause is empty: etcd trims its internal name away.
                    return Err((102, if path == "/" { String::new() } else { path }));
                }
                Model::compare(n, prev_value, *prev_index)?;
                self.remove(&path);
                self.index += 1;
                Ok(one(self, V2Action::CompareAndDelete, &path))
            }
            V2Write::Expire { now_ns } => {
                let mut events = vec![];
                loop {
                    let mut due = vec![];
                    collect_due(&self.root, "", *now_ns, &mut due);
                    let Some((_, path)) = due.into_iter().min() else { break };
                    self.remove(&path);
                    self.index += 1;
                    events.push((V2Action::Expire, path, self.index));
                }
                Ok(events)
            }
        }
    }

    /// Every node's path, depth first.
    fn paths(&self) -> Vec<String> {
        let mut out = vec![];
        fn walk(n: &MNode, path: &str, out: &mut Vec<String>) {
            if let MKind::Dir(c) = &n.kind {
                for (name, child) in c {
                    let p = format!("{path}/{name}");
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
        }
        walk(&self.root, "", &mut out);
        out
    }
}

impl MNode {
    fn children_ref(&self) -> &BTreeMap<String, MNode> {
        match &self.kind {
            MKind::Dir(c) => c,
            MKind::File(_) => panic!("not a directory"),
        }
    }
}

fn collect_due(n: &MNode, path: &str, now_ns: i64, out: &mut Vec<(i64, String)>) {
    if let MKind::Dir(c) = &n.kind {
        for (name, child) in c {
            let p = format!("{path}/{name}");
            if let Some(t) = child.expire.filter(|&t| t <= now_ns) {
                out.push((t, p.clone()));
            }
            collect_due(child, &p, now_ns, out);
        }
    }
}

/// Paths over a small alphabet, so that writes collide: 1 to 3 segments of "a", "b", "_h".
fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "_h"]), 1..=3)
        .prop_map(|s| format!("/{}", s.join("/")))
}

fn arb_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "x", "y"]).prop_map(String::from)
}

fn arb_expiry() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![2 => Just(None), 1 => (1i64..6).prop_map(at)]
}

fn arb_write() -> impl Strategy<Value = V2Write> {
    let path = || prop_oneof![10 => arb_path(), 1 => Just("/".to_string())];
    prop_oneof![
        4 => (path(), any::<bool>(), arb_value(), arb_expiry(), prop::bool::weighted(0.1)).prop_map(
            |(path, dir, value, expire_ns, refresh)| V2Write::Set { path, dir, value, expire_ns, refresh }
        ),
        3 => (path(), prop::bool::weighted(0.3), arb_value(), prop::bool::weighted(0.15), arb_expiry()).prop_map(
            |(path, dir, value, unique, expire_ns)| V2Write::Create { path, dir, value, unique, expire_ns }
        ),
        2 => (path(), arb_value(), arb_expiry(), prop::bool::weighted(0.2))
            .prop_map(|(path, value, expire_ns, refresh)| V2Write::Update { path, value, expire_ns, refresh }),
        2 => (path(), arb_value(), 0u64..8, arb_value(), arb_expiry(), prop::bool::weighted(0.1)).prop_map(
            |(path, prev_value, prev_index, value, expire_ns, refresh)| V2Write::CompareAndSwap {
                path,
                prev_value,
                prev_index,
                value,
                expire_ns,
                refresh
            }
        ),
        2 => (path(), any::<bool>(), any::<bool>())
            .prop_map(|(path, dir, recursive)| V2Write::Delete { path, dir, recursive }),
        1 => (path(), arb_value(), 0u64..8)
            .prop_map(|(path, prev_value, prev_index)| V2Write::CompareAndDelete { path, prev_value, prev_index }),
        1 => (0i64..7).prop_map(expire),
    ]
}

/// Every path the writes can reach (and the unique names under the small ones).
fn probe_paths(model: &Model) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let names = ["a", "b", "_h", "zz"];
    for x in names {
        out.push(format!("/{x}"));
        for y in names {
            out.push(format!("/{x}/{y}"));
            for z in names {
                out.push(format!("/{x}/{y}/{z}"));
                out.push(format!("/{x}/{y}/{z}/w"));
            }
        }
    }
    out.extend(model.paths());
    out.sort();
    out.dedup();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_writes_match_the_tree_model(writes in prop::collection::vec(arb_write(), 1..80)) {
        let mut s = V2Store::default();
        let mut m = Model::new();
        for w in &writes {
            let index_before = s.index();
            let got = s.apply(w);
            let want = m.apply(w);
            match (&got, &want) {
                (Ok(applied), Ok(events)) => {
                    let got: Vec<_> = applied
                        .events
                        .iter()
                        .map(|(e, _)| (e.action, e.node.key.clone(), e.index()))
                        .collect();
                    prop_assert_eq!(&got, events, "{:?}", w);
                    for (e, removed) in &applied.events {
                        prop_assert_eq!(e.etcd_index, e.index());
                        prop_assert_eq!(removed.is_empty(), !matches!(
                            e.action,
                            V2Action::Delete | V2Action::CompareAndDelete | V2Action::Expire
                        ));
                        // The history holds the event, and a scan from its index finds it.
                        if !e.refresh {
                            let found = s.scan(&e.node.key, false, e.index()).unwrap().unwrap();
                            prop_assert_eq!(found.index(), e.index());
                        }
                    }
                }
                (Err(Error::V2 { code, cause, index }), Err((mcode, mcause))) => {
                    prop_assert_eq!((code, cause), (mcode, mcause), "{:?}", w);
                    prop_assert_eq!(*index, index_before);
                }
                _ => prop_assert!(false, "{:?}: store {:?}, model {:?}", w, got, want),
            }
            // The index moves by one per event, and never back.
            prop_assert_eq!(s.index(), m.index);
            let n_events = got.as_ref().map(|a| a.events.len() as u64).unwrap_or(0);
            prop_assert_eq!(s.index(), index_before + n_events);
            s.check_invariants().unwrap();

            // Same tree: every path reads the same (or fails the same way).
            for p in probe_paths(&m) {
                match (s.get(&p, false, true), m.get(&p)) {
                    (Ok(e), Ok(n)) => {
                        prop_assert_eq!(e.node.dir, n.is_dir(), "{}", p);
                        prop_assert_eq!(
                            (e.node.created_index, e.node.modified_index, e.node.expiration_ns),
                            (n.created, n.modified, n.expire),
                            "{}", p
                        );
                        match &n.kind {
                            MKind::File(v) => prop_assert_eq!(e.node.value.as_ref(), Some(v)),
                            MKind::Dir(c) => {
                                let want: Vec<String> = c
                                    .keys()
                                    .filter(|k| !k.starts_with('_'))
                                    .map(|k| if p == "/" { format!("/{k}") } else { format!("{p}/{k}") })
                                    .collect();
                                let got: Vec<String> = e.node.nodes.iter().map(|c| c.key.clone()).collect();
                                prop_assert_eq!(got, want, "{}", p);
                            }
                        }
                    }
                    (Err(Error::V2 { code, cause, .. }), Err((mcode, mcause))) => {
                        prop_assert_eq!((code, cause), (mcode, mcause), "get {}", p);
                    }
                    (got, want) => prop_assert!(false, "get {}: store {:?}, model {:?}", p, got, want),
                }
            }
            prop_assert_eq!(s.len(), m.paths().len());
        }
        // Fewer than HISTORY_EVENTS changes: the history still starts at the first one (each
        // event was found at its index above, and check_invariants saw them consecutive).
        prop_assert!(s.scan("/", true, 1).is_ok());
    }
}
