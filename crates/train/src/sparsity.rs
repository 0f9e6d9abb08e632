//! Pre-pruning and per-step selection as the trainer applies them.
//!
//! The active mask of a step is the pruning mask (fixed before training) AND the step's
//! selection. Neither reads private data: pruning scores are data-free or read only the public
//! split, and selections are data-free or read the current weights (themselves DP outputs). See
//! `docs/method.md`.

use crate::config::TrainConfig;
use anyhow::{Context, Result, bail};
use sparsedp_data::{Augment, BatchBuilder, Dataset, DatasetName, Normalize};
use sparsedp_nn::{Model, ParamMask, ParamRole, Tape};
use sparsedp_prune::{DataBatch, MaskConfig, PruneScore, Scope, SynflowConfig, prune};
use sparsedp_select::{Budget, SelectMethod, Selector, SelectorConfig};
use sparsedp_tensor::Tensor;
use std::sync::Arc;

/// Domain separators for the random streams of pruning and selection.
const PRUNE_STREAM: u64 = 0x7072756e65; // "prune"
const SELECT_STREAM: u64 = 0x73656c656374; // "select"

/// Examples of the public split that SNIP scores (the first ones, in dataset order).
const SNIP_EXAMPLES: usize = 512;

/// The pruning mask and the selection rule of a run.
#[derive(Debug, Clone)]
pub struct Sparsity {
    /// Fixed before training (dense when pruning is off).
    pub pruning: ParamMask,
    selector: Option<Selector>,
}

impl Sparsity {
    /// Builds the pruning mask of `cfg` for `model` (reading at most the `public` data) and the
    /// selector of the run.
    pub fn new(
        cfg: &TrainConfig,
        model: &dyn Model,
        public: Option<&Arc<Dataset>>,
        name: DatasetName,
    ) -> Result<Self> {
        let p = &cfg.pruning;
        let mask_cfg = MaskConfig {
            density: p.density,
            scope: if p.scope == "layer" {
                Scope::LayerWise
            } else {
                Scope::Global
            },
            keep_first_layer: p.keep_first_last,
            keep_last_layer: p.keep_first_last,
            allow_empty_layers: false,
        };
        let score = match p.score.as_str() {
            "none" => None,
            "random" => Some(PruneScore::Random {
                seed: cfg.model.seed ^ PRUNE_STREAM,
            }),
            "magnitude" => Some(PruneScore::Magnitude),
            "synflow" => Some(PruneScore::Synflow(SynflowConfig {
                rounds: p.rounds,
                ..SynflowConfig::default()
            })),
            "snip" => Some(PruneScore::Snip),
            other => bail!("unknown pruning.score '{other}'"),
        };
        let pruning = match score {
            None => ParamMask::dense(model.params()),
            Some(PruneScore::Snip) => {
                let public = public.context(
                    "pruning.score = 'snip' needs public data: set data.public_fraction",
                )?;
                let (x, labels) = public_batch(public, name)?;
                prune(
                    model,
                    &PruneScore::Snip,
                    &mask_cfg,
                    Some(&DataBatch::public(&x, &labels)),
                )?
            }
            Some(score) => prune(model, &score, &mask_cfg, None)?,
        };
        let s = &cfg.selection;
        let method = match s.selector.as_str() {
            "none" => None,
            "random" => Some(SelectMethod::Random),
            "magnitude" => Some(SelectMethod::Magnitude),
            other => bail!("unknown selection.selector '{other}'"),
        };
        let selector = match method {
            None => None,
            Some(method) => {
                let mut sc = SelectorConfig::new(method, s.rate, cfg.training.seed ^ SELECT_STREAM);
                sc.budget = if s.scope == "layer" {
                    Budget::LayerWise
                } else {
                    Budget::Global
                };
                Some(Selector::new(model.params(), Some(&pruning), sc)?)
            }
        };
        Ok(Sparsity { pruning, selector })
    }

    /// The coordinates active at `step`: pruning AND this step's selection. Reads the current
    /// weights (DP outputs) for magnitude selection, nothing private.
    pub fn active_mask(&mut self, model: &dyn Model, step: u64) -> Result<ParamMask> {
        match self.selector.as_mut() {
            None => Ok(self.pruning.clone()),
            Some(sel) => Ok(sel.select(step, model.params(), None)?),
        }
    }
}

/// The first examples of the public split as one normalised batch.
fn public_batch(public: &Arc<Dataset>, name: DatasetName) -> Result<(Tensor, Vec<usize>)> {
    let builder = BatchBuilder::new(
        Arc::clone(public),
        Normalize::for_dataset(name),
        Augment::NONE,
        1,
        0,
    )?;
    let idx: Vec<usize> = (0..public.len().min(SNIP_EXAMPLES)).collect();
    let b = builder.build(&idx, 0)?;
    let labels = b.labels.iter().map(|&l| l as usize).collect();
    Ok((Tensor::from_vec(b.data, &b.shape)?, labels))
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

/// Saves `model`'s weights and `mask` (the format of `model.safetensors`).
pub fn save_mask(path: &std::path::Path, model: &dyn Model, mask: &ParamMask) -> Result<()> {
    sparsedp_prune::io::save_params(path, model.params(), Some(mask), &[])?;
    Ok(())
}
