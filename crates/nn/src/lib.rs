//! # sparsedp-nn
//!
//! The core of DP-SGD: a tape autograd whose parametric operations expose, per layer, the saved
//! input activations and output gradients; CNN layers and the paper's models; parameter masks
//! (pruning AND per-step selection); and exact per-example clipping engines that turn those
//! records into per-example norms and clipped gradient sums (`engine`).
//!
//! Privacy-relevant contract (tested in `tests/nn/engines.rs`): for every engine, the clipped sum
//! is `sum_i c_i (M o G_i)` with `c_i` computed from the norm of the *masked* per-example
//! gradient `M o G_i`, so masked coordinates neither count towards the norm nor receive any
//! gradient. Noise and updates are the trainer's; it must restrict both to the same mask.

pub mod engine;
pub mod equivariant;
mod error;
pub mod layers;
mod mask;
mod model;
pub mod models;
mod param;
mod tape;
mod transform;

pub use engine::{ClipConfig, ClipFunction, ClipOutput, Engine, batch_gradient, clip_batch};
pub use error::{NnError, Result};
pub use mask::ParamMask;
pub use model::Model;
pub use param::{Param, ParamId, ParamRole, ParamStore};
pub use tape::{BackwardMode, Gradients, LayerKind, LayerRecord, Tape, Var};
pub use transform::WeightTransform;
