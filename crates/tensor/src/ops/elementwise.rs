//! Elementwise binary arithmetic with NumPy-style broadcasting, scalar arithmetic, and the two
//! shape adapters that backward passes of broadcasting ops need: [`Tensor::broadcast_to`] and
//! its adjoint [`Tensor::sum_to_shape`].

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, mismatch};
use crate::tensor::{Tensor, check_same_device, numel};

/// A binary elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
}

impl BinaryOp {
    #[inline(always)]
    pub(crate) fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Elements per rayon task for elementwise kernels: below this, threading costs more than it saves.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// The broadcast shape of `a` and `b` (dimensions aligned from the right; sizes must be equal
/// or 1).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i < r - a.len() {
            1
        } else {
            a[i - (r - a.len())]
        };
        let db = if i < r - b.len() {
            1
        } else {
            b[i - (r - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(mismatch("broadcast", a, b)),
        };
    }
    Ok(out)
}

/// Strides of `shape` viewed inside `out` (rank-aligned from the right), 0 on broadcast dims.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        strides[oi] = if shape[i] == 1 && out[oi] != 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// `out[idx] = f(a[idx'], b[idx''])` with broadcasting of both inputs to `out_shape`.
pub(crate) fn broadcast_zip(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let n = numel(out_shape);
    if a_shape == out_shape && b_shape == out_shape {
        // Every element is written below.
        let mut out = crate::buffers::for_overwrite(n);
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
            .for_each(|(o, (x, y))| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(x, y);
                }
            });
        return out;
    }
    let mut out = crate::buffers::zeroed(n);
    if n == 0 {
        return out;
    }
    let r = out_shape.len();
    if r == 0 {
        out[0] = f(a[0], b[0]);
        return out;
    }
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let last = out_shape[r - 1];
    let (la, lb) = (sa[r - 1], sb[r - 1]);
    let rows_per_task = (PAR_CHUNK / last.max(1)).max(1);
    out.par_chunks_mut(rows_per_task * last)
        .enumerate()
        .for_each(|(task, block)| {
            for (j, row) in block.chunks_mut(last).enumerate() {
                // Decompose the row index over the leading dimensions to find both offsets.
                let mut rem = task * rows_per_task + j;
                let (mut oa, mut ob) = (0, 0);
                for d in (0..r - 1).rev() {
                    let idx = rem % out_shape[d];
                    rem /= out_shape[d];
                    oa += idx * sa[d];
                    ob += idx * sb[d];
                }
                for (k, o) in row.iter_mut().enumerate() {
                    *o = f(a[oa + k * la], b[ob + k * lb]);
                }
            }
        });
    out
}

/// CPU kernel for a broadcasting binary op.
pub(crate) fn cpu_binary(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out: &[usize],
) -> Vec<f32> {
    broadcast_zip(a, sa, b, sb, out, |x, y| op.apply(x, y))
}

/// CPU kernel for `f(x)` with a scalar operand: `x op s` (or `s op x` when `scalar_first`).
pub(crate) fn cpu_scalar(op: BinaryOp, a: &[f32], s: f32, scalar_first: bool) -> Vec<f32> {
    let mut out = crate::buffers::copied(a);
    out.par_chunks_mut(PAR_CHUNK).for_each(|c| {
        for v in c {
            *v = if scalar_first {
                op.apply(s, *v)
            } else {
                op.apply(*v, s)
            };
        }
    });
    out
}

impl Tensor {
    /// Broadcasting binary operation `self op rhs`.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        check_same_device("binary", self, rhs)?;
        let out_shape = broadcast_shape(self.shape(), rhs.shape())?;
        let storage = match (self.storage(), rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::Cpu(CpuBackend.binary(op, a, self.shape(), b, rhs.shape(), &out_shape))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(a), Storage::Wgpu(b)) => {
                crate::device::on_gpu("binary", numel(&out_shape), |g| {
                    g.binary(op, a, self.shape(), b, rhs.shape(), &out_shape)
                })?
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("binary")),
        };
        Ok(Tensor::from_storage(storage, out_shape))
    }

    /// `self + rhs` with broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    /// `self - rhs` with broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    /// `self * rhs` (elementwise) with broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    /// `self / rhs` (elementwise) with broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }

    /// Gradients of `z = a op b` (broadcasting) with respect to `a` and `b`, each reduced back to
    /// its operand's shape.
    pub fn binary_backward(
        a: &Tensor,
        b: &Tensor,
        grad: &Tensor,
        op: BinaryOp,
    ) -> Result<(Tensor, Tensor)> {
        let out_shape = broadcast_shape(a.shape(), b.shape())?;
        if grad.shape() != out_shape.as_slice() {
            return Err(mismatch("binary_backward", &out_shape, grad.shape()));
        }
        let (ga, gb) = match op {
            BinaryOp::Add => (grad.clone(), grad.clone()),
            BinaryOp::Sub => (grad.clone(), grad.scale(-1.0)),
            BinaryOp::Mul => (grad.mul(b)?, grad.mul(a)?),
            BinaryOp::Div => {
                // d(a/b)/db = -a / b^2
                let ga = grad.div(b)?;
                let gb = ga.mul(a)?.div(b)?.scale(-1.0);
                (ga, gb)
            }
        };
        Ok((ga.sum_to_shape(a.shape())?, gb.sum_to_shape(b.shape())?))
    }

    fn scalar_op(&self, op: BinaryOp, s: f32, scalar_first: bool) -> Tensor {
        let storage = match self.storage() {
            Storage::Cpu(a) => Storage::Cpu(CpuBackend.scalar(op, a, s, scalar_first)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(a) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().scalar(op, a, s, scalar_first))
            }
        };
        Tensor::from_storage(storage, self.shape().to_vec())
    }

    /// `self * alpha`.
    pub fn scale(&self, alpha: f32) -> Tensor {
        self.scalar_op(BinaryOp::Mul, alpha, false)
    }
    /// `self + c`.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        self.scalar_op(BinaryOp::Add, c, false)
    }
    /// `c / self`, elementwise.
    pub fn rdiv_scalar(&self, c: f32) -> Tensor {
        self.scalar_op(BinaryOp::Div, c, true)
    }

    /// In place `self += alpha * other` (same shape; the optimizer and gradient-accumulation
    /// primitive).
    pub fn add_scaled_(&mut self, alpha: f32, other: &Tensor) -> Result<()> {
        check_same_device("add_scaled_", self, other)?;
        if self.shape() != other.shape() {
            return Err(mismatch("add_scaled_", self.shape(), other.shape()));
        }
        match (self.storage_mut(), other.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => CpuBackend.axpy(a, alpha, b),
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(a), Storage::Wgpu(b)) => crate::wgpu::gpu_or_lost().axpy(a, alpha, b),
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("add_scaled_")),
        }
        Ok(())
    }

    /// Broadcasts `self` to `shape` (a copy), following the rules of [`broadcast_shape`].
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let out = broadcast_shape(self.shape(), shape)?;
        if out != shape {
            return Err(mismatch("broadcast_to", self.shape(), shape));
        }
        let storage = match self.storage() {
            Storage::Cpu(a) => {
                Storage::Cpu(broadcast_zip(a, self.shape(), &[0.0], &[], shape, |x, _| x))
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(a) => crate::device::on_gpu("broadcast_to", numel(shape), |g| {
                g.broadcast(a, self.shape(), shape)
            })?,
        };
        Ok(Tensor::from_storage(storage, shape.to_vec()))
    }

    /// Sums `self` down to `shape`, the adjoint of [`Tensor::broadcast_to`]: dimensions that
    /// `shape` lacks or has as 1 are summed over.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let b = broadcast_shape(shape, self.shape())?;
        if b != self.shape() {
            return Err(mismatch("sum_to_shape", self.shape(), shape));
        }
        let r = self.rank();
        let lead = r - shape.len();
        let mut t = self.clone();
        for ax in (0..r).rev() {
            let target = if ax < lead { 1 } else { shape[ax - lead] };
            if target == 1 && self.shape()[ax] != 1 {
                t = t.sum_axis(ax, true)?;
            }
        }
        t.into_reshape(shape)
    }
}

/// CPU kernel: `a += alpha * b`.
pub(crate) fn cpu_axpy(a: &mut [f32], alpha: f32, b: &[f32]) {
    a.par_chunks_mut(PAR_CHUNK)
        .zip(b.par_chunks(PAR_CHUNK))
        .for_each(|(x, y)| {
            for (x, &y) in x.iter_mut().zip(y) {
                *x += alpha * y;
            }
        });
}
