//! Peer traffic statistics, as etcd's v2 `/v2/stats/self` and `/v2/stats/leader` report them:
//! append requests (appends and heartbeats, the messages that carry the leader's log and commit
//! index) sent and received, with their rates over the last second, and, on the leader, each
//! follower's response latency (heartbeat to heartbeat response) and response counts.
//!
//! The member loop records them as messages go out and frames come in; front ends read a copy.
//! Nothing here feeds back into the member.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_core::eraftpb::{Message, MessageType};
use protobuf::Message as _;

/// Rates are over this window.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The most messages a window keeps (beyond it, the oldest go first: the rate then undercounts,
/// never grows the member's memory).
const RATE_WINDOW_MESSAGES_MAX: usize = 100_000;

/// Messages and bytes counted, with those of the last `RATE_WINDOW`.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub count: u64,
    window: VecDeque<(Instant, u64)>,
}

impl Traffic {
    fn record(&mut self, now: Instant, bytes: u64) {
        self.count += 1;
        if self.window.len() == RATE_WINDOW_MESSAGES_MAX {
            self.window.pop_front();
        }
        self.window.push_back((now, bytes));
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while self.window.front().is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW) {
            self.window.pop_front();
        }
    }

    /// Messages and bytes per second over the last window, as of `now`.
    pub fn rates(&self, now: Instant) -> (f64, f64) {
        let recent = self.window.iter().filter(|(at, _)| now.duration_since(*at) <= RATE_WINDOW);
        let (n, bytes) = recent.fold((0u64, 0u64), |(n, b), (_, bytes)| (n + 1, b + bytes));
        let secs = RATE_WINDOW.as_secs_f64();
        (n as f64 / secs, bytes as f64 / secs)
    }
}

/// A follower as the leader sees it.
#[derive(Clone, Debug, Default)]
pub struct FollowerStats {
    /// Responses that accepted what the leader sent, and appends the follower rejected.
    pub success: u64,
    pub fail: u64,
    /// Latency samples in seconds: the latest, and running mean, variance (Welford), extremes.
    pub latency_current: f64,
    pub latency_mean: f64,
    latency_m2: f64,
    latency_samples: u64,
    pub latency_min: f64,
    pub latency_max: f64,
    /// When the last heartbeat to it went out, until its response comes back.
    heartbeat_sent: Option<Instant>,
}

impl FollowerStats {
    fn sample(&mut self, secs: f64) {
        self.latency_samples += 1;
        self.latency_current = secs;
        let delta = secs - self.latency_mean;
        self.latency_mean += delta / self.latency_samples as f64;
        self.latency_m2 += delta * (secs - self.latency_mean);
        if self.latency_samples == 1 || secs < self.latency_min {
            self.latency_min = secs;
        }
        if secs > self.latency_max {
            self.latency_max = secs;
        }
    }

    pub fn latency_stddev(&self) -> f64 {
        if self.latency_samples == 0 {
            0.0
        } else {
            (self.latency_m2 / self.latency_samples as f64).sqrt()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    /// Append requests received (as a follower) and sent (as a leader).
    pub received: Traffic,
    pub sent: Traffic,
    pub followers: BTreeMap<u64, FollowerStats>,
}

fn is_append_request(m: &Message) -> bool {
    matches!(m.get_msg_type(), MessageType::MsgAppend | MessageType::MsgHeartbeat)
}

impl PeerStats {
    pub fn shared() -> Arc<Mutex<PeerStats>> {
        Arc::new(Mutex::new(PeerStats::default()))
    }

    /// Counts messages the member sends.
    pub fn on_sent<'a>(&mut self, now: Instant, msgs: impl Iterator<Item = &'a Message>) {
        for m in msgs.filter(|m| is_append_request(m)) {
            self.sent.record(now, u64::from(m.compute_size()));
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                let f = self.followers.entry(m.to).or_default();
                f.heartbeat_sent.get_or_insert(now);
            }
        }
    }

    /// Counts a message the member received. A heartbeat's response comes back with the
    /// follower and the round trip.
    pub fn on_received(&mut self, now: Instant, m: &Message) -> Option<(u64, Duration)> {
        match m.get_msg_type() {
            MessageType::MsgAppend | MessageType::MsgHeartbeat => {
                self.received.record(now, u64::from(m.compute_size()))
            }
            MessageType::MsgHeartbeatResponse => {
                let f = self.followers.entry(m.from).or_default();
                f.success += 1;
                if let Some(sent) = f.heartbeat_sent.take() {
                    let took = now.duration_since(sent);
                    f.sample(took.as_secs_f64());
                    return Some((m.from, took));
                }
            }
            MessageType::MsgAppendResponse => {
                let f = self.followers.entry(m.from).or_default();
                if m.reject {
                    f.fail += 1;
                } else {
                    f.success += 1;
                }
            }
            _ => {}
        }
        None
    }

    /// Drops what only a leader keeps, when this member stops leading.
    pub fn forget_followers(&mut self) {
        self.followers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: MessageType, from: u64, to: u64) -> Message {
        let mut m = Message::new();
        m.set_msg_type(t);
        m.from = from;
        m.to = to;
        m
    }

    #[test]
    fn appends_and_heartbeats_are_counted_with_rates_and_latency() {
        let mut s = PeerStats::default();
        let t0 = Instant::now();
        s.on_sent(t0, [msg(MessageType::MsgHeartbeat, 1, 2), msg(MessageType::MsgRequestVote, 1, 2)].iter());
        s.on_received(t0 + Duration::from_millis(4), &msg(MessageType::MsgHeartbeatResponse, 2, 1));
        s.on_received(t0 + Duration::from_millis(5), &msg(MessageType::MsgAppendResponse, 2, 1));
        let mut reject = msg(MessageType::MsgAppendResponse, 2, 1);
        reject.reject = true;
        s.on_received(t0 + Duration::from_millis(6), &reject);
        assert_eq!(s.sent.count, 1, "only append requests count");
        let f = &s.followers[&2];
        assert_eq!((f.success, f.fail), (2, 1));
        assert!((f.latency_current - 0.004).abs() < 1e-9);
        assert_eq!(f.latency_min, f.latency_max);
        let (pkg, bytes) = s.sent.rates(t0 + Duration::from_millis(10));
        assert_eq!(pkg, 1.0);
        assert!(bytes > 0.0);
        assert_eq!(s.sent.rates(t0 + Duration::from_secs(2)).0, 0.0, "out of the window");
        s.on_received(t0, &msg(MessageType::MsgAppend, 2, 1));
        assert_eq!(s.received.count, 1);
    }
}
