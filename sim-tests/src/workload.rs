//! Simulated clients. Each runs on its own madsim node, so partitions can cut clients off as
//! well as members, and records every operation with invoke/complete times and outcome.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::kv::*;
use cairn_core::{Error, Request, Response, ResponseBody};
use cairn_io_sim::member::TAG;
use cairn_io_sim::wire::{WatchEnd as WireWatchEnd, Wire};
use futures::FutureExt;
use madsim::net::Endpoint;
use madsim::time::Instant;
use rand::Rng;
use serde_json::json;

use crate::history::History;
use crate::invariants::backups::Backup;
use crate::invariants::no_lost_write::AckedWrite;
use crate::linearizability::{Input, Op, Outcome, Output};
use crate::params::RunParams;
use crate::trace::Trace;
use crate::watch_check::{WatchEnd, WatchSession};

/// How long a client waits for an answer before it calls the outcome unknown.
const CLIENT_TIMEOUT_MS: u64 = 2_000;

/// Member ids and addresses, shared by the harness and every client.
pub type Directory = Arc<std::sync::Mutex<Vec<(u64, SocketAddr)>>>;

pub struct ClientCtx {
    pub id: u64,
    /// Who the client acts as (None: no credentials, in runs without auth).
    pub creds: Option<Credentials>,
    pub addr: SocketAddr,
    /// The members clients may send to: the harness adds and drops members as the
    /// configuration changes.
    pub members: Directory,
    pub history: History,
    pub trace: Trace,
    pub epoch: Instant,
    pub params: RunParams,
    pub stop: Arc<AtomicBool>,
}

/// A user and the auth store revision their credentials are as of, shared by every client
/// acting as that user: one that is refused for old credentials learns the newer revision
/// (as a real client authenticates again) and every client after it uses it.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub revision: Arc<std::sync::atomic::AtomicU64>,
}

impl Credentials {
    pub fn new(user: &str) -> Credentials {
        Credentials { user: user.into(), revision: Arc::default() }
    }

    pub fn info(&self) -> cairn_core::auth::AuthInfo {
        cairn_core::auth::AuthInfo { user: self.user.clone(), revision: self.revision.load(Ordering::SeqCst) }
    }
}

/// Request ids of credential refreshes (`call`), apart from a client's own.
const REFRESH_ID_BIT: u64 = 1 << 62;

impl ClientCtx {
    pub fn who(&self) -> Option<cairn_core::auth::AuthInfo> {
        self.creds.as_ref().map(Credentials::info)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    pub(crate) fn now_ns(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_nanos() as u64
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A member's address; a member the directory no longer lists (removed) has a made-up
    /// address no one listens at, as a machine shut down would.
    pub(crate) fn member_addr(&self, id: u64) -> SocketAddr {
        let members = self.members.lock().unwrap();
        members
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, a)| *a)
            .unwrap_or(SocketAddr::from(([10, 0, 3, 1], 1)))
    }

    pub(crate) fn random_member(&self) -> u64 {
        let members = self.members.lock().unwrap();
        members[madsim::rand::thread_rng().gen_range(0..members.len())].0
    }
}

/// Sends one request as the client's user and waits for its answer; None when none came in
/// time. Refused for old credentials, the client learns the auth store's revision from the
/// same member for its next requests (the refused one stays refused: it was not applied).
pub(crate) async fn call(
    ctx: &ClientCtx,
    ep: &Endpoint,
    to: SocketAddr,
    id: u64,
    request: Request,
) -> Option<Result<Response, Error>> {
    let result = call_as(ep, to, id, request, ctx.who()).await;
    if let Some(Err(Error::AuthOldRevision)) = &result {
        refresh_credentials(ctx, ep, to, id).await;
    }
    result
}

/// Learns the auth store's revision from member `to` for the client's credentials.
async fn refresh_credentials(ctx: &ClientCtx, ep: &Endpoint, to: SocketAddr, id: u64) {
    let Some(creds) = &ctx.creds else { return };
    let status = Request::AuthQuery(cairn_core::auth::AuthQuery::Status);
    if let Some(Ok(Response {
        body: ResponseBody::Auth(cairn_core::auth::AuthAnswer::Status { revision, .. }),
        ..
    })) = call_as(ep, to, id | REFRESH_ID_BIT, status, Some(creds.info())).await
    {
        creds.revision.fetch_max(revision, Ordering::SeqCst);
    }
}

async fn call_as(
    ep: &Endpoint,
    to: SocketAddr,
    id: u64,
    request: Request,
    who: Option<cairn_core::auth::AuthInfo>,
) -> Option<Result<Response, Error>> {
    let _ = ep.send_to_raw(to, TAG, Box::new(Wire::Request { id, request, who })).await;
    let deadline = Instant::now() + Duration::from_millis(CLIENT_TIMEOUT_MS);
    loop {
        futures::select_biased! {
            r = ep.recv_from_raw(TAG).fuse() => {
                let Ok((payload, _)) = r else { return None };
                if let Ok(w) = payload.downcast::<Wire>() {
                    if let Wire::Reply { id: rid, result } = *w {
                        if rid == id {
                            return Some(result);
                        }
                    }
                }
            }
            _ = madsim::time::sleep_until(deadline).fuse() => return None,
        }
    }
}

/// Sends `request` once to member `to`; None when no answer came in time.
pub async fn call_once(ctx: &ClientCtx, to: u64, request: Request) -> Option<Result<Response, Error>> {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    call(&ctx, &ep, ctx.member_addr(to), 1, request).await
}

/// Sends `request` (to the leader as far as it can tell) until it succeeds or `deadline`
/// passes; returns the revision of the successful answer.
pub async fn call_until_ok(ctx: &ClientCtx, request: Request, deadline: Instant) -> Option<i64> {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let mut target = ctx.random_member();
    let mut id = 0;
    while Instant::now() < deadline {
        id += 1;
        match call(&ctx, &ep, ctx.member_addr(target), id, request.clone()).await {
            Some(Ok(r)) => return Some(r.header.revision),
            Some(Err(Error::NotLeader { leader })) if leader != 0 => target = leader,
            Some(Err(Error::NoSpace)) => {
                // Out of space: read the revision, then make room up to it.
                id += 1;
                let read = Request::Range(RangeRequest { key: b("sentinel".into()), ..Default::default() });
                if let Some(Ok(r)) = call(&ctx, &ep, ctx.member_addr(target), id, read).await {
                    make_room(ctx, &ep, target, &mut id, r.header.revision).await;
                }
            }
            _ => {
                target = ctx.random_member();
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    None
}

fn b(s: String) -> Bytes {
    Bytes::from(s)
}

/// What an operator does when the store is out of space: compacts up to `revision`, then
/// lifts every alarm up (`etcdctl compaction` and `alarm disarm`), each step tried again (up to
/// `MAKE_ROOM_TRIES` times) while it goes unanswered, as lossy networks make likely. Errors are
/// left for the next try (another client may have compacted further already).
pub async fn make_room(ctx: &ClientCtx, ep: &Endpoint, to: u64, seq: &mut u64, revision: i64) {
    use cairn_core::alarm::AlarmAction;
    let addr = ctx.member_addr(to);
    let compact = Request::Compact(CompactionRequest { revision, physical: false });
    let compacted = call_answered(ctx, ep, addr, seq, compact).await;
    let list = Request::Alarm { action: AlarmAction::Get, member: 0, kind: None };
    let mut lifted = 0;
    if let Some(Ok(Response { body: ResponseBody::Alarms(alarms), .. })) =
        call_answered(ctx, ep, addr, seq, list).await
    {
        for a in alarms {
            let disarm =
                Request::Alarm { action: AlarmAction::Deactivate, member: a.member, kind: Some(a.kind) };
            if let Some(Ok(_)) = call_answered(ctx, ep, addr, seq, disarm).await {
                lifted += 1;
            }
        }
    }
    ctx.trace.record(
        ctx.now_ms(),
        "make-room",
        json!({ "client": ctx.id, "member": to, "revision": revision, "compacted": matches!(compacted, Some(Ok(_))),
                "compact_error": match &compacted { Some(Err(e)) => e.to_string(), _ => String::new() }, "lifted": lifted }),
    );
}

const MAKE_ROOM_TRIES: usize = 3;

/// `call`, again under a new id while the answer is none or "timed out".
async fn call_answered(
    ctx: &ClientCtx,
    ep: &Endpoint,
    to: SocketAddr,
    seq: &mut u64,
    request: Request,
) -> Option<Result<Response, Error>> {
    let mut result = None;
    for _ in 0..MAKE_ROOM_TRIES {
        *seq += 1;
        result = call(ctx, ep, to, *seq, request.clone()).await;
        if !matches!(result, None | Some(Err(Error::TimedOut))) {
            break;
        }
    }
    result
}

/// A key-value client: gets, puts, deletes and compare-and-swaps on a few shared keys.
pub async fn kv_client(ctx: ClientCtx) {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let mut leader_hint = ctx.random_member();
    let mut seq = 0u64;
    let mut last_seen: std::collections::BTreeMap<Bytes, Option<Bytes>> = Default::default();
    // The newest revision this client saw in a response header.
    let mut revision_seen: i64 = 0;
    while !ctx.stopped() {
        seq += 1;
        let v2 = madsim::rand::thread_rng().gen_range(0..1000) < ctx.params.v2_permille;
        if v2 && madsim::rand::thread_rng().gen_ratio(1, 20) {
            // A TTL key now and then, so v2 expiry runs under the faults too.
            ttl_write(&ctx, &ep, leader_hint, seq).await;
            // The operation below needs an id of its own: a late answer to this write must
            // not be taken for its answer.
            seq += 1;
        }
        let (input, request, serializable) = {
            let mut rng = madsim::rand::thread_rng();
            let n = rng.gen_range(0..ctx.params.keys);
            let key = b(if v2 { format!("/v2k{n}") } else { format!("k{n}") });
            let value = b(format!("c{}-{seq}", ctx.id));
            if rng.gen_range(0..1000) >= ctx.params.write_permille {
                let serializable = rng.gen_range(0..1000) < ctx.params.serializable_permille;
                let req = RangeRequest { key: key.clone(), serializable, ..Default::default() };
                (Input::Get { key }, Request::Range(req), serializable)
            } else {
                match rng.gen_range(0..10) {
                    0..=4 => {
                        let req = PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
                        (Input::Put { key, value }, Request::Put(req), false)
                    }
                    5..=7 => {
                        let expected = last_seen.get(&key).cloned().flatten();
                        let target = match &expected {
                            Some(v) => CompareTarget::Value(v.clone()),
                            None => CompareTarget::Version(0),
                        };
                        let txn = TxnRequest {
                            compare: vec![Compare {
                                result: CompareResult::Equal,
                                target,
                                key: key.clone(),
                                range_end: Bytes::new(),
                            }],
                            success: vec![RequestOp::Put(PutRequest {
                                key: key.clone(),
                                value: value.clone(),
                                ..Default::default()
                            })],
                            failure: vec![],
                        };
                        (Input::Cas { key, expected, value }, Request::Txn(txn), false)
                    }
                    _ => {
                        let req = DeleteRangeRequest { key: key.clone(), ..Default::default() };
                        (Input::Delete { key }, Request::DeleteRange(req), false)
                    }
                }
            }
        };
        let request = if v2 { v2_request(&input, serializable) } else { request };
        let target = if madsim::rand::thread_rng().gen_bool(0.8) { leader_hint } else { ctx.random_member() };
        let invoke = ctx.now_ns();
        let result = call(&ctx, &ep, ctx.member_addr(target), seq, request).await;
        let complete = ctx.now_ns();
        let (outcome, acked) = match &result {
            // The v2 store's answers, including the errors that are outcomes (not found, compare
            // failed, already exists). v2 writes carry no revision: not part of the lost-write
            // check, which reads the v3 store.
            Some(r) if v2 && v2_outcome(&input, r).is_some() => {
                (v2_outcome(&input, r).expect("checked"), None)
            }
            None | Some(Err(Error::TimedOut)) => {
                // The member may be down, paused or cut off: try another next time.
                leader_hint = ctx.random_member();
                (Outcome::Unknown, None)
            }
            Some(Err(Error::PrefixQuotaExceeded { .. })) => {
                // Refused when it applied: definitely not written.
                ctx.history.count(|c| c.prefix_quota_refusals += 1);
                (Outcome::Failed, None)
            }
            Some(Err(Error::NoSpace)) => {
                // Refused, and definitely not applied (refused before proposing, or applied as
                // a refusal): make room, as an operator would.
                ctx.history.count(|c| c.nospace += 1);
                make_room(&ctx, &ep, target, &mut seq, revision_seen).await;
                (Outcome::Failed, None)
            }
            Some(Err(e)) => {
                leader_hint = match e {
                    Error::NotLeader { leader } if *leader != 0 => *leader,
                    _ => ctx.random_member(),
                };
                (Outcome::Failed, None)
            }
            Some(Ok(resp)) => {
                let rev = resp.header.revision;
                revision_seen = revision_seen.max(rev);
                match (&input, &resp.body) {
                    (Input::Get { key }, ResponseBody::Range(r)) => {
                        let v = r.kvs.first().map(|kv| kv.value.clone());
                        last_seen.insert(key.clone(), v.clone());
                        (Outcome::Ok(Output::Get(v)), None)
                    }
                    (Input::Put { key, value }, ResponseBody::Put(_)) => (
                        Outcome::Ok(Output::Put),
                        Some(AckedWrite { key: key.clone(), value: Some(value.clone()), revision: rev }),
                    ),
                    (Input::Delete { key }, ResponseBody::DeleteRange(d)) => {
                        let acked = (d.deleted > 0).then(|| AckedWrite {
                            key: key.clone(),
                            value: None,
                            revision: rev,
                        });
                        (Outcome::Ok(Output::Delete { deleted: d.deleted > 0 }), acked)
                    }
                    (Input::Cas { key, value, .. }, ResponseBody::Txn(t)) => {
                        let acked = t.succeeded.then(|| AckedWrite {
                            key: key.clone(),
                            value: Some(value.clone()),
                            revision: rev,
                        });
                        (Outcome::Ok(Output::Cas { succeeded: t.succeeded }), acked)
                    }
                    (_, body) => panic!("client {} got {body:?} for {input:?}", ctx.id),
                }
            }
        };
        ctx.trace.record(
            ctx.now_ms(),
            "op",
            json!({ "client": ctx.id, "member": target, "invoke_ns": invoke, "input": format!("{input:?}"),
                    "outcome": format!("{outcome:?}"), "serializable": serializable }),
        );
        if serializable {
            // Local reads may be stale by contract: not part of the linearizable history.
            ctx.history.count(|c| c.serializable_reads += 1);
        } else {
            ctx.history.record(Op { client: ctx.id, invoke, complete, input, outcome }, acked);
        }
        // Now and then, compact a little behind the newest revision seen: watches from older
        // revisions then end "compacted", and the final checks skip compacted history.
        if ctx.params.compact && revision_seen > 20 && madsim::rand::thread_rng().gen_ratio(1, 100) {
            seq += 1;
            let req = CompactionRequest { revision: revision_seen - 10, physical: false };
            let result = call(&ctx, &ep, ctx.member_addr(leader_hint), seq, Request::Compact(req)).await;
            ctx.trace.record(
                ctx.now_ms(),
                "compact",
                json!({ "client": ctx.id, "revision": revision_seen - 10, "ok": matches!(result, Some(Ok(_))) }),
            );
        }
        // Now and then, a backup from any member (the harness checks it against the converged
        // store at its revision).
        if ctx.params.backups && madsim::rand::thread_rng().gen_ratio(1, 150) {
            seq += 1;
            let member = ctx.random_member();
            let result = call(&ctx, &ep, ctx.member_addr(member), seq, Request::Backup).await;
            if let Some(Ok(Response { body: ResponseBody::Backup { data, revision, .. }, .. })) = &result {
                ctx.history.record_backup(Backup::of(member, *revision, data));
            }
            ctx.trace.record(
                ctx.now_ms(),
                "backup",
                json!({ "client": ctx.id, "member": member, "ok": matches!(result, Some(Ok(_))) }),
            );
        }
        let think = madsim::rand::thread_rng().gen_range(0..15);
        madsim::time::sleep(Duration::from_millis(think)).await;
    }
}

/// The v2 request for a key-value client's `input`: a set, a delete, a compare-and-swap (or a
/// create, when the key must be absent), a read (linearizable unless `serializable`).
fn v2_request(input: &Input, serializable: bool) -> Request {
    use cairn_core::v2::{V2Get, V2Write};
    let path = |k: &Bytes| String::from_utf8_lossy(k).into_owned();
    let text = |v: &Bytes| String::from_utf8_lossy(v).into_owned();
    match input {
        Input::Get { key } => {
            Request::V2Get(V2Get { path: path(key), recursive: false, sorted: false, quorum: !serializable })
        }
        Input::Put { key, value } => Request::V2Write(V2Write::Set {
            path: path(key),
            dir: false,
            value: text(value),
            expire_ns: None,
            refresh: false,
        }),
        Input::Delete { key } => {
            Request::V2Write(V2Write::Delete { path: path(key), dir: false, recursive: false })
        }
        Input::Cas { key, expected: Some(old), value } => Request::V2Write(V2Write::CompareAndSwap {
            path: path(key),
            prev_value: text(old),
            prev_index: 0,
            value: text(value),
            expire_ns: None,
            refresh: false,
        }),
        Input::Cas { key, expected: None, value } => Request::V2Write(V2Write::Create {
            path: path(key),
            dir: false,
            value: text(value),
            unique: false,
            expire_ns: None,
        }),
    }
}

/// What a v2 answer means for `input`; None for answers that are not outcomes (timeouts,
/// refusals), which the caller treats as it does for v3.
fn v2_outcome(input: &Input, r: &Result<Response, Error>) -> Option<Outcome> {
    let output = match (input, r) {
        (Input::Get { .. }, Ok(Response { body: ResponseBody::V2(Some(e)), .. })) => {
            Output::Get(e.node.value.clone().map(Bytes::from))
        }
        (Input::Get { .. }, Err(Error::V2 { code: 100, .. })) => Output::Get(None),
        (Input::Put { .. }, Ok(_)) => Output::Put,
        (Input::Delete { .. }, Ok(_)) => Output::Delete { deleted: true },
        (Input::Delete { .. }, Err(Error::V2 { code: 100, .. })) => Output::Delete { deleted: false },
        (Input::Cas { .. }, Ok(_)) => Output::Cas { succeeded: true },
        (Input::Cas { .. }, Err(Error::V2 { code: 100 | 101 | 105, .. })) => Output::Cas { succeeded: false },
        _ => return None,
    };
    Some(Outcome::Ok(output))
}

/// Sets a v2 key that expires in 1-3 s (by the client's clock), not recorded in the history.
async fn ttl_write(ctx: &ClientCtx, ep: &Endpoint, target: u64, id: u64) {
    use cairn_core::v2::V2Write;
    let (n, secs) = {
        let mut rng = madsim::rand::thread_rng();
        (rng.gen_range(0..3), rng.gen_range(1..=3))
    };
    let expire_ns = cairn_io_sim::clock::wall_ns(ctx.now_ms()) + secs * 1_000_000_000;
    let req = V2Write::Set {
        path: format!("/ttl/k{n}"),
        dir: false,
        value: format!("c{}-{id}", ctx.id),
        expire_ns: Some(expire_ns),
        refresh: false,
    };
    let result = call(ctx, ep, ctx.member_addr(target), id, Request::V2Write(req)).await;
    ctx.trace.record(
        ctx.now_ms(),
        "v2_ttl",
        json!({ "client": ctx.id, "key": n, "secs": secs, "ok": matches!(result, Some(Ok(_))) }),
    );
}

/// A lease holder: grants a lease, attaches keys, keeps it alive for a while, then revokes it
/// or lets it expire.
pub async fn lease_client(ctx: ClientCtx) {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let mut seq = 0u64;
    let mut leader_hint = ctx.random_member();
    let mut next_id = || {
        seq += 1;
        seq
    };
    while !ctx.stopped() {
        let ttl_secs = madsim::rand::thread_rng().gen_range(2..=5);
        let grant =
            call(&ctx, &ep, ctx.member_addr(leader_hint), next_id(), Request::LeaseGrant { id: 0, ttl_secs })
                .await;
        ctx.history.count(|c| c.lease_ops += 1);
        let lease = match grant {
            Some(Ok(Response { body: ResponseBody::LeaseGrant { id, .. }, .. })) => id,
            Some(Err(Error::NotLeader { leader })) if leader != 0 => {
                leader_hint = leader;
                continue;
            }
            _ => {
                leader_hint = ctx.random_member();
                madsim::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        ctx.trace.record(
            ctx.now_ms(),
            "lease-grant",
            json!({ "client": ctx.id, "lease": lease, "ttl": ttl_secs }),
        );
        let keys = madsim::rand::thread_rng().gen_range(1..=3);
        for k in 0..keys {
            let key = b(format!("lease/{}/{lease}/{k}", ctx.id));
            let value = b(format!("held-{}", ctx.id));
            let put = PutRequest { key: key.clone(), value: value.clone(), lease, ..Default::default() };
            match call(&ctx, &ep, ctx.member_addr(leader_hint), next_id(), Request::Put(put)).await {
                Some(Ok(r)) => ctx.history.record_acked(AckedWrite {
                    key,
                    value: Some(value),
                    revision: r.header.revision,
                }),
                Some(Err(Error::PrefixQuotaExceeded { .. })) => {
                    ctx.history.count(|c| c.prefix_quota_refusals += 1)
                }
                _ => {}
            }
        }
        let keep_alives = madsim::rand::thread_rng().gen_range(0..6);
        for _ in 0..keep_alives {
            if ctx.stopped() {
                break;
            }
            madsim::time::sleep(Duration::from_millis(ttl_secs as u64 * 1000 / 3)).await;
            // Half the keep-alives go to any member: a follower forwards them to the leader.
            let to = if madsim::rand::thread_rng().gen_bool(0.5) { ctx.random_member() } else { leader_hint };
            match call(&ctx, &ep, ctx.member_addr(to), next_id(), Request::LeaseKeepAlive { id: lease }).await
            {
                Some(Err(Error::NotLeader { leader })) if leader != 0 => leader_hint = leader,
                Some(Ok(_)) => {}
                _ => leader_hint = ctx.random_member(),
            }
            ctx.history.count(|c| c.lease_ops += 1);
        }
        if madsim::rand::thread_rng().gen_bool(0.5) {
            let _ =
                call(&ctx, &ep, ctx.member_addr(leader_hint), next_id(), Request::LeaseRevoke { id: lease })
                    .await;
            ctx.history.count(|c| c.lease_ops += 1);
        } else {
            // Let it expire: the leader revokes it through the log.
            madsim::time::sleep(Duration::from_millis(ttl_secs as u64 * 1000)).await;
        }
    }
}

/// A watcher of every key: resumes from its last revision whenever a batch is lost, the watch
/// ends, or (now and then) on purpose on another member.
pub async fn watcher(ctx: ClientCtx) {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let mut watch_id = 0u64;
    let mut next_start: i64 = 1;
    while !ctx.stopped() {
        watch_id += 1;
        let member = ctx.random_member();
        let to = ctx.member_addr(member);
        // A watch is checked when it opens: credentials as of now.
        refresh_credentials(&ctx, &ep, to, watch_id).await;
        let all = Bytes::from_static(b"\0");
        let msg = Wire::Watch {
            watch: watch_id,
            key: all.clone(),
            range_end: all.clone(),
            start_revision: next_start,
            who: ctx.who(),
        };
        let _ = ep.send_to_raw(to, TAG, Box::new(msg)).await;
        let mut session = WatchSession {
            client: ctx.id,
            watch: watch_id,
            key: all.clone(),
            range_end: all,
            start_revision: next_start,
            received: vec![],
            end: WatchEnd::Open,
        };
        let mut expected_seq = 0u64;
        let session_ms = madsim::rand::thread_rng().gen_range(1_000..8_000);
        let session_end = Instant::now() + Duration::from_millis(session_ms);
        loop {
            if ctx.stopped() {
                break;
            }
            let r = futures::select_biased! {
                r = ep.recv_from_raw(TAG).fuse() => r.ok(),
                _ = madsim::time::sleep_until(session_end).fuse() => None,
            };
            let Some((payload, _)) = r else { break };
            let Ok(w) = payload.downcast::<Wire>() else { continue };
            match *w {
                Wire::WatchEvents { watch, seq, events } if watch == watch_id => {
                    if seq != expected_seq {
                        // A batch was lost: this session can no longer promise no gaps.
                        session.end = WatchEnd::Canceled;
                        break;
                    }
                    expected_seq += 1;
                    if let Some(last) = events.last() {
                        next_start = last.kv.mod_revision + 1;
                    }
                    session.received.extend(events);
                }
                Wire::WatchEnded { watch, end } if watch == watch_id => {
                    session.end = match end {
                        WireWatchEnd::Compacted { compact_revision } => {
                            next_start = next_start.max(compact_revision);
                            WatchEnd::Compacted { compact_revision }
                        }
                        WireWatchEnd::Canceled => WatchEnd::Canceled,
                    };
                    break;
                }
                _ => {}
            }
        }
        let _ = ep.send_to_raw(to, TAG, Box::new(Wire::CancelWatch { watch: watch_id })).await;
        ctx.trace.record(
            ctx.now_ms(),
            "watch-session",
            json!({ "client": ctx.id, "member": member, "watch": watch_id, "start": session.start_revision,
                    "events": session.received.len(), "end": format!("{:?}", session.end) }),
        );
        ctx.history.record_watch(session);
    }
}
