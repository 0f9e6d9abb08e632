//! Operations, one per file: each file holds the op's forward, its backward(s), the CPU kernels
//! and the `Tensor` methods that validate shapes and dispatch to the backend.

pub mod conv2d;
pub mod elementwise;
pub mod gemm;
pub mod group_norm;
pub mod index;
pub mod matmul;
pub(crate) mod permute;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod softmax;
pub mod unary;
