//! Property tests: the monotonicity, composition and calibration laws the accountant must obey,
//! on hundreds of random cases each.
//!
//! Monotonicity holds exactly in exact arithmetic; the computed values carry upward rounding
//! margins of relative size ~1e-12, so comparisons allow a slack of 1e-9 relative.

use proptest::prelude::*;
use sparsedp_accountant::{
    CalibrationOptions, FractionalSeries, Orders, Phase, RdpAccountant, RdpCurve, calibrate_sigma,
    rdp_subsampled_gaussian,
};

const ABS: FractionalSeries = FractionalSeries::AbsoluteBound;
const SLACK: f64 = 1e-9;

fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    RdpCurve::of_phase(&Orders::opacus(), Phase::new(q, sigma, steps).unwrap(), ABS)
        .unwrap()
        .epsilon(delta)
        .unwrap()
        .epsilon
}

fn le(a: f64, b: f64) -> bool {
    a <= b + SLACK * b.abs() + 1e-15
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn epsilon_rises_with_q(
        q in 1e-4f64..0.5, factor in 1.0f64..3.0, sigma in 0.5f64..8.0,
        steps in 1u64..5000, log_delta in -12f64..-3.0,
    ) {
        let delta = 10f64.powf(log_delta);
        let q2 = (q * factor).min(1.0);
        prop_assert!(le(epsilon(q, sigma, steps, delta), epsilon(q2, sigma, steps, delta)));
    }

    #[test]
    fn epsilon_rises_with_steps(
        q in 1e-4f64..0.5, sigma in 0.5f64..8.0, steps in 1u64..5000, more in 0u64..5000,
    ) {
        prop_assert!(le(epsilon(q, sigma, steps, 1e-5), epsilon(q, sigma, steps + more, 1e-5)));
    }

    #[test]
    fn epsilon_falls_as_sigma_grows(
        q in 1e-4f64..0.5, sigma in 0.3f64..8.0, factor in 1.0f64..3.0, steps in 1u64..5000,
    ) {
        prop_assert!(le(epsilon(q, sigma * factor, steps, 1e-5), epsilon(q, sigma, steps, 1e-5)));
    }

    /// RDP is non-decreasing in the order (Van Erven & Harremoes 2014, Thm. 3): checked on the
    /// exact (signed) series and on integer orders, and for the bound against exact values above.
    #[test]
    fn rdp_is_non_decreasing_in_alpha(
        q in 1e-4f64..0.9, sigma in 0.5f64..8.0, a1 in 1.01f64..40.0, gap in 0.0f64..20.0,
    ) {
        let a2 = a1 + gap;
        let r1 = rdp_subsampled_gaussian(q, sigma, a1, FractionalSeries::Signed);
        let r2 = rdp_subsampled_gaussian(q, sigma, a2, FractionalSeries::Signed);
        if let (Ok(r1), Ok(r2)) = (r1, r2) {
            prop_assert!(le(r1, r2), "rdp({a1}) = {r1} > rdp({a2}) = {r2}");
        }
        let (i1, i2) = (a1.ceil().max(2.0), (a2.ceil() + 1.0).max(2.0));
        let r1 = rdp_subsampled_gaussian(q, sigma, i1, ABS).unwrap();
        let r2 = rdp_subsampled_gaussian(q, sigma, i2, ABS).unwrap();
        prop_assert!(le(r1, r2));
    }

    #[test]
    fn absolute_series_is_never_below_signed(
        q in 1e-5f64..0.99, sigma in 0.2f64..20.0, alpha in 1.001f64..80.0,
    ) {
        let bound = rdp_subsampled_gaussian(q, sigma, alpha, ABS).unwrap();
        prop_assert!(bound.is_finite());
        if let Ok(signed) = rdp_subsampled_gaussian(q, sigma, alpha, FractionalSeries::Signed) {
            prop_assert!(bound >= signed, "abs {bound} < signed {signed}");
        }
    }

    /// Composition adds curves: phases recorded in an accountant (step by step or at once)
    /// give the sum of the phases' curves.
    #[test]
    fn composition_is_additive(
        q1 in 1e-4f64..0.5, s1 in 0.5f64..5.0, t1 in 0u64..300,
        q2 in 1e-4f64..0.5, s2 in 0.5f64..5.0, t2 in 0u64..300,
    ) {
        let orders = Orders::dp_accounting();
        let a = RdpCurve::of_phase(&orders, Phase::new(q1, s1, t1).unwrap(), ABS).unwrap();
        let b = RdpCurve::of_phase(&orders, Phase::new(q2, s2, t2).unwrap(), ABS).unwrap();
        let sum = a.compose(&b).unwrap();
        let mut acc = RdpAccountant::new(orders.clone(), ABS);
        for _ in 0..t1 {
            acc.step(q1, s1).unwrap();
        }
        acc.compose(Phase::new(q2, s2, t2).unwrap()).unwrap();
        prop_assert_eq!(acc.steps(), t1 + t2);
        let got = acc.curve();
        // Replaying the history (as a resumed run does) reproduces the curve bit for bit.
        let replay = RdpAccountant::with_history(orders.clone(), ABS, &acc.history()).unwrap();
        prop_assert_eq!(replay.curve(), got.clone());
        for ((x, y), (ra, rb)) in got.values().iter().zip(sum.values())
            .zip(a.values().iter().zip(b.values()))
        {
            prop_assert!((x - y).abs() <= 1e-12 * y.abs(), "{x} vs {y}");
            prop_assert!(*x >= ra + rb, "composition rounded downwards");
        }
    }

    #[test]
    fn q_one_is_the_gaussian_mechanism(sigma in 0.1f64..10.0, alpha in 1.01f64..256.0,
                                       steps in 1u64..10_000) {
        prop_assert_eq!(
            rdp_subsampled_gaussian(1.0, sigma, alpha, ABS).unwrap(),
            alpha / (2.0 * sigma * sigma)
        );
        let orders = Orders::new([alpha]).unwrap();
        let c = RdpCurve::of_phase(&orders, Phase::new(1.0, sigma, steps).unwrap(), ABS).unwrap();
        let exact = steps as f64 * alpha / (2.0 * sigma * sigma);
        prop_assert!(c.values()[0] >= exact && c.values()[0] <= exact * (1.0 + 1e-14));
    }

    #[test]
    fn epsilon_delta_round_trip(
        q in 1e-4f64..0.3, sigma in 0.5f64..5.0, steps in 1u64..3000, eps0 in 0.05f64..20.0,
    ) {
        let curve =
            RdpCurve::of_phase(&Orders::opacus(), Phase::new(q, sigma, steps).unwrap(), ABS)
                .unwrap();
        let d = curve.delta(eps0).unwrap().delta;
        prop_assume!(d > 1e-300 && d < 1.0);
        let eps1 = curve.epsilon(d).unwrap().epsilon;
        prop_assert!((eps1 - eps0).abs() <= 1e-9 * eps0 + 1e-12, "{eps0} -> {d} -> {eps1}");
    }
}

proptest! {
    // Each case runs a full calibration (tens of epsilon evaluations).
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn calibration_never_overshoots(
        target in 0.3f64..12.0, log_delta in -9f64..-3.0, q in 1e-3f64..0.1,
        steps in 10u64..3000, tol in prop::sample::select(vec![0.1, 0.01, 0.001]),
        opacus_orders in any::<bool>(),
    ) {
        let delta = 10f64.powf(log_delta);
        let orders = if opacus_orders { Orders::opacus() } else { Orders::dp_accounting() };
        let options = CalibrationOptions {
            orders: orders.clone(),
            epsilon_tolerance: tol,
            ..CalibrationOptions::default()
        };
        let c = calibrate_sigma(target, delta, q, steps, &options).unwrap();
        // Recompute independently of the search's bookkeeping.
        let eps = RdpCurve::of_phase(&orders, Phase::new(q, c.sigma, steps).unwrap(), ABS)
            .unwrap()
            .epsilon(delta)
            .unwrap()
            .epsilon;
        prop_assert_eq!(eps, c.guarantee.epsilon);
        prop_assert!(eps <= target, "overshoot: {eps} > {target} at sigma {}", c.sigma);
        prop_assert!(target - eps <= tol, "not within tolerance: {eps} vs {target}");
    }
}

#[test]
fn optimal_order_at_the_edge_is_flagged() {
    let phase = Phase::new(0.004, 1.1, 15_000).unwrap();
    let high = RdpCurve::of_phase(&Orders::new([2.0, 3.0]).unwrap(), phase, ABS)
        .unwrap()
        .epsilon(1e-5)
        .unwrap();
    assert_eq!(high.edge, Some(sparsedp_accountant::OrderEdge::Highest));
    assert!(high.warning().unwrap().contains("largest"));
    let low = RdpCurve::of_phase(&Orders::new([50.0, 60.0]).unwrap(), phase, ABS)
        .unwrap()
        .epsilon(1e-5)
        .unwrap();
    assert_eq!(low.edge, Some(sparsedp_accountant::OrderEdge::Lowest));
    let inside = RdpCurve::of_phase(&Orders::opacus(), phase, ABS)
        .unwrap()
        .epsilon(1e-5)
        .unwrap();
    assert_eq!(inside.edge, None);
}

#[test]
fn no_steps_spend_nothing() {
    let acc = RdpAccountant::default();
    let g = acc.epsilon(1e-5).unwrap();
    assert_eq!((g.epsilon, g.order), (0.0, None));
    assert_eq!(acc.delta(0.5).unwrap().delta, 0.0);
}
