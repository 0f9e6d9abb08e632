//! 2-D max and average pooling (NCHW) with backward.
//!
//! Max pooling ignores padded positions (they act as `-inf`); its backward recomputes the
//! arg-max from the forward input instead of storing indices, so no host-side index buffer has
//! to cross the device seam. Ties go to the first maximal element in row-major window order.
//! Average pooling divides by the full window area `kh * kw` (padding counts as zeros).

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, invalid_arg, invalid_shape, mismatch};
use crate::tensor::{Tensor, check_same_device};

/// Window, stride and padding of a pooling layer (`[height, width]` pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dParams {
    /// Window size, each >= 1.
    pub kernel: [usize; 2],
    /// Step, each >= 1.
    pub stride: [usize; 2],
    /// Padding on both sides, at most half the window.
    pub padding: [usize; 2],
}

impl Pool2dParams {
    /// Non-overlapping `k x k` windows (stride `k`, no padding), e.g. the 2x2 pool of a CNN.
    pub fn square(k: usize) -> Self {
        Pool2dParams {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
        }
    }
}

/// Validated pooling geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dGeometry {
    /// Batch size times channels (pooling treats every plane alike).
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Window parameters.
    pub params: Pool2dParams,
}

impl Pool2dGeometry {
    /// Validates an input shape `[N, C, H, W]` against the parameters.
    pub fn new(op: &'static str, shape: &[usize], p: Pool2dParams) -> Result<Self> {
        let [n, c, h, w] = *shape else {
            return Err(invalid_shape(op, shape, "expected [N, C, H, W]"));
        };
        if h == 0 || w == 0 {
            // Every window would hold only padding, which max pooling cannot reduce.
            return Err(invalid_shape(op, shape, "pooling needs a non-empty image"));
        }
        let mut out = [0; 2];
        for i in 0..2 {
            if p.kernel[i] == 0 || p.stride[i] == 0 {
                return Err(invalid_arg(
                    op,
                    format!(
                        "kernel {:?} and stride {:?} must be positive",
                        p.kernel, p.stride
                    ),
                ));
            }
            if 2 * p.padding[i] > p.kernel[i] {
                return Err(invalid_arg(
                    op,
                    format!(
                        "padding {:?} exceeds half the kernel {:?}",
                        p.padding, p.kernel
                    ),
                ));
            }
            let padded = [h, w][i] + 2 * p.padding[i];
            if padded < p.kernel[i] {
                return Err(invalid_arg(
                    op,
                    format!(
                        "kernel {:?} larger than padded input {:?}",
                        p.kernel,
                        [h, w]
                    ),
                ));
            }
            out[i] = (padded - p.kernel[i]) / p.stride[i] + 1;
        }
        Ok(Pool2dGeometry {
            planes: n * c,
            h,
            w,
            oh: out[0],
            ow: out[1],
            params: p,
        })
    }

    /// Input rows/cols of window `(oy, ox)`, clipped to the image.
    #[inline]
    fn window(&self, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
        let p = self.params;
        let y0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
        let x0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
        let y1 = (y0 + p.kernel[0] as isize).min(self.h as isize);
        let x1 = (x0 + p.kernel[1] as isize).min(self.w as isize);
        (
            y0.max(0) as usize,
            y1 as usize,
            x0.max(0) as usize,
            x1 as usize,
        )
    }

    /// Non-overlapping 2x2 windows without padding (the CNNs' pool), which have a fast path.
    #[inline]
    fn is_2x2(&self) -> bool {
        let p = self.params;
        p.kernel == [2, 2] && p.stride == [2, 2] && p.padding == [0, 0]
    }

    /// Flat arg-max inside plane `x` for window `(oy, ox)`.
    #[inline]
    fn argmax(&self, x: &[f32], oy: usize, ox: usize) -> usize {
        let (ya, yb, xa, xb) = self.window(oy, ox);
        let mut best = ya * self.w + xa;
        for yy in ya..yb {
            for xx in xa..xb {
                let i = yy * self.w + xx;
                if x[i] > x[best] {
                    best = i;
                }
            }
        }
        best
    }
}

/// CPU kernel: max pooling.
pub(crate) fn cpu_max_pool2d(x: &[f32], g: &Pool2dGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    // Every output entry is written.
    let mut y = crate::buffers::for_overwrite(g.planes * ohw);
    if ohw == 0 {
        return y;
    }
    if g.is_2x2() {
        y.par_chunks_mut(ohw).enumerate().for_each(|(p, yp)| {
            let xp = &x[p * hw..(p + 1) * hw];
            for (oy, yrow) in yp.chunks_exact_mut(g.ow).enumerate() {
                let r0 = &xp[2 * oy * g.w..2 * oy * g.w + 2 * g.ow];
                let r1 = &xp[(2 * oy + 1) * g.w..(2 * oy + 1) * g.w + 2 * g.ow];
                for ((out, a), b) in yrow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    let w = [a[0], a[1], b[0], b[1]];
                    *out = w[first_max_2x2(w[0], w[1], w[2], w[3])];
                }
            }
        });
        return y;
    }
    y.par_chunks_mut(ohw).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * hw..(p + 1) * hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                yp[oy * g.ow + ox] = xp[g.argmax(xp, oy, ox)];
            }
        }
    });
    y
}

/// Row-major index (0..4) of the first maximal element of a 2x2 window `[[a, b], [c, d]]`,
/// with the generic path's rule: a later element wins only if strictly greater.
#[inline(always)]
fn first_max_2x2(a: f32, b: f32, c: f32, d: f32) -> usize {
    let mut best = 0;
    let mut m = a;
    if b > m {
        best = 1;
        m = b;
    }
    if c > m {
        best = 2;
        m = c;
    }
    if d > m {
        best = 3;
    }
    best
}

/// CPU kernel: max pooling backward.
pub(crate) fn cpu_max_pool2d_backward(x: &[f32], dy: &[f32], g: &Pool2dGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = crate::buffers::zeroed(g.planes * hw);
    if hw == 0 {
        return dx;
    }
    if g.is_2x2() {
        // Windows do not overlap: each input position receives at most one gradient.
        dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
            let xp = &x[p * hw..(p + 1) * hw];
            let dyp = &dy[p * ohw..(p + 1) * ohw];
            for oy in 0..g.oh {
                let (i0, i1) = (2 * oy * g.w, (2 * oy + 1) * g.w);
                for (ox, &d) in dyp[oy * g.ow..(oy + 1) * g.ow].iter().enumerate() {
                    let (j0, j1) = (i0 + 2 * ox, i1 + 2 * ox);
                    let k = first_max_2x2(xp[j0], xp[j0 + 1], xp[j1], xp[j1 + 1]);
                    dxp[[j0, j0 + 1, j1, j1 + 1][k]] = d;
                }
            }
        });
        return dx;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        let xp = &x[p * hw..(p + 1) * hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                dxp[g.argmax(xp, oy, ox)] += dy[p * ohw + oy * g.ow + ox];
            }
        }
    });
    dx
}

/// CPU kernel: average pooling.
pub(crate) fn cpu_avg_pool2d(x: &[f32], g: &Pool2dGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let inv = 1.0 / (g.params.kernel[0] * g.params.kernel[1]) as f32;
    // Every output entry is written.
    let mut y = crate::buffers::for_overwrite(g.planes * ohw);
    if ohw == 0 {
        return y;
    }
    y.par_chunks_mut(ohw).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * hw..(p + 1) * hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (ya, yb, xa, xb) = g.window(oy, ox);
                let mut s = 0.0f32;
                for yy in ya..yb {
                    s += xp[yy * g.w + xa..yy * g.w + xb].iter().sum::<f32>();
                }
                yp[oy * g.ow + ox] = s * inv;
            }
        }
    });
    y
}

/// CPU kernel: average pooling backward.
pub(crate) fn cpu_avg_pool2d_backward(dy: &[f32], g: &Pool2dGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let inv = 1.0 / (g.params.kernel[0] * g.params.kernel[1]) as f32;
    let mut dx = crate::buffers::zeroed(g.planes * hw);
    if hw == 0 {
        return dx;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let v = dy[p * ohw + oy * g.ow + ox] * inv;
                let (ya, yb, xa, xb) = g.window(oy, ox);
                for yy in ya..yb {
                    dxp[yy * g.w + xa..yy * g.w + xb]
                        .iter_mut()
                        .for_each(|d| *d += v);
                }
            }
        }
    });
    dx
}

impl Tensor {
    /// Max pooling of `[N, C, H, W]`.
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let g = Pool2dGeometry::new("max_pool2d", self.shape(), params)?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.max_pool2d(x, &g)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().max_pool2d(x, &g)),
        };
        Ok(Tensor::from_storage(
            storage,
            vec![self.shape()[0], self.shape()[1], g.oh, g.ow],
        ))
    }

    /// Backward of [`Tensor::max_pool2d`]; `self` is the forward input.
    pub fn max_pool2d_backward(&self, grad_out: &Tensor, params: Pool2dParams) -> Result<Tensor> {
        let g = self.pool_grad_geometry("max_pool2d_backward", grad_out, params)?;
        let storage = match (self.storage(), grad_out.storage()) {
            (Storage::Cpu(x), Storage::Cpu(dy)) => {
                Storage::Cpu(CpuBackend.max_pool2d_backward(x, dy, &g))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(dy)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().max_pool2d_backward(x, dy, &g))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("max_pool2d_backward")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// Average pooling of `[N, C, H, W]`.
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let g = Pool2dGeometry::new("avg_pool2d", self.shape(), params)?;
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.avg_pool2d(x, &g)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().avg_pool2d(x, &g)),
        };
        Ok(Tensor::from_storage(
            storage,
            vec![self.shape()[0], self.shape()[1], g.oh, g.ow],
        ))
    }

    /// Backward of [`Tensor::avg_pool2d`] for an input of `input_shape`.
    pub fn avg_pool2d_backward(
        grad_out: &Tensor,
        input_shape: [usize; 4],
        params: Pool2dParams,
    ) -> Result<Tensor> {
        let g = Pool2dGeometry::new("avg_pool2d_backward", &input_shape, params)?;
        let want = [input_shape[0], input_shape[1], g.oh, g.ow];
        if grad_out.shape() != want {
            return Err(mismatch("avg_pool2d_backward", &want, grad_out.shape()));
        }
        let storage = match grad_out.storage() {
            Storage::Cpu(dy) => Storage::Cpu(CpuBackend.avg_pool2d_backward(dy, &g)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(dy) => crate::device::on_gpu(
                "avg_pool2d_backward",
                crate::tensor::numel(&input_shape),
                |gp| gp.avg_pool2d_backward(dy, &g),
            )?,
        };
        Ok(Tensor::from_storage(storage, input_shape.to_vec()))
    }

    fn pool_grad_geometry(
        &self,
        op: &'static str,
        grad_out: &Tensor,
        params: Pool2dParams,
    ) -> Result<Pool2dGeometry> {
        check_same_device(op, self, grad_out)?;
        let g = Pool2dGeometry::new(op, self.shape(), params)?;
        let want = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        if grad_out.shape() != want {
            return Err(mismatch(op, &want, grad_out.shape()));
        }
        Ok(g)
    }
}
