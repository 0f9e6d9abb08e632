//! Launcher for `random.wgsl`: Philox4x32-10 Gaussian samples generated on the device.

use super::{Access, Gpu, GpuBuffer, Kernel, f, grid_1d, u};

const NORMAL: Kernel = Kernel {
    name: "random::normal",
    source: include_str!("random.wgsl"),
    entry: "normal",
    bindings: &[Access::ReadWrite],
};

impl Gpu {
    /// `n` samples of `N(mean, std^2)` from the Philox stream `(key, stream)`.
    pub(crate) fn philox_normal(
        &self,
        n: usize,
        mean: f32,
        std: f32,
        key: u64,
        stream: u64,
    ) -> GpuBuffer {
        let out = self.alloc(n);
        if n > 0 {
            let p = [
                u(n),
                key as u32,
                (key >> 32) as u32,
                stream as u32,
                (stream >> 32) as u32,
                f(mean),
                f(std),
            ];
            self.dispatch(&NORMAL, &p, &[&out.buf], grid_1d(n.div_ceil(4)));
        }
        out
    }
}
