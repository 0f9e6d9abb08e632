//! The prune crate's error type.

use sparsedp_nn::NnError;
use sparsedp_tensor::TensorError;
use std::fmt;
use std::path::PathBuf;

/// Why a score, mask, report or checkpoint request was refused.
#[derive(Debug)]
pub enum PruneError {
    /// A score that reads data was given private data. sparsedp implements no differentially
    /// private variant of data-dependent scores: reading private data outside the clipped and
    /// noised gradient sum would void the (epsilon, delta) guarantee.
    PrivateData {
        /// The score that refused (e.g. `"snip"`).
        score: &'static str,
    },
    /// A target density or selection rate outside `(0, 1]` (or not finite).
    InvalidDensity(f64),
    /// Another invalid setting (rounds, scope, sizes), with an explanation.
    InvalidConfig(String),
    /// Scores do not fit the parameters (count or length).
    ScoreMismatch {
        /// Parameter name.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A score or the SynFlow objective became NaN or infinite.
    NonFinite(String),
    /// An error from the nn crate (forward, backward, mask validation).
    Nn(NnError),
    /// A tensor operation failed.
    Tensor(TensorError),
    /// Reading or writing a checkpoint file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A checkpoint is not valid safetensors, or a tensor has the wrong dtype.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parameter of the store has no tensor in the checkpoint.
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The parameter name.
        name: String,
    },
    /// The checkpoint holds a tensor that is neither a parameter, a mask of one (`mask.<name>`),
    /// nor an extra tensor (`extra.<name>`).
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor's shape differs from the parameter's.
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
}

impl fmt::Display for PruneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PruneError::PrivateData { score } => write!(
                f,
                "the '{score}' score reads data and was given PRIVATE data; it is only free of \
                 privacy cost on public data (sparsedp implements no DP variant): pass a public \
                 batch or use a data-free score (random, magnitude, synflow)"
            ),
            PruneError::InvalidDensity(d) => {
                write!(f, "density/rate must be a finite value in (0, 1], got {d}")
            }
            PruneError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            PruneError::ScoreMismatch { param, reason } => {
                write!(f, "scores for parameter '{param}': {reason}")
            }
            PruneError::NonFinite(m) => write!(f, "non-finite value: {m}"),
            PruneError::Nn(e) => write!(f, "{e}"),
            PruneError::Tensor(e) => write!(f, "{e}"),
            PruneError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PruneError::Format { path, reason } => {
                write!(f, "{}: not a valid checkpoint: {reason}", path.display())
            }
            PruneError::MissingTensor { path, name } => write!(
                f,
                "{}: checkpoint has no tensor for parameter '{name}'",
                path.display()
            ),
            PruneError::UnexpectedTensor { path, name } => write!(
                f,
                "{}: checkpoint tensor '{name}' matches no parameter of the model",
                path.display()
            ),
            PruneError::ShapeMismatch {
                path,
                name,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor '{name}' has shape {found:?}, the model expects {expected:?}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PruneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PruneError::Nn(e) => Some(e),
            PruneError::Tensor(e) => Some(e),
            PruneError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<NnError> for PruneError {
    fn from(e: NnError) -> Self {
        PruneError::Nn(e)
    }
}

impl From<TensorError> for PruneError {
    fn from(e: TensorError) -> Self {
        PruneError::Tensor(e)
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, PruneError>;
