//! The crate's error type: every user-facing failure is a value, never a panic.

use std::fmt;

use crate::Device;

/// Result alias used by every fallible tensor operation.
pub type Result<T> = std::result::Result<T, TensorError>;

/// What went wrong in a tensor operation. Each variant names the operation and the offending
/// shapes or values so that a failure deep inside a training step can be traced to its call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorError {
    /// Two operands have shapes that the operation cannot combine.
    ShapeMismatch {
        /// Operation name, e.g. `"matmul"`.
        op: &'static str,
        /// Shape of the left (or first) operand.
        lhs: Vec<usize>,
        /// Shape of the right (or second) operand.
        rhs: Vec<usize>,
    },
    /// A single shape is not acceptable for the operation (wrong rank, zero size, ...).
    InvalidShape {
        /// Operation name.
        op: &'static str,
        /// The rejected shape.
        shape: Vec<usize>,
        /// Why it was rejected.
        reason: String,
    },
    /// A data buffer does not hold as many elements as its shape says.
    LengthMismatch {
        /// Operation name.
        op: &'static str,
        /// Elements the shape needs.
        expected: usize,
        /// Elements provided.
        actual: usize,
    },
    /// An index (axis, class label, gather index) is outside its valid range.
    IndexOutOfRange {
        /// Operation name.
        op: &'static str,
        /// The index that was given.
        index: usize,
        /// The exclusive upper bound it must respect.
        bound: usize,
    },
    /// A scalar argument is invalid (non-positive stride, groups that do not divide channels,
    /// a mask entry that is neither 0 nor 1, ...).
    InvalidArgument {
        /// Operation name.
        op: &'static str,
        /// Human-readable description naming the value.
        reason: String,
    },
    /// Operands live on different devices.
    DeviceMismatch {
        /// Operation name.
        op: &'static str,
        /// Device of the first operand.
        lhs: Device,
        /// Device of the second operand.
        rhs: Device,
    },
    /// The operating system's entropy source failed (secure RNG mode).
    Entropy(String),
    /// A device backend failed: no adapter, a buffer beyond the adapter's limits, a lost
    /// device or a GPU validation error.
    Device {
        /// Operation name.
        op: &'static str,
        /// What the backend reported.
        reason: String,
    },
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorError::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: incompatible shapes {lhs:?} and {rhs:?}")
            }
            TensorError::InvalidShape { op, shape, reason } => {
                write!(f, "{op}: invalid shape {shape:?}: {reason}")
            }
            TensorError::LengthMismatch {
                op,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "{op}: shape needs {expected} elements but {actual} were given"
                )
            }
            TensorError::IndexOutOfRange { op, index, bound } => {
                write!(f, "{op}: index {index} out of range (must be < {bound})")
            }
            TensorError::InvalidArgument { op, reason } => write!(f, "{op}: {reason}"),
            TensorError::DeviceMismatch { op, lhs, rhs } => {
                write!(
                    f,
                    "{op}: operands on different devices ({lhs:?} vs {rhs:?})"
                )
            }
            TensorError::Entropy(msg) => write!(f, "OS entropy source failed: {msg}"),
            TensorError::Device { op, reason } => write!(f, "{op}: device error: {reason}"),
        }
    }
}

impl std::error::Error for TensorError {}

/// Shorthand for an [`TensorError::InvalidArgument`].
pub(crate) fn invalid_arg(op: &'static str, reason: impl Into<String>) -> TensorError {
    TensorError::InvalidArgument {
        op,
        reason: reason.into(),
    }
}

/// Shorthand for an [`TensorError::InvalidShape`].
pub(crate) fn invalid_shape(
    op: &'static str,
    shape: &[usize],
    reason: impl Into<String>,
) -> TensorError {
    TensorError::InvalidShape {
        op,
        shape: shape.to_vec(),
        reason: reason.into(),
    }
}

/// Shorthand for an [`TensorError::ShapeMismatch`].
pub(crate) fn mismatch(op: &'static str, lhs: &[usize], rhs: &[usize]) -> TensorError {
    TensorError::ShapeMismatch {
        op,
        lhs: lhs.to_vec(),
        rhs: rhs.to_vec(),
    }
}
