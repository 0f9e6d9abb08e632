//! `sparsedp-tensor`: dense `f32` tensors for differentially private CNN training.
//!
//! A [`Tensor`] is a shape plus contiguous row-major storage (NCHW for images) on a [`Device`].
//! Every operation a CNN and DP-SGD need comes with its backward: broadcasting arithmetic,
//! activations, reductions and per-example squared norms, (batched) matmul with transposed
//! operands, conv2d with stride/padding/dilation/groups (forward, input and weight gradients and
//! the **per-example weight gradient** of a batch), `im2col`, pooling, group normalisation,
//! softmax / cross-entropy, gather/scatter and 0/1 masking, and random tensors from a seeded or
//! OS-entropy ChaCha20 stream.
//!
//! # Devices
//! The CPU backend (`backend::CpuBackend`) is both the reference implementation every other
//! path is tested against and a fast engine (im2col + BLAS GEMM, rayon across examples). The
//! wgpu backend (cargo feature `wgpu`, on by default) runs every op as a WGSL compute shader on
//! [`Device::Wgpu`]; tensors move with [`Tensor::to_device`] and stay on the device between ops.
//! [`Device::best`] picks a hardware GPU, else the CPU (`SPARSEDP_DEVICE` forces a choice).
//! Both implement the crate-private `backend::BackendOps` trait: `Tensor` methods validate
//! shapes once and dispatch on the storage's device, so callers never change. Operands on
//! different devices are an error, never an implicit copy.
//!
//! # Performance model
//! Convolutions are im2col + GEMM per example (small feature maps are unfolded several examples
//! side by side), GEMMs go to the system OpenBLAS or to `matrixmultiply`
//! ([`set_gemm_engine`]), and parallelism has exactly one level: rayon across examples or GEMM
//! row panels, with OpenBLAS pinned to one thread so the two pools never oversubscribe the
//! cores. Released buffers of 1 MiB or more are cached for reuse ([`release_cached_buffers`])
//! because first-touch page faults are expensive on virtual machines. Measurements are in
//! `docs/benchmarks.md`.
//!
//! # Errors
//! Invalid shapes and arguments return [`TensorError`] naming the operation and the shapes; no
//! public function panics on user input.
//!
//! ```
//! use sparsedp_tensor::{Conv2dParams, Tensor, TensorRng};
//! let mut rng = TensorRng::seeded(7);
//! let x = Tensor::randn(&[2, 3, 8, 8], 0.0, 1.0, &mut rng)?;
//! let w = Tensor::randn(&[4, 3, 3, 3], 0.0, 0.1, &mut rng)?;
//! let p = Conv2dParams::padded(1);
//! let y = x.conv2d(&w, None, p)?;
//! assert_eq!(y.shape(), &[2, 4, 8, 8]);
//! // Per-example weight gradients sum to the batch weight gradient.
//! let g = Tensor::ones(y.shape());
//! let per = x.conv2d_per_example_weight_grad(&g, [3, 3], p)?; // [2, 4, 27]
//! let total = x.conv2d_backward_weight(&g, [3, 3], p)?; // [4, 3, 3, 3]
//! let diff = per.sum_axis(0, false)?.reshape(&[4, 3, 3, 3])?.sub(&total)?;
//! assert!(diff.abs().max_axis(0, false)?.to_vec().iter().all(|&d| d < 1e-3));
//! # Ok::<(), sparsedp_tensor::TensorError>(())
//! ```

pub(crate) mod backend;
mod buffers;
mod device;
mod error;
pub mod ops;
mod tensor;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use buffers::{cached_bytes, release_cached_buffers, retain_freed_memory};
pub use device::{DEVICE_ENV, Device};
pub use error::{Result, TensorError};
pub use ops::conv2d::{Conv2dGeometry, Conv2dParams};
pub use ops::elementwise::{BinaryOp, broadcast_shape};
pub use ops::gemm::{
    GemmEngine, blas_threads, gemm_engine, raw_openblas_sgemm, set_blas_threads, set_gemm_engine,
};
pub use ops::group_norm::{GroupNormGeometry, GroupNormGrads, GroupNormOutput};
pub use ops::matmul::MatmulSpec;
pub use ops::pool::{Pool2dGeometry, Pool2dParams};
pub use ops::random::{TensorRng, philox_normals, philox4x32_10};
pub use ops::reduce::ReduceOp;
pub use ops::unary::UnaryOp;
pub use tensor::Tensor;
