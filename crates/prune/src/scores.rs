//! Pruning scores: one non-negative number per parameter element, higher is more important.
//!
//! | score | reads | privacy cost |
//! |---|---|---|
//! | [`random_scores`] | a seed | none |
//! | [`magnitude_scores`] | the weights | none at initialisation or for a public / non-private pretrained model; weights trained on private data by DP-SGD are DP outputs, so post-processing them is free too |
//! | [`synflow_scores`], [`synflow_mask`] | the weights and the architecture (all-ones input) | none: no data at all |
//! | [`snip_scores`] | a **public** batch | none; a private batch is refused with [`PruneError::PrivateData`] |
//! | [`grasp_scores`] | a **public** batch | none; a private batch is refused with [`PruneError::PrivateData`] |
//!
//! sparsedp implements no differentially private SNIP or GraSP: running them on private data
//! would need its own mechanism and accounting, and is refused instead.

use crate::data::DataBatch;
use crate::error::{PruneError, Result};
use crate::mask::{MaskConfig, check_density, mask_from_scores};
use sparsedp_nn::{BackwardMode, Model, ParamId, ParamMask, ParamRole, ParamStore, Tape};
use sparsedp_tensor::{Tensor, TensorRng};

/// One score per element of every parameter, indexed like the [`ParamStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    values: Vec<Vec<f32>>,
}

impl Scores {
    /// Scores from one row-major vector per parameter, checked against `store`.
    pub fn new(store: &ParamStore, values: Vec<Vec<f32>>) -> Result<Self> {
        let s = Scores { values };
        s.check(store)?;
        Ok(s)
    }

    /// Errors unless there is one score per element of every parameter of `store`.
    pub fn check(&self, store: &ParamStore) -> Result<()> {
        if self.values.len() != store.len() {
            return Err(PruneError::InvalidConfig(format!(
                "{} score vectors for {} parameters",
                self.values.len(),
                store.len()
            )));
        }
        for ((_, p), v) in store.iter().zip(&self.values) {
            if v.len() != p.value.numel() {
                return Err(PruneError::ScoreMismatch {
                    param: p.name.clone(),
                    reason: format!("{} scores for {} elements", v.len(), p.value.numel()),
                });
            }
        }
        Ok(())
    }

    /// The scores of parameter `id` (empty if `id` is out of range).
    pub fn get(&self, id: ParamId) -> &[f32] {
        self.values.get(id.0).map_or(&[], |v| v.as_slice())
    }

    /// All score vectors.
    pub fn values(&self) -> &[Vec<f32>] {
        &self.values
    }
}

fn cpu_values(t: &Tensor) -> Vec<f32> {
    t.to_vec()
}

/// Random scores: i.i.d. uniform on `[0, 1)`, reproducible from `seed`.
///
/// **Reads:** nothing but the seed and the parameter shapes. **Privacy cost:** none.
pub fn random_scores(store: &ParamStore, seed: u64) -> Result<Scores> {
    let mut rng = TensorRng::seeded(seed);
    let values = store
        .iter()
        .map(|(_, p)| Ok(Tensor::rand_uniform(p.value.shape(), 0.0, 1.0, &mut rng)?.into_vec()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Scores { values })
}

/// Magnitude scores `|w|` of the store's current values.
///
/// **Reads:** the weights. **Privacy cost:** none when the weights are a fresh initialisation or
/// come from a public (non-private) pretrained model. For weights produced by DP-SGD on private
/// data the scores are post-processing of DP outputs, also free; for weights trained
/// non-privately on private data they are NOT free (sparsedp cannot tell, the caller must).
pub fn magnitude_scores(store: &ParamStore) -> Scores {
    let values = store
        .iter()
        .map(|(_, p)| cpu_values(&p.value).into_iter().map(f32::abs).collect())
        .collect();
    Scores { values }
}

/// SNIP connection sensitivity (Lee et al. 2019): `|w * dL/dw|` with `L` the summed
/// cross-entropy of a **public** batch, at the model's current weights.
///
/// **Reads:** the weights and the batch. **Privacy cost:** none for a public batch; a private
/// batch is refused with [`PruneError::PrivateData`] (sparsedp implements no DP-SNIP).
pub fn snip_scores(model: &dyn Model, batch: &DataBatch<'_>) -> Result<Scores> {
    let (x, labels) = batch.require_public("snip")?;
    let (grads, _) = sparsedp_nn::batch_gradient(model, x, labels)?;
    let values = model
        .params()
        .iter()
        .zip(&grads)
        .map(|((_, p), g)| {
            let w = cpu_values(&p.value);
            let g = cpu_values(g);
            w.iter().zip(&g).map(|(w, g)| (w * g).abs()).collect()
        })
        .collect::<Vec<Vec<f32>>>();
    let s = Scores { values };
    check_finite_scores(model.params(), &s, "snip")?;
    Ok(s)
}

/// Summed cross-entropy gradient of `batch` at the parameters `params` (which must fit
/// `model`), with the model's forward recorded on a tape over `params`.
fn gradient_at(
    model: &dyn Model,
    params: &ParamStore,
    x: &Tensor,
    labels: &[usize],
) -> Result<Vec<Vec<f64>>> {
    let mut tape = Tape::new(params);
    let input = tape.input(x.clone());
    let logits = model.forward(&mut tape, input)?;
    let loss = tape.cross_entropy(logits, labels)?;
    let n = tape.value(loss).numel();
    let grads = tape.backward(loss, Tensor::ones(&[n]), BackwardMode::Full)?;
    Ok(params
        .iter()
        .map(|(id, p)| match grads.get(id) {
            None => vec![0.0; p.value.numel()],
            Some(g) => g.to_vec().into_iter().map(f64::from).collect(),
        })
        .collect())
}

/// GraSP (Wang, Zhang & Grosse 2020), gradient signal preservation: importance `w * (H g)` of
/// each weight, with `g` the gradient of the summed cross-entropy of a **public** batch and `H`
/// its Hessian, both with respect to the weight tensors (`ParamRole::Weight`; other parameters
/// score 0). GraSP removes the weights with the largest `-w * (H g)`, i.e. keeps the largest
/// `w * (H g)`, so the scores here follow this crate's "higher is kept" convention. Scores are
/// signed.
///
/// `H g` is a central finite difference of gradients along `g`:
/// `(grad(w + e g) - grad(w - e g)) / (2 e)` with `e = 1e-3 ||w|| / ||g||` (norms over the
/// weight tensors), differences taken in `f64`. The temperature on the logits used by the
/// reference implementation is not applied. Errors if the gradient is zero.
///
/// **Reads:** the weights and the batch. **Privacy cost:** none for a public batch; a private
/// batch is refused with [`PruneError::PrivateData`] (sparsedp implements no DP-GraSP).
pub fn grasp_scores(model: &dyn Model, batch: &DataBatch<'_>) -> Result<Scores> {
    let (x, labels) = batch.require_public("grasp")?;
    sparsedp_nn::batch_gradient(model, x, labels)?; // validates the batch against the model
    let store = model.params();
    let is_w: Vec<bool> = store
        .iter()
        .map(|(_, p)| p.role == ParamRole::Weight)
        .collect();
    let g = gradient_at(model, store, x, labels)?;
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let gn = norm(
        &mut g
            .iter()
            .zip(&is_w)
            .filter(|(_, w)| **w)
            .flat_map(|(g, _)| g.iter().copied()),
    );
    let wn = norm(
        &mut store
            .iter()
            .filter(|(id, _)| is_w[id.0])
            .flat_map(|(_, p)| p.value.to_vec().into_iter().map(f64::from)),
    );
    if !(gn.is_finite() && gn > 0.0) {
        return Err(PruneError::NonFinite(format!(
            "GraSP needs a finite, non-zero gradient; its norm is {gn}"
        )));
    }
    let e = 1e-3 * wn.max(1e-3) / gn;
    let shifted = |sign: f64| -> Result<ParamStore> {
        let mut s = store.clone();
        for (id, p) in s.iter_mut() {
            if is_w[id.0] {
                let v: Vec<f32> = p
                    .value
                    .to_vec()
                    .iter()
                    .zip(&g[id.0])
                    .map(|(&w, &g)| (f64::from(w) + sign * e * g) as f32)
                    .collect();
                p.value = Tensor::from_vec(v, p.value.shape())?;
            }
        }
        Ok(s)
    };
    let plus = gradient_at(model, &shifted(1.0)?, x, labels)?;
    let minus = gradient_at(model, &shifted(-1.0)?, x, labels)?;
    let values = store
        .iter()
        .map(|(id, p)| {
            if !is_w[id.0] {
                return vec![0.0; p.value.numel()];
            }
            p.value
                .to_vec()
                .iter()
                .zip(plus[id.0].iter().zip(&minus[id.0]))
                .map(|(&w, (a, b))| (f64::from(w) * (a - b) / (2.0 * e)) as f32)
                .collect()
        })
        .collect::<Vec<Vec<f32>>>();
    let s = Scores { values };
    check_finite_scores(store, &s, "grasp")?;
    Ok(s)
}

fn check_finite_scores(store: &ParamStore, s: &Scores, what: &str) -> Result<()> {
    for ((_, p), v) in store.iter().zip(&s.values) {
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(PruneError::NonFinite(format!(
                "{what} score {x} in parameter '{}'",
                p.name
            )));
        }
    }
    Ok(())
}

/// How SynFlow keeps the path sum `R` inside `f32` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SynflowRescale {
    /// Raw `|w|`: exact SynFlow scores; `R` overflows `f32` on deep networks (reported as
    /// [`PruneError::NonFinite`]).
    None,
    /// Divide each weight (and norm-scale) tensor by its mean absolute row sum (the gain of the
    /// layer on a positive all-ones input), so activations and gradients stay near 1 at every
    /// depth. Since the score of a weight in layer `l` is `|w dR/dw|` with both factors taken in
    /// the rescaled network, every score is multiplied by the same constant `S = prod_l s_l`
    /// whenever `R` is multilinear with each path crossing each scaled tensor once (chains of
    /// linear/conv layers, pooling, flatten: MLPs, plain CNNs, VGG): the ranking, and so the
    /// mask, is exactly that of unscaled SynFlow. (Multiplying the *unscaled* `|w|` by the
    /// rescaled gradient instead would be off by `S / s_l` per layer and change the ranking.) In
    /// residual networks paths of different lengths are weighted differently after rescaling,
    /// so the scores approximate SynFlow's.
    #[default]
    PerLayer,
}

/// SynFlow scores of one pass and the log of their common scale factor.
#[derive(Debug, Clone, PartialEq)]
pub struct SynflowScores {
    /// `|w' * dR'/dw'|` in the (rescaled) linearised network, indexed like the store.
    pub scores: Scores,
    /// `ln S`: the returned scores are the unscaled SynFlow scores times `S` (0 without
    /// rescaling; exact for chain networks, see [`SynflowRescale::PerLayer`]).
    pub log_scale: f64,
    /// The path sum `R'` of the (rescaled) network.
    pub objective: f64,
    /// Weights whose layer keeps a weight transform on the linearised tape: weight tying by an
    /// index map (equivariant convolutions), where `R` is a path product of the tied `|w|`.
    /// They are not rescaled. Weight standardisation is bypassed on linearised tapes (it is a
    /// normalisation), so standardised layers are exact SynFlow and are not listed.
    pub transformed: Vec<String>,
}

/// One SynFlow pass (Tanaka et al. 2020): every weight replaced by `|w|` (times `mask` if given),
/// biases and normalisation shifts set to zero, normalisation scales to `|gamma|`; an all-ones
/// input of the model's shape (batch 1) through a linearised tape (activations and
/// normalisations are the identity, see [`Tape::linearized`]); `R` = the sum of the logits, so
/// `R = 1^T (prod_l |W_l|) 1` is a sum over input-output paths of products of absolute weights;
/// score `|w * dR/dw|`.
///
/// Zeroing biases makes `R` a pure path sum of the weights (and homogeneous, which the
/// rescaling relies on). Weight standardisation (every conv of
/// `sparsedp_nn::models::WideResNet`) is bypassed by the linearised tape like any other
/// normalisation, so `R` stays a path product of `|w|`; weight-tying transforms are kept and
/// listed in [`SynflowScores::transformed`].
///
/// **Reads:** the weights and the architecture; no data. **Privacy cost:** none.
pub fn synflow_scores(
    model: &dyn Model,
    mask: Option<&ParamMask>,
    rescale: SynflowRescale,
) -> Result<SynflowScores> {
    let store = model.params();
    if let Some(m) = mask
        && m.len() != store.len()
    {
        return Err(PruneError::InvalidConfig(format!(
            "mask covers {} parameters, the model has {}",
            m.len(),
            store.len()
        )));
    }
    let [c, h, w] = model.input_shape();
    // Weights behind a weight transform (found by a forward on a linearised tape).
    let transformed: Vec<usize> = {
        let mut tape = Tape::linearized(store);
        let input = tape.input(Tensor::ones(&[1, c, h, w]));
        model.forward(&mut tape, input)?;
        let mut ids: Vec<usize> = tape
            .layers()
            .iter()
            .filter(|l| l.transform.as_ref().is_some_and(|t| !t.is_normalization()))
            .map(|l| l.weight.0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut abs = store.clone();
    let mut log_scale = 0.0f64;
    for (id, p) in abs.iter_mut() {
        let mut v = cpu_values(&p.value);
        match p.role {
            ParamRole::Bias | ParamRole::NormShift => v.iter_mut().for_each(|x| *x = 0.0),
            ParamRole::Weight | ParamRole::NormScale => {
                let m = mask.and_then(|m| m.get(id)).map(cpu_values);
                for (i, x) in v.iter_mut().enumerate() {
                    *x = x.abs() * m.as_ref().map_or(1.0, |m| m[i]);
                }
                if rescale == SynflowRescale::PerLayer && transformed.binary_search(&id.0).is_err()
                {
                    let rows = p.value.shape().first().copied().unwrap_or(1).max(1);
                    let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
                    let gain = sum / rows as f64;
                    if gain > 0.0 && gain.is_finite() {
                        let s = 1.0 / gain;
                        log_scale += s.ln();
                        v.iter_mut().for_each(|x| *x = (f64::from(*x) * s) as f32);
                    }
                }
            }
        }
        p.value = Tensor::from_vec(v, p.value.shape())?;
    }
    let mut tape = Tape::linearized(&abs);
    let input = tape.input(Tensor::ones(&[1, c, h, w]));
    let logits = model.forward(&mut tape, input)?;
    let out = tape.value(logits).to_vec();
    let objective: f64 = out.iter().map(|&x| f64::from(x)).sum();
    if !objective.is_finite() || out.iter().any(|x| !x.is_finite()) {
        return Err(PruneError::NonFinite(format!(
            "the SynFlow path sum R = {objective} left f32 range; use SynflowRescale::PerLayer"
        )));
    }
    let seed = Tensor::ones(tape.value(logits).shape());
    let grads = tape.backward(logits, seed, BackwardMode::Full)?;
    let values = abs
        .iter()
        .map(|(id, p)| match grads.get(id) {
            None => vec![0.0; p.value.numel()],
            Some(g) => {
                let w = cpu_values(&p.value);
                let g = cpu_values(g);
                w.iter().zip(&g).map(|(w, g)| (w * g).abs()).collect()
            }
        })
        .collect::<Vec<Vec<f32>>>();
    let scores = Scores { values };
    check_finite_scores(store, &scores, "synflow")?;
    Ok(SynflowScores {
        scores,
        log_scale,
        objective,
        transformed: transformed
            .into_iter()
            .map(|i| store.get(ParamId(i)).name.clone())
            .collect(),
    })
}

/// Iterative SynFlow settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynflowConfig {
    /// Number of prune-and-rescore rounds `n` (Tanaka et al. use 100).
    pub rounds: usize,
    /// Range control for `R`.
    pub rescale: SynflowRescale,
}

impl Default for SynflowConfig {
    fn default() -> Self {
        SynflowConfig {
            rounds: 100,
            rescale: SynflowRescale::PerLayer,
        }
    }
}

/// Iterative SynFlow pruning to `cfg.density = rho`: at round `k = 1..=n` score the network with
/// the current mask applied and prune to density `rho^(k/n)` among the prunable weights (the
/// exponential schedule of Tanaka et al. 2020); a weight pruned once stays pruned. With one
/// round this is [`mask_from_scores`] of one [`synflow_scores`] pass.
///
/// **Reads:** weights and architecture only. **Privacy cost:** none.
pub fn synflow_mask(
    model: &dyn Model,
    synflow: &SynflowConfig,
    cfg: &MaskConfig,
) -> Result<ParamMask> {
    check_density(cfg.density)?;
    if synflow.rounds == 0 {
        return Err(PruneError::InvalidConfig(
            "SynFlow needs at least one round".to_string(),
        ));
    }
    let store = model.params();
    let mut mask: Option<ParamMask> = None;
    let n = synflow.rounds as f64;
    for k in 1..=synflow.rounds {
        let density = if k == synflow.rounds {
            cfg.density
        } else {
            cfg.density.powf(k as f64 / n)
        };
        let s = synflow_scores(model, mask.as_ref(), synflow.rescale)?;
        let next = mask_from_scores(store, &s.scores, &cfg.with_density(density), mask.as_ref())?;
        mask = Some(next);
    }
    mask.ok_or_else(|| PruneError::InvalidConfig("SynFlow ran no round".to_string()))
}

/// A pruning score with its settings, as a trainer configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneScore {
    /// [`random_scores`] with this seed.
    Random {
        /// Seed of the uniform scores.
        seed: u64,
    },
    /// [`magnitude_scores`] of the model's current weights.
    Magnitude,
    /// Iterative [`synflow_mask`].
    Synflow(SynflowConfig),
    /// [`snip_scores`] on a public batch.
    Snip,
    /// [`grasp_scores`] on a public batch.
    Grasp,
}

impl PruneScore {
    /// Name used in configurations and reports.
    pub fn name(&self) -> &'static str {
        match self {
            PruneScore::Random { .. } => "random",
            PruneScore::Magnitude => "magnitude",
            PruneScore::Synflow(_) => "synflow",
            PruneScore::Snip => "snip",
            PruneScore::Grasp => "grasp",
        }
    }

    /// Whether the score reads a data batch.
    pub fn reads_data(&self) -> bool {
        matches!(self, PruneScore::Snip | PruneScore::Grasp)
    }
}

/// Builds the pruning mask of `model` with `score` at `cfg`. `data` is required by (and only
/// read by) [`PruneScore::Snip`] and [`PruneScore::Grasp`], which refuse private data; the
/// other scores ignore it.
pub fn prune(
    model: &dyn Model,
    score: &PruneScore,
    cfg: &MaskConfig,
    data: Option<&DataBatch<'_>>,
) -> Result<ParamMask> {
    cfg.validate()?;
    let store = model.params();
    let scores = match score {
        PruneScore::Random { seed } => random_scores(store, *seed)?,
        PruneScore::Magnitude => magnitude_scores(store),
        PruneScore::Synflow(s) => return synflow_mask(model, s, cfg),
        PruneScore::Snip => {
            let batch = data.ok_or_else(|| {
                PruneError::InvalidConfig("the snip score needs a public data batch".to_string())
            })?;
            snip_scores(model, batch)?
        }
        PruneScore::Grasp => {
            let batch = data.ok_or_else(|| {
                PruneError::InvalidConfig("the grasp score needs a public data batch".to_string())
            })?;
            grasp_scores(model, batch)?
        }
    };
    mask_from_scores(store, &scores, cfg, None)
}
