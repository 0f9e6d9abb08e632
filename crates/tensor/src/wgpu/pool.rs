//! Launchers for `pool.wgsl`: max and average pooling and their backward passes.

use super::{Access, Gpu, GpuBuffer, Kernel, grid_1d, u};
use crate::ops::pool::Pool2dGeometry;

const SRC: &str = include_str!("pool.wgsl");
const B: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        const $name: Kernel = Kernel {
            name: concat!("pool::", $entry),
            source: SRC,
            entry: $entry,
            bindings: B,
        };
    };
}
kernel!(MAX, "max_pool");
kernel!(MAX_BACKWARD, "max_pool_backward");
kernel!(AVG, "avg_pool");
kernel!(AVG_BACKWARD, "avg_pool_backward");

fn params(g: &Pool2dGeometry) -> Vec<u32> {
    let q = g.params;
    [
        g.planes,
        g.h,
        g.w,
        g.oh,
        g.ow,
        q.kernel[0],
        q.kernel[1],
        q.stride[0],
        q.stride[1],
        q.padding[0],
        q.padding[1],
    ]
    .iter()
    .map(|&v| u(v))
    .collect()
}

impl Gpu {
    fn pool(
        &self,
        k: &Kernel,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        len: usize,
        g: &Pool2dGeometry,
    ) -> GpuBuffer {
        let out = self.alloc(len);
        if len > 0 {
            self.dispatch(k, &params(g), &[&x.buf, &dy.buf, &out.buf], grid_1d(len));
        }
        out
    }

    /// Max pooling forward.
    pub(crate) fn max_pool2d(&self, x: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        self.pool(&MAX, x, x, g.planes * g.oh * g.ow, g)
    }

    /// Max pooling backward (arg-max recomputed from `x`).
    pub(crate) fn max_pool2d_backward(
        &self,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        g: &Pool2dGeometry,
    ) -> GpuBuffer {
        self.pool(&MAX_BACKWARD, x, dy, g.planes * g.h * g.w, g)
    }

    /// Average pooling forward.
    pub(crate) fn avg_pool2d(&self, x: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        self.pool(&AVG, x, x, g.planes * g.oh * g.ow, g)
    }

    /// Average pooling backward.
    pub(crate) fn avg_pool2d_backward(&self, dy: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        self.pool(&AVG_BACKWARD, dy, dy, g.planes * g.h * g.w, g)
    }
}
