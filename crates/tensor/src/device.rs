//! Devices and the storage that lives on them.
//!
//! A [`Device`] names where a tensor's data lives; [`Storage`] is the matching buffer. Each
//! backend adds one variant to each enum and one implementation of
//! [`crate::backend::BackendOps`]; the compiler then points at every dispatch `match` that needs
//! a new arm, and callers of [`crate::Tensor`] do not change.

use crate::error::{Result, TensorError};

/// Where a tensor's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Device {
    /// Host memory; kernels run on the CPU backend (rayon + BLAS). The reference backend.
    #[default]
    Cpu,
    /// The process-wide wgpu device (Vulkan, Metal or DX12): WGSL compute shaders, tested
    /// against the CPU backend. Requires the `wgpu` cargo feature (on by default).
    Wgpu,
}

/// The environment variable that forces a device: `cpu`, `wgpu` or `auto`.
pub const DEVICE_ENV: &str = "SPARSEDP_DEVICE";

impl Device {
    /// The fastest device available: a discrete GPU, then an integrated one (through wgpu),
    /// else the CPU backend. Software adapters such as Mesa's lavapipe are never chosen
    /// automatically (the CPU backend is faster than a CPU emulating a GPU); force them with
    /// `SPARSEDP_DEVICE=wgpu`.
    ///
    /// [`DEVICE_ENV`] (`SPARSEDP_DEVICE`) overrides the choice: `cpu`, `wgpu` or `auto`. A
    /// forced `wgpu` that cannot start is an error, not a silent fallback.
    pub fn best() -> Result<Device> {
        match std::env::var(DEVICE_ENV) {
            Ok(v) => Device::from_name(&v),
            Err(_) => Ok(Device::auto()),
        }
    }

    /// Parses `cpu`, `wgpu` (alias `gpu`) or `auto` (see [`Device::best`]). `wgpu` is checked:
    /// the call fails with the reason when no adapter can be opened.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" | "" => Ok(Device::auto()),
            "wgpu" | "gpu" => {
                wgpu_check()?;
                Ok(Device::Wgpu)
            }
            other => Err(TensorError::InvalidArgument {
                op: "device",
                reason: format!("unknown device {other:?}: expected cpu, wgpu or auto"),
            }),
        }
    }

    fn auto() -> Device {
        #[cfg(feature = "wgpu")]
        if let Ok(g) = crate::wgpu::gpu()
            && crate::wgpu::is_hardware(g.adapter().device_type)
        {
            return Device::Wgpu;
        }
        Device::Cpu
    }

    /// A description of the hardware behind this device, e.g. `"cpu (2 threads)"` or
    /// `"wgpu: NVIDIA H100 80GB HBM3 (Vulkan, DiscreteGpu)"`.
    pub fn describe(self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Wgpu => match wgpu_check() {
                Ok(name) => format!("wgpu: {name}"),
                Err(e) => format!("wgpu: unavailable ({e})"),
            },
        }
    }

    /// Blocks until every kernel queued on this device has finished (for timing; downloads
    /// synchronise on their own). Reports a lost device or a recorded GPU error.
    pub fn synchronize(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => crate::wgpu::gpu()?.sync(),
            #[cfg(not(feature = "wgpu"))]
            Device::Wgpu => wgpu_check().map(|_| ()),
        }
    }
}

/// The adapter description, or why wgpu cannot be used.
fn wgpu_check() -> Result<String> {
    #[cfg(feature = "wgpu")]
    {
        crate::wgpu::gpu().map(|g| crate::wgpu::describe(g.adapter()))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Err(no_wgpu("wgpu"))
    }
}

/// The buffer behind a tensor, one variant per device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Storage {
    /// Contiguous row-major `f32` values in host memory.
    Cpu(Vec<f32>),
    /// Contiguous row-major `f32` values in a wgpu storage buffer.
    #[cfg(feature = "wgpu")]
    Wgpu(crate::wgpu::GpuBuffer),
}

impl Storage {
    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => Device::Wgpu,
        }
    }

    /// The host buffer of a CPU storage.
    pub(crate) fn cpu(&self) -> Option<&Vec<f32>> {
        match self {
            Storage::Cpu(v) => Some(v),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => None,
        }
    }

    /// The device buffer of a wgpu storage.
    #[cfg(feature = "wgpu")]
    pub(crate) fn gpu(&self) -> Option<&crate::wgpu::GpuBuffer> {
        match self {
            Storage::Wgpu(b) => Some(b),
            Storage::Cpu(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => b.len,
        }
    }
}

/// Runs a GPU kernel that produces `out_len` values, after checking that the result fits the
/// adapter and that no earlier GPU error is pending.
#[cfg(feature = "wgpu")]
pub(crate) fn on_gpu(
    op: &'static str,
    out_len: usize,
    f: impl FnOnce(&crate::wgpu::Gpu) -> crate::wgpu::GpuBuffer,
) -> Result<Storage> {
    let g = crate::wgpu::gpu()?;
    g.check_fits(op, out_len)?;
    Ok(Storage::Wgpu(f(g)))
}

/// The error for a wgpu request in a build without the `wgpu` feature.
#[cfg(not(feature = "wgpu"))]
pub(crate) fn no_wgpu(op: &'static str) -> TensorError {
    TensorError::Device {
        op,
        reason: "sparsedp-tensor was built without the `wgpu` feature".into(),
    }
}
