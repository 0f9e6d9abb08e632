//! Group-equivariant CNNs for DP-SGD ("sparse by design", Hoelzl, Rueckert & Kaissis 2023,
//! arXiv 2301.13104): an equivariant ResNet-9 and an equivariant version of the Tramer & Boneh
//! CIFAR-10 CNN, built from [`crate::equivariant`] layers. With [`Group::Trivial`] each is the
//! ordinary CNN of the same layout, the dense baseline.
//!
//! Both are invariant (logits unchanged) under the group acting on the input when every pooled
//! map has an even side: square inputs whose side is divisible by 8 (three 2x2 max pools).

use crate::equivariant::{FieldGroupNorm, Group, GroupConv2d, GroupPool, group_pool};
use crate::error::{NnError, Result};
use crate::layers::{Activation, Init, Linear, max_pool};
use crate::model::Model;
use crate::param::ParamStore;
use crate::tape::{Tape, Var};
use sparsedp_tensor::{Conv2dParams, Pool2dParams, TensorRng};

fn check_input(input_shape: [usize; 3]) -> Result<()> {
    let [_, h, w] = input_shape;
    if h != w || h == 0 || !h.is_multiple_of(8) {
        return Err(NnError::InvalidConfig(format!(
            "equivariant models need square inputs with a side divisible by 8, got {h}x{w}"
        )));
    }
    Ok(())
}

/// Configuration of an [`EquivariantResNet9`].
#[derive(Debug, Clone, PartialEq)]
pub struct EquivariantResNet9Config {
    /// Symmetry group of the convolutions.
    pub group: Group,
    /// Regular fields (channels = fields x `|G|`) of the prep layer and of the three stages.
    pub widths: [usize; 4],
    /// GroupNorm groups, each made of whole fields; must divide every width.
    pub norm_groups: usize,
    /// Activation.
    pub activation: Activation,
    /// Output classes.
    pub num_classes: usize,
    /// One example's shape `[C, H, W]` (square, side divisible by 8).
    pub input_shape: [usize; 3],
}

impl EquivariantResNet9Config {
    /// The dense ResNet-9 for CIFAR-10: widths 64, 128, 256, 512, GroupNorm(8), Mish.
    pub fn dense() -> Self {
        EquivariantResNet9Config {
            group: Group::Trivial,
            widths: [64, 128, 256, 512],
            norm_groups: 8,
            activation: Activation::Mish,
            num_classes: 10,
            input_shape: [3, 32, 32],
        }
    }

    /// The equivariant ResNet-9 for CIFAR-10 over `group` with as many channels as the dense
    /// one (`64 / |G|, ...` fields: about the same compute, `|G|` times fewer conv weights),
    /// GroupNorm(8) over whole fields (the same channels per norm group as the dense model),
    /// Mish.
    pub fn equivariant(group: Group) -> Self {
        let g = group.order();
        EquivariantResNet9Config {
            group,
            widths: [64 / g, 128 / g, 256 / g, 512 / g],
            ..Self::dense()
        }
    }
}

/// One conv -> field GroupNorm -> activation unit.
#[derive(Debug, Clone)]
struct ConvNormAct {
    conv: GroupConv2d,
    norm: FieldGroupNorm,
}

impl ConvNormAct {
    #[allow(clippy::too_many_arguments)]
    fn new(
        s: &mut ParamStore,
        name: &str,
        cfg: &EquivariantResNet9Config,
        lifting: bool,
        c_in: usize,
        c_out: usize,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        let (g, p, init) = (cfg.group, Conv2dParams::padded(1), Init::KaimingNormal);
        let conv = if lifting {
            GroupConv2d::lifting(s, name, g, c_in, c_out, 3, p, false, init, rng)?
        } else {
            GroupConv2d::regular(s, name, g, c_in, c_out, 3, p, false, init, rng)?
        };
        let norm = FieldGroupNorm::new(s, &format!("{name}_norm"), g, c_out, cfg.norm_groups)?;
        Ok(ConvNormAct { conv, norm })
    }

    fn forward(&self, t: &mut Tape<'_>, x: Var, act: Activation) -> Result<Var> {
        let x = self.conv.forward(t, x)?;
        let x = self.norm.forward(t, x)?;
        Ok(act.forward(t, x))
    }
}

/// ResNet-9 (the DAWNBench CIFAR-10 network of Page 2018, in the DP-SGD form of Hoelzl et al.
/// 2023: GroupNorm instead of BatchNorm, Mish) with group convolutions on regular fields:
///
/// prep: lift(3 -> w0); layer1: conv(w0 -> w1), max pool 2, residual of two convs(w1);
/// layer2: conv(w1 -> w2), max pool 2; layer3: conv(w2 -> w3), max pool 2, residual of two
/// convs(w3); every conv 3x3 (padding 1, no bias) -> field GroupNorm -> activation; then max
/// pooling over the group axis and over space (invariant features `[B, w3]`) and a linear
/// classifier.
#[derive(Debug, Clone)]
pub struct EquivariantResNet9 {
    store: ParamStore,
    cfg: EquivariantResNet9Config,
    units: Vec<ConvNormAct>,
    fc: Linear,
}

impl EquivariantResNet9 {
    /// A freshly initialised model (Kaiming-normal convs with the applied conv's fan-in).
    pub fn new(cfg: EquivariantResNet9Config, seed: u64) -> Result<Self> {
        check_input(cfg.input_shape)?;
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let [w0, w1, w2, w3] = cfg.widths;
        let c = cfg.input_shape[0];
        let plan = [
            ("prep", true, c, w0),
            ("layer1", false, w0, w1),
            ("res1a", false, w1, w1),
            ("res1b", false, w1, w1),
            ("layer2", false, w1, w2),
            ("layer3", false, w2, w3),
            ("res3a", false, w3, w3),
            ("res3b", false, w3, w3),
        ];
        let units = plan
            .iter()
            .map(|&(name, lift, i, o)| ConvNormAct::new(&mut s, name, &cfg, lift, i, o, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        let fc = Linear::new(
            &mut s,
            "fc",
            w3,
            cfg.num_classes,
            true,
            Init::PyTorch,
            &mut rng,
        )?;
        Ok(EquivariantResNet9 {
            store: s,
            cfg,
            units,
            fc,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EquivariantResNet9Config {
        &self.cfg
    }
}

impl Model for EquivariantResNet9 {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let act = self.cfg.activation;
        let u = &self.units;
        let x = u[0].forward(t, x, act)?;
        let x = u[1].forward(t, x, act)?;
        let x = t.max_pool2d(x, max_pool(2, 2))?;
        let r = u[2].forward(t, x, act)?;
        let r = u[3].forward(t, r, act)?;
        let x = t.add(x, r)?;
        let x = u[4].forward(t, x, act)?;
        let x = t.max_pool2d(x, max_pool(2, 2))?;
        let x = u[5].forward(t, x, act)?;
        let x = t.max_pool2d(x, max_pool(2, 2))?;
        let r = u[6].forward(t, x, act)?;
        let r = u[7].forward(t, r, act)?;
        let x = t.add(x, r)?;
        let x = group_pool(t, x, self.cfg.group, GroupPool::Max)?;
        let s = t.value(x).shape().to_vec();
        let x = t.max_pool2d(
            x,
            Pool2dParams {
                kernel: [s[2], s[3]],
                stride: [s[2], s[3]],
                padding: [0, 0],
            },
        )?;
        let x = t.flatten(x)?;
        self.fc.forward(t, x)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.cfg.input_shape
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
}

/// Configuration of an [`EquivariantTramerBoneh`].
#[derive(Debug, Clone, PartialEq)]
pub struct EquivariantTramerBonehConfig {
    /// Symmetry group of the convolutions.
    pub group: Group,
    /// Regular fields of the six 3x3 convs (channels = fields x `|G|`).
    pub fields: [usize; 6],
    /// Width of the hidden linear layer.
    pub hidden: usize,
    /// Output classes.
    pub num_classes: usize,
    /// One example's shape `[C, H, W]` (square, side divisible by 8).
    pub input_shape: [usize; 3],
}

impl EquivariantTramerBonehConfig {
    /// The equivariant Tramer & Boneh CIFAR-10 CNN over `group` with the dense model's channel
    /// counts (32, 32, 64, 64, 128, 128 channels as `32 / |G|, ...` fields): about the same
    /// compute, `|G|` times fewer conv weights.
    pub fn cifar10(group: Group) -> Self {
        let g = group.order();
        EquivariantTramerBonehConfig {
            group,
            fields: [32 / g, 32 / g, 64 / g, 64 / g, 128 / g, 128 / g],
            hidden: 128,
            num_classes: 10,
            input_shape: [3, 32, 32],
        }
    }
}

/// The Tramer & Boneh 2021 CIFAR-10 CNN with group convolutions: six 3x3 convs (padding 1,
/// one bias per field) with tanh and a 2x2 max pool after every second; then max pooling over
/// the group axis and average pooling over space (invariant features `[B, fields[5]]`),
/// Linear(-> hidden) tanh, Linear(-> classes). The dense model flattens its last feature map
/// instead, which is not invariant.
#[derive(Debug, Clone)]
pub struct EquivariantTramerBoneh {
    store: ParamStore,
    cfg: EquivariantTramerBonehConfig,
    convs: Vec<GroupConv2d>,
    fc1: Linear,
    fc2: Linear,
}

impl EquivariantTramerBoneh {
    /// A freshly initialised model (PyTorch's default init with the applied conv's fan-in).
    pub fn new(cfg: EquivariantTramerBonehConfig, seed: u64) -> Result<Self> {
        check_input(cfg.input_shape)?;
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let (g, p, init) = (cfg.group, Conv2dParams::padded(1), Init::PyTorch);
        let mut convs = Vec::with_capacity(6);
        let mut c_in = cfg.input_shape[0];
        for (i, &c_out) in cfg.fields.iter().enumerate() {
            let name = format!("conv{}", i + 1);
            convs.push(if i == 0 {
                GroupConv2d::lifting(&mut s, &name, g, c_in, c_out, 3, p, true, init, &mut rng)?
            } else {
                GroupConv2d::regular(&mut s, &name, g, c_in, c_out, 3, p, true, init, &mut rng)?
            });
            c_in = c_out;
        }
        let fc1 = Linear::new(&mut s, "fc1", c_in, cfg.hidden, true, init, &mut rng)?;
        let fc2 = Linear::new(
            &mut s,
            "fc2",
            cfg.hidden,
            cfg.num_classes,
            true,
            init,
            &mut rng,
        )?;
        Ok(EquivariantTramerBoneh {
            store: s,
            cfg,
            convs,
            fc1,
            fc2,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EquivariantTramerBonehConfig {
        &self.cfg
    }
}

impl Model for EquivariantTramerBoneh {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let mut x = x;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(t, x)?;
            x = t.tanh(x);
            if i % 2 == 1 {
                x = t.max_pool2d(x, max_pool(2, 2))?;
            }
        }
        let x = group_pool(t, x, self.cfg.group, GroupPool::Max)?;
        let x = t.spatial_mean(x)?;
        let x = self.fc1.forward(t, x)?;
        let x = t.tanh(x);
        self.fc2.forward(t, x)
    }
    fn input_shape(&self) -> [usize; 3] {
        self.cfg.input_shape
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
}
