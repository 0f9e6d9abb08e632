//! Renyi DP of one step of the Poisson-subsampled Gaussian mechanism.
//!
//! Mechanism: each example joins the batch independently with probability `q`; the sum of
//! per-example contributions, each clipped to L2 norm `C`, gets Gaussian noise of std `sigma * C`.
//! Neighbouring datasets differ by adding or removing one example.
//!
//! Mironov, Talwar & Zhang (2019), "Renyi Differential Privacy of the Sampled Gaussian Mechanism"
//! (arXiv:1908.10530), Sec. 3: the RDP at order `alpha` is `log(A_alpha) / (alpha - 1)` with
//! `A_alpha = E_{z ~ mu0} [((1 - q) + q mu1(z)/mu0(z))^alpha]`, `mu0 = N(0, sigma^2)`,
//! `mu1 = N(1, sigma^2)`. Derivations, and the direction of every approximation, are in
//! `docs/accountant.md`.

use crate::error::{Error, Result};
use crate::logmath::{LogSum, U, log_add, log_erfc, log_sub, round_up};

/// How the infinite series for fractional orders is summed.
///
/// Both evaluate the same convergent series (Mironov, Talwar & Zhang 2019, Sec. 3.3). The
/// terms' signs follow the generalised binomial coefficients `binom(alpha, i)`, which alternate
/// once `i > alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FractionalSeries {
    /// Sum of the terms' absolute values: an upper bound on `A_alpha`, hence on the RDP. It is
    /// computed without cancellation, so it is always a valid (conservative) claim. This is the
    /// default, as in Google's `dp_accounting` since 2024.
    #[default]
    AbsoluteBound,
    /// The signed sum: exact in exact arithmetic, as computed by Opacus. In floating point the
    /// alternating terms can cancel catastrophically when `sigma` is small, so the computed value
    /// can fall below the true one; it is offered to reproduce Opacus' numbers.
    Signed,
}

impl FractionalSeries {
    /// Short name used by the CLI and in reports: `abs` or `signed`.
    pub fn name(self) -> &'static str {
        match self {
            FractionalSeries::AbsoluteBound => "abs",
            FractionalSeries::Signed => "signed",
        }
    }
}

/// Checks a sampling probability: a number in `[0, 1]`.
pub fn validate_q(q: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&q) {
        Ok(q)
    } else {
        Err(Error::InvalidSamplingRate(q))
    }
}

/// Checks a noise multiplier: non-negative and not NaN (`+inf` means "no release at all").
pub fn validate_sigma(sigma: f64) -> Result<f64> {
    if sigma >= 0.0 {
        Ok(sigma)
    } else {
        Err(Error::InvalidNoiseMultiplier(sigma))
    }
}

/// Checks a Renyi order: finite and greater than 1.
pub fn validate_order(alpha: f64) -> Result<f64> {
    if alpha.is_finite() && alpha > 1.0 {
        Ok(alpha)
    } else {
        Err(Error::InvalidOrder(alpha))
    }
}

/// RDP at order `alpha` of one step of the Poisson-subsampled Gaussian mechanism with sampling
/// probability `q` and noise multiplier `sigma`, under add/remove-one neighbours.
///
/// Guarantee: the returned value is at least the true RDP `log(A_alpha) / (alpha - 1)` of the
/// mechanism, up to the caveat of [`FractionalSeries::Signed`] when that variant is chosen
/// (integer orders are exact and do not depend on `series`). Floating-point error in the
/// evaluation is bounded and added (see `docs/accountant.md`, "Rounding").
///
/// Edge cases, exact: `q = 0` gives 0 (nothing is released about anyone); `sigma = +inf` gives 0;
/// `q = 1` gives `alpha / (2 sigma^2)` (the Gaussian mechanism, Mironov 2017, Prop. 7);
/// `sigma = 0` with `q > 0` gives `+inf`.
///
/// Errors: `q` outside `[0, 1]` or NaN, `sigma` negative or NaN, `alpha` not a finite number > 1.
///
/// Formulas: integer `alpha` uses the finite binomial expansion
/// `A_alpha = sum_{k=0}^{alpha} binom(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))`
/// (Mironov, Talwar & Zhang 2019, Sec. 3.2); fractional `alpha` the two-sided series of Sec. 3.3.
pub fn rdp_subsampled_gaussian(
    q: f64,
    sigma: f64,
    alpha: f64,
    series: FractionalSeries,
) -> Result<f64> {
    validate_q(q)?;
    validate_sigma(sigma)?;
    validate_order(alpha)?;
    if q == 0.0 || sigma == f64::INFINITY {
        return Ok(0.0);
    }
    if sigma == 0.0 {
        return Ok(f64::INFINITY);
    }
    if q == 1.0 {
        // alpha / (2 sigma^2): exactly what the caller can compute, no margin added, so that the
        // closed form is matched bit for bit.
        return Ok(alpha / (2.0 * sigma * sigma));
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= MAX_INTEGER_ORDER {
        log_a_integer(q, sigma, alpha as u64)
    } else {
        log_a_fractional(q, sigma, alpha, series)?
    };
    // A_alpha >= 1 (Jensen), so log A >= 0; clamp tiny negative rounding to 0 first.
    Ok((log_a.max(0.0) / (alpha - 1.0)).next_up())
}

/// Integer orders above this use the fractional series (which is also exact for them), so that
/// the binomial sum's cost, linear in `alpha`, stays bounded.
const MAX_INTEGER_ORDER: f64 = 1_000_000.0;

/// Relative size of the remaining tail at which the fractional series stops (after the tail's
/// rigorous bound is added, so stopping early only makes the result looser, never smaller).
const TAIL_TOLERANCE: f64 = 1e-12;

/// Most terms summed for a fractional order; past this, the tail bound is added as it stands.
const MAX_TERMS: u64 = 2_000_000;

/// `log(A_alpha)` for integer `alpha >= 2` by the finite binomial expansion, plus its rounding
/// margin.
fn log_a_integer(q: f64, sigma: f64, n: u64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let two_s2 = 2.0 * sigma * sigma;
    let nf = n as f64;
    let mut sum = Terms::new();
    // log binom(n, k), built up term by term: binom(n, k) = binom(n, k-1) (n - k + 1) / k.
    let mut log_binom = 0.0f64;
    for k in 0..=n {
        let kf = k as f64;
        if k > 0 {
            log_binom += ((nf - kf + 1.0) / kf).ln();
        }
        let exponent = (kf * kf - kf) / two_s2;
        let parts = [log_binom, kf * ln_q, (nf - kf) * ln_1mq, exponent];
        sum.add(parts.iter().sum(), true, k, &parts);
    }
    sum.finish(FractionalSeries::AbsoluteBound)
        .expect("a sum of positive terms is positive")
}

/// `log(A_alpha)` for fractional `alpha` by the two-sided series of Mironov, Talwar & Zhang
/// (2019), Sec. 3.3, with a rigorous bound on the truncated tail added, plus the rounding margin.
fn log_a_fractional(q: f64, sigma: f64, alpha: f64, series: FractionalSeries) -> Result<f64> {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let s2 = sigma * sigma;
    let two_s2 = 2.0 * s2;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    // z0 splits the integral for A_alpha at the point where mu1/mu0 crosses (1-q)/q.
    let z0 = s2 * (1.0 / q - 1.0).ln() + 0.5;
    // log K, the constant of the tail bound (docs/accountant.md, "Truncation"):
    // s0_i <= |binom(alpha, i)| K / (i - z0), s1_i <= |binom(alpha, i)| K / (i - alpha + z0),
    // K = (1-q)^alpha exp(-z0^2 / (2 sigma^2)) sigma / sqrt(2 pi).
    let log_k =
        alpha * ln_1mq - z0 * z0 / two_s2 + sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
    // The tail bound holds once i exceeds alpha, z0 and alpha - z0 (all denominators positive
    // and |binom| decreasing).
    let tail_start = alpha.max(z0).max(alpha - z0).max(0.0).floor() + 2.0;

    let mut sum = Terms::new();
    // log |binom(alpha, i)| and its sign, built up term by term:
    // binom(alpha, i) = binom(alpha, i-1) (alpha - i + 1) / i.
    let mut log_binom = 0.0f64;
    let mut binom_positive = true;
    let mut i: u64 = 0;
    let tail = loop {
        let fi = i as f64;
        if i > 0 {
            let factor = (alpha - fi + 1.0) / fi;
            if factor < 0.0 {
                binom_positive = !binom_positive;
            }
            log_binom += factor.abs().ln();
        }
        let j = alpha - fi;
        let half = -std::f64::consts::LN_2;
        let s0 = [
            log_binom,
            fi * ln_q,
            j * ln_1mq,
            (fi * fi - fi) / two_s2,
            half + log_erfc((fi - z0) / sqrt2_sigma),
        ];
        let s1 = [
            log_binom,
            j * ln_q,
            fi * ln_1mq,
            (j * j - j) / two_s2,
            half + log_erfc((z0 - j) / sqrt2_sigma),
        ];
        let positive = binom_positive || series == FractionalSeries::AbsoluteBound;
        sum.add(s0.iter().sum(), positive, i, &s0);
        sum.add(s1.iter().sum(), positive, i, &s1);
        i += 1;
        if fi >= tail_start {
            // Bound on sum_{i > n} (s0_i + s1_i) for n = fi, docs/accountant.md eq. (T).
            let log_tail = log_k
                + log_binom
                + ((fi + 1.0) / alpha).ln()
                + (1.0 / (fi + 1.0 - z0) + 1.0 / (fi + 1.0 - alpha + z0)).ln();
            if log_tail <= sum.positive.value() + TAIL_TOLERANCE.ln() || i >= MAX_TERMS {
                break log_tail;
            }
        }
    };
    // The tail's terms may be of either sign; adding the bound on their absolute sum keeps the
    // result an upper bound in both variants. The bound is itself evaluated in floating point:
    // inflate it by far more than its few roundings can cost.
    sum.positive.add(tail + 1e-6);
    sum.finish(series).ok_or(Error::SignedSeriesCancellation {
        q,
        sigma,
        order: alpha,
    })
}

/// A series of terms given by their logarithms, with a running bound on its rounding error.
struct Terms {
    positive: LogSum,
    negative: LogSum,
    /// `log sum_i |term_i| * relerr_i`: the absolute error budget of the sum, in log space.
    error: LogSum,
    count: u64,
}

impl Terms {
    fn new() -> Self {
        Terms {
            positive: LogSum::new(),
            negative: LogSum::new(),
            error: LogSum::new(),
            count: 0,
        }
    }

    /// Adds the term `exp(log_term)` (subtracts it if `!positive`). `parts` are the summands
    /// that made `log_term`, and `index` how many rounded steps built the running ones
    /// (the log-binomial coefficient is accumulated over `index` multiplications).
    ///
    /// Error bound for the term's logarithm: each part carries at most `2 U (index + 2)` times its
    /// magnitude (the running log-binomial accumulates one rounding per step; the others come
    /// from a fixed number of roundings), and summing the five parts adds `5 U` times the largest
    /// partial sum. The bound used, `8 U (index + 4) (1 + sum |parts|)`, dominates both. Since
    /// `exp(x + e) <= exp(x) (1 + 2e)` for small `e`, twice that is a relative error bound on the
    /// term itself.
    fn add(&mut self, log_term: f64, positive: bool, index: u64, parts: &[f64]) {
        let magnitude: f64 = parts.iter().map(|p| p.abs()).sum();
        let relerr = 16.0 * U * (index as f64 + 4.0) * (1.0 + magnitude);
        self.error.add(log_term + relerr.ln());
        if positive {
            self.positive.add(log_term);
        } else {
            self.negative.add(log_term);
        }
        self.count += 1;
    }

    /// `log(sum)` raised by its error bound, or `None` if the signed sum is not positive or
    /// cancellation left it with less than six significant digits.
    ///
    /// Error budget on `sum`: the terms' own errors (`exp(error)`), plus the log-sum-exp's
    /// rounding, at most `4 U` per term relative to the sum of absolute values; relative to the
    /// (possibly cancelled) signed result, both are divided by that result. The final logarithm
    /// adds `U |log sum|`.
    fn finish(&self, series: FractionalSeries) -> Option<f64> {
        let log_abs = log_add(self.positive.value(), self.negative.value());
        let log_sum = match series {
            FractionalSeries::AbsoluteBound => self.positive.value(),
            FractionalSeries::Signed => log_sub(self.positive.value(), self.negative.value())?,
        };
        let summation = (4.0 * U * (self.count as f64 + 4.0)).ln() + log_abs;
        let relerr = (log_add(self.error.value(), summation) - log_sum).exp();
        if series == FractionalSeries::Signed && relerr > 1e-6 {
            // Cancellation ate the significant digits: refuse rather than guess.
            return None;
        }
        // log(sum (1 + relerr)) <= log(sum) + relerr.
        Some(round_up(log_sum + relerr, 2.0 * U) + 2.0 * U * log_sum.abs())
    }
}
