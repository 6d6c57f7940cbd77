//! etcd's auth store as replicated state: users, roles, the permissions roles grant on keys,
//! ranges and prefixes, and whether authentication is on.
//!
//! Everything here changes only through the log (`AuthChange`, applied by the state machine),
//! so every member holds the same store at the same applied index, and a permission revoked at
//! index i is refused by every member that has applied i. Each change moves the store's
//! `revision`; a client's credentials name the revision they were issued at, and a request
//! carrying an older one is refused ("revision of auth store is old", etcd's rule): a client
//! re-authenticates after every change, so no member ever acts on a permission as it stood
//! before a change it has applied.
//!
//! Passwords arrive hashed (the front end hashes them before they enter the log) and are never
//! compared here: the front end verifies a password against `User::password_hash` and mints
//! the token; the core sees the verified `AuthInfo` and checks it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::kv::{Compare, RequestOp, TxnRequest};
use crate::{Error, Result};

/// The user and the role that may do anything, as in etcd.
pub const ROOT: &str = "root";

/// Who sent a client request, as the front end verified it (a token or a TLS certificate's
/// Common Name): the user, and the auth store revision the credentials were issued at. The
/// default (an empty name) is a client that gave no credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// etcd's permission types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PermKind {
    Read,
    Write,
    ReadWrite,
}

impl PermKind {
    fn allows(self, write: bool) -> bool {
        match self {
            PermKind::ReadWrite => true,
            PermKind::Read => !write,
            PermKind::Write => write,
        }
    }
}

/// A permission on `key` alone (`range_end` empty), on `[key, range_end)`, or on every key from
/// `key` on (`range_end` `[0]`; with `key` `[0]` too, every key): etcd's conventions, so a
/// prefix `p` is `[p, p+1)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    pub kind: PermKind,
    pub key: Bytes,
    pub range_end: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// A password hash in the front end's format (bcrypt); None for a user without a password,
    /// who can only be one by a client certificate.
    pub password_hash: Option<String>,
    pub roles: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Sorted by key and range end; one per (key, range end).
    pub perms: Vec<Permission>,
}

/// A change to the auth store, as carried in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthChange {
    /// `token_key` signs the tokens the front ends issue from now on (drawn by the member that
    /// proposed the change; a new one each time, so tokens from before are void).
    Enable {
        token_key: Bytes,
    },
    Disable,
    UserAdd {
        name: String,
        password_hash: Option<String>,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: Option<String>,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        user: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        role: String,
        perm: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Bytes,
        range_end: Bytes,
    },
}

/// A read of the auth store, served from the member's applied state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthQuery {
    Status,
    UserGet { name: String },
    UserList,
    RoleGet { name: String },
    RoleList,
}

/// What an auth change or query answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthAnswer {
    /// A change applied (or a query of the status): the store's state after it.
    Status {
        enabled: bool,
        revision: u64,
    },
    /// A user's roles, sorted.
    UserRoles(Vec<String>),
    Users(Vec<String>),
    RolePerms(Vec<Permission>),
    Roles(Vec<String>),
}

/// What a request needs: to read or write `[key, range_end)` (etcd's conventions), or the root
/// role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    Read { key: &'a [u8], range_end: &'a [u8] },
    Write { key: &'a [u8], range_end: &'a [u8] },
    Admin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    token_key: Bytes,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl AuthStore {
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Moves on every change applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The key tokens are signed with while authentication is on.
    pub fn token_key(&self) -> &Bytes {
        &self.token_key
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// Whether `user` holds the root role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Applies a change; the revision moves when the store changed. Errors are etcd's and
    /// leave the store as it was.
    pub fn apply(&mut self, change: &AuthChange) -> Result<AuthAnswer> {
        let changed = self.change(change)?;
        if changed {
            self.revision += 1;
        }
        Ok(self.status())
    }

    fn status(&self) -> AuthAnswer {
        AuthAnswer::Status { enabled: self.enabled, revision: self.revision }
    }

    /// Whether the store changed.
    fn change(&mut self, change: &AuthChange) -> Result<bool> {
        match change {
            AuthChange::Enable { token_key } => {
                if self.enabled {
                    return Ok(false);
                }
                let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(Error::RootRoleNotExist);
                }
                self.enabled = true;
                self.token_key = token_key.clone();
            }
            AuthChange::Disable => {
                if !self.enabled {
                    return Ok(false);
                }
                self.enabled = false;
                self.token_key = Bytes::new();
            }
            AuthChange::UserAdd { name, password_hash } => {
                if name.is_empty() {
                    return Err(Error::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(Error::UserAlreadyExists);
                }
                let user =
                    User { name: name.clone(), password_hash: password_hash.clone(), roles: BTreeSet::new() };
                self.users.insert(name.clone(), user);
            }
            AuthChange::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(Error::InvalidAuthManagement);
                }
                self.users.remove(name).ok_or(Error::UserNotFound)?;
            }
            AuthChange::UserChangePassword { name, password_hash } => {
                let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
                user.password_hash = password_hash.clone();
            }
            AuthChange::UserGrantRole { user, role } => {
                // The root role need not exist to be granted (etcd's rule).
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(Error::RoleNotFound);
                }
                let u = self.users.get_mut(user).ok_or(Error::UserNotFound)?;
                return Ok(u.roles.insert(role.clone()));
            }
            AuthChange::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(Error::InvalidAuthManagement);
                }
                let u = self.users.get_mut(user).ok_or(Error::UserNotFound)?;
                if !u.roles.remove(role) {
                    return Err(Error::RoleNotGranted);
                }
            }
            AuthChange::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(Error::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(Error::RoleAlreadyExists);
                }
                self.roles.insert(name.clone(), Role { name: name.clone(), perms: vec![] });
            }
            AuthChange::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(Error::InvalidAuthManagement);
                }
                self.roles.remove(name).ok_or(Error::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.remove(name);
                }
            }
            AuthChange::RoleGrantPermission { role, perm } => {
                let r = self.roles.get_mut(role).ok_or(Error::RoleNotFound)?;
                match r.perms.binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end)))
                {
                    Ok(i) => r.perms[i].kind = perm.kind,
                    Err(i) => r.perms.insert(i, perm.clone()),
                }
            }
            AuthChange::RoleRevokePermission { role, key, range_end } => {
                let r = self.roles.get_mut(role).ok_or(Error::RoleNotFound)?;
                let i = r
                    .perms
                    .binary_search_by(|p| (&p.key, &p.range_end).cmp(&(key, range_end)))
                    .map_err(|_| Error::PermissionNotGranted)?;
                r.perms.remove(i);
            }
        }
        Ok(true)
    }

    /// Answers a query for `who` (None: a member, which may read anything). etcd lets a user
    /// read their own entry and the roles they hold; everything else needs the root role.
    pub fn query(&self, query: &AuthQuery, who: Option<&AuthInfo>) -> Result<AuthAnswer> {
        let own = |allowed: bool| -> Result<()> {
            match who {
                Some(who) if !allowed => self.check(who, &[Access::Admin]),
                _ => Ok(()),
            }
        };
        match query {
            AuthQuery::Status => Ok(self.status()),
            AuthQuery::UserGet { name } => {
                own(who.is_some_and(|w| &w.user == name) && self.check_credentials(who).is_ok())?;
                let user = self.users.get(name).ok_or(Error::UserNotFound)?;
                Ok(AuthAnswer::UserRoles(user.roles.iter().cloned().collect()))
            }
            AuthQuery::UserList => {
                own(false)?;
                Ok(AuthAnswer::Users(self.users.keys().cloned().collect()))
            }
            AuthQuery::RoleGet { name } => {
                let holds =
                    who.is_some_and(|w| self.users.get(&w.user).is_some_and(|u| u.roles.contains(name)));
                own(holds && self.check_credentials(who).is_ok())?;
                let role = self.roles.get(name).ok_or(Error::RoleNotFound)?;
                Ok(AuthAnswer::RolePerms(role.perms.clone()))
            }
            AuthQuery::RoleList => {
                own(false)?;
                Ok(AuthAnswer::Roles(self.roles.keys().cloned().collect()))
            }
        }
    }

    fn check_credentials(&self, who: Option<&AuthInfo>) -> Result<()> {
        match who {
            Some(who) => self.check(who, &[]),
            None => Ok(()),
        }
    }

    /// Whether `who` may do everything in `needs`. Always yes while authentication is off.
    /// Refused: no user named ("user name is empty"), credentials issued before the latest
    /// change ("revision of auth store is old"), an unknown user, a missing permission
    /// ("permission denied"). The root role may do anything.
    pub fn check(&self, who: &AuthInfo, needs: &[Access<'_>]) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if who.user.is_empty() {
            return Err(Error::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        let user = self.users.get(&who.user).ok_or(Error::PermissionDenied)?;
        if user.roles.contains(ROOT) {
            return Ok(());
        }
        for need in needs {
            let (key, range_end, write) = match *need {
                Access::Admin => return Err(Error::PermissionDenied),
                Access::Read { key, range_end } => (key, range_end, false),
                Access::Write { key, range_end } => (key, range_end, true),
            };
            let granted = user
                .roles
                .iter()
                .filter_map(|r| self.roles.get(r))
                .flat_map(|r| r.perms.iter())
                .filter(|p| p.kind.allows(write))
                .filter_map(|p| Interval::granted(&p.key, &p.range_end));
            if !Interval::covered(Interval::of(key, range_end), granted) {
                return Err(Error::PermissionDenied);
            }
        }
        Ok(())
    }
}

/// The keys a request covers, as a half-open interval: `end` None is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// etcd's conventions: an empty `range_end` is `key` alone, `[0]` every key from `key`
    /// on. A `range_end` at or below `key` (an empty range) is taken as `key` alone, so that
    /// a request never needs less than its first key.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let single = || {
            let mut end = key.to_vec();
            end.push(0);
            Interval { start: key.to_vec(), end: Some(end) }
        };
        match range_end {
            [] => single(),
            [0] => Interval { start: key.to_vec(), end: None },
            end if end <= key => single(),
            end => Interval { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    /// What a permission grants: as `of`, except that a `range_end` at or below `key` grants
    /// nothing.
    fn granted(key: &[u8], range_end: &[u8]) -> Option<Interval> {
        match range_end {
            [] | [0] => Some(Interval::of(key, range_end)),
            end if end <= key => None,
            _ => Some(Interval::of(key, range_end)),
        }
    }

    /// Whether the union of `granted` covers all of `need`.
    fn covered(need: Interval, granted: impl Iterator<Item = Interval>) -> bool {
        let mut granted: Vec<Interval> = granted.collect();
        granted.sort_by(|a, b| a.start.cmp(&b.start));
        // Walk the granted intervals in order of start, extending the covered prefix of `need`.
        let mut reached = need.start;
        for g in granted {
            if g.start > reached {
                break;
            }
            match g.end {
                None => return true,
                Some(end) if end > reached => reached = end,
                Some(_) => {}
            }
            if need.end.as_ref().is_some_and(|e| &reached >= e) {
                return true;
            }
        }
        need.end.is_some_and(|e| reached >= e)
    }
}

/// The accesses a txn needs: reading what each compare and range looks at, writing what each
/// put and delete changes (and reading the previous values they return), nested txns included,
/// both branches whichever runs (etcd checks them all).
pub fn txn_accesses<'a>(t: &'a TxnRequest, out: &mut Vec<Access<'a>>) {
    for Compare { key, range_end, .. } in &t.compare {
        out.push(Access::Read { key, range_end });
    }
    for op in t.success.iter().chain(&t.failure) {
        match op {
            RequestOp::Range(r) => out.push(Access::Read { key: &r.key, range_end: &r.range_end }),
            RequestOp::Put(p) => {
                out.push(Access::Write { key: &p.key, range_end: &[] });
                if p.prev_kv {
                    out.push(Access::Read { key: &p.key, range_end: &[] });
                }
            }
            RequestOp::DeleteRange(d) => {
                out.push(Access::Write { key: &d.key, range_end: &d.range_end });
                if d.prev_kv {
                    out.push(Access::Read { key: &d.key, range_end: &d.range_end });
                }
            }
            RequestOp::Txn(inner) => txn_accesses(inner, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perm(kind: PermKind, key: &[u8], range_end: &[u8]) -> Permission {
        Permission { kind, key: Bytes::copy_from_slice(key), range_end: Bytes::copy_from_slice(range_end) }
    }

    /// A store with root, and user "u" holding role "r".
    fn store() -> AuthStore {
        let mut s = AuthStore::default();
        for c in [
            AuthChange::UserAdd { name: ROOT.into(), password_hash: None },
            AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            AuthChange::UserAdd { name: "u".into(), password_hash: None },
            AuthChange::RoleAdd { name: "r".into() },
            AuthChange::UserGrantRole { user: "u".into(), role: "r".into() },
            AuthChange::Enable { token_key: Bytes::from_static(b"k") },
        ] {
            s.apply(&c).unwrap();
        }
        s
    }

    fn as_user(s: &AuthStore, user: &str) -> AuthInfo {
        AuthInfo { user: user.into(), revision: s.revision() }
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let mut s = AuthStore::default();
        let enable = AuthChange::Enable { token_key: Bytes::new() };
        assert_eq!(s.apply(&enable), Err(Error::RootUserNotExist));
        s.apply(&AuthChange::UserAdd { name: ROOT.into(), password_hash: None }).unwrap();
        assert_eq!(s.apply(&enable), Err(Error::RootRoleNotExist));
        s.apply(&AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() }).unwrap();
        assert_eq!(s.apply(&enable), Ok(AuthAnswer::Status { enabled: true, revision: 3 }));
        // Root cannot lose root while authentication is on.
        let revoke = AuthChange::UserRevokeRole { user: ROOT.into(), role: ROOT.into() };
        assert_eq!(s.apply(&revoke), Err(Error::InvalidAuthManagement));
        assert_eq!(s.apply(&AuthChange::UserDelete { name: ROOT.into() }), Err(Error::InvalidAuthManagement));
        assert_eq!(s.revision(), 3, "refused changes leave the revision");
    }

    #[test]
    fn credentials_from_before_a_change_are_refused() {
        let mut s = store();
        let stale = as_user(&s, "u");
        let grant =
            AuthChange::RoleGrantPermission { role: "r".into(), perm: perm(PermKind::Read, b"a", b"") };
        s.apply(&grant).unwrap();
        let read_a = [Access::Read { key: b"a", range_end: b"" }];
        assert_eq!(s.check(&stale, &read_a), Err(Error::AuthOldRevision));
        assert_eq!(s.check(&as_user(&s, "u"), &read_a), Ok(()));
        assert_eq!(s.check(&AuthInfo::default(), &read_a), Err(Error::UserEmpty));
        assert_eq!(s.check(&as_user(&s, "nobody"), &read_a), Err(Error::PermissionDenied));
        assert_eq!(s.check(&as_user(&s, "u"), &[Access::Admin]), Err(Error::PermissionDenied));
        assert_eq!(s.check(&as_user(&s, ROOT), &[Access::Admin]), Ok(()));
    }

    #[test]
    fn a_range_is_permitted_only_when_the_grants_cover_all_of_it() {
        let mut s = store();
        for p in [
            perm(PermKind::Read, b"a", b"c"),
            perm(PermKind::ReadWrite, b"c", b"e"),
            perm(PermKind::Write, b"x", b""),
        ] {
            s.apply(&AuthChange::RoleGrantPermission { role: "r".into(), perm: p }).unwrap();
        }
        let u = as_user(&s, "u");
        let read =
            |key: &'static [u8], range_end: &'static [u8]| s.check(&u, &[Access::Read { key, range_end }]);
        assert_eq!(read(b"a", b"e"), Ok(()), "two grants meeting at c cover [a, e)");
        assert_eq!(read(b"b", b"f"), Err(Error::PermissionDenied));
        assert_eq!(read(b"d", b""), Ok(()));
        assert_eq!(read(b"a", b"\0"), Err(Error::PermissionDenied), "every key from a on");
        assert_eq!(read(b"x", b""), Err(Error::PermissionDenied), "write-only");
        assert_eq!(s.check(&u, &[Access::Write { key: b"x", range_end: b"" }]), Ok(()));
        assert_eq!(s.check(&u, &[Access::Write { key: b"a", range_end: b"" }]), Err(Error::PermissionDenied));
    }

    /// The model: a key is readable (writable) when some granted permission of the right
    /// kind contains it, tested key by key over a small alphabet.
    fn model_allows(
        perms: &[Permission],
        key: &[u8],
        range_end: &[u8],
        write: bool,
        universe: &[Vec<u8>],
    ) -> bool {
        let contains = |p: &Permission, k: &[u8]| match &p.range_end[..] {
            [] => k == &p.key[..],
            [0] => k >= &p.key[..],
            end => k >= &p.key[..] && k < end,
        };
        let requested = |k: &[u8]| match range_end {
            [] => k == key,
            [0] => k >= key,
            end if end <= key => k == key,
            end => k >= key && k < end,
        };
        universe
            .iter()
            .filter(|k| requested(k))
            .all(|k| perms.iter().any(|p| p.kind.allows(write) && contains(p, k)))
    }

    fn short_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(b'c')], 0..3)
    }

    proptest! {
        /// Every key and range end here is at most 2 bytes over {0, a, b, c}, so each piece of
        /// a request left uncovered starts at one of them, a key the model's universe (every
        /// key up to 3 bytes) holds: the model, which looks key by key, sees every gap the
        /// interval check should find. Unbounded ends (`[0]`) are left out: the keys past
        /// them are not all in the universe.
        #[test]
        fn the_permission_check_agrees_with_a_key_by_key_model(
            grants in proptest::collection::vec((0u8..3, short_key(), short_key()), 0..6),
            key in short_key().prop_filter("keys are never empty", |k| !k.is_empty()),
            range_end in short_key(),
            write in any::<bool>(),
        ) {
            prop_assume!(range_end != [0u8]);
            let mut s = store();
            let mut perms = vec![];
            for (kind, k, e) in grants {
                if e == [0u8] || k.is_empty() { continue; }
                let kind = [PermKind::Read, PermKind::Write, PermKind::ReadWrite][kind as usize];
                let p = perm(kind, &k, &e);
                s.apply(&AuthChange::RoleGrantPermission { role: "r".into(), perm: p }).unwrap();
            }
            if let Some(r) = s.roles.get("r") { perms = r.perms.clone(); }
            let alphabet = [0u8, b'a', b'b', b'c'];
            let mut universe = vec![];
            for a in alphabet { universe.push(vec![a]); for b in alphabet { universe.push(vec![a, b]);
                for c in alphabet { universe.push(vec![a, b, c]); } } }
            let need = if write {
                Access::Write { key: &key, range_end: &range_end }
            } else {
                Access::Read { key: &key, range_end: &range_end }
            };
            let got = s.check(&as_user(&s, "u"), &[need]).is_ok();
            prop_assert_eq!(got, model_allows(&perms, &key, &range_end, write, &universe));
        }
    }
}
