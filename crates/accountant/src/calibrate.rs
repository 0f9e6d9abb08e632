//! Calibration: the noise a training plan needs, or the steps a budget affords.
//!
//! Both searches only ever return a candidate whose epsilon was computed (with upward rounding)
//! and found not to exceed the target, so they cannot overshoot, whatever the tolerance.

use crate::accountant::{Phase, RdpCurve};
use crate::conversion::{PrivacyGuarantee, validate_delta, validate_epsilon};
use crate::error::{Error, Result};
use crate::orders::Orders;
use crate::rdp::{FractionalSeries, validate_q, validate_sigma};

/// Settings shared by the calibration searches.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    /// Orders over which epsilon is minimised.
    pub orders: Orders,
    /// Series for fractional orders.
    pub series: FractionalSeries,
    /// Bisection stops once `target - epsilon(sigma) <= epsilon_tolerance` (Opacus' rule;
    /// default 0.01, as in Opacus' `get_noise_multiplier`).
    pub epsilon_tolerance: f64,
    /// First upper end of the bracket for sigma, doubled until it meets the target (default 10,
    /// doubled once before the first evaluation, as in Opacus).
    pub initial_sigma: f64,
    /// Largest sigma tried before giving up with [`Error::BudgetTooSmall`] (default 1e4).
    pub max_sigma: f64,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            orders: Orders::default(),
            series: FractionalSeries::default(),
            epsilon_tolerance: 0.01,
            initial_sigma: 10.0,
            max_sigma: 1e4,
        }
    }
}

/// The result of [`calibrate_sigma`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The noise multiplier: its epsilon is at most the target.
    pub sigma: f64,
    /// The guarantee at that sigma (epsilon <= target).
    pub guarantee: PrivacyGuarantee,
    /// Epsilon evaluations spent.
    pub evaluations: u32,
}

/// Number of Poisson-sampled steps in `epochs` passes at sampling probability `q`:
/// `ceil(epochs / q)`, so that rounding spends at least the planned data passes' privacy
/// (Opacus truncates instead, which can under-count by one step).
///
/// Errors: `q` not in `(0, 1]`; `epochs` not finite and positive.
pub fn steps_for_epochs(epochs: f64, q: f64) -> Result<u64> {
    validate_q(q)?;
    if q == 0.0 {
        return Err(Error::InvalidSamplingRate(q));
    }
    if !(epochs.is_finite() && epochs > 0.0) {
        return Err(Error::InvalidEpochs(epochs));
    }
    let steps = (epochs / q).ceil();
    // Guard against the division rounding a whole number just above itself.
    let near = steps - 1.0;
    Ok(if near * q >= epochs { near } else { steps } as u64)
}

/// Sampling probability of an expected batch of `batch_size` examples out of `dataset_size`.
///
/// Errors: a zero size, or `batch_size > dataset_size`.
pub fn sampling_rate(batch_size: u64, dataset_size: u64) -> Result<f64> {
    if batch_size == 0 || dataset_size == 0 || batch_size > dataset_size {
        return Err(Error::InvalidSizes {
            dataset_size,
            batch_size,
        });
    }
    Ok(batch_size as f64 / dataset_size as f64)
}

/// The smallest noise multiplier, to the tolerance of `options`, such that `steps` steps at
/// sampling probability `q` are (`target_epsilon`, `delta`)-DP.
///
/// Guarantee: the returned `sigma`'s epsilon, computed with upward rounding, is at most
/// `target_epsilon` (the search moves its upper end only to values so verified), and
/// `target_epsilon - epsilon <= epsilon_tolerance` unless the bracket collapsed below
/// `1e-12 * sigma` first. The search is Opacus' (`get_noise_multiplier`): double the upper end
/// from `initial_sigma` until it meets the target, then bisect `[0, upper]`.
///
/// Errors: invalid `target_epsilon` (must be > 0), `delta`, `q` or tolerance;
/// [`Error::BudgetTooSmall`] when even `max_sigma` does not meet the target.
pub fn calibrate_sigma(
    target_epsilon: f64,
    delta: f64,
    q: f64,
    steps: u64,
    options: &CalibrationOptions,
) -> Result<Calibration> {
    validate_epsilon(target_epsilon)?;
    if target_epsilon == 0.0 {
        return Err(Error::InvalidEpsilon(target_epsilon));
    }
    validate_delta(delta)?;
    validate_q(q)?;
    let tol = options.epsilon_tolerance;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(Error::InvalidTolerance(tol));
    }
    let eps_at = |sigma: f64| -> Result<PrivacyGuarantee> {
        RdpCurve::of_phase(
            &options.orders,
            Phase::new(q, sigma, steps)?,
            options.series,
        )?
        .epsilon(delta)
    };
    let mut evaluations = 0u32;
    if q == 0.0 || steps == 0 {
        // Nothing about any example is released: no noise is needed.
        return Ok(Calibration {
            sigma: 0.0,
            guarantee: eps_at(0.0)?,
            evaluations: 1,
        });
    }
    let mut low = 0.0f64;
    let mut high = validate_sigma(options.initial_sigma)?;
    let mut at_high;
    loop {
        high *= 2.0;
        at_high = eps_at(high)?;
        evaluations += 1;
        if at_high.epsilon <= target_epsilon {
            break;
        }
        if high > options.max_sigma {
            return Err(Error::BudgetTooSmall {
                target_epsilon,
                epsilon_at_limit: at_high.epsilon,
                sigma_limit: high,
            });
        }
    }
    while target_epsilon - at_high.epsilon > tol && high - low > 1e-12 * high {
        let mid = 0.5 * (low + high);
        let at_mid = eps_at(mid)?;
        evaluations += 1;
        if at_mid.epsilon <= target_epsilon {
            high = mid;
            at_high = at_mid;
        } else {
            low = mid;
        }
    }
    Ok(Calibration {
        sigma: high,
        guarantee: at_high,
        evaluations,
    })
}

/// The result of [`max_steps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepBudget {
    /// The largest number of steps within the target; `None` when every number of steps is
    /// (the mechanism releases nothing: `q = 0` or `sigma = inf`).
    pub steps: Option<u64>,
    /// The guarantee at that number of steps (`None` when unlimited).
    pub guarantee: Option<PrivacyGuarantee>,
}

/// The largest number of steps at (`q`, `sigma`) that stays within (`target_epsilon`, `delta`).
///
/// Guarantee: the epsilon of the returned number of steps, computed with upward rounding, is at
/// most the target, and one more step would exceed it. Zero steps (no release) are always within
/// budget, so the answer is 0 when even one step is too many. Epsilon is non-decreasing in the
/// number of steps (RDP values are non-negative), which makes the binary search exact.
///
/// Errors: invalid `target_epsilon`, `delta`, `q` or `sigma`.
pub fn max_steps(
    target_epsilon: f64,
    delta: f64,
    q: f64,
    sigma: f64,
    orders: &Orders,
    series: FractionalSeries,
) -> Result<StepBudget> {
    validate_epsilon(target_epsilon)?;
    validate_delta(delta)?;
    let per_step = RdpCurve::of_phase(orders, Phase::new(q, sigma, 1)?, series)?;
    if per_step.values().contains(&0.0) {
        return Ok(StepBudget {
            steps: None,
            guarantee: None,
        });
    }
    let eps_at = |steps: u64| -> Result<PrivacyGuarantee> {
        RdpCurve::of_phase(orders, Phase::new(q, sigma, steps)?, series)?.epsilon(delta)
    };
    // Largest power-of-two bracket [ok, bad) with eps(ok) <= target < eps(bad).
    let mut ok = 0u64;
    let mut ok_guarantee = Some(eps_at(0)?);
    let mut bad = 1u64;
    loop {
        let g = eps_at(bad)?;
        if g.epsilon > target_epsilon {
            break;
        }
        ok = bad;
        ok_guarantee = Some(g);
        if bad >= 1 << 52 {
            // Beyond 2^52 steps, f64 step counts stop being exact; no real run gets here.
            return Ok(StepBudget {
                steps: Some(ok),
                guarantee: ok_guarantee,
            });
        }
        bad *= 2;
    }
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        let g = eps_at(mid)?;
        if g.epsilon <= target_epsilon {
            ok = mid;
            ok_guarantee = Some(g);
        } else {
            bad = mid;
        }
    }
    Ok(StepBudget {
        steps: Some(ok),
        guarantee: ok_guarantee,
    })
}
