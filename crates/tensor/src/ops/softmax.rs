//! Softmax and log-softmax over the last axis, and per-example cross-entropy, with backward.
//!
//! Cross-entropy returns one loss per example (no reduction): DP-SGD needs per-example losses
//! and gradients, and the mean over the batch is the caller's choice.

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, TensorError, invalid_shape, mismatch};
use crate::tensor::{Tensor, check_same_device};

/// Rows per rayon task for row-wise kernels.
const ROWS_PER_TASK: usize = 64;

/// CPU kernel: softmax (or log-softmax) of each row, max-subtracted for stability.
pub(crate) fn cpu_softmax(x: &[f32], cols: usize, log: bool) -> Vec<f32> {
    let mut out = crate::buffers::copied(x);
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|block| {
        for row in block.chunks_mut(cols) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
            if log {
                let lse = sum.ln() as f32;
                row.iter_mut().for_each(|v| *v = *v - m - lse);
            } else {
                row.iter_mut()
                    .for_each(|v| *v = (((*v - m) as f64).exp() / sum) as f32);
            }
        }
    });
    out
}

/// CPU kernel: softmax backward `y * (g - <g, y>)`; log-softmax backward `g - e^y * sum(g)`.
pub(crate) fn cpu_softmax_backward(y: &[f32], g: &[f32], cols: usize, log: bool) -> Vec<f32> {
    let mut out = crate::buffers::copied(g);
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(cols * ROWS_PER_TASK)
        .zip(y.par_chunks(cols * ROWS_PER_TASK))
        .for_each(|(ob, yb)| {
            for (o, y) in ob.chunks_mut(cols).zip(yb.chunks(cols)) {
                if log {
                    let s: f64 = o.iter().map(|&v| v as f64).sum();
                    for (o, &y) in o.iter_mut().zip(y) {
                        *o -= (y.exp() as f64 * s) as f32;
                    }
                } else {
                    let dot: f64 = o.iter().zip(y).map(|(&g, &y)| g as f64 * y as f64).sum();
                    for (o, &y) in o.iter_mut().zip(y) {
                        *o = y * (*o - dot as f32);
                    }
                }
            }
        });
    out
}

/// CPU kernel: `loss_i = logsumexp(z_i) - z_i[t_i]`.
pub(crate) fn cpu_cross_entropy(logits: &[f32], targets: &[usize], cols: usize) -> Vec<f32> {
    let ls = cpu_softmax(logits, cols, true);
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| -ls[i * cols + t])
        .collect()
}

/// CPU kernel: `dz_i = grad_i * (softmax(z_i) - onehot(t_i))`.
pub(crate) fn cpu_cross_entropy_backward(
    logits: &[f32],
    targets: &[usize],
    grad: &[f32],
    cols: usize,
) -> Vec<f32> {
    let mut p = cpu_softmax(logits, cols, false);
    p.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            if cols == 0 {
                return;
            }
            row[targets[i]] -= 1.0;
            row.iter_mut().for_each(|v| *v *= grad[i]);
        });
    p
}

impl Tensor {
    fn last_dim(&self, op: &'static str) -> Result<usize> {
        self.shape()
            .last()
            .copied()
            .ok_or_else(|| invalid_shape(op, self.shape(), "needs rank >= 1"))
    }

    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        let cols = self.last_dim("softmax")?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.softmax(x, cols, false)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().softmax(x, cols, false)),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let cols = self.last_dim("log_softmax")?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.softmax(x, cols, true)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().softmax(x, cols, true)),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    fn softmax_bw(&self, grad: &Tensor, log: bool) -> Result<Tensor> {
        check_same_device("softmax_backward", self, grad)?;
        if self.shape() != grad.shape() {
            return Err(mismatch("softmax_backward", self.shape(), grad.shape()));
        }
        let cols = self.last_dim("softmax_backward")?;
        let storage = match (self.storage(), grad.storage()) {
            (Storage::Cpu(y), Storage::Cpu(g)) => {
                Storage::Cpu(CpuBackend.softmax_backward(y, g, cols, log))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(y), Storage::Wgpu(g)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().softmax_backward(y, g, cols, log))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("softmax_backward")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Backward of [`Tensor::softmax`]; `self` is the softmax **output**.
    pub fn softmax_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.softmax_bw(grad, false)
    }

    /// Backward of [`Tensor::log_softmax`]; `self` is the log-softmax **output**.
    pub fn log_softmax_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.softmax_bw(grad, true)
    }

    fn check_ce(&self, op: &'static str, targets: &[usize]) -> Result<(usize, usize)> {
        let [n, k] = *self.shape() else {
            return Err(invalid_shape(
                op,
                self.shape(),
                "logits must be [N, classes]",
            ));
        };
        if targets.len() != n {
            return Err(mismatch(op, self.shape(), &[targets.len()]));
        }
        if let Some(&bad) = targets.iter().find(|&&t| t >= k) {
            return Err(TensorError::IndexOutOfRange {
                op,
                index: bad,
                bound: k,
            });
        }
        Ok((n, k))
    }

    /// Per-example cross-entropy of logits `[N, K]` against class indices: `[N]`.
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Tensor> {
        let (n, k) = self.check_ce("cross_entropy", targets)?;
        let storage = match self.storage() {
            Storage::Cpu(z) => Storage::Cpu(CpuBackend.cross_entropy(z, targets, k)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(z) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().cross_entropy(z, targets, k))
            }
        };
        Ok(Tensor::from_storage(storage, vec![n]))
    }

    /// Gradient of the per-example losses with respect to the logits (`self`), each row scaled
    /// by `grad[i]` (pass ones for the unreduced losses, `1/N` for their mean).
    pub fn cross_entropy_backward(&self, targets: &[usize], grad: &Tensor) -> Result<Tensor> {
        let (n, k) = self.check_ce("cross_entropy_backward", targets)?;
        check_same_device("cross_entropy_backward", self, grad)?;
        if grad.shape() != [n] {
            return Err(mismatch("cross_entropy_backward", &[n], grad.shape()));
        }
        let storage = match (self.storage(), grad.storage()) {
            (Storage::Cpu(z), Storage::Cpu(g)) => {
                Storage::Cpu(CpuBackend.cross_entropy_backward(z, targets, g, k))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(z), Storage::Wgpu(g)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().cross_entropy_backward(z, targets, g, k))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("cross_entropy_backward")),
        };
        Ok(Tensor::from_storage(storage, vec![n, k]))
    }
}
