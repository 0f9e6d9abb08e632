//! Residual networks with GroupNorm: the Wide ResNet of De et al. 2022 ("Unlocking
//! High-Accuracy Differentially Private Image Classification through Scale"), WRN-16-4 by
//! default, and a plain (post-activation) ResNet.
//!
//! Both avoid batch statistics (GroupNorm, never BatchNorm), as DP-SGD requires: every example's
//! output depends on that example only.

use crate::error::{NnError, Result};
use crate::layers::{
    Activation, BlockStyle, Conv2d, Dropout, GroupNorm, Init, Linear, ResidualBlock,
    ResidualBlockConfig,
};
use crate::model::Model;
use crate::param::ParamStore;
use crate::tape::{Tape, Var};
use crate::transform::WeightTransform;
use sparsedp_tensor::{Conv2dParams, TensorRng};

/// Configuration of a [`WideResNet`]; [`WideResNetConfig::wrn16_4`] is De et al.'s CIFAR-10
/// model.
#[derive(Debug, Clone, PartialEq)]
pub struct WideResNetConfig {
    /// Depth `6n + 4`: `n = (depth - 4) / 6` residual blocks per stage (16 -> 2 blocks).
    pub depth: usize,
    /// Widening factor `k`: stage widths `16k, 32k, 64k`.
    pub width: usize,
    /// Output classes.
    pub num_classes: usize,
    /// One example's shape `[C, H, W]`.
    pub input_shape: [usize; 3],
    /// GroupNorm groups (16 in De et al.); must divide 16 and every stage width.
    pub norm_groups: usize,
    /// Activation (ReLU in De et al.).
    pub activation: Activation,
    /// Weight transform of every conv, stem included: scaled weight standardisation in
    /// De et al. (`None` for plain convs).
    pub transform: Option<WeightTransform>,
    /// Normalisation/activation placement in the blocks.
    pub style: BlockStyle,
    /// Dropout before the classifier (0 disables it; inactive unless switched on, see
    /// [`Dropout`]).
    pub dropout: f32,
}

impl WideResNetConfig {
    /// WRN-`depth`-`width` for CIFAR-10 (`[3, 32, 32]`, 10 classes) with De et al.'s choices:
    /// GroupNorm(16), ReLU, scaled weight standardisation (eps 1e-4), jax_privacy's block
    /// layout, no dropout.
    pub fn new(depth: usize, width: usize) -> Self {
        WideResNetConfig {
            depth,
            width,
            num_classes: 10,
            input_shape: [3, 32, 32],
            norm_groups: 16,
            activation: Activation::Relu,
            transform: Some(WeightTransform::ScaledStandardize { eps: 1e-4 }),
            style: BlockStyle::PreActActNorm,
            dropout: 0.0,
        }
    }

    /// WRN-16-4 (about 2.75M parameters).
    pub fn wrn16_4() -> Self {
        WideResNetConfig::new(16, 4)
    }

    /// Residual blocks per stage.
    pub fn blocks_per_stage(&self) -> usize {
        (self.depth.saturating_sub(4)) / 6
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::InvalidConfig(m));
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return bad(format!(
                "wide resnet depth must be 6n + 4 with n >= 1, got {}",
                self.depth
            ));
        }
        if self.width == 0 || self.num_classes == 0 || self.input_shape.contains(&0) {
            return bad("width, classes and input shape must be positive".to_string());
        }
        for c in [16, 16 * self.width, 32 * self.width, 64 * self.width] {
            if self.norm_groups == 0 || !c.is_multiple_of(self.norm_groups) {
                return bad(format!(
                    "{} GroupNorm groups do not divide {c} channels",
                    self.norm_groups
                ));
            }
        }
        Ok(())
    }
}

/// The Wide ResNet of De et al. 2022, as in jax_privacy's `WideResNet`.
///
/// Layout (`n = (depth - 4) / 6` blocks per stage, widths `16k, 32k, 64k`, strides 1, 2, 2):
/// - stem: 3x3 conv, `C -> 16`, stride 1, padding 1;
/// - three stages of [`ResidualBlock`]s in the [`BlockStyle::PreActActNorm`] layout: each conv
///   is preceded by `act -> GroupNorm`; the first block of every stage has a 1x1 projection
///   shortcut `act -> GroupNorm -> 1x1 conv` (jax_privacy projects in the first block of each
///   stage even when the shapes match, which only happens for `k = 1`); the other blocks add
///   their input;
/// - head: `act -> GroupNorm -> global average pool -> [dropout] -> linear`.
///
/// Choices, checked against jax_privacy (`models/cifar.py`, `models/common.py`):
/// - **Bias**: every conv has a bias (jax_privacy's `WSConv2D` always adds one), and so does the
///   classifier.
/// - **Standardisation**: every conv, *the stem included*, is weight-standardised (jax_privacy
///   builds the stem with the same `conv_fn`). We use the scaled form
///   ([`WeightTransform::ScaledStandardize`]: rows of mean 0 and variance `1 / fan_in`, eps 1e-4).
///   jax_privacy's `WSConv2D` also multiplies each output channel by a learnable gain
///   (initialised to 1); we omit it, so the model computes the same function at initialisation
///   but has no per-channel gain parameters (the GroupNorm affine maps that follow each
///   activation provide per-channel scales).
/// - **Order**: jax_privacy applies the activation *before* the GroupNorm (`act -> GN -> conv`);
///   [`BlockStyle::PreActNormAct`] gives the He et al. order (`GN -> act -> conv`) instead.
/// - **Initialisation**: LeCun normal (`std = 1/sqrt(fan_in)`, haiku's `VarianceScaling(1.0)`
///   without truncation) for convs and the classifier, zero biases, GroupNorm `gamma = 1`,
///   `beta = 0`. Weight standardisation makes the convs insensitive to their init scale.
/// - GroupNorm eps 1e-5 (haiku's default).
#[derive(Debug, Clone)]
pub struct WideResNet {
    cfg: WideResNetConfig,
    store: ParamStore,
    stem: Conv2d,
    blocks: Vec<ResidualBlock>,
    final_norm: GroupNorm,
    dropout: Option<Dropout>,
    fc: Linear,
}

impl WideResNet {
    /// A freshly initialised network (seeded).
    pub fn new(cfg: WideResNetConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let init = Init::LecunNormal;
        let stem = Conv2d::new(
            &mut s,
            "stem",
            cfg.input_shape[0],
            16,
            3,
            Conv2dParams::padded(1),
            true,
            init,
            &mut rng,
        )?
        .with_transform(cfg.transform.clone());
        let mut blocks = Vec::new();
        let mut inputs = 16;
        for (stage, (mult, stride)) in [(16, 1), (32, 2), (64, 2)].into_iter().enumerate() {
            let outputs = mult * cfg.width;
            for b in 0..cfg.blocks_per_stage() {
                let block = ResidualBlock::new(
                    &mut s,
                    &format!("stage{}.block{b}", stage + 1),
                    ResidualBlockConfig {
                        inputs,
                        outputs,
                        stride: if b == 0 { stride } else { 1 },
                        norm_groups: cfg.norm_groups,
                        activation: cfg.activation,
                        transform: cfg.transform.clone(),
                        bias: true,
                        style: cfg.style,
                        force_projection: b == 0 && cfg.style == BlockStyle::PreActActNorm,
                        init,
                    },
                    &mut rng,
                )?;
                blocks.push(block);
                inputs = outputs;
            }
        }
        let final_norm = GroupNorm::new(&mut s, "final_norm", inputs, cfg.norm_groups)?;
        let dropout = if cfg.dropout > 0.0 {
            Some(Dropout::new(cfg.dropout, seed ^ 0x5eed_d20f)?)
        } else {
            None
        };
        let fc = Linear::new(&mut s, "fc", inputs, cfg.num_classes, true, init, &mut rng)?;
        Ok(WideResNet {
            cfg,
            store: s,
            stem,
            blocks,
            final_norm,
            dropout,
            fc,
        })
    }

    /// WRN-16-4 for CIFAR-10 with De et al.'s choices.
    pub fn wrn16_4(seed: u64) -> Result<Self> {
        WideResNet::new(WideResNetConfig::wrn16_4(), seed)
    }

    /// The configuration.
    pub fn config(&self) -> &WideResNetConfig {
        &self.cfg
    }

    /// The residual blocks, input to output.
    pub fn blocks(&self) -> &[ResidualBlock] {
        &self.blocks
    }

    /// Switches the dropout layer (if any) between training and evaluation mode.
    pub fn set_dropout_training(&mut self, train: bool) {
        if let Some(d) = &mut self.dropout {
            d.train = train;
        }
    }
}

impl Model for WideResNet {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let act = self.cfg.activation;
        let mut h = self.stem.forward(t, x)?;
        for b in &self.blocks {
            h = b.forward(t, h)?;
        }
        let h = match self.cfg.style {
            BlockStyle::PreActActNorm => {
                let h = act.forward(t, h);
                self.final_norm.forward(t, h)?
            }
            BlockStyle::PreActNormAct | BlockStyle::PostAct => {
                let h = self.final_norm.forward(t, h)?;
                act.forward(t, h)
            }
        };
        let mut h = t.spatial_mean(h)?;
        if let Some(d) = &self.dropout {
            h = d.forward(t, h)?;
        }
        self.fc.forward(t, h)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.cfg.input_shape
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
}

/// Configuration of a plain [`ResNet`] (post-activation basic blocks, GroupNorm).
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Blocks per stage (ResNet-18: `[2, 2, 2, 2]`).
    pub blocks: Vec<usize>,
    /// Width of each stage (ResNet-18: `[64, 128, 256, 512]`); the stem outputs `widths[0]`.
    /// Stage `s > 0` starts with stride 2.
    pub widths: Vec<usize>,
    /// Output classes.
    pub num_classes: usize,
    /// One example's shape `[C, H, W]`.
    pub input_shape: [usize; 3],
    /// GroupNorm groups.
    pub norm_groups: usize,
    /// Activation.
    pub activation: Activation,
    /// Weight transform of every conv (none in the classic ResNet).
    pub transform: Option<WeightTransform>,
}

impl ResNetConfig {
    /// ResNet-18 for CIFAR-10 (3x3 stem, no max-pool), GroupNorm(32 groups), ReLU.
    pub fn resnet18() -> Self {
        ResNetConfig {
            blocks: vec![2, 2, 2, 2],
            widths: vec![64, 128, 256, 512],
            num_classes: 10,
            input_shape: [3, 32, 32],
            norm_groups: 32,
            activation: Activation::Relu,
            transform: None,
        }
    }
}

/// A plain ResNet (He et al. 2016) for small images with GroupNorm in place of BatchNorm:
/// `3x3 conv -> GN -> act`, stages of post-activation basic blocks ([`BlockStyle::PostAct`];
/// 1x1 conv + GN projection where the shape changes), global average pool, linear. Convs have no
/// bias (a GroupNorm follows each), the classifier has one. Kaiming-normal initialisation.
#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    store: ParamStore,
    stem: Conv2d,
    stem_norm: GroupNorm,
    blocks: Vec<ResidualBlock>,
    fc: Linear,
}

impl ResNet {
    /// A freshly initialised network (seeded).
    pub fn new(cfg: ResNetConfig, seed: u64) -> Result<Self> {
        if cfg.blocks.is_empty()
            || cfg.blocks.len() != cfg.widths.len()
            || cfg.widths.contains(&0)
            || cfg.num_classes == 0
        {
            return Err(NnError::InvalidConfig(format!(
                "resnet needs one positive width per stage: blocks {:?}, widths {:?}",
                cfg.blocks, cfg.widths
            )));
        }
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let init = Init::KaimingNormal;
        let stem = Conv2d::new(
            &mut s,
            "stem",
            cfg.input_shape[0],
            cfg.widths[0],
            3,
            Conv2dParams::padded(1),
            false,
            init,
            &mut rng,
        )?
        .with_transform(cfg.transform.clone());
        let stem_norm = GroupNorm::new(&mut s, "stem_norm", cfg.widths[0], cfg.norm_groups)?;
        let mut blocks = Vec::new();
        let mut inputs = cfg.widths[0];
        for (stage, (&n, &outputs)) in cfg.blocks.iter().zip(&cfg.widths).enumerate() {
            for b in 0..n {
                blocks.push(ResidualBlock::new(
                    &mut s,
                    &format!("stage{}.block{b}", stage + 1),
                    ResidualBlockConfig {
                        inputs,
                        outputs,
                        stride: if b == 0 && stage > 0 { 2 } else { 1 },
                        norm_groups: cfg.norm_groups,
                        activation: cfg.activation,
                        transform: cfg.transform.clone(),
                        bias: false,
                        style: BlockStyle::PostAct,
                        force_projection: false,
                        init,
                    },
                    &mut rng,
                )?);
                inputs = outputs;
            }
        }
        let fc = Linear::new(
            &mut s,
            "fc",
            inputs,
            cfg.num_classes,
            true,
            Init::PyTorch,
            &mut rng,
        )?;
        Ok(ResNet {
            cfg,
            store: s,
            stem,
            stem_norm,
            blocks,
            fc,
        })
    }

    /// ResNet-18 for CIFAR-10 with GroupNorm.
    pub fn resnet18(seed: u64) -> Result<Self> {
        ResNet::new(ResNetConfig::resnet18(), seed)
    }
}

impl Model for ResNet {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let h = self.stem.forward(t, x)?;
        let h = self.stem_norm.forward(t, h)?;
        let mut h = self.cfg.activation.forward(t, h);
        for b in &self.blocks {
            h = b.forward(t, h)?;
        }
        let h = t.spatial_mean(h)?;
        self.fc.forward(t, h)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.cfg.input_shape
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
}
