//! Layers: parameter registration with initialisation, and their forward on a tape.

use crate::error::{NnError, Result};
use crate::param::{ParamId, ParamRole, ParamStore};
use crate::tape::{Tape, Var};
use crate::transform::WeightTransform;
use sparsedp_tensor::{Conv2dParams, Pool2dParams, Tensor, TensorRng, UnaryOp};

/// Weight initialisation schemes (biases start at zero unless stated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default for linear and conv layers: weights and biases uniform in
    /// `±1/sqrt(fan_in)` (kaiming-uniform with `a = sqrt(5)`).
    #[default]
    PyTorch,
    /// Kaiming/He normal, `std = sqrt(2 / fan_in)` (for ReLU-like activations).
    KaimingNormal,
    /// Xavier/Glorot uniform, `±sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// All zeros (e.g. a re-initialised classifier head).
    Zeros,
}

impl Init {
    fn weight(
        self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut TensorRng,
    ) -> Result<Tensor> {
        let fi = fan_in.max(1) as f32;
        Ok(match self {
            Init::PyTorch => {
                let b = 1.0 / fi.sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)?
            }
            Init::KaimingNormal => Tensor::randn(shape, 0.0, (2.0 / fi).sqrt(), rng)?,
            Init::XavierUniform => {
                let b = (6.0 / (fi + fan_out.max(1) as f32)).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)?
            }
            Init::Zeros => Tensor::zeros(shape),
        })
    }

    fn bias(self, n: usize, fan_in: usize, rng: &mut TensorRng) -> Result<Tensor> {
        Ok(match self {
            Init::PyTorch => {
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                Tensor::rand_uniform(&[n], -b, b, rng)?
            }
            _ => Tensor::zeros(&[n]),
        })
    }
}

/// A fully connected layer, `y = x W^T + b`, `W: [out, in]`.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: Option<ParamId>,
}

impl Linear {
    /// Registers `name.weight` (and `name.bias`) in `store`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        let w = init.weight(&[outputs, inputs], inputs, outputs, rng)?;
        let weight = store.add(format!("{name}.weight"), w, ParamRole::Weight)?;
        let bias = if bias {
            let b = init.bias(outputs, inputs, rng)?;
            Some(store.add(format!("{name}.bias"), b, ParamRole::Bias)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Forward on `x: [B, in]`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.linear(x, self.weight, self.bias)
    }
}

/// A 2-D convolution, optionally weight-standardised.
#[derive(Debug, Clone, Copy)]
pub struct Conv2d {
    /// Weight `[out, in/groups, kh, kw]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: Option<ParamId>,
    /// Stride, padding, dilation, groups.
    pub params: Conv2dParams,
    /// Weight standardisation or none.
    pub transform: Option<WeightTransform>,
}

impl Conv2d {
    /// Registers `name.weight` (and `name.bias`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        inputs: usize,
        outputs: usize,
        kernel: usize,
        params: Conv2dParams,
        bias: bool,
        init: Init,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        if params.groups == 0
            || !inputs.is_multiple_of(params.groups)
            || !outputs.is_multiple_of(params.groups)
        {
            return Err(NnError::InvalidConfig(format!(
                "conv {name}: groups {} must divide {inputs} inputs and {outputs} outputs",
                params.groups
            )));
        }
        let cin = inputs / params.groups;
        let fan_in = cin * kernel * kernel;
        let w = init.weight(
            &[outputs, cin, kernel, kernel],
            fan_in,
            outputs * kernel * kernel,
            rng,
        )?;
        let weight = store.add(format!("{name}.weight"), w, ParamRole::Weight)?;
        let bias = if bias {
            let b = init.bias(outputs, fan_in, rng)?;
            Some(store.add(format!("{name}.bias"), b, ParamRole::Bias)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            params,
            transform: None,
        })
    }

    /// The same layer with weight standardisation.
    pub fn standardized(mut self, eps: f32) -> Self {
        self.transform = Some(WeightTransform::Standardize { eps });
        self
    }

    /// Forward on `x: [B, C, H, W]`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.conv2d(x, self.weight, self.bias, self.params, self.transform)
    }
}

/// Group normalisation with a per-channel affine map (gamma = 1, beta = 0 at init).
#[derive(Debug, Clone, Copy)]
pub struct GroupNorm {
    /// Scale `[C]`.
    pub gamma: ParamId,
    /// Shift `[C]`.
    pub beta: ParamId,
    /// Number of groups (divides C).
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
}

impl GroupNorm {
    /// Registers `name.weight` (gamma) and `name.bias` (beta).
    pub fn new(store: &mut ParamStore, name: &str, channels: usize, groups: usize) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(NnError::InvalidConfig(format!(
                "group norm {name}: {groups} groups do not divide {channels} channels"
            )));
        }
        let gamma = store.add(
            format!("{name}.weight"),
            Tensor::ones(&[channels]),
            ParamRole::NormScale,
        )?;
        let beta = store.add(
            format!("{name}.bias"),
            Tensor::zeros(&[channels]),
            ParamRole::NormShift,
        )?;
        Ok(GroupNorm {
            gamma,
            beta,
            groups,
            eps: 1e-5,
        })
    }

    /// Forward on `x: [B, C, ...]`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.group_norm(x, self.groups, self.gamma, self.beta, self.eps)
    }
}

/// Pointwise nonlinearities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `x tanh(softplus(x))`.
    Mish,
    /// Gaussian error linear unit.
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn forward(self, tape: &mut Tape<'_>, x: Var) -> Var {
        let op = match self {
            Activation::Relu => UnaryOp::Relu,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Mish => UnaryOp::Mish,
            Activation::Gelu => UnaryOp::Gelu,
        };
        tape.unary(x, op)
    }
}

/// `k x k` max pooling with stride `s` and no padding.
pub fn max_pool(k: usize, s: usize) -> Pool2dParams {
    Pool2dParams {
        kernel: [k, k],
        stride: [s, s],
        padding: [0, 0],
    }
}
