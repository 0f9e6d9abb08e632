//! Layers: parameter registration with initialisation, and their forward on a tape.

use crate::error::{NnError, Result};
use crate::param::{ParamId, ParamRole, ParamStore};
use crate::tape::{Tape, Var};
use crate::transform::WeightTransform;
use sparsedp_tensor::{Conv2dParams, Pool2dParams, Tensor, TensorRng, UnaryOp};
use std::sync::Mutex;

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
    /// LeCun normal, `std = sqrt(1 / fan_in)` (haiku's `VarianceScaling(1.0)` up to its
    /// truncation at two standard deviations), biases zero.
    LecunNormal,
    /// All zeros (e.g. a re-initialised classifier head).
    Zeros,
}

impl Init {
    pub(crate) fn weight(
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
            Init::LecunNormal => Tensor::randn(shape, 0.0, (1.0 / fi).sqrt(), rng)?,
            Init::XavierUniform => {
                let b = (6.0 / (fi + fan_out.max(1) as f32)).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)?
            }
            Init::Zeros => Tensor::zeros(shape),
        })
    }

    pub(crate) fn bias(self, n: usize, fan_in: usize, rng: &mut TensorRng) -> Result<Tensor> {
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
#[derive(Debug, Clone)]
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

    /// The same layer with the given weight transform (or none).
    pub fn with_transform(mut self, transform: Option<WeightTransform>) -> Self {
        self.transform = transform;
        self
    }

    /// Forward on `x: [B, C, H, W]`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.conv2d(
            x,
            self.weight,
            self.bias,
            self.params,
            self.transform.clone(),
        )
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

/// `k x k` average pooling with stride `s` and no padding.
pub fn avg_pool(k: usize, s: usize) -> Pool2dParams {
    Pool2dParams {
        kernel: [k, k],
        stride: [s, s],
        padding: [0, 0],
    }
}

/// Flattens `[B, ...]` to `[B, prod(...)]` (no parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flatten;

impl Flatten {
    /// Forward.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.flatten(x)
    }
}

/// Max pooling over `[B, C, H, W]` (no parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool(pub Pool2dParams);

impl MaxPool {
    /// Forward.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.max_pool2d(x, self.0)
    }
}

/// Average pooling over `[B, C, H, W]`; padded taps count as zeros and the divisor is the full
/// window area (no parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool(pub Pool2dParams);

impl AvgPool {
    /// Forward.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.avg_pool2d(x, self.0)
    }
}

/// Global average pooling, `[B, C, H, W] -> [B, C]` (no parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl GlobalAvgPool {
    /// Forward.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.spatial_mean(x)
    }
}

/// Inverted dropout: in training mode each activation is kept with probability `1 - rate`
/// and scaled by `1 / (1 - rate)`; otherwise the identity.
///
/// **DP-SGD.** Dropout is compatible with DP-SGD: the keep mask comes from this layer's own
/// seeded stream, never from the data, and each example's gradient is still clipped as a whole,
/// so the sensitivity stays `C`. The layer is nevertheless *inactive by default*
/// (`train == false`; [`crate::models::WideResNetConfig::dropout`] defaults to 0), so DP training
/// runs without it unless a caller switches it on explicitly, because (1) De et al. 2022 and
/// the other DP-SGD CNN recipes this project reproduces train without it (the injected noise
/// already regularises strongly), (2) the engines' equivalence guarantees assume that a
/// per-example forward (the naive engine) and a batch forward see the same function, which
/// dropout breaks (masks are drawn per call, so the naive engine would draw different masks),
/// and (3) with augmentation multiplicity each view would get its own mask, which changes what
/// the averaged-views gradient means. Turn it on (`train = true`) for non-private baselines.
#[derive(Debug)]
pub struct Dropout {
    /// Probability of dropping an activation, in `[0, 1)`.
    pub rate: f32,
    /// Whether masks are drawn (training) or the layer is the identity (evaluation).
    pub train: bool,
    rng: Mutex<TensorRng>,
}

impl Clone for Dropout {
    fn clone(&self) -> Self {
        Dropout {
            rate: self.rate,
            train: self.train,
            rng: Mutex::new(self.rng_state()),
        }
    }
}

impl Dropout {
    /// A dropout layer with drop probability `rate` whose masks come from a ChaCha20 stream
    /// seeded with `seed`; inactive (`train == false`) until switched on.
    pub fn new(rate: f32, seed: u64) -> Result<Self> {
        if !(rate.is_finite() && (0.0..1.0).contains(&rate)) {
            return Err(NnError::InvalidConfig(format!(
                "dropout rate must be in [0, 1), got {rate}"
            )));
        }
        Ok(Dropout {
            rate,
            train: false,
            rng: Mutex::new(TensorRng::seeded(seed)),
        })
    }

    /// The same layer in training mode (`true`) or evaluation mode (`false`).
    pub fn training(mut self, train: bool) -> Self {
        self.train = train;
        self
    }

    fn rng_state(&self) -> TensorRng {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forward: the identity unless `train` and `rate > 0`; then a fresh keep mask (0/1, same
    /// shape as `x`) is drawn from the layer's stream and recorded with the op.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        if !self.train || self.rate == 0.0 {
            return Ok(x);
        }
        let shape = tape.value(x).shape().to_vec();
        let u = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            Tensor::rand_uniform(&shape, 0.0, 1.0, &mut rng)?
        };
        let keep_p = 1.0 - self.rate;
        let keep: Vec<f32> = u.to_vec().iter().map(|&v| f32::from(v < keep_p)).collect();
        let device = tape.value(x).device();
        tape.dropout(
            x,
            Tensor::from_vec(keep, &shape)?.to_device(device)?,
            self.rate,
        )
    }
}

/// Where normalisation and activation sit in a [`ResidualBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockStyle {
    /// Pre-activation as in De et al. 2022 / jax_privacy's WideResNet: each conv is preceded
    /// by `activation -> GroupNorm`; the projection shortcut (when present) is
    /// `activation -> its own GroupNorm -> 1x1 conv` of the block input.
    #[default]
    PreActActNorm,
    /// Pre-activation as in He et al. 2016 ("Identity mappings"): each conv is preceded by
    /// `GroupNorm -> activation`; the projection shortcut is a 1x1 conv of the block input's
    /// pre-activation `act(norm1(x))` (no norm of its own).
    PreActNormAct,
    /// Post-activation (the original ResNet basic block with GroupNorm for BatchNorm):
    /// `conv -> GN -> act -> conv -> GN`, plus the shortcut (`1x1 conv -> GN` when projecting),
    /// then the activation.
    PostAct,
}

/// Hyper-parameters of a [`ResidualBlock`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualBlockConfig {
    /// Input channels.
    pub inputs: usize,
    /// Output channels.
    pub outputs: usize,
    /// Stride of the first 3x3 conv and of the projection.
    pub stride: usize,
    /// GroupNorm groups (must divide every normalised channel count).
    pub norm_groups: usize,
    /// Activation.
    pub activation: Activation,
    /// Weight transform of every conv (e.g. scaled weight standardisation), or none.
    pub transform: Option<WeightTransform>,
    /// Whether the convs have a bias.
    pub bias: bool,
    /// Normalisation/activation placement.
    pub style: BlockStyle,
    /// Force a 1x1 projection shortcut even when the shapes match (jax_privacy projects in the
    /// first block of every stage). A projection is always used when the shapes differ.
    pub force_projection: bool,
    /// Weight initialisation of the convs.
    pub init: Init,
}

/// The projection shortcut of a [`ResidualBlock`].
#[derive(Debug, Clone)]
pub struct Shortcut {
    /// Its own normalisation ([`BlockStyle::PreActActNorm`]: before the conv;
    /// [`BlockStyle::PostAct`]: after it; none for [`BlockStyle::PreActNormAct`]).
    pub norm: Option<GroupNorm>,
    /// The 1x1 conv (strided like the block).
    pub conv: Conv2d,
}

/// A two-conv residual block (3x3 convs, padding 1) with GroupNorm; see [`BlockStyle`] for the
/// three layouts. Output `[B, outputs, ceil(H / stride), ceil(W / stride)]`.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    /// First normalisation.
    pub norm1: GroupNorm,
    /// First 3x3 conv (strided).
    pub conv1: Conv2d,
    /// Second normalisation.
    pub norm2: GroupNorm,
    /// Second 3x3 conv.
    pub conv2: Conv2d,
    /// Projection shortcut, or `None` for the identity.
    pub shortcut: Option<Shortcut>,
    /// Activation.
    pub activation: Activation,
    /// Layout.
    pub style: BlockStyle,
}

impl ResidualBlock {
    /// Registers the block's parameters under `name.` (`norm1`, `conv1`, `norm2`, `conv2`,
    /// then `shortcut_norm`, `shortcut`).
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        cfg: ResidualBlockConfig,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        if cfg.stride == 0 {
            return Err(NnError::InvalidConfig(format!(
                "block {name}: stride must be at least 1"
            )));
        }
        let post = cfg.style == BlockStyle::PostAct;
        let conv = |store: &mut ParamStore,
                    rng: &mut TensorRng,
                    n: &str,
                    i: usize,
                    o: usize,
                    k: usize,
                    s: usize| {
            let params = Conv2dParams {
                stride: [s, s],
                padding: [k / 2, k / 2],
                ..Default::default()
            };
            Conv2d::new(
                store,
                &format!("{name}.{n}"),
                i,
                o,
                k,
                params,
                cfg.bias,
                cfg.init,
                rng,
            )
            .map(|c| c.with_transform(cfg.transform.clone()))
        };
        let gn = |store: &mut ParamStore, n: &str, c: usize| {
            GroupNorm::new(store, &format!("{name}.{n}"), c, cfg.norm_groups)
        };
        let (i, o) = (cfg.inputs, cfg.outputs);
        let norm1 = gn(store, "norm1", if post { o } else { i })?;
        let conv1 = conv(store, rng, "conv1", i, o, 3, cfg.stride)?;
        let norm2 = gn(store, "norm2", o)?;
        let conv2 = conv(store, rng, "conv2", o, o, 3, 1)?;
        let project = cfg.force_projection || i != o || cfg.stride != 1;
        let shortcut = if project {
            let norm = match cfg.style {
                BlockStyle::PreActActNorm => Some(gn(store, "shortcut_norm", i)?),
                BlockStyle::PreActNormAct => None,
                BlockStyle::PostAct => None,
            };
            let conv = conv(store, rng, "shortcut", i, o, 1, cfg.stride)?;
            let norm = if post {
                Some(gn(store, "shortcut_norm", o)?)
            } else {
                norm
            };
            Some(Shortcut { norm, conv })
        } else {
            None
        };
        Ok(ResidualBlock {
            norm1,
            conv1,
            norm2,
            conv2,
            shortcut,
            activation: cfg.activation,
            style: cfg.style,
        })
    }

    /// Forward on `x: [B, inputs, H, W]`.
    pub fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let act = self.activation;
        match self.style {
            BlockStyle::PreActActNorm => {
                let skip = match &self.shortcut {
                    None => x,
                    Some(s) => {
                        let h = act.forward(t, x);
                        let h = match &s.norm {
                            Some(n) => n.forward(t, h)?,
                            None => h,
                        };
                        s.conv.forward(t, h)?
                    }
                };
                let h = act.forward(t, x);
                let h = self.norm1.forward(t, h)?;
                let h = self.conv1.forward(t, h)?;
                let h = act.forward(t, h);
                let h = self.norm2.forward(t, h)?;
                let h = self.conv2.forward(t, h)?;
                t.add(h, skip)
            }
            BlockStyle::PreActNormAct => {
                let pre = self.norm1.forward(t, x)?;
                let pre = act.forward(t, pre);
                let skip = match &self.shortcut {
                    None => x,
                    Some(s) => s.conv.forward(t, pre)?,
                };
                let h = self.conv1.forward(t, pre)?;
                let h = self.norm2.forward(t, h)?;
                let h = act.forward(t, h);
                let h = self.conv2.forward(t, h)?;
                t.add(h, skip)
            }
            BlockStyle::PostAct => {
                let h = self.conv1.forward(t, x)?;
                let h = self.norm1.forward(t, h)?;
                let h = act.forward(t, h);
                let h = self.conv2.forward(t, h)?;
                let h = self.norm2.forward(t, h)?;
                let skip = match &self.shortcut {
                    None => x,
                    Some(s) => {
                        let r = s.conv.forward(t, x)?;
                        match &s.norm {
                            Some(n) => n.forward(t, r)?,
                            None => r,
                        }
                    }
                };
                let y = t.add(h, skip)?;
                Ok(act.forward(t, y))
            }
        }
    }
}
