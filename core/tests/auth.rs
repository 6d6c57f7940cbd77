//! Auth as replicated state: users, roles and permissions go through the log, every member
//! enforces them alike, writes are checked as the store stands when they apply, linearizable
//! reads when they are served, and the store survives snapshots and restarts.

mod support;

use bytes::Bytes;
use cairn_core::auth::{AuthAnswer, AuthChange, AuthInfo, AuthQuery, PermKind, Permission, ROOT};
use cairn_core::kv::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use cairn_core::{Error, Request, ResponseBody, WatchRequest};
use support::{b, Cluster};

fn change(c: &mut Cluster, at: u64, who: Option<AuthInfo>, ch: AuthChange) -> Result<u64, Error> {
    match c.request_as(at, Request::Auth(ch), who)?.body {
        ResponseBody::Auth(AuthAnswer::Status { revision, .. }) => Ok(revision),
        other => panic!("{other:?}"),
    }
}

fn put(key: &str) -> Request {
    Request::Put(PutRequest { key: b(key), value: b("v"), ..Default::default() })
}

fn get(key: &str, serializable: bool) -> Request {
    Request::Range(RangeRequest { key: b(key), serializable, ..Default::default() })
}

fn prefix(p: &str) -> (Bytes, Bytes) {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    (b(p), Bytes::from(end))
}

fn grant(role: &str, kind: PermKind, p: &str) -> AuthChange {
    let (key, range_end) = prefix(p);
    AuthChange::RoleGrantPermission { role: role.into(), perm: Permission { kind, key, range_end } }
}

/// root (with the root role) and alice (role "app", readwrite on /app/), auth on.
fn secured(c: &mut Cluster, l: u64) -> u64 {
    for ch in [
        AuthChange::UserAdd { name: ROOT.into(), password_hash: Some("hash".into()) },
        AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
        AuthChange::UserAdd { name: "alice".into(), password_hash: Some("hash".into()) },
        AuthChange::RoleAdd { name: "app".into() },
        grant("app", PermKind::ReadWrite, "/app/"),
        AuthChange::UserGrantRole { user: "alice".into(), role: "app".into() },
    ] {
        change(c, l, None, ch).unwrap();
    }
    change(c, l, None, AuthChange::Enable { token_key: b("key") }).unwrap()
}

fn as_user(user: &str, revision: u64) -> Option<AuthInfo> {
    Some(AuthInfo { user: user.into(), revision })
}

#[test]
fn every_member_enforces_the_permissions_the_log_gave() {
    let mut c = Cluster::new(3, 71);
    let l = c.wait_for_leader();
    c.put(l, "/other/x", "v").unwrap();
    let rev = secured(&mut c, l);
    c.stabilize();
    let alice = as_user("alice", rev);
    for id in 1..=3 {
        // Writes through any member, checked when they apply.
        assert!(c.request_as(id, put("/app/a"), alice.clone()).is_ok());
        assert_eq!(c.request_as(id, put("/other/a"), alice.clone()).unwrap_err(), Error::PermissionDenied);
        for serializable in [false, true] {
            assert!(c.request_as(id, get("/app/a", serializable), alice.clone()).is_ok());
            assert_eq!(
                c.request_as(id, get("/other/x", serializable), alice.clone()).unwrap_err(),
                Error::PermissionDenied
            );
        }
        // No credentials, unknown user, root-only requests.
        assert_eq!(c.request(id, put("/app/a")).unwrap_err(), Error::UserEmpty);
        assert_eq!(
            c.request_as(id, put("/app/a"), as_user("mallory", rev)).unwrap_err(),
            Error::PermissionDenied
        );
        // Compaction: any valid credentials, as in etcd 3.4 (Kubernetes compacts as its own user).
        let compact = Request::Compact(cairn_core::kv::CompactionRequest { revision: 1, physical: false });
        assert_eq!(c.request(id, compact.clone()).unwrap_err(), Error::UserEmpty);
        // (The first member compacts; the others find revision 1 compacted already.)
        let r = c.request_as(id, compact.clone(), alice.clone());
        assert!(matches!(r, Ok(_) | Err(Error::Compacted { .. })), "{r:?}");
        assert_eq!(c.request_as(id, Request::Backup, alice.clone()).unwrap_err(), Error::PermissionDenied);
        let add = AuthChange::UserAdd { name: "eve".into(), password_hash: None };
        assert_eq!(change(&mut c, id, alice.clone(), add).unwrap_err(), Error::PermissionDenied);
        // A watch is checked when it opens.
        let w = WatchRequest { key: b("/other/"), range_end: prefix("/other/").1, ..Default::default() };
        assert_eq!(
            c.core_mut(id).watch_with_auth(1000 + id, w, alice.clone()).unwrap_err(),
            Error::PermissionDenied
        );
        let w = WatchRequest { key: b("/app/"), range_end: prefix("/app/").1, ..Default::default() };
        assert!(c.core_mut(id).watch_with_auth(2000 + id, w, alice.clone()).is_ok());
    }
    // A txn needs every key it touches, on both branches; a delete with prev_kv needs read.
    let txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(PutRequest { key: b("/app/t"), ..Default::default() })],
        failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("/other/x"),
            ..Default::default()
        })],
    };
    assert_eq!(c.request_as(l, Request::Txn(txn), alice.clone()).unwrap_err(), Error::PermissionDenied);
    // Root may do anything.
    let root = as_user(ROOT, rev);
    assert!(c.request_as(l, put("/other/y"), root.clone()).is_ok());
    match c.request_as(l, Request::AuthQuery(AuthQuery::UserList), root.clone()).unwrap().body {
        ResponseBody::Auth(AuthAnswer::Users(u)) => {
            assert_eq!(u, vec!["alice".to_string(), ROOT.to_string()])
        }
        other => panic!("{other:?}"),
    }
    // Alice may read her own entry, not others'.
    assert!(c
        .request_as(l, Request::AuthQuery(AuthQuery::UserGet { name: "alice".into() }), alice.clone())
        .is_ok());
    let roots = Request::AuthQuery(AuthQuery::UserGet { name: ROOT.into() });
    assert_eq!(c.request_as(l, roots, alice).unwrap_err(), Error::PermissionDenied);
    c.assert_converged();
}

#[test]
fn a_revocation_refuses_old_credentials_and_the_permission_everywhere_once_applied() {
    let mut c = Cluster::new(3, 72);
    let l = c.wait_for_leader();
    let rev = secured(&mut c, l);
    let root = as_user(ROOT, rev);
    let rev2 =
        change(&mut c, l, root, AuthChange::UserRevokeRole { user: "alice".into(), role: "app".into() })
            .unwrap();
    assert_eq!(rev2, rev + 1);
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(
            c.request_as(id, put("/app/a"), as_user("alice", rev)).unwrap_err(),
            Error::AuthOldRevision
        );
        assert_eq!(
            c.request_as(id, put("/app/a"), as_user("alice", rev2)).unwrap_err(),
            Error::PermissionDenied
        );
        assert_eq!(
            c.request_as(id, get("/app/a", false), as_user("alice", rev2)).unwrap_err(),
            Error::PermissionDenied
        );
    }
}

#[test]
fn a_write_proposed_before_a_revocation_and_applied_after_it_is_refused() {
    let mut c = Cluster::new(3, 73);
    let l = c.wait_for_leader();
    let rev = secured(&mut c, l);
    // Both in the log, the revocation first: the put applies after it and is refused, though
    // alice's credentials were current when she sent it.
    let revoke = Request::Auth(AuthChange::UserRevokeRole { user: "alice".into(), role: "app".into() });
    c.core_mut(l).submit_with_auth(10_000, revoke, as_user(ROOT, rev));
    c.core_mut(l).submit_with_auth(10_001, put("/app/late"), as_user("alice", rev));
    c.stabilize();
    assert!(c.wait(10_000).is_ok());
    assert_eq!(c.wait(10_001).unwrap_err(), Error::AuthOldRevision);
    assert_eq!(c.get(l, "/app/late", false).unwrap_err(), Error::UserEmpty);
    assert!(c.core(l).state().mvcc().current_revision() == 1, "nothing was written");
}

#[test]
fn the_auth_store_survives_snapshots_and_restarts() {
    let mut c = Cluster::with_config(3, 74, |cfg| {
        cfg.snapshot_entries = 5;
        cfg.snapshot_catch_up_entries = 1;
    });
    let l = c.wait_for_leader();
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.isolate(f);
    let rev = secured(&mut c, l);
    for i in 0..20 {
        c.request_as(l, put(&format!("/app/{i}")), as_user("alice", rev)).unwrap();
    }
    // The follower catches up by snapshot, auth store included.
    c.heal();
    c.stabilize();
    c.run_for(2_000);
    assert_eq!(c.core(f).state().auth(), c.core(l).state().auth());
    assert_eq!(
        c.request_as(f, get("/other", true), as_user("alice", rev)).unwrap_err(),
        Error::PermissionDenied
    );
    c.crash(f);
    c.restart(f);
    assert!(c.core(f).state().auth().is_enabled());
    assert_eq!(
        c.request_as(f, get("/other", true), as_user("alice", rev)).unwrap_err(),
        Error::PermissionDenied
    );
    c.assert_converged();
}

#[test]
fn root_lists_and_lifts_alarms_with_auth_on() {
    use cairn_core::alarm::{AlarmAction, AlarmKind};
    let mut c = Cluster::with_config(3, 75, |cfg| cfg.quota_bytes = 600);
    let l = c.wait_for_leader();
    let rev = secured(&mut c, l);
    let root = as_user(ROOT, rev);
    let mut refused = false;
    for i in 0..40 {
        if c.request_as(l, put(&format!("/app/{i:04}")), root.clone()).unwrap_err_or_ok()
            == Some(Error::NoSpace)
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the quota filled");
    let list = Request::Alarm { action: AlarmAction::Get, member: 0, kind: None };
    let alarms = c.request_as(l, list, root.clone()).unwrap();
    let ResponseBody::Alarms(alarms) = alarms.body else { panic!() };
    assert_eq!(alarms.len(), 1);
    let lift = Request::Alarm {
        action: AlarmAction::Deactivate,
        member: alarms[0].member,
        kind: Some(AlarmKind::NoSpace),
    };
    assert!(c.request_as(l, lift.clone(), as_user("alice", rev)).is_err());
    assert!(c.request_as(l, lift, root).is_ok());
}

trait ErrOrOk {
    fn unwrap_err_or_ok(self) -> Option<Error>;
}

impl<T> ErrOrOk for Result<T, Error> {
    fn unwrap_err_or_ok(self) -> Option<Error> {
        self.err()
    }
}

#[test]
fn leases_are_open_as_in_etcd_but_their_keys_are_not() {
    let mut c = Cluster::new(3, 76);
    let l = c.wait_for_leader();
    let rev = secured(&mut c, l);
    let alice = as_user("alice", rev);
    // Anyone may grant, keep alive and list leases; a lease without keys anyone may revoke.
    let granted = c.request(l, Request::LeaseGrant { id: 0, ttl_secs: 30 }).unwrap();
    let ResponseBody::LeaseGrant { id: lease, .. } = granted.body else { panic!() };
    assert!(c.request(l, Request::LeaseKeepAlive { id: lease }).is_ok());
    assert!(c.request(l, Request::LeaseLeases).is_ok());
    // Alice attaches one of her keys; nobody without write on it may revoke the lease, or put
    // with it, or list its keys without read on them.
    let put = PutRequest { key: b("/app/held"), value: b("v"), lease, ..Default::default() };
    c.request_as(l, Request::Put(put), alice.clone()).unwrap();
    assert_eq!(c.request(l, Request::LeaseRevoke { id: lease }).unwrap_err(), Error::UserEmpty);
    change(&mut c, l, as_user(ROOT, rev), AuthChange::UserAdd { name: "bob".into(), password_hash: None })
        .unwrap();
    let rev = rev + 1;
    let bob = as_user("bob", rev);
    let alice = as_user("alice", rev);
    let bobs = PutRequest { key: b("/bob"), value: b("v"), lease, ..Default::default() };
    assert_eq!(c.request_as(l, Request::Put(bobs), bob.clone()).unwrap_err(), Error::PermissionDenied);
    let ttl = Request::LeaseTimeToLive { id: lease, keys: true };
    assert_eq!(c.request_as(l, ttl.clone(), bob.clone()).unwrap_err(), Error::PermissionDenied);
    assert!(c.request_as(l, ttl, alice.clone()).is_ok());
    assert!(c.request_as(l, Request::LeaseTimeToLive { id: lease, keys: false }, bob.clone()).is_ok());
    assert_eq!(
        c.request_as(l, Request::LeaseRevoke { id: lease }, bob).unwrap_err(),
        Error::PermissionDenied
    );
    c.request_as(l, Request::LeaseRevoke { id: lease }, alice).unwrap();
    // The member's own requests (probes) are never refused: a linearizable read proves quorum.
    let rid = 90_000;
    c.core_mut(l).submit_by(rid, get("/anything", false), cairn_core::Caller::Member);
    c.stabilize();
    assert!(c.wait(rid).is_ok());
}
