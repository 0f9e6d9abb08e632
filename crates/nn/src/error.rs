//! The nn crate's error type.

use sparsedp_tensor::TensorError;
use std::fmt;

/// Why a model, mask or engine request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum NnError {
    /// A tensor operation failed (shapes, arguments).
    Tensor(TensorError),
    /// A mask does not fit the parameters it is applied to.
    MaskMismatch {
        /// Parameter name.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is invalid (clipping norm, chunk size, multiplicity, ...).
    InvalidConfig(String),
    /// The batch is malformed (label count, label range, shape).
    InvalidBatch(String),
    /// A loss or gradient became NaN or infinite.
    NonFinite(String),
}

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NnError::Tensor(e) => write!(f, "{e}"),
            NnError::MaskMismatch { param, reason } => {
                write!(f, "mask for parameter '{param}': {reason}")
            }
            NnError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            NnError::InvalidBatch(m) => write!(f, "invalid batch: {m}"),
            NnError::NonFinite(m) => write!(f, "non-finite value: {m}"),
        }
    }
}

impl std::error::Error for NnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NnError::Tensor(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TensorError> for NnError {
    fn from(e: TensorError) -> Self {
        NnError::Tensor(e)
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, NnError>;
