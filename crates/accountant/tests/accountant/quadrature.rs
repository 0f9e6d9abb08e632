//! An independent check of the series: `A_alpha` as a Renyi-divergence integral, by quadrature.
//!
//! `A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]`
//! (Mironov, Talwar & Zhang 2019, Sec. 3, the add-one direction, which dominates). The integrand
//! is smooth with a peak near 0 and one near alpha, each of width sigma, so composite Simpson on
//! `[-30 sigma, alpha + 30 sigma]` with a fine grid converges far below the 1e-6 asked for. None
//! of the series' code (binomials, erfc, truncation) is shared with this computation.

use sparsedp_accountant::{FractionalSeries, rdp_subsampled_gaussian};

fn log_integrand(z: f64, q: f64, sigma: f64, alpha: f64) -> f64 {
    let s2 = sigma * sigma;
    let log_density = -z * z / (2.0 * s2) - (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln();
    // log((1 - q) + q exp(u)), stably.
    let u = (2.0 * z - 1.0) / (2.0 * s2);
    let a = (1.0 - q).ln();
    let b = q.ln() + u;
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    let log_mix = hi + (lo - hi).exp().ln_1p();
    log_density + alpha * log_mix
}

/// RDP by quadrature: log(A_alpha) / (alpha - 1).
fn rdp_by_quadrature(q: f64, sigma: f64, alpha: f64) -> f64 {
    let lo = -30.0 * sigma;
    let hi = alpha + 30.0 * sigma;
    let n = 400_000usize; // even
    let h = (hi - lo) / n as f64;
    let logs: Vec<f64> = (0..=n)
        .map(|k| log_integrand(lo + k as f64 * h, q, sigma, alpha))
        .collect();
    let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (k, l) in logs.iter().enumerate() {
        let w = if k == 0 || k == n {
            1.0
        } else if k % 2 == 1 {
            4.0
        } else {
            2.0
        };
        sum += w * (l - m).exp();
    }
    let log_a = m + (sum * h / 3.0).ln();
    log_a / (alpha - 1.0)
}

#[test]
fn series_matches_the_divergence_integral() {
    let cases = [
        (0.01, 1.0, 2.5),
        (0.05, 0.8, 3.3),
        (0.1, 2.0, 1.5),
        (0.2, 1.5, 7.7),
        (0.5, 3.0, 12.25),
        (0.001, 0.7, 5.5),
        (0.03, 1.2, 8.0), // integer order: the finite binomial sum
        (0.9, 4.0, 1.1),
        (0.04, 1.5, 3.9), // the optimum of the Opacus golden test
    ];
    for (q, sigma, alpha) in cases {
        let reference = rdp_by_quadrature(q, sigma, alpha);
        let signed = rdp_subsampled_gaussian(q, sigma, alpha, FractionalSeries::Signed).unwrap();
        let bound =
            rdp_subsampled_gaussian(q, sigma, alpha, FractionalSeries::AbsoluteBound).unwrap();
        let rel = ((signed - reference) / reference).abs();
        assert!(
            rel < 1e-6,
            "(q, sigma, alpha) = ({q}, {sigma}, {alpha}): series {signed:e}, integral {reference:e}, rel {rel:e}"
        );
        assert!(
            bound >= reference * (1.0 - 1e-9),
            "the absolute-value bound {bound:e} is below the integral {reference:e}"
        );
    }
}
