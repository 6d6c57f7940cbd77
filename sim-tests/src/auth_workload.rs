//! Auth under faults: an admin grants and revokes permissions and roles while users read and
//! write with whatever they hold, through any member; every change and every successful
//! operation is recorded for `auth_check`. The other clients act as root meanwhile.

use std::time::Duration;

use bytes::Bytes;
use cairn_core::auth::{AuthChange, PermKind, Permission, ROOT};
use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_core::{Error, Request, Response};
use madsim::net::Endpoint;
use madsim::time::Instant;
use rand::Rng;
use serde_json::json;

use crate::auth_check::{AdminOp, AdminOutcome, UserOp};
use crate::workload::{call, ClientCtx};

/// The users the workload makes, each with a role of the same number.
pub const USERS: [&str; 2] = ["u1", "u2"];
const KEYS: u64 = 3;
const PREFIX: &str = "/a/";
const PREFIX_END: &str = "/a0";

fn role_of(user: &str) -> String {
    format!("r{}", &user[1..])
}

fn key(j: u64) -> Bytes {
    Bytes::from(format!("{PREFIX}k{j}"))
}

/// A permission's key and range end: one key, or the whole prefix.
fn target(rng: &mut impl Rng) -> (Bytes, Bytes) {
    if rng.gen_ratio(1, 4) {
        (Bytes::from(PREFIX), Bytes::from(PREFIX_END))
    } else {
        (key(rng.gen_range(0..KEYS)), Bytes::new())
    }
}

/// Sends one change to some member; records it with what is known of its outcome (and why
/// it was refused).
async fn change(
    ctx: &ClientCtx,
    ep: &Endpoint,
    seq: &mut u64,
    change: AuthChange,
) -> (AdminOutcome, Option<Error>) {
    *seq += 1;
    let invoke_ns = ctx.now_ns();
    let to = ctx.member_addr(ctx.random_member());
    let (outcome, refusal) = match call(ctx, ep, to, *seq, Request::Auth(change.clone())).await {
        Some(Ok(Response { header, .. })) => (AdminOutcome::Applied { revision: header.revision }, None),
        None | Some(Err(Error::TimedOut)) => (AdminOutcome::Unknown, None),
        Some(Err(e)) => (AdminOutcome::Refused, Some(e)),
    };
    ctx.trace.record(
        ctx.now_ms(),
        "auth-change",
        json!({ "change": format!("{change:?}"), "outcome": format!("{outcome:?}") }),
    );
    ctx.history.record_auth_change(AdminOp { change, invoke_ns, outcome });
    (outcome, refusal)
}

/// The admin (as root): sets up root, the users and their roles, enables auth, then grants and
/// revokes until the run stops.
pub async fn admin(ctx: ClientCtx, setup_deadline: Instant) {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let mut seq = 0;
    let token_key: Vec<u8> = (0..16).map(|_| madsim::rand::thread_rng().gen()).collect();
    let mut setup = vec![
        AuthChange::UserAdd { name: ROOT.into(), password_hash: None },
        AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
    ];
    for u in USERS {
        setup.push(AuthChange::UserAdd { name: u.into(), password_hash: None });
        setup.push(AuthChange::RoleAdd { name: role_of(u) });
        setup.push(AuthChange::UserGrantRole { user: u.into(), role: role_of(u) });
    }
    setup.push(AuthChange::Enable { token_key: token_key.into() });
    for c in setup {
        // Until it is known to be in (refused as existing: a try that went unanswered
        // applied).
        while Instant::now() < setup_deadline && !ctx.stopped() {
            match change(&ctx, &ep, &mut seq, c.clone()).await {
                (AdminOutcome::Applied { .. }, _)
                | (_, Some(Error::UserAlreadyExists | Error::RoleAlreadyExists)) => break,
                _ => madsim::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    while !ctx.stopped() {
        let wait = madsim::rand::thread_rng().gen_range(200..1_500);
        madsim::time::sleep(Duration::from_millis(wait)).await;
        let c = {
            let mut rng = madsim::rand::thread_rng();
            let user = USERS[rng.gen_range(0..USERS.len())];
            let role = role_of(user);
            match rng.gen_range(0..10) {
                0..=4 => {
                    let kind = [PermKind::Read, PermKind::Write, PermKind::ReadWrite][rng.gen_range(0..3)];
                    let (key, range_end) = target(&mut rng);
                    AuthChange::RoleGrantPermission { role, perm: Permission { kind, key, range_end } }
                }
                5..=7 => {
                    let (key, range_end) = target(&mut rng);
                    AuthChange::RoleRevokePermission { role, key, range_end }
                }
                8 => AuthChange::UserRevokeRole { user: user.into(), role },
                _ => AuthChange::UserGrantRole { user: user.into(), role },
            }
        };
        change(&ctx, &ep, &mut seq, c).await;
    }
}

/// A user: reads (a key or the prefix, linearizable or serializable) and writes its keys through
/// any member, with whatever permissions it holds at the time.
pub async fn user(ctx: ClientCtx) {
    let ep = Endpoint::bind(ctx.addr).await.expect("bind client");
    let Some(user) = ctx.creds.as_ref().map(|c| c.user.clone()) else { return };
    let mut seq = 0u64;
    while !ctx.stopped() {
        seq += 1;
        let (request, key, range_end, write) = {
            let mut rng = madsim::rand::thread_rng();
            if rng.gen_bool(0.5) {
                let key = key(rng.gen_range(0..KEYS));
                let value = Bytes::from(format!("{user}-{seq}"));
                let put = PutRequest { key: key.clone(), value, ..Default::default() };
                (Request::Put(put), key, Bytes::new(), true)
            } else {
                let (key, range_end) = if rng.gen_ratio(1, 5) {
                    (Bytes::from(PREFIX), Bytes::from(PREFIX_END))
                } else {
                    (key(rng.gen_range(0..KEYS)), Bytes::new())
                };
                let serializable = rng.gen_bool(0.3);
                let range = RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    serializable,
                    ..Default::default()
                };
                (Request::Range(range), key, range_end, false)
            }
        };
        let member = ctx.random_member();
        let result = call(&ctx, &ep, ctx.member_addr(member), seq, request).await;
        let complete_ns = ctx.now_ns();
        let what = format!(
            "{:?}{}",
            String::from_utf8_lossy(&key),
            if range_end.is_empty() { "" } else { " (prefix)" }
        );
        let outcome = match &result {
            Some(Ok(r)) => {
                let op = UserOp {
                    user: user.clone(),
                    key,
                    range_end,
                    write,
                    complete_ns,
                    revision: r.header.revision,
                };
                ctx.history.record_auth_op(op);
                format!("ok at revision {}", r.header.revision)
            }
            Some(Err(Error::PermissionDenied)) => {
                ctx.history.count(|c| c.auth_denied += 1);
                "denied".into()
            }
            Some(Err(e)) => e.to_string(),
            None => "no answer".into(),
        };
        ctx.trace.record(
            ctx.now_ms(),
            "auth-op",
            json!({ "user": user, "member": member, "write": write, "key": what, "outcome": outcome }),
        );
        madsim::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(10..100))).await;
    }
}
