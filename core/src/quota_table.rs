//! The per-prefix quota table the state machine keeps (see `prefix_quota`): the bounds,
//! replicated, and the usage under each prefix, derived from the store.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::kv::{DeleteRangeRequest, Event, EventKind, KeyValue, PutRequest, RangeRequest};
use crate::mvcc::Mvcc;
use crate::prefix_quota::{Limits, QuotaStatus, Usage, QUOTAS_MAX};
use crate::{Error, Result};

fn size(kv: &KeyValue) -> u64 {
    (kv.key.len() + kv.value.len()) as u64
}

/// The quota table and the usage under each prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixQuotas {
    limits: BTreeMap<Bytes, Limits>,
    /// Derived from the store; counted again on decoding (`recount`).
    #[serde(skip)]
    usage: BTreeMap<Bytes, Usage>,
}

impl PrefixQuotas {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    pub fn list(&self) -> Vec<QuotaStatus> {
        self.limits
            .iter()
            .map(|(p, l)| QuotaStatus {
                prefix: p.clone(),
                limits: *l,
                usage: self.usage.get(p).copied().unwrap_or_default(),
            })
            .collect()
    }

    /// Sets (or replaces) the quota on `prefix`, counting what is under it now.
    pub fn set(&mut self, prefix: Bytes, limits: Limits, mvcc: &Mvcc) -> Result<()> {
        if prefix.is_empty() {
            return Err(Error::InvalidQuota("the prefix is empty".into()));
        }
        if !self.limits.contains_key(&prefix) && self.limits.len() >= QUOTAS_MAX {
            return Err(Error::InvalidQuota(format!("at most {QUOTAS_MAX} prefix quotas")));
        }
        self.usage.insert(prefix.clone(), count(mvcc, &prefix));
        self.limits.insert(prefix, limits);
        Ok(())
    }

    /// Whether there was a quota on `prefix` to remove.
    pub fn remove(&mut self, prefix: &[u8]) -> bool {
        self.usage.remove(prefix);
        self.limits.remove(prefix).is_some()
    }

    /// Counts the usage under every prefix from `mvcc` (after decoding).
    pub fn recount(&mut self, mvcc: &Mvcc) {
        self.usage = self.limits.keys().map(|p| (p.clone(), count(mvcc, p))).collect();
    }

    /// Refuses `puts` (applied together) if they would take a prefix past a bound.
    pub fn check(&self, puts: &[&PutRequest], mvcc: &Mvcc) -> Result<()> {
        self.check_txn(puts, &[], mvcc)
    }

    /// `check` for a txn's writes: the live keys its deletes remove are credited first (a txn
    /// may not touch a key twice, so no put lands on a key a delete of the same txn removes).
    pub fn check_txn(
        &self,
        puts: &[&PutRequest],
        deletes: &[&DeleteRangeRequest],
        mvcc: &Mvcc,
    ) -> Result<()> {
        if self.limits.is_empty() {
            return Ok(());
        }
        let mut removed: Vec<KeyValue> = vec![];
        for d in deletes {
            let range =
                RangeRequest { key: d.key.clone(), range_end: d.range_end.clone(), ..Default::default() };
            if let Ok(r) = mvcc.range(&range) {
                removed.extend(r.kvs);
            }
        }
        for (prefix, limits) in &self.limits {
            let mut usage = self.usage.get(prefix).copied().unwrap_or_default();
            for kv in removed.iter().filter(|kv| kv.key.starts_with(prefix)) {
                usage.bytes = usage.bytes.saturating_sub(size(kv));
                usage.keys = usage.keys.saturating_sub(1);
            }
            let mut grew = false;
            for p in puts.iter().filter(|p| p.key.starts_with(prefix)) {
                let old = mvcc.kv_at(&p.key);
                let value_len =
                    if p.ignore_value { old.as_ref().map_or(0, |kv| kv.value.len()) } else { p.value.len() };
                let new = (p.key.len() + value_len) as u64;
                match &old {
                    Some(kv) => usage.bytes = usage.bytes.saturating_sub(size(kv)) + new,
                    None => {
                        usage.bytes += new;
                        usage.keys += 1;
                    }
                }
                grew = true;
            }
            if !grew {
                continue;
            }
            let name = String::from_utf8_lossy(prefix).into_owned();
            if limits.keys_max > 0 && usage.keys > limits.keys_max {
                return Err(Error::PrefixQuotaExceeded {
                    prefix: name,
                    limit: format!("{} keys", limits.keys_max),
                });
            }
            if limits.bytes_max > 0 && usage.bytes > limits.bytes_max {
                return Err(Error::PrefixQuotaExceeded {
                    prefix: name,
                    limit: format!("{} bytes", limits.bytes_max),
                });
            }
        }
        Ok(())
    }

    /// Follows what changed in the store.
    pub fn on_events(&mut self, events: &[Event]) {
        if self.limits.is_empty() {
            return;
        }
        for e in events {
            for (_, usage) in self.usage.iter_mut().filter(|(p, _)| e.kv.key.starts_with(p)) {
                if let Some(prev) = &e.prev_kv {
                    usage.bytes = usage.bytes.saturating_sub(size(prev));
                    usage.keys = usage.keys.saturating_sub(1);
                }
                if e.kind == EventKind::Put {
                    usage.bytes += size(&e.kv);
                    usage.keys += 1;
                }
            }
        }
    }
}

/// The live keys and bytes under `prefix`.
fn count(mvcc: &Mvcc, prefix: &Bytes) -> Usage {
    let req = RangeRequest { key: prefix.clone(), range_end: prefix_end(prefix), ..Default::default() };
    let kvs = mvcc.range(&req).map(|r| r.kvs).unwrap_or_default();
    Usage { bytes: kvs.iter().map(size).sum(), keys: kvs.len() as u64 }
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(&[0])
}
