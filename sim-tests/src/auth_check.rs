//! The auth checker: no user operation succeeded without the permission in force when it was
//! applied (a write) or served (a read), as a model of etcd's permissions replays the auth
//! changes that were applied before it.
//!
//! Where each auth change falls among the key-value operations is known from revisions: a
//! change answers with the store's revision when it applied (it makes none of its own), so a
//! write that made revision w applied after every change answered with a revision below w and
//! before every change answered with w or more. A read answered at revision h was served after
//! every change below h and before every change above it; a change at exactly h may fall on
//! either side, so each of those states is possible. A change whose answer never came may have
//! applied at any point after it was sent, or never: the check grants what such a change
//! grants and keeps what it revokes, so it may miss a violation but never reports a false one.
//!
//! The model is the etcd rules written plainly (a key is covered by a permission on it or by a
//! prefix holding it), not the core's interval code.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cairn_core::auth::{AuthChange, PermKind, Permission, ROOT};

/// An auth change the admin client made, in the order it made them (one at a time).
#[derive(Clone, Debug)]
pub struct AdminOp {
    pub change: AuthChange,
    pub invoke_ns: u64,
    pub outcome: AdminOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Applied when the store was at this revision.
    Applied { revision: i64 },
    /// Definitely not applied (refused).
    Refused,
    /// No answer: may have applied, any time after it was sent.
    Unknown,
}

/// A user's key-value operation that succeeded.
#[derive(Clone, Debug)]
pub struct UserOp {
    pub user: String,
    pub key: Bytes,
    /// Empty for `key` alone; otherwise the end of a prefix range.
    pub range_end: Bytes,
    pub write: bool,
    pub complete_ns: u64,
    /// The revision in the answer's header.
    pub revision: i64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    enabled: bool,
    user_roles: BTreeMap<String, BTreeSet<String>>,
    role_perms: BTreeMap<String, BTreeMap<(Bytes, Bytes), PermKind>>,
}

impl Model {
    /// etcd's rules, for the changes the workload makes (refusals are the store's business:
    /// only applied changes reach here, and each applied as etcd would have it).
    fn apply(&mut self, change: &AuthChange) {
        match change {
            AuthChange::Enable { .. } => self.enabled = true,
            AuthChange::Disable => self.enabled = false,
            AuthChange::UserAdd { name, .. } => {
                self.user_roles.entry(name.clone()).or_default();
            }
            AuthChange::UserDelete { name } => {
                self.user_roles.remove(name);
            }
            AuthChange::UserChangePassword { .. } => {}
            AuthChange::UserGrantRole { user, role } => {
                self.user_roles.entry(user.clone()).or_default().insert(role.clone());
            }
            AuthChange::UserRevokeRole { user, role } => {
                if let Some(r) = self.user_roles.get_mut(user) {
                    r.remove(role);
                }
            }
            AuthChange::RoleAdd { name } => {
                self.role_perms.entry(name.clone()).or_default();
            }
            AuthChange::RoleDelete { name } => {
                self.role_perms.remove(name);
                for roles in self.user_roles.values_mut() {
                    roles.remove(name);
                }
            }
            AuthChange::RoleGrantPermission { role, perm: Permission { kind, key, range_end } } => {
                self.role_perms
                    .entry(role.clone())
                    .or_default()
                    .insert((key.clone(), range_end.clone()), *kind);
            }
            AuthChange::RoleRevokePermission { role, key, range_end } => {
                if let Some(p) = self.role_perms.get_mut(role) {
                    p.remove(&(key.clone(), range_end.clone()));
                }
            }
        }
    }

    /// A grant that may or may not have applied: what it grants is added to what is held (a
    /// grant of another kind on the same keys replaces the kind; here both count).
    fn apply_permissively(&mut self, change: &AuthChange) {
        if let AuthChange::RoleGrantPermission { role, perm } = change {
            let held = self.role_perms.entry(role.clone()).or_default();
            let key = (perm.key.clone(), perm.range_end.clone());
            let kind = match held.get(&key) {
                Some(k) if *k != perm.kind => PermKind::ReadWrite,
                _ => perm.kind,
            };
            held.insert(key, kind);
        } else {
            self.apply(change);
        }
    }

    /// Whether `op` is allowed. A single key is covered by a permission on it or by a prefix
    /// range holding it; a prefix range only by a permission on the same prefix or one
    /// holding it.
    fn allows(&self, op: &UserOp) -> bool {
        if !self.enabled {
            return true;
        }
        let Some(roles) = self.user_roles.get(&op.user) else { return false };
        if roles.contains(ROOT) {
            return true;
        }
        let kind_ok = |k: PermKind| match k {
            PermKind::ReadWrite => true,
            PermKind::Read => !op.write,
            PermKind::Write => op.write,
        };
        roles.iter().filter_map(|r| self.role_perms.get(r)).flat_map(|p| p.iter()).any(
            |((key, end), kind)| {
                kind_ok(*kind)
                    && if end.is_empty() {
                        op.range_end.is_empty() && op.key == key
                    } else if op.range_end.is_empty() {
                        op.key >= key && op.key < end
                    } else {
                        op.key >= key && op.range_end <= end
                    }
            },
        )
    }
}

/// Checks every successful user operation against the admin's changes.
pub fn check(admin: &[AdminOp], ops: &[UserOp]) -> Result<(), String> {
    for op in ops {
        // Changes before the operation for certain, and those that may be on either side.
        let mut before = Model::default();
        let mut possible = vec![];
        for a in admin {
            let AdminOutcome::Applied { revision } = a.outcome else { continue };
            let maybe = !op.write && revision == op.revision;
            if revision < op.revision {
                before.apply(&a.change);
            } else if maybe {
                possible.push(&a.change);
            }
        }
        // Changes with no answer, sent before the operation ended, that grant: maybe applied.
        let maybe_granted: Vec<&AuthChange> = admin
            .iter()
            .filter(|a| a.outcome == AdminOutcome::Unknown && a.invoke_ns < op.complete_ns)
            .map(|a| &a.change)
            .filter(|c| {
                matches!(
                    c,
                    AuthChange::RoleGrantPermission { .. }
                        | AuthChange::UserGrantRole { .. }
                        | AuthChange::Disable
                )
            })
            .collect();
        let with_maybe = |m: &Model| {
            let mut m = m.clone();
            for c in &maybe_granted {
                m.apply_permissively(c);
            }
            m
        };
        let mut state = before;
        let mut allowed = with_maybe(&state).allows(op);
        for c in possible {
            state.apply(c);
            allowed |= with_maybe(&state).allows(op);
        }
        if !allowed {
            return Err(format!(
                "{} {} {:?}{} succeeded at revision {} without the permission in force then",
                op.user,
                if op.write { "wrote" } else { "read" },
                String::from_utf8_lossy(&op.key),
                if op.range_end.is_empty() {
                    String::new()
                } else {
                    format!("..{:?}", String::from_utf8_lossy(&op.range_end))
                },
                op.revision
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(change: AuthChange, revision: i64) -> AdminOp {
        AdminOp { change, invoke_ns: 0, outcome: AdminOutcome::Applied { revision } }
    }

    fn setup() -> Vec<AdminOp> {
        vec![
            applied(AuthChange::UserAdd { name: "u1".into(), password_hash: None }, 1),
            applied(AuthChange::RoleAdd { name: "r1".into() }, 1),
            applied(AuthChange::UserGrantRole { user: "u1".into(), role: "r1".into() }, 1),
            applied(AuthChange::Enable { token_key: Bytes::new() }, 1),
        ]
    }

    fn grant(key: &'static str, revision: i64) -> AdminOp {
        let perm = Permission { kind: PermKind::ReadWrite, key: Bytes::from(key), range_end: Bytes::new() };
        applied(AuthChange::RoleGrantPermission { role: "r1".into(), perm }, revision)
    }

    fn revoke(key: &'static str, revision: i64) -> AdminOp {
        applied(
            AuthChange::RoleRevokePermission {
                role: "r1".into(),
                key: Bytes::from(key),
                range_end: Bytes::new(),
            },
            revision,
        )
    }

    fn op(write: bool, revision: i64) -> UserOp {
        UserOp {
            user: "u1".into(),
            key: Bytes::from("k"),
            range_end: Bytes::new(),
            write,
            complete_ns: 10,
            revision,
        }
    }

    #[test]
    fn a_write_after_the_revocation_is_a_violation_and_one_before_it_is_not() {
        let mut admin = setup();
        admin.push(grant("k", 1));
        admin.push(revoke("k", 5));
        assert!(check(&admin, &[op(true, 5)]).is_ok(), "revision 5 was made before the revoke applied");
        assert!(check(&admin, &[op(true, 6)]).is_err());
        // A read at exactly 5 may have been served before the revoke.
        assert!(check(&admin, &[op(false, 5)]).is_ok());
        assert!(check(&admin, &[op(false, 6)]).is_err());
        // A grant with no answer may have applied.
        admin.push(AdminOp { outcome: AdminOutcome::Unknown, invoke_ns: 5, ..grant("k", 0) });
        assert!(check(&admin, &[op(true, 6)]).is_ok());
        // One of another kind, unanswered, may have replaced the kind held, or not: both count.
        let mut admin = setup();
        admin.push(grant("k", 1));
        let read_only = Permission { kind: PermKind::Read, key: Bytes::from("k"), range_end: Bytes::new() };
        let change = AuthChange::RoleGrantPermission { role: "r1".into(), perm: read_only };
        admin.push(AdminOp { change, invoke_ns: 5, outcome: AdminOutcome::Unknown });
        assert!(check(&admin, &[op(true, 6)]).is_ok());
        assert!(check(&setup(), &[op(true, 2)]).is_err(), "never granted");
    }
}
