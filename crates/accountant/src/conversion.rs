//! From an RDP curve to (epsilon, delta)-DP, and back.
//!
//! A mechanism with RDP `r` at order `alpha > 1` is `(epsilon, delta)`-DP for every `delta` in
//! `(0, 1)` with
//!
//! ```text
//! epsilon = r + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)
//! ```
//!
//! (Balle, Barthe, Gaboardi, Hsu & Sato 2020, "Hypothesis testing interpretations and Renyi
//! differential privacy", Thm. 21; Canonne, Kamath & Steinke 2020, Prop. 12 in v4 of
//! arXiv:2004.00010). It improves Mironov's `r - log(delta) / (alpha - 1)` by
//! `log(alpha)/(alpha-1) - log1p(-1/alpha) > 0`. The reported epsilon is the minimum over the
//! tracked orders; each order gives a valid bound, so the minimum does too.
//!
//! Solving the same inequality for delta gives
//! `log(delta) = (alpha - 1) (r - epsilon + log1p(-1/alpha)) - log(alpha)`, minimised over orders.

use crate::error::{Error, Result};
use crate::logmath::{U, round_up};
use crate::orders::Orders;

/// Where the optimal order sits in the order set, when it sits at an end.
///
/// At an end the true optimum may lie outside the set, so a wider set could give a smaller
/// epsilon (the reported one is still valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEdge {
    /// The smallest order of the set was optimal: add orders closer to 1.
    Lowest,
    /// The largest order of the set was optimal: add larger orders.
    Highest,
}

/// An (epsilon, delta) guarantee read off an RDP curve, with the order that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyGuarantee {
    /// Epsilon (rounded up).
    pub epsilon: f64,
    /// Delta (rounded up where it was computed).
    pub delta: f64,
    /// The Renyi order at which the minimum was attained (`None` when the curve is identically
    /// zero, where no order is needed: epsilon = delta = 0).
    pub order: Option<f64>,
    /// Set when the optimal order is the smallest or largest of a set of more than one order.
    pub edge: Option<OrderEdge>,
}

impl PrivacyGuarantee {
    /// A human-readable warning when the optimal order lies at the edge of the order set.
    pub fn warning(&self) -> Option<String> {
        let order = self.order?;
        match self.edge? {
            OrderEdge::Lowest => Some(format!(
                "the optimal Renyi order {order} is the smallest in the order set; orders closer \
                 to 1 may give a smaller epsilon"
            )),
            OrderEdge::Highest => Some(format!(
                "the optimal Renyi order {order} is the largest in the order set; larger orders \
                 may give a smaller epsilon"
            )),
        }
    }
}

/// Checks `delta` in the open interval `(0, 1)`.
pub fn validate_delta(delta: f64) -> Result<f64> {
    if delta > 0.0 && delta < 1.0 {
        Ok(delta)
    } else {
        Err(Error::InvalidDelta(delta))
    }
}

/// Checks `epsilon`: finite and non-negative.
pub fn validate_epsilon(epsilon: f64) -> Result<f64> {
    if epsilon.is_finite() && epsilon >= 0.0 {
        Ok(epsilon)
    } else {
        Err(Error::InvalidEpsilon(epsilon))
    }
}

fn edge_of(orders: &Orders, index: usize) -> Option<OrderEdge> {
    if orders.len() < 2 {
        None
    } else if index == 0 {
        Some(OrderEdge::Lowest)
    } else if index == orders.len() - 1 {
        Some(OrderEdge::Highest)
    } else {
        None
    }
}

/// The smallest epsilon such that a mechanism with RDP curve `rdp` (at `orders`) is
/// (epsilon, `delta`)-DP, by the conversion in the module docs.
///
/// Guarantee: the returned epsilon is at least the exact minimum over the orders of the
/// conversion formula applied to `rdp` (rounding is directed upwards; see `docs/accountant.md`).
/// If any order has RDP exactly 0 the two output distributions are identical and the result is
/// epsilon = 0. An infinite RDP at every order gives epsilon = `+inf`.
///
/// Errors: `delta` outside `(0, 1)`; `rdp` of the wrong length ([`Error::CurveLength`]) or with
/// a negative or NaN entry ([`Error::InvalidRdp`]).
pub fn epsilon_from_rdp(orders: &Orders, rdp: &[f64], delta: f64) -> Result<PrivacyGuarantee> {
    validate_delta(delta)?;
    check_curve(orders, rdp)?;
    if rdp.contains(&0.0) {
        return Ok(PrivacyGuarantee {
            epsilon: 0.0,
            delta,
            order: None,
            edge: None,
        });
    }
    let ln_delta = delta.ln();
    let mut best = (f64::INFINITY, 0usize);
    for (k, (&alpha, &r)) in orders.as_slice().iter().zip(rdp).enumerate() {
        let a = (-1.0 / alpha).ln_1p();
        let b = (ln_delta + alpha.ln()) / (alpha - 1.0);
        let eps = r + a - b;
        // Each of r, a, b is within a few ulps of its exact value (r exactly as given);
        // the two additions add at most U each of the largest magnitude.
        let eps = round_up(eps + 8.0 * U * (r.abs() + a.abs() + b.abs()), 2.0 * U);
        if eps < best.0 {
            best = (eps, k);
        }
    }
    let (eps, k) = best;
    Ok(PrivacyGuarantee {
        epsilon: eps.max(0.0),
        delta,
        order: Some(orders.as_slice()[k]),
        edge: edge_of(orders, k),
    })
}

/// The smallest delta such that a mechanism with RDP curve `rdp` (at `orders`) is
/// (`epsilon`, delta)-DP, by the conversion in the module docs; capped at 1.
///
/// Guarantee: the returned delta is at least the exact minimum over the orders of the formula
/// (directed rounding). Zero RDP at any order gives delta = 0.
///
/// Errors: `epsilon` negative, NaN or infinite; a malformed curve as in [`epsilon_from_rdp`].
pub fn delta_from_rdp(orders: &Orders, rdp: &[f64], epsilon: f64) -> Result<PrivacyGuarantee> {
    validate_epsilon(epsilon)?;
    check_curve(orders, rdp)?;
    if rdp.contains(&0.0) {
        return Ok(PrivacyGuarantee {
            epsilon,
            delta: 0.0,
            order: None,
            edge: None,
        });
    }
    let mut best = (f64::INFINITY, 0usize);
    for (k, (&alpha, &r)) in orders.as_slice().iter().zip(rdp).enumerate() {
        let a = (-1.0 / alpha).ln_1p();
        let inner = r - epsilon + a;
        let log_delta = (alpha - 1.0) * inner - alpha.ln();
        // Error of inner: a few U of (|r| + |epsilon| + |a|); scaled by (alpha - 1); plus the
        // final subtraction.
        let err = 8.0 * U * ((alpha - 1.0) * (r.abs() + epsilon + a.abs()) + alpha.ln());
        let log_delta = log_delta + err;
        if log_delta < best.0 {
            best = (log_delta, k);
        }
    }
    let (log_delta, k) = best;
    // exp adds under one ulp; round_up covers it.
    let delta = round_up(log_delta.exp(), 2.0 * U).min(1.0);
    Ok(PrivacyGuarantee {
        epsilon,
        delta,
        order: Some(orders.as_slice()[k]),
        edge: edge_of(orders, k),
    })
}

fn check_curve(orders: &Orders, rdp: &[f64]) -> Result<()> {
    if orders.len() != rdp.len() {
        return Err(Error::CurveLength {
            orders: orders.len(),
            values: rdp.len(),
        });
    }
    match rdp.iter().find(|r| r.is_nan() || **r < 0.0) {
        Some(&bad) => Err(Error::InvalidRdp(bad)),
        None => Ok(()),
    }
}
