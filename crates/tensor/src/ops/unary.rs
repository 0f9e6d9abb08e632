//! Unary activations and maps with their derivatives.
//!
//! Domain errors follow IEEE-754 instead of returning errors: `log` of a negative number is
//! NaN, `log(0)` is `-inf`, `sqrt` of a negative number is NaN. Derivatives at kinks use the
//! conventions of the major frameworks: `relu'(0) = 0`, `abs'(0) = 0`.

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, mismatch};
use crate::ops::elementwise::PAR_CHUNK;
use crate::tensor::{Tensor, check_same_device};

/// A unary elementwise function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `max(x, 0)`
    Relu,
    /// `tanh(x)`
    Tanh,
    /// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. The
    /// approximation is used because `f32::erf` is not in the standard library; it is the
    /// variant most DP-SGD CNN code uses and differs from the erf form by < 1e-3.
    Gelu,
    /// Mish: `x tanh(softplus(x))`.
    Mish,
    /// `e^x`
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// `|x|`
    Abs,
    /// `-x`
    Neg,
    /// `x^2`
    Square,
    /// Logistic sigmoid `1 / (1 + e^-x)`.
    Sigmoid,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// `ln(1 + e^x)` without overflow.
#[inline]
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else if x < -20.0 {
        x.exp()
    } else {
        x.exp().ln_1p()
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `tanh(x)` in f32 without a libm call, so that a loop over a tensor vectorises: with
/// `y = 2|x|` (clamped to 18, where `tanh` rounds to 1), `e^y - 1 = 2^n q(r) + (2^n - 1)` for
/// `y = n ln 2 + r`, `|r| <= ln(2) / 2` and `q(r) = e^r - 1` by its degree-8 Taylor polynomial
/// (truncation below 2e-10), then `tanh|x| = (e^y - 1) / (e^y + 1)`, which has no cancellation for
/// small `|x|`. Accurate to a few f32 ulps (tested against f64 in `tests/tensor/unary.rs`); NaN
/// stays NaN.
#[inline(always)]
pub(crate) fn fast_tanh(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let y = 2.0 * x.abs().min(9.0);
    let n = (y * LOG2E + ROUND) - ROUND;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let q = r + r
        * r
        * (1.0 / 2.0
            + r * (1.0 / 6.0
                + r * (1.0 / 24.0
                    + r * (1.0 / 120.0
                        + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0)))))));
    let s = f32::from_bits(((n as i32 + 127) << 23) as u32);
    let em1 = s * q + (s - 1.0);
    let t = (em1 / (em1 + 2.0)).copysign(x);
    if x.is_nan() { x } else { t }
}

impl UnaryOp {
    /// `f(x)` (tanh by [`fast_tanh`]'s vectorisable polynomial, within a few ulps of libm).
    #[inline]
    pub fn forward(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Tanh => fast_tanh(x),
            UnaryOp::Gelu => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh()),
            UnaryOp::Mish => x * softplus(x).tanh(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Neg => -x,
            UnaryOp::Square => x * x,
            UnaryOp::Sigmoid => sigmoid(x),
        }
    }

    /// `f'(x)`.
    #[inline]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Tanh => {
                let t = fast_tanh(x);
                1.0 - t * t
            }
            UnaryOp::Gelu => {
                let t = (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh();
                0.5 * (1.0 + t)
                    + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
            }
            UnaryOp::Mish => {
                let t = softplus(x).tanh();
                t + x * (1.0 - t * t) * sigmoid(x)
            }
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => 1.0 / x,
            UnaryOp::Sqrt => 0.5 / x.sqrt(),
            UnaryOp::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Neg => -1.0,
            UnaryOp::Square => 2.0 * x,
            UnaryOp::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
        }
    }
}

/// `v = tanh(v)` by [`fast_tanh`], with AVX2 when the processor has it (detected at run time;
/// the build targets baseline x86-64). Both paths do the same IEEE operations in the same order
/// (no FMA contraction), so they give bit-identical results.
fn tanh_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available on this processor (checked just above).
        unsafe { tanh_in_place_avx2(v) };
        return;
    }
    v.iter_mut().for_each(|x| *x = fast_tanh(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tanh_in_place_avx2(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = fast_tanh(*x));
}

/// CPU kernel: `f(x)`.
pub(crate) fn cpu_unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    let mut out = crate::buffers::copied(x);
    out.par_chunks_mut(PAR_CHUNK).for_each(|c| match op {
        // A loop of its own, so that it vectorises (tanh is the CNNs' activation).
        UnaryOp::Tanh => tanh_in_place(c),
        _ => c.iter_mut().for_each(|v| *v = op.forward(*v)),
    });
    out
}

/// CPU kernel: `grad * f'(x)`.
pub(crate) fn cpu_unary_backward(op: UnaryOp, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let mut out = crate::buffers::copied(grad);
    out.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(g, x)| {
            for (g, &x) in g.iter_mut().zip(x) {
                *g *= op.derivative(x);
            }
        });
    out
}

impl Tensor {
    /// Applies `op` elementwise.
    pub fn unary(&self, op: UnaryOp) -> Tensor {
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::Cpu(CpuBackend.unary(op, x)),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => Storage::Wgpu(crate::wgpu::gpu_or_lost().unary(op, x)),
        };
        Tensor::from_storage(storage, self.shape().to_vec())
    }

    /// Backward of [`Tensor::unary`]: `grad * f'(self)` where `self` is the forward input.
    pub fn unary_backward(&self, op: UnaryOp, grad: &Tensor) -> Result<Tensor> {
        check_same_device("unary_backward", self, grad)?;
        if self.shape() != grad.shape() {
            return Err(mismatch("unary_backward", self.shape(), grad.shape()));
        }
        let storage = match (self.storage(), grad.storage()) {
            (Storage::Cpu(x), Storage::Cpu(g)) => Storage::Cpu(CpuBackend.unary_backward(op, x, g)),
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(x), Storage::Wgpu(g)) => {
                Storage::Wgpu(crate::wgpu::gpu_or_lost().unary_backward(op, x, g))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("unary_backward")),
        };
        Ok(Tensor::from_storage(storage, self.shape().to_vec()))
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    /// `tanh(x)`.
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// GELU (tanh approximation, see [`UnaryOp::Gelu`]).
    pub fn gelu(&self) -> Tensor {
        self.unary(UnaryOp::Gelu)
    }
    /// Mish.
    pub fn mish(&self) -> Tensor {
        self.unary(UnaryOp::Mish)
    }
    /// `e^x`.
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// `ln(x)`.
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// `sqrt(x)`.
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// `|x|`.
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }
}
