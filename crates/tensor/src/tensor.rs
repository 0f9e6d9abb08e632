//! The [`Tensor`] type: a shape, contiguous row-major `f32` storage and a device.

use crate::backend::{BackendOps, CpuBackend};
use crate::device::{Device, Storage};
use crate::error::{Result, TensorError, invalid_arg, invalid_shape, mismatch};

/// A dense `f32` tensor with contiguous row-major storage (NCHW for images).
///
/// Tensors are plain values: operations return new tensors and never alias their inputs, so
/// there are no views or strides to reason about. Reshaping a tensor that is owned is free
/// ([`Tensor::into_reshape`]); transposed matrix operands are expressed by flags on
/// [`Tensor::matmul_t`] rather than by materialised transposes.
#[derive(PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

/// Number of elements of a shape (1 for the scalar shape `[]`). Saturates instead of
/// overflowing, so an absurd user shape fails the length checks rather than panicking.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX)
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    /// Wraps `data` (row-major) as a CPU tensor of the given shape.
    ///
    /// Errors with [`TensorError::LengthMismatch`] when `data.len()` differs from the product
    /// of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let n = numel(shape);
        if data.len() != n {
            return Err(TensorError::LengthMismatch {
                op: "from_vec",
                expected: n,
                actual: data.len(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(data),
        })
    }

    /// Copies `data` into a new CPU tensor of the given shape.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A tensor of the given shape filled with `value`, on `Device::Cpu`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::Cpu(vec![value; numel(shape)]),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[], value)
    }

    /// Internal constructor for kernels that produced a buffer of the right length.
    pub(crate) fn from_storage(storage: Storage, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(storage.len(), numel(&shape));
        Tensor { shape, storage }
    }

    /// Internal constructor for CPU kernels.
    pub(crate) fn from_cpu(data: Vec<f32>, shape: Vec<usize>) -> Tensor {
        Tensor::from_storage(Storage::Cpu(data), shape)
    }

    // ----- inspection ---------------------------------------------------------------------

    /// The shape (dimension sizes, outermost first).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Total number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Size of dimension `axis`, or an error if the tensor has fewer dimensions.
    pub fn dim(&self, axis: usize) -> Result<usize> {
        self.shape
            .get(axis)
            .copied()
            .ok_or(TensorError::IndexOutOfRange {
                op: "dim",
                index: axis,
                bound: self.shape.len(),
            })
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// The backing storage (crate-internal dispatch).
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The backing storage, mutably (crate-internal in-place kernels).
    pub(crate) fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    /// Copies the values to host memory in row-major order (a download for device backends).
    ///
    /// # Panics
    /// If the GPU device was lost or a kernel failed (the message names the cause); use
    /// [`Tensor::try_to_vec`] to handle that case.
    pub fn to_vec(&self) -> Vec<f32> {
        self.try_to_vec()
            .unwrap_or_else(|e| panic!("to_vec: {e} (use try_to_vec to handle device errors)"))
    }

    /// Copies the values to host memory, reporting device failures (a lost GPU, a kernel
    /// error recorded since the last download) instead of returning stale values.
    pub fn try_to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => crate::wgpu::gpu()?.download(b),
        }
    }

    /// Consumes the tensor and returns its values in row-major order.
    ///
    /// # Panics
    /// As [`Tensor::to_vec`], for device tensors whose download fails.
    pub fn into_vec(mut self) -> Vec<f32> {
        match &mut self.storage {
            // Taking the buffer leaves an empty one behind for `Drop`, which then has nothing
            // to recycle.
            Storage::Cpu(v) => std::mem::take(v),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => self.to_vec(),
        }
    }

    /// Borrows the values of a CPU tensor; `None` for tensors on other devices.
    pub fn as_slice(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::Cpu(v) => Some(v),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => None,
        }
    }

    /// Mutably borrows the values of a CPU tensor; `None` for tensors on other devices.
    pub fn as_mut_slice(&mut self) -> Option<&mut [f32]> {
        match &mut self.storage {
            Storage::Cpu(v) => Some(v),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => None,
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(invalid_shape(
                "item",
                &self.shape,
                "expected exactly one element",
            ));
        }
        Ok(self.to_vec()[0])
    }

    /// Copies the tensor to `device` (an upload or a download; a copy on the same device).
    ///
    /// Errors when the device is unavailable (no adapter, built without the `wgpu` feature),
    /// when the tensor exceeds the adapter's largest buffer, or when a download fails.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        match (device, &self.storage) {
            (Device::Cpu, Storage::Cpu(_)) => Ok(self.clone()),
            #[cfg(feature = "wgpu")]
            (Device::Cpu, Storage::Wgpu(_)) => {
                Ok(Tensor::from_cpu(self.try_to_vec()?, self.shape.clone()))
            }
            #[cfg(feature = "wgpu")]
            (Device::Wgpu, Storage::Cpu(v)) => {
                let s = crate::device::on_gpu("to_device", v.len(), |g| g.upload(v))?;
                Ok(Tensor::from_storage(s, self.shape.clone()))
            }
            #[cfg(feature = "wgpu")]
            (Device::Wgpu, Storage::Wgpu(_)) => Ok(self.clone()),
            #[cfg(not(feature = "wgpu"))]
            (Device::Wgpu, _) => Err(crate::device::no_wgpu("to_device")),
        }
    }

    /// A tensor of `value`s created directly on `device`.
    pub fn full_on(shape: &[usize], value: f32, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::full(shape, value)),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => {
                let n = numel(shape);
                let s = crate::device::on_gpu("full_on", n, |g| g.fill(n, value))?;
                Ok(Tensor::from_storage(s, shape.to_vec()))
            }
            #[cfg(not(feature = "wgpu"))]
            Device::Wgpu => Err(crate::device::no_wgpu("full_on")),
        }
    }

    /// A tensor of zeros created directly on `device`.
    pub fn zeros_on(shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, device)
    }

    // ----- shape manipulation -------------------------------------------------------------

    /// Returns a tensor with the same data and a new shape of equal element count. One entry of
    /// `shape` may be `usize::MAX` to infer it (like `-1` elsewhere).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        self.clone().into_reshape(shape)
    }

    /// Like [`Tensor::reshape`] but consumes `self`, so no data is copied.
    pub fn into_reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        let shape = infer_shape("reshape", &self.shape, shape)?;
        self.shape = shape;
        Ok(self)
    }

    /// Flattens all dimensions after the first: `[N, ...] -> [N, rest]`.
    pub fn flatten_batch(&self) -> Result<Tensor> {
        if self.shape.is_empty() {
            return Err(invalid_shape(
                "flatten_batch",
                &self.shape,
                "needs rank >= 1",
            ));
        }
        let n = self.shape[0];
        let rest = self
            .numel()
            .checked_div(n)
            .unwrap_or_else(|| numel(&self.shape[1..]));
        self.reshape(&[n, rest])
    }

    /// Permutes dimensions: output dimension `i` is input dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r {
            return Err(invalid_arg(
                "permute",
                format!(
                    "permutation {perm:?} has wrong length for shape {:?}",
                    self.shape
                ),
            ));
        }
        for &p in perm {
            if p >= r || seen[p] {
                return Err(invalid_arg(
                    "permute",
                    format!("{perm:?} is not a permutation of 0..{r}"),
                ));
            }
            seen[p] = true;
        }
        let out_shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let storage = match &self.storage {
            Storage::Cpu(v) => Storage::Cpu(CpuBackend.permute(v, &self.shape, perm)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().permute(b, &self.shape, perm))
            }
        };
        Ok(Tensor::from_storage(storage, out_shape))
    }

    /// Swaps the last two dimensions (matrix transpose, batched for rank > 2).
    pub fn transpose(&self) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(invalid_shape("transpose", &self.shape, "needs rank >= 2"));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(&perm)
    }

    /// The sub-tensor `start..start + len` along `axis` (a copy).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        if axis >= self.rank() {
            return Err(TensorError::IndexOutOfRange {
                op: "narrow",
                index: axis,
                bound: self.rank(),
            });
        }
        let size = self.shape[axis];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(invalid_arg(
                "narrow",
                format!(
                    "range {start}..{start}+{len} exceeds dimension {axis} of {:?}",
                    self.shape
                ),
            ));
        }
        let outer = numel(&self.shape[..axis]);
        let inner = numel(&self.shape[axis + 1..]);
        let mut out_shape = self.shape.clone();
        out_shape[axis] = len;
        let storage = match &self.storage {
            Storage::Cpu(v) => {
                let mut out = Vec::with_capacity(outer * len * inner);
                for o in 0..outer {
                    let base = (o * size + start) * inner;
                    out.extend_from_slice(&v[base..base + len * inner]);
                }
                Storage::Cpu(out)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => {
                let g = crate::wgpu::gpu_or_lost();
                let out = g.alloc(outer * len * inner);
                g.copy_blocks(
                    b,
                    start * inner,
                    size * inner,
                    &out,
                    0,
                    len * inner,
                    outer,
                    len * inner,
                );
                Storage::Wgpu(out)
            }
        };
        Ok(Tensor::from_storage(storage, out_shape))
    }

    /// Concatenates tensors along `axis`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| invalid_arg("cat", "no tensors given"))?;
        if axis >= first.rank() {
            return Err(TensorError::IndexOutOfRange {
                op: "cat",
                index: axis,
                bound: first.rank(),
            });
        }
        let mut total = 0;
        for t in tensors {
            check_same_device("cat", first, t)?;
            let ok = t.rank() == first.rank()
                && t.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                return Err(mismatch("cat", &first.shape, &t.shape));
            }
            total += t.shape[axis];
        }
        let outer = numel(&first.shape[..axis]);
        let inner = numel(&first.shape[axis + 1..]);
        let mut out_shape = first.shape.clone();
        out_shape[axis] = total;
        if first.device() == Device::Cpu {
            let mut out = Vec::with_capacity(numel(&out_shape));
            for o in 0..outer {
                for t in tensors {
                    let len = t.shape[axis] * inner;
                    #[allow(irrefutable_let_patterns)]
                    if let Storage::Cpu(v) = &t.storage {
                        out.extend_from_slice(&v[o * len..(o + 1) * len]);
                    }
                }
            }
            return Ok(Tensor::from_cpu(out, out_shape));
        }
        #[cfg(feature = "wgpu")]
        {
            let total_len = total * inner;
            let storage = crate::device::on_gpu("cat", numel(&out_shape), |g| {
                let out = g.alloc(outer * total_len);
                let mut off = 0;
                for t in tensors {
                    let len = t.shape[axis] * inner;
                    if let Storage::Wgpu(b) = &t.storage {
                        g.copy_blocks(b, 0, len, &out, off, total_len, outer, len);
                    }
                    off += len;
                }
                out
            })?;
            Ok(Tensor::from_storage(storage, out_shape))
        }
        #[cfg(not(feature = "wgpu"))]
        Err(crate::device::no_wgpu("cat"))
    }
}

impl Clone for Tensor {
    /// Copies the values into a buffer from the crate's buffer cache when one fits.
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Cpu(v) => Storage::Cpu(crate::buffers::copied(v)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => Storage::Wgpu(b.clone()),
        };
        Tensor {
            shape: self.shape.clone(),
            storage,
        }
    }
}

/// Shows the shape, the device and at most the first eight values: tensors of activations or
/// per-example gradients hold millions of values, which would drown a log or a test failure.
impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        let head: Vec<f32> = match &self.storage {
            Storage::Cpu(v) => v.iter().take(SHOWN).copied().collect(),
            // Formatting must not fail: a failed download shows no values.
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => self
                .try_to_vec()
                .unwrap_or_default()
                .into_iter()
                .take(SHOWN)
                .collect(),
        };
        let more = if self.numel() > SHOWN { ", ..." } else { "" };
        write!(
            f,
            "Tensor {{ shape: {:?}, device: {:?}, values: {head:?}{more} }}",
            self.shape,
            self.device()
        )
    }
}

impl Drop for Tensor {
    /// Large CPU buffers go back to the crate's buffer cache (see `buffers`), so the next
    /// tensor of the same size does not pay for fresh page faults.
    fn drop(&mut self) {
        match &mut self.storage {
            Storage::Cpu(v) => crate::buffers::recycle(std::mem::take(v)),
            // wgpu frees the buffer once no recorded command uses it any more.
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => {}
        }
    }
}

/// Resolves a requested shape (with at most one `usize::MAX` wildcard) against `from`.
fn infer_shape(op: &'static str, from: &[usize], to: &[usize]) -> Result<Vec<usize>> {
    let total = numel(from);
    let wild = to.iter().filter(|&&d| d == usize::MAX).count();
    if wild > 1 {
        return Err(invalid_arg(
            op,
            format!("at most one inferred dimension allowed in {to:?}"),
        ));
    }
    let mut out = to.to_vec();
    if wild == 1 {
        let known: usize = to.iter().filter(|&&d| d != usize::MAX).product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(mismatch(op, from, to));
        }
        for d in out.iter_mut() {
            if *d == usize::MAX {
                *d = total / known;
            }
        }
    }
    if numel(&out) != total {
        return Err(mismatch(op, from, to));
    }
    Ok(out)
}

/// The error for operands on different devices that reached a kernel dispatch (callers check
/// devices first, so this is a defensive fallback rather than an expected path).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn mixed_devices(op: &'static str) -> TensorError {
    invalid_arg(op, "operands live on different devices")
}

/// Errors unless both tensors live on the same device.
pub(crate) fn check_same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(TensorError::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    Ok(())
}
