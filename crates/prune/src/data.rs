//! Data provenance in the types: a score that reads data takes a [`DataBatch`], which the caller
//! must build deliberately as [`DataBatch::public`] or [`DataBatch::private`].
//!
//! Scores computed from public data (or from no data) are free: they do not touch the private
//! training set, so masks built from them cost no privacy. Scores computed from private data are
//! not free, and sparsedp implements no differentially private variant of them; every score that
//! reads data refuses a private batch with [`PruneError::PrivateData`].

use crate::error::{PruneError, Result};
use sparsedp_tensor::Tensor;

/// Where a batch of examples comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataProvenance {
    /// Data that is not part of the private training set (e.g. a public dataset); using it costs
    /// no privacy.
    Public,
    /// The private training data (or anything derived from it without a DP mechanism).
    Private,
}

/// A labelled batch together with its provenance.
///
/// There is no default provenance: callers state it by choosing the constructor.
#[derive(Debug, Clone, Copy)]
pub struct DataBatch<'a> {
    x: &'a Tensor,
    labels: &'a [usize],
    provenance: DataProvenance,
}

impl<'a> DataBatch<'a> {
    /// A batch of **public** examples `x: [B, C, H, W]` with one label per example.
    pub fn public(x: &'a Tensor, labels: &'a [usize]) -> Self {
        DataBatch {
            x,
            labels,
            provenance: DataProvenance::Public,
        }
    }

    /// A batch of **private** examples. Every score and selector of sparsedp refuses it; it exists
    /// so that code handling both kinds says which one it holds.
    pub fn private(x: &'a Tensor, labels: &'a [usize]) -> Self {
        DataBatch {
            x,
            labels,
            provenance: DataProvenance::Private,
        }
    }

    /// The inputs.
    pub fn x(&self) -> &'a Tensor {
        self.x
    }

    /// The labels.
    pub fn labels(&self) -> &'a [usize] {
        self.labels
    }

    /// Where the batch comes from.
    pub fn provenance(&self) -> DataProvenance {
        self.provenance
    }

    /// The inputs and labels if the batch is public; [`PruneError::PrivateData`] naming `user`
    /// otherwise.
    pub fn require_public(&self, user: &'static str) -> Result<(&'a Tensor, &'a [usize])> {
        match self.provenance {
            DataProvenance::Public => Ok((self.x, self.labels)),
            DataProvenance::Private => Err(PruneError::PrivateData { score: user }),
        }
    }
}
