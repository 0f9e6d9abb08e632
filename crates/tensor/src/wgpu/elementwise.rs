//! Launchers for `elementwise.wgsl`: strided gathers (permute, broadcast), broadcasting binary
//! ops, scalar ops, axpy, unary ops, block copies and fills.

use super::{Access, Gpu, GpuBuffer, Kernel, f, grid_1d, u};
use crate::ops::elementwise::BinaryOp;
use crate::ops::unary::UnaryOp;

const SRC: &str = include_str!("elementwise.wgsl");
const B: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];

macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        const $name: Kernel = Kernel {
            name: concat!("elementwise::", $entry),
            source: SRC,
            entry: $entry,
            bindings: B,
        };
    };
}
kernel!(BINARY, "binary");
kernel!(GATHER, "gather");
kernel!(SCALAR, "scalar");
kernel!(AXPY, "axpy");
kernel!(FILL, "fill");
kernel!(COPY_BLOCKS, "copy_blocks");
kernel!(UNARY, "unary");
kernel!(UNARY_BACKWARD, "unary_backward");

/// Most dimensions the strided kernels index (after merging contiguous dimensions).
const MAX_RANK: usize = 8;

fn binary_code(op: BinaryOp) -> u32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// Takes the first operand: the binary kernel then broadcasts `a` alone.
const TAKE_A: u32 = 4;

fn unary_code(op: UnaryOp) -> u32 {
    match op {
        UnaryOp::Relu => 0,
        UnaryOp::Tanh => 1,
        UnaryOp::Gelu => 2,
        UnaryOp::Mish => 3,
        UnaryOp::Exp => 4,
        UnaryOp::Log => 5,
        UnaryOp::Sqrt => 6,
        UnaryOp::Abs => 7,
        UnaryOp::Neg => 8,
        UnaryOp::Square => 9,
        UnaryOp::Sigmoid => 10,
    }
}

/// Strides of `shape` aligned to `out` (leading dims padded), 0 where `shape` broadcasts.
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

/// Merges adjacent dimensions that every operand traverses contiguously, so typical
/// broadcasts and permutations run with rank <= 3.
fn coalesce(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut sh: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue; // size-1 dimensions contribute nothing to any offset
        }
        let merge = !sh.is_empty()
            && strides
                .iter()
                .zip(&st)
                .all(|(s, t)| t[t.len() - 1] == s[d] * shape[d]);
        if merge {
            let last = sh.len() - 1;
            sh[last] *= shape[d];
            for (s, t) in strides.iter().zip(st.iter_mut()) {
                let l = t.len() - 1;
                t[l] = s[d];
            }
        } else {
            sh.push(shape[d]);
            for (s, t) in strides.iter().zip(st.iter_mut()) {
                t.push(s[d]);
            }
        }
    }
    (sh, st)
}

/// Parameter block of the strided kernels, or `None` if the rank stays above [`MAX_RANK`].
fn strided_params(op: u32, out: &[usize], sa: &[usize], sb: &[usize]) -> Option<Vec<u32>> {
    let (shape, st) = coalesce(out, &[sa.to_vec(), sb.to_vec()]);
    if shape.len() > MAX_RANK {
        return None;
    }
    let n: usize = out.iter().product();
    let mut p = vec![0u32; 32];
    p[0] = u(n);
    p[1] = shape.len() as u32;
    p[2] = op;
    for (d, &s) in shape.iter().enumerate() {
        p[8 + d] = u(s);
        p[16 + d] = u(st[0][d]);
        p[24 + d] = u(st[1][d]);
    }
    Some(p)
}

impl Gpu {
    fn simple(&self, k: &Kernel, p: Vec<u32>, a: &GpuBuffer, b: &GpuBuffer, n: usize) -> GpuBuffer {
        let out = self.alloc(n);
        if n > 0 {
            self.dispatch(k, &p, &[&a.buf, &b.buf, &out.buf], grid_1d(n));
        }
        out
    }

    /// `op(a, b)` with broadcasting to `out_shape`.
    pub(crate) fn binary(
        &self,
        op: BinaryOp,
        a: &GpuBuffer,
        a_shape: &[usize],
        b: &GpuBuffer,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> GpuBuffer {
        let n: usize = out_shape.iter().product();
        let sa = broadcast_strides(a_shape, out_shape);
        let sb = broadcast_strides(b_shape, out_shape);
        match strided_params(binary_code(op), out_shape, &sa, &sb) {
            Some(p) => self.simple(&BINARY, p, a, b, n),
            None => self.via_host(n, || {
                let (av, bv) = (self.download(a)?, self.download(b)?);
                Ok(crate::ops::elementwise::cpu_binary(
                    op, &av, a_shape, &bv, b_shape, out_shape,
                ))
            }),
        }
    }

    /// `a` broadcast to `out_shape`.
    pub(crate) fn broadcast(
        &self,
        a: &GpuBuffer,
        a_shape: &[usize],
        out_shape: &[usize],
    ) -> GpuBuffer {
        let n: usize = out_shape.iter().product();
        let sa = broadcast_strides(a_shape, out_shape);
        match strided_params(TAKE_A, out_shape, &sa, &sa) {
            Some(p) => self.simple(&GATHER, p, a, a, n),
            None => self.via_host(n, || {
                let av = self.download(a)?;
                Ok(crate::ops::elementwise::cpu_binary(
                    BinaryOp::Add,
                    &av,
                    a_shape,
                    &[0.0],
                    &[],
                    out_shape,
                ))
            }),
        }
    }

    /// Output dimension `i` is input dimension `perm[i]`.
    pub(crate) fn permute(&self, x: &GpuBuffer, shape: &[usize], perm: &[usize]) -> GpuBuffer {
        let mut in_strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            in_strides[d] = in_strides[d + 1] * shape[d + 1];
        }
        let out_shape: Vec<usize> = perm.iter().map(|&q| shape[q]).collect();
        let sa: Vec<usize> = perm.iter().map(|&q| in_strides[q]).collect();
        let n: usize = shape.iter().product();
        match strided_params(TAKE_A, &out_shape, &sa, &sa) {
            Some(p) => self.simple(&GATHER, p, x, x, n),
            None => self.via_host(n, || {
                Ok(crate::ops::permute::cpu_permute(
                    &self.download(x)?,
                    shape,
                    perm,
                ))
            }),
        }
    }

    /// `x op s`, or `s op x`.
    pub(crate) fn scalar(
        &self,
        op: BinaryOp,
        x: &GpuBuffer,
        s: f32,
        scalar_first: bool,
    ) -> GpuBuffer {
        let mut p = vec![0u32; 8];
        p[0] = u(x.len);
        p[2] = binary_code(op);
        p[3] = f(s);
        p[4] = scalar_first as u32;
        self.simple(&SCALAR, p, x, x, x.len)
    }

    /// `a += alpha * b` in place.
    pub(crate) fn axpy(&self, a: &mut GpuBuffer, alpha: f32, b: &GpuBuffer) {
        if a.len == 0 {
            return;
        }
        let mut p = vec![0u32; 8];
        p[0] = u(a.len);
        p[3] = f(alpha);
        self.dispatch(&AXPY, &p, &[&b.buf, &b.buf, &a.buf], grid_1d(a.len));
    }

    /// A buffer of `n` copies of `value`.
    pub(crate) fn fill(&self, n: usize, value: f32) -> GpuBuffer {
        let out = self.alloc(n);
        if n > 0 && value != 0.0 {
            let mut p = vec![0u32; 8];
            p[0] = u(n);
            p[3] = f(value);
            // The inputs are unused, but a buffer bound for writing may not also be bound for
            // reading in the same dispatch.
            let unused = self.alloc(0);
            self.dispatch(&FILL, &p, &[&unused.buf, &unused.buf, &out.buf], grid_1d(n));
        }
        out
    }

    /// `f(x)` elementwise.
    pub(crate) fn unary(&self, op: UnaryOp, x: &GpuBuffer) -> GpuBuffer {
        let mut p = vec![0u32; 8];
        p[0] = u(x.len);
        p[2] = unary_code(op);
        self.simple(&UNARY, p, x, x, x.len)
    }

    /// `grad * f'(x)`.
    pub(crate) fn unary_backward(&self, op: UnaryOp, x: &GpuBuffer, grad: &GpuBuffer) -> GpuBuffer {
        let mut p = vec![0u32; 8];
        p[0] = u(x.len);
        p[2] = unary_code(op);
        self.simple(&UNARY_BACKWARD, p, x, grad, x.len)
    }

    /// Copies `outer` blocks of `block` values from `src` (block `o` at
    /// `src_off + o * src_stride`) into `dst` (at `dst_off + o * dst_stride`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_blocks(
        &self,
        src: &GpuBuffer,
        src_off: usize,
        src_stride: usize,
        dst: &GpuBuffer,
        dst_off: usize,
        dst_stride: usize,
        outer: usize,
        block: usize,
    ) {
        let n = outer * block;
        if n == 0 {
            return;
        }
        if outer == 1 {
            self.copy(&src.buf, src_off, &dst.buf, dst_off, block);
            return;
        }
        let mut p = vec![0u32; 16];
        p[0] = u(n);
        p[8] = u(block);
        p[9] = u(src_stride);
        p[10] = u(dst_stride);
        p[11] = u(src_off);
        p[12] = u(dst_off);
        self.dispatch(
            &COPY_BLOCKS,
            &p,
            &[&src.buf, &src.buf, &dst.buf],
            grid_1d(n),
        );
    }

    /// Runs a CPU fallback for shapes the kernels do not index (rank above 8 after merging
    /// dimensions) and uploads the result. Never taken by the models in this workspace.
    pub(crate) fn via_host(
        &self,
        n: usize,
        f: impl FnOnce() -> crate::Result<Vec<f32>>,
    ) -> GpuBuffer {
        match f() {
            Ok(v) => self.upload(&v),
            // A download fails only after a recorded fault, which the next download reports.
            Err(_) => self.alloc(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_merges_contiguous_dims() {
        // A [2, 3, 4] tensor plus a [4] bias: the first two dims merge.
        let out = [2, 3, 4];
        let sa = broadcast_strides(&[2, 3, 4], &out);
        let sb = broadcast_strides(&[4], &out);
        let (sh, st) = coalesce(&out, &[sa, sb]);
        assert_eq!(sh, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        // Same shapes: one dimension.
        let s = broadcast_strides(&[2, 3, 4], &out);
        let (sh, _) = coalesce(&out, &[s.clone(), s]);
        assert_eq!(sh, vec![24]);
    }
}
