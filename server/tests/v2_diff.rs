//! The etcd v2 keys API, differentially: every step goes to a reference etcd 3.4 and to Cairn,
//! and their answers must agree up to what legitimately differs (support/v2.rs says what).
//! `CAIRN_V2_DIFF_AGAINST=etcd` runs the same scenarios etcd against etcd, which is how the
//! scenarios themselves are checked; add `CAIRN_V2_DIFF_PRINT=1` and `-- --nocapture` to see
//! every answer of the reference. What etcd does is written up in docs/v2-etcd-behaviour.md.
//!
//! Each test starts its own pair of servers, so keys need no per-test prefix. Values compared
//! by `prevValue` are never numbers: see `map_bracketed_numbers` in support/v2.rs.

#[path = "support/ports.rs"]
mod ports;
#[path = "support/v2.rs"]
mod v2;

use v2::{burst, delete, finish, get, post, put, req, run, sleep_ms, start_step, Step};

// ---------------------------------------------------------------------------------------------
// Reads and writes

#[test]
fn set_and_get_with_form_and_query() {
    run(
        "set_and_get_with_form_and_query",
        vec![
            put("/v2/keys/a", "value=one").into(),
            // 200 with prevNode on the second set, 201 on the first.
            put("/v2/keys/a", "value=two").into(),
            req("PUT", "/v2/keys/a?value=three", None).into(),
            get("/v2/keys/a").into(),
            get("/v2/keys/a?quorum=true").into(),
            get("/v2/keys/a?quorum=false").into(),
            // Body and query both carry `value`: the body wins (Go's r.FormValue).
            put("/v2/keys/b?value=query", "value=form").into(),
            get("/v2/keys/b").into(),
            // An empty value and no value at all both set "".
            put("/v2/keys/c", "value=").into(),
            put("/v2/keys/c", "").into(),
            get("/v2/keys/c").into(),
            // Values round-trip byte for byte, percent-encoded in the form.
            put("/v2/keys/d", "value=a%20b%2Bc+d%26e%3D%0A%F0%9F%8C%8D").into(),
            get("/v2/keys/d").into(),
            // A POST to a key that is a file: in-order keys need a directory.
            put("/v2/keys/e", "value=x").into(),
            post("/v2/keys/e", "value=y").into(),
            get("/v2/keys/nope").into(),
            // Unknown parameters are ignored.
            get("/v2/keys/a?frobnicate=yes&x").into(),
            put("/v2/keys/a?frobnicate=yes", "value=four&also=unknown").into(),
            // noValueOnSuccess drops node and prevNode from a write's answer.
            put("/v2/keys/a?noValueOnSuccess=true", "value=five").into(),
            get("/v2/keys/a?noValueOnSuccess=true").into(),
        ],
    );
}

#[test]
fn go_json_escaping_and_odd_keys() {
    run(
        "go_json_escaping_and_odd_keys",
        vec![
            // Go escapes <, > and & as \u003c, \u003e, \u0026, and U+2028/U+2029.
            put("/v2/keys/html", "value=%3Cb%3E%26amp%3B%3C%2Fb%3E").into(),
            get("/v2/keys/html").into(),
            put("/v2/keys/quote", "value=%22%5C%09%01%E2%80%A8").into(),
            get("/v2/keys/quote").into(),
            // Keys with escaped characters and unicode.
            put("/v2/keys/with%20space", "value=x").into(),
            get("/v2/keys/with%20space").into(),
            put("/v2/keys/%C3%A9t%C3%A9", "value=x").into(),
            get("/v2/keys/?sorted=true").into(),
            put("/v2/keys/a%26b%3Cc", "value=x").into(),
            get("/v2/keys/a%26b%3Cc").into(),
            // Trailing slashes and `.` segments are cleaned by path.Join.
            put("/v2/keys/t/", "value=x").into(),
            get("/v2/keys/t").into(),
            get("/v2/keys/t/").into(),
            // Go's ServeMux redirects unclean paths with 301.
            get("/v2/keys//t").into(),
            get("/v2/keys/x/../t").into(),
        ],
    );
}

#[test]
fn root_node() {
    run(
        "root_node",
        vec![
            get("/v2/keys/").into(),
            get("/v2/keys").into(),
            get("/v2/keys/?recursive=true").into(),
            put("/v2/keys/a", "value=x").into(),
            put("/v2/keys/d/e", "value=y").into(),
            get("/v2/keys/").into(),
            get("/v2/keys").into(),
            get("/v2/keys/?recursive=true&sorted=true").into(),
            // The root is read only: error 107 for every write to it.
            put("/v2/keys/", "value=x").into(),
            put("/v2/keys", "value=x").into(),
            put("/v2/keys/", "dir=true").into(),
            delete("/v2/keys/?dir=true&recursive=true").into(),
            delete("/v2/keys/").into(),
            put("/v2/keys/?prevValue=x", "value=y").into(),
            delete("/v2/keys/?prevValue=x").into(),
            // POST to the root makes an in-order key at the top.
            post("/v2/keys/", "value=z").into(),
            get("/v2/keys/?sorted=true").into(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Actions and conditions

#[test]
fn create_and_update_by_prev_exist() {
    run(
        "create_and_update_by_prev_exist",
        vec![
            put("/v2/keys/k?prevExist=false", "value=one").into(),
            put("/v2/keys/k?prevExist=false", "value=again").into(),
            put("/v2/keys/k?prevExist=true", "value=two").into(),
            put("/v2/keys/missing?prevExist=true", "value=x").into(),
            put("/v2/keys/k", "prevExist=true&value=three").into(),
            put("/v2/keys/k?prevExist=1", "value=four").into(),
            put("/v2/keys/dir/f?prevExist=false", "value=x").into(),
            put("/v2/keys/newdir?prevExist=false", "dir=true").into(),
            put("/v2/keys/newdir?prevExist=false", "dir=true").into(),
            // An update of a directory without dir=true, and with it.
            put("/v2/keys/newdir?prevExist=true", "value=x").into(),
            put("/v2/keys/newdir?prevExist=true&dir=true", "").into(),
            put("/v2/keys/k?prevExist=true&dir=true", "").into(),
            get("/v2/keys/?recursive=true").into(),
        ],
    );
}

#[test]
fn compare_and_swap() {
    run(
        "compare_and_swap",
        vec![
            put("/v2/keys/k", "value=one").into(),
            put("/v2/keys/k?prevValue=one", "value=two").into(),
            put("/v2/keys/k?prevValue=one", "value=three").into(),
            put("/v2/keys/k?prevIndex={1/node/modifiedIndex}", "value=three").into(),
            put("/v2/keys/k?prevIndex={1/node/modifiedIndex}", "value=four").into(),
            put("/v2/keys/k?prevIndex={3/node/modifiedIndex}&prevValue=three", "value=five").into(),
            put("/v2/keys/k?prevIndex={3/node/modifiedIndex}&prevValue=three", "value=six").into(),
            put("/v2/keys/k?prevIndex={5/node/modifiedIndex}&prevValue=wrong", "value=six").into(),
            put("/v2/keys/k?prevIndex={base+100}&prevValue=five", "value=six").into(),
            // prevIndex=0 means no condition: a plain set.
            put("/v2/keys/k?prevIndex=0", "value=seven").into(),
            put("/v2/keys/k", "prevValue=seven&value=eight").into(),
            put("/v2/keys/k?prevExist=true&prevValue=eight", "value=nine").into(),
            put("/v2/keys/k?prevExist=false&prevValue=nine", "value=ten").into(),
            put("/v2/keys/missing?prevValue=x", "value=y").into(),
            put("/v2/keys/missing?prevIndex={base+100}", "value=y").into(),
            put("/v2/keys/dir/f", "value=x").into(),
            put("/v2/keys/dir?prevValue=x", "value=y").into(),
            put("/v2/keys/dir?prevIndex={15/node/modifiedIndex}", "value=y").into(),
            put("/v2/keys/k?prevValue=", "value=y").into(),
            // A CAS with a TTL, and one that keeps no TTL.
            put("/v2/keys/k?prevValue=nine&ttl=100", "value=eleven").into(),
            put("/v2/keys/k?prevValue=eleven", "value=twelve").into(),
            get("/v2/keys/k").into(),
        ],
    );
}

#[test]
fn compare_and_delete() {
    run(
        "compare_and_delete",
        vec![
            put("/v2/keys/k", "value=one").into(),
            delete("/v2/keys/k?prevValue=two").into(),
            delete("/v2/keys/k?prevIndex={0/node/modifiedIndex+100}").into(),
            delete("/v2/keys/k?prevIndex={0/node/modifiedIndex}&prevValue=two").into(),
            delete("/v2/keys/k?prevValue=one").into(),
            delete("/v2/keys/k?prevValue=one").into(),
            put("/v2/keys/k", "value=one").into(),
            delete("/v2/keys/k?prevIndex={6/node/modifiedIndex}").into(),
            put("/v2/keys/dir/f", "value=x").into(),
            delete("/v2/keys/dir?prevValue=x").into(),
            delete("/v2/keys/dir?prevValue=x&dir=true&recursive=true").into(),
            delete("/v2/keys/k?prevValue=").into(),
            // DELETE reads no form body (Go parses bodies of POST, PUT and PATCH only).
            put("/v2/keys/k", "value=one").into(),
            req("DELETE", "/v2/keys/k", Some("prevValue=two")).into(),
            get("/v2/keys/k").into(),
        ],
    );
}

#[test]
fn delete_files_and_directories() {
    run(
        "delete_files_and_directories",
        vec![
            put("/v2/keys/f", "value=x").into(),
            delete("/v2/keys/f").into(),
            delete("/v2/keys/f").into(),
            put("/v2/keys/f", "value=x").into(),
            delete("/v2/keys/f?dir=true").into(),
            put("/v2/keys/f", "value=x").into(),
            delete("/v2/keys/f?recursive=true").into(),
            put("/v2/keys/empty", "dir=true").into(),
            delete("/v2/keys/empty").into(),
            delete("/v2/keys/empty?dir=true").into(),
            put("/v2/keys/full/a/b", "value=x").into(),
            put("/v2/keys/full/c", "value=y").into(),
            delete("/v2/keys/full").into(),
            delete("/v2/keys/full?dir=true").into(),
            delete("/v2/keys/full?recursive=true").into(),
            get("/v2/keys/full").into(),
            get("/v2/keys/full/a/b").into(),
            put("/v2/keys/full2/a/b", "value=x").into(),
            delete("/v2/keys/full2?dir=true&recursive=true").into(),
            delete("/v2/keys/missing?dir=true&recursive=true").into(),
            delete("/v2/keys/missing/deeper").into(),
            // DELETE under a file.
            put("/v2/keys/g", "value=x").into(),
            delete("/v2/keys/g/h").into(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Directories

#[test]
fn directories() {
    run(
        "directories",
        vec![
            // Implicit by a deep write; the intermediate directories get the write's index.
            put("/v2/keys/a/b/c", "value=x").into(),
            get("/v2/keys/a").into(),
            get("/v2/keys/a?recursive=true").into(),
            get("/v2/keys/a/b").into(),
            // Explicit.
            put("/v2/keys/e", "dir=true").into(),
            get("/v2/keys/e").into(),
            put("/v2/keys/e", "dir=true").into(),
            put("/v2/keys/e?dir=true", "value=ignored").into(),
            put("/v2/keys/e2", "dir=true&value=ignored").into(),
            get("/v2/keys/e2").into(),
            // A value onto a directory, a key under a file.
            put("/v2/keys/a", "value=x").into(),
            put("/v2/keys/a/b/c/d", "value=x").into(),
            post("/v2/keys/a/b/c", "value=x").into(),
            get("/v2/keys/a/b/c/d").into(),
            // Turning a file into a directory.
            put("/v2/keys/a/b/c", "dir=true").into(),
            // Listings: direct children only, then the whole subtree; sorted and not.
            put("/v2/keys/l/z", "value=1").into(),
            put("/v2/keys/l/m/n", "value=2").into(),
            put("/v2/keys/l/a", "value=3").into(),
            put("/v2/keys/l/k", "dir=true").into(),
            get("/v2/keys/l").into(),
            get("/v2/keys/l?sorted=true").into(),
            get("/v2/keys/l?recursive=true").into(),
            get("/v2/keys/l?recursive=true&sorted=true").into(),
            // A file ignores recursive and sorted.
            get("/v2/keys/l/z?recursive=true&sorted=true").into(),
            // Writing a child does not change the directory's modifiedIndex.
            put("/v2/keys/l/zz", "value=4").into(),
            get("/v2/keys/l?sorted=true").into(),
            // A directory created with POST dir=true.
            post("/v2/keys/l", "dir=true").into(),
            get("/v2/keys/l?sorted=true").into(),
        ],
    );
}

#[test]
fn hidden_keys() {
    run(
        "hidden_keys",
        vec![
            put("/v2/keys/h/_secret", "value=s").into(),
            put("/v2/keys/h/visible", "value=v").into(),
            put("/v2/keys/h/_hdir/inner", "value=i").into(),
            put("/v2/keys/h/d/_deep", "value=d").into(),
            put("/v2/keys/_top", "value=t").into(),
            get("/v2/keys/h").into(),
            get("/v2/keys/h?recursive=true").into(),
            get("/v2/keys/h?recursive=true&sorted=true").into(),
            get("/v2/keys/h/d").into(),
            get("/v2/keys/").into(),
            // Readable by name, and listable from inside.
            get("/v2/keys/h/_secret").into(),
            get("/v2/keys/h/_hdir").into(),
            get("/v2/keys/_top").into(),
            // A directory whose children are all hidden.
            put("/v2/keys/only/_x", "value=x").into(),
            get("/v2/keys/only").into(),
            delete("/v2/keys/only?dir=true").into(),
            delete("/v2/keys/h/_secret").into(),
            // Underscore in the middle of a name is not hidden.
            put("/v2/keys/h/not_hidden", "value=n").into(),
            get("/v2/keys/h?sorted=true").into(),
        ],
    );
}

#[test]
fn in_order_keys() {
    run(
        "in_order_keys",
        vec![
            post("/v2/keys/q", "value=first").into(),
            post("/v2/keys/q", "value=second").into(),
            post("/v2/keys/q?value=third", "").into(),
            post("/v2/keys/q", "value=fourth&ttl=100").into(),
            get("/v2/keys/q?sorted=true").into(),
            get("/v2/keys/q").into(),
            get("/v2/keys{1/node/key}").into(),
            // Consume the head by compareAndDelete on its index.
            delete("/v2/keys{0/node/key}?prevIndex={0/node/modifiedIndex}").into(),
            get("/v2/keys/q?sorted=true").into(),
            // prevExist=false on POST: still a create with a new name.
            post("/v2/keys/q?prevExist=false", "value=fifth").into(),
            post("/v2/keys/q?prevExist=true", "value=sixth").into(),
            post("/v2/keys/q/deeper/than/before", "value=x").into(),
            get("/v2/keys/q?sorted=true&recursive=true").into(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// TTLs

#[test]
fn ttl_and_expiry() {
    run(
        "ttl_and_expiry",
        vec![
            put("/v2/keys/long", "value=x&ttl=100").into(),
            get("/v2/keys/long").into(),
            put("/v2/keys/short", "value=x&ttl=1").into(),
            put("/v2/keys/dir/child", "value=x&ttl=1").into(),
            get("/v2/keys/?recursive=true").into(),
            // ttl=0 expires at the next sweep, which each side runs on its own clock: written
            // last, and nothing is read until both have surely swept.
            put("/v2/keys/zero", "value=x&ttl=0").into(),
            sleep_ms(2500),
            get("/v2/keys/short").into(),
            get("/v2/keys/zero").into(),
            get("/v2/keys/dir").into(),
            // Clearing a TTL: set again with ttl= empty, or update with ttl=''.
            put("/v2/keys/long", "value=y&ttl=").into(),
            get("/v2/keys/long").into(),
            put("/v2/keys/long2", "value=x&ttl=100").into(),
            put("/v2/keys/long2?prevExist=true", "value=y&ttl=").into(),
            get("/v2/keys/long2").into(),
            put("/v2/keys/long3", "value=x&ttl=100").into(),
            // Setting without ttl at all clears it too.
            put("/v2/keys/long3", "value=y").into(),
            // An update with a TTL.
            put("/v2/keys/long3?prevExist=true", "value=z&ttl=50").into(),
            get("/v2/keys/?recursive=true&sorted=true").into(),
        ],
    );
}

#[test]
fn ttl_refresh() {
    run(
        "ttl_refresh",
        vec![
            put("/v2/keys/k", "value=kept&ttl=2").into(),
            // Refresh sets a new TTL without changing the value or notifying watchers.
            put("/v2/keys/k", "refresh=true&ttl=100").into(),
            get("/v2/keys/k").into(),
            put("/v2/keys/k?prevExist=true", "refresh=true&ttl=100").into(),
            put("/v2/keys/k?prevValue=kept", "refresh=true&ttl=100").into(),
            put("/v2/keys/k?prevIndex={0/node/modifiedIndex}", "refresh=true&ttl=100").into(),
            put("/v2/keys/k", "refresh=true&ttl=100&value=changed").into(),
            put("/v2/keys/k", "refresh=true").into(),
            put("/v2/keys/k", "refresh=true&ttl=").into(),
            put("/v2/keys/missing", "refresh=true&ttl=5").into(),
            put("/v2/keys/k", "refresh=false&ttl=100&value=changed").into(),
            // A refreshed key outlives its first TTL.
            put("/v2/keys/r", "value=x&ttl=1").into(),
            put("/v2/keys/r", "refresh=true&ttl=100").into(),
            sleep_ms(2200),
            get("/v2/keys/r").into(),
            // Refresh of a directory's TTL.
            put("/v2/keys/d", "dir=true&ttl=100").into(),
            put("/v2/keys/d", "dir=true&refresh=true&ttl=200&prevExist=true").into(),
            get("/v2/keys/d").into(),
            // A refresh wakes no wait: the event the wait gets is the next real change.
            start_step(get("/v2/keys/k?wait=true")),
            put("/v2/keys/k", "refresh=true&ttl=100").into(),
            put("/v2/keys/k", "value=woken").into(),
            finish(18),
        ],
    );
}

#[test]
fn directory_ttl_expiry() {
    run(
        "directory_ttl_expiry",
        vec![
            put("/v2/keys/d", "dir=true&ttl=1").into(),
            put("/v2/keys/d/child", "value=x").into(),
            put("/v2/keys/d/sub/grandchild", "value=y").into(),
            get("/v2/keys/d?recursive=true").into(),
            // A directory's TTL is updated with prevExist=true and dir=true.
            put("/v2/keys/keep", "dir=true&ttl=1").into(),
            put("/v2/keys/keep?prevExist=true", "dir=true&ttl=").into(),
            sleep_ms(2500),
            get("/v2/keys/d").into(),
            get("/v2/keys/d/child").into(),
            get("/v2/keys/keep").into(),
            // The expiry went through the log: it has its own index.
            put("/v2/keys/after", "value=x").into(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Waits

#[test]
fn wait_long_poll() {
    run(
        "wait_long_poll",
        vec![
            put("/v2/keys/w", "value=before").into(),
            start_step(get("/v2/keys/w?wait=true")),
            put("/v2/keys/w", "value=after").into(),
            finish(1),
            // A wait on a key that does not exist yet.
            start_step(get("/v2/keys/new?wait=true")),
            put("/v2/keys/new?prevExist=false", "value=x").into(),
            finish(4),
            // A wait sees a compareAndSwap, then a delete, then a compareAndDelete.
            start_step(get("/v2/keys/w?wait=true")),
            put("/v2/keys/w?prevValue=after", "value=swapped").into(),
            finish(7),
            start_step(get("/v2/keys/w?wait=true")),
            delete("/v2/keys/w").into(),
            finish(10),
            put("/v2/keys/w", "value=again").into(),
            start_step(get("/v2/keys/w?wait=true")),
            delete("/v2/keys/w?prevValue=again").into(),
            finish(14),
            // A non-recursive wait on a directory does not see its children: the event that
            // ends it is the directory's own.
            put("/v2/keys/dir", "dir=true").into(),
            start_step(get("/v2/keys/dir?wait=true")),
            put("/v2/keys/dir/child", "value=unseen").into(),
            delete("/v2/keys/dir?recursive=true").into(),
            finish(18),
            // wait=false is an ordinary get.
            get("/v2/keys/new?wait=false").into(),
        ],
    );
}

#[test]
fn wait_recursive() {
    run(
        "wait_recursive",
        vec![
            put("/v2/keys/tree/a", "value=x").into(),
            start_step(get("/v2/keys/tree?wait=true&recursive=true")),
            put("/v2/keys/tree/b/c/d", "value=deep").into(),
            finish(1),
            start_step(get("/v2/keys/tree?wait=true&recursive=true")),
            delete("/v2/keys/tree/a").into(),
            finish(4),
            // Writes elsewhere do not end it; a hidden key under the tree does not either.
            start_step(get("/v2/keys/tree?wait=true&recursive=true")),
            put("/v2/keys/elsewhere", "value=x").into(),
            put("/v2/keys/tree/_hidden", "value=x").into(),
            put("/v2/keys/tree/seen", "value=x").into(),
            finish(7),
            // A recursive wait on a key that is not yet a directory.
            start_step(get("/v2/keys/later?wait=true&recursive=true")),
            put("/v2/keys/later/x", "value=x").into(),
            finish(12),
            // Recursive waits from the root.
            start_step(get("/v2/keys/?wait=true&recursive=true")),
            post("/v2/keys/queue", "value=x").into(),
            finish(15),
        ],
    );
}

#[test]
fn wait_index_replays_history() {
    run(
        "wait_index_replays_history",
        vec![
            put("/v2/keys/h", "value=one").into(),
            put("/v2/keys/h", "value=two").into(),
            put("/v2/keys/other", "value=x").into(),
            put("/v2/keys/h", "value=three").into(),
            // The first event at or after waitIndex, from history, at once.
            get("/v2/keys/h?wait=true&waitIndex={0/node/modifiedIndex}").into(),
            get("/v2/keys/h?wait=true&waitIndex={1/node/modifiedIndex}").into(),
            get("/v2/keys/h?wait=true&waitIndex={2/node/modifiedIndex}").into(),
            get("/v2/keys/h?wait=true&waitIndex={base+1}").into(),
            get("/v2/keys/?wait=true&recursive=true&waitIndex={2/node/modifiedIndex}").into(),
            // waitIndex=0 is no waitIndex.
            start_step(get("/v2/keys/h?wait=true&waitIndex=0")),
            put("/v2/keys/h", "value=four").into(),
            finish(9),
            // A future waitIndex waits for that index even if the key changes before.
            start_step(get("/v2/keys/h?wait=true&waitIndex={10/node/modifiedIndex+2}")),
            put("/v2/keys/h", "value=five").into(),
            put("/v2/keys/h", "value=six").into(),
            finish(12),
            // waitIndex without wait=true is an ordinary get.
            get("/v2/keys/h?waitIndex={0/node/modifiedIndex}").into(),
        ],
    );
}

#[test]
fn wait_index_older_than_history_is_401() {
    run(
        "wait_index_older_than_history_is_401",
        vec![
            put("/v2/keys/first", "value=x").into(),
            burst(put("/v2/keys/fill", "value=x"), 1010),
            put("/v2/keys/last", "value=x").into(),
            get("/v2/keys/first?wait=true&waitIndex={0/node/modifiedIndex}").into(),
            get("/v2/keys/?wait=true&recursive=true&waitIndex={0/node/modifiedIndex}").into(),
            // The oldest index still in the 1000-event window replays.
            get("/v2/keys/?wait=true&recursive=true&waitIndex={2/node/modifiedIndex-999}").into(),
            get("/v2/keys/?wait=true&recursive=true&waitIndex={2/node/modifiedIndex-1000}").into(),
            get("/v2/keys/last?wait=true&waitIndex={2/node/modifiedIndex}").into(),
        ],
    );
}

#[test]
fn wait_sees_expiry() {
    run(
        "wait_sees_expiry",
        vec![
            put("/v2/keys/k", "value=x&ttl=1").into(),
            start_step(get("/v2/keys/k?wait=true")),
            finish(1),
            get("/v2/keys/k").into(),
            // An expiring directory, seen from a recursive wait on its parent.
            put("/v2/keys/p/d", "dir=true&ttl=1").into(),
            put("/v2/keys/p/d/child", "value=x").into(),
            start_step(get("/v2/keys/p?wait=true&recursive=true")),
            finish(6),
            // And from history.
            get("/v2/keys/k?wait=true&waitIndex={0/node/modifiedIndex+1}").into(),
        ],
    );
}

#[test]
fn wait_sees_parent_directory_deleted() {
    run(
        "wait_sees_parent_directory_deleted",
        vec![
            put("/v2/keys/p/c/leaf", "value=x").into(),
            start_step(get("/v2/keys/p/c/leaf?wait=true")),
            start_step(get("/v2/keys/p/c?wait=true")),
            start_step(get("/v2/keys/p/c?wait=true&recursive=true")),
            delete("/v2/keys/p?recursive=true").into(),
            finish(1),
            finish(2),
            finish(3),
            // A parent directory that expires.
            put("/v2/keys/t", "dir=true&ttl=1").into(),
            put("/v2/keys/t/leaf", "value=x").into(),
            start_step(get("/v2/keys/t/leaf?wait=true")),
            finish(10),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn store_errors() {
    run(
        "store_errors",
        vec![
            // 100 Key not found.
            get("/v2/keys/missing").into(),
            get("/v2/keys/missing/deeper").into(),
            // 101 Compare failed.
            put("/v2/keys/f", "value=one").into(),
            put("/v2/keys/f?prevValue=two", "value=x").into(),
            put("/v2/keys/f?prevIndex={base+100}", "value=x").into(),
            put("/v2/keys/f?prevIndex={base+100}&prevValue=two", "value=x").into(),
            delete("/v2/keys/f?prevIndex={base+100}&prevValue=two").into(),
            // 102 Not a file.
            put("/v2/keys/d/x", "value=x").into(),
            put("/v2/keys/d", "value=x").into(),
            delete("/v2/keys/d").into(),
            // 104 Not a directory.
            put("/v2/keys/f/under", "value=x").into(),
            get("/v2/keys/f/under").into(),
            post("/v2/keys/f", "value=x").into(),
            // 105 Key already exists.
            put("/v2/keys/f?prevExist=false", "value=x").into(),
            put("/v2/keys/d?prevExist=false", "dir=true").into(),
            // 106 is not reachable through /v2/keys: etcd keeps its own keys outside the tree.
            put("/v2/keys/_etcd/x", "value=x").into(),
            put("/v2/keys/0/members", "value=x").into(),
            // 107 Root is read only.
            put("/v2/keys/", "value=x").into(),
            // 108 Directory not empty.
            delete("/v2/keys/d?dir=true").into(),
        ],
    );
}

#[test]
fn request_errors() {
    run(
        "request_errors",
        vec![
            put("/v2/keys/k", "value=x").into(),
            // 201 PrevValue is Required.
            put("/v2/keys/k?prevValue=", "value=y").into(),
            put("/v2/keys/k", "prevValue=&value=y").into(),
            // 202 TTL is not a number.
            put("/v2/keys/k?ttl=abc", "value=y").into(),
            put("/v2/keys/k?ttl=-1", "value=y").into(),
            put("/v2/keys/k?ttl=1.5", "value=y").into(),
            put("/v2/keys/k", "ttl=99999999999999999999&value=y").into(),
            // 203 Index is not a number.
            put("/v2/keys/k?prevIndex=abc", "value=y").into(),
            put("/v2/keys/k?prevIndex=-1", "value=y").into(),
            get("/v2/keys/k?wait=true&waitIndex=abc").into(),
            get("/v2/keys/k?waitIndex=abc").into(),
            delete("/v2/keys/k?prevIndex=x").into(),
            // 209 Invalid field: each boolean, and wait on a write.
            get("/v2/keys/k?recursive=yes").into(),
            get("/v2/keys/k?sorted=nope").into(),
            get("/v2/keys/k?wait=nope").into(),
            get("/v2/keys/k?quorum=x").into(),
            get("/v2/keys/k?stream=x").into(),
            put("/v2/keys/k?dir=maybe", "value=y").into(),
            put("/v2/keys/k?prevExist=maybe", "value=y").into(),
            put("/v2/keys/k?refresh=maybe", "value=y").into(),
            put("/v2/keys/k?noValueOnSuccess=maybe", "value=y").into(),
            put("/v2/keys/k?wait=true", "value=y").into(),
            delete("/v2/keys/k?wait=true").into(),
            post("/v2/keys/k?wait=true", "value=y").into(),
            // Go's strconv.ParseBool: 1, t, T, TRUE, true, True and their false forms.
            get("/v2/keys/k?recursive=T&sorted=TRUE&quorum=1").into(),
            get("/v2/keys/k?recursive=F&sorted=FALSE&quorum=0").into(),
            get("/v2/keys/k?recursive=").into(),
            get("/v2/keys/k?recursive").into(),
            // The first of repeated parameters counts.
            get("/v2/keys/k?recursive=bad&recursive=true").into(),
            get("/v2/keys/k?recursive=true&recursive=bad").into(),
            // Checks come in a fixed order: prevIndex, waitIndex, then the booleans.
            get("/v2/keys/k?recursive=bad&waitIndex=bad&prevIndex=bad").into(),
            put("/v2/keys/k?ttl=bad&prevValue=", "value=y").into(),
            // 210 Invalid form: bad percent-encoding in the query and in the body.
            get("/v2/keys/k?recursive=%zz").into(),
            get("/v2/keys/k?%zz=1").into(),
            get("/v2/keys/k?a=%2").into(),
            put("/v2/keys/k", "value=%zz").into(),
            put("/v2/keys/k", "value=a%2").into(),
            put("/v2/keys/k?ok=%zz", "value=fine").into(),
            // In the path, Go's HTTP server refuses it before etcd sees the request.
            get("/v2/keys/k%zz").into(),
            // 211 and 212: refresh with a value, refresh without a TTL.
            put("/v2/keys/k", "refresh=true&value=z&ttl=5").into(),
            put("/v2/keys/k", "refresh=true").into(),
            get("/v2/keys/k").into(),
        ],
    );
}

#[test]
fn oversized_value() {
    let big = format!("value={}", "v".repeat(2 << 20));
    run(
        "oversized_value",
        vec![
            put("/v2/keys/big", &big).into(),
            get("/v2/keys/big").into(),
            get("/v2/keys/big?quorum=true").into(),
            delete("/v2/keys/big").into(),
            // Past Go's 10 MiB form limit: error 210 before anything is written.
            put("/v2/keys/huge", &format!("value={}", "v".repeat(11 << 20))).into(),
            get("/v2/keys/huge").into(),
        ],
    );
}

#[test]
fn methods_not_allowed() {
    run(
        "methods_not_allowed",
        vec![
            req("PATCH", "/v2/keys/k", Some("value=x")).into(),
            req("OPTIONS", "/v2/keys/k", None).into(),
            req("HEAD", "/v2/keys/", None).into(),
            req("POST", "/v2/machines", Some("")).into(),
            req("PUT", "/v2/stats/self", Some("")).into(),
            req("DELETE", "/v2/stats/store", None).into(),
            req("POST", "/v2/stats/leader", Some("")).into(),
            req("PATCH", "/v2/members", None).into(),
            get("/v2/nothing").into(),
            get("/v2/keysx").into(),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster endpoints: shapes, not values

#[test]
fn members_and_machines() {
    run(
        "members_and_machines",
        vec![
            get("/v2/members").shape().into(),
            get("/v2/members/").shape().into(),
            get("/v2/members/leader").shape().into(),
            get("/v2/machines").shape().into(),
            get("/v2/members/nosuch").into(),
            req("POST", "/v2/members", Some("peerURLs=x")).into(),
        ],
    );
}

#[test]
fn stats() {
    run(
        "stats",
        vec![
            get("/v2/stats/self").shape().into(),
            get("/v2/stats/leader").shape().into(),
            get("/v2/stats/store").shape().into(),
            put("/v2/keys/k", "value=x").into(),
            get("/v2/stats/store").shape().into(),
        ],
    );
}

#[test]
fn version_and_health() {
    run(
        "version_and_health",
        vec![get("/version").shape().into(), get("/health").into(), get("/health?serializable=true").into()],
    );
}

// ---------------------------------------------------------------------------------------------
// The harness's own check: etcd against etcd, with one request changed on one side, must fail
// and say where.

fn difference_found(name: &str, steps: Vec<Step>) -> String {
    let result = std::panic::catch_unwind(|| v2::run_etcd_pair(name, steps));
    let err = result.expect_err("a scenario with a diverging step passed");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn harness_catches_differences() {
    let msg = difference_found(
        "different value",
        vec![
            put("/v2/keys/k", "value=one").into(),
            Step::Diverge(get("/v2/keys/k"), get("/v2/keys/k?quorum=true")),
            Step::Diverge(put("/v2/keys/k", "value=two"), put("/v2/keys/k", "value=TWO")),
        ],
    );
    assert!(msg.contains("step 2") && msg.contains("body.node.value: \"two\" vs \"TWO\""), "{msg}");

    let msg = difference_found(
        "different status",
        vec![put("/v2/keys/k", "value=one").into(), Step::Diverge(get("/v2/keys/k"), get("/v2/keys/other"))],
    );
    assert!(msg.contains("status: 200 vs 404") && msg.contains("header x-raft-index"), "{msg}");

    // One extra write on one side shifts every later index: normalisation must not hide it.
    let msg = difference_found(
        "shifted index",
        vec![
            put("/v2/keys/k", "value=one").into(),
            Step::TestedOnly(put("/v2/keys/other", "value=x")),
            put("/v2/keys/k", "value=two").into(),
        ],
    );
    assert!(
        msg.contains("step 2") && msg.contains("header x-etcd-index: Some(\"i+2\") vs Some(\"i+3\")"),
        "{msg}"
    );

    let msg = difference_found(
        "ttl",
        vec![Step::Diverge(put("/v2/keys/k", "value=one&ttl=100"), put("/v2/keys/k", "value=one&ttl=103"))],
    );
    assert!(msg.contains("body.node.ttl: 100 vs 103"), "{msg}");

    let msg = difference_found(
        "error cause index",
        vec![
            put("/v2/keys/k", "value=one").into(),
            Step::Diverge(
                put("/v2/keys/k?prevIndex={base}", "value=x"),
                put("/v2/keys/k?prevIndex={base+2}", "value=x"),
            ),
        ],
    );
    assert!(msg.contains("body.cause: \"[i+0 != i+1]\" vs \"[i+2 != i+1]\""), "{msg}");
}
