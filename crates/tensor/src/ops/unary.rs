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

impl UnaryOp {
    /// `f(x)`.
    #[inline]
    pub fn forward(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Tanh => x.tanh(),
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
                let t = x.tanh();
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

/// CPU kernel: `f(x)`.
pub(crate) fn cpu_unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    let mut out = crate::buffers::copied(x);
    out.par_chunks_mut(PAR_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v = op.forward(*v)));
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
