//! The accountant's error type.
//!
//! Every public function validates its input and returns one of these instead of panicking or
//! silently producing a number: a privacy claim computed from a NaN is worse than no claim.

use std::fmt;

/// Why an accounting request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The sampling probability `q` is not a number in `[0, 1]`.
    InvalidSamplingRate(f64),
    /// The noise multiplier `sigma` is negative or NaN.
    InvalidNoiseMultiplier(f64),
    /// A Renyi order is not a finite number greater than 1.
    InvalidOrder(f64),
    /// The set of Renyi orders is empty.
    EmptyOrders,
    /// `delta` is not in the open interval `(0, 1)`.
    InvalidDelta(f64),
    /// `epsilon` is negative, NaN or infinite where a finite target is needed.
    InvalidEpsilon(f64),
    /// A count of epochs is not a finite positive number.
    InvalidEpochs(f64),
    /// A dataset or batch size is zero, or the batch is larger than the dataset.
    InvalidSizes {
        /// Number of examples in the dataset.
        dataset_size: u64,
        /// Expected (logical) batch size.
        batch_size: u64,
    },
    /// A calibration tolerance is not a finite positive number.
    InvalidTolerance(f64),
    /// No noise multiplier up to the search limit meets the target: the budget is too small.
    BudgetTooSmall {
        /// The epsilon that was asked for.
        target_epsilon: f64,
        /// The epsilon reached at the largest noise multiplier tried.
        epsilon_at_limit: f64,
        /// The largest noise multiplier tried.
        sigma_limit: f64,
    },
    /// An RDP curve does not have one value per order.
    CurveLength {
        /// Number of orders.
        orders: usize,
        /// Number of RDP values given.
        values: usize,
    },
    /// Two RDP curves to be composed are tracked at different orders.
    OrdersMismatch,
    /// An RDP value is negative or NaN.
    InvalidRdp(f64),
    /// The signed fractional-order series cancelled to a non-positive value, so floating point
    /// cannot represent the result; the absolute-value bound is always computable.
    SignedSeriesCancellation {
        /// The sampling probability.
        q: f64,
        /// The noise multiplier.
        sigma: f64,
        /// The Renyi order.
        order: f64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSamplingRate(q) => {
                write!(f, "sampling rate q must be a number in [0, 1], got {q}")
            }
            Error::InvalidNoiseMultiplier(s) => write!(
                f,
                "noise multiplier sigma must be a non-negative number, got {s}"
            ),
            Error::InvalidOrder(a) => {
                write!(
                    f,
                    "Renyi orders must be finite numbers greater than 1, got {a}"
                )
            }
            Error::EmptyOrders => write!(f, "the set of Renyi orders is empty"),
            Error::InvalidDelta(d) => {
                write!(f, "delta must be in the open interval (0, 1), got {d}")
            }
            Error::InvalidEpsilon(e) => {
                write!(f, "epsilon must be a finite non-negative number, got {e}")
            }
            Error::InvalidEpochs(e) => {
                write!(f, "epochs must be a finite positive number, got {e}")
            }
            Error::InvalidSizes {
                dataset_size,
                batch_size,
            } => write!(
                f,
                "need 0 < batch size <= dataset size, got batch size {batch_size} and dataset size {dataset_size}"
            ),
            Error::InvalidTolerance(t) => {
                write!(f, "tolerance must be a finite positive number, got {t}")
            }
            Error::BudgetTooSmall {
                target_epsilon,
                epsilon_at_limit,
                sigma_limit,
            } => write!(
                f,
                "the privacy budget is too small: even sigma = {sigma_limit} gives epsilon = \
                 {epsilon_at_limit:.6} > target {target_epsilon}; raise epsilon or delta, or \
                 lower q or the number of steps"
            ),
            Error::CurveLength { orders, values } => write!(
                f,
                "an RDP curve needs one value per order: {orders} orders but {values} values"
            ),
            Error::OrdersMismatch => {
                write!(f, "cannot compose RDP curves tracked at different orders")
            }
            Error::InvalidRdp(r) => {
                write!(f, "RDP values must be non-negative numbers, got {r}")
            }
            Error::SignedSeriesCancellation { q, sigma, order } => write!(
                f,
                "the signed RDP series lost all precision to cancellation at q = {q}, sigma = \
                 {sigma}, order = {order}; use the absolute-value series (the default)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
