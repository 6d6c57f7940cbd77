//! What the linearizability checker costs on histories shaped like a simulation run's.
//!
//! `cargo run --release -p cairn-sim-tests --example lin_cost`
//!
//! Generates histories from a correct (sequential) register with realistic timing: clients
//! that each send one request at a time, skewed key popularity, timeouts whose writes may or may
//! not take effect later, refused requests. Then checks them as recorded, and again after one
//! read is made stale (the expensive case: the search must rule out every order), printing the
//! wall time of each check.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use cairn_sim_tests::linearizability::{check, Budget, Input, Op, Outcome, Output, Time, Verdict};

const MS: Time = 1_000_000;

/// splitmix64: enough randomness for a workload, and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

struct Workload {
    name: &'static str,
    seed: u64,
    clients: u64,
    keys: u64,
    ops: usize,
    /// Key popularity: key `floor(keys * u^skew)` for uniform `u`; 1.0 is uniform.
    skew: f64,
    unknown_percent: u64,
    failed_percent: u64,
}

/// A recorded op plus the instant it took effect in the generating execution (`None`: never).
struct Generated {
    op: Op,
    effect: Option<Time>,
}

/// Runs the workload against a sequential register and records what the clients saw.
fn generate(w: &Workload) -> Vec<Op> {
    let mut rng = Rng(w.seed);
    let mut now: Vec<Time> = vec![0; w.clients as usize];
    // The value most recently sent to each key: what a CAS most often expects.
    let mut last_sent: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut generated = Vec::with_capacity(w.ops);
    for seq in 0..w.ops {
        let client = rng.below(w.clients);
        let key_index = ((w.keys as f64 * rng.unit().powf(w.skew)) as u64).min(w.keys - 1);
        let key = Bytes::from(format!("key{key_index:03}"));
        let value = Bytes::from(format!("c{client}-{seq}"));
        let input = match rng.below(100) {
            0..=49 => Input::Get { key },
            50..=74 => {
                last_sent.insert(key_index, value.clone());
                Input::Put { key, value }
            }
            75..=79 => Input::Delete { key },
            _ => {
                let expected = if rng.percent(20) { None } else { last_sent.get(&key_index).cloned() };
                last_sent.insert(key_index, value.clone());
                Input::Cas { key, expected, value }
            }
        };
        let invoke = now[client as usize] + rng.below(5 * MS);
        let (complete, effect, outcome) = if rng.percent(w.failed_percent) {
            (invoke + MS, None, Outcome::Failed)
        } else if rng.percent(w.unknown_percent) {
            // The client gives up after 100ms; the request may still be applied much later.
            let effect = rng.percent(50).then(|| invoke + rng.below(300 * MS));
            (invoke + 100 * MS, effect, Outcome::Unknown)
        } else {
            // The output is filled in below, once the effect order is known.
            let latency = MS + rng.below(20 * MS);
            (invoke + latency, Some(invoke + rng.below(latency + 1)), Outcome::Ok(Output::Put))
        };
        now[client as usize] = complete;
        generated.push(Generated { op: Op { client, invoke, complete, input, outcome }, effect });
    }

    // Apply the ops that took effect in effect order, filling in the outputs.
    let mut order: Vec<usize> = (0..generated.len()).filter(|&i| generated[i].effect.is_some()).collect();
    order.sort_by_key(|&i| (generated[i].effect, i));
    let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    for i in order {
        let g = &mut generated[i];
        let output = cairn_sim_tests::linearizability::sequential_apply(&mut model, &g.op.input);
        if let Outcome::Ok(_) = g.op.outcome {
            g.op.outcome = Outcome::Ok(output);
        }
    }
    generated.into_iter().map(|g| g.op).collect()
}

/// Makes one late read on the busiest key return the value of a put completed long before it
/// was invoked (and overwritten since): a stale read. Returns the op's index.
fn make_stale(history: &mut [Op]) -> Option<usize> {
    let mut counts: BTreeMap<&Bytes, usize> = BTreeMap::new();
    for op in history.iter() {
        *counts.entry(op.input.key()).or_default() += 1;
    }
    let busiest = counts.into_iter().max_by_key(|(_, n)| *n)?.0.clone();
    let on_key: Vec<usize> = (0..history.len()).filter(|&i| *history[i].input.key() == busiest).collect();
    let read = *on_key[on_key.len() * 9 / 10..]
        .iter()
        .find(|&&i| matches!(history[i].outcome, Outcome::Ok(Output::Get(Some(_)))))?;
    let stale = on_key.iter().rev().find_map(|&i| match (&history[i].input, &history[i].outcome) {
        (Input::Put { value, .. }, Outcome::Ok(_))
            if history[i].complete + 200 * MS < history[read].invoke =>
        {
            Some(value.clone())
        }
        _ => None,
    })?;
    history[read].outcome = Outcome::Ok(Output::Get(Some(stale)));
    Some(read)
}

fn describe(history: &[Op]) -> String {
    let mut per_key: BTreeMap<&Bytes, usize> = BTreeMap::new();
    for op in history {
        *per_key.entry(op.input.key()).or_default() += 1;
    }
    let mut sizes: Vec<usize> = per_key.values().copied().collect();
    sizes.sort_unstable();
    let unknown = history.iter().filter(|op| op.outcome == Outcome::Unknown).count();
    let failed = history.iter().filter(|op| op.outcome == Outcome::Failed).count();
    format!(
        "{} ops ({unknown} unknown, {failed} failed) on {} keys: ops per key min {} / median {} / max {}",
        history.len(),
        sizes.len(),
        sizes.first().unwrap_or(&0),
        sizes.get(sizes.len() / 2).unwrap_or(&0),
        sizes.last().unwrap_or(&0)
    )
}

fn timed_check(label: &str, history: &[Op]) -> Verdict {
    let start = Instant::now();
    let verdict = check(history, Budget::default());
    let elapsed = start.elapsed();
    let summary = match &verdict {
        Verdict::Linearizable => "linearizable".to_string(),
        Verdict::Violation(v) => format!("violation on {:?} (prefix {} ops)", v.key, v.prefix.len()),
        Verdict::Unknown { key, .. } => format!("undecided on {key:?}"),
        Verdict::Malformed { index, .. } => format!("malformed at #{index}"),
    };
    println!("  {label:<10} {:>9.1} ms  {summary}", elapsed.as_secs_f64() * 1e3);
    verdict
}

fn main() {
    let workloads = [
        Workload {
            name: "typical run: 10 clients, 40 skewed keys",
            seed: 1,
            clients: 10,
            keys: 40,
            ops: 20_000,
            skew: 1.5,
            unknown_percent: 2,
            failed_percent: 2,
        },
        Workload {
            name: "one hot key: 10 clients, 2000 ops",
            seed: 2,
            clients: 10,
            keys: 1,
            ops: 2_000,
            skew: 1.0,
            unknown_percent: 2,
            failed_percent: 2,
        },
        Workload {
            name: "partition-heavy: 10 clients, 1 key, 10% timeouts",
            seed: 3,
            clients: 10,
            keys: 1,
            ops: 2_000,
            skew: 1.0,
            unknown_percent: 10,
            failed_percent: 5,
        },
        Workload {
            name: "big run: 10 clients, 100 keys",
            seed: 4,
            clients: 10,
            keys: 100,
            ops: 100_000,
            skew: 1.5,
            unknown_percent: 3,
            failed_percent: 2,
        },
    ];
    let mut report = None;
    for w in &workloads {
        let mut history = generate(w);
        println!("{}\n  {}", w.name, describe(&history));
        timed_check("as run", &history);
        if make_stale(&mut history).is_some() {
            let verdict = timed_check("stale read", &history);
            report.get_or_insert(verdict);
        }
    }
    if let Some(report) = report {
        println!("\nThe first stale read's report, as a researcher replaying the seed sees it:\n{report}");
    }
}
