//! Public/private splits of a training set, and using another dataset as public data.
//!
//! DP-SGD protects the private part only. Data marked public (for pruning scores such as SNIP,
//! or for choosing hyperparameters) must be disjoint from the private part, and the Poisson
//! sampler must run over the private part alone: its `n` is `private.len()`.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::rng::{self, Purpose};

/// Disjoint index sets covering `0..n`, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Indices of the public part.
    pub public: Vec<usize>,
    /// Indices of the private part.
    pub private: Vec<usize>,
}

/// Splits `0..n` at random into a public part of `round(public_fraction * n)` examples and a
/// private part of the rest; the same `(n, public_fraction, seed)` always gives the same split.
///
/// # Errors
/// [`DataError::InvalidArgument`] when `public_fraction` is not in [0, 1].
pub fn public_private_split(n: usize, public_fraction: f64, seed: u64) -> Result<SplitIndices> {
    if !(0.0..=1.0).contains(&public_fraction) {
        return Err(DataError::InvalidArgument {
            name: "public fraction",
            detail: format!("{public_fraction} is not in [0, 1]"),
        });
    }
    let k = ((public_fraction * n as f64).round() as usize).min(n);
    let mut perm: Vec<usize> = (0..n).collect();
    rng::shuffle(
        &mut rng::stream(seed, Purpose::Split, &[n as u64]),
        &mut perm,
    );
    let mut public = perm[..k].to_vec();
    let mut private = perm[k..].to_vec();
    public.sort_unstable();
    private.sort_unstable();
    Ok(SplitIndices { public, private })
}

/// A public and a private dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicPrivate {
    /// Public data (no privacy cost to read).
    pub public: Dataset,
    /// Private data (read only through DP-SGD).
    pub private: Dataset,
}

/// Where public data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PublicSource {
    /// No public data: everything is private.
    None,
    /// A seeded random fraction of the training set (see [`public_private_split`]).
    Fraction {
        /// Fraction in [0, 1] of the training set made public.
        fraction: f64,
        /// Seed of the split.
        seed: u64,
    },
    /// Another dataset (e.g. Fashion-MNIST as public data for MNIST); the training set stays
    /// entirely private.
    Other(Dataset),
}

impl PublicSource {
    /// Applies this choice to a training set.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] for a fraction outside [0, 1], or another dataset whose image
    /// shape differs from the training set's.
    pub fn apply(self, train: Dataset) -> Result<PublicPrivate> {
        match self {
            Self::None => {
                let empty = train.subset(&[], format!("{}-public", train.name()))?;
                Ok(PublicPrivate {
                    public: empty,
                    private: train,
                })
            }
            Self::Fraction { fraction, seed } => {
                let s = public_private_split(train.len(), fraction, seed)?;
                Ok(PublicPrivate {
                    public: train.subset(&s.public, format!("{}-public", train.name()))?,
                    private: train.subset(&s.private, format!("{}-private", train.name()))?,
                })
            }
            Self::Other(public) => {
                if public.shape() != train.shape() {
                    return Err(DataError::InvalidArgument {
                        name: "public dataset",
                        detail: format!(
                            "{} has images of {:?}, but {} has {:?}",
                            public.name(),
                            public.shape(),
                            train.name(),
                            train.shape()
                        ),
                    });
                }
                Ok(PublicPrivate {
                    public,
                    private: train,
                })
            }
        }
    }
}
