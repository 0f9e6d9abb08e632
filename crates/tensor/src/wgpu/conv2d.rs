//! Convolutions on wgpu: im2col / col2im (`conv2d.wgsl`) and the strided GEMM of
//! `matmul.wgsl`.
//!
//! Examples are processed in chunks whose unfolded columns fit a budget (and the adapter's
//! binding limit), so any batch size runs; a `1x1`, stride-1, unpadded convolution skips
//! im2col and reads the input directly. The batch weight gradient splits its sum over examples
//! into partial products (more workgroups for small filters), then reduces them.

use super::matmul::{Gemm, Strides};
use super::{Access, Gpu, GpuBuffer, Kernel, grid_1d, u};
use crate::ops::conv2d::Conv2dGeometry;
use crate::ops::elementwise::BinaryOp;
use crate::ops::reduce::ReduceOp;

const SRC: &str = include_str!("conv2d.wgsl");
const B: &[Access] = &[Access::Read, Access::ReadWrite];
const IM2COL: Kernel = Kernel {
    name: "conv2d::im2col",
    source: SRC,
    entry: "im2col",
    bindings: B,
};
const COL2IM: Kernel = Kernel {
    name: "conv2d::col2im",
    source: SRC,
    entry: "col2im",
    bindings: B,
};

/// Upper bound on the unfolded columns of one chunk (64 Mi values = 256 MiB).
const COLS_BUDGET: usize = 1 << 26;

fn params(g: &Conv2dGeometry, n: usize, src_off: usize, dst_off: usize) -> Vec<u32> {
    let q = g.params;
    [
        n,
        g.c_in,
        g.h,
        g.w,
        g.kh,
        g.kw,
        g.oh,
        g.ow,
        q.stride[0],
        q.stride[1],
        q.padding[0],
        q.padding[1],
        q.dilation[0],
        q.dilation[1],
        src_off,
        dst_off,
    ]
    .iter()
    .map(|&v| u(v))
    .collect()
}

fn is_pointwise(g: &Conv2dGeometry) -> bool {
    let q = g.params;
    g.kh == 1 && g.kw == 1 && q.stride == [1, 1] && q.padding == [0, 0]
}

/// The unfolded input of a chunk and the offset of its first example.
enum Cols<'a> {
    Input(&'a GpuBuffer, usize),
    Owned(GpuBuffer),
}

impl Cols<'_> {
    fn buf(&self) -> (&GpuBuffer, usize) {
        match self {
            Cols::Input(b, off) => (b, *off),
            Cols::Owned(b) => (b, 0),
        }
    }
}

impl Gpu {
    /// Examples per chunk so that a chunk's columns fit the budget and the binding limit.
    fn conv_chunk(&self, g: &Conv2dGeometry) -> usize {
        let per = (g.d_total() * g.t()).max(1);
        (COLS_BUDGET.min(self.max_elems()) / per).clamp(1, g.n.max(1))
    }

    fn unfold_chunk<'a>(
        &self,
        x: &'a GpuBuffer,
        g: &Conv2dGeometry,
        n0: usize,
        nc: usize,
    ) -> Cols<'a> {
        let per_in = g.c_in * g.h * g.w;
        if is_pointwise(g) {
            return Cols::Input(x, n0 * per_in);
        }
        let len = nc * g.d_total() * g.t();
        let cols = self.alloc(len);
        if len > 0 {
            self.dispatch(
                &IM2COL,
                &params(g, nc, n0 * per_in, 0),
                &[&x.buf, &cols.buf],
                grid_1d(len),
            );
        }
        Cols::Owned(cols)
    }

    /// Strides of the unfolded columns as the `B` operand `[d, t]` of group `z2`.
    fn cols_strides(g: &Conv2dGeometry, off: usize, transposed: bool) -> Strides {
        let (dt, dg, t) = (g.d_total(), g.d(), g.t());
        Strides {
            off,
            z1: dt * t,
            z2: dg * t,
            r: dt * t,
            row: if transposed { 1 } else { t },
            col: if transposed { t } else { 1 },
        }
    }

    /// Convolution forward, `[N, O, Ho, Wo]`.
    pub(crate) fn conv2d_forward(
        &self,
        x: &GpuBuffer,
        w: &GpuBuffer,
        bias: Option<&GpuBuffer>,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        let (o, t, dg, og, groups) = (g.c_out, g.t(), g.d(), g.og(), g.params.groups);
        let y = self.alloc(g.n * o * t);
        let chunk = self.conv_chunk(g);
        let mut n0 = 0;
        while n0 < g.n && dg > 0 {
            let nc = chunk.min(g.n - n0);
            let cols = self.unfold_chunk(x, g, n0, nc);
            let (cb, coff) = cols.buf();
            let s = Gemm {
                m: og,
                n: t,
                k: dg,
                r: 1,
                batch: nc * groups,
                g: groups,
                accumulate: false,
                alpha: 1.0,
                a: Strides {
                    z2: og * dg,
                    row: dg,
                    col: 1,
                    ..Default::default()
                },
                b: Self::cols_strides(g, coff, false),
                c: Strides {
                    off: n0 * o * t,
                    z1: o * t,
                    z2: og * t,
                    row: t,
                    col: 1,
                    r: 0,
                },
            };
            self.gemm(w, cb, &y, &s);
            n0 += nc;
        }
        match bias {
            Some(b) => self.binary(BinaryOp::Add, &y, &[g.n, o, t], b, &[o, 1], &[g.n, o, t]),
            None => y,
        }
    }

    /// Convolution input gradient, `[N, C, H, W]`.
    pub(crate) fn conv2d_backward_input(
        &self,
        dy: &GpuBuffer,
        w: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        let (o, t, dg, og, groups) = (g.c_out, g.t(), g.d(), g.og(), g.params.groups);
        let (dt, per_in) = (g.d_total(), g.c_in * g.h * g.w);
        let dx = self.alloc(g.n * per_in);
        let chunk = self.conv_chunk(g);
        let pointwise = is_pointwise(g);
        let mut n0 = 0;
        while n0 < g.n && og > 0 {
            let nc = chunk.min(g.n - n0);
            let owned = if pointwise {
                None
            } else {
                Some(self.alloc(nc * dt * t))
            };
            let (target, off) = match &owned {
                Some(b) => (b, 0),
                None => (&dx, n0 * per_in),
            };
            let s = Gemm {
                m: dg,
                n: t,
                k: og,
                r: 1,
                batch: nc * groups,
                g: groups,
                accumulate: false,
                alpha: 1.0,
                a: Strides {
                    z2: og * dg,
                    row: 1,
                    col: dg,
                    ..Default::default()
                },
                b: Strides {
                    off: n0 * o * t,
                    z1: o * t,
                    z2: og * t,
                    row: t,
                    col: 1,
                    r: 0,
                },
                c: Strides {
                    off,
                    z1: dt * t,
                    z2: dg * t,
                    row: t,
                    col: 1,
                    r: 0,
                },
            };
            self.gemm(w, dy, target, &s);
            if let Some(cols) = owned {
                let len = nc * per_in;
                self.dispatch(
                    &COL2IM,
                    &params(g, nc, 0, n0 * per_in),
                    &[&cols.buf, &dx.buf],
                    grid_1d(len),
                );
            }
            n0 += nc;
        }
        dx
    }

    /// Per-example weight gradients `[N, O, d]`.
    pub(crate) fn conv2d_per_example_weight_grad(
        &self,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        let (o, t, dg, og, groups) = (g.c_out, g.t(), g.d(), g.og(), g.params.groups);
        let out = self.alloc(g.n * o * dg);
        let chunk = self.conv_chunk(g);
        let mut n0 = 0;
        while n0 < g.n && t > 0 {
            let nc = chunk.min(g.n - n0);
            let cols = self.unfold_chunk(x, g, n0, nc);
            let (cb, coff) = cols.buf();
            let s = Gemm {
                m: og,
                n: dg,
                k: t,
                r: 1,
                batch: nc * groups,
                g: groups,
                accumulate: false,
                alpha: 1.0,
                a: Strides {
                    off: n0 * o * t,
                    z1: o * t,
                    z2: og * t,
                    row: t,
                    col: 1,
                    r: 0,
                },
                b: Self::cols_strides(g, coff, true),
                c: Strides {
                    off: n0 * o * dg,
                    z1: o * dg,
                    z2: og * dg,
                    row: dg,
                    col: 1,
                    r: 0,
                },
            };
            self.gemm(dy, cb, &out, &s);
            n0 += nc;
        }
        out
    }

    /// Batch weight gradient `[O, C/g, kh, kw]`: the sum over examples runs inside the GEMM
    /// (reduction axis), split into partial sums so that small filters still fill the GPU.
    pub(crate) fn conv2d_backward_weight(
        &self,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        let (o, t, dg, og, groups) = (g.c_out, g.t(), g.d(), g.og(), g.params.groups);
        let mut dw = self.alloc(o * dg);
        let tiles = og.div_ceil(64) * dg.div_ceil(64) * groups;
        let chunk = self.conv_chunk(g);
        let mut n0 = 0;
        while n0 < g.n && t > 0 {
            let nc = chunk.min(g.n - n0);
            let cols = self.unfold_chunk(x, g, n0, nc);
            let (cb, coff) = cols.buf();
            // Aim for >= 256 workgroups: `splits` partial sums of `per` examples each.
            let splits = (256 / tiles.max(1)).clamp(1, nc);
            let per = nc / splits;
            let partial = self.alloc(splits * o * dg);
            let mut s = Gemm {
                m: og,
                n: dg,
                k: t,
                r: per,
                batch: splits * groups,
                g: groups,
                accumulate: false,
                alpha: 1.0,
                a: Strides {
                    off: n0 * o * t,
                    z1: per * o * t,
                    z2: og * t,
                    r: o * t,
                    row: t,
                    col: 1,
                },
                b: Strides {
                    z1: per * g.d_total() * t,
                    ..Self::cols_strides(g, coff, true)
                },
                c: Strides {
                    off: 0,
                    z1: o * dg,
                    z2: og * dg,
                    row: dg,
                    col: 1,
                    r: 0,
                },
            };
            self.gemm(dy, cb, &partial, &s);
            let rest = nc - splits * per;
            if rest > 0 {
                // The remainder examples accumulate into partial slot 0.
                s.r = rest;
                s.batch = groups;
                s.accumulate = true;
                s.a.off = (n0 + splits * per) * o * t;
                s.b.off = coff + splits * per * g.d_total() * t;
                self.gemm(dy, cb, &partial, &s);
            }
            let sum = self.reduce_axis(ReduceOp::Sum, &partial, 1, splits, o * dg);
            self.axpy(&mut dw, 1.0, &sum);
            n0 += nc;
        }
        dw
    }

    /// Unfold, `N x C*kh*kw x T`.
    pub(crate) fn im2col(&self, x: &GpuBuffer, g: &Conv2dGeometry) -> GpuBuffer {
        let len = g.n * g.d_total() * g.t();
        let cols = self.alloc(len);
        if len > 0 {
            self.dispatch(
                &IM2COL,
                &params(g, g.n, 0, 0),
                &[&x.buf, &cols.buf],
                grid_1d(len),
            );
        }
        cols
    }

    /// Fold, `N x C x H x W`.
    pub(crate) fn col2im(&self, cols: &GpuBuffer, g: &Conv2dGeometry) -> GpuBuffer {
        let len = g.n * g.c_in * g.h * g.w;
        let x = self.alloc(len);
        if len > 0 {
            self.dispatch(
                &COL2IM,
                &params(g, g.n, 0, 0),
                &[&cols.buf, &x.buf],
                grid_1d(len),
            );
        }
        x
    }
}
