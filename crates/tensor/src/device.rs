//! Devices and the storage that lives on them.
//!
//! A [`Device`] names where a tensor's data lives; [`Storage`] is the matching buffer. Only the CPU
//! exists today. A second backend (wgpu) adds one variant to each enum and one implementation of
//! [`crate::backend::BackendOps`]; the compiler then points at every dispatch `match` that needs a
//! new arm, and callers of [`crate::Tensor`] do not change.

/// Where a tensor's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Device {
    /// Host memory; kernels run on the CPU backend (rayon + BLAS). The reference backend.
    #[default]
    Cpu,
}

/// The buffer behind a tensor, one variant per device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Storage {
    /// Contiguous row-major `f32` values in host memory.
    Cpu(Vec<f32>),
}

impl Storage {
    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }
}
