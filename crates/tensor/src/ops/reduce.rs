//! Reductions: sum, mean and max over an axis (with the max's backward), whole-tensor sum and
//! mean, and per-row squared norms (the quantity DP-SGD clips).
//!
//! Sums accumulate in `f64`: the CPU backend is the oracle other backends are tested against,
//! and per-example squared norms feed the clipping factor, so the extra accuracy is worth the
//! (small, memory-bound) cost.

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, TensorError, mismatch};
use crate::tensor::{Tensor, check_same_device, numel};

/// A reduction over one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum (NaN-propagating is not guaranteed; the first maximal element wins ties).
    Max,
}

/// `shape = [outer, len, inner]` around `axis`.
pub(crate) fn split_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// CPU kernel: reduce `[outer, len, inner]` over the middle axis into `[outer, inner]`.
///
/// Two layouts, neither allocating per task:
/// - `inner == 1` (a contiguous row per output, e.g. summing an image plane): blocks of rows
///   in parallel, each row reduced by [`reduce_row`];
/// - `inner > 1`: the output is cut into segments of at most [`SEGMENT`] entries (a row of
///   `inner` split further when it is long, so that a reduction over the batch axis, with one
///   output row, still runs in parallel), each accumulated in a stack buffer.
///
/// Sums accumulate in `f64` in both layouts.
pub(crate) fn cpu_reduce_axis(
    op: ReduceOp,
    x: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let mut out = crate::buffers::zeroed(outer * inner);
    if inner == 0 || outer == 0 {
        return out;
    }
    let div = if op == ReduceOp::Mean {
        len as f64
    } else {
        1.0
    };
    if inner == 1 {
        // About PAR_CHUNK input elements per task.
        let rows = (crate::ops::elementwise::PAR_CHUNK / len.max(1)).max(1);
        out.par_chunks_mut(rows).enumerate().for_each(|(c, outs)| {
            for (j, r) in outs.iter_mut().enumerate() {
                let o = c * rows + j;
                *r = reduce_row(op, &x[o * len..(o + 1) * len], div);
            }
        });
        return out;
    }
    let seg = inner.min(SEGMENT);
    // Segments per task, so that a task reads about PAR_CHUNK input elements.
    let min_len = (crate::ops::elementwise::PAR_CHUNK / (len.max(1) * seg)).max(1);
    out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
        let base = &x[o * len * inner..(o + 1) * len * inner];
        row.par_chunks_mut(seg)
            .with_min_len(min_len)
            .enumerate()
            .for_each(|(s, dst)| {
                let off = s * seg;
                let w = dst.len();
                match op {
                    ReduceOp::Sum | ReduceOp::Mean => {
                        let mut acc = [0.0f64; SEGMENT];
                        let acc = &mut acc[..w];
                        for l in 0..len {
                            let src = &base[l * inner + off..l * inner + off + w];
                            for (a, &v) in acc.iter_mut().zip(src) {
                                *a += v as f64;
                            }
                        }
                        for (r, &a) in dst.iter_mut().zip(acc.iter()) {
                            *r = (a / div) as f32;
                        }
                    }
                    ReduceOp::Max => {
                        dst.fill(f32::NEG_INFINITY);
                        for l in 0..len {
                            let src = &base[l * inner + off..l * inner + off + w];
                            for (r, &v) in dst.iter_mut().zip(src) {
                                if v > *r {
                                    *r = v;
                                }
                            }
                        }
                    }
                }
            });
    });
    out
}

/// Output entries one task of [`cpu_reduce_axis`] accumulates at a time (`inner > 1`).
const SEGMENT: usize = 512;

/// Sum (divided by `div`) or max of one contiguous row. The sum uses eight `f64` lanes, so the
/// loop vectorises without reassociating `f32` arithmetic; the max keeps the first maximal
/// element's value and ignores NaN, like the strided path.
fn reduce_row(op: ReduceOp, row: &[f32], div: f64) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let mut lanes = [0.0f64; 8];
            let mut chunks = row.chunks_exact(8);
            for c in &mut chunks {
                for (a, &v) in lanes.iter_mut().zip(c) {
                    *a += v as f64;
                }
            }
            let mut s: f64 = lanes.iter().sum();
            for &v in chunks.remainder() {
                s += v as f64;
            }
            (s / div) as f32
        }
        ReduceOp::Max => {
            let mut m = f32::NEG_INFINITY;
            for &v in row {
                if v > m {
                    m = v;
                }
            }
            m
        }
    }
}

/// CPU kernel: scatter `grad` (`[outer, inner]`) onto the first arg-max along the axis.
pub(crate) fn cpu_max_axis_backward(
    x: &[f32],
    grad: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let mut dx = crate::buffers::zeroed(outer * len * inner);
    if inner == 0 || len == 0 {
        return dx;
    }
    dx.par_chunks_mut(len * inner)
        .enumerate()
        .for_each(|(o, dxo)| {
            let xo = &x[o * len * inner..(o + 1) * len * inner];
            for i in 0..inner {
                let mut best = 0;
                for l in 1..len {
                    if xo[l * inner + i] > xo[best * inner + i] {
                        best = l;
                    }
                }
                dxo[best * inner + i] = grad[o * inner + i];
            }
        });
    dx
}

/// CPU kernel: squared L2 norm of each of `rows` contiguous rows.
pub(crate) fn cpu_row_sq_norms(x: &[f32], rows: usize) -> Vec<f32> {
    if rows == 0 {
        return Vec::new();
    }
    let cols = x.len() / rows;
    if cols == 0 {
        return crate::buffers::zeroed(rows);
    }
    x.par_chunks(cols)
        .map(|r| r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32)
        .collect()
}

impl Tensor {
    fn check_axis(&self, op: &'static str, axis: usize) -> Result<()> {
        if axis >= self.rank() {
            return Err(TensorError::IndexOutOfRange {
                op,
                index: axis,
                bound: self.rank(),
            });
        }
        Ok(())
    }

    /// Reduces over `axis`; with `keepdim` the axis stays with size 1.
    pub fn reduce_axis(&self, op: ReduceOp, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.check_axis("reduce_axis", axis)?;
        let (outer, len, inner) = split_axis(self.shape(), axis);
        if op == ReduceOp::Max && len == 0 {
            return Err(crate::error::invalid_shape(
                "max_axis",
                self.shape(),
                "cannot take the max of an empty axis",
            ));
        }
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.reduce_axis(op, x, outer, len, inner)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().reduce_axis(op, x, outer, len, inner))
            }
        };
        Ok(Tensor::from_storage(storage, shape))
    }

    /// Sum over `axis`.
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_axis(ReduceOp::Sum, axis, keepdim)
    }
    /// Mean over `axis`.
    pub fn mean_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_axis(ReduceOp::Mean, axis, keepdim)
    }
    /// Maximum over `axis`.
    pub fn max_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_axis(ReduceOp::Max, axis, keepdim)
    }

    /// Sum over several axes (any order, no duplicates).
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != axes.len() {
            return Err(crate::error::invalid_arg(
                "sum_axes",
                format!("duplicate axes in {axes:?}"),
            ));
        }
        // The first reduction reads `self` in place (no copy); later ones shrink the data.
        let Some((&last, rest)) = sorted.split_last() else {
            return Ok(self.clone());
        };
        let mut t = self.sum_axis(last, keepdim)?;
        for &ax in rest.iter().rev() {
            t = t.sum_axis(ax, keepdim)?;
        }
        Ok(t)
    }

    /// Backward of [`Tensor::sum_axis`]: broadcasts `grad` back over `axis` of `input_shape`.
    pub fn sum_axis_backward(grad: &Tensor, input_shape: &[usize], axis: usize) -> Result<Tensor> {
        if axis >= input_shape.len() {
            return Err(TensorError::IndexOutOfRange {
                op: "sum_axis_backward",
                index: axis,
                bound: input_shape.len(),
            });
        }
        let mut kept = input_shape.to_vec();
        kept[axis] = 1;
        if grad.numel() != numel(&kept) {
            return Err(mismatch("sum_axis_backward", &kept, grad.shape()));
        }
        grad.reshape(&kept)?.broadcast_to(input_shape)
    }

    /// Backward of [`Tensor::max_axis`]: `grad` (with or without the kept axis) flows to the
    /// first maximal element of each slice of `self` (the forward input); others get 0.
    pub fn max_axis_backward(&self, grad: &Tensor, axis: usize) -> Result<Tensor> {
        self.check_axis("max_axis_backward", axis)?;
        check_same_device("max_axis_backward", self, grad)?;
        let (outer, len, inner) = split_axis(self.shape(), axis);
        if grad.numel() != outer * inner {
            return Err(mismatch("max_axis_backward", self.shape(), grad.shape()));
        }
        let storage = match (self.storage(), grad.storage()) {
            (Storage::Cpu(x), Storage::Cpu(g)) => {
                Storage::Cpu(CpuBackend.max_axis_backward(x, g, outer, len, inner))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(g)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().max_axis_backward(x, g, outer, len, inner))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("max_axis_backward")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Index of the first maximum along `axis` for every other position, row-major over the
    /// remaining dimensions (e.g. predicted classes of `[N, K]` logits with `axis = 1`).
    /// Returned on the host: it feeds metrics, not further tensor math.
    pub fn argmax_axis(&self, axis: usize) -> Result<Vec<usize>> {
        self.check_axis("argmax_axis", axis)?;
        let (outer, len, inner) = split_axis(self.shape(), axis);
        if len == 0 {
            return Err(crate::error::invalid_shape(
                "argmax_axis",
                self.shape(),
                "cannot take the argmax of an empty axis",
            ));
        }
        let x = self.to_vec();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |l: usize| x[(o * len + l) * inner + i];
                out.push((1..len).fold(0, |best, l| if at(l) > at(best) { l } else { best }));
            }
        }
        Ok(out)
    }

    /// Sum of all elements (accumulated in `f64`).
    pub fn sum_all(&self) -> f32 {
        let n = self.numel();
        match self.reshape(&[1, n]) {
            Ok(t) => t.sum_axis(1, false).and_then(|s| s.item()).unwrap_or(0.0),
            Err(_) => 0.0,
        }
    }

    /// Mean of all elements (NaN for an empty tensor).
    pub fn mean_all(&self) -> f32 {
        (self.sum_all() as f64 / self.numel() as f64) as f32
    }

    /// Squared L2 norm of each example: `[N, ...] -> [N]`, `out[i] = sum(self[i]^2)`.
    pub fn row_sq_norms(&self) -> Result<Tensor> {
        let Some(&n) = self.shape().first() else {
            return Err(crate::error::invalid_shape(
                "row_sq_norms",
                self.shape(),
                "needs rank >= 1",
            ));
        };
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.row_sq_norms(x, n)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().row_sq_norms(x, n)),
        };
        Ok(Tensor::from_storage(storage, vec![n]))
    }
}
