//! The member's Prometheus metrics, under etcd's names and types so that dashboards and alerts
//! written for etcd read a Cairn member unchanged.
//!
//! One registry per member (a process may run several, as the tests do). The member loop sets
//! what it knows after each turn (`record_core`: leader, Raft indexes, proposals, keys), the
//! storage thread times its writes and fsyncs, the transport counts messages it could not send,
//! the leader times heartbeats to each follower; front ends add their own (gRPC calls) to the
//! same registry and render it. Recording is a few atomic operations: nothing here allocates on
//! the hot path, and nothing feeds back into the member.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::TransportStats;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// etcd's buckets for disk latencies: 1 ms doubling to 8.192 s.
fn disk_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default()
}

/// etcd's buckets for peer round trips: 0.1 ms doubling to 3.2768 s.
fn rtt_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap_or_default()
}

pub struct Metrics {
    registry: Registry,
    has_leader: IntGauge,
    leader_changes_seen: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    proposals_pending: IntGauge,
    proposals_failed: IntCounter,
    keys: IntGauge,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    peer_rtt: HistogramVec,
    peer_sent_failures: IntCounterVec,
    /// The core's totals as last added to the counters (they only ever grow within a boot).
    reported: Mutex<cairn_core::Counters>,
    /// The peer transport's counts of unsent frames, and those already added to
    /// `peer_sent_failures`; brought up to date when the metrics are rendered.
    transport: Mutex<Option<(Arc<TransportStats>, BTreeMap<u64, u64>)>>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str| -> Result<Histogram, prometheus::Error> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(disk_buckets()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let peer_rtt = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(rtt_buckets()),
            &["To"],
        )?;
        registry.register(Box::new(peer_rtt.clone()))?;
        let peer_sent_failures = IntCounterVec::new(
            Opts::new(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
            ),
            &["To"],
        )?;
        registry.register(Box::new(peer_sent_failures.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )?,
            leader_changes_seen: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )?,
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )?,
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            )?,
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            keys: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            wal_fsync: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )?,
            backend_commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )?,
            peer_rtt,
            peer_sent_failures,
            reported: Mutex::new(cairn_core::Counters::default()),
            transport: Mutex::new(None),
            registry,
        })
    }

    /// The registry, for front ends to add their own metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts `stats`' unsent frames as peer send failures from now on.
    pub fn follow_transport(&self, stats: Arc<TransportStats>) {
        if let Ok(mut t) = self.transport.lock() {
            *t = Some((stats, BTreeMap::new()));
        }
    }

    /// Every metric in the registry, in Prometheus's text format.
    pub fn render(&self) -> String {
        if let Ok(mut t) = self.transport.lock() {
            if let Some((stats, added)) = t.as_mut() {
                let now = stats.sent_failures.lock().map(|f| f.clone()).unwrap_or_default();
                for (peer, n) in now {
                    let before = added.insert(peer, n).unwrap_or(0);
                    self.peer_send_failed(peer, n.saturating_sub(before));
                }
            }
        }
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "rendering the metrics failed");
            String::new()
        })
    }

    /// What the core says after a turn of the member loop.
    pub fn record_core(&self, core: &cairn_core::Core) {
        self.has_leader.set(i64::from(core.leader() != 0));
        self.proposals_committed.set(core.commit_index() as i64);
        self.proposals_applied.set(core.applied_index() as i64);
        self.proposals_pending.set(core.proposals_pending() as i64);
        self.keys.set(core.state().mvcc().len() as i64);
        let now = core.counters();
        if let Ok(mut last) = self.reported.lock() {
            self.leader_changes_seen.inc_by(now.leader_changes_seen.saturating_sub(last.leader_changes_seen));
            self.proposals_failed.inc_by(now.proposals_failed.saturating_sub(last.proposals_failed));
            *last = now;
        }
    }

    /// A fsync of the member's log and hard state took `took`.
    pub fn observe_fsync(&self, took: Duration) {
        self.wal_fsync.observe(took.as_secs_f64());
    }

    /// A batch of writes to the member's store (before its fsync) took `took`.
    pub fn observe_commit(&self, took: Duration) {
        self.backend_commit.observe(took.as_secs_f64());
    }

    /// A heartbeat to `peer` was answered after `took` (measured on the leader).
    pub fn observe_peer_rtt(&self, peer: u64, took: Duration) {
        self.peer_rtt.with_label_values(&[&format!("{peer:x}")]).observe(took.as_secs_f64());
    }

    /// `n` messages to `peer` could not be sent (its queue was full, or its connection failed).
    fn peer_send_failed(&self, peer: u64, n: u64) {
        self.peer_sent_failures.with_label_values(&[&format!("{peer:x}")]).inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_under_etcds_name() {
        let m = Metrics::new().expect("registers");
        m.observe_fsync(Duration::from_millis(3));
        m.observe_commit(Duration::from_micros(300));
        m.observe_peer_rtt(0xab, Duration::from_millis(1));
        let transport = Arc::new(TransportStats::default());
        m.follow_transport(transport.clone());
        transport.sent_failures.lock().unwrap().insert(0xab, 2);
        assert!(m.render().contains("etcd_network_peer_sent_failures_total{To=\"ab\"} 2"));
        transport.sent_failures.lock().unwrap().insert(0xab, 5);
        let text = m.render();
        for name in [
            "etcd_server_has_leader",
            "etcd_server_leader_changes_seen_total",
            "etcd_server_proposals_committed_total",
            "etcd_server_proposals_applied_total",
            "etcd_server_proposals_pending",
            "etcd_server_proposals_failed_total",
            "etcd_debugging_mvcc_keys_total",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 0",
            "etcd_disk_backend_commit_duration_seconds_count 1",
            "etcd_network_peer_round_trip_time_seconds_count{To=\"ab\"} 1",
            "etcd_network_peer_sent_failures_total{To=\"ab\"} 5",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
