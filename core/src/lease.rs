//! Leases: the replicated registry (which leases exist, their TTLs, their keys) and the leader's
//! volatile expiry clock.
//!
//! As in etcd, only the leader tracks when a lease expires, on its own clock. Expiry is not
//! decided by each replica: the leader proposes a revoke through the log, so every replica
//! deletes the lease's keys at the same revision. Keep-alives go to the leader and only move
//! its expiry clock; they are not replicated. When a member becomes leader it extends every
//! lease by the election timeout (etcd's `Promote`), so an election never expires leases en
//! masse.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::kv::{Event, EventKind};
use crate::{Error, Result};

/// etcd's `MaxLeaseTTL`.
pub const LEASE_TTL_SECS_MAX: i64 = 9_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: i64,
    /// Granted TTL in seconds, after raising it to the minimum.
    pub ttl_secs: i64,
    pub keys: BTreeSet<Bytes>,
}

/// The replicated part: identical on every replica at the same applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases {
    leases: BTreeMap<i64, Lease>,
}

impl Leases {
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.leases.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Grants lease `id` (non-zero) with `ttl_secs` as given (the proposer raised it to its
    /// minimum already).
    pub fn grant(&mut self, id: i64, ttl_secs: i64) -> Result<&Lease> {
        assert!(id > 0, "lease ids are chosen before apply and positive");
        if ttl_secs > LEASE_TTL_SECS_MAX {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let lease = Lease { id, ttl_secs, keys: BTreeSet::new() };
        Ok(self.leases.entry(id).or_insert(lease))
    }

    /// Removes the lease and returns the keys attached to it, which the caller deletes from the
    /// store in the same revision.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Bytes>> {
        let lease = self.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    /// Keeps key attachments in step with the store: a put attaches the key to its new lease
    /// and detaches it from the previous one; a delete detaches it.
    pub fn on_events(&mut self, events: &[Event]) {
        for ev in events {
            if let Some(prev) = &ev.prev_kv {
                if prev.lease != 0 {
                    if let Some(l) = self.leases.get_mut(&prev.lease) {
                        l.keys.remove(&prev.key);
                    }
                }
            }
            if ev.kind == EventKind::Put && ev.kv.lease != 0 {
                let l = self.leases.get_mut(&ev.kv.lease);
                // The store only accepts puts with an existing lease.
                let l = l.expect("put attached a key to a lease that does not exist");
                l.keys.insert(ev.kv.key.clone());
            }
        }
    }
}

/// The leader's expiry clock for each lease, in milliseconds of the leader's own clock.
/// Empty on followers.
#[derive(Clone, Debug, Default)]
pub struct Lessor {
    expiry_ms: BTreeMap<i64, u64>,
    /// Leases whose expiry revoke was proposed, with when; retried if not applied in time.
    revoking_since_ms: BTreeMap<i64, u64>,
    primary: bool,
}

impl Lessor {
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// This member became leader at `now_ms`: every lease gets its full TTL plus `extend_ms`.
    pub fn promote(&mut self, leases: &Leases, now_ms: u64, extend_ms: u64) {
        self.primary = true;
        self.expiry_ms.clear();
        self.revoking_since_ms.clear();
        for l in leases.iter() {
            self.expiry_ms.insert(l.id, now_ms + extend_ms + ttl_ms(l.ttl_secs));
        }
    }

    pub fn demote(&mut self) {
        self.primary = false;
        self.expiry_ms.clear();
        self.revoking_since_ms.clear();
    }

    pub fn on_grant(&mut self, lease: &Lease, now_ms: u64) {
        if self.primary {
            self.expiry_ms.insert(lease.id, now_ms + ttl_ms(lease.ttl_secs));
        }
    }

    pub fn on_revoke(&mut self, id: i64) {
        self.expiry_ms.remove(&id);
        self.revoking_since_ms.remove(&id);
    }

    /// Refreshes a lease's expiry; returns its TTL in seconds.
    pub fn renew(&mut self, leases: &Leases, id: i64, now_ms: u64) -> Result<i64> {
        assert!(self.primary, "only the leader renews leases");
        let lease = leases.get(id).ok_or(Error::LeaseNotFound)?;
        if self.revoking_since_ms.contains_key(&id) {
            // Already expired and being revoked: too late to keep it alive.
            return Err(Error::LeaseNotFound);
        }
        self.expiry_ms.insert(id, now_ms + ttl_ms(lease.ttl_secs));
        Ok(lease.ttl_secs)
    }

    /// Seconds left before the lease expires (rounded down, as etcd reports), never negative.
    pub fn remaining_secs(&self, id: i64, now_ms: u64) -> Option<i64> {
        self.expiry_ms.get(&id).map(|&at| (at.saturating_sub(now_ms) / 1000) as i64)
    }

    /// Leases that expired by `now_ms` and need a revoke proposed: those not already being
    /// revoked, and those whose revoke was proposed more than `retry_ms` ago and has not
    /// applied (the proposal may have been lost in a leader change).
    pub fn take_expired(&mut self, now_ms: u64, retry_ms: u64) -> Vec<i64> {
        let mut due = Vec::new();
        for (&id, &at) in &self.expiry_ms {
            if at > now_ms {
                continue;
            }
            match self.revoking_since_ms.get(&id) {
                Some(&since) if now_ms < since + retry_ms => {}
                _ => due.push(id),
            }
        }
        for &id in &due {
            self.revoking_since_ms.insert(id, now_ms);
        }
        due
    }
}

fn ttl_ms(ttl_secs: i64) -> u64 {
    (ttl_secs.max(0) as u64).saturating_mul(1000)
}
