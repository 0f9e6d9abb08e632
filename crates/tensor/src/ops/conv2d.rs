//! 2-D convolution (cross-correlation, NCHW) with stride, padding, dilation and groups:
//! forward, input gradient, weight gradient, bias gradient, the per-example weight gradient of a
//! batch, and the public `im2col` / `col2im` the ghost-clipping engines build on.
//!
//! # Layout
//! Input `x` is `[N, C, H, W]`, weight `w` is `[O, C/g, kh, kw]`, output `[N, O, Ho, Wo]`.
//! The unfolded input of example `i` is `a_i`, a `d_total x T` matrix with
//! `d_total = C * kh * kw` rows ordered `(c, ki, kj)` (channel-major, like the weight) and
//! `T = Ho * Wo` columns. Group `g` owns rows `g*d .. (g+1)*d` with `d = C/g * kh * kw`, so the
//! group's weight block (`O/g x d`, row-major) multiplies a contiguous row block of `a_i`.
//!
//! # Kernels
//! Every kernel is im2col + GEMM per example: `y_i = W a_i` (forward),
//! `dx_i = col2im(W^T g_i)` (input gradient), `dW = sum_i g_i a_i^T` (weight gradient) and
//! `G_i = g_i a_i^T` (per-example gradient; the batch weight gradient is accumulated as
//! `dW^T += a g^T`, which puts the long side in GEMM's M). Work is split across examples with
//! rayon, about four contiguous example ranges per thread (work stealing evens out a busy
//! core), each with its own reusable column buffer and serial GEMMs (see `ops::gemm` for why
//! only one level is parallel). Examples with small maps are unfolded side by side into one
//! column block so that one GEMM covers several of them. Stride-1 convolutions whose output
//! width equals the input width (3x3 with padding 1, ...) unfold each tap as one shifted copy
//! of the input plane. A `1x1`, stride-1, unpadded convolution skips im2col: `a_i` is the input
//! itself.

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, TensorError, invalid_arg, invalid_shape, mismatch};
use crate::ops::gemm::{Operand, sgemm, sgemm_serial};
use crate::tensor::{Tensor, check_same_device};

/// Stride, padding, dilation and groups of a convolution (`[height, width]` pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output positions, each >= 1.
    pub stride: [usize; 2],
    /// Implicit zero padding on both sides.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, each >= 1.
    pub dilation: [usize; 2],
    /// Number of channel groups; must divide input and output channels.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Unit stride and dilation, one group, symmetric `padding`.
    pub fn padded(padding: usize) -> Self {
        Conv2dParams {
            padding: [padding, padding],
            ..Default::default()
        }
    }
}

/// Fully resolved geometry of one convolution, shared by all conv kernels and backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Batch size N.
    pub n: usize,
    /// Input channels C.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels O.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Stride, padding, dilation and groups.
    pub params: Conv2dParams,
}

impl Conv2dGeometry {
    /// Validates shapes and parameters; `input` is `[N, C, H, W]`, `weight` `[O, C/g, kh, kw]`.
    pub fn new(input: &[usize], weight: &[usize], params: Conv2dParams) -> Result<Self> {
        let [n, c_in, h, w] = *input else {
            return Err(invalid_shape("conv2d", input, "input must be [N, C, H, W]"));
        };
        let [c_out, cg, kh, kw] = *weight else {
            return Err(invalid_shape(
                "conv2d",
                weight,
                "weight must be [O, C/groups, kh, kw]",
            ));
        };
        let g = params.groups;
        if g == 0 || c_in % g != 0 || c_out % g != 0 {
            return Err(invalid_arg(
                "conv2d",
                format!("groups {g} must divide input channels {c_in} and output channels {c_out}"),
            ));
        }
        if cg * g != c_in {
            return Err(mismatch("conv2d", input, weight));
        }
        let (oh, ow) = out_hw("conv2d", [h, w], [kh, kw], params)?;
        Ok(Conv2dGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            oh,
            ow,
            params,
        })
    }

    /// Output positions per example, `T = Ho * Wo`.
    pub fn t(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of one group's unfolded input, `d = C/g * kh * kw`.
    pub fn d(&self) -> usize {
        // checked: a hand-built geometry with zero groups must not divide by zero
        self.c_in.checked_div(self.params.groups).unwrap_or(0) * self.kh * self.kw
    }
    /// Rows of the whole unfolded input, `C * kh * kw`.
    pub fn d_total(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.c_out.checked_div(self.params.groups).unwrap_or(0)
    }
    /// Multiply-adds of one forward pass (also of each backward pass).
    pub fn macs(&self) -> usize {
        self.n * self.c_out * self.t() * self.d()
    }
    fn is_pointwise(&self) -> bool {
        let p = self.params;
        self.kh == 1 && self.kw == 1 && p.stride == [1, 1] && p.padding == [0, 0]
    }
    fn input_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
}

/// Output spatial size, or an error if the (dilated) kernel does not fit the padded input.
fn out_hw(
    op: &'static str,
    hw: [usize; 2],
    k: [usize; 2],
    p: Conv2dParams,
) -> Result<(usize, usize)> {
    let mut out = [0; 2];
    for i in 0..2 {
        if p.stride[i] == 0 || p.dilation[i] == 0 || k[i] == 0 {
            return Err(invalid_arg(
                op,
                format!(
                    "stride {:?}, dilation {:?} and kernel {k:?} must be positive",
                    p.stride, p.dilation
                ),
            ));
        }
        let span = p.dilation[i] * (k[i] - 1) + 1;
        let padded = hw[i] + 2 * p.padding[i];
        if padded < span {
            return Err(invalid_arg(
                op,
                format!(
                    "kernel {k:?} with dilation {:?} does not fit input {hw:?} padded by {:?}",
                    p.dilation, p.padding
                ),
            ));
        }
        out[i] = (padded - span) / p.stride[i] + 1;
    }
    Ok((out[0], out[1]))
}

// ----- im2col / col2im for one example -----------------------------------------------------

/// Unfolds one example `x` (`C x H x W`) into the `C*kh*kw x T` block of `col` that starts at
/// column `off` of a matrix with row stride `ld` (so several examples can sit side by side).
fn im2col_one(x: &[f32], g: &Conv2dGeometry, col: &mut [f32], ld: usize, off: usize) {
    if g.params.stride == [1, 1] && g.ow == g.w {
        return im2col_one_same(x, g, col, ld, off);
    }
    let (h, w, oh, ow) = (g.h as isize, g.w as isize, g.oh, g.ow);
    let [sh, sw] = g.params.stride;
    let [ph, pw] = g.params.padding;
    let [dh, dw] = g.params.dilation;
    let t = oh * ow;
    let mut row = 0;
    for c in 0..g.c_in {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst = &mut col[row * ld + off..row * ld + off + t];
                // Valid output-column range for this tap: 0 <= ox*sw - pw + kj*dw < w.
                let off_x = (kj * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(off_x, sw, w, ow);
                for oy in 0..oh {
                    let iy = (oy * sh) as isize - ph as isize + (ki * dh) as isize;
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    if sw == 1 {
                        if hi > lo {
                            let s0 = (lo as isize + off_x) as usize;
                            d[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                        }
                    } else {
                        for (ox, v) in d.iter_mut().enumerate().take(hi).skip(lo) {
                            *v = src[(ox as isize * sw as isize + off_x) as usize];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// [`im2col_one`] for stride 1 with "same" width (`ow == w`, e.g. 3x3 with padding 1): each
/// tap's row is then the input plane shifted by one offset, so it is one contiguous copy plus
/// zeroing of the few border entries, instead of one short copy per output row.
fn im2col_one_same(x: &[f32], g: &Conv2dGeometry, col: &mut [f32], ld: usize, off: usize) {
    let (h, w, oh) = (g.h as isize, g.w, g.oh);
    let [ph, pw] = g.params.padding;
    let [dh, dw] = g.params.dilation;
    let (t, hw) = (g.t(), g.h * g.w);
    let mut row = 0;
    for c in 0..g.c_in {
        let xc = &x[c * hw..(c + 1) * hw];
        for ki in 0..g.kh {
            let off_y = (ki * dh) as isize - ph as isize;
            // output rows whose input row oy + off_y lies in 0..h
            let oy0 = (-off_y).clamp(0, oh as isize) as usize;
            let oy1 = (h - off_y).clamp(oy0 as isize, oh as isize) as usize;
            for kj in 0..g.kw {
                let off_x = (kj * dw) as isize - pw as isize;
                let dst = &mut col[row * ld + off..row * ld + off + t];
                // dst[p] = xc[p + shift] for p in the valid rows, clipped to the plane.
                let shift = off_y * w as isize + off_x;
                let p0 = (oy0 * w).max((-shift).max(0) as usize).min(oy1 * w);
                let p1 = (oy1 * w).min((hw as isize - shift).max(0) as usize).max(p0);
                dst[..p0].fill(0.0);
                dst[p1..].fill(0.0);
                if p1 > p0 {
                    let s0 = (p0 as isize + shift) as usize;
                    dst[p0..p1].copy_from_slice(&xc[s0..s0 + (p1 - p0)]);
                }
                // Columns whose input column ox + off_x falls outside 0..w picked up a
                // neighbouring row's pixel: zero them.
                let (lo, hi) = valid_range(off_x, 1, w as isize, w);
                for oy in oy0..oy1 {
                    dst[oy * w..oy * w + lo].fill(0.0);
                    dst[oy * w + hi..(oy + 1) * w].fill(0.0);
                }
                row += 1;
            }
        }
    }
}

/// Folds the `C*kh*kw x T` block of `col` at column `off` (row stride `ld`) back onto one
/// example `dx` (`C x H x W`), accumulating overlapping taps; `dx` must be zeroed by the caller.
///
/// `col` is scratch: the stride-1 "same" fast path zeroes entries of taps that fall outside
/// the image before adding whole shifted planes.
fn col2im_one(col: &mut [f32], ld: usize, off: usize, g: &Conv2dGeometry, dx: &mut [f32]) {
    if g.params.stride == [1, 1] && g.ow == g.w {
        return col2im_one_same(col, ld, off, g, dx);
    }
    let (h, w, oh, ow) = (g.h as isize, g.w as isize, g.oh, g.ow);
    let [sh, sw] = g.params.stride;
    let [ph, pw] = g.params.padding;
    let [dh, dw] = g.params.dilation;
    let t = oh * ow;
    let mut row = 0;
    for c in 0..g.c_in {
        let xc = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &col[row * ld + off..row * ld + off + t];
                let off_x = (kj * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(off_x, sw, w, ow);
                for oy in 0..oh {
                    let iy = (oy * sh) as isize - ph as isize + (ki * dh) as isize;
                    if iy < 0 || iy >= h || hi <= lo {
                        continue;
                    }
                    let dst = &mut xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let s = &src[oy * ow..(oy + 1) * ow];
                    if sw == 1 {
                        let d0 = (lo as isize + off_x) as usize;
                        for (dv, sv) in dst[d0..d0 + (hi - lo)].iter_mut().zip(&s[lo..hi]) {
                            *dv += sv;
                        }
                    } else {
                        for (ox, sv) in s.iter().enumerate().take(hi).skip(lo) {
                            dst[(ox as isize * sw as isize + off_x) as usize] += sv;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// [`col2im_one`] for stride 1 with "same" width: the adjoint of [`im2col_one_same`].
fn col2im_one_same(col: &mut [f32], ld: usize, off: usize, g: &Conv2dGeometry, dx: &mut [f32]) {
    let (h, w, oh) = (g.h as isize, g.w, g.oh);
    let [ph, pw] = g.params.padding;
    let [dh, dw] = g.params.dilation;
    let (t, hw) = (g.t(), g.h * g.w);
    let mut row = 0;
    for c in 0..g.c_in {
        let xc = &mut dx[c * hw..(c + 1) * hw];
        for ki in 0..g.kh {
            let off_y = (ki * dh) as isize - ph as isize;
            let oy0 = (-off_y).clamp(0, oh as isize) as usize;
            let oy1 = (h - off_y).clamp(oy0 as isize, oh as isize) as usize;
            for kj in 0..g.kw {
                let off_x = (kj * dw) as isize - pw as isize;
                let src = &mut col[row * ld + off..row * ld + off + t];
                let (lo, hi) = valid_range(off_x, 1, w as isize, w);
                for oy in oy0..oy1 {
                    src[oy * w..oy * w + lo].fill(0.0);
                    src[oy * w + hi..(oy + 1) * w].fill(0.0);
                }
                let shift = off_y * w as isize + off_x;
                let p0 = (oy0 * w).max((-shift).max(0) as usize).min(oy1 * w);
                let p1 = (oy1 * w).min((hw as isize - shift).max(0) as usize).max(p0);
                if p1 > p0 {
                    let d0 = (p0 as isize + shift) as usize;
                    for (d, s) in xc[d0..d0 + (p1 - p0)].iter_mut().zip(&src[p0..p1]) {
                        *d += s;
                    }
                }
                row += 1;
            }
        }
    }
}

/// Output columns `lo..hi` whose input column `ox*stride + off` lies in `0..w`.
fn valid_range(off: isize, stride: usize, w: isize, ow: usize) -> (usize, usize) {
    let s = stride as isize;
    // smallest ox with ox*s + off >= 0
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    // largest ox with ox*s + off <= w - 1, plus one
    let hi = if w - 1 - off < 0 {
        0
    } else {
        (w - 1 - off) / s + 1
    };
    let lo = (lo as usize).min(ow);
    let hi = (hi as usize).min(ow);
    (lo, hi.max(lo))
}

// ----- work partitioning --------------------------------------------------------------------

/// GEMM flavour for a split: with a single example range (batch smaller than the thread count)
/// the examples run one after another and each GEMM is parallel instead.
type GemmFn = fn(usize, usize, usize, f32, Operand<'_>, Operand<'_>, f32, &mut [f32], usize);
fn gemm_for(ranges: &[(usize, usize)]) -> GemmFn {
    if ranges.len() == 1 {
        sgemm
    } else {
        sgemm_serial
    }
}

/// Splits `0..n` into contiguous example ranges, about four per rayon thread. More ranges than
/// threads let work stealing even out load when another process takes a core (common on a
/// shared 2-core machine); each range pays for one column buffer and, in the weight gradient,
/// one partial sum, which is why it is not one example per task.
fn example_ranges(n: usize) -> Vec<(usize, usize)> {
    let parts = (4 * rayon::current_num_threads()).clamp(1, n.max(1));
    let per = n.div_ceil(parts).max(1);
    (0..n).step_by(per).map(|s| (s, (s + per).min(n))).collect()
}

/// Column-buffer budget (floats) of one block: ~2 MiB, the per-core L2 of the development VM.
const BLOCK_FLOATS: usize = 1 << 19;
/// Blocks aim for this many GEMM columns (`nb * T`).
const BLOCK_COLS: usize = 512;

/// Examples unfolded side by side into one `C*kh*kw x (nb*T)` block. Layers with few output
/// positions (8x8 maps: T = 64) would otherwise run skinny GEMMs that re-pack the whole weight
/// for every example; a block makes `N = nb*T` and packs the weight once per block. Layers with
/// large maps get blocks of one: their GEMMs are wide already, and blocking would only add the
/// copy of the block's output into NCHW order.
fn block_len(g: &Conv2dGeometry) -> usize {
    if g.is_pointwise() {
        // The input already is the column matrix; blocking would only add a copy.
        return 1;
    }
    let t = g.t().max(1);
    (BLOCK_COLS / t)
        .min(BLOCK_FLOATS / (g.d_total() * t).max(1))
        .max(1)
}

/// Runs `f(first, count, cols, ld)` for examples `lo..hi` in blocks: `cols` holds the unfolded
/// examples `first..first+count` side by side (row stride `ld = count*T`). For pointwise
/// convolutions (blocks of one) `cols` is the input slice itself.
fn for_each_block(
    x: &[f32],
    g: &Conv2dGeometry,
    lo: usize,
    hi: usize,
    mut f: impl FnMut(usize, usize, &[f32], usize),
) {
    let il = g.input_len();
    let t = g.t();
    if g.is_pointwise() {
        for i in lo..hi {
            f(i, 1, &x[i * il..(i + 1) * il], t);
        }
        return;
    }
    let nb = block_len(g).min(hi - lo);
    // Fully written by im2col before each use.
    let mut col = crate::buffers::for_overwrite(g.d_total() * nb * t);
    let mut i = lo;
    while i < hi {
        let cnt = nb.min(hi - i);
        let ld = cnt * t;
        for j in 0..cnt {
            im2col_one(&x[(i + j) * il..(i + j + 1) * il], g, &mut col, ld, j * t);
        }
        f(i, cnt, &col[..g.d_total() * ld], ld);
        i += cnt;
    }
    crate::buffers::recycle(col);
}

/// Copies the output gradients of `cnt` examples from `dy` (`N x O x T`) into `buf` as one
/// `O x (cnt*T)` matrix, so a block can be multiplied in one GEMM.
fn gather_block(dy: &[f32], first: usize, cnt: usize, c_out: usize, t: usize, buf: &mut [f32]) {
    let ld = cnt * t;
    for j in 0..cnt {
        let src = &dy[(first + j) * c_out * t..(first + j + 1) * c_out * t];
        for o in 0..c_out {
            buf[o * ld + j * t..o * ld + (j + 1) * t].copy_from_slice(&src[o * t..(o + 1) * t]);
        }
    }
}

// ----- CPU kernels --------------------------------------------------------------------------

/// Unfolds every example: returns `N x (C*kh*kw) x T`.
pub(crate) fn cpu_im2col(x: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let per = g.d_total() * g.t();
    // im2col writes every entry (zeros where a tap falls in the padding).
    let mut out = crate::buffers::for_overwrite(g.n * per);
    if per == 0 {
        return out;
    }
    out.par_chunks_mut(per)
        .zip(x.par_chunks(g.input_len().max(1)))
        .for_each(|(col, xi)| im2col_one(xi, g, col, g.t(), 0));
    out
}

/// Folds `N x (C*kh*kw) x T` columns back to `N x C x H x W`, summing overlaps.
pub(crate) fn cpu_col2im(cols: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let per = g.d_total() * g.t();
    let mut out = crate::buffers::zeroed(g.n * g.input_len());
    if per == 0 || g.input_len() == 0 {
        return out;
    }
    out.par_chunks_mut(g.input_len())
        .zip(cols.par_chunks(per))
        .for_each_init(
            || vec![0.0f32; per],
            |scratch, (dx, col)| {
                scratch.copy_from_slice(col);
                col2im_one(scratch, g.t(), 0, g, dx)
            },
        );
    out
}

/// Forward: `y_i[g] = W[g] a_i[g] (+ bias)`, output `N x O x T`.
pub(crate) fn cpu_conv2d_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
) -> Vec<f32> {
    let (t, d, og, groups) = (g.t(), g.d(), g.og(), g.params.groups);
    let per_out = g.c_out * t;
    // Every output row is written (GEMM with beta = 0, or copied from the block buffer).
    let mut y = crate::buffers::for_overwrite(g.n * per_out);
    if y.is_empty() {
        return y;
    }
    let ranges = example_ranges(g.n);
    let gemm = gemm_for(&ranges);
    let chunks = split_by_ranges(&mut y, &ranges, per_out);
    chunks
        .into_par_iter()
        .zip(ranges.par_iter())
        .for_each(|(ychunk, &(lo, hi))| {
            let mut ybuf = Vec::new();
            for_each_block(x, g, lo, hi, |first, cnt, col, ld| {
                let direct = cnt == 1;
                if !direct {
                    ybuf.resize(g.c_out * ld, 0.0);
                }
                let out: &mut [f32] = if direct {
                    &mut ychunk[(first - lo) * per_out..(first - lo + 1) * per_out]
                } else {
                    &mut ybuf
                };
                for gi in 0..groups {
                    gemm(
                        og,
                        ld,
                        d,
                        1.0,
                        Operand::new(&w[gi * og * d..], d, false),
                        Operand::new(&col[gi * d * ld..], ld, false),
                        0.0,
                        &mut out[gi * og * ld..],
                        ld,
                    );
                }
                for j in 0..cnt {
                    let yi =
                        &mut ychunk[(first - lo + j) * per_out..(first - lo + j + 1) * per_out];
                    for (o, row) in yi.chunks_mut(t).enumerate() {
                        if !direct {
                            row.copy_from_slice(&ybuf[o * ld + j * t..o * ld + (j + 1) * t]);
                        }
                        if let Some(b) = bias {
                            row.iter_mut().for_each(|v| *v += b[o]);
                        }
                    }
                }
            });
        });
    y
}

/// Input gradient: `dx_i = col2im(W^T g_i)`, output `N x C x H x W`.
pub(crate) fn cpu_conv2d_backward_input(dy: &[f32], w: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let (t, d, og, groups) = (g.t(), g.d(), g.og(), g.params.groups);
    let il = g.input_len();
    let per_out = g.c_out * t;
    let mut dx = crate::buffers::zeroed(g.n * il);
    if dx.is_empty() {
        return dx;
    }
    let ranges = example_ranges(g.n);
    let gemm = gemm_for(&ranges);
    let chunks = split_by_ranges(&mut dx, &ranges, il);
    let pointwise = g.is_pointwise();
    let nb = block_len(g);
    chunks
        .into_par_iter()
        .zip(ranges.par_iter())
        .for_each(|(dxchunk, &(lo, hi))| {
            let nb = nb.min(hi - lo);
            let mut dcol = if pointwise {
                Vec::new()
            } else {
                crate::buffers::zeroed(g.d_total() * nb * t)
            };
            let mut gbuf = if nb > 1 {
                crate::buffers::zeroed(g.c_out * nb * t)
            } else {
                Vec::new()
            };
            let mut i = lo;
            while i < hi {
                let cnt = nb.min(hi - i);
                let ld = cnt * t;
                let gsrc: &[f32] = if cnt == 1 {
                    &dy[i * per_out..(i + 1) * per_out]
                } else {
                    gather_block(dy, i, cnt, g.c_out, t, &mut gbuf);
                    &gbuf
                };
                let target: &mut [f32] = if pointwise {
                    &mut dxchunk[(i - lo) * il..(i - lo + 1) * il]
                } else {
                    &mut dcol
                };
                for gi in 0..groups {
                    gemm(
                        d,
                        ld,
                        og,
                        1.0,
                        Operand::new(&w[gi * og * d..], d, true),
                        Operand::new(&gsrc[gi * og * ld..], ld, false),
                        0.0,
                        &mut target[gi * d * ld..],
                        ld,
                    );
                }
                if !pointwise {
                    for j in 0..cnt {
                        let dxi = &mut dxchunk[(i - lo + j) * il..(i - lo + j + 1) * il];
                        col2im_one(&mut dcol, ld, j * t, g, dxi);
                    }
                }
                i += cnt;
            }
            crate::buffers::recycle(dcol);
            crate::buffers::recycle(gbuf);
        });
    dx
}

/// Weight gradient: `dW[g] = sum_i g_i[g] a_i[g]^T`, output `O x d`.
pub(crate) fn cpu_conv2d_backward_weight(x: &[f32], dy: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let (t, d, og, groups) = (g.t(), g.d(), g.og(), g.params.groups);
    let per_out = g.c_out * t;
    let wlen = g.c_out * d;
    if g.n == 0 || wlen == 0 {
        return crate::buffers::zeroed(wlen);
    }
    let ranges = example_ranges(g.n);
    let gemm = gemm_for(&ranges);
    // One partial sum per example range, added at the end in a fixed order (deterministic for a
    // given thread count).
    let partials: Vec<Vec<f32>> = ranges
        .into_par_iter()
        .map(|(lo, hi)| {
            let mut acc = crate::buffers::zeroed(wlen);
            let mut gbuf = Vec::new();
            for_each_block(x, g, lo, hi, |first, cnt, col, ld| {
                let gsrc: &[f32] = if cnt == 1 {
                    &dy[first * per_out..(first + 1) * per_out]
                } else {
                    gbuf.resize(g.c_out * ld, 0.0);
                    gather_block(dy, first, cnt, g.c_out, t, &mut gbuf);
                    &gbuf
                };
                for gi in 0..groups {
                    // Accumulate dW^T = a g^T (d x og): M = d is the long side, which
                    // measured faster than g a^T for the CNN's 32- and 64-channel layers.
                    gemm(
                        d,
                        og,
                        ld,
                        1.0,
                        Operand::new(&col[gi * d * ld..], ld, false),
                        Operand::new(&gsrc[gi * og * ld..], ld, true),
                        1.0,
                        &mut acc[gi * og * d..],
                        og,
                    );
                }
            });
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut acc = it.next().unwrap_or_else(|| crate::buffers::zeroed(wlen));
    for p in it {
        acc.iter_mut().zip(&p).for_each(|(o, v)| *o += v);
        crate::buffers::recycle(p);
    }
    // Each group's block is d x og; the weight layout wants og x d (every entry written).
    let mut out = crate::buffers::for_overwrite(wlen);
    for gi in 0..groups {
        let (src, dst) = (
            &acc[gi * og * d..(gi + 1) * og * d],
            &mut out[gi * og * d..],
        );
        for k in 0..d {
            for o in 0..og {
                dst[o * d + k] = src[k * og + o];
            }
        }
    }
    crate::buffers::recycle(acc);
    out
}

/// Per-example weight gradients `G_i = g_i a_i^T` for examples `0..n` of `x`/`dy`, written to
/// `out` (`n x O x d`).
fn per_example_into(x: &[f32], dy: &[f32], g: &Conv2dGeometry, out: &mut [f32]) {
    let (t, d, og, groups) = (g.t(), g.d(), g.og(), g.params.groups);
    let per_out = g.c_out * t;
    let wlen = g.c_out * d;
    if wlen == 0 || g.n == 0 {
        return;
    }
    let ranges = example_ranges(g.n);
    let gemm = gemm_for(&ranges);
    let chunks = split_by_ranges(out, &ranges, wlen);
    chunks
        .into_par_iter()
        .zip(ranges.par_iter())
        .for_each(|(ochunk, &(lo, hi))| {
            for_each_block(x, g, lo, hi, |first, cnt, col, ld| {
                for j in 0..cnt {
                    let i = first + j;
                    let dyi = &dy[i * per_out..(i + 1) * per_out];
                    let gi_out = &mut ochunk[(i - lo) * wlen..(i - lo + 1) * wlen];
                    for gi in 0..groups {
                        gemm(
                            og,
                            d,
                            t,
                            1.0,
                            Operand::new(&dyi[gi * og * t..], t, false),
                            Operand::new(&col[gi * d * ld + j * t..], ld, true),
                            0.0,
                            &mut gi_out[gi * og * d..],
                            d,
                        );
                    }
                }
            });
        });
}

/// Per-example weight gradient of the whole batch, `N x O x d`.
pub(crate) fn cpu_conv2d_per_example_weight_grad(
    x: &[f32],
    dy: &[f32],
    g: &Conv2dGeometry,
) -> Vec<f32> {
    // Every example's block is written by a GEMM with beta = 0.
    let mut out = crate::buffers::for_overwrite(g.n * g.c_out * g.d());
    per_example_into(x, dy, g, &mut out);
    out
}

/// Splits `buf` into the sub-slices covering each example range (`per` elements per example).
fn split_by_ranges<'a>(
    buf: &'a mut [f32],
    ranges: &[(usize, usize)],
    per: usize,
) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut rest = buf;
    for &(lo, hi) in ranges {
        let (head, tail) = rest.split_at_mut((hi - lo) * per);
        out.push(head);
        rest = tail;
    }
    out
}

// ----- Tensor API ---------------------------------------------------------------------------

/// Runs a wgpu convolution kernel after checking that the result and one example's unfolded
/// columns (the smallest chunk the kernels split a batch into) fit the adapter.
#[cfg(feature = "wgpu")]
fn on_gpu_conv(
    op: &'static str,
    out_len: usize,
    g: &Conv2dGeometry,
    f: impl FnOnce(&crate::wgpu::Gpu) -> crate::wgpu::GpuBuffer,
) -> Result<Storage> {
    crate::wgpu::gpu()?.check_fits(op, g.d_total() * g.t())?;
    crate::device::on_gpu(op, out_len, f)
}

impl Tensor {
    /// 2-D convolution of `self` (`[N, C, H, W]`) with `weight` (`[O, C/groups, kh, kw]`) and an
    /// optional `bias` (`[O]`); returns `[N, O, Ho, Wo]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        check_same_device("conv2d", self, weight)?;
        let g = Conv2dGeometry::new(self.shape(), weight.shape(), params)?;
        if let Some(b) = bias {
            check_same_device("conv2d", self, b)?;
            if b.shape() != [g.c_out] {
                return Err(mismatch("conv2d bias", weight.shape(), b.shape()));
            }
        }
        let storage = match (self.storage(), weight.storage(), bias.map(|b| b.storage())) {
            (Storage::Cpu(x), Storage::Cpu(w), None) => {
                Storage::Cpu(CpuBackend.conv2d_forward(x, w, None, &g))
            }
            (Storage::Cpu(x), Storage::Cpu(w), Some(Storage::Cpu(b))) => {
                Storage::Cpu(CpuBackend.conv2d_forward(x, w, Some(b), &g))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(w), b) => {
                let b = b.and_then(Storage::gpu);
                on_gpu_conv("conv2d", g.n * g.c_out * g.t(), &g, |gp| {
                    gp.conv2d_forward(x, w, b, &g)
                })?
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("conv2d")),
        };
        Ok(Tensor::from_storage(
            storage,
            vec![g.n, g.c_out, g.oh, g.ow],
        ))
    }

    /// Gradient of [`Tensor::conv2d`] with respect to its input. `grad_out` is `[N, O, Ho, Wo]`,
    /// `input_hw` the input's `[H, W]` (needed because strides can make it ambiguous).
    pub fn conv2d_backward_input(
        grad_out: &Tensor,
        weight: &Tensor,
        input_hw: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Tensor> {
        check_same_device("conv2d_backward_input", grad_out, weight)?;
        let [n, ..] = *grad_out.shape() else {
            return Err(invalid_shape(
                "conv2d_backward_input",
                grad_out.shape(),
                "expected [N, O, Ho, Wo]",
            ));
        };
        let c_in = weight.shape().get(1).copied().unwrap_or(0) * params.groups;
        let in_shape = [n, c_in, input_hw[0], input_hw[1]];
        let g = Conv2dGeometry::new(&in_shape, weight.shape(), params)?;
        check_grad_shape("conv2d_backward_input", &g, grad_out)?;
        let storage = match (grad_out.storage(), weight.storage()) {
            (Storage::Cpu(dy), Storage::Cpu(w)) => {
                Storage::Cpu(CpuBackend.conv2d_backward_input(dy, w, &g))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(dy), Storage::Wgpu(w)) => on_gpu_conv(
                "conv2d_backward_input",
                crate::tensor::numel(&in_shape),
                &g,
                |gp| gp.conv2d_backward_input(dy, w, &g),
            )?,
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("conv2d_backward_input")),
        };
        Ok(Tensor::from_storage(storage, in_shape.to_vec()))
    }

    /// Gradient of [`Tensor::conv2d`] with respect to the weight, summed over the batch:
    /// `[O, C/groups, kh, kw]`. `self` is the forward input.
    pub fn conv2d_backward_weight(
        &self,
        grad_out: &Tensor,
        kernel: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let g = self.conv_geometry_from_grad("conv2d_backward_weight", grad_out, kernel, params)?;
        let storage = match (self.storage(), grad_out.storage()) {
            (Storage::Cpu(x), Storage::Cpu(dy)) => {
                Storage::Cpu(CpuBackend.conv2d_backward_weight(x, dy, &g))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(dy)) => {
                on_gpu_conv("conv2d_backward_weight", g.c_out * g.d(), &g, |gp| {
                    gp.conv2d_backward_weight(x, dy, &g)
                })?
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("conv2d_backward_weight")),
        };
        Ok(Tensor::from_storage(
            storage,
            vec![g.c_out, g.c_in / params.groups, g.kh, g.kw],
        ))
    }

    /// Gradient with respect to the bias: `grad_out` summed over batch and positions, `[O]`.
    pub fn conv2d_backward_bias(grad_out: &Tensor) -> Result<Tensor> {
        if grad_out.rank() != 4 {
            return Err(invalid_shape(
                "conv2d_backward_bias",
                grad_out.shape(),
                "expected [N, O, Ho, Wo]",
            ));
        }
        // Reduce in place, widest axis first (a reshape would copy the whole gradient).
        grad_out
            .sum_axis(3, false)?
            .sum_axis(2, false)?
            .sum_axis(0, false)
    }

    /// Per-example weight gradients `G_i = g_i a_i^T` of a batch: `[N, O, C/groups*kh*kw]`
    /// (each row block is example `i`'s gradient in the weight's layout, flattened). `self` is
    /// the forward input, `grad_out` the gradient of the per-example losses at the output.
    ///
    /// Memory beyond the result is one `C*kh*kw x T` column buffer per thread. When the result
    /// itself is too large, use [`Tensor::conv2d_per_example_weight_grad_chunked`].
    pub fn conv2d_per_example_weight_grad(
        &self,
        grad_out: &Tensor,
        kernel: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let g = self.conv_geometry_from_grad(
            "conv2d_per_example_weight_grad",
            grad_out,
            kernel,
            params,
        )?;
        let storage = match (self.storage(), grad_out.storage()) {
            (Storage::Cpu(x), Storage::Cpu(dy)) => {
                Storage::Cpu(CpuBackend.conv2d_per_example_weight_grad(x, dy, &g))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(dy)) => on_gpu_conv(
                "conv2d_per_example_weight_grad",
                g.n * g.c_out * g.d(),
                &g,
                |gp| gp.conv2d_per_example_weight_grad(x, dy, &g),
            )?,
            #[allow(unreachable_patterns)]
            _ => {
                return Err(crate::tensor::mixed_devices(
                    "conv2d_per_example_weight_grad",
                ));
            }
        };
        Ok(Tensor::from_storage(storage, vec![g.n, g.c_out, g.d()]))
    }

    /// Streams the per-example weight gradients in chunks of at most `chunk` examples, calling
    /// `f(first_example, grads)` with `grads` of shape `[len, O, C/groups*kh*kw]`. Peak memory
    /// is one chunk's gradients, so a caller that reduces each chunk (norms, clipped sums) never
    /// holds `N x O x d` values. Errors from `f` stop the stream and are returned.
    pub fn conv2d_per_example_weight_grad_chunked(
        &self,
        grad_out: &Tensor,
        kernel: [usize; 2],
        params: Conv2dParams,
        chunk: usize,
        mut f: impl FnMut(usize, Tensor) -> Result<()>,
    ) -> Result<()> {
        if chunk == 0 {
            return Err(invalid_arg(
                "conv2d_per_example_weight_grad_chunked",
                "chunk must be >= 1",
            ));
        }
        let g = self.conv_geometry_from_grad(
            "conv2d_per_example_weight_grad_chunked",
            grad_out,
            kernel,
            params,
        )?;
        let mut start = 0;
        while start < g.n {
            let len = chunk.min(g.n - start);
            let x = self.narrow(0, start, len)?;
            let dy = grad_out.narrow(0, start, len)?;
            f(
                start,
                x.conv2d_per_example_weight_grad(&dy, kernel, params)?,
            )?;
            start += len;
        }
        Ok(())
    }

    /// Unfolds `self` (`[N, C, H, W]`) into `[N, C*kh*kw, Ho*Wo]`: example `i`'s slice is the
    /// matrix `a_i` with rows ordered `(channel, ki, kj)`. `params.groups` is ignored (grouping
    /// only partitions the rows).
    pub fn im2col(&self, kernel: [usize; 2], params: Conv2dParams) -> Result<Tensor> {
        let g = self.unfold_geometry("im2col", kernel, params)?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.im2col(x, &g)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => {
                crate::device::on_gpu("im2col", g.n * g.d_total() * g.t(), |gp| gp.im2col(x, &g))?
            }
        };
        Ok(Tensor::from_storage(storage, vec![g.n, g.d_total(), g.t()]))
    }

    /// The adjoint of [`Tensor::im2col`]: folds `[N, C*kh*kw, Ho*Wo]` columns back into
    /// `[N, C, H, W]` (given by `input_shape`), summing overlapping taps.
    pub fn col2im(
        &self,
        input_shape: [usize; 4],
        kernel: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let probe = Tensor::zeros(&[0, input_shape[1], input_shape[2], input_shape[3]]);
        let mut g = probe.unfold_geometry("col2im", kernel, params)?;
        g.n = input_shape[0];
        if self.shape() != [g.n, g.d_total(), g.t()] {
            return Err(mismatch("col2im", self.shape(), &[g.n, g.d_total(), g.t()]));
        }
        let storage = match self.storage() {
            Storage::Cpu(c) => Storage::Cpu(CpuBackend.col2im(c, &g)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(c) => {
                crate::device::on_gpu("col2im", crate::tensor::numel(&input_shape), |gp| {
                    gp.col2im(c, &g)
                })?
            }
        };
        Ok(Tensor::from_storage(storage, input_shape.to_vec()))
    }

    fn unfold_geometry(
        &self,
        op: &'static str,
        kernel: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Conv2dGeometry> {
        let [n, c, h, w] = *self.shape() else {
            return Err(invalid_shape(op, self.shape(), "expected [N, C, H, W]"));
        };
        let p = Conv2dParams {
            groups: 1,
            ..params
        };
        let (oh, ow) = out_hw(op, [h, w], kernel, p)?;
        Ok(Conv2dGeometry {
            n,
            c_in: c,
            h,
            w,
            c_out: c,
            kh: kernel[0],
            kw: kernel[1],
            oh,
            ow,
            params: p,
        })
    }

    fn conv_geometry_from_grad(
        &self,
        op: &'static str,
        grad_out: &Tensor,
        kernel: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Conv2dGeometry> {
        check_same_device(op, self, grad_out)?;
        let (Some(&c_in), Some(&c_out)) = (self.shape().get(1), grad_out.shape().get(1)) else {
            return Err(mismatch(op, self.shape(), grad_out.shape()));
        };
        if params.groups == 0 || c_in % params.groups != 0 {
            return Err(invalid_arg(
                op,
                format!("groups {} must divide input channels {c_in}", params.groups),
            ));
        }
        let wshape = [c_out, c_in / params.groups, kernel[0], kernel[1]];
        let g = Conv2dGeometry::new(self.shape(), &wshape, params)?;
        check_grad_shape(op, &g, grad_out)?;
        Ok(g)
    }
}

fn check_grad_shape(op: &'static str, g: &Conv2dGeometry, grad_out: &Tensor) -> Result<()> {
    let want = [g.n, g.c_out, g.oh, g.ow];
    if grad_out.shape() != want {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: want.to_vec(),
            rhs: grad_out.shape().to_vec(),
        });
    }
    Ok(())
}
