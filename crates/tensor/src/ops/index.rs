//! Indexing: gather / scatter-add along an axis, whole-slice select / add, and 0/1 masking.
//!
//! Indices are host-side `usize` slices: they come from labels, batch samplers and pruning
//! masks that the training loop holds on the host anyway.

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, TensorError, invalid_arg, mismatch};
use crate::ops::reduce::split_axis;
use crate::tensor::{Tensor, check_same_device};

/// CPU kernel: `out[o, j, i] = x[o, index[o, j, i], i]`.
pub(crate) fn cpu_gather(
    x: &[f32],
    index: &[usize],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let j = index.len().checked_div(outer * inner).unwrap_or(0);
    let mut out = crate::buffers::zeroed(index.len());
    for o in 0..outer {
        for jj in 0..j {
            for i in 0..inner {
                let p = (o * j + jj) * inner + i;
                out[p] = x[(o * len + index[p]) * inner + i];
            }
        }
    }
    out
}

/// CPU kernel: `base[o, index[o, j, i], i] += src[o, j, i]`.
pub(crate) fn cpu_scatter_add(
    base: &[f32],
    index: &[usize],
    src: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let j = index.len().checked_div(outer * inner).unwrap_or(0);
    let mut out = crate::buffers::copied(base);
    for o in 0..outer {
        for jj in 0..j {
            for i in 0..inner {
                let p = (o * j + jj) * inner + i;
                out[(o * len + index[p]) * inner + i] += src[p];
            }
        }
    }
    out
}

/// CPU kernel: `out[o, j, :] = x[o, index[j], :]`.
pub(crate) fn cpu_index_select(
    x: &[f32],
    index: &[usize],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let mut out = crate::buffers::zeroed(outer * index.len() * inner);
    if inner == 0 {
        return out;
    }
    out.par_chunks_mut(inner)
        .enumerate()
        .for_each(|(row, dst)| {
            let (o, jj) = (row / index.len(), row % index.len());
            let s = (o * len + index[jj]) * inner;
            dst.copy_from_slice(&x[s..s + inner]);
        });
    out
}

/// CPU kernel: `base[o, index[j], :] += src[o, j, :]`.
pub(crate) fn cpu_index_add(
    base: &[f32],
    index: &[usize],
    src: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<f32> {
    let mut out = crate::buffers::copied(base);
    for o in 0..outer {
        for (jj, &ix) in index.iter().enumerate() {
            let d = (o * len + ix) * inner;
            let s = (o * index.len() + jj) * inner;
            for k in 0..inner {
                out[d + k] += src[s + k];
            }
        }
    }
    out
}

fn check_indices(op: &'static str, index: &[usize], bound: usize) -> Result<()> {
    match index.iter().find(|&&i| i >= bound) {
        Some(&bad) => Err(TensorError::IndexOutOfRange {
            op,
            index: bad,
            bound,
        }),
        None => Ok(()),
    }
}

impl Tensor {
    fn axis_parts(&self, op: &'static str, axis: usize) -> Result<(usize, usize, usize)> {
        if axis >= self.rank() {
            return Err(TensorError::IndexOutOfRange {
                op,
                index: axis,
                bound: self.rank(),
            });
        }
        Ok(split_axis(self.shape(), axis))
    }

    /// Gathers along `axis`: `index_shape` equals `self.shape()` except at `axis` (any size J),
    /// and `out[.., j, ..] = self[.., index[.., j, ..], ..]` (PyTorch `gather` semantics with
    /// matching non-axis dimensions). `index` is row-major of `index_shape`.
    pub fn gather(&self, axis: usize, index: &[usize], index_shape: &[usize]) -> Result<Tensor> {
        let op = "gather";
        let (outer, len, inner) = self.axis_parts(op, axis)?;
        check_index_shape(op, self.shape(), index, index_shape, axis)?;
        check_indices(op, index, len)?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.gather(x, index, outer, len, inner)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => {
                crate::device::on_gpu(op, index.len(), |g| g.gather(x, index, outer, len, inner))?
            }
        };
        Ok(Tensor::from_storage(storage, index_shape.to_vec()))
    }

    /// The adjoint of [`Tensor::gather`]: returns `self` with `src` (shape of the index) added at
    /// the gathered positions; duplicates accumulate.
    pub fn scatter_add(&self, axis: usize, index: &[usize], src: &Tensor) -> Result<Tensor> {
        let op = "scatter_add";
        check_same_device(op, self, src)?;
        let (outer, len, inner) = self.axis_parts(op, axis)?;
        check_index_shape(op, self.shape(), index, src.shape(), axis)?;
        check_indices(op, index, len)?;
        let storage = match (self.storage(), src.storage()) {
            (Storage::Cpu(b), Storage::Cpu(s)) => {
                Storage::Cpu(CpuBackend.scatter_add(b, index, s, outer, len, inner))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(b), Storage::Wgpu(s)) => Storage::Wgpu(
                crate::wgpu::gpu_or_lost().scatter_add(b, index, s, outer, len, inner),
            ),
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("scatter_add")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Selects whole slices along `axis` (e.g. the examples of a batch): the output has
    /// `index.len()` entries on that axis.
    pub fn index_select(&self, axis: usize, index: &[usize]) -> Result<Tensor> {
        let op = "index_select";
        let (outer, len, inner) = self.axis_parts(op, axis)?;
        check_indices(op, index, len)?;
        let mut shape = self.shape().to_vec();
        shape[axis] = index.len();
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.index_select(x, index, outer, len, inner)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => {
                crate::device::on_gpu("index_select", outer * index.len() * inner, |g| {
                    g.index_select(x, index, outer, len, inner)
                })?
            }
        };
        Ok(Tensor::from_storage(storage, shape))
    }

    /// The adjoint of [`Tensor::index_select`]: `self` with the slices of `src` added at `index`.
    pub fn index_add(&self, axis: usize, index: &[usize], src: &Tensor) -> Result<Tensor> {
        let op = "index_add";
        check_same_device(op, self, src)?;
        let (outer, len, inner) = self.axis_parts(op, axis)?;
        check_indices(op, index, len)?;
        let mut want = self.shape().to_vec();
        want[axis] = index.len();
        if src.shape() != want.as_slice() {
            return Err(mismatch(op, &want, src.shape()));
        }
        let storage = match (self.storage(), src.storage()) {
            (Storage::Cpu(b), Storage::Cpu(s)) => {
                Storage::Cpu(CpuBackend.index_add(b, index, s, outer, len, inner))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(b), Storage::Wgpu(s)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().index_add(b, index, s, outer, len, inner))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("index_add")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Multiplies by a 0/1 `mask` (broadcast to `self`'s shape). Entries other than exactly 0
    /// or 1 are rejected, so a score tensor cannot be passed by mistake. Being linear, the
    /// backward is the same call on the gradient.
    pub fn masked(&self, mask: &Tensor) -> Result<Tensor> {
        let op = "masked";
        check_same_device(op, self, mask)?;
        let out = crate::ops::elementwise::broadcast_shape(self.shape(), mask.shape())?;
        if out != self.shape() {
            return Err(mismatch(op, self.shape(), mask.shape()));
        }
        if let Some(bad) = mask.to_vec().into_iter().find(|&v| v != 0.0 && v != 1.0) {
            return Err(invalid_arg(
                op,
                format!("mask entries must be 0 or 1, found {bad}"),
            ));
        }
        self.mul(mask)
    }
}

fn check_index_shape(
    op: &'static str,
    shape: &[usize],
    index: &[usize],
    ishape: &[usize],
    axis: usize,
) -> Result<()> {
    let ok = ishape.len() == shape.len()
        && ishape
            .iter()
            .zip(shape)
            .enumerate()
            .all(|(d, (a, b))| d == axis || a == b);
    if !ok {
        return Err(mismatch(op, shape, ishape));
    }
    let n: usize = ishape.iter().product();
    if index.len() != n {
        return Err(TensorError::LengthMismatch {
            op,
            expected: n,
            actual: index.len(),
        });
    }
    Ok(())
}
