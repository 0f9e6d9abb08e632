//! Launchers for `index.wgsl`. Indices arrive as host `usize` slices (labels, samplers,
//! masks) and are uploaded as `u32` per call.

use super::{Access, Gpu, GpuBuffer, Kernel, grid_1d, u};

const SRC: &str = include_str!("index.wgsl");
const B: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
macro_rules! kernel {
    ($name:ident, $entry:literal) => {
        const $name: Kernel = Kernel {
            name: concat!("index::", $entry),
            source: SRC,
            entry: $entry,
            bindings: B,
        };
    };
}
kernel!(GATHER, "gather");
kernel!(SCATTER_ADD, "scatter_add");
kernel!(INDEX_SELECT, "index_select");
kernel!(INDEX_ADD, "index_add");

impl Gpu {
    #[allow(clippy::too_many_arguments)]
    fn indexed(
        &self,
        k: &Kernel,
        x: &GpuBuffer,
        src: &GpuBuffer,
        index: &[usize],
        [outer, len, inner, j]: [usize; 4],
        out_len: usize,
    ) -> GpuBuffer {
        let out = self.alloc(out_len);
        if out_len == 0 {
            return out;
        }
        let idx: Vec<u32> = index.iter().map(|&v| u(v)).collect();
        let ib = self.upload_u32(&idx);
        let p = [u(outer), u(len), u(inner), u(j)];
        self.dispatch(k, &p, &[&x.buf, &src.buf, &ib, &out.buf], grid_1d(out_len));
        out
    }

    /// Gather along the middle axis with a full-shape index.
    pub(crate) fn gather(
        &self,
        x: &GpuBuffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        let j = index.len().checked_div(outer * inner).unwrap_or(0);
        self.indexed(&GATHER, x, x, index, [outer, len, inner, j], index.len())
    }

    /// Scatter-add `src` into `base` with a full-shape index.
    pub(crate) fn scatter_add(
        &self,
        base: &GpuBuffer,
        index: &[usize],
        src: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        let j = index.len().checked_div(outer * inner).unwrap_or(0);
        self.indexed(
            &SCATTER_ADD,
            base,
            src,
            index,
            [outer, len, inner, j],
            base.len,
        )
    }

    /// Whole slices `index` along the middle axis.
    pub(crate) fn index_select(
        &self,
        x: &GpuBuffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        let j = index.len();
        self.indexed(
            &INDEX_SELECT,
            x,
            x,
            index,
            [outer, len, inner, j],
            outer * j * inner,
        )
    }

    /// Adds whole slices of `src` into `base` at `index`.
    pub(crate) fn index_add(
        &self,
        base: &GpuBuffer,
        index: &[usize],
        src: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        self.indexed(
            &INDEX_ADD,
            base,
            src,
            index,
            [outer, len, inner, index.len()],
            base.len,
        )
    }
}
