//! Engine equivalence: every engine's per-example norms and clipped sums match the naive
//! reference (one backward per example) to 1e-4 relative in f32, with and without masks, with
//! augmentation multiplicity, per-layer clipping, the normalising clip, weight standardisation,
//! grouped convs and group norm. Masked coordinates are exactly zero in every clipped sum.

use super::common::{TinyGnNet, batch, random_full_mask, random_weight_mask, rel_err};
use sparsedp_nn::layers::{Activation, BlockStyle};
use sparsedp_nn::models::{
    ResNet, ResNetConfig, TramerBonehCifar, TramerBonehMnist, WideResNet, WideResNetConfig,
};
use sparsedp_nn::{
    ClipConfig, ClipFunction, ClipOutput, Engine, Model, NnError, ParamMask, ParamRole, clip_batch,
};
use sparsedp_tensor::Tensor;

const TOL: f64 = 1e-4;

fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s[s.len() / 2]
}

/// Runs every engine and compares it with the naive one.
fn check_all(model: &dyn Model, x: &Tensor, labels: &[usize], mask: &ParamMask, cfg: &ClipConfig) {
    let reference = clip_batch(Engine::Naive, model, x, labels, mask, cfg).unwrap();
    for engine in &Engine::ALL[1..] {
        let out = clip_batch(*engine, model, x, labels, mask, cfg).unwrap();
        compare(*engine, &out, &reference, model, mask);
    }
}

fn compare(
    engine: Engine,
    out: &ClipOutput,
    reference: &ClipOutput,
    model: &dyn Model,
    mask: &ParamMask,
) {
    let n = Tensor::from_slice(&out.norms, &[out.norms.len()]).unwrap();
    let nr = Tensor::from_slice(&reference.norms, &[reference.norms.len()]).unwrap();
    let e = rel_err(&n, &nr);
    assert!(e < TOL, "{}: norms differ by {e:e}", engine.name());
    for (a, b) in out.norms.iter().zip(&reference.norms) {
        assert!(
            ((a - b) / b).abs() < 1e-3,
            "{}: norm {a} vs {b}",
            engine.name()
        );
    }
    let f = rel_err(
        &Tensor::from_slice(&out.factors, &[out.factors.len()]).unwrap(),
        &Tensor::from_slice(&reference.factors, &[reference.factors.len()]).unwrap(),
    );
    assert!(f < TOL, "{}: clip factors differ by {f:e}", engine.name());
    for (id, p) in model.params().iter() {
        let e = rel_err(&out.clipped_sum[id.0], &reference.clipped_sum[id.0]);
        assert!(
            e < TOL,
            "{}: clipped sum of {} differs by {e:e}",
            engine.name(),
            p.name
        );
        if let Some(m) = mask.get(id) {
            for (g, keep) in out.clipped_sum[id.0].to_vec().iter().zip(m.to_vec()) {
                assert!(
                    keep == 1.0 || *g == 0.0,
                    "{}: masked coordinate of {} is {g}",
                    engine.name(),
                    p.name
                );
            }
        }
    }
    for (a, b) in out.losses.iter().zip(&reference.losses) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
}

/// A clipping norm at the median per-example norm: about half the examples are clipped.
fn median_cfg(
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
    mask: &ParamMask,
    views: usize,
) -> ClipConfig {
    let mut cfg = ClipConfig::flat(1e6);
    cfg.views = views;
    cfg.chunk = 3;
    let probe = clip_batch(Engine::Naive, model, x, labels, mask, &cfg).unwrap();
    cfg.max_norm = median(&probe.norms);
    cfg
}

#[test]
fn mnist_cnn_dense_and_masked() {
    let model = TramerBonehMnist::new(1).unwrap();
    let (x, y) = batch(&model, 6, 2);
    for mask in [
        ParamMask::dense(model.params()),
        random_weight_mask(model.params(), 0.3, 3),
        random_full_mask(model.params(), 0.5, 4),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 1);
        let out = clip_batch(Engine::Naive, &model, &x, &y, &mask, &cfg).unwrap();
        assert!(out.clipped_fraction() > 0.0 && out.clipped_fraction() < 1.0);
        check_all(&model, &x, &y, &mask, &cfg);
    }
}

#[test]
fn cifar_cnn_dense_and_masked() {
    let model = TramerBonehCifar::new(7).unwrap();
    let (x, y) = batch(&model, 3, 8);
    for mask in [
        ParamMask::dense(model.params()),
        random_weight_mask(model.params(), 0.1, 9),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 1);
        check_all(&model, &x, &y, &mask, &cfg);
    }
}

#[test]
fn group_norm_weight_standardisation_grouped_conv_and_residual() {
    let model = TinyGnNet::new(11);
    let (x, y) = batch(&model, 5, 12);
    for mask in [
        ParamMask::dense(model.params()),
        random_full_mask(model.params(), 0.4, 13),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 1);
        check_all(&model, &x, &y, &mask, &cfg);
    }
}

#[test]
fn augmentation_multiplicity_averages_views_before_clipping() {
    let model = TinyGnNet::new(21);
    let (x, y) = batch(&model, 8, 22); // 4 examples x 2 views
    let y: Vec<usize> = y.chunks(2).flat_map(|c| [c[0], c[0]]).collect();
    for mask in [
        ParamMask::dense(model.params()),
        random_weight_mask(model.params(), 0.5, 23),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 2);
        check_all(&model, &x, &y, &mask, &cfg);
    }
    // The same through the MNIST CNN (linear layers with several views go through ghost).
    let mnist = TramerBonehMnist::new(24).unwrap();
    let (x, y) = batch(&mnist, 6, 25);
    let y: Vec<usize> = y.chunks(3).flat_map(|c| [c[0]; 3]).collect();
    let mask = ParamMask::dense(mnist.params());
    let cfg = median_cfg(&mnist, &x, &y, &mask, 3);
    check_all(&mnist, &x, &y, &mask, &cfg);
}

#[test]
fn per_layer_clipping_and_normalising_clip() {
    let model = TramerBonehMnist::new(31).unwrap();
    let (x, y) = batch(&model, 5, 32);
    let mask = random_weight_mask(model.params(), 0.5, 33);
    let mut cfg = median_cfg(&model, &x, &y, &mask, 1);
    let layers = 4;
    cfg.per_layer = Some(vec![cfg.max_norm / (layers as f32).sqrt(); layers]);
    check_all(&model, &x, &y, &mask, &cfg);
    let mut cfg = median_cfg(&model, &x, &y, &mask, 1);
    cfg.function = ClipFunction::Normalize { gamma: 0.01 };
    check_all(&model, &x, &y, &mask, &cfg);
}

#[test]
fn clipped_gradients_respect_the_bound() {
    // Each example's clipped contribution has norm <= C: check through single-example batches.
    let model = TramerBonehMnist::new(41).unwrap();
    let (x, y) = batch(&model, 4, 42);
    let mask = random_weight_mask(model.params(), 0.5, 43);
    let cfg = ClipConfig::flat(0.05);
    for i in 0..4 {
        let xi = x.narrow(0, i, 1).unwrap();
        let out = clip_batch(Engine::BookKeeping, &model, &xi, &y[i..i + 1], &mask, &cfg).unwrap();
        let sq: f32 = out
            .clipped_sum
            .iter()
            .map(|t| t.to_vec().iter().map(|v| v * v).sum::<f32>())
            .sum();
        assert!(sq.sqrt() <= 0.05 * (1.0 + 1e-5), "norm {} > C", sq.sqrt());
    }
}

#[test]
fn bad_input_is_an_error() {
    let model = TramerBonehMnist::new(51).unwrap();
    let (x, y) = batch(&model, 2, 52);
    let mask = ParamMask::dense(model.params());
    let cfg = ClipConfig::flat(1.0);
    let e = clip_batch(Engine::Mixed, &model, &x, &y[..1], &mask, &cfg).unwrap_err();
    assert!(matches!(e, NnError::InvalidBatch(_)), "{e}");
    let e = clip_batch(Engine::Mixed, &model, &x, &[0, 10], &mask, &cfg).unwrap_err();
    assert!(e.to_string().contains("label 10"), "{e}");
    let e = clip_batch(
        Engine::Mixed,
        &model,
        &x,
        &y,
        &mask,
        &ClipConfig::flat(-1.0),
    )
    .unwrap_err();
    assert!(matches!(e, NnError::InvalidConfig(_)));
    let mut bad = ClipConfig::flat(1.0);
    bad.per_layer = Some(vec![1.0; 4]); // sum of squares 4 != 1
    assert!(clip_batch(Engine::Mixed, &model, &x, &y, &mask, &bad).is_err());
    let wrong = Tensor::zeros(&[2, 3, 28, 28]);
    assert!(clip_batch(Engine::Naive, &model, &wrong, &y, &mask, &cfg).is_err());
    let nan = Tensor::full(&[2, 1, 28, 28], f32::NAN);
    let e = clip_batch(Engine::BookKeeping, &model, &nan, &y, &mask, &cfg).unwrap_err();
    assert!(matches!(e, NnError::NonFinite(_)), "{e}");
}

/// Non-trivial GroupNorm affine parameters, so their gradients are generic.
fn randomise_norms(model: &mut dyn Model, seed: u64) {
    let mut rng = sparsedp_tensor::TensorRng::seeded(seed);
    for (_, p) in model.params_mut().iter_mut() {
        if matches!(p.role, ParamRole::NormScale | ParamRole::NormShift) {
            p.value = Tensor::rand_uniform(p.value.shape(), 0.5, 1.5, &mut rng).unwrap();
        }
    }
}

/// A narrowed De et al. WRN (WRN-10-1: one block per stage, widths 16, 32, 64, scaled weight
/// standardisation, GroupNorm(16), projection shortcuts) on 8x8 inputs, dense and masked.
#[test]
fn narrow_wide_resnet_dense_and_masked() {
    let mut cfg = WideResNetConfig::new(10, 1);
    cfg.input_shape = [3, 8, 8];
    let mut model = WideResNet::new(cfg, 61).unwrap();
    randomise_norms(&mut model, 62);
    let (x, y) = batch(&model, 4, 63);
    for mask in [
        ParamMask::dense(model.params()),
        random_weight_mask(model.params(), 0.1, 64),
        random_full_mask(model.params(), 0.5, 65),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 1);
        check_all(&model, &x, &y, &mask, &cfg);
    }
}

/// The He et al. block order with Mish and two views per example, and a post-activation
/// ResNet with plain convs (ghost-eligible) and identity shortcuts.
#[test]
fn resnet_variants_dense_masked_and_with_views() {
    let mut cfg = WideResNetConfig::new(10, 1);
    cfg.input_shape = [3, 6, 6];
    cfg.style = BlockStyle::PreActNormAct;
    cfg.activation = Activation::Mish;
    cfg.norm_groups = 8;
    let model = WideResNet::new(cfg, 71).unwrap();
    let (x, y) = batch(&model, 6, 72);
    let y: Vec<usize> = y.chunks(2).flat_map(|c| [c[0], c[0]]).collect();
    let mask = random_weight_mask(model.params(), 0.3, 73);
    let cfg = median_cfg(&model, &x, &y, &mask, 2);
    check_all(&model, &x, &y, &mask, &cfg);

    let rcfg = ResNetConfig {
        blocks: vec![2, 1],
        widths: vec![8, 16],
        num_classes: 4,
        input_shape: [3, 8, 8],
        norm_groups: 4,
        activation: Activation::Relu,
        transform: None,
    };
    let mut model = ResNet::new(rcfg, 74).unwrap();
    randomise_norms(&mut model, 75);
    let (x, y) = batch(&model, 4, 76);
    for mask in [
        ParamMask::dense(model.params()),
        random_weight_mask(model.params(), 0.1, 77),
    ] {
        let cfg = median_cfg(&model, &x, &y, &mask, 1);
        check_all(&model, &x, &y, &mask, &cfg);
    }
}
