//! The select crate's error type.

use sparsedp_nn::NnError;
use sparsedp_prune::PruneError;
use std::fmt;

/// Why a selector or rate schedule was refused.
#[derive(Debug)]
pub enum SelectError {
    /// A selection rate outside `(0, 1]` (or not finite).
    InvalidRate(f64),
    /// Another invalid setting, with an explanation.
    InvalidConfig(String),
    /// The public-gradient selector was called without a public gradient.
    MissingPublicGradient,
    /// A gradient or weight tensor does not fit the parameters the selector was built for.
    Mismatch {
        /// Parameter name.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A weight or gradient read by the selector is NaN or infinite.
    NonFinite(String),
    /// An error from the prune crate (e.g. private data given to the public-gradient helper).
    Prune(PruneError),
    /// An error from the nn crate.
    Nn(NnError),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::InvalidRate(r) => {
                write!(
                    f,
                    "selection rate must be a finite value in (0, 1], got {r}"
                )
            }
            SelectError::InvalidConfig(m) => write!(f, "invalid selector configuration: {m}"),
            SelectError::MissingPublicGradient => write!(
                f,
                "the public-gradient selector needs the gradient of a public batch at every step"
            ),
            SelectError::Mismatch { param, reason } => write!(f, "parameter '{param}': {reason}"),
            SelectError::NonFinite(m) => write!(f, "non-finite value: {m}"),
            SelectError::Prune(e) => write!(f, "{e}"),
            SelectError::Nn(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SelectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SelectError::Prune(e) => Some(e),
            SelectError::Nn(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PruneError> for SelectError {
    fn from(e: PruneError) -> Self {
        SelectError::Prune(e)
    }
}

impl From<NnError> for SelectError {
    fn from(e: NnError) -> Self {
        SelectError::Nn(e)
    }
}

impl From<sparsedp_tensor::TensorError> for SelectError {
    fn from(e: sparsedp_tensor::TensorError) -> Self {
        SelectError::Nn(NnError::Tensor(e))
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, SelectError>;
