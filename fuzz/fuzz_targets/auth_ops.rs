//! Arbitrary sequences of auth store changes (users, roles, permissions with odd keys and range
//! ends, enabling and disabling), queries and permission checks by arbitrary callers, and
//! arbitrary bytes as tokens: each gets an answer or one of etcd's errors, never a panic; a
//! refused change leaves the store as it was; root may always do anything; and no token is
//! accepted unless it was minted under the store's key.
#![no_main]

use bytes::Bytes;
use cairn_core::auth::{Access, AuthChange, AuthInfo, AuthQuery, AuthStore, PermKind, Permission, ROOT};
use libfuzzer_sys::fuzz_target;

fn name(b: u8) -> String {
    const NAMES: [&str; 6] = [ROOT, "u", "", "r", "u\0", "long-name"];
    NAMES[b as usize % NAMES.len()].to_string()
}

fn key(b: u8) -> Bytes {
    const KEYS: [&[u8]; 7] = [b"", b"\0", b"a", b"a/", b"b", b"\xff", b"a0"];
    Bytes::from_static(KEYS[b as usize % KEYS.len()])
}

fuzz_target!(|data: &[u8]| {
    let mut store = AuthStore::default();
    for op in data.chunks(4) {
        let [kind, a, b, c] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0), *op.get(3).unwrap_or(&0)];
        let perm_kind = [PermKind::Read, PermKind::Write, PermKind::ReadWrite][c as usize % 3];
        let change = match kind % 14 {
            0 => Some(AuthChange::Enable { token_key: key(c) }),
            1 => Some(AuthChange::Disable),
            2 => Some(AuthChange::UserAdd { name: name(a), password_hash: (b & 1 == 1).then(|| "h".into()) }),
            3 => Some(AuthChange::UserDelete { name: name(a) }),
            4 => Some(AuthChange::UserChangePassword { name: name(a), password_hash: None }),
            5 => Some(AuthChange::UserGrantRole { user: name(a), role: name(b) }),
            6 => Some(AuthChange::UserRevokeRole { user: name(a), role: name(b) }),
            7 => Some(AuthChange::RoleAdd { name: name(a) }),
            8 => Some(AuthChange::RoleDelete { name: name(a) }),
            9 => Some(AuthChange::RoleGrantPermission {
                role: name(a),
                perm: Permission { kind: perm_kind, key: key(b), range_end: key(c >> 2) },
            }),
            10 => Some(AuthChange::RoleRevokePermission { role: name(a), key: key(b), range_end: key(c >> 2) }),
            _ => None,
        };
        match change {
            Some(change) => {
                let before = store.clone();
                if store.apply(&change).is_err() {
                    assert_eq!(store, before, "a refused change left a trace: {change:?}");
                }
            }
            None => {
                let who = AuthInfo { user: name(a), revision: store.revision().saturating_sub((b % 2) as u64) };
                let needs = [
                    Access::Read { key: &key(b), range_end: &key(c) },
                    Access::Write { key: &key(c), range_end: &key(b) },
                ];
                let verdict = store.check(&who, &needs[..(c as usize % 3)]);
                if store.is_enabled() && store.is_root(&who.user) && who.revision == store.revision() {
                    assert!(verdict.is_ok(), "root refused: {verdict:?}");
                }
                let query = [AuthQuery::Status, AuthQuery::UserList, AuthQuery::RoleList][a as usize % 3].clone();
                let _ = store.query(&query, Some(&who));
                let _ = store.query(&AuthQuery::UserGet { name: name(b) }, Some(&who));
                let _ = store.query(&AuthQuery::RoleGet { name: name(c) }, None);
                // Tokens: whatever the bytes, never a panic; only a minted one verifies.
                let now = std::time::SystemTime::now();
                let junk = String::from_utf8_lossy(op).into_owned();
                assert!(cairn_server::credentials::verify(&store, &junk, now).is_err(), "{junk:?} verified");
                if let Some(token) = cairn_server::credentials::mint(&store, &who.user, std::time::Duration::from_secs(60), now) {
                    let verified = cairn_server::credentials::verify(&store, &token, now);
                    assert_eq!(verified.map(|w| w.user), Ok(who.user.clone()));
                }
            }
        }
    }
});
