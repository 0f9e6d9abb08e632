//! Launchers for `group_norm.wgsl`.

use super::{Access, Gpu, GpuBuffer, Kernel, f, grid, u};
use crate::ops::group_norm::GroupNormGeometry;

const SRC: &str = include_str!("group_norm.wgsl");
const B: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        const $name: Kernel = Kernel {
            name: concat!("group_norm::", $entry),
            source: SRC,
            entry: $entry,
            bindings: B,
        };
    };
}
kernel!(FORWARD, "forward");
kernel!(BACKWARD_INPUT, "backward_input");
kernel!(AFFINE, "affine_grads");

fn params(g: &GroupNormGeometry, gamma: bool, beta: bool) -> [u32; 7] {
    [
        u(g.n),
        u(g.c),
        u(g.spatial),
        u(g.groups),
        f(g.eps),
        gamma as u32,
        beta as u32,
    ]
}

impl Gpu {
    /// Forward: `(y, xhat, rstd)`.
    pub(crate) fn group_norm(
        &self,
        x: &GpuBuffer,
        gamma: Option<&GpuBuffer>,
        beta: Option<&GpuBuffer>,
        g: &GroupNormGeometry,
    ) -> (GpuBuffer, GpuBuffer, GpuBuffer) {
        let (y, xhat, rstd) = (
            self.alloc(x.len),
            self.alloc(x.len),
            self.alloc(g.n * g.groups),
        );
        if g.n * g.groups > 0 && g.spatial * g.c > 0 {
            let p = params(g, gamma.is_some(), beta.is_some());
            let ga = gamma.unwrap_or(x);
            let be = beta.unwrap_or(x);
            self.dispatch(
                &FORWARD,
                &p,
                &[
                    &x.buf, &x.buf, &ga.buf, &be.buf, &y.buf, &xhat.buf, &rstd.buf,
                ],
                grid(g.n * g.groups),
            );
        }
        (y, xhat, rstd)
    }

    /// Input gradient.
    pub(crate) fn group_norm_backward_input(
        &self,
        dy: &GpuBuffer,
        xhat: &GpuBuffer,
        rstd: &GpuBuffer,
        gamma: Option<&GpuBuffer>,
        g: &GroupNormGeometry,
    ) -> GpuBuffer {
        let dx = self.alloc(dy.len);
        if g.n * g.groups > 0 && g.spatial * g.c > 0 {
            let (d1, d2) = (self.alloc(0), self.alloc(0));
            let p = params(g, gamma.is_some(), false);
            let ga = gamma.unwrap_or(dy);
            self.dispatch(
                &BACKWARD_INPUT,
                &p,
                &[
                    &dy.buf, &xhat.buf, &ga.buf, &rstd.buf, &dx.buf, &d1.buf, &d2.buf,
                ],
                grid(g.n * g.groups),
            );
        }
        dx
    }

    /// Per-example `(dgamma, dbeta)`, each `N x C`.
    pub(crate) fn group_norm_affine_grads(
        &self,
        dy: &GpuBuffer,
        xhat: &GpuBuffer,
        g: &GroupNormGeometry,
    ) -> (GpuBuffer, GpuBuffer) {
        let (dg, db) = (self.alloc(g.n * g.c), self.alloc(g.n * g.c));
        if g.n * g.c > 0 {
            let d = self.alloc(0);
            let p = params(g, false, false);
            self.dispatch(
                &AFFINE,
                &p,
                &[
                    &dy.buf, &xhat.buf, &dy.buf, &dy.buf, &dg.buf, &db.buf, &d.buf,
                ],
                grid(g.n * g.c),
            );
        }
        (dg, db)
    }
}
