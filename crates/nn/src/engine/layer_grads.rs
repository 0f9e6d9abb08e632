//! Per-layer pieces of the clipping engines: per-example gradient norms (ghost, masked-linear
//! shortcut, materialised) and clipped sums (book-keeping, materialised), all from a layer's
//! stored input `a` and output gradient `g`.
//!
//! Shapes: `N = B * K` rows (K augmented views per example, consecutive). For a linear layer
//! `a: [N, d]`, `g: [N, p]`; for a conv layer `a` is the input `[N, C, H, W]` (unfolded here to
//! `[N, d, T]`) and `g: [N, O, Ho, Wo]` (viewed as `[N, O, T]`). An example's gradient is the sum
//! over its K views (the 1/K of the mean is already in `g`, from the backward seed), which is the
//! same as one "long" example with `K * T` positions: ghost norms and products work on that view.

use crate::error::Result;
use crate::tape::{LayerKind, LayerRecord, fold_fields};
use crate::transform::WeightTransform;
use sparsedp_tensor::Tensor;
use std::borrow::Cow;

/// How a layer's per-example weight-gradient norms are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormMethod {
    /// Gram matrices of activations and output gradients; never forms `G_i`.
    Ghost,
    /// `sum_jk M_jk g_ij^2 a_ik^2`: exact for a masked linear layer with one position.
    MaskedLinear,
    /// Form each `G_i` (in chunks), apply the transform and mask, take the norm.
    Materialize,
}

/// Geometry of a layer's weight gradient as the engines see it.
#[derive(Debug, Clone, Copy)]
pub struct LayerDims {
    /// Examples.
    pub b: usize,
    /// Views per example.
    pub k: usize,
    /// Output features / channels `p`.
    pub p: usize,
    /// Fan-in `d` (per group for grouped convs).
    pub d: usize,
    /// Positions per view `T` (1 for linear).
    pub t: usize,
    /// Convolution groups (1 for linear).
    pub groups: usize,
}

/// Dimensions of a weight-bearing layer (linear or conv).
pub fn dims(rec: &LayerRecord, b: usize, k: usize) -> Option<LayerDims> {
    let g = rec.grad_output.as_ref()?;
    match &rec.kind {
        LayerKind::Linear => Some(LayerDims {
            b,
            k,
            p: g.shape()[1],
            d: rec.input.shape()[1],
            t: 1,
            groups: 1,
        }),
        LayerKind::Conv2d { params, kernel } => {
            let s = g.shape();
            let c = rec.input.shape()[1];
            Some(LayerDims {
                b,
                k,
                p: s[1],
                d: c / params.groups * kernel[0] * kernel[1],
                t: s[2] * s[3],
                groups: params.groups,
            })
        }
        LayerKind::GroupNormAffine { .. } => None,
    }
}

/// The mixed rule of Bu, Mao & Xu (2022): ghost norm iff `2 T^2 <= p d`, with `T` the positions
/// per example (`K * T` with K views). Ghost needs an ungrouped layer without mask or transform.
pub fn choose(d: &LayerDims, masked: bool, transformed: bool, allow_ghost: bool) -> NormMethod {
    if masked {
        if d.t == 1 && d.k == 1 && !transformed {
            return NormMethod::MaskedLinear;
        }
        return NormMethod::Materialize;
    }
    if transformed || d.groups != 1 || !allow_ghost {
        return NormMethod::Materialize;
    }
    let tt = (d.k * d.t) as f64;
    if 2.0 * tt * tt <= (d.p * d.d) as f64 {
        NormMethod::Ghost
    } else {
        NormMethod::Materialize
    }
}

/// Activations as `[b, d, K*T]` and output gradients as `[b, p, K*T]` (ungrouped layers) of
/// `b` examples whose rows are `input` and `g`.
fn long_views(
    rec: &LayerRecord,
    dm: &LayerDims,
    input: &Tensor,
    g: &Tensor,
    b: usize,
) -> Result<(Tensor, Tensor)> {
    let (k, t) = (dm.k, dm.t);
    match &rec.kind {
        LayerKind::Linear => {
            // [N, d] -> [B, K, d] -> [B, d, K]
            let a = input.reshape(&[b, k, dm.d])?.permute(&[0, 2, 1])?;
            let g = g.reshape(&[b, k, dm.p])?.permute(&[0, 2, 1])?;
            Ok((a, g))
        }
        LayerKind::Conv2d { params, kernel } => {
            let cols = input.im2col(*kernel, *params)?; // [N, d, T]
            let a = to_long(cols, b, k, dm.d, t)?;
            let g = to_long(g.reshape(&[b * k, dm.p, t])?, b, k, dm.p, t)?;
            Ok((a, g))
        }
        LayerKind::GroupNormAffine { .. } => unreachable!("no weight gradient view"),
    }
}

/// `[B*K, r, T] -> [B, r, K*T]`.
fn to_long(x: Tensor, b: usize, k: usize, r: usize, t: usize) -> Result<Tensor> {
    if k == 1 {
        return Ok(x);
    }
    Ok(x.into_reshape(&[b, k, r, t])?
        .permute(&[0, 2, 1, 3])?
        .into_reshape(&[b, r, k * t])?)
}

/// Per-example squared norms `[B]` by ghost clipping:
/// `||g_i a_i^T||_F^2 = sum_{t,s} (a_i^T a_i)_{ts} (g_i^T g_i)_{ts}`, in chunks of at most
/// `chunk` examples (the Gram matrices take `2 * chunk * (K T)^2` floats).
pub fn ghost_sq_norms(rec: &LayerRecord, dm: &LayerDims, chunk: usize) -> Result<Vec<f32>> {
    let g = rec.grad_output.as_ref().expect("backward ran");
    let kt = dm.k * dm.t;
    if kt == 1 {
        // One position: ||g_i||^2 ||a_i||^2.
        let ga = g.row_sq_norms()?.to_vec();
        let aa = rec.input.reshape(&[dm.b, dm.d])?.row_sq_norms()?.to_vec();
        return Ok(ga.iter().zip(&aa).map(|(x, y)| x * y).collect());
    }
    let mut out = Vec::with_capacity(dm.b);
    let chunk = chunk.max(1);
    let mut start = 0;
    while start < dm.b {
        let n = chunk.min(dm.b - start);
        let (input, gc) = if n == dm.b {
            (Cow::Borrowed(&rec.input), Cow::Borrowed(g))
        } else {
            (
                Cow::Owned(rec.input.narrow(0, start * dm.k, n * dm.k)?),
                Cow::Owned(g.narrow(0, start * dm.k, n * dm.k)?),
            )
        };
        let (a, gl) = long_views(rec, dm, &input, &gc, n)?;
        let ga = a.matmul_t(&a, true, false)?; // [n, KT, KT]
        let gg = gl.matmul_t(&gl, true, false)?;
        let prod = ga.mul(&gg)?.into_reshape(&[n, kt * kt])?;
        out.extend(prod.sum_axis(1, false)?.to_vec());
        start += n;
    }
    Ok(out)
}

/// Per-example squared norms `[B]` of a masked linear layer (one view):
/// `(g_i o g_i)^T M (a_i o a_i)`, one `[B, p] x [p, d]` product for the batch.
pub fn masked_linear_sq_norms(rec: &LayerRecord, mask: &Tensor) -> Result<Vec<f32>> {
    let g = rec.grad_output.as_ref().expect("backward ran");
    let g2 = g.mul(g)?;
    let a2 = rec.input.mul(&rec.input)?;
    let ga = g2.matmul(mask)?; // [B, d]
    Ok(ga.mul(&a2)?.sum_axis(1, false)?.to_vec())
}

/// Calls `f(first_example, grads)` with the *raw* per-example weight gradients
/// `G_i = g_i a_i^T` (`[c, ...weight shape]`, the K views of each example summed; no weight
/// transform, no mask) of consecutive chunks of at most `chunk` examples. Memory is bounded by
/// `chunk * p * d`.
pub fn for_each_raw_per_example_grad(
    rec: &LayerRecord,
    dm: &LayerDims,
    weight_shape: &[usize],
    chunk: usize,
    mut f: impl FnMut(usize, Tensor) -> Result<()>,
) -> Result<()> {
    let g = rec.grad_output.as_ref().expect("backward ran");
    let per_example = weight_shape.iter().product::<usize>();
    let chunk = chunk.max(1);
    let mut start = 0;
    while start < dm.b {
        let n = chunk.min(dm.b - start);
        let rows = dm.k * n;
        let (a, gc) = if rows == rec.input.shape()[0] {
            (Cow::Borrowed(&rec.input), Cow::Borrowed(g))
        } else {
            (
                Cow::Owned(rec.input.narrow(0, start * dm.k, rows)?),
                Cow::Owned(g.narrow(0, start * dm.k, rows)?),
            )
        };
        let per_row = match &rec.kind {
            LayerKind::Linear => {
                // [rows, p, 1] x [rows, 1, d]
                let g3 = gc.reshape(&[rows, dm.p, 1])?;
                let a3 = a.reshape(&[rows, 1, dm.d])?;
                g3.bmm(&a3)?
            }
            LayerKind::Conv2d { params, kernel } => {
                a.conv2d_per_example_weight_grad(&gc, *kernel, *params)?
            }
            LayerKind::GroupNormAffine { .. } => unreachable!("handled separately"),
        };
        // Sum the K views of each example.
        let grads = if dm.k == 1 {
            per_row
        } else {
            per_row
                .into_reshape(&[n, dm.k, per_example])?
                .sum_axis(1, false)?
        };
        let mut shape = vec![n];
        shape.extend_from_slice(weight_shape);
        f(start, grads.into_reshape(&shape)?)?;
        start += n;
    }
    Ok(())
}

/// Maps raw (per-example or summed) weight gradients into the stored weight's
/// parameterisation (the transform's vector-Jacobian product) and masks them.
pub fn transform_and_mask(
    rec: &LayerRecord,
    weight: &Tensor,
    mask: Option<&Tensor>,
    grads: Tensor,
) -> Result<Tensor> {
    let grads = match &rec.transform {
        Some(t) => t.vjp(weight, &grads)?,
        None => grads,
    };
    match mask {
        Some(m) => Ok(grads.mul(m)?),
        None => Ok(grads),
    }
}

/// Squared norms `[n]` of the stored-weight gradients `M o J^T G_i` from raw per-example
/// gradients `G_i` (`[n, ...weight shape]`).
///
/// Without a mask, weight standardisation has a closed form that avoids forming `J^T G_i`
/// (see [`standardized_sq_norms`]); otherwise the transform and mask are applied first.
pub fn sq_norms_of_raw(
    rec: &LayerRecord,
    weight: &Tensor,
    mask: Option<&Tensor>,
    raw: &Tensor,
) -> Result<Vec<f32>> {
    if mask.is_none()
        && let Some(t) = &rec.transform
        && let Some(norms) = standardized_sq_norms(t, weight, raw)
    {
        return Ok(norms);
    }
    let transformed = match &rec.transform {
        Some(t) => Cow::Owned(t.vjp(weight, raw)?),
        None => Cow::Borrowed(raw),
    };
    let full = match mask {
        Some(m) => Cow::Owned(transformed.mul(m)?),
        None => transformed,
    };
    Ok(full.row_sq_norms()?.to_vec())
}

/// Per-example `||J^T G_i||^2` for (scaled) weight standardisation without forming `J^T G_i`.
///
/// For one output row with fan-in `d`, biased variance `v`, `s^2 = c v + eps` (`c = 1`, or
/// `c = d` when scaled) and `w_hat = (w - mean) / s`, the vector-Jacobian product is
/// `J^T g = (g - mean(g) - (c / d) (g . w_hat) w_hat) / s`. Since `w_hat` sums to zero and
/// `||w_hat||^2 = d v / s^2`,
/// `||J^T g||^2 = (||g||^2 - (sum g)^2 / d - beta (g . w_hat)^2) / s^2` with
/// `beta = (c / d) (1 + eps / s^2)`: three reductions per row, no output tensor.
/// `None` for other transforms.
pub fn standardized_sq_norms(t: &WeightTransform, w: &Tensor, raw: &Tensor) -> Option<Vec<f32>> {
    #[allow(unreachable_patterns)]
    let (eps, scaled) = match *t {
        WeightTransform::Standardize { eps } => (f64::from(eps), false),
        WeightTransform::ScaledStandardize { eps } => (f64::from(eps), true),
        _ => return None,
    };
    let o = *w.shape().first()?;
    let wv = w.as_slice()?;
    let gv = raw.as_slice()?;
    if o == 0 || wv.is_empty() || gv.len() % wv.len() != 0 {
        return None;
    }
    let d = wv.len() / o;
    let c = if scaled { d as f64 } else { 1.0 };
    // Per row: w_hat (f32 is enough for a dot-product weight), 1 / s^2 and beta.
    let mut what = vec![0.0f32; wv.len()];
    let mut rows = Vec::with_capacity(o);
    for (r, row) in wv.chunks(d).enumerate() {
        let n = d as f64;
        let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = row
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let s2 = c * var + eps;
        let inv = 1.0 / s2.sqrt();
        for (h, &x) in what[r * d..(r + 1) * d].iter_mut().zip(row) {
            *h = ((f64::from(x) - mean) * inv) as f32;
        }
        rows.push((1.0 / s2, (c / n) * (1.0 + eps / s2)));
    }
    Some(
        gv.chunks(wv.len())
            .map(|gi| {
                let mut total = 0.0f64;
                for (r, &(inv_s2, beta)) in rows.iter().enumerate() {
                    let g = &gi[r * d..(r + 1) * d];
                    let h = &what[r * d..(r + 1) * d];
                    let (mut sq, mut sum, mut dot) = (0.0f32, 0.0f32, 0.0f32);
                    for (&x, &y) in g.iter().zip(h) {
                        sq += x * x;
                        sum += x;
                        dot += x * y;
                    }
                    let (sq, sum, dot) = (f64::from(sq), f64::from(sum), f64::from(dot));
                    total += inv_s2 * (sq - sum * sum / d as f64 - beta * dot * dot).max(0.0);
                }
                total as f32
            })
            .collect(),
    )
}

/// Per-example squared norms `[B]` of materialised, transformed, masked weight gradients.
pub fn materialized_sq_norms(
    rec: &LayerRecord,
    dm: &LayerDims,
    weight: &Tensor,
    mask: Option<&Tensor>,
    chunk: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(dm.b);
    for_each_raw_per_example_grad(rec, dm, &applied_shape(rec, weight), chunk, |_, raw| {
        out.extend(sq_norms_of_raw(rec, weight, mask, &raw)?);
        Ok(())
    })?;
    Ok(out)
}

/// Whether the book-keeping engine keeps a materialised layer's per-example gradients
/// (`B x p x d` values) from the norm pass, so that its clipped sum is one `[1, B] x [B, p d]`
/// product instead of a second weight-gradient pass over all `T` positions: when they take at
/// most twice the memory of the layer's record (`a` and `g`), which the engine frees once the
/// gradients are kept (so a kept layer costs at most one extra record while it is formed, and
/// usually less afterwards).
pub fn worth_keeping(rec: &LayerRecord, dm: &LayerDims, weight: &Tensor) -> bool {
    let g = rec.grad_output.as_ref().map_or(0, Tensor::numel);
    dm.b * applied_shape(rec, weight).iter().product::<usize>() <= 2 * (rec.input.numel() + g)
}

/// Shape of the weight the layer applies (and of its raw gradients `G_i`): the stored shape,
/// or the expanded one for a weight-tying transform.
pub fn applied_shape(rec: &LayerRecord, weight: &Tensor) -> Vec<usize> {
    match &rec.transform {
        Some(t) => t.applied_shape(weight.shape()),
        None => weight.shape().to_vec(),
    }
}

/// Per-example squared norms `[B]` of the masked stored-weight gradients, and the *raw*
/// per-example gradients `G_i` (`[B, ...weight shape]`, before transform and mask) for
/// [`raw_clipped_sum`].
pub fn materialized_grads(
    rec: &LayerRecord,
    dm: &LayerDims,
    weight: &Tensor,
    mask: Option<&Tensor>,
    chunk: usize,
) -> Result<(Vec<f32>, Tensor)> {
    // The whole batch in one call: the result is kept anyway, and one call avoids copying
    // chunks of the layer's input and output gradient (`chunk` only bounds transient memory).
    let _ = chunk;
    let wshape = applied_shape(rec, weight);
    let mut kept = None;
    for_each_raw_per_example_grad(rec, dm, &wshape, dm.b, |_, raw| {
        kept = Some(raw);
        Ok(())
    })?;
    let raw = match kept {
        Some(raw) => raw,
        None => {
            let mut shape = vec![0];
            shape.extend_from_slice(&wshape);
            Tensor::zeros_on(&shape, weight.device())?
        }
    };
    Ok((sq_norms_of_raw(rec, weight, mask, &raw)?, raw))
}

/// `M o J^T (sum_i c_i G_i)` from raw per-example gradients `[B, ...weight shape]`: the
/// transform's Jacobian is the same for every example, so it is applied once, to the sum.
pub fn raw_clipped_sum(
    rec: &LayerRecord,
    weight: &Tensor,
    mask: Option<&Tensor>,
    raw: Tensor,
    factors: &[f32],
) -> Result<Tensor> {
    transform_and_mask(rec, weight, mask, weighted_sum_owned(raw, factors)?)
}

/// `sum_i c_i (M o J^T G_i)` from materialised per-example gradients (Opacus-style),
/// accumulated chunk by chunk as `M o J^T (sum_i c_i G_i)`.
pub fn materialized_clipped_sum(
    rec: &LayerRecord,
    dm: &LayerDims,
    weight: &Tensor,
    mask: Option<&Tensor>,
    chunk: usize,
    factors: &[f32],
) -> Result<Tensor> {
    let wshape = applied_shape(rec, weight);
    let mut sum = Tensor::zeros_on(&wshape, weight.device())?;
    for_each_raw_per_example_grad(rec, dm, &wshape, chunk, |start, grads| {
        let n = grads.shape()[0];
        let c =
            Tensor::from_slice(&factors[start..start + n], &[1, n])?.to_device(grads.device())?;
        let flat = grads.into_reshape(&[n, sum.numel()])?;
        let weighted = c.matmul(&flat)?.into_reshape(&wshape)?;
        sum.add_scaled_(1.0, &weighted)?;
        Ok(())
    })?;
    transform_and_mask(rec, weight, mask, sum)
}

/// Output gradients with row `r` scaled by the factor of its example (`r / K`).
pub fn scale_rows(g: &Tensor, factors: &[f32], k: usize) -> Result<Tensor> {
    let n = g.shape()[0];
    let per_row: Vec<f32> = (0..n).map(|r| factors[r / k]).collect();
    let mut shape = vec![1; g.rank()];
    shape[0] = n;
    Ok(g.mul(&Tensor::from_vec(per_row, &shape)?.to_device(g.device())?)?)
}

/// Book-keeping (Bu et al. 2023): `sum_i c_i G_i = (c o g) a^T` as one product from the stored
/// `a` and `g`, mapped through the transform (the same Jacobian for every example) and masked.
pub fn bookkeeping_clipped_weight_sum(
    rec: &LayerRecord,
    weight: &Tensor,
    mask: Option<&Tensor>,
    factors: &[f32],
    k: usize,
) -> Result<Tensor> {
    let g = scale_rows(rec.grad_output.as_ref().expect("backward ran"), factors, k)?;
    let mut sum = match &rec.kind {
        LayerKind::Linear => g.matmul_t(&rec.input, true, false)?,
        LayerKind::Conv2d { params, kernel } => {
            rec.input.conv2d_backward_weight(&g, *kernel, *params)?
        }
        LayerKind::GroupNormAffine { .. } => unreachable!("handled separately"),
    };
    if let Some(t) = &rec.transform {
        sum = t.vjp(weight, &sum)?;
    }
    match mask {
        Some(m) => Ok(sum.mul(m)?),
        None => Ok(sum),
    }
}

/// Per-example gradients `[B, ...]` of the "cheap" parameters of a layer: the bias of a linear
/// or conv layer, or gamma and beta of a group-norm affine (`(weight, bias)`; the weight entry is
/// `None` for linear/conv, whose weight is handled above).
pub fn cheap_per_example_grads(
    rec: &LayerRecord,
    b: usize,
    k: usize,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let g = rec.grad_output.as_ref().expect("backward ran");
    let n = b * k;
    let sum_views = |t: Tensor, c: usize| -> Result<Tensor> {
        Ok(t.into_reshape(&[b, k, c])?.sum_axis(1, false)?)
    };
    match &rec.kind {
        LayerKind::Linear => {
            let p = g.shape()[1];
            let bias = match rec.bias {
                Some(_) => Some(sum_views(g.clone(), p)?),
                None => None,
            };
            Ok((None, bias))
        }
        LayerKind::Conv2d { .. } => {
            let s = g.shape();
            let bias = match rec.bias {
                Some(_) => {
                    let per_row = trailing_sums(g)?;
                    // A bias shared per field: sum the field's channels.
                    Some(fold_fields(sum_views(per_row, s[1])?, rec.bias_field)?)
                }
                None => None,
            };
            Ok((None, bias))
        }
        LayerKind::GroupNormAffine { .. } => {
            let c = g.shape()[1];
            let spatial = g.numel() / (n * c);
            let gamma = g
                .mul(&rec.input)?
                .into_reshape(&[n, c, spatial])?
                .sum_axis(2, false)?;
            let beta = trailing_sums(g)?;
            Ok((Some(sum_views(gamma, c)?), Some(sum_views(beta, c)?)))
        }
    }
}

/// `[N, C, ...] -> [N, C]`: sums over the trailing axes, one axis at a time from the last, so a
/// borrowed tensor is read in place instead of copied by a reshape.
fn trailing_sums(t: &Tensor) -> Result<Tensor> {
    let rank = t.rank();
    if rank <= 2 {
        return Ok(t.clone());
    }
    let mut acc = t.sum_axis(rank - 1, false)?;
    for ax in (2..rank - 1).rev() {
        acc = acc.sum_axis(ax, false)?;
    }
    Ok(acc)
}

/// Masked per-example squared norms `[B]` of per-example gradients `[B, ...]`.
pub fn sq_norms_of(per_example: &Tensor, mask: Option<&Tensor>) -> Result<Vec<f32>> {
    let b = per_example.shape()[0];
    let masked = match mask {
        Some(m) => {
            let mut shape = vec![1];
            shape.extend_from_slice(m.shape());
            per_example.mul(&m.reshape(&shape)?)?
        }
        None => per_example.clone(),
    };
    Ok(masked
        .into_reshape(&[b, per_example.numel() / b.max(1)])?
        .row_sq_norms()?
        .to_vec())
}

/// `sum_i c_i x_i` of owned per-example values `[B, ...]` (no copy for the `[B, rest]` view).
pub fn weighted_sum_owned(per_example: Tensor, factors: &[f32]) -> Result<Tensor> {
    let b = per_example.shape()[0];
    let rest: Vec<usize> = per_example.shape()[1..].to_vec();
    let numel = per_example.numel();
    let c = Tensor::from_slice(factors, &[1, b])?.to_device(per_example.device())?;
    Ok(
        c.matmul(&per_example.into_reshape(&[b, numel / b.max(1)])?)?
            .into_reshape(&rest)?,
    )
}

/// `sum_i c_i x_i` of per-example values `[B, ...]`, masked.
pub fn weighted_sum(
    per_example: &Tensor,
    factors: &[f32],
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let b = per_example.shape()[0];
    let rest: Vec<usize> = per_example.shape()[1..].to_vec();
    let c = Tensor::from_slice(factors, &[1, b])?.to_device(per_example.device())?;
    let sum = c
        .matmul(&per_example.reshape(&[b, per_example.numel() / b.max(1)])?)?
        .into_reshape(&rest)?;
    match mask {
        Some(m) => Ok(sum.mul(m)?),
        None => Ok(sum),
    }
}
