//! Sets of Renyi orders at which RDP curves are tracked.
//!
//! The conversion to (epsilon, delta) minimises over the orders, so the set decides how tight the
//! reported epsilon is (never whether it is valid: every order gives a valid bound).

use crate::error::{Error, Result};
use crate::rdp::validate_order;

/// A validated, sorted, duplicate-free, non-empty set of Renyi orders, each finite and > 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Orders(Vec<f64>);

impl Orders {
    /// Validates and sorts user-supplied orders (duplicates are dropped).
    ///
    /// Errors: [`Error::EmptyOrders`] for an empty set, [`Error::InvalidOrder`] for an order that
    /// is NaN, infinite or not greater than 1.
    pub fn new(orders: impl IntoIterator<Item = f64>) -> Result<Self> {
        let mut v = orders
            .into_iter()
            .map(validate_order)
            .collect::<Result<Vec<_>>>()?;
        if v.is_empty() {
            return Err(Error::EmptyOrders);
        }
        v.sort_by(f64::total_cmp);
        v.dedup();
        Ok(Orders(v))
    }

    /// Opacus' default (`opacus.accountants.rdp.RDPAccountant.DEFAULT_ALPHAS`):
    /// `1.1, 1.2, ..., 10.9` and `12, 13, ..., 63` (151 orders).
    pub fn opacus() -> Self {
        let fractional = (1..100).map(|x| 1.0 + f64::from(x) / 10.0);
        let integer = (12..64).map(f64::from);
        Orders(fractional.chain(integer).collect())
    }

    /// Google dp_accounting's default (`dp_accounting.rdp.RdpAccountant` with `orders=None`):
    /// `2..10, 12, 14, 16, 20, 24, 28, 32, 48, 64, 128, 256, 512, 1024` (22 orders).
    pub fn dp_accounting() -> Self {
        let v = [
            2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 28, 32, 48, 64, 128, 256, 512, 1024,
        ];
        Orders(v.into_iter().map(f64::from).collect())
    }

    /// TensorFlow Privacy's `compute_dp_sgd_privacy` orders:
    /// `1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5`, `5, 6, ..., 63` and `128, 256, 512`.
    pub fn tf_privacy() -> Self {
        let head = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5];
        let mid = (5..64).map(f64::from);
        let tail = [128.0, 256.0, 512.0];
        Orders(head.into_iter().chain(mid).chain(tail).collect())
    }

    /// The orders, ascending.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Number of orders.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an `Orders` is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Orders {
    /// The default is Opacus' set: its fine grid of fractional orders below 11 matters in the
    /// small-epsilon regime, where the optimal order is often between 1 and 3.
    fn default() -> Self {
        Orders::opacus()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_sorted_and_sized() {
        for (o, n) in [
            (Orders::opacus(), 151),
            (Orders::dp_accounting(), 22),
            (Orders::tf_privacy(), 72),
        ] {
            assert_eq!(o.len(), n);
            assert_eq!(Orders::new(o.as_slice().iter().copied()).unwrap(), o);
        }
    }

    #[test]
    fn new_validates_sorts_and_dedups() {
        assert_eq!(
            Orders::new([3.0, 2.0, 3.0]).unwrap().as_slice(),
            &[2.0, 3.0]
        );
        assert_eq!(Orders::new([]), Err(Error::EmptyOrders));
        assert_eq!(Orders::new([1.0]), Err(Error::InvalidOrder(1.0)));
        assert!(matches!(Orders::new([f64::NAN]), Err(Error::InvalidOrder(x)) if x.is_nan()));
        assert_eq!(
            Orders::new([2.0, f64::INFINITY]),
            Err(Error::InvalidOrder(f64::INFINITY))
        );
    }
}
