//! The backend boundary: the only place the crate is generic.
//!
//! [`BackendOps`] lists every kernel a device must provide, in terms of the device's own buffer
//! type and validated geometry (shapes are checked once, device-independently, in the
//! [`Tensor`](crate::Tensor) methods). [`CpuBackend`] implements it on `Vec<f32>` by
//! delegating to the kernels in `ops::*`. A wgpu backend implements the same trait on GPU
//! buffers; `Tensor` methods then add one `match` arm per op, and callers do not change.
//!
//! The module is crate-private on purpose: kernels trust their geometry (an inconsistent one
//! would index out of bounds), and the `Storage` enum a backend pairs with is private too, so
//! backends live in this crate and users reach kernels only through validating `Tensor`
//! methods.

use crate::ops::conv2d::{self, Conv2dGeometry};
use crate::ops::elementwise::{self, BinaryOp};
use crate::ops::group_norm::{self, GroupNormGeometry};
use crate::ops::index;
use crate::ops::matmul::{self, MatmulSpec};
use crate::ops::permute;
use crate::ops::pool::{self, Pool2dGeometry};
use crate::ops::reduce::{self, ReduceOp};
use crate::ops::softmax;
use crate::ops::unary::{self, UnaryOp};

/// Kernels a device backend provides. Inputs are already validated; buffers are row-major.
#[allow(clippy::too_many_arguments)]
pub trait BackendOps {
    /// The device's buffer of `f32` values.
    type Buffer;

    /// Strided copy: output dimension `i` is input dimension `perm[i]`.
    fn permute(&self, x: &Self::Buffer, shape: &[usize], perm: &[usize]) -> Self::Buffer;
    /// Broadcasting binary op from `a_shape` and `b_shape` to `out_shape`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Self::Buffer,
        a_shape: &[usize],
        b: &Self::Buffer,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Self::Buffer;
    /// `x op s`, or `s op x` when `scalar_first`.
    fn scalar(&self, op: BinaryOp, x: &Self::Buffer, s: f32, scalar_first: bool) -> Self::Buffer;
    /// In place `a += alpha * b`.
    fn axpy(&self, a: &mut Self::Buffer, alpha: f32, b: &Self::Buffer);
    /// `f(x)` elementwise.
    fn unary(&self, op: UnaryOp, x: &Self::Buffer) -> Self::Buffer;
    /// `grad * f'(x)` elementwise.
    fn unary_backward(&self, op: UnaryOp, x: &Self::Buffer, grad: &Self::Buffer) -> Self::Buffer;
    /// Reduce `[outer, len, inner]` over the middle axis.
    fn reduce_axis(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
    /// Route `grad` (`[outer, inner]`) to the first arg-max of `x` along the middle axis.
    fn max_axis_backward(
        &self,
        x: &Self::Buffer,
        grad: &Self::Buffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
    /// Squared L2 norm of each of `rows` rows.
    fn row_sq_norms(&self, x: &Self::Buffer, rows: usize) -> Self::Buffer;
    /// (Batched) matrix product.
    fn matmul(&self, a: &Self::Buffer, b: &Self::Buffer, spec: MatmulSpec) -> Self::Buffer;
    /// Convolution forward.
    fn conv2d_forward(
        &self,
        x: &Self::Buffer,
        w: &Self::Buffer,
        bias: Option<&Self::Buffer>,
        g: &Conv2dGeometry,
    ) -> Self::Buffer;
    /// Convolution input gradient.
    fn conv2d_backward_input(
        &self,
        dy: &Self::Buffer,
        w: &Self::Buffer,
        g: &Conv2dGeometry,
    ) -> Self::Buffer;
    /// Convolution weight gradient (summed over the batch).
    fn conv2d_backward_weight(
        &self,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        g: &Conv2dGeometry,
    ) -> Self::Buffer;
    /// Per-example convolution weight gradients, `N x O x d`.
    fn conv2d_per_example_weight_grad(
        &self,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        g: &Conv2dGeometry,
    ) -> Self::Buffer;
    /// Unfold, `N x C*kh*kw x T`.
    fn im2col(&self, x: &Self::Buffer, g: &Conv2dGeometry) -> Self::Buffer;
    /// Fold (adjoint of unfold), `N x C x H x W`.
    fn col2im(&self, cols: &Self::Buffer, g: &Conv2dGeometry) -> Self::Buffer;
    /// Max pooling forward.
    fn max_pool2d(&self, x: &Self::Buffer, g: &Pool2dGeometry) -> Self::Buffer;
    /// Max pooling backward (arg-max recomputed from `x`).
    fn max_pool2d_backward(
        &self,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        g: &Pool2dGeometry,
    ) -> Self::Buffer;
    /// Average pooling forward.
    fn avg_pool2d(&self, x: &Self::Buffer, g: &Pool2dGeometry) -> Self::Buffer;
    /// Average pooling backward.
    fn avg_pool2d_backward(&self, dy: &Self::Buffer, g: &Pool2dGeometry) -> Self::Buffer;
    /// Group normalisation forward: `(y, xhat, rstd)`.
    fn group_norm(
        &self,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        beta: Option<&Self::Buffer>,
        g: &GroupNormGeometry,
    ) -> (Self::Buffer, Self::Buffer, Self::Buffer);
    /// Group normalisation input gradient.
    fn group_norm_backward_input(
        &self,
        dy: &Self::Buffer,
        xhat: &Self::Buffer,
        rstd: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        g: &GroupNormGeometry,
    ) -> Self::Buffer;
    /// Per-example affine gradients `(dgamma, dbeta)`, each `N x C`.
    fn group_norm_affine_grads(
        &self,
        dy: &Self::Buffer,
        xhat: &Self::Buffer,
        g: &GroupNormGeometry,
    ) -> (Self::Buffer, Self::Buffer);
    /// Softmax (or log-softmax) over rows of length `cols`.
    fn softmax(&self, x: &Self::Buffer, cols: usize, log: bool) -> Self::Buffer;
    /// Backward of softmax / log-softmax from its output `y`.
    fn softmax_backward(
        &self,
        y: &Self::Buffer,
        grad: &Self::Buffer,
        cols: usize,
        log: bool,
    ) -> Self::Buffer;
    /// Per-row cross-entropy losses of logits against class indices.
    fn cross_entropy(&self, logits: &Self::Buffer, targets: &[usize], cols: usize) -> Self::Buffer;
    /// Gradient of the per-row losses, scaled by `grad` (one value per row).
    fn cross_entropy_backward(
        &self,
        logits: &Self::Buffer,
        targets: &[usize],
        grad: &Self::Buffer,
        cols: usize,
    ) -> Self::Buffer;
    /// Gather along the middle axis of `[outer, len, inner]` with `index` of `[outer, j, inner]`.
    fn gather(
        &self,
        x: &Self::Buffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
    /// Scatter-add `src` (`[outer, j, inner]`) into `base` (`[outer, len, inner]`).
    fn scatter_add(
        &self,
        base: &Self::Buffer,
        index: &[usize],
        src: &Self::Buffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
    /// Select whole slices `index` along the middle axis.
    fn index_select(
        &self,
        x: &Self::Buffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
    /// Add whole slices of `src` into `base` at `index` (adjoint of `index_select`).
    fn index_add(
        &self,
        base: &Self::Buffer,
        index: &[usize],
        src: &Self::Buffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self::Buffer;
}

/// The CPU backend: rayon across examples/rows, BLAS or matrixmultiply for GEMM.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl BackendOps for CpuBackend {
    type Buffer = Vec<f32>;

    fn permute(&self, x: &Vec<f32>, shape: &[usize], perm: &[usize]) -> Vec<f32> {
        permute::cpu_permute(x, shape, perm)
    }
    fn binary(
        &self,
        op: BinaryOp,
        a: &Vec<f32>,
        a_shape: &[usize],
        b: &Vec<f32>,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Vec<f32> {
        elementwise::cpu_binary(op, a, a_shape, b, b_shape, out_shape)
    }
    fn scalar(&self, op: BinaryOp, x: &Vec<f32>, s: f32, scalar_first: bool) -> Vec<f32> {
        elementwise::cpu_scalar(op, x, s, scalar_first)
    }
    fn axpy(&self, a: &mut Vec<f32>, alpha: f32, b: &Vec<f32>) {
        elementwise::cpu_axpy(a, alpha, b)
    }
    fn unary(&self, op: UnaryOp, x: &Vec<f32>) -> Vec<f32> {
        unary::cpu_unary(op, x)
    }
    fn unary_backward(&self, op: UnaryOp, x: &Vec<f32>, grad: &Vec<f32>) -> Vec<f32> {
        unary::cpu_unary_backward(op, x, grad)
    }
    fn reduce_axis(
        &self,
        op: ReduceOp,
        x: &Vec<f32>,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        reduce::cpu_reduce_axis(op, x, outer, len, inner)
    }
    fn max_axis_backward(
        &self,
        x: &Vec<f32>,
        grad: &Vec<f32>,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        reduce::cpu_max_axis_backward(x, grad, outer, len, inner)
    }
    fn row_sq_norms(&self, x: &Vec<f32>, rows: usize) -> Vec<f32> {
        reduce::cpu_row_sq_norms(x, rows)
    }
    fn matmul(&self, a: &Vec<f32>, b: &Vec<f32>, spec: MatmulSpec) -> Vec<f32> {
        matmul::cpu_matmul(a, b, spec)
    }
    fn conv2d_forward(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        bias: Option<&Vec<f32>>,
        g: &Conv2dGeometry,
    ) -> Vec<f32> {
        conv2d::cpu_conv2d_forward(x, w, bias.map(|b| b.as_slice()), g)
    }
    fn conv2d_backward_input(&self, dy: &Vec<f32>, w: &Vec<f32>, g: &Conv2dGeometry) -> Vec<f32> {
        conv2d::cpu_conv2d_backward_input(dy, w, g)
    }
    fn conv2d_backward_weight(&self, x: &Vec<f32>, dy: &Vec<f32>, g: &Conv2dGeometry) -> Vec<f32> {
        conv2d::cpu_conv2d_backward_weight(x, dy, g)
    }
    fn conv2d_per_example_weight_grad(
        &self,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        g: &Conv2dGeometry,
    ) -> Vec<f32> {
        conv2d::cpu_conv2d_per_example_weight_grad(x, dy, g)
    }
    fn im2col(&self, x: &Vec<f32>, g: &Conv2dGeometry) -> Vec<f32> {
        conv2d::cpu_im2col(x, g)
    }
    fn col2im(&self, cols: &Vec<f32>, g: &Conv2dGeometry) -> Vec<f32> {
        conv2d::cpu_col2im(cols, g)
    }
    fn max_pool2d(&self, x: &Vec<f32>, g: &Pool2dGeometry) -> Vec<f32> {
        pool::cpu_max_pool2d(x, g)
    }
    fn max_pool2d_backward(&self, x: &Vec<f32>, dy: &Vec<f32>, g: &Pool2dGeometry) -> Vec<f32> {
        pool::cpu_max_pool2d_backward(x, dy, g)
    }
    fn avg_pool2d(&self, x: &Vec<f32>, g: &Pool2dGeometry) -> Vec<f32> {
        pool::cpu_avg_pool2d(x, g)
    }
    fn avg_pool2d_backward(&self, dy: &Vec<f32>, g: &Pool2dGeometry) -> Vec<f32> {
        pool::cpu_avg_pool2d_backward(dy, g)
    }
    fn group_norm(
        &self,
        x: &Vec<f32>,
        gamma: Option<&Vec<f32>>,
        beta: Option<&Vec<f32>>,
        g: &GroupNormGeometry,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        group_norm::cpu_group_norm(
            x,
            gamma.map(|v| v.as_slice()),
            beta.map(|v| v.as_slice()),
            g,
        )
    }
    fn group_norm_backward_input(
        &self,
        dy: &Vec<f32>,
        xhat: &Vec<f32>,
        rstd: &Vec<f32>,
        gamma: Option<&Vec<f32>>,
        g: &GroupNormGeometry,
    ) -> Vec<f32> {
        group_norm::cpu_group_norm_backward_input(dy, xhat, rstd, gamma.map(|v| v.as_slice()), g)
    }
    fn group_norm_affine_grads(
        &self,
        dy: &Vec<f32>,
        xhat: &Vec<f32>,
        g: &GroupNormGeometry,
    ) -> (Vec<f32>, Vec<f32>) {
        group_norm::cpu_group_norm_affine_grads(dy, xhat, g)
    }
    fn softmax(&self, x: &Vec<f32>, cols: usize, log: bool) -> Vec<f32> {
        softmax::cpu_softmax(x, cols, log)
    }
    fn softmax_backward(&self, y: &Vec<f32>, grad: &Vec<f32>, cols: usize, log: bool) -> Vec<f32> {
        softmax::cpu_softmax_backward(y, grad, cols, log)
    }
    fn cross_entropy(&self, logits: &Vec<f32>, targets: &[usize], cols: usize) -> Vec<f32> {
        softmax::cpu_cross_entropy(logits, targets, cols)
    }
    fn cross_entropy_backward(
        &self,
        logits: &Vec<f32>,
        targets: &[usize],
        grad: &Vec<f32>,
        cols: usize,
    ) -> Vec<f32> {
        softmax::cpu_cross_entropy_backward(logits, targets, grad, cols)
    }
    fn gather(
        &self,
        x: &Vec<f32>,
        idx: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        index::cpu_gather(x, idx, outer, len, inner)
    }
    fn scatter_add(
        &self,
        base: &Vec<f32>,
        idx: &[usize],
        src: &Vec<f32>,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        index::cpu_scatter_add(base, idx, src, outer, len, inner)
    }
    fn index_select(
        &self,
        x: &Vec<f32>,
        idx: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        index::cpu_index_select(x, idx, outer, len, inner)
    }
    fn index_add(
        &self,
        base: &Vec<f32>,
        idx: &[usize],
        src: &Vec<f32>,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Vec<f32> {
        index::cpu_index_add(base, idx, src, outer, len, inner)
    }
}
