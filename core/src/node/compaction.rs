//! Auto-compaction (etcd's `--auto-compaction-mode` and `--auto-compaction-retention`): every
//! member samples its revision as time passes; the leader proposes the compaction through the
//! log, so every member compacts at the same index.
//!
//! - `Periodic { retention_ms }`, etcd's periodic compactor: a revision sample every tenth of
//!   the retention (of an hour at most); once the retention has passed since the member booted,
//!   and then every retention (an hour at most), compact to the revision sampled one retention
//!   ago, keeping that much history.
//! - `Revision { retain, interval_ms }`, etcd's revision compactor: every interval (etcd's five
//!   minutes), compact to `retain` revisions behind the current one.

#[allow(unused_imports)]
use super::*;
use crate::config::AutoCompaction;
use crate::kv::CompactionRequest;

/// etcd's cap on the periodic compactor's interval.
const HOUR_MS: u64 = 3_600_000;

/// What the compactor remembers between ticks.
#[derive(Debug, Default)]
pub(super) struct Compactor {
    /// Revisions sampled, oldest first: the first is from about one retention ago.
    samples: VecDeque<i64>,
    next_sample_ms: u64,
    /// When the last compaction was proposed (or the member booted).
    last_ms: u64,
    /// A compaction was proposed since boot: later ones come every interval, not retention.
    proposed_once: bool,
    /// The revision last proposed, not proposed twice.
    last_revision: i64,
}

impl Core {
    /// Called every tick.
    pub(super) fn auto_compact(&mut self) {
        let Some(mode) = self.config.auto_compaction else { return };
        let now = self.now_ms;
        let current = self.sm.mvcc().current_revision();
        let c = &mut self.compactor;
        let due = match mode {
            AutoCompaction::Periodic { retention_ms } => {
                let capped = retention_ms.min(HOUR_MS).max(1);
                let sample_every = (capped / 10).max(1);
                let kept = (retention_ms / sample_every) as usize + 1;
                if now >= c.next_sample_ms {
                    c.samples.push_back(current);
                    while c.samples.len() > kept {
                        c.samples.pop_front();
                    }
                    c.next_sample_ms = now + sample_every;
                }
                let wait = if c.proposed_once { capped } else { retention_ms };
                (now.saturating_sub(c.last_ms) >= wait).then(|| c.samples.front().copied()).flatten()
            }
            AutoCompaction::Revision { retain, interval_ms } => {
                (now.saturating_sub(c.last_ms) >= interval_ms).then_some(current - retain)
            }
        };
        let Some(revision) = due else { return };
        if !self.is_leader() {
            return;
        }
        let c = &mut self.compactor;
        c.last_ms = now;
        c.proposed_once = true;
        if revision <= self.sm.mvcc().compacted_revision() || revision <= 1 || revision == c.last_revision {
            return;
        }
        c.last_revision = revision;
        let command = Command::Compact(CompactionRequest { revision, physical: false });
        self.hold(Proposal { origin: None, caller: Caller::Member, command }.encode(), None);
    }
}
