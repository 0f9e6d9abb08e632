//! # sparsedp-prune
//!
//! Parameter freezing for sparse DP-SGD (Adamczewski, He & Park 2023): before training, score
//! every weight, keep the best ones at a target density and freeze the rest for the whole run.
//!
//! * [`scores`]: random, magnitude, SynFlow (Tanaka et al. 2020, iterative, data-free), SNIP
//!   (Lee et al. 2019) and GraSP (Wang et al. 2020), the last two on **public data only**. Each score's rustdoc states what it reads and so its
//!   privacy cost.
//! * [`DataBatch`]: data provenance in the types. A score that reads data takes a batch built as
//!   [`DataBatch::public`] or [`DataBatch::private`] and refuses the latter with
//!   [`PruneError::PrivateData`]: sparsedp implements no DP variant of data-dependent scores.
//! * [`mask`]: global or layer-wise masks at a density, never pruning biases and normalisation
//!   parameters, deterministic ties, no emptied layer; output is a [`sparsedp_nn::ParamMask`].
//! * [`DensityReport`]: kept/total per tensor, printable as a table.
//! * [`io`]: safetensors checkpoints of parameters, mask and extra tensors, written atomically.
//!
//! Why the resulting training stays (epsilon, delta)-DP is in `docs/method.md`: the mask depends
//! on no private data, so DP-SGD on the active coordinates keeps its guarantee.

mod data;
mod error;
pub mod io;
pub mod mask;
mod report;
pub mod scores;

pub use data::{DataBatch, DataProvenance};
pub use error::{PruneError, Result};
pub use mask::{MaskConfig, Scope, mask_from_scores};
pub use report::{DensityReport, LayerDensity};
pub use scores::{
    PruneScore, Scores, SynflowConfig, SynflowRescale, SynflowScores, grasp_scores,
    magnitude_scores, prune, random_scores, snip_scores, synflow_mask, synflow_scores,
};
