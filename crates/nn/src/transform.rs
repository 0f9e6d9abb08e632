//! Weight transforms: layers whose applied weight is a function of the stored parameter.
//!
//! For such a layer the per-example gradient of the *parameter* is `J^T G_i`, where `G_i` is
//! the per-example gradient of the applied weight and `J` the transform's Jacobian. DP-SGD must
//! clip `J^T G_i`, not `G_i`: the two have different norms. Because `J` is the same for every
//! example, the clipped sum is still `J^T (sum_i c_i G_i)`, one product per batch.

use crate::equivariant::ExpansionMap;
use crate::error::{NnError, Result};
use sparsedp_tensor::Tensor;
use std::sync::Arc;

/// A differentiable map from a stored weight to the weight a layer applies.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightTransform {
    /// Weight standardisation (Qiao et al. 2019; used with GroupNorm by De et al. 2022): each
    /// output channel's weights (a row of the weight viewed as `[O, d]`) are shifted and scaled
    /// to mean 0 and variance 1: `w_hat = (w - mean) / sqrt(var + eps)`, `var` over the `d`
    /// fan-in entries (biased).
    Standardize {
        /// Added to the variance.
        eps: f32,
    },
    /// Scaled weight standardisation, the form of De et al. 2022 (jax_privacy's `WSConv2D`,
    /// after Brock et al. 2021): each output channel's row is standardised to mean 0 and
    /// variance `1 / d` (fan-in `d`), `w_hat = (w - mean) / sqrt(d * var + eps)`, so a unit-
    /// variance input gives a unit-variance output, as with fan-in scaled initialisation.
    /// (jax_privacy computes `rsqrt(max(d * var, eps))`; adding `eps` keeps the map smooth and
    /// differs only for rows with `d * var` near `eps`.)
    ScaledStandardize {
        /// Added to `d * var`.
        eps: f32,
    },
    /// Weight tying by an index map (group-equivariant convolutions, `crate::equivariant`):
    /// every entry of the applied weight is one entry of the (smaller) stored base weight,
    /// `W[e] = w[src[e]]`. `apply` gathers, `vjp` scatter-adds, so `J^T G` folds a gradient of
    /// the applied weight back onto the base weight. The applied shape differs from the stored
    /// one ([`WeightTransform::applied_shape`]).
    Expand(Arc<ExpansionMap>),
}

fn rows(w: &Tensor) -> Result<(usize, usize)> {
    let o = *w.shape().first().ok_or_else(|| {
        NnError::InvalidConfig("a transformed weight must have an output axis".to_string())
    })?;
    if o == 0 {
        return Err(NnError::InvalidConfig("empty weight".to_string()));
    }
    Ok((o, w.numel() / o))
}

impl WeightTransform {
    /// True for the standardisations, which normalise the weight rather than tie it:
    /// [`crate::Tape::linearized`] bypasses them, as it bypasses activation normalisation, so
    /// SynFlow's path products are products of the stored `|w|`.
    pub fn is_normalization(&self) -> bool {
        matches!(
            self,
            WeightTransform::Standardize { .. } | WeightTransform::ScaledStandardize { .. }
        )
    }

    /// `(eps, c)` with `s = sqrt(c * var + eps)`: `c = 1` (standardise) or `c = d` (scaled).
    fn spec(&self, d: usize) -> (f32, f64) {
        match *self {
            WeightTransform::Standardize { eps } => (eps, 1.0),
            WeightTransform::ScaledStandardize { eps } => (eps, d as f64),
            WeightTransform::Expand(_) => unreachable!("an expansion has no row statistics"),
        }
    }

    /// Shape of the applied weight for a stored weight of shape `stored`.
    pub fn applied_shape(&self, stored: &[usize]) -> Vec<usize> {
        match self {
            WeightTransform::Expand(map) => map.shape().to_vec(),
            _ => stored.to_vec(),
        }
    }

    /// The applied weight for stored weight `w` (same shape).
    pub fn apply(&self, w: &Tensor) -> Result<Tensor> {
        if let WeightTransform::Expand(map) = self {
            return map.apply(w);
        }
        let (o, d) = rows(w)?;
        let (eps, c) = self.spec(d);
        let v = w.to_vec();
        let mut out = vec![0.0f32; v.len()];
        for r in 0..o {
            let row = &v[r * d..(r + 1) * d];
            let (mean, inv) = row_stats(row, eps, c);
            for (y, &x) in out[r * d..(r + 1) * d].iter_mut().zip(row) {
                *y = ((f64::from(x) - mean) * inv) as f32;
            }
        }
        Ok(Tensor::from_vec(out, w.shape())?.to_device(w.device())?)
    }

    /// Vector-Jacobian product: maps gradients `g` with respect to the applied weight to
    /// gradients with respect to the stored weight `w`. `g` has the shape of `w`, optionally with
    /// a leading axis of per-example gradients (`[B, ...w.shape]` or `[B, O, d]`). For
    /// [`WeightTransform::Expand`], `g` has the applied shape (optionally with leading axes) and
    /// the result the stored one.
    ///
    /// For one row with `s = sqrt(c var + eps)` (`c = 1`, or `c = d` when scaled) and `w_hat`
    /// as above: `dL/dw = (g - mean(g) - c * w_hat * mean(g * w_hat)) / s`.
    pub fn vjp(&self, w: &Tensor, g: &Tensor) -> Result<Tensor> {
        if let WeightTransform::Expand(map) = self {
            return map.vjp(g);
        }
        let (o, d) = rows(w)?;
        let (eps, c) = self.spec(d);
        if !g.numel().is_multiple_of(o * d) {
            return Err(NnError::InvalidConfig(format!(
                "gradient of shape {:?} does not fit weight {:?}",
                g.shape(),
                w.shape()
            )));
        }
        let wv = w.to_vec();
        let stats: Vec<(f64, f64)> = (0..o)
            .map(|r| row_stats(&wv[r * d..(r + 1) * d], eps, c))
            .collect();
        let gv = g.to_vec();
        let mut out = vec![0.0f32; gv.len()];
        for (block_in, block_out) in gv.chunks(o * d).zip(out.chunks_mut(o * d)) {
            for r in 0..o {
                let (mean, inv) = stats[r];
                let wrow = &wv[r * d..(r + 1) * d];
                let grow = &block_in[r * d..(r + 1) * d];
                let n = d as f64;
                let gmean = grow.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
                let gw = grow
                    .iter()
                    .zip(wrow)
                    .map(|(&gx, &wx)| f64::from(gx) * (f64::from(wx) - mean) * inv)
                    .sum::<f64>()
                    * c
                    / n;
                for ((y, &gx), &wx) in block_out[r * d..(r + 1) * d].iter_mut().zip(grow).zip(wrow)
                {
                    let what = (f64::from(wx) - mean) * inv;
                    *y = ((f64::from(gx) - gmean - what * gw) * inv) as f32;
                }
            }
        }
        Ok(Tensor::from_vec(out, g.shape())?.to_device(g.device())?)
    }
}

/// `(mean, 1 / sqrt(c * var + eps))` of a row, in f64.
fn row_stats(row: &[f32], eps: f32, c: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, 1.0 / (c * var + f64::from(eps)).sqrt())
}
