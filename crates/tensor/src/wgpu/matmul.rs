//! Launcher for `matmul.wgsl`: one strided, batched GEMM used by `matmul` and every
//! convolution path.

use super::{Access, Gpu, GpuBuffer, Kernel, f, u};
use crate::ops::matmul::MatmulSpec;

const SRC: &str = include_str!("matmul.wgsl");
const GEMM: Kernel = Kernel {
    name: "matmul::gemm",
    source: SRC,
    entry: "gemm",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
const GEMM128: Kernel = Kernel {
    name: "matmul::gemm128",
    source: SRC,
    entry: "gemm128",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
/// Workgroups per dispatch along z (the per-dimension limit).
const MAX_Z: usize = 65_535;

/// Element strides of one operand: offset, batch axes `z1` and `z2`, reduction axis `r`, and
/// the two matrix axes (rows then columns of the operand as it enters the product).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Strides {
    pub off: usize,
    pub z1: usize,
    pub z2: usize,
    pub r: usize,
    pub row: usize,
    pub col: usize,
}

/// A strided batched product `C[z] (+)= alpha sum_r A[z, r] B[z, r]` (see `matmul.wgsl`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Products summed per output (the reduction axis).
    pub r: usize,
    /// Number of outputs `z`, split as `(z / g, z % g)`.
    pub batch: usize,
    pub g: usize,
    pub accumulate: bool,
    pub alpha: f32,
    pub a: Strides,
    pub b: Strides,
    pub c: Strides,
}

impl Gemm {
    /// A plain (possibly batched) product with row-major operands of the given shapes.
    pub(crate) fn dense(batch: usize, m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            r: 1,
            batch,
            g: 1,
            accumulate: false,
            alpha: 1.0,
            a: Strides {
                z1: m * k,
                row: k,
                col: 1,
                ..Default::default()
            },
            b: Strides {
                z1: k * n,
                row: n,
                col: 1,
                ..Default::default()
            },
            c: Strides {
                z1: m * n,
                row: n,
                col: 1,
                ..Default::default()
            },
        }
    }
}

impl Gpu {
    /// Records `c (+)= a b` as described by `s`.
    pub(crate) fn gemm(&self, a: &GpuBuffer, b: &GpuBuffer, c: &GpuBuffer, s: &Gemm) {
        if s.m == 0 || s.n == 0 || s.batch == 0 {
            return;
        }
        let mut p = vec![0u32; 32];
        p[0] = u(s.m);
        p[1] = u(s.n);
        p[2] = u(s.k);
        p[3] = u(s.r);
        p[4] = u(s.g.max(1));
        p[6] = s.accumulate as u32;
        p[7] = f(s.alpha);
        let put = |p: &mut [u32], at: usize, st: &Strides| {
            p[at] = u(st.off);
            p[at + 1] = u(st.z1);
            p[at + 2] = u(st.z2);
        };
        put(&mut p, 8, &s.a);
        p[11] = u(s.a.r);
        p[12] = u(s.a.row);
        p[13] = u(s.a.col);
        put(&mut p, 16, &s.b);
        p[19] = u(s.b.r);
        p[20] = u(s.b.row);
        p[21] = u(s.b.col);
        put(&mut p, 24, &s.c);
        p[27] = u(s.c.row);
        p[28] = u(s.c.col);
        // The 128 x 128 tile doubles the work per shared-memory read but leaves workgroups
        // idle on narrow products, so it serves only products at least one tile wide each way.
        let (kernel, tile) = if s.m >= 128 && s.n >= 128 {
            (&GEMM128, 128)
        } else {
            (&GEMM, 64)
        };
        let (gx, gy) = (s.n.div_ceil(tile), s.m.div_ceil(tile));
        let mut z0 = 0;
        while z0 < s.batch {
            let nz = (s.batch - z0).min(MAX_Z);
            p[5] = u(z0);
            self.dispatch(kernel, &p, &[&a.buf, &b.buf, &c.buf], [u(gx), u(gy), u(nz)]);
            z0 += nz;
        }
    }

    /// The [`MatmulSpec`] product, `batch x m x n`.
    pub(crate) fn matmul(&self, a: &GpuBuffer, b: &GpuBuffer, spec: MatmulSpec) -> GpuBuffer {
        let MatmulSpec {
            batch,
            m,
            n,
            k,
            trans_a,
            trans_b,
            a_batched,
            b_batched,
        } = spec;
        let c = self.alloc(batch * m * n);
        let mut s = Gemm::dense(batch, m, n, k);
        s.a = if trans_a {
            Strides {
                z1: m * k,
                row: 1,
                col: m,
                ..Default::default()
            }
        } else {
            Strides {
                z1: m * k,
                row: k,
                col: 1,
                ..Default::default()
            }
        };
        s.b = if trans_b {
            Strides {
                z1: k * n,
                row: 1,
                col: k,
                ..Default::default()
            }
        } else {
            Strides {
                z1: k * n,
                row: n,
                col: 1,
                ..Default::default()
            }
        };
        if !a_batched {
            s.a.z1 = 0;
        }
        if !b_batched {
            s.b.z1 = 0;
        }
        if k == 0 {
            return c; // empty inner dimension: zeros, as wgpu zero-fills new buffers
        }
        self.gemm(a, b, &c, &s);
        c
    }
}
