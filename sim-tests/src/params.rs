//! One seed derives every parameter of a run (TigerBeetle's VOPR): cluster size, fault rates,
//! workload mix, clock skew. Replaying a seed replays the run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cairn_io_sim::clock::Skew;

/// A bug planted on purpose, to show that the checkers catch it. Never derived from the seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    #[default]
    None,
    /// Members answer linearizable reads from local state (`Config::planted_bug_stale_reads`).
    StaleReads,
    /// The simulated disk acknowledges fsync without making anything durable.
    SkipFsync,
    /// The member's pipeline acknowledges a persist, and sends what waits for it, when the
    /// write is handed to the disk rather than when it is durable
    /// (`cairn_core::pipeline::PlantedPipelineBug::AckBeforeSync`).
    AckBeforeSync,
    /// A learner is added to Raft's configuration as a voter while the member list says
    /// learner (`cairn_core::Config::planted_bug_learner_votes`): it votes.
    LearnerVotes,
    /// Writes' permissions are checked when proposed rather than when applied
    /// (`cairn_core::Config::planted_bug_auth_at_proposal`).
    AuthAtProposal,
}

#[derive(Clone, Debug)]
pub struct RunParams {
    pub seed: u64,
    pub members: u64,
    /// Clients doing key-value operations (checked for linearizability).
    pub clients: u64,
    /// Clients holding leases with keep-alives and lease-attached keys.
    pub lease_clients: u64,
    /// Clients watching the workload's keys.
    pub watchers: u64,
    /// Keys the key-value clients share; fewer keys, more contention.
    pub keys: u64,
    /// Share of key-value operations that are writes (put, delete, cas), per mille.
    pub write_permille: u32,
    /// Share of reads that are serializable (local, not checked for linearizability).
    pub serializable_permille: u32,
    /// Safety phase length: workload and faults.
    pub safety_ms: u64,
    /// Longest the heal phase may take to converge before the run is a liveness failure.
    pub heal_ms_max: u64,
    pub packet_loss: f64,
    pub duplicate_rate: f64,
    pub latency_ms_min: u64,
    pub latency_ms_max: u64,
    pub skew: Skew,
    /// Mean time between fault actions in the safety phase.
    pub fault_interval_ms: u64,
    /// Relative weights of fault actions.
    pub crash_weight: u32,
    pub partition_weight: u32,
    pub pause_weight: u32,
    pub clock_step_weight: u32,
    /// Applied entries between member snapshots: small, so snapshots and catch-up happen.
    pub snapshot_entries: u64,
    /// Compact the store now and then (watches from old revisions then hit compaction).
    pub compact: bool,
    pub fsync_us_max: u64,
    /// Share of key-value operations made on the v2 keys store instead, per mille (checked for
    /// linearizability the same way, on keys of their own).
    pub v2_permille: u32,
    /// Relative weight of membership changes among the fault actions (add a learner, promote
    /// it, remove a member, replace a crashed one, move the leader, update peer URLs).
    pub membership_weight: u32,
    /// The leader promotes caught-up learners on its own after this long (none: only the
    /// harness promotes them).
    pub auto_promote_ms: Option<u64>,
    /// Clients take backups now and then (`Request::Backup`); each is checked against the
    /// converged store at its revision.
    pub backups: bool,
    /// Each member's space quota (`Config::quota_bytes`): small enough that the store fills,
    /// NOSPACE alarms go up, and clients compact and disarm to go on writing; None: etcd's 2 GiB.
    pub quota_bytes: Option<u64>,
    /// Members compact on schedule (etcd's auto-compaction, the leader proposing it).
    pub auto_compaction: Option<cairn_core::config::AutoCompaction>,
    /// An operator sets quotas at the start: the key-value clients' keys may number one fewer
    /// than they use, lease clients may hold 3 keys; writes past them are refused.
    pub prefix_quotas: bool,
    /// Auth on: users read and write while an admin grants and revokes their permissions
    /// (`auth_workload`); every other client acts as root.
    pub auth: bool,
    /// Most history a watch page holds (`Config::watch_page_bytes`): small, so watches from old
    /// revisions take their history in many pages while writes go on.
    pub watch_page_bytes: usize,
    pub planted: PlantedBug,
}

impl RunParams {
    pub fn from_seed(seed: u64, planted: PlantedBug) -> RunParams {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_ca12);
        let members = if rng.gen_bool(0.5) { 3 } else { 5 };
        let latency_ms_max = *pick(&mut rng, &[5, 20, 50, 150]);
        RunParams {
            seed,
            members,
            clients: rng.gen_range(2..=6),
            lease_clients: rng.gen_range(0..=2),
            watchers: rng.gen_range(1..=2),
            keys: rng.gen_range(1..=6),
            write_permille: rng.gen_range(300..=800),
            serializable_permille: rng.gen_range(0..=200),
            safety_ms: rng.gen_range(15_000..=45_000),
            heal_ms_max: 40_000,
            packet_loss: *pick(&mut rng, &[0.0, 0.01, 0.05, 0.15]),
            duplicate_rate: *pick(&mut rng, &[0.0, 0.01, 0.05]),
            latency_ms_min: 1,
            latency_ms_max,
            skew: *pick(&mut rng, &[Skew::None, Skew::Mild, Skew::Mild, Skew::Wild]),
            fault_interval_ms: rng.gen_range(500..=4_000),
            crash_weight: rng.gen_range(1..=4),
            partition_weight: rng.gen_range(1..=4),
            pause_weight: rng.gen_range(0..=2),
            clock_step_weight: rng.gen_range(0..=2),
            snapshot_entries: rng.gen_range(30..=300),
            compact: rng.gen_bool(0.3),
            fsync_us_max: *pick(&mut rng, &[100, 2_000, 10_000]),
            // Drawn last, so every earlier parameter of a seed stays what it was.
            v2_permille: *pick(&mut rng, &[0, 200, 500]),
            // After v2_permille, for the same reason. A planted learner bug needs learners.
            membership_weight: match (*pick(&mut rng, &[0, 1, 2, 3]), planted) {
                (0, PlantedBug::LearnerVotes) => 3,
                (w, _) => w,
            },
            auto_promote_ms: *pick(&mut rng, &[None, None, Some(1_000), Some(3_000)]),
            // Drawn after everything above, which each seed keeps.
            backups: rng.gen_bool(0.5),
            quota_bytes: *pick(&mut rng, &[None, None, Some(4_000), Some(20_000)]),
            auto_compaction: *pick(
                &mut rng,
                &[
                    None,
                    None,
                    Some(cairn_core::config::AutoCompaction::Periodic { retention_ms: 3_000 }),
                    Some(cairn_core::config::AutoCompaction::Revision { retain: 30, interval_ms: 2_000 }),
                ],
            ),
            prefix_quotas: rng.gen_bool(0.3),
            // Drawn last: every earlier parameter of a seed stays what it was.
            auth: rng.gen_bool(0.3) || planted == PlantedBug::AuthAtProposal,
            // Drawn after auth, for the same reason.
            watch_page_bytes: *pick(&mut rng, &[200, 1_000, 1 << 20]),
            planted,
        }
    }
}

fn pick<'a, T>(rng: &mut impl Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.gen_range(0..xs.len())]
}
