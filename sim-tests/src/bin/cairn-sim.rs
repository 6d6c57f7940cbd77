//! `cairn-sim`: the seed runner.
//!
//! ```text
//! cairn-sim replay --seed 42 [--trace out.jsonl] [--planted stale-reads|skip-fsync|ack-before-sync|learner-votes|auth-at-proposal]
//! cairn-sim sweep --seeds 0..1000 [--budget-secs 600] [--planted ...]
//! ```
//!
//! Built only with `RUSTFLAGS="--cfg madsim"`, in its own target dir (see README.md).

#[cfg(not(madsim))]
fn main() {
    eprintln!("cairn-sim runs the simulator, which exists only in madsim builds:");
    eprintln!("  RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run --release -p cairn-sim-tests --bin cairn-sim -- sweep --seeds 0..200");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(madsim)]
mod cli {
    use std::io::Write;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use cairn_sim_tests::params::PlantedBug;
    use cairn_sim_tests::run::{run_seed, RunOptions, RunReport};
    use clap::{Parser, Subcommand, ValueEnum};

    #[derive(Parser)]
    #[command(
        name = "cairn-sim",
        about = "Run Cairn's deterministic simulation: replay one seed or sweep many"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum Planted {
        None,
        StaleReads,
        SkipFsync,
        AckBeforeSync,
        LearnerVotes,
        AuthAtProposal,
    }

    impl From<Planted> for PlantedBug {
        fn from(p: Planted) -> PlantedBug {
            match p {
                Planted::None => PlantedBug::None,
                Planted::StaleReads => PlantedBug::StaleReads,
                Planted::SkipFsync => PlantedBug::SkipFsync,
                Planted::AckBeforeSync => PlantedBug::AckBeforeSync,
                Planted::LearnerVotes => PlantedBug::LearnerVotes,
                Planted::AuthAtProposal => PlantedBug::AuthAtProposal,
            }
        }
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run one seed and write its trace (JSON lines).
        Replay {
            #[arg(long)]
            seed: u64,
            /// Where to write the trace; default target/sim-traces/seed-<seed>.jsonl.
            #[arg(long)]
            trace: Option<PathBuf>,
            #[arg(long, value_enum, default_value = "none")]
            planted: Planted,
        },
        /// Run a range of seeds, `A..B` (B excluded), and report every failing one.
        Sweep {
            #[arg(long)]
            seeds: String,
            /// Stop starting new seeds after this many wall-clock seconds.
            #[arg(long)]
            budget_secs: Option<u64>,
            #[arg(long, value_enum, default_value = "none")]
            planted: Planted,
        },
    }

    fn planted_flag(p: Planted) -> String {
        match p {
            Planted::None => String::new(),
            Planted::StaleReads => " --planted stale-reads".into(),
            Planted::SkipFsync => " --planted skip-fsync".into(),
            Planted::AckBeforeSync => " --planted ack-before-sync".into(),
            Planted::LearnerVotes => " --planted learner-votes".into(),
            Planted::AuthAtProposal => " --planted auth-at-proposal".into(),
        }
    }

    fn replay_command(seed: u64, p: Planted) -> String {
        format!(
            "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run --release -p cairn-sim-tests --bin cairn-sim -- replay --seed {seed}{}",
            planted_flag(p)
        )
    }

    fn summary(r: &RunReport) -> String {
        let p = &r.params;
        format!(
            "seed {}: {} members, {} kv + {} lease clients, {} watchers, {:.1} sim s, {} ops ({} ok, {} failed, {} unknown), {} serializable reads, {} lease ops, {} watch events, {} backups ({} checked), {} writes refused for space, {} by prefix quotas, {} auth changes, {} user ops checked ({} refused), trace {} lines hash {:016x}",
            r.seed,
            p.members,
            p.clients,
            p.lease_clients,
            p.watchers,
            r.sim_ms as f64 / 1000.0,
            r.checked_ops,
            r.counts.ok,
            r.counts.failed,
            r.counts.unknown,
            r.counts.serializable_reads,
            r.counts.lease_ops,
            r.counts.watch_events,
            r.counts.backups,
            r.counts.backups_checked,
            r.counts.nospace,
            r.counts.prefix_quota_refusals,
            r.counts.auth_changes,
            r.counts.auth_ops,
            r.counts.auth_denied,
            r.trace_len,
            r.trace_hash
        )
    }

    pub fn main() -> i32 {
        let cli = Cli::parse();
        match cli.command {
            Command::Replay { seed, trace, planted } => {
                let opts = RunOptions { planted: planted.into(), keep_trace: true, safety_ms: None };
                let started = Instant::now();
                let r = run_seed(seed, &opts);
                let wall = started.elapsed();
                let path =
                    trace.unwrap_or_else(|| PathBuf::from(format!("target/sim-traces/seed-{seed}.jsonl")));
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match std::fs::File::create(&path) {
                    Ok(mut f) => {
                        for line in &r.trace_lines {
                            let _ = writeln!(f, "{line}");
                        }
                    }
                    Err(e) => eprintln!("cannot write the trace to {}: {e}", path.display()),
                }
                println!("{}", summary(&r));
                println!("params: {:?}", r.params);
                println!(
                    "wall {:.2} s ({:.1} simulated s per wall s), checks {:.3} s; trace: {}",
                    wall.as_secs_f64(),
                    r.sim_ms as f64 / 1000.0 / wall.as_secs_f64(),
                    r.check_wall.as_secs_f64(),
                    path.display()
                );
                match &r.failure {
                    None => {
                        println!("PASS");
                        0
                    }
                    Some(f) => {
                        println!("FAIL {f}");
                        1
                    }
                }
            }
            Command::Sweep { seeds, budget_secs, planted } => {
                let Some((a, b)) = seeds
                    .split_once("..")
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                else {
                    eprintln!("--seeds takes A..B, e.g. 0..1000");
                    return 2;
                };
                let budget = budget_secs.map(Duration::from_secs);
                let opts = RunOptions { planted: planted.into(), keep_trace: false, safety_ms: None };
                let bar = indicatif::ProgressBar::new(b.saturating_sub(a));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {elapsed} [{msg}]")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let started = Instant::now();
                let (mut ran, mut sim_ms, mut check_wall, mut ops) = (0u64, 0u64, Duration::ZERO, 0usize);
                let (mut backups, mut backups_checked, mut nospace, mut by_prefix) = (0u64, 0u64, 0u64, 0u64);
                let (mut auth_changes, mut auth_ops, mut auth_denied) = (0u64, 0u64, 0u64);
                let mut failures = Vec::new();
                for seed in a..b {
                    if budget.is_some_and(|bud| started.elapsed() >= bud) {
                        bar.println(format!("budget reached after {ran} seeds"));
                        break;
                    }
                    let r = run_seed(seed, &opts);
                    ran += 1;
                    sim_ms += r.sim_ms;
                    check_wall += r.check_wall;
                    ops += r.checked_ops;
                    backups += r.counts.backups;
                    backups_checked += r.counts.backups_checked;
                    nospace += r.counts.nospace;
                    by_prefix += r.counts.prefix_quota_refusals;
                    auth_changes += r.counts.auth_changes;
                    auth_ops += r.counts.auth_ops;
                    auth_denied += r.counts.auth_denied;
                    if let Some(f) = &r.failure {
                        bar.println(format!(
                            "FAIL seed {seed}: {f}\n  replay: {}",
                            replay_command(seed, planted)
                        ));
                        failures.push(seed);
                    }
                    bar.set_message(format!("{} failed", failures.len()));
                    bar.inc(1);
                }
                bar.finish();
                let wall = started.elapsed().as_secs_f64();
                println!(
                    "{ran} seeds, {} failed; {:.0} simulated s in {:.1} wall s ({:.1} simulated s per wall s); {ops} ops checked in {:.2} s; {backups_checked} of {backups} backups checked; {nospace} writes refused for space, {by_prefix} by prefix quotas; {auth_changes} auth changes, {auth_ops} user ops checked against the permissions in force, {auth_denied} refused",
                    failures.len(),
                    sim_ms as f64 / 1000.0,
                    wall,
                    sim_ms as f64 / 1000.0 / wall,
                    check_wall.as_secs_f64()
                );
                if failures.is_empty() {
                    0
                } else {
                    println!("failing seeds: {failures:?}");
                    1
                }
            }
        }
    }
}
