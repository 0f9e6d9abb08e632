//! Bad input gives a typed error with a message naming the problem, never a panic or a number.

use sparsedp_accountant::{
    CalibrationOptions, Error, FractionalSeries, Orders, Phase, RdpAccountant, RdpCurve,
    calibrate_sigma, delta_from_rdp, epsilon_from_rdp, max_steps, rdp_subsampled_gaussian,
    sampling_rate, steps_for_epochs,
};

const ABS: FractionalSeries = FractionalSeries::AbsoluteBound;

#[test]
fn rdp_rejects_bad_parameters() {
    for q in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let e = rdp_subsampled_gaussian(q, 1.0, 2.0, ABS).unwrap_err();
        assert!(matches!(e, Error::InvalidSamplingRate(_)), "{e}");
        assert!(e.to_string().contains("sampling rate q"));
    }
    for s in [-1.0, f64::NAN, f64::NEG_INFINITY] {
        let e = rdp_subsampled_gaussian(0.1, s, 2.0, ABS).unwrap_err();
        assert!(matches!(e, Error::InvalidNoiseMultiplier(_)), "{e}");
        assert!(e.to_string().contains("noise multiplier"));
    }
    for a in [1.0, 0.5, f64::NAN, f64::INFINITY] {
        let e = rdp_subsampled_gaussian(0.1, 1.0, a, ABS).unwrap_err();
        assert!(matches!(e, Error::InvalidOrder(_)), "{e}");
    }
}

#[test]
fn rdp_edge_cases_are_exact() {
    for &alpha in &[1.5, 2.0, 7.25, 64.0] {
        assert_eq!(rdp_subsampled_gaussian(0.0, 1.0, alpha, ABS), Ok(0.0));
        assert_eq!(rdp_subsampled_gaussian(0.0, 0.0, alpha, ABS), Ok(0.0));
        assert_eq!(
            rdp_subsampled_gaussian(1.0, 0.8, alpha, ABS),
            Ok(alpha / (2.0 * 0.8 * 0.8))
        );
        assert_eq!(
            rdp_subsampled_gaussian(0.3, 0.0, alpha, ABS),
            Ok(f64::INFINITY)
        );
        assert_eq!(
            rdp_subsampled_gaussian(0.3, f64::INFINITY, alpha, ABS),
            Ok(0.0)
        );
    }
}

#[test]
fn conversions_reject_bad_delta_epsilon_and_curves() {
    let o = Orders::new([2.0, 4.0]).unwrap();
    for d in [0.0, 1.0, -1e-5, 2.0, f64::NAN] {
        let e = epsilon_from_rdp(&o, &[0.1, 0.2], d).unwrap_err();
        assert!(matches!(e, Error::InvalidDelta(_)), "{e}");
        assert!(e.to_string().contains("delta"));
    }
    for eps in [-1.0, f64::NAN, f64::INFINITY] {
        let e = delta_from_rdp(&o, &[0.1, 0.2], eps).unwrap_err();
        assert!(matches!(e, Error::InvalidEpsilon(_)), "{e}");
    }
    assert_eq!(
        epsilon_from_rdp(&o, &[0.1], 1e-5),
        Err(Error::CurveLength {
            orders: 2,
            values: 1
        })
    );
    assert_eq!(
        epsilon_from_rdp(&o, &[0.1, -0.2], 1e-5),
        Err(Error::InvalidRdp(-0.2))
    );
    assert_eq!(Orders::new([]), Err(Error::EmptyOrders));
    let a = RdpCurve::zero(o);
    let b = RdpCurve::zero(Orders::opacus());
    assert_eq!(a.compose(&b), Err(Error::OrdersMismatch));
}

#[test]
fn accountant_and_calibration_reject_bad_input() {
    let mut acc = RdpAccountant::default();
    assert!(matches!(
        acc.step(1.2, 1.0),
        Err(Error::InvalidSamplingRate(_))
    ));
    assert!(matches!(
        acc.step(0.1, -1.0),
        Err(Error::InvalidNoiseMultiplier(_))
    ));
    assert_eq!(acc.steps(), 0, "a refused step is not recorded");
    assert!(Phase::new(f64::NAN, 1.0, 1).is_err());
    let opts = CalibrationOptions::default();
    assert!(matches!(
        calibrate_sigma(0.0, 1e-5, 0.01, 100, &opts),
        Err(Error::InvalidEpsilon(_))
    ));
    assert!(matches!(
        calibrate_sigma(1.0, 0.0, 0.01, 100, &opts),
        Err(Error::InvalidDelta(_))
    ));
    assert!(matches!(
        calibrate_sigma(1.0, 1e-5, 1.01, 100, &opts),
        Err(Error::InvalidSamplingRate(_))
    ));
    let bad_tol = CalibrationOptions {
        epsilon_tolerance: 0.0,
        ..CalibrationOptions::default()
    };
    assert!(matches!(
        calibrate_sigma(1.0, 1e-5, 0.01, 100, &bad_tol),
        Err(Error::InvalidTolerance(_))
    ));
    let e = calibrate_sigma(1e-3, 1e-10, 0.5, 100_000, &opts).unwrap_err();
    assert!(matches!(e, Error::BudgetTooSmall { .. }), "{e}");
    assert!(e.to_string().contains("budget is too small"));
    assert!(matches!(
        max_steps(1.0, 2.0, 0.01, 1.0, &Orders::opacus(), ABS),
        Err(Error::InvalidDelta(_))
    ));
    assert!(matches!(
        steps_for_epochs(-1.0, 0.01),
        Err(Error::InvalidEpochs(_))
    ));
    assert!(matches!(
        steps_for_epochs(1.0, 0.0),
        Err(Error::InvalidSamplingRate(_))
    ));
    assert!(matches!(
        sampling_rate(300, 200),
        Err(Error::InvalidSizes { .. })
    ));
    assert!(sampling_rate(0, 200).is_err());
}

#[test]
fn signed_series_refuses_rather_than_guessing_under_cancellation() {
    // Tiny sigma at a fractional order: the alternating terms are astronomically larger than
    // their sum. The bound is still computed.
    let signed = rdp_subsampled_gaussian(0.5, 0.05, 1.5, FractionalSeries::Signed);
    let bound = rdp_subsampled_gaussian(0.5, 0.05, 1.5, ABS).unwrap();
    assert!(bound.is_finite() && bound > 0.0);
    match signed {
        Err(Error::SignedSeriesCancellation { .. }) => {}
        Ok(v) => assert!(v <= bound, "signed {v} above bound {bound}"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn helpers_compute_plans() {
    assert_eq!(steps_for_epochs(90.0, 0.04), Ok(2250));
    assert_eq!(steps_for_epochs(1.0, 0.3), Ok(4)); // 3.33.. rounds up
    assert_eq!(steps_for_epochs(15.0, 150.0 / 60000.0), Ok(6000));
    assert_eq!(sampling_rate(256, 60000), Ok(256.0 / 60000.0));
}
