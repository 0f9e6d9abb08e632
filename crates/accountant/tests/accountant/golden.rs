//! Golden values from independent, published implementations (provenance: fixtures/README.md,
//! section "accountant"). Tolerances are relative and stated per pin.

use sparsedp_accountant::{
    CalibrationOptions, FractionalSeries, Orders, Phase, RdpCurve, calibrate_sigma,
    rdp_subsampled_gaussian,
};

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// Opacus `tests/accountants_test.py` (RDP accountant): q = 0.04, sigma = 1.5, 2250 steps,
/// delta = 1e-5, Opacus' default orders, signed series -> 7.32911117143.
#[test]
fn opacus_rdp_epsilon() {
    let curve = RdpCurve::of_phase(
        &Orders::opacus(),
        Phase::new(0.04, 1.5, 2250).unwrap(),
        FractionalSeries::Signed,
    )
    .unwrap();
    let g = curve.epsilon(1e-5).unwrap();
    assert!(rel(g.epsilon, 7.32911117143) < 1e-9, "{}", g.epsilon);
    // Rounding errs against the claim: never below the reference beyond its printed digits.
    assert!(g.epsilon >= 7.32911117143 - 5e-12);
    // The conservative default is within 1e-4 of it here and never below it.
    let abs = RdpCurve::of_phase(
        &Orders::opacus(),
        Phase::new(0.04, 1.5, 2250).unwrap(),
        FractionalSeries::AbsoluteBound,
    )
    .unwrap()
    .epsilon(1e-5)
    .unwrap();
    assert!(abs.epsilon >= g.epsilon && abs.epsilon - g.epsilon < 1e-3);
}

/// Opacus `tests/privacy_engine_test.py` / `get_noise_multiplier` with epsilon_tolerance 0.01:
/// target epsilon 8, delta 1e-5, q = 0.04 -> sigma 1.416015625 (2250 steps),
/// 1.356201171875 (2000 steps). The bisection's dyadic midpoints make these exact.
#[test]
fn opacus_calibration() {
    let options = CalibrationOptions {
        series: FractionalSeries::Signed,
        ..CalibrationOptions::default()
    };
    let c = calibrate_sigma(8.0, 1e-5, 0.04, 2250, &options).unwrap();
    assert_eq!(c.sigma, 1.416015625);
    assert!(c.guarantee.epsilon <= 8.0 && 8.0 - c.guarantee.epsilon <= 0.01);
    let c = calibrate_sigma(8.0, 1e-5, 0.04, 2000, &options).unwrap();
    assert_eq!(c.sigma, 1.356201171875);
    // The conservative default lands on the same grid point here.
    let c = calibrate_sigma(8.0, 1e-5, 0.04, 2250, &CalibrationOptions::default()).unwrap();
    assert_eq!(c.sigma, 1.416015625);
}

/// TensorFlow Privacy `compute_dp_sgd_privacy_test.py` (`Test0`..`Test2`):
/// (n, batch, sigma, epochs, delta) with q = batch / n and steps = ceil(epochs n / batch),
/// TF Privacy's DP-SGD orders -> (epsilon, optimal order).
#[test]
fn tf_privacy_epsilon() {
    let pins = [
        (
            60_000u64,
            150u64,
            1.3,
            15u64,
            1e-5,
            0.7242234026109595,
            19.0,
            1e-9,
        ),
        (100_000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13.0, 1e-9),
        // sigma = 0.1: the optimum is the smallest order, where the series is fractional.
        (
            100_000_000,
            1024,
            0.1,
            10,
            1e-7,
            5907982.31138195,
            1.25,
            1e-9,
        ),
    ];
    for (n, batch, sigma, epochs, delta, want, order, tol) in pins {
        let q = batch as f64 / n as f64;
        let steps = (epochs * n).div_ceil(batch);
        let curve = RdpCurve::of_phase(
            &Orders::tf_privacy(),
            Phase::new(q, sigma, steps).unwrap(),
            FractionalSeries::Signed,
        )
        .unwrap();
        let g = curve.epsilon(delta).unwrap();
        assert!(rel(g.epsilon, want) < tol, "{n}: {} vs {want}", g.epsilon);
        assert_eq!(g.order, Some(order));
    }
    // Test0's optimum is inside the order set, so no edge warning.
    let g = RdpCurve::of_phase(
        &Orders::tf_privacy(),
        Phase::new(150.0 / 60000.0, 1.3, 6000).unwrap(),
        FractionalSeries::Signed,
    )
    .unwrap()
    .epsilon(1e-5)
    .unwrap();
    assert_eq!(g.edge, None);
    assert!(g.warning().is_none());
}

/// One-step RDP values from TF Privacy's tests (computed there with autodp):
/// (q, sigma, alpha) -> RDP.
#[test]
fn one_step_rdp() {
    let pins = [
        (0.01, 1.0, 2.0, 1.7181342207453428e-4, 1e-9),
        (0.01, 1.0, 10.0, 0.03827041889494864, 1e-9),
        (0.05, 2.0, 25.0, 0.07545190786474157, 1e-9),
        (0.1, 1.0, 4.0, 0.05867260696008058, 1e-9),
        // Fractional order: autodp integrates numerically, so it pins fewer digits.
        (0.01, 0.5, 1.25, 0.0018977736416478479, 1e-7),
    ];
    for (q, sigma, alpha, want, tol) in pins {
        let got = rdp_subsampled_gaussian(q, sigma, alpha, FractionalSeries::Signed).unwrap();
        assert!(
            rel(got, want) < tol,
            "({q}, {sigma}, {alpha}): {got} vs {want}"
        );
        let bound =
            rdp_subsampled_gaussian(q, sigma, alpha, FractionalSeries::AbsoluteBound).unwrap();
        assert!(bound >= got, "absolute-value bound below the signed series");
    }
    // Integer orders have no series: both variants are the same computation.
    let a = rdp_subsampled_gaussian(0.1, 1.0, 4.0, FractionalSeries::Signed).unwrap();
    let b = rdp_subsampled_gaussian(0.1, 1.0, 4.0, FractionalSeries::AbsoluteBound).unwrap();
    assert_eq!(a, b);
}

/// Google dp_accounting `rdp_privacy_accountant_test.py` (absolute-value series, 2024+):
/// q = 0.01, sigma = 2.5, 50 steps, orders [1.5, 2.5, 5, 50, 100].
#[test]
fn dp_accounting_rdp_curve() {
    let orders = Orders::new([1.5, 2.5, 5.0, 50.0, 100.0]).unwrap();
    let want = [
        6.70579741e-4,
        1.08548710e-3,
        2.18075656e-3,
        2.38460375e-2,
        1.67416308e2,
    ];
    let phase = Phase::new(0.01, 2.5, 50).unwrap();
    let abs = RdpCurve::of_phase(&orders, phase, FractionalSeries::AbsoluteBound).unwrap();
    for (&got, &w) in abs.values().iter().zip(&want) {
        // The pins carry 9 significant digits; the bar is 1e-4.
        assert!(rel(got, w) < 1e-7, "{got} vs {w}");
    }
    // The signed series is visibly smaller at fractional orders here: the variants differ.
    let signed = RdpCurve::of_phase(&orders, phase, FractionalSeries::Signed).unwrap();
    assert!(signed.values()[0] < 0.99 * abs.values()[0]);
    assert_eq!(signed.values()[2..], abs.values()[2..]);
}
