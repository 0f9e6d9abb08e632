//! The index map that expands a base filter bank into the filters a group convolution applies.

use super::group::Group;
use crate::error::{NnError, Result};
use sparsedp_tensor::Tensor;

/// A differentiable gather from a base weight `w` (shape [`ExpansionMap::base_shape`]) to an
/// applied weight `W` (shape [`ExpansionMap::shape`]): `W[e] = w[src[e]]` for every flat index
/// `e` of `W`.
///
/// Its Jacobian `J` is a 0/1 matrix with one 1 per row, so `apply` is a gather and the
/// vector-Jacobian product `J^T G` is a scatter-add: the gradient of a base entry is the sum of
/// the gradients of all its copies. A gradient of the applied weight therefore has a different
/// norm from the base gradient it folds into (`||J^T G|| != ||G||` in general; a base entry with
/// `m` copies that all receive the same gradient `g` has gradient `m g`, norm `m |g|`, while the
/// copies have norm `sqrt(m) |g|`). DP-SGD's sensitivity is about the trained parameters, the
/// base weights, so per-example norms must be taken after the fold, on `J^T G_i`
/// (`docs/engines.md`, "Weight-tied layers" of the DP-SGD maths): the engines materialise
/// `J^T G_i` for every transformed layer, and the book-keeping clipped sum is
/// `J^T (sum_i c_i G_i)` because `J` is the same for every example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpansionMap {
    base_shape: Vec<usize>,
    shape: Vec<usize>,
    src: Vec<u32>,
}

impl ExpansionMap {
    /// The map with `W[e] = w[src[e]]`; errors unless `src` has one entry per element of
    /// `shape`, each inside `base_shape`.
    pub fn new(base_shape: &[usize], shape: &[usize], src: Vec<usize>) -> Result<Self> {
        let base: usize = base_shape.iter().product();
        let n: usize = shape.iter().product();
        if src.len() != n || base == 0 || base > u32::MAX as usize {
            return Err(NnError::InvalidConfig(format!(
                "an expansion to {shape:?} needs {n} source indices into {base_shape:?}, got {}",
                src.len()
            )));
        }
        if let Some(bad) = src.iter().find(|&&i| i >= base) {
            return Err(NnError::InvalidConfig(format!(
                "source index {bad} outside a base weight of {base} entries"
            )));
        }
        Ok(ExpansionMap {
            base_shape: base_shape.to_vec(),
            shape: shape.to_vec(),
            src: src.into_iter().map(|i| i as u32).collect(),
        })
    }

    /// Lifting convolution from `c_in` scalar channels (e.g. an image) to `c_out` regular
    /// fields: base `[c_out, c_in, k, k]`, applied `[c_out * |G|, c_in, k, k]` with
    /// `W[o |G| + g, c, p] = w[o, c, A_g^{-1} p]`: filter copy `g` is the base filter
    /// transformed by `g`.
    pub fn lifting(group: Group, c_out: usize, c_in: usize, k: usize) -> Result<Self> {
        let order = group.order();
        let kk = k * k;
        let mut src = Vec::with_capacity(c_out * order * c_in * kk);
        let maps: Vec<Vec<usize>> = (0..order).map(|g| group.spatial_map(g, k)).collect();
        for o in 0..c_out {
            for map in &maps {
                for c in 0..c_in {
                    let base = (o * c_in + c) * kk;
                    src.extend(map.iter().map(|&q| base + q));
                }
            }
        }
        ExpansionMap::new(&[c_out, c_in, k, k], &[c_out * order, c_in, k, k], src)
    }

    /// Group convolution from `c_in` to `c_out` regular fields: base `[c_out, c_in, |G|, k, k]`,
    /// applied `[c_out |G|, c_in |G|, k, k]` with
    /// `W[o |G| + g, c |G| + h, p] = w[o, c, g^{-1} h, A_g^{-1} p]`: filter copy `g` is the base
    /// filter transformed by `g`, which moves it in space and permutes its input group axis.
    pub fn regular(group: Group, c_out: usize, c_in: usize, k: usize) -> Result<Self> {
        let order = group.order();
        let kk = k * k;
        let mut src = Vec::with_capacity(c_out * order * c_in * order * kk);
        let maps: Vec<Vec<usize>> = (0..order).map(|g| group.spatial_map(g, k)).collect();
        for o in 0..c_out {
            for (g, map) in maps.iter().enumerate() {
                let ginv = group.inverse(g);
                for c in 0..c_in {
                    for h in 0..order {
                        let base = ((o * c_in + c) * order + group.compose(ginv, h)) * kk;
                        src.extend(map.iter().map(|&q| base + q));
                    }
                }
            }
        }
        ExpansionMap::new(
            &[c_out, c_in, order, k, k],
            &[c_out * order, c_in * order, k, k],
            src,
        )
    }

    /// Shape of the stored base weight.
    pub fn base_shape(&self) -> &[usize] {
        &self.base_shape
    }

    /// Shape of the applied (expanded) weight.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Source index into the flattened base weight of every applied entry.
    pub fn sources(&self) -> &[u32] {
        &self.src
    }

    /// The applied weight `W[e] = w[src[e]]` (a gather); `w` must have the base shape.
    pub fn apply(&self, w: &Tensor) -> Result<Tensor> {
        if w.shape() != self.base_shape.as_slice() {
            return Err(NnError::InvalidConfig(format!(
                "expansion of a {:?} base weight given {:?}",
                self.base_shape,
                w.shape()
            )));
        }
        let v = w.to_vec();
        let out: Vec<f32> = self.src.iter().map(|&i| v[i as usize]).collect();
        Ok(Tensor::from_vec(out, &self.shape)?.to_device(w.device())?)
    }

    /// `J^T g` (a scatter-add): `g` has the applied shape, optionally after leading axes
    /// (per-example gradients `[B, ...]`); the result has the same leading axes and the base
    /// shape.
    pub fn vjp(&self, g: &Tensor) -> Result<Tensor> {
        let gs = g.shape();
        let r = self.shape.len();
        if gs.len() < r || gs[gs.len() - r..] != self.shape[..] {
            return Err(NnError::InvalidConfig(format!(
                "gradient of shape {gs:?} does not end with the expanded shape {:?}",
                self.shape
            )));
        }
        let lead = &gs[..gs.len() - r];
        let blocks: usize = lead.iter().product();
        let base: usize = self.base_shape.iter().product();
        let n = self.src.len();
        let gv = g.to_vec();
        let mut out = vec![0.0f32; blocks * base];
        for (gb, ob) in gv.chunks(n).zip(out.chunks_mut(base)) {
            for (&x, &i) in gb.iter().zip(&self.src) {
                ob[i as usize] += x;
            }
        }
        let mut shape = lead.to_vec();
        shape.extend_from_slice(&self.base_shape);
        Ok(Tensor::from_vec(out, &shape)?.to_device(g.device())?)
    }
}
