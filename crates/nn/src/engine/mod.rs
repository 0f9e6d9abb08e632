//! Per-example gradient clipping engines.
//!
//! Every engine computes the same thing for a batch (see `docs/engines.md`):
//! for each example `i`, its gradient restricted to the active coordinates (mask AND
//! selection), `M o G_i`; its L2 norm `n_i` over all layers; the clip factor `c_i`
//! (`min(1, C / n_i)` or `C / (n_i + gamma)`); and the clipped sum `sum_i c_i (M o G_i)`.
//! They differ only in how:
//!
//! | engine | norms | clipped sum |
//! |---|---|---|
//! | [`Engine::Naive`] | one backward per example | sum of clipped per-example gradients |
//! | [`Engine::Materialize`] | per-example `G_i` per layer, in chunks | `sum_i c_i G_i` from them |
//! | [`Engine::Ghost`] | ghost norms wherever exact, else materialised | second backward on `sum_i c_i loss_i` |
//! | [`Engine::Mixed`] | per layer ghost iff `2T^2 <= p d`, else materialised | second backward |
//! | [`Engine::BookKeeping`] | as mixed | `(c o g) a^T` per layer from the stored `a`, `g`: no second backward |
//!
//! Masked layers get the exact norm of the masked gradient: a linear layer with one position per
//! example uses `sum_jk M_jk g_ij^2 a_ik^2`; every other masked weight (conv, or several views)
//! is materialised. Layers with a weight transform (weight standardisation) are materialised,
//! because the parameter's gradient is `J^T G_i`, whose norm differs from `G_i`'s.

mod layer_grads;

pub use layer_grads::NormMethod;

use crate::error::{NnError, Result};
use crate::mask::ParamMask;
use crate::model::Model;
use crate::param::ParamId;
use crate::tape::{BackwardMode, LayerRecord, Tape};
use layer_grads as lg;
use sparsedp_tensor::Tensor;

/// Which per-example clipping algorithm to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Engine {
    /// One forward and backward per example: the reference.
    Naive,
    /// Per-example gradients per layer (Opacus-style), in memory-bounded chunks.
    Materialize,
    /// Ghost norms, then a second, re-weighted backward.
    Ghost,
    /// Ghost or materialised norms per layer by the mixed rule, then a second backward.
    Mixed,
    /// Mixed-rule norms and book-keeping sums: one backward pass (the default).
    #[default]
    BookKeeping,
}

impl Engine {
    /// All engines, reference first.
    pub const ALL: [Engine; 5] = [
        Engine::Naive,
        Engine::Materialize,
        Engine::Ghost,
        Engine::Mixed,
        Engine::BookKeeping,
    ];

    /// Name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Naive => "naive",
            Engine::Materialize => "materialize",
            Engine::Ghost => "ghost",
            Engine::Mixed => "mixed",
            Engine::BookKeeping => "book-keeping",
        }
    }

    /// Parses [`Engine::name`].
    pub fn from_name(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// How a norm becomes a clip factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipFunction {
    /// `min(1, C / n)` (Abadi et al. 2016).
    Clamp,
    /// `C / (n + gamma)`, every gradient rescaled to norm just below `C` (Bu et al. 2022,
    /// "automatic clipping"; `gamma > 0` keeps small gradients bounded).
    Normalize {
        /// Stabiliser, > 0.
        gamma: f32,
    },
}

/// Clipping settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Clipping norm `C` (flat clipping), > 0.
    pub max_norm: f32,
    /// Norm-to-factor function.
    pub function: ClipFunction,
    /// Per-layer clipping: one bound per parametric layer (in forward order) with
    /// `sum_l C_l^2 = C^2`, so the total sensitivity stays `C`. `None`: flat clipping.
    pub per_layer: Option<Vec<f32>>,
    /// Augmentation multiplicity K: the batch holds K consecutive views per example, and an
    /// example's gradient is the mean over its views, taken before clipping.
    pub views: usize,
    /// Examples per chunk when per-example gradients are materialised (bounds memory).
    pub chunk: usize,
}

impl ClipConfig {
    /// Flat clipping at norm `c` with `min(1, C/n)`, one view, chunks of 32.
    pub fn flat(c: f32) -> Self {
        ClipConfig {
            max_norm: c,
            function: ClipFunction::Clamp,
            per_layer: None,
            views: 1,
            chunk: 32,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::InvalidConfig(m));
        if !(self.max_norm.is_finite() && self.max_norm > 0.0) {
            return bad(format!(
                "clipping norm must be positive, got {}",
                self.max_norm
            ));
        }
        if let ClipFunction::Normalize { gamma } = self.function
            && !(gamma.is_finite() && gamma > 0.0)
        {
            return bad(format!("normalising clip needs gamma > 0, got {gamma}"));
        }
        if self.views == 0 || self.chunk == 0 {
            return bad("views and chunk must be at least 1".to_string());
        }
        if let Some(b) = &self.per_layer {
            if b.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
                return bad("per-layer bounds must be positive".to_string());
            }
            let total: f64 = b.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
            let want = f64::from(self.max_norm).powi(2);
            if (total - want).abs() > 1e-4 * want {
                return bad(format!(
                    "per-layer bounds must satisfy sum C_l^2 = C^2 = {want}, got {total}"
                ));
            }
        }
        Ok(())
    }

    fn factor(&self, bound: f32, norm: f32) -> f32 {
        match self.function {
            ClipFunction::Clamp => {
                if norm <= bound {
                    1.0
                } else {
                    bound / norm
                }
            }
            ClipFunction::Normalize { gamma } => bound / (norm + gamma),
        }
    }
}

/// What an engine returns for one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipOutput {
    /// `sum_i c_i (M o G_i)` per parameter (indexed like the store); inactive coordinates are 0.
    pub clipped_sum: Vec<Tensor>,
    /// `n_i`: norm of each example's masked gradient over all layers.
    pub norms: Vec<f32>,
    /// Per-layer norms `[layer][example]` (parametric layers in forward order).
    pub layer_norms: Vec<Vec<f32>>,
    /// Clip factor of each example (flat clipping) or the smallest over its layers (per-layer).
    pub factors: Vec<f32>,
    /// Each example's loss (mean over its views).
    pub losses: Vec<f32>,
}

impl ClipOutput {
    /// Fraction of examples whose gradient was scaled down.
    pub fn clipped_fraction(&self) -> f64 {
        if self.factors.is_empty() {
            return 0.0;
        }
        self.factors.iter().filter(|&&c| c < 1.0).count() as f64 / self.factors.len() as f64
    }
}

/// Checks a batch: `x: [B*K, C, H, W]` matching the model, one label per row, labels in range.
fn check_batch(model: &dyn Model, x: &Tensor, labels: &[usize], views: usize) -> Result<usize> {
    let s = x.shape();
    let [c, h, w] = model.input_shape();
    if s.len() != 4 || s[1..] != [c, h, w] {
        return Err(NnError::InvalidBatch(format!(
            "expected input [N, {c}, {h}, {w}], got {s:?}"
        )));
    }
    if labels.len() != s[0] {
        return Err(NnError::InvalidBatch(format!(
            "{} labels for {} inputs",
            labels.len(),
            s[0]
        )));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= model.num_classes()) {
        return Err(NnError::InvalidBatch(format!(
            "label {l} out of range for {} classes",
            model.num_classes()
        )));
    }
    if !s[0].is_multiple_of(views) {
        return Err(NnError::InvalidBatch(format!(
            "{} rows are not a whole number of examples with {views} views each",
            s[0]
        )));
    }
    Ok(s[0] / views)
}

fn check_mask(model: &dyn Model, mask: &ParamMask) -> Result<()> {
    if mask.len() != model.params().len() {
        return Err(NnError::InvalidConfig(format!(
            "mask covers {} parameters, the model has {}",
            mask.len(),
            model.params().len()
        )));
    }
    Ok(())
}

fn check_finite(what: &str, v: &[f32]) -> Result<()> {
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(NnError::NonFinite(format!("{what} contains {x}")));
    }
    Ok(())
}

/// Per-example losses (mean over views) from per-row losses.
fn example_losses(rows: &[f32], views: usize) -> Vec<f32> {
    rows.chunks(views)
        .map(|c| c.iter().sum::<f32>() / views as f32)
        .collect()
}

/// Runs `engine` on one batch: per-example clipping of the gradient of the cross-entropy loss,
/// restricted to the active coordinates of `mask`.
///
/// `x` holds `B * K` rows (K = `cfg.views` consecutive views per example) and `labels` one label
/// per row. Errors on malformed input or configuration, and with [`NnError::NonFinite`] when a
/// loss or norm is NaN or infinite.
pub fn clip_batch(
    engine: Engine,
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
    mask: &ParamMask,
    cfg: &ClipConfig,
) -> Result<ClipOutput> {
    cfg.validate()?;
    check_mask(model, mask)?;
    let b = check_batch(model, x, labels, cfg.views)?;
    let out = match engine {
        Engine::Naive => naive(model, x, labels, mask, cfg, b)?,
        _ => vectorised(engine, model, x, labels, mask, cfg, b)?,
    };
    check_finite("the per-example losses", &out.losses)?;
    check_finite("the per-example gradient norms", &out.norms)?;
    Ok(out)
}

/// Parametric layers' parameters, in forward order: `(weight, bias)`.
fn layer_params(layers: &[LayerRecord]) -> Vec<(ParamId, Option<ParamId>)> {
    layers.iter().map(|r| (r.weight, r.bias)).collect()
}

fn bounds(cfg: &ClipConfig, layers: usize) -> Result<Option<Vec<f32>>> {
    match &cfg.per_layer {
        None => Ok(None),
        Some(b) if b.len() == layers => Ok(Some(b.clone())),
        Some(b) => Err(NnError::InvalidConfig(format!(
            "{} per-layer bounds for {layers} parametric layers",
            b.len()
        ))),
    }
}

/// Clip factors per layer and example, the per-example summary factor, and the total norms.
struct Factors {
    per_layer: Vec<Vec<f32>>,
    summary: Vec<f32>,
    norms: Vec<f32>,
}

/// Clip factors `[layer][example]` and the per-example summary factor.
fn factors(cfg: &ClipConfig, layer_sq: &[Vec<f32>], b: usize) -> Result<Factors> {
    let norms: Vec<f32> = (0..b)
        .map(|i| layer_sq.iter().map(|l| l[i]).sum::<f32>().sqrt())
        .collect();
    match bounds(cfg, layer_sq.len())? {
        None => {
            let c: Vec<f32> = norms.iter().map(|&n| cfg.factor(cfg.max_norm, n)).collect();
            Ok(Factors {
                per_layer: vec![c.clone(); layer_sq.len()],
                summary: c,
                norms,
            })
        }
        Some(bs) => {
            let per: Vec<Vec<f32>> = layer_sq
                .iter()
                .zip(&bs)
                .map(|(l, &bound)| l.iter().map(|&s| cfg.factor(bound, s.sqrt())).collect())
                .collect();
            let summary = (0..b)
                .map(|i| per.iter().map(|l| l[i]).fold(1.0f32, f32::min))
                .collect();
            Ok(Factors {
                per_layer: per,
                summary,
                norms,
            })
        }
    }
}

fn naive(
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
    mask: &ParamMask,
    cfg: &ClipConfig,
    b: usize,
) -> Result<ClipOutput> {
    let k = cfg.views;
    let params = model.params();
    let mut per_example: Vec<Vec<Option<Tensor>>> = Vec::with_capacity(b);
    let mut losses = Vec::with_capacity(b);
    let mut layer_map = Vec::new();
    for i in 0..b {
        let xi = x.narrow(0, i * k, k)?;
        let mut tape = Tape::new(params);
        let input = tape.input(xi);
        let logits = model.forward(&mut tape, input)?;
        let loss = tape.cross_entropy(logits, &labels[i * k..(i + 1) * k])?;
        losses.extend(example_losses(&tape.value(loss).to_vec(), k));
        let seed = Tensor::full_on(&[k], 1.0 / k as f32, x.device())?;
        let grads = tape.backward(loss, seed, BackwardMode::Full)?;
        layer_map = layer_params(tape.layers());
        let masked = params
            .iter()
            .map(|(id, _)| grads.get(id).map(|g| mask.apply(id, g)).transpose())
            .collect::<Result<Vec<_>>>()?;
        per_example.push(masked);
    }
    let sq = |t: &Option<Tensor>| -> f32 {
        t.as_ref()
            .map(|t| t.to_vec().iter().map(|v| v * v).sum())
            .unwrap_or(0.0)
    };
    let layer_sq: Vec<Vec<f32>> = layer_map
        .iter()
        .map(|(w, bias)| {
            per_example
                .iter()
                .map(|g| sq(&g[w.0]) + bias.map_or(0.0, |bb| sq(&g[bb.0])))
                .collect()
        })
        .collect();
    let Factors {
        per_layer: layer_factors,
        summary,
        norms,
    } = factors(cfg, &layer_sq, b)?;
    let mut sums: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| Tensor::zeros_on(p.value.shape(), p.value.device()))
        .collect::<std::result::Result<_, _>>()?;
    for (l, (w, bias)) in layer_map.iter().enumerate() {
        for (i, g) in per_example.iter().enumerate() {
            for id in std::iter::once(*w).chain(*bias) {
                if let Some(t) = &g[id.0] {
                    sums[id.0].add_scaled_(layer_factors[l][i], t)?;
                }
            }
        }
    }
    Ok(ClipOutput {
        clipped_sum: sums,
        norms,
        layer_norms: layer_sq
            .iter()
            .map(|l| l.iter().map(|s| s.sqrt()).collect())
            .collect(),
        factors: summary,
        losses,
    })
}

fn vectorised(
    engine: Engine,
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
    mask: &ParamMask,
    cfg: &ClipConfig,
    b: usize,
) -> Result<ClipOutput> {
    let k = cfg.views;
    let params = model.params();
    let mut tape = Tape::new(params);
    let input = tape.input(x.clone());
    let logits = model.forward(&mut tape, input)?;
    let loss = tape.cross_entropy(logits, labels)?;
    let losses = example_losses(&tape.value(loss).to_vec(), k);
    let seed = Tensor::full_on(&[b * k], 1.0 / k as f32, x.device())?;
    tape.backward(loss, seed, BackwardMode::RecordOnly)?;
    let two_pass = matches!(engine, Engine::Ghost | Engine::Mixed) && cfg.per_layer.is_none();
    if !two_pass {
        // Only the layer records are read from here on.
        tape.release_activations();
    }

    // Norms, layer by layer. Cheap per-example gradients (biases, norm affine) and the
    // per-example weight gradients book-keeping keeps are reused for the clipped sums.
    let book = engine == Engine::BookKeeping;
    let nl = tape.layers().len();
    let mut layer_sq = Vec::with_capacity(nl);
    let mut cheap = Vec::with_capacity(nl);
    let mut kept: Vec<Option<Tensor>> = vec![None; nl];
    for (l, kept_l) in kept.iter_mut().enumerate() {
        let rec = &tape.layers()[l];
        let mut sq = vec![0.0f32; b];
        let mut add = |v: Vec<f32>| {
            for (s, x) in sq.iter_mut().zip(v) {
                *s += x;
            }
        };
        let (cheap_w, cheap_b) = lg::cheap_per_example_grads(rec, b, k)?;
        if let Some(dm) = lg::dims(rec, b, k) {
            let weight = params.value(rec.weight);
            let m = mask.get(rec.weight);
            let method = match engine {
                Engine::Materialize => NormMethod::Materialize,
                Engine::Ghost => lg::choose(&dm, m.is_some(), rec.transform.is_some(), true)
                    .ghost_if_possible(&dm, m.is_some(), rec.transform.is_some()),
                _ => lg::choose(&dm, m.is_some(), rec.transform.is_some(), true),
            };
            add(match method {
                NormMethod::Ghost => lg::ghost_sq_norms(rec, &dm, cfg.chunk)?,
                NormMethod::MaskedLinear => {
                    lg::masked_linear_sq_norms(rec, m.expect("masked method"))?
                }
                NormMethod::Materialize if book && lg::worth_keeping(rec, &dm, weight) => {
                    let (sq, grads) = lg::materialized_grads(rec, &dm, weight, m, cfg.chunk)?;
                    *kept_l = Some(grads);
                    sq
                }
                NormMethod::Materialize => {
                    lg::materialized_sq_norms(rec, &dm, weight, m, cfg.chunk)?
                }
            });
        }
        if let Some(gw) = &cheap_w {
            add(lg::sq_norms_of(gw, mask.get(rec.weight))?);
        }
        if let (Some(gb), Some(bid)) = (&cheap_b, rec.bias) {
            add(lg::sq_norms_of(gb, mask.get(bid))?);
        }
        layer_sq.push(sq);
        cheap.push((cheap_w, cheap_b));
        if kept_l.is_some() {
            // The kept gradients replace the record for the clipped sum.
            tape.release_layer_record(l);
        }
    }
    let Factors {
        per_layer: layer_factors,
        summary,
        norms,
    } = factors(cfg, &layer_sq, b)?;

    // Clipped sums.
    let mut sums: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| Tensor::zeros_on(p.value.shape(), p.value.device()))
        .collect::<std::result::Result<_, _>>()?;
    if two_pass {
        // Ghost clipping's second pass: the gradient of sum_i c_i loss_i is sum_i c_i G_i.
        let per_row: Vec<f32> = (0..b * k).map(|r| summary[r / k] / k as f32).collect();
        let grads = tape.backward(
            loss,
            Tensor::from_vec(per_row, &[b * k])?.to_device(x.device())?,
            BackwardMode::Full,
        )?;
        for (id, _) in params.iter() {
            if let Some(g) = grads.get(id) {
                sums[id.0] = mask.apply(id, g)?;
            }
        }
    } else {
        for (l, rec) in tape.layers().iter().enumerate() {
            let c = &layer_factors[l];
            let (cheap_w, cheap_b) = &cheap[l];
            let weight = params.value(rec.weight);
            let m = mask.get(rec.weight);
            if let Some(raw) = kept[l].take() {
                // Its record was released: only the kept gradients are read.
                sums[rec.weight.0] = lg::raw_clipped_sum(rec, weight, m, raw, c)?;
            } else if let Some(dm) = lg::dims(rec, b, k) {
                sums[rec.weight.0] = if engine == Engine::Materialize {
                    lg::materialized_clipped_sum(rec, &dm, weight, m, cfg.chunk, c)?
                } else {
                    lg::bookkeeping_clipped_weight_sum(rec, weight, m, c, k)?
                };
            }
            if let Some(gw) = cheap_w {
                sums[rec.weight.0] = lg::weighted_sum(gw, c, mask.get(rec.weight))?;
            }
            if let (Some(gb), Some(bid)) = (cheap_b, rec.bias) {
                sums[bid.0] = lg::weighted_sum(gb, c, mask.get(bid))?;
            }
        }
    }
    Ok(ClipOutput {
        clipped_sum: sums,
        norms,
        layer_norms: layer_sq
            .iter()
            .map(|l| l.iter().map(|s| s.sqrt()).collect())
            .collect(),
        factors: summary,
        losses,
    })
}

/// Non-private training's gradient: the batch gradient of the summed loss (no clipping, no
/// mask), plus per-example losses. `x` holds one view per example.
pub fn batch_gradient(
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
) -> Result<(Vec<Tensor>, Vec<f32>)> {
    check_batch(model, x, labels, 1)?;
    let params = model.params();
    let mut tape = Tape::new(params);
    let input = tape.input(x.clone());
    let logits = model.forward(&mut tape, input)?;
    let loss = tape.cross_entropy(logits, labels)?;
    let losses = tape.value(loss).to_vec();
    check_finite("the losses", &losses)?;
    let seed = Tensor::full_on(&[labels.len()], 1.0, x.device())?;
    let grads = tape.backward(loss, seed, BackwardMode::Full)?;
    let sums = params
        .iter()
        .map(|(id, p)| match grads.get(id) {
            Some(g) => Ok(g.clone()),
            None => Tensor::zeros_on(p.value.shape(), p.value.device()),
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((sums, losses))
}

impl NormMethod {
    /// The ghost engine uses ghost norms wherever they are exact, whatever they cost.
    fn ghost_if_possible(self, d: &lg::LayerDims, masked: bool, transformed: bool) -> NormMethod {
        if !masked && !transformed && d.groups == 1 {
            NormMethod::Ghost
        } else {
            self
        }
    }
}

/// The norm method each weight-bearing layer of `layers` gets under `engine`, for
/// documentation and tests (`None` for layers without a weight matrix).
pub fn norm_plan(
    engine: Engine,
    layers: &[LayerRecord],
    mask: &ParamMask,
    batch: usize,
    views: usize,
) -> Vec<Option<NormMethod>> {
    layers
        .iter()
        .map(|rec| {
            let dm = lg::dims(rec, batch, views)?;
            let masked = mask.get(rec.weight).is_some();
            let t = rec.transform.is_some();
            Some(match engine {
                Engine::Naive | Engine::Materialize => NormMethod::Materialize,
                Engine::Ghost => lg::choose(&dm, masked, t, true).ghost_if_possible(&dm, masked, t),
                _ => lg::choose(&dm, masked, t, true),
            })
        })
        .collect()
}
