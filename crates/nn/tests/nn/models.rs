//! Parameter counts of the paper's models, and their output shapes.

use sparsedp_nn::layers::{Activation, BlockStyle};
use sparsedp_nn::models::{
    ResNet, TramerBonehCifar, TramerBonehMnist, WideResNet, WideResNetConfig,
};
use sparsedp_nn::{Model, ParamRole, Tape};
use sparsedp_tensor::Tensor;

fn logits_shape(model: &dyn Model, batch: usize) -> Vec<usize> {
    let [c, h, w] = model.input_shape();
    let mut tape = Tape::new(model.params());
    let x = tape.input(Tensor::zeros(&[batch, c, h, w]));
    let y = model.forward(&mut tape, x).unwrap();
    tape.value(y).shape().to_vec()
}

#[test]
fn tramer_boneh_mnist_has_26010_parameters() {
    let m = TramerBonehMnist::new(0).unwrap();
    assert_eq!(m.params().num_scalars(), 26_010);
    assert_eq!(logits_shape(&m, 3), vec![3, 10]);
}

#[test]
fn tramer_boneh_cifar_has_550570_parameters() {
    let m = TramerBonehCifar::new(0).unwrap();
    assert_eq!(m.params().num_scalars(), 550_570);
    assert_eq!(logits_shape(&m, 2), vec![2, 10]);
}

#[test]
fn initialisation_is_seeded() {
    let a = TramerBonehMnist::new(5).unwrap();
    let b = TramerBonehMnist::new(5).unwrap();
    let c = TramerBonehMnist::new(6).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
}

/// WRN-16-4 as built by De et al. / jax_privacy: every conv has a bias; GroupNorm has a
/// gamma and a beta per channel; the first block of each stage has a 1x1 projection with its
/// own GroupNorm. Derived by hand, per layer `weights + bias` and `2 * channels` per norm:
///
/// - stem 3x3, 3 -> 16: 3*16*9 + 16 = 448
/// - stage 1 (16 -> 64, stride 1)
///   - block 0: shortcut norm 2*16 = 32; shortcut 1x1 16*64 + 64 = 1_088; norm1 2*16 = 32;
///     conv1 16*64*9 + 64 = 9_280; norm2 2*64 = 128; conv2 64*64*9 + 64 = 36_928 -> 47_488
///   - block 1: norm1 128; conv1 36_928; norm2 128; conv2 36_928 -> 74_112
///   - stage total 121_600
/// - stage 2 (64 -> 128, stride 2)
///   - block 0: 128 + (64*128 + 128 = 8_320) + 128 + (64*128*9 + 128 = 73_856) + 256
///     + (128*128*9 + 128 = 147_584) -> 230_272
///   - block 1: 256 + 147_584 + 256 + 147_584 -> 295_680
///   - stage total 525_952
/// - stage 3 (128 -> 256, stride 2)
///   - block 0: 256 + (128*256 + 256 = 33_024) + 256 + (128*256*9 + 256 = 295_168) + 512
///     + (256*256*9 + 256 = 590_080) -> 919_296
///   - block 1: 512 + 590_080 + 512 + 590_080 -> 1_181_184
///   - stage total 2_100_480
/// - final norm 2*256 = 512; classifier 256*10 + 10 = 2_570
///
/// Total 448 + 121_600 + 525_952 + 2_100_480 + 512 + 2_570 = 2_751_562 (about 2.75M, the
/// figure usually quoted for WRN-16-4; conv weights alone are 2_745_274 - 2_570 = 2_742_704).
#[test]
fn wrn16_4_has_2751562_parameters() {
    let m = WideResNet::wrn16_4(0).unwrap();
    assert_eq!(m.params().num_scalars(), 2_751_562);
    let conv_weights: usize = m
        .params()
        .iter()
        .filter(|(_, p)| p.role == ParamRole::Weight && p.value.rank() == 4)
        .map(|(_, p)| p.value.numel())
        .sum();
    assert_eq!(conv_weights, 2_742_704);
    assert_eq!(logits_shape(&m, 2), vec![2, 10]);
}

/// ResNet-18 for CIFAR (3x3 stem, no max-pool) has 11_173_962 parameters with BatchNorm
/// (the number torchvision-style CIFAR ports report); GroupNorm has the same per-channel affine
/// parameters, convs have no bias:
/// stem 3*64*9 + norm 128 = 1_856; stage 1: 2 * (2 * 36_864 + 2 * 128) = 147_968;
/// stage 2: (73_728 + 256 + 147_456 + 256 + 8_192 + 256) + (2 * 147_456 + 2 * 256) = 525_568;
/// stage 3: (294_912 + 512 + 589_824 + 512 + 32_768 + 512) + (2 * 589_824 + 2 * 512)
/// = 2_099_712; stage 4: (1_179_648 + 1_024 + 2_359_296 + 1_024 + 131_072 + 1_024)
/// + (2 * 2_359_296 + 2 * 1_024) = 8_393_728; classifier 512*10 + 10 = 5_130.
#[test]
fn resnet18_group_norm_has_11173962_parameters() {
    let m = ResNet::resnet18(0).unwrap();
    assert_eq!(m.params().num_scalars(), 11_173_962);
}

#[test]
fn narrow_wide_resnets_run_and_validate_their_config() {
    let mut cfg = WideResNetConfig::new(10, 1);
    cfg.input_shape = [3, 8, 8];
    let m = WideResNet::new(cfg.clone(), 1).unwrap();
    assert_eq!(m.blocks().len(), 3);
    assert_eq!(logits_shape(&m, 3), vec![3, 10]);
    for bad in [
        WideResNetConfig {
            depth: 12,
            ..cfg.clone()
        },
        WideResNetConfig {
            width: 0,
            ..cfg.clone()
        },
        WideResNetConfig {
            norm_groups: 5,
            ..cfg.clone()
        },
    ] {
        assert!(matches!(
            WideResNet::new(bad, 0),
            Err(sparsedp_nn::NnError::InvalidConfig(_))
        ));
    }
    // The He et al. order and a post-activation ResNet build and run too.
    let he = WideResNetConfig {
        style: BlockStyle::PreActNormAct,
        activation: Activation::Mish,
        ..cfg
    };
    assert_eq!(
        logits_shape(&WideResNet::new(he, 2).unwrap(), 2),
        vec![2, 10]
    );
}

#[test]
fn dropout_is_identity_unless_training_and_scales_kept_units() {
    use sparsedp_nn::layers::Dropout;
    let store = sparsedp_nn::ParamStore::new();
    let x = Tensor::ones(&[4, 1000]);
    let d = Dropout::new(0.25, 3).unwrap();
    let mut tape = Tape::new(&store);
    let v = tape.input(x.clone());
    assert_eq!(d.forward(&mut tape, v).unwrap(), v); // evaluation mode: no op recorded
    let d = d.training(true);
    let y = d.forward(&mut tape, v).unwrap();
    let vals = tape.value(y).to_vec();
    let kept = vals.iter().filter(|&&v| v != 0.0).count() as f64 / vals.len() as f64;
    assert!((kept - 0.75).abs() < 0.03, "kept fraction {kept}");
    assert!(
        vals.iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
    );
    // Seeded: a clone draws the same next mask; the original's next mask differs.
    let y2 = d.clone().forward(&mut tape, v).unwrap();
    let y3 = d.forward(&mut tape, v).unwrap();
    assert_eq!(tape.value(y2), tape.value(y3));
    assert_ne!(tape.value(y), tape.value(y3));
    assert!(Dropout::new(1.0, 0).is_err());
}

#[test]
fn linearized_tapes_bypass_weight_standardisation() {
    use sparsedp_nn::layers::{Conv2d, Init};
    use sparsedp_nn::{ParamStore, WeightTransform};
    use sparsedp_tensor::{Conv2dParams, TensorRng};
    let mut rng = TensorRng::seeded(3);
    let mut store = ParamStore::new();
    let conv = Conv2d::new(
        &mut store,
        "c",
        2,
        3,
        3,
        Conv2dParams::padded(1),
        false,
        Init::PyTorch,
        &mut rng,
    )
    .unwrap();
    let x = Tensor::randn(&[1, 2, 5, 5], 0.0, 1.0, &mut rng).unwrap();
    let run = |tape: &mut Tape<'_>, t: Option<WeightTransform>| {
        let v = tape.input(x.clone());
        let y = tape
            .conv2d(v, conv.weight, None, Conv2dParams::padded(1), t)
            .unwrap();
        tape.value(y).to_vec()
    };
    let ws = Some(WeightTransform::Standardize { eps: 1e-5 });
    let plain = run(&mut Tape::new(&store), None);
    let standardised = run(&mut Tape::new(&store), ws.clone());
    let linearized = run(&mut Tape::linearized(&store), ws);
    assert_ne!(plain, standardised);
    assert_eq!(
        plain, linearized,
        "a linearised tape applies the stored weight"
    );
}
