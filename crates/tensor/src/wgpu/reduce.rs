//! Launchers for `reduce.wgsl`: axis reductions, the max backward and per-row squared norms.

use super::{Access, Gpu, GpuBuffer, Kernel, grid, grid_1d, u};
use crate::ops::reduce::ReduceOp;

const SRC: &str = include_str!("reduce.wgsl");
const B: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
const COLS: Kernel = Kernel {
    name: "reduce::reduce_cols",
    source: SRC,
    entry: "reduce_cols",
    bindings: B,
};
const ROWS: Kernel = Kernel {
    name: "reduce::reduce_rows",
    source: SRC,
    entry: "reduce_rows",
    bindings: B,
};
const MAX_BACKWARD: Kernel = Kernel {
    name: "reduce::max_backward",
    source: SRC,
    entry: "max_backward",
    bindings: B,
};

const SUM_SQUARES: u32 = 3;

fn code(op: ReduceOp) -> u32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
    }
}

impl Gpu {
    fn reduce_code(
        &self,
        op: u32,
        x: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        let out = self.alloc(outer * inner);
        if outer * inner == 0 {
            return out;
        }
        let p = [u(outer), u(len), u(inner), op];
        if inner == 1 {
            self.dispatch(&ROWS, &p, &[&x.buf, &x.buf, &out.buf], grid(outer));
        } else {
            self.dispatch(
                &COLS,
                &p,
                &[&x.buf, &x.buf, &out.buf],
                grid_1d(outer * inner),
            );
        }
        out
    }

    /// Reduce `[outer, len, inner]` over the middle axis.
    pub(crate) fn reduce_axis(
        &self,
        op: ReduceOp,
        x: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        self.reduce_code(code(op), x, outer, len, inner)
    }

    /// Route `grad` to the first arg-max along the middle axis.
    pub(crate) fn max_axis_backward(
        &self,
        x: &GpuBuffer,
        grad: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        let out = self.alloc(outer * len * inner);
        if outer * inner * len == 0 {
            return out;
        }
        let p = [u(outer), u(len), u(inner), 0];
        self.dispatch(
            &MAX_BACKWARD,
            &p,
            &[&x.buf, &grad.buf, &out.buf],
            grid_1d(outer * inner),
        );
        out
    }

    /// Squared L2 norm of each of `rows` rows.
    pub(crate) fn row_sq_norms(&self, x: &GpuBuffer, rows: usize) -> GpuBuffer {
        if rows == 0 {
            return self.alloc(0);
        }
        self.reduce_code(SUM_SQUARES, x, rows, x.len / rows, 1)
    }
}
