//! Masks from scores: keep the highest-scoring prunable weights at a target density.
//!
//! * **Prunable** tensors are those with [`ParamRole::Weight`]; biases and normalisation
//!   parameters are never pruned (their mask entry is `None`), and optionally the first and last
//!   weight tensors (in registration order, i.e. input to output) are kept whole.
//! * **Density** is the fraction of prunable weights kept. [`Scope::Global`] keeps
//!   `round(density * n)` weights under one threshold over all prunable tensors;
//!   [`Scope::LayerWise`] keeps `round(density * n_l)` in each prunable tensor.
//! * **Ties** are broken deterministically: at equal scores the weight with the smaller
//!   (parameter index, element index) is kept.
//! * **No layer is emptied** unless [`MaskConfig::allow_empty_layers`] is set: a prunable tensor
//!   that would keep nothing keeps its best weight, and (globally) the lowest-ranked kept weights of
//!   tensors with more than one survivor are dropped to keep the total exact.
//!
//! Selection is partial (`select_nth_unstable_by`), never a full sort of all weights.

use crate::error::{PruneError, Result};
use crate::scores::Scores;
use sparsedp_nn::{ParamMask, ParamRole, ParamStore};
use sparsedp_tensor::Tensor;
use std::cmp::Ordering;

/// How the kept weights are distributed over tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// One threshold over all prunable tensors (layers may end up with different densities).
    #[default]
    Global,
    /// The same density in every prunable tensor.
    LayerWise,
}

/// What to keep when building a mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskConfig {
    /// Fraction of prunable weights kept, in `(0, 1]`.
    pub density: f64,
    /// Global or layer-wise threshold.
    pub scope: Scope,
    /// Never prune the first weight tensor (e.g. the input convolution).
    pub keep_first_layer: bool,
    /// Never prune the last weight tensor (e.g. the classifier).
    pub keep_last_layer: bool,
    /// Allow a prunable tensor to lose every weight (off by default: each keeps at least one).
    pub allow_empty_layers: bool,
}

impl MaskConfig {
    /// Global threshold at `density`, all weight tensors prunable, no empty layers.
    pub fn global(density: f64) -> Self {
        MaskConfig {
            density,
            scope: Scope::Global,
            keep_first_layer: false,
            keep_last_layer: false,
            allow_empty_layers: false,
        }
    }

    /// Layer-wise density, all weight tensors prunable, no empty layers.
    pub fn layer_wise(density: f64) -> Self {
        MaskConfig {
            scope: Scope::LayerWise,
            ..MaskConfig::global(density)
        }
    }

    /// Checks the density.
    pub fn validate(&self) -> Result<()> {
        check_density(self.density)
    }

    /// The same configuration at another density.
    pub fn with_density(&self, density: f64) -> Self {
        MaskConfig { density, ..*self }
    }
}

/// Errors unless `d` is finite and in `(0, 1]`.
pub fn check_density(d: f64) -> Result<()> {
    if d.is_finite() && d > 0.0 && d <= 1.0 {
        Ok(())
    } else {
        Err(PruneError::InvalidDensity(d))
    }
}

/// Which parameters `cfg` allows to prune: weights, minus the first/last weight if asked.
pub fn prunable(store: &ParamStore, cfg: &MaskConfig) -> Vec<bool> {
    let weights: Vec<usize> = store
        .iter()
        .filter(|(_, p)| p.role == ParamRole::Weight)
        .map(|(id, _)| id.0)
        .collect();
    let mut out = vec![false; store.len()];
    for &i in &weights {
        out[i] = true;
    }
    if cfg.keep_first_layer
        && let Some(&i) = weights.first()
    {
        out[i] = false;
    }
    if cfg.keep_last_layer
        && let Some(&i) = weights.last()
    {
        out[i] = false;
    }
    out
}

/// Number of weights to keep out of `n` at `density` (rounded to nearest).
pub fn kept_count(density: f64, n: usize) -> usize {
    ((density * n as f64).round() as usize).min(n)
}

/// A candidate: score (higher is better) and flat position `(param, element)`.
#[derive(Debug, Clone, Copy)]
struct Cand {
    score: f32,
    param: u32,
    elem: u32,
}

/// Best first: higher score, then smaller (param, element).
fn rank(a: &Cand, b: &Cand) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.param.cmp(&b.param))
        .then(a.elem.cmp(&b.elem))
}

/// Keeps the highest-scoring prunable weights at `cfg.density` (see the module docs).
///
/// `within`, if given, restricts the candidates to coordinates it keeps (iterative pruning: a
/// weight pruned in an earlier round stays pruned); the density is still relative to all
/// prunable weights, so a density above `within`'s keeps exactly `within`'s weights.
///
/// Returns one mask entry per parameter: `Some(0/1 tensor)` for prunable tensors, `None` for the
/// others. Errors on an invalid density, scores that do not fit `store`, a non-finite score of a
/// candidate, or (without `allow_empty_layers`) a density too low to keep one weight per tensor.
pub fn mask_from_scores(
    store: &ParamStore,
    scores: &Scores,
    cfg: &MaskConfig,
    within: Option<&ParamMask>,
) -> Result<ParamMask> {
    cfg.validate()?;
    scores.check(store)?;
    if let Some(w) = within
        && w.len() != store.len()
    {
        return Err(PruneError::InvalidConfig(format!(
            "the restricting mask covers {} parameters, the store has {}",
            w.len(),
            store.len()
        )));
    }
    if store.len() > u32::MAX as usize
        || store
            .iter()
            .any(|(_, p)| p.value.numel() > u32::MAX as usize)
    {
        return Err(PruneError::InvalidConfig(
            "tensors above 2^32 elements are not supported".to_string(),
        ));
    }
    let prune = prunable(store, cfg);
    // Candidates per prunable tensor.
    let mut per_param: Vec<Vec<Cand>> = Vec::with_capacity(store.len());
    let mut total_prunable = 0usize;
    for (id, p) in store.iter() {
        if !prune[id.0] {
            per_param.push(Vec::new());
            continue;
        }
        total_prunable += p.value.numel();
        let s = scores.get(id);
        let allowed: Option<Vec<f32>> = within.and_then(|w| w.get(id)).map(|m| m.to_vec());
        let mut c = Vec::with_capacity(s.len());
        for (e, &v) in s.iter().enumerate() {
            if allowed.as_ref().is_some_and(|m| m[e] == 0.0) {
                continue;
            }
            if !v.is_finite() {
                return Err(PruneError::NonFinite(format!(
                    "score {v} at element {e} of parameter '{}'",
                    p.name
                )));
            }
            c.push(Cand {
                score: v + 0.0, // -0.0 ranks like 0.0
                param: id.0 as u32,
                elem: e as u32,
            });
        }
        per_param.push(c);
    }
    let nonempty_layers = per_param.iter().filter(|c| !c.is_empty()).count();
    let mut keep: Vec<Vec<bool>> = store
        .iter()
        .map(|(id, p)| {
            if prune[id.0] {
                vec![false; p.value.numel()]
            } else {
                Vec::new()
            }
        })
        .collect();

    match cfg.scope {
        Scope::LayerWise => {
            for (i, cands) in per_param.iter_mut().enumerate() {
                if cands.is_empty() {
                    continue;
                }
                let n = keep[i].len();
                let mut k = kept_count(cfg.density, n).min(cands.len());
                if !cfg.allow_empty_layers {
                    k = k.max(1);
                }
                for c in top_k(cands, k) {
                    keep[c.param as usize][c.elem as usize] = true;
                }
            }
        }
        Scope::Global => {
            let mut all: Vec<Cand> = per_param.into_iter().flatten().collect();
            let k = kept_count(cfg.density, total_prunable).min(all.len());
            if !cfg.allow_empty_layers && k < nonempty_layers {
                return Err(PruneError::InvalidConfig(format!(
                    "density {} keeps {k} weights, fewer than the {nonempty_layers} prunable \
                     tensors that must each keep one; raise the density or allow empty layers",
                    cfg.density
                )));
            }
            let mut count = vec![0usize; store.len()];
            let (kept, rest) = split_top(&mut all, k);
            for c in kept.iter() {
                count[c.param as usize] += 1;
            }
            if !cfg.allow_empty_layers {
                refill_empty(kept, rest, &mut count);
            }
            for c in kept.iter() {
                keep[c.param as usize][c.elem as usize] = true;
            }
        }
    }

    let masks = store
        .iter()
        .map(|(id, p)| {
            if !prune[id.0] {
                return Ok(None);
            }
            let v: Vec<f32> = keep[id.0]
                .iter()
                .map(|&b| if b { 1.0 } else { 0.0 })
                .collect();
            Ok(Some(Tensor::from_vec(v, p.value.shape())?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ParamMask::new(store, masks)?)
}

/// The `k` best candidates (partial selection; order unspecified).
fn top_k(c: &mut [Cand], k: usize) -> &[Cand] {
    split_top(c, k).0
}

/// Partitions `c` so that its first `k` entries are the `k` best; returns (best, rest).
fn split_top(c: &mut [Cand], k: usize) -> (&mut [Cand], &mut [Cand]) {
    if k > 0 && k < c.len() {
        c.select_nth_unstable_by(k - 1, rank);
    }
    let k = k.min(c.len());
    c.split_at_mut(k)
}

/// Gives every tensor with candidates but no kept weight its best candidate, and drops as many of
/// the lowest-ranked kept weights of tensors keeping more than one, so the total is unchanged.
fn refill_empty(kept: &mut [Cand], rest: &mut [Cand], count: &mut [usize]) {
    // Best remaining candidate of each tensor that kept nothing.
    let mut best: Vec<Option<Cand>> = vec![None; count.len()];
    for c in rest.iter() {
        let p = c.param as usize;
        if count[p] == 0 && best[p].is_none_or(|b| rank(c, &b) == Ordering::Less) {
            best[p] = Some(*c);
        }
    }
    let adds: Vec<Cand> = best.into_iter().flatten().collect();
    if adds.is_empty() {
        return;
    }
    // Each tensor blocks at most one of its kept weights (its last), so among the
    // `adds + tensors` lowest-ranked kept weights at least `adds` are removable.
    let layers = count.iter().filter(|&&c| c > 0).count();
    let m = (adds.len() + layers).min(kept.len());
    let start = kept.len() - m;
    if start > 0 {
        kept.select_nth_unstable_by(start, rank);
    }
    let tail = &mut kept[start..];
    tail.sort_unstable_by(rank);
    let mut removed = 0;
    let mut slot = tail.len();
    while removed < adds.len() && slot > 0 {
        slot -= 1;
        let p = tail[slot].param as usize;
        if count[p] > 1 {
            count[p] -= 1;
            // Replace the dropped weight by one of the additions.
            let a = adds[removed];
            count[a.param as usize] += 1;
            tail[slot] = a;
            removed += 1;
        }
    }
}
