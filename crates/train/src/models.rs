//! The model registry: names accepted by `model.name` and `sparsedp info --model`.

use anyhow::{Result, bail};
use sparsedp_nn::Model;
use sparsedp_nn::equivariant::Group;
use sparsedp_nn::models::{
    EquivariantResNet9, EquivariantResNet9Config, EquivariantTramerBoneh,
    EquivariantTramerBonehConfig, ResNet, TramerBonehCifar, TramerBonehMnist, WideResNet,
};

/// `(name, description)` of every model.
pub const MODELS: &[(&str, &str)] = &[
    (
        "tb-mnist",
        "Tramer & Boneh 2021 CNN for 1x28x28 inputs (MNIST, Fashion-MNIST), tanh, 26,010 parameters",
    ),
    (
        "tb-cifar10",
        "Tramer & Boneh 2021 CNN for 3x32x32 inputs (CIFAR-10), tanh, 550,570 parameters",
    ),
    (
        "tb-cifar10-p4",
        "tb-cifar10 with p4 convs (8-32 fields of 4), invariant head, 77,266 parameters",
    ),
    (
        "tb-cifar10-p4m",
        "tb-cifar10 with p4m convs (4-16 fields of 8), invariant head, 39,342 parameters",
    ),
    (
        "resnet9",
        "ResNet-9 for CIFAR-10 (widths 64-512), GroupNorm(8), Mish, 6,573,130 parameters",
    ),
    (
        "resnet9-p4",
        "resnet9 with p4 group convs (16-128 fields of 4), invariant head, 1,643,290 parameters",
    ),
    (
        "resnet9-p4m",
        "resnet9 with p4m group convs (8-64 fields of 8), invariant head, 821,650 parameters",
    ),
    (
        "wrn-16-4",
        "WideResNet-16-4 with GroupNorm(16) and weight standardisation (De et al. 2022), 3x32x32, 2,751,562 parameters",
    ),
    ("resnet18", "ResNet-18 with GroupNorm for 3x32x32 inputs"),
];

/// Errors unless `name` is a known model.
pub fn check_name(name: &str) -> Result<()> {
    if MODELS.iter().any(|(n, _)| *n == name) {
        Ok(())
    } else {
        let names: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
        bail!("unknown model '{name}': choose one of {}", names.join(", "))
    }
}

/// A freshly initialised model.
pub fn build(name: &str, seed: u64) -> Result<Box<dyn Model>> {
    check_name(name)?;
    Ok(match name {
        "tb-mnist" => Box::new(TramerBonehMnist::new(seed)?),
        "wrn-16-4" => Box::new(WideResNet::wrn16_4(seed)?),
        "resnet18" => Box::new(ResNet::resnet18(seed)?),
        "tb-cifar10" => Box::new(TramerBonehCifar::new(seed)?),
        "tb-cifar10-p4" => Box::new(EquivariantTramerBoneh::new(
            EquivariantTramerBonehConfig::cifar10(Group::C4),
            seed,
        )?),
        "tb-cifar10-p4m" => Box::new(EquivariantTramerBoneh::new(
            EquivariantTramerBonehConfig::cifar10(Group::D4),
            seed,
        )?),
        "resnet9" => Box::new(EquivariantResNet9::new(
            EquivariantResNet9Config::dense(),
            seed,
        )?),
        "resnet9-p4" => Box::new(EquivariantResNet9::new(
            EquivariantResNet9Config::equivariant(Group::C4),
            seed,
        )?),
        "resnet9-p4m" => Box::new(EquivariantResNet9::new(
            EquivariantResNet9Config::equivariant(Group::D4),
            seed,
        )?),
        _ => unreachable!("checked above"),
    })
}

/// Multiply-accumulate operations of one forward pass of one example, counted from the
/// recorded layers (convolutions and linear layers; activations, pooling and norms excluded).
pub fn forward_macs(model: &dyn Model) -> Result<u64> {
    use sparsedp_nn::{LayerKind, Tape};
    let [c, h, w] = model.input_shape();
    let mut tape = Tape::new(model.params());
    let x = tape.input(sparsedp_tensor::Tensor::zeros(&[1, c, h, w]));
    model.forward(&mut tape, x)?;
    let mut macs = 0u64;
    for rec in tape.layers() {
        // The applied weight: for an expanded (group-equivariant) conv, the expansion's numel,
        // not the smaller stored base weight's.
        let w = model.params().value(rec.weight);
        let wn = match &rec.transform {
            Some(t) => t.applied_shape(w.shape()).iter().product::<usize>() as u64,
            None => w.numel() as u64,
        };
        macs += match &rec.kind {
            LayerKind::Linear => wn,
            LayerKind::Conv2d { params, kernel } => {
                let s = rec.input.shape();
                let out_h =
                    (s[2] + 2 * params.padding[0] - params.dilation[0] * (kernel[0] - 1) - 1)
                        / params.stride[0]
                        + 1;
                let out_w =
                    (s[3] + 2 * params.padding[1] - params.dilation[1] * (kernel[1] - 1) - 1)
                        / params.stride[1]
                        + 1;
                wn * (out_h * out_w) as u64
            }
            LayerKind::GroupNormAffine { .. } => 0,
        };
    }
    Ok(macs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multiply-accumulates of the linear layers only.
    fn linear_macs(model: &dyn Model) -> u64 {
        model
            .params()
            .iter()
            .filter(|(_, p)| p.name.starts_with("fc") && p.name.ends_with(".weight"))
            .map(|(_, p)| p.value.numel() as u64)
            .sum()
    }

    /// Equivariant models keep the dense models' channels, so their convolutions cost exactly
    /// as much: the count uses the applied (expanded) weight, not the smaller stored one.
    #[test]
    fn equivariant_convs_count_the_expanded_weight() {
        for (dense, equivariant) in [
            ("tb-cifar10", ["tb-cifar10-p4", "tb-cifar10-p4m"]),
            ("resnet9", ["resnet9-p4", "resnet9-p4m"]),
        ] {
            let d = build(dense, 0).unwrap();
            let conv = forward_macs(d.as_ref()).unwrap() - linear_macs(d.as_ref());
            for name in equivariant {
                let m = build(name, 0).unwrap();
                let c = forward_macs(m.as_ref()).unwrap() - linear_macs(m.as_ref());
                assert_eq!(c, conv, "{name}");
                assert!(m.params().num_scalars() * 4 <= d.params().num_scalars() + 4096);
            }
        }
    }
}
