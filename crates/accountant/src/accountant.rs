//! Composition: an accountant that records every step of training and reports the privacy spent.
//!
//! RDP composes additively: running mechanisms with RDP curves `r_1, r_2, ...` (at the same
//! orders) on the same data is RDP with curve `r_1 + r_2 + ...` (Mironov 2017, Prop. 1). A
//! phase of `T` identical steps therefore has curve `T * r`, and phases with different `q`,
//! `sigma` or lengths simply add.

use crate::conversion::{PrivacyGuarantee, delta_from_rdp, epsilon_from_rdp};
use crate::error::{Error, Result};
use crate::logmath::{U, round_up};
use crate::orders::Orders;
use crate::rdp::{FractionalSeries, rdp_subsampled_gaussian, validate_q, validate_sigma};

/// `steps` steps of the Poisson-subsampled Gaussian mechanism with sampling probability `q` and
/// noise multiplier `sigma`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Probability that each example joins each step's batch.
    pub q: f64,
    /// Noise standard deviation divided by the clipping norm.
    pub sigma: f64,
    /// Number of steps.
    pub steps: u64,
}

impl Phase {
    /// A validated phase. Errors: `q` outside `[0, 1]` or NaN; `sigma` negative or NaN.
    pub fn new(q: f64, sigma: f64, steps: u64) -> Result<Self> {
        validate_q(q)?;
        validate_sigma(sigma)?;
        Ok(Phase { q, sigma, steps })
    }
}

/// RDP values of a mechanism at each order of an [`Orders`] set.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpCurve {
    orders: Orders,
    values: Vec<f64>,
}

impl RdpCurve {
    /// The curve of a mechanism that released nothing: zero at every order.
    pub fn zero(orders: Orders) -> Self {
        let values = vec![0.0; orders.len()];
        RdpCurve { orders, values }
    }

    /// The curve of one phase: `steps * rdp(q, sigma, alpha)` at each order.
    ///
    /// Guarantee: each value is at least the exact RDP of the phase at that order (up to the
    /// documented caveat of [`FractionalSeries::Signed`]).
    pub fn of_phase(orders: &Orders, phase: Phase, series: FractionalSeries) -> Result<Self> {
        let per_step = orders
            .as_slice()
            .iter()
            .map(|&alpha| rdp_subsampled_gaussian(phase.q, phase.sigma, alpha, series))
            .collect::<Result<Vec<_>>>()?;
        Ok(RdpCurve::zero(orders.clone()).plus_scaled(&per_step, phase.steps))
    }

    /// An arbitrary curve, e.g. from another accountant. Errors: a length mismatch or a negative
    /// or NaN value.
    pub fn from_values(orders: Orders, values: Vec<f64>) -> Result<Self> {
        // Reuse the conversion's validation of curves.
        epsilon_from_rdp(&orders, &values, 0.5)?;
        Ok(RdpCurve { orders, values })
    }

    /// The orders.
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// The RDP value at each order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// `self + steps * per_step`, rounded upwards (the product and the sum each round once).
    fn plus_scaled(mut self, per_step: &[f64], steps: u64) -> Self {
        if steps > 0 {
            for (v, &r) in self.values.iter_mut().zip(per_step) {
                *v = round_up(*v + steps as f64 * r, 4.0 * U);
            }
        }
        self
    }

    /// Sequential composition with another curve at the same orders (Mironov 2017, Prop. 1).
    /// Errors: [`Error::OrdersMismatch`] if the curves are at different orders.
    pub fn compose(&self, other: &RdpCurve) -> Result<RdpCurve> {
        if self.orders != other.orders {
            return Err(Error::OrdersMismatch);
        }
        Ok(self.clone().plus_scaled(&other.values, 1))
    }

    /// Epsilon at `delta` ([`epsilon_from_rdp`]).
    pub fn epsilon(&self, delta: f64) -> Result<PrivacyGuarantee> {
        epsilon_from_rdp(&self.orders, &self.values, delta)
    }

    /// Delta at `epsilon` ([`delta_from_rdp`]).
    pub fn delta(&self, epsilon: f64) -> Result<PrivacyGuarantee> {
        delta_from_rdp(&self.orders, &self.values, epsilon)
    }
}

/// Tracks the privacy spent by a training run, step by step or phase by phase.
///
/// Consecutive steps with the same `q` and `sigma` are merged into one [`Phase`], and the per-step
/// RDP of each distinct `(q, sigma)` is computed once, so recording a step costs a comparison.
/// The curve is recomputed from the history on demand, so the reported epsilon depends only on
/// the history (a resumed run reports exactly what an uninterrupted one would).
#[derive(Debug, Clone)]
pub struct RdpAccountant {
    orders: Orders,
    series: FractionalSeries,
    /// The history, with each phase's per-step RDP curve.
    phases: Vec<(Phase, Vec<f64>)>,
}

impl RdpAccountant {
    /// An accountant with no history, tracking `orders`, summing fractional orders with `series`.
    pub fn new(orders: Orders, series: FractionalSeries) -> Self {
        RdpAccountant {
            orders,
            series,
            phases: Vec::new(),
        }
    }

    /// An accountant that replays `history` (e.g. restored from a checkpoint).
    pub fn with_history(
        orders: Orders,
        series: FractionalSeries,
        history: &[Phase],
    ) -> Result<Self> {
        let mut acc = RdpAccountant::new(orders, series);
        for &phase in history {
            acc.compose(phase)?;
        }
        Ok(acc)
    }

    /// Records one step at sampling probability `q` and noise multiplier `sigma`.
    pub fn step(&mut self, q: f64, sigma: f64) -> Result<()> {
        self.compose(Phase::new(q, sigma, 1)?)
    }

    /// Records a phase of `phase.steps` steps.
    pub fn compose(&mut self, phase: Phase) -> Result<()> {
        let phase = Phase::new(phase.q, phase.sigma, phase.steps)?;
        if phase.steps == 0 {
            return Ok(());
        }
        if let Some((last, _)) = self.phases.last_mut()
            && last.q == phase.q
            && last.sigma == phase.sigma
        {
            last.steps += phase.steps;
            return Ok(());
        }
        let per_step = self.per_step_curve(phase.q, phase.sigma)?;
        self.phases.push((phase, per_step));
        Ok(())
    }

    /// Per-step RDP at this accountant's orders, reusing an earlier phase's when it matches.
    fn per_step_curve(&self, q: f64, sigma: f64) -> Result<Vec<f64>> {
        if let Some((_, curve)) = self
            .phases
            .iter()
            .find(|(p, _)| p.q == q && p.sigma == sigma)
        {
            return Ok(curve.clone());
        }
        let unit = Phase::new(q, sigma, 1)?;
        Ok(RdpCurve::of_phase(&self.orders, unit, self.series)?.values)
    }

    /// The history: phases in the order they were recorded, consecutive equal ones merged.
    pub fn history(&self) -> Vec<Phase> {
        self.phases.iter().map(|(p, _)| *p).collect()
    }

    /// Total number of steps recorded.
    pub fn steps(&self) -> u64 {
        self.phases.iter().map(|(p, _)| p.steps).sum()
    }

    /// The orders tracked.
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// The series used for fractional orders.
    pub fn series(&self) -> FractionalSeries {
        self.series
    }

    /// The composed RDP curve of the whole history.
    pub fn curve(&self) -> RdpCurve {
        self.phases
            .iter()
            .fold(RdpCurve::zero(self.orders.clone()), |c, (p, per_step)| {
                c.plus_scaled(per_step, p.steps)
            })
    }

    /// The composed curve if `extra` steps at (`q`, `sigma`) were added: what a trainer checks
    /// before taking a step, so it can stop before the budget would be exceeded.
    pub fn curve_with(&self, q: f64, sigma: f64, extra: u64) -> Result<RdpCurve> {
        let per_step = self.per_step_curve(q, sigma)?;
        Ok(self.curve().plus_scaled(&per_step, extra))
    }

    /// Epsilon spent so far at `delta`. Errors: `delta` outside `(0, 1)`.
    pub fn epsilon(&self, delta: f64) -> Result<PrivacyGuarantee> {
        self.curve().epsilon(delta)
    }

    /// Delta spent so far at `epsilon`. Errors: `epsilon` negative or not finite.
    pub fn delta(&self, epsilon: f64) -> Result<PrivacyGuarantee> {
        self.curve().delta(epsilon)
    }
}

impl Default for RdpAccountant {
    /// Opacus' orders with the conservative absolute-value series.
    fn default() -> Self {
        RdpAccountant::new(Orders::default(), FractionalSeries::default())
    }
}
