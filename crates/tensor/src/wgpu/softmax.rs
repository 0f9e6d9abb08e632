//! Launchers for `softmax.wgsl`.

use super::{Access, Gpu, GpuBuffer, Kernel, grid_1d, u};

const SRC: &str = include_str!("softmax.wgsl");
const B: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        const $name: Kernel = Kernel {
            name: concat!("softmax::", $entry),
            source: SRC,
            entry: $entry,
            bindings: B,
        };
    };
}
kernel!(SOFTMAX, "softmax");
kernel!(SOFTMAX_BACKWARD, "softmax_backward");
kernel!(CE, "cross_entropy");
kernel!(CE_BACKWARD, "cross_entropy_backward");

impl Gpu {
    #[allow(clippy::too_many_arguments)]
    fn rows(
        &self,
        k: &Kernel,
        x: &GpuBuffer,
        g: &GpuBuffer,
        targets: &[usize],
        rows: usize,
        cols: usize,
        log: bool,
        out_len: usize,
    ) -> GpuBuffer {
        let out = self.alloc(out_len);
        if rows == 0 || cols == 0 {
            return out;
        }
        let t: Vec<u32> = targets.iter().map(|&v| u(v)).collect();
        let tb = self.upload_u32(&t);
        let p = [u(rows), u(cols), log as u32];
        self.dispatch(k, &p, &[&x.buf, &g.buf, &tb, &out.buf], grid_1d(rows));
        out
    }

    /// Softmax (or log-softmax) over rows of length `cols`.
    pub(crate) fn softmax(&self, x: &GpuBuffer, cols: usize, log: bool) -> GpuBuffer {
        let rows = x.len.checked_div(cols).unwrap_or(0);
        self.rows(&SOFTMAX, x, x, &[], rows, cols, log, x.len)
    }

    /// Backward of softmax / log-softmax from its output `y`.
    pub(crate) fn softmax_backward(
        &self,
        y: &GpuBuffer,
        grad: &GpuBuffer,
        cols: usize,
        log: bool,
    ) -> GpuBuffer {
        let rows = y.len.checked_div(cols).unwrap_or(0);
        if cols == 0 {
            return grad.clone();
        }
        self.rows(&SOFTMAX_BACKWARD, y, grad, &[], rows, cols, log, y.len)
    }

    /// Per-row cross-entropy losses.
    pub(crate) fn cross_entropy(
        &self,
        logits: &GpuBuffer,
        targets: &[usize],
        cols: usize,
    ) -> GpuBuffer {
        self.rows(
            &CE,
            logits,
            logits,
            targets,
            targets.len(),
            cols,
            true,
            targets.len(),
        )
    }

    /// Gradient of the per-row losses scaled by `grad`.
    pub(crate) fn cross_entropy_backward(
        &self,
        logits: &GpuBuffer,
        targets: &[usize],
        grad: &GpuBuffer,
        cols: usize,
    ) -> GpuBuffer {
        self.rows(
            &CE_BACKWARD,
            logits,
            grad,
            targets,
            targets.len(),
            cols,
            true,
            logits.len,
        )
    }
}
