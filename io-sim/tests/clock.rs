//! `ClockModel`: each component of a member's clock, and the inverse the driver sleeps on.

use cairn_io_sim::clock::{ClockModel, Skew, DRIFT_PPM_MAX, WAIT_GLOBAL_MS_MAX, WOBBLE_AMPLITUDE_MS_MAX};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn ideal_clock_is_identity() {
    let clock = ClockModel::ideal();
    for g in [0, 1, 999, 1_000_000, u64::MAX / 2, u64::MAX] {
        assert_eq!(clock.now_ms(g), g);
    }
    assert_eq!(ClockModel::random(&mut ChaCha8Rng::seed_from_u64(1), Skew::None), ClockModel::ideal());
}

#[test]
fn offset_shifts_and_clamps_at_zero() {
    assert_eq!(ClockModel::ideal().with_offset_ms(250).now_ms(1_000), 1_250);
    let behind = ClockModel::ideal().with_offset_ms(-500);
    assert_eq!(behind.now_ms(0), 0);
    assert_eq!(behind.now_ms(499), 0);
    assert_eq!(behind.now_ms(1_500), 1_000);
}

#[test]
fn drift_is_parts_per_million_rounded_down() {
    let fast = ClockModel::ideal().with_drift_ppm(5_000);
    let slow = ClockModel::ideal().with_drift_ppm(-5_000);
    assert_eq!(fast.now_ms(1_000_000), 1_005_000);
    assert_eq!(slow.now_ms(1_000_000), 995_000);
    assert_eq!(fast.now_ms(10_000), 10_050);
    assert_eq!(slow.now_ms(10_000), 9_950);
    // 199 ms at +0.5% is 199.995 ms; at -0.5%, 198.005 ms.
    assert_eq!(fast.now_ms(199), 199);
    assert_eq!(slow.now_ms(199), 198);
}

#[test]
fn steps_apply_from_their_time_on() {
    let mut clock = ClockModel::ideal();
    clock.add_step(10_000, 3_000);
    clock.add_step(20_000, -5_000);
    clock.add_step(20_000, 1_000);
    assert_eq!(clock.now_ms(9_999), 9_999);
    assert_eq!(clock.now_ms(10_000), 13_000);
    assert_eq!(clock.now_ms(19_999), 22_999);
    assert_eq!(clock.now_ms(20_000), 19_000, "both steps at 20 s apply");
    let mut back = ClockModel::ideal();
    back.add_step(1_000, -60_000);
    assert_eq!(back.now_ms(999), 999);
    assert_eq!(back.now_ms(1_000), 0, "a clock stepped below 0 reads 0");
    assert_eq!(back.now_ms(61_500), 1_500);
}

#[test]
fn wobble_is_a_triangle_wave() {
    let clock = ClockModel::ideal().with_offset_ms(100).with_wobble(100, 1_000, 0);
    // -A at phase 0, +A at half the period, back to -A.
    assert_eq!(clock.now_ms(0), 0);
    assert_eq!(clock.now_ms(250), 350);
    assert_eq!(clock.now_ms(500), 700);
    assert_eq!(clock.now_ms(750), 850);
    assert_eq!(clock.now_ms(1_000), 1_000);
}

#[test]
fn global_ms_for_caps_the_wait_when_a_clock_stepped_back() {
    let mut clock = ClockModel::ideal();
    clock.add_step(5_000, -10_000);
    assert_eq!(clock.global_ms_for(5_500, 5_000), 5_000 + WAIT_GLOBAL_MS_MAX);
    assert_eq!(clock.global_ms_for(u64::MAX, 0), WAIT_GLOBAL_MS_MAX, "a deadline never reached");
    assert_eq!(ClockModel::ideal().global_ms_for(0, 7), 8, "a deadline already passed: the next ms");
}

#[test]
fn extremes_do_not_overflow() {
    let mut clock = ClockModel::ideal().with_offset_ms(i64::MAX).with_drift_ppm(DRIFT_PPM_MAX).with_wobble(
        WOBBLE_AMPLITUDE_MS_MAX,
        u64::MAX,
        u64::MAX - 1,
    );
    clock.add_step(u64::MAX, i64::MIN);
    clock.add_step(u64::MAX, i64::MIN);
    for g in [0, 1, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
        let _ = clock.now_ms(g);
        let _ = clock.global_ms_for(u64::MAX, g);
        let _ = clock.global_ms_for(0, g);
    }
    let slow = ClockModel::ideal().with_drift_ppm(-DRIFT_PPM_MAX).with_wobble(1, 1, 0);
    assert_eq!(slow.global_ms_for(u64::MAX, u64::MAX - 5), u64::MAX);
}

#[test]
fn global_ms_for_stops_at_a_forward_step() {
    let mut clock = ClockModel::ideal().with_drift_ppm(-100_000);
    clock.add_step(400, 10_000);
    // The slow clock would need about 1 s to reach 900, but the step at 400 takes it there.
    assert_eq!(clock.global_ms_for(900, 0), 400);
}

#[test]
fn same_seed_same_model() {
    for skew in [Skew::None, Skew::Mild, Skew::Wild] {
        let a = ClockModel::random(&mut ChaCha8Rng::seed_from_u64(42), skew);
        let b = ClockModel::random(&mut ChaCha8Rng::seed_from_u64(42), skew);
        assert_eq!(a, b, "{skew:?}");
        let readings = |c: &ClockModel| (0..200u64).map(|i| c.now_ms(i * 997)).collect::<Vec<_>>();
        assert_eq!(readings(&a), readings(&b));
    }
    let models: Vec<ClockModel> =
        (0..8).map(|seed| ClockModel::random(&mut ChaCha8Rng::seed_from_u64(seed), Skew::Wild)).collect();
    assert!(models.windows(2).any(|w| w[0] != w[1]), "different seeds give different clocks");
}

#[test]
fn wild_clocks_step_and_mild_ones_do_not() {
    for seed in 0..50 {
        let mild = ClockModel::random(&mut ChaCha8Rng::seed_from_u64(seed), Skew::Mild);
        let wild = ClockModel::random(&mut ChaCha8Rng::seed_from_u64(seed), Skew::Wild);
        // Mild: within offset + drift + wobble of the global time over the first minute.
        for g in (0..60_000).step_by(250) {
            let skew = mild.now_ms(g) as i64 - g as i64;
            assert!((-70..=270).contains(&skew), "seed {seed}: mild clock {skew} ms off at {g}");
        }
        let jumps = (1..120_000u64).filter(|&g| wild.now_ms(g).abs_diff(wild.now_ms(g - 1)) >= 50).count();
        assert!((1..=3).contains(&jumps), "seed {seed}: {jumps} steps on a wild clock");
    }
}

/// Any clock within the model's bounds, including backward steps.
fn any_clock() -> impl Strategy<Value = ClockModel> {
    (
        -10_000i64..10_000,
        -100_000i64..=100_000,
        (0u64..=500, 1u64..5_000, any::<u64>()),
        prop::collection::vec((0u64..20_000, -5_000i64..5_000), 0..4),
    )
        .prop_map(|(offset, ppm, (a, p, phase), steps)| {
            let mut c =
                ClockModel::ideal().with_offset_ms(offset).with_drift_ppm(ppm).with_wobble(a, p, phase);
            for (at, d) in steps {
                c.add_step(at, d);
            }
            c
        })
}

proptest! {
    #[test]
    fn wobble_is_bounded_and_periodic(a in 0u64..=10_000, p in 1u64..100_000, phase: u64, g in 0u64..1 << 40) {
        let clock = ClockModel::ideal().with_wobble(a, p, phase);
        let w = clock.wobble_ms(g);
        prop_assert!(w.unsigned_abs() <= a);
        prop_assert_eq!(clock.wobble_ms(g + p), w);
        // With an offset of A the clock never clamps: it is exactly g + wobble.
        let lifted = clock.clone().with_offset_ms(a as i64);
        prop_assert_eq!(lifted.now_ms(g) as i128, g as i128 + a as i128 + w as i128);
    }

    #[test]
    fn drift_rate_holds_over_any_span(ppm in -50_000i64..=50_000, g in 0u64..1 << 40, span in 0u64..10_000_000) {
        let clock = ClockModel::ideal().with_drift_ppm(ppm);
        let elapsed = (clock.now_ms(g + span) - clock.now_ms(g)) as i128;
        let ideal = span as i128 * (1_000_000 + ppm as i128);
        // Exact up to the rounding of each reading.
        prop_assert!((elapsed * 1_000_000 - ideal).abs() < 1_000_000);
    }

    /// The driver's sleep target is the first global ms at which the member's deadline is
    /// due, checked by brute force over the whole window: never late, never early.
    #[test]
    fn global_ms_for_is_exact(clock in any_clock(), now in 0u64..25_000, ahead in 0u64..3_000) {
        let deadline = clock.now_ms(now) + ahead;
        let got = clock.global_ms_for(deadline, now);
        let end = now + WAIT_GLOBAL_MS_MAX;
        let first = (now + 1..=end).find(|&g| clock.now_ms(g) >= deadline).unwrap_or(end);
        prop_assert_eq!(got, first);
    }

    #[test]
    fn global_ms_for_never_overshoots_without_backward_steps(
        ppm in -50_000i64..=50_000,
        (a, p, phase) in (0u64..=100, 400u64..5_000, any::<u64>()),
        steps in prop::collection::vec((0u64..20_000, 0i64..5_000), 0..4),
        now in 0u64..25_000,
        ahead in 1u64..600,
    ) {
        let mut clock = ClockModel::ideal().with_offset_ms(a as i64).with_drift_ppm(ppm).with_wobble(a, p, phase);
        for (at, d) in steps {
            clock.add_step(at, d);
        }
        let deadline = clock.now_ms(now) + ahead;
        let got = clock.global_ms_for(deadline, now);
        prop_assert!(got > now && got <= now + WAIT_GLOBAL_MS_MAX);
        prop_assert!(clock.now_ms(got) >= deadline, "a clock that only goes forward reaches it in time");
        prop_assert!(clock.now_ms(got - 1) < deadline || got == now + 1, "no later than the first ms it is due");
    }
}
