//! Integration tests for `sparsedp-tensor`: every op and backward against a naive reference
//! (f64 loops for forwards, f64 central finite differences for backwards).

#[path = "tensor/common.rs"]
mod common;

#[path = "tensor/conv2d.rs"]
mod conv2d;
#[path = "tensor/core.rs"]
mod core;
#[path = "tensor/elementwise.rs"]
mod elementwise;
#[path = "tensor/group_norm.rs"]
mod group_norm;
#[path = "tensor/index.rs"]
mod index;
#[path = "tensor/matmul.rs"]
mod matmul;
#[path = "tensor/pool.rs"]
mod pool;
#[path = "tensor/random.rs"]
mod random;
#[path = "tensor/reduce.rs"]
mod reduce;
#[path = "tensor/robustness.rs"]
mod robustness;
#[path = "tensor/softmax.rs"]
mod softmax;
#[path = "tensor/unary.rs"]
mod unary;
#[cfg(feature = "wgpu")]
#[path = "tensor/wgpu.rs"]
mod wgpu;
