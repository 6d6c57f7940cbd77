//! `ClockModel`: one member's clock, as a function of the simulator's global time.
//!
//! madsim has one global clock; each Cairn member reads its own, skewed one. The model is
//! TigerBeetle's simulated time (`src/testing/time.zig`): a fixed offset, a linear drift, a
//! periodic wobble and sudden steps, all in integer milliseconds so a run replays bit for bit
//! on any machine:
//!
//! ```text
//! now_ms(g) = max(0, g + offset_ms + drift(g) + wobble(g) + sum of step deltas with at_ms <= g)
//! drift(g)  = floor(g * drift_ppm / 1_000_000)
//! wobble(g) = a triangle wave of period P and amplitude A: -A at phase 0, +A at phase P/2,
//!             -A + floor(4 * A * min(t, P - t) / P) with t = (g + phase_ms) mod P
//! ```
//!
//! The model may go backwards (backward steps; a wobble steeper than the drift). The driver
//! feeds it to the core as is, and the core holds its time monotonic itself
//! (`Core::handle_timeout` ignores time going back): a step models a wall clock being reset
//! (NTP, an operator), which is the harsher test of the core's timers.

use rand::Rng;

/// Longest wait `global_ms_for` returns, in global milliseconds: a clock stepped back may not
/// reach a deadline for a long time, and the driver re-checks on waking anyway.
pub const WAIT_GLOBAL_MS_MAX: u64 = 1000;

/// Bound on |drift_ppm|: a clock at most 50% fast or slow. It keeps the clock's rate positive,
/// which `global_ms_for` relies on.
pub const DRIFT_PPM_MAX: i64 = 500_000;

/// Bound on the wobble amplitude (an hour), which keeps every sum far from overflow.
pub const WOBBLE_AMPLITUDE_MS_MAX: u64 = 3_600_000;

const PPM: i128 = 1_000_000;

/// How skewed `ClockModel::random` makes a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skew {
    /// The ideal clock: the member's time is the global time.
    None,
    /// Roughly a machine with NTP: offset 0..=200 ms, drift within ±1000 ppm (0.1%), wobble of
    /// amplitude 0..=10 ms over 2..=10 s, no steps.
    Mild,
    /// A badly kept clock: offset 0..=10 s, drift within ±50_000 ppm (5%), wobble of amplitude
    /// 0..=100 ms over 1..=5 s, and 1..=3 steps of 100 ms..=5 s, forward or backward, at
    /// global times in the run's first minute (later steps: `add_step`).
    Wild,
}

/// One member's clock: maps global simulated milliseconds to the member's milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockModel {
    offset_ms: i64,
    drift_ppm: i64,
    wobble_amplitude_ms: u64,
    /// 0 when there is no wobble.
    wobble_period_ms: u64,
    wobble_phase_ms: u64,
    /// (at_global_ms, delta_ms), by time.
    steps: Vec<(u64, i64)>,
    /// `step_sums[i]`: the sum of the deltas of `steps[..=i]`.
    step_sums: Vec<i128>,
}

impl ClockModel {
    /// The member's time is the global time.
    pub fn ideal() -> ClockModel {
        ClockModel {
            offset_ms: 0,
            drift_ppm: 0,
            wobble_amplitude_ms: 0,
            wobble_period_ms: 0,
            wobble_phase_ms: 0,
            steps: Vec::new(),
            step_sums: Vec::new(),
        }
    }

    /// A clock drawn from `rng` at the given level of skew (see `Skew`). The same rng state
    /// gives the same model; `Skew::None` draws nothing.
    pub fn random(rng: &mut impl Rng, skew: Skew) -> ClockModel {
        match skew {
            Skew::None => ClockModel::ideal(),
            Skew::Mild => ClockModel::ideal()
                .with_offset_ms(rng.gen_range(0..=200))
                .with_drift_ppm(rng.gen_range(-1_000..=1_000))
                .with_wobble(rng.gen_range(0..=10), rng.gen_range(2_000..=10_000), rng.gen()),
            Skew::Wild => {
                let mut clock = ClockModel::ideal()
                    .with_offset_ms(rng.gen_range(0..=10_000))
                    .with_drift_ppm(rng.gen_range(-50_000..=50_000))
                    .with_wobble(rng.gen_range(0..=100), rng.gen_range(1_000..=5_000), rng.gen());
                for _ in 0..rng.gen_range(1..=3) {
                    let at_ms = rng.gen_range(1_000..=60_000);
                    let size_ms = rng.gen_range(100..=5_000);
                    let delta_ms = if rng.gen() { size_ms } else { -size_ms };
                    clock.add_step(at_ms, delta_ms);
                }
                clock
            }
        }
    }

    /// A constant offset. It may be negative, but the clock then reads 0 until it catches up,
    /// so `random` draws only offsets >= 0: no member starts with a stopped clock.
    pub fn with_offset_ms(mut self, offset_ms: i64) -> ClockModel {
        self.offset_ms = offset_ms;
        self
    }

    /// A linear drift of `drift_ppm` milliseconds per million global milliseconds. Panics
    /// beyond ±`DRIFT_PPM_MAX`.
    pub fn with_drift_ppm(mut self, drift_ppm: i64) -> ClockModel {
        assert!(drift_ppm.abs() <= DRIFT_PPM_MAX, "drift of {drift_ppm} ppm is out of bounds");
        self.drift_ppm = drift_ppm;
        self
    }

    /// A triangle wave of amplitude `amplitude_ms` (the clock is up to that far ahead or
    /// behind) and period `period_ms`, started `phase_ms` into its period (taken modulo the
    /// period). Amplitude 0 means no wobble. Panics on a zero period with a non-zero amplitude
    /// or an amplitude over `WOBBLE_AMPLITUDE_MS_MAX`.
    pub fn with_wobble(mut self, amplitude_ms: u64, period_ms: u64, phase_ms: u64) -> ClockModel {
        assert!(
            amplitude_ms <= WOBBLE_AMPLITUDE_MS_MAX,
            "wobble amplitude of {amplitude_ms} ms is out of bounds"
        );
        if amplitude_ms == 0 {
            (self.wobble_amplitude_ms, self.wobble_period_ms, self.wobble_phase_ms) = (0, 0, 0);
        } else {
            assert!(period_ms > 0, "a wobble needs a period");
            self.wobble_amplitude_ms = amplitude_ms;
            self.wobble_period_ms = period_ms;
            self.wobble_phase_ms = phase_ms % period_ms;
        }
        self
    }

    /// The clock jumps by `delta_ms` (forward or backward) at global time `at_global_ms`, and
    /// stays moved: `now_ms(g)` includes it for every `g >= at_global_ms`. For fault injection
    /// while a run is under way; a step in the past changes the past readings too, so inject
    /// at or after the current global time.
    pub fn add_step(&mut self, at_global_ms: u64, delta_ms: i64) {
        let i = self.steps.partition_point(|&(at, _)| at <= at_global_ms);
        self.steps.insert(i, (at_global_ms, delta_ms));
        self.step_sums.clear();
        let mut sum = 0i128;
        for &(_, d) in &self.steps {
            sum += d as i128;
            self.step_sums.push(sum);
        }
    }

    /// The member's clock at global time `global_ms`.
    pub fn now_ms(&self, global_ms: u64) -> u64 {
        let raw = self.raw_ms(global_ms);
        raw.clamp(0, u64::MAX as i128) as u64
    }

    /// The earliest global time in `[global_now_ms + 1, global_now_ms + WAIT_GLOBAL_MS_MAX]` at
    /// which `now_ms` reads at least `node_deadline_ms`; `global_now_ms + WAIT_GLOBAL_MS_MAX`
    /// if there is none (a clock stepped back, or a deadline far away): the driver sleeps until
    /// the time returned and re-checks.
    ///
    /// Exact, whatever the clock: it never overshoots and never undershoots within the
    /// window. It evaluates the clock at most `WAIT_GLOBAL_MS_MAX` times, and usually a few:
    /// from a reading `gap` ms short of the deadline it skips ahead as far as the clock's
    /// fastest possible rate (drift plus the wobble's slope) cannot close the gap, stopping at
    /// every step on the way.
    pub fn global_ms_for(&self, node_deadline_ms: u64, global_now_ms: u64) -> u64 {
        let end = global_now_ms.saturating_add(WAIT_GLOBAL_MS_MAX);
        let mut g = global_now_ms.saturating_add(1);
        loop {
            let now = self.now_ms(g);
            if now >= node_deadline_ms || g >= end {
                return g;
            }
            let mut next = g.saturating_add(1 + self.span_below(node_deadline_ms - now));
            let step = self.steps.partition_point(|&(at, _)| at <= g);
            if let Some(&(at, _)) = self.steps.get(step) {
                next = next.min(at);
            }
            g = next.min(end);
        }
    }

    /// A number of ms `j` such that the clock, `gap` ms short of a deadline at some time `g`,
    /// is still short of it at every time in `g + 1 ..= g + j` when no step falls in there.
    ///
    /// Over `j` ms, the drifting part rises by at most `ceil(j * rate)` (rate =
    /// (1e6 + drift_ppm) / 1e6) and the wobble by at most `ceil(4 * A * j / P)` (its phase
    /// distance from 0 moves by at most `j`); each ceiling is below its argument plus 1, so
    /// `j * (rate + 4A/P) + 2 <= gap` suffices. Clamping at 0 only slows a rise.
    fn span_below(&self, gap: u64) -> u64 {
        if gap < 2 {
            return 0;
        }
        let rate = PPM + self.drift_ppm as i128;
        let (a, p) = match self.wobble_period_ms {
            0 => (0, 1),
            p => (self.wobble_amplitude_ms as i128, p as i128),
        };
        // A smaller gap gives a shorter, still safe span; capped, the product cannot overflow.
        let gap = gap.min(1 << 40) as i128;
        let j = (gap - 2) * PPM * p / (rate * p + 4 * a * PPM);
        j.clamp(0, WAIT_GLOBAL_MS_MAX as i128) as u64
    }

    fn raw_ms(&self, global_ms: u64) -> i128 {
        let g = global_ms as i128;
        let drifted = (g * (PPM + self.drift_ppm as i128)).div_euclid(PPM);
        drifted + self.offset_ms as i128 + self.wobble_ms(global_ms) as i128 + self.steps_ms(global_ms)
    }

    /// The wobble's part of the clock at `global_ms`, within ±amplitude.
    pub fn wobble_ms(&self, global_ms: u64) -> i64 {
        if self.wobble_period_ms == 0 {
            return 0;
        }
        let (a, p) = (self.wobble_amplitude_ms as u128, self.wobble_period_ms as u128);
        let t = (global_ms as u128 + self.wobble_phase_ms as u128) % p;
        let from_low = 4 * a * t.min(p - t) / p;
        from_low as i64 - a as i64
    }

    fn steps_ms(&self, global_ms: u64) -> i128 {
        match self.steps.partition_point(|&(at, _)| at <= global_ms) {
            0 => 0,
            n => self.step_sums[n - 1],
        }
    }
}

/// Wall-clock time a member reads at local time `local_ms`, in Unix nanoseconds: simulated
/// runs start at 2026-01-01T00:00:00Z by every member's clock (skew included), so v2 TTL
/// deadlines are ordinary wall-clock times.
pub fn wall_ns(local_ms: u64) -> i64 {
    const EPOCH_NS: i64 = 1_767_225_600_000_000_000;
    EPOCH_NS.saturating_add((local_ms as i64).saturating_mul(1_000_000))
}
