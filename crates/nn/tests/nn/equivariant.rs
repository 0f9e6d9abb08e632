//! Group-equivariant CNNs: group tables, the expansion's gather/scatter-add adjointness,
//! equivariance of every layer (lifting and group convs, per-field bias, field GroupNorm,
//! spatial and group pooling) and invariance of the models under every element of C4 and D4,
//! gradients through the expansion, and engine equivalence with and without masks on the base
//! parameters.
//!
//! Exactness condition: square maps; odd kernels with "same" padding and stride 1 (any side),
//! or stride `s` with `(n - 1) % s == 0`; 2x2 max pools of stride 2 on even sides. Then the
//! group permutes pixels and field copies exactly and only the order of float sums differs,
//! so outputs agree to 1e-5 relative.

use super::common::{batch, random_full_mask, random_weight_mask, rel_err};
use sparsedp_nn::engine::NormMethod;
use sparsedp_nn::equivariant::{
    ExpansionMap, FieldGroupNorm, Group, GroupConv2d, GroupPool, group_pool,
};
use sparsedp_nn::layers::{Init, max_pool};
use sparsedp_nn::models::{
    EquivariantResNet9, EquivariantResNet9Config, EquivariantTramerBoneh,
    EquivariantTramerBonehConfig,
};
use sparsedp_nn::{
    BackwardMode, ClipConfig, Engine, Model, ParamMask, ParamRole, ParamStore, Tape, Var,
    clip_batch,
};
use sparsedp_tensor::{Conv2dParams, Tensor, TensorRng};

const EQ_TOL: f64 = 1e-5;
const GROUPS: [Group; 2] = [Group::C4, Group::D4];

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut TensorRng::seeded(seed)).unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| f64::from(*x) * f64::from(y))
        .sum()
}

/// Runs `f` on a fresh tape over `store` with input `x` and returns the output value.
fn run(store: &ParamStore, x: &Tensor, f: &dyn Fn(&mut Tape<'_>, Var) -> Var) -> Tensor {
    let mut t = Tape::new(store);
    let v = t.input(x.clone());
    let y = f(&mut t, v);
    t.value(y).clone()
}

/// Non-trivial GroupNorm affine parameters and biases, so that sharing them per field matters.
fn randomise_affine(store: &mut ParamStore, seed: u64) {
    let mut rng = TensorRng::seeded(seed);
    for (_, p) in store.iter_mut() {
        if matches!(
            p.role,
            ParamRole::NormScale | ParamRole::NormShift | ParamRole::Bias
        ) {
            p.value = Tensor::rand_uniform(p.value.shape(), 0.5, 1.5, &mut rng).unwrap();
        }
    }
}

#[test]
fn group_tables_and_actions_compose() {
    for group in [Group::Trivial, Group::C4, Group::D4] {
        let n = group.order();
        let mats: Vec<_> = (0..n).map(|g| group.matrix(g)).collect();
        for (i, a) in mats.iter().enumerate() {
            assert!(
                mats[i + 1..].iter().all(|b| b != a),
                "{group:?}: repeated element"
            );
        }
        for g in 0..n {
            assert_eq!(group.compose(g, 0), g);
            assert_eq!(group.compose(g, group.inverse(g)), 0);
            for h in 0..n {
                for k in 0..n {
                    assert_eq!(
                        group.compose(group.compose(g, h), k),
                        group.compose(g, group.compose(h, k))
                    );
                }
            }
        }
        // Actions: g . (h . x) = (g h) . x on images (odd and even sides) and on fields.
        for side in [4, 5] {
            let img = randn(&[2, 3, side, side], side as u64);
            let fields = randn(&[2, 2 * n, side, side], 10 + side as u64);
            for g in 0..n {
                let mut map = group.spatial_map(g, side);
                map.sort_unstable();
                assert_eq!(
                    map,
                    (0..side * side).collect::<Vec<_>>(),
                    "not a permutation"
                );
                for h in 0..n {
                    let gh = group.compose(g, h);
                    let two = group
                        .transform_image(g, &group.transform_image(h, &img).unwrap())
                        .unwrap();
                    assert_eq!(
                        two.to_vec(),
                        group.transform_image(gh, &img).unwrap().to_vec()
                    );
                    let two = group
                        .transform_fields(g, &group.transform_fields(h, &fields).unwrap())
                        .unwrap();
                    assert_eq!(
                        two.to_vec(),
                        group.transform_fields(gh, &fields).unwrap().to_vec()
                    );
                }
            }
        }
    }
    // A quarter turn of a 2x2 image moves every pixel; D4 has a reflection that C4 lacks.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let r = Group::C4.transform_image(1, &x).unwrap().to_vec();
    assert!(r.iter().zip(x.to_vec()).all(|(a, b)| *a != b), "{r:?}");
    assert_eq!(
        Group::D4.transform_image(4, &x).unwrap().to_vec(),
        vec![2.0, 1.0, 4.0, 3.0]
    );
}

#[test]
fn expansion_gathers_and_its_vjp_is_the_adjoint_scatter_add() {
    for group in GROUPS {
        let g = group.order();
        for (map, copies) in [
            (ExpansionMap::lifting(group, 3, 2, 3).unwrap(), g),
            (ExpansionMap::regular(group, 2, 3, 3).unwrap(), g),
        ] {
            // Every base entry is used by `copies` applied entries.
            let base: usize = map.base_shape().iter().product();
            let mut count = vec![0usize; base];
            for &i in map.sources() {
                count[i as usize] += 1;
            }
            assert!(count.iter().all(|&c| c == copies), "{group:?}: {count:?}");
            let w = randn(map.base_shape(), 1);
            let big = map.apply(&w).unwrap();
            assert_eq!(big.shape(), map.shape());
            let wv = w.to_vec();
            for (e, &i) in big.to_vec().iter().zip(map.sources()) {
                assert_eq!(*e, wv[i as usize]);
            }
            // <J w, G> = <w, J^T G>, and per-example VJPs equal one VJP per example.
            let mut lead = vec![3];
            lead.extend_from_slice(map.shape());
            let gs = randn(&lead, 2);
            let folded = map.vjp(&gs).unwrap();
            let mut want = vec![3];
            want.extend_from_slice(map.base_shape());
            assert_eq!(folded.shape(), want.as_slice());
            for i in 0..3 {
                let gi = gs
                    .narrow(0, i, 1)
                    .unwrap()
                    .into_reshape(map.shape())
                    .unwrap();
                let fi = map.vjp(&gi).unwrap();
                let lhs = dot(&big, &gi);
                let rhs = dot(&w, &fi);
                assert!(
                    (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(1.0),
                    "{lhs} vs {rhs}"
                );
                let row = folded
                    .narrow(0, i, 1)
                    .unwrap()
                    .into_reshape(map.base_shape());
                assert!(rel_err(&row.unwrap(), &fi) < 1e-7);
            }
            assert!(
                map.vjp(&w).is_err(),
                "a base-shaped gradient must be refused"
            );
        }
    }
}

/// `f(g . x)` against `g . f(x)` for every element (`fields_in`/`fields_out`: whether input and
/// output are regular fields or scalar maps).
fn check_equivariant(
    what: &str,
    group: Group,
    store: &ParamStore,
    x: &Tensor,
    fields_in: bool,
    fields_out: bool,
    f: &dyn Fn(&mut Tape<'_>, Var) -> Var,
) {
    let act = |g: usize, t: &Tensor, fields: bool| {
        if fields {
            group.transform_fields(g, t).unwrap()
        } else {
            group.transform_image(g, t).unwrap()
        }
    };
    let y = run(store, x, f);
    for g in 1..group.order() {
        let lhs = run(store, &act(g, x, fields_in), f);
        let rhs = act(g, &y, fields_out);
        let e = rel_err(&lhs, &rhs);
        assert!(e < EQ_TOL, "{what} {group:?} element {g}: {e:e}");
        // The action is not trivial on this input (the test could fail).
        assert!(
            rel_err(&rhs, &y) > 1e-3,
            "{what} {group:?} element {g} acts trivially"
        );
    }
}

#[test]
fn lifting_and_group_convs_with_field_bias_are_equivariant() {
    let mut rng = TensorRng::seeded(3);
    for group in GROUPS {
        let g = group.order();
        // (side, kernel, stride): odd and even sides; stride 2 on a side with (n - 1) % 2 == 0.
        for (side, k, stride) in [(7, 3, 1), (6, 3, 1), (7, 5, 1), (9, 3, 2), (5, 1, 1)] {
            let p = Conv2dParams {
                stride: [stride, stride],
                padding: [k / 2, k / 2],
                ..Default::default()
            };
            let mut s = ParamStore::new();
            let lift = GroupConv2d::lifting(
                &mut s,
                "lift",
                group,
                3,
                2,
                k,
                p,
                true,
                Init::PyTorch,
                &mut rng,
            )
            .unwrap();
            let conv = GroupConv2d::regular(
                &mut s,
                "conv",
                group,
                2,
                3,
                k,
                p,
                true,
                Init::PyTorch,
                &mut rng,
            )
            .unwrap();
            randomise_affine(&mut s, 4);
            assert_eq!(s.value(conv.bias.unwrap()).shape(), &[3]);
            assert_eq!(s.value(conv.weight).shape(), &[3, 2, g, k, k]);
            let x = randn(&[2, 3, side, side], 5);
            let what = format!("lifting conv side {side} k {k} stride {stride}");
            check_equivariant(&what, group, &s, &x, false, true, &|t, v| {
                lift.forward(t, v).unwrap()
            });
            let xf = randn(&[2, 2 * g, side, side], 6);
            let what = format!("group conv side {side} k {k} stride {stride}");
            check_equivariant(&what, group, &s, &xf, true, true, &|t, v| {
                conv.forward(t, v).unwrap()
            });
        }
    }
}

#[test]
fn field_norm_activations_and_pools_are_equivariant() {
    for group in GROUPS {
        let g = group.order();
        let mut s = ParamStore::new();
        let norm = FieldGroupNorm::new(&mut s, "norm", group, 4, 2).unwrap();
        randomise_affine(&mut s, 7);
        let x = randn(&[2, 4 * g, 6, 6], 8);
        check_equivariant(
            "field group norm + mish",
            group,
            &s,
            &x,
            true,
            true,
            &|t, v| {
                let y = norm.forward(t, v).unwrap();
                t.unary(y, sparsedp_tensor::UnaryOp::Mish)
            },
        );
        check_equivariant("2x2 max pool", group, &s, &x, true, true, &|t, v| {
            t.max_pool2d(v, max_pool(2, 2)).unwrap()
        });
        for how in [GroupPool::Max, GroupPool::Mean] {
            check_equivariant(
                &format!("{how:?} group pool"),
                group,
                &s,
                &x,
                true,
                false,
                &|t, v| group_pool(t, v, group, how).unwrap(),
            );
        }
        // Invariant features: group pooling then global pooling.
        let y = run(&s, &x, &|t, v| {
            let p = group_pool(t, v, group, GroupPool::Max).unwrap();
            t.spatial_mean(p).unwrap()
        });
        assert_eq!(y.shape(), &[2, 4]);
        for e in 1..g {
            let xe = group.transform_fields(e, &x).unwrap();
            let ye = run(&s, &xe, &|t, v| {
                let p = group_pool(t, v, group, GroupPool::Max).unwrap();
                t.spatial_mean(p).unwrap()
            });
            assert!(rel_err(&ye, &y) < EQ_TOL);
        }
    }
    // A per-channel (not per-field) affine breaks equivariance: the check is discriminating.
    let group = Group::C4;
    let mut s = ParamStore::new();
    let norm = sparsedp_nn::layers::GroupNorm::new(&mut s, "norm", 8, 2).unwrap();
    randomise_affine(&mut s, 9);
    let x = randn(&[1, 8, 5, 5], 10);
    let f = |t: &mut Tape<'_>, v: Var| norm.forward(t, v).unwrap();
    let y = run(&s, &x, &f);
    let lhs = run(&s, &group.transform_fields(1, &x).unwrap(), &f);
    let rhs = group.transform_fields(1, &y).unwrap();
    assert!(
        rel_err(&lhs, &rhs) > 1e-3,
        "per-channel affine should not be equivariant"
    );
}

fn small_resnet9(group: Group, seed: u64) -> EquivariantResNet9 {
    let mut cfg = EquivariantResNet9Config::equivariant(group);
    cfg.widths = [2, 2, 3, 4];
    cfg.norm_groups = 1;
    cfg.input_shape = [3, 16, 16];
    let mut m = EquivariantResNet9::new(cfg, seed).unwrap();
    randomise_affine(m.params_mut(), seed + 1);
    m
}

fn small_tb(group: Group, seed: u64) -> EquivariantTramerBoneh {
    let mut cfg = EquivariantTramerBonehConfig::cifar10(group);
    cfg.fields = [2, 2, 2, 3, 3, 4];
    cfg.hidden = 8;
    cfg.input_shape = [3, 16, 16];
    EquivariantTramerBoneh::new(cfg, seed).unwrap()
}

fn logits(model: &dyn Model, x: &Tensor) -> Tensor {
    run(model.params(), x, &|t, v| model.forward(t, v).unwrap())
}

#[test]
fn models_are_invariant_and_the_dense_baseline_is_not() {
    for group in GROUPS {
        let models: [Box<dyn Model>; 2] = [
            Box::new(small_resnet9(group, 11)),
            Box::new(small_tb(group, 12)),
        ];
        for (name, m) in ["resnet9", "tramer-boneh"].iter().zip(&models) {
            let x = randn(&[2, 3, 16, 16], 13);
            let y = logits(m.as_ref(), &x);
            for g in 1..group.order() {
                let yg = logits(m.as_ref(), &group.transform_image(g, &x).unwrap());
                let e = rel_err(&yg, &y);
                assert!(
                    e < EQ_TOL,
                    "{name} {group:?} element {g}: logits differ by {e:e}"
                );
            }
        }
    }
    // The same layouts over the trivial group (the dense baselines) change their logits.
    let dense: [Box<dyn Model>; 2] = [
        Box::new(small_resnet9(Group::Trivial, 14)),
        Box::new(small_tb(Group::Trivial, 15)),
    ];
    for m in &dense {
        let x = randn(&[2, 3, 16, 16], 16);
        let y = logits(m.as_ref(), &x);
        let yr = logits(m.as_ref(), &Group::D4.transform_image(1, &x).unwrap());
        assert!(rel_err(&yr, &y) > 1e-3);
    }
    // Side not divisible by 8: refused.
    let mut cfg = EquivariantTramerBonehConfig::cifar10(Group::D4);
    cfg.input_shape = [3, 12, 12];
    assert!(EquivariantTramerBoneh::new(cfg, 1).is_err());
}

/// The tape's gradient of the base parameters (through the expansion and the per-field bias)
/// against central differences of the loss along the gradient (f32 loss: absolute floor 1e-4).
#[test]
fn base_parameter_gradients_match_finite_differences() {
    let model = small_tb(Group::D4, 17);
    let (x, y) = batch(&model, 2, 18);
    let loss = |store: &ParamStore| -> (f64, Vec<Option<Tensor>>) {
        let mut t = Tape::new(store);
        let v = t.input(x.clone());
        let out = model.forward(&mut t, v).unwrap();
        let l = t.cross_entropy(out, &y).unwrap();
        let total = t.value(l).to_vec().iter().map(|&v| f64::from(v)).sum();
        let grads = t
            .backward(l, Tensor::ones(&[2]), BackwardMode::Full)
            .unwrap();
        (total, grads.0)
    };
    let (_, grads) = loss(model.params());
    for (id, p) in model.params().iter() {
        let g = grads[id.0].as_ref().expect("every parameter takes part");
        // Along the gradient (the largest change, well above f32 rounding of the loss).
        let dir = g.scale((1.0 / dot(g, g).sqrt()) as f32);
        assert_eq!(g.shape(), p.value.shape(), "{}", p.name);
        let analytic = dot(g, &dir);
        let h = 1e-3f32;
        let at = |s: f32| {
            let mut store = model.params().clone();
            store.get_mut(id).value = p.value.add(&dir.scale(s)).unwrap();
            loss(&store).0
        };
        let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
        assert!(
            (analytic - numeric).abs() <= 1e-2 * analytic.abs() + 1e-4,
            "{}: analytic {analytic} numeric {numeric}",
            p.name
        );
    }
}

fn check_engines(model: &dyn Model, x: &Tensor, labels: &[usize], mask: &ParamMask, views: usize) {
    let mut cfg = ClipConfig::flat(1e6);
    cfg.views = views;
    cfg.chunk = 2;
    let probe = clip_batch(Engine::Naive, model, x, labels, mask, &cfg).unwrap();
    let mut sorted = probe.norms.clone();
    sorted.sort_by(f32::total_cmp);
    let b = sorted.len();
    cfg.max_norm = 0.5 * (sorted[(b - 1) / 2] + sorted[b / 2]);
    let reference = clip_batch(Engine::Naive, model, x, labels, mask, &cfg).unwrap();
    assert!(
        reference.clipped_fraction() > 0.0 && reference.clipped_fraction() < 1.0,
        "{:?} at {}",
        reference.norms,
        cfg.max_norm
    );
    for engine in &Engine::ALL[1..] {
        let out = clip_batch(*engine, model, x, labels, mask, &cfg).unwrap();
        let n = Tensor::from_slice(&out.norms, &[out.norms.len()]).unwrap();
        let nr = Tensor::from_slice(&reference.norms, &[reference.norms.len()]).unwrap();
        let e = rel_err(&n, &nr);
        assert!(e < 1e-4, "{}: norms differ by {e:e}", engine.name());
        for (id, p) in model.params().iter() {
            let got = &out.clipped_sum[id.0];
            assert_eq!(got.shape(), p.value.shape(), "{}", p.name);
            let e = rel_err(got, &reference.clipped_sum[id.0]);
            assert!(
                e < 1e-4,
                "{}: clipped sum of {} differs by {e:e}",
                engine.name(),
                p.name
            );
            if let Some(m) = mask.get(id) {
                for (g, keep) in got.to_vec().iter().zip(m.to_vec()) {
                    assert!(
                        keep == 1.0 || *g == 0.0,
                        "{}: masked {} is {g}",
                        engine.name(),
                        p.name
                    );
                }
            }
        }
    }
}

#[test]
fn engines_agree_on_equivariant_models_with_and_without_masks() {
    for group in GROUPS {
        let tb = small_tb(group, 21);
        let (x, y) = batch(&tb, 4, 22);
        for mask in [
            ParamMask::dense(tb.params()),
            random_weight_mask(tb.params(), 0.3, 23),
            random_full_mask(tb.params(), 0.5, 24),
        ] {
            check_engines(&tb, &x, &y, &mask, 1);
        }
        let rn = small_resnet9(group, 25);
        let (x, y) = batch(&rn, 3, 26);
        check_engines(&rn, &x, &y, &ParamMask::dense(rn.params()), 1);
        check_engines(&rn, &x, &y, &random_weight_mask(rn.params(), 0.4, 27), 1);
    }
    // Augmentation multiplicity: two views per example.
    let tb = small_tb(Group::D4, 28);
    let (x, y) = batch(&tb, 4, 29);
    let y: Vec<usize> = y.chunks(2).flat_map(|c| [c[0], c[0]]).collect();
    check_engines(&tb, &x, &y, &random_weight_mask(tb.params(), 0.5, 30), 2);
}

/// Expanded layers are never given ghost norms (which would be norms of `G_i`, not of the base
/// gradient `J^T G_i`), and their per-example norms are those of the folded gradients.
#[test]
fn expanded_layers_take_norms_of_base_gradients() {
    let model = small_tb(Group::D4, 31);
    let (x, y) = batch(&model, 3, 32);
    let mut tape = Tape::new(model.params());
    let v = tape.input(x.clone());
    let out = model.forward(&mut tape, v).unwrap();
    let l = tape.cross_entropy(out, &y).unwrap();
    tape.backward(l, Tensor::ones(&[3]), BackwardMode::RecordOnly)
        .unwrap();
    let dense = ParamMask::dense(model.params());
    for engine in Engine::ALL {
        let plan = sparsedp_nn::engine::norm_plan(engine, tape.layers(), &dense, 3, 1);
        for (rec, m) in tape.layers().iter().zip(plan) {
            if rec.transform.is_some() {
                assert_eq!(m, Some(NormMethod::Materialize), "{}", engine.name());
            }
        }
    }
    // Per-example norm of example 0 from its own backward, folded by hand: the clipping engines'
    // norm is that of the base gradients, and differs from the norm of the applied-weight
    // gradients.
    let cfg = ClipConfig::flat(1e6);
    let x0 = x.narrow(0, 0, 1).unwrap();
    let out = clip_batch(Engine::BookKeeping, &model, &x0, &y[..1], &dense, &cfg).unwrap();
    let mut t = Tape::new(model.params());
    let v = t.input(x0);
    let o = model.forward(&mut t, v).unwrap();
    let l = t.cross_entropy(o, &y[..1]).unwrap();
    let grads = t
        .backward(l, Tensor::ones(&[1]), BackwardMode::Full)
        .unwrap();
    let base_sq: f64 = grads.0.iter().flatten().map(|g| dot(g, g)).sum();
    let n = f64::from(out.norms[0]);
    assert!(
        (n * n - base_sq).abs() <= 1e-4 * base_sq,
        "{} vs {}",
        n * n,
        base_sq
    );
    let mut applied_sq = 0.0;
    for rec in t.layers() {
        let gout = rec.grad_output.as_ref().unwrap();
        match (&rec.transform, &rec.kind) {
            (Some(_), sparsedp_nn::LayerKind::Conv2d { params, kernel }) => {
                let gw = rec
                    .input
                    .conv2d_backward_weight(gout, *kernel, *params)
                    .unwrap();
                applied_sq += dot(&gw, &gw);
            }
            _ => {
                applied_sq += dot(
                    grads.get(rec.weight).unwrap(),
                    grads.get(rec.weight).unwrap(),
                );
            }
        }
        if let Some(b) = rec.bias {
            applied_sq += dot(grads.get(b).unwrap(), grads.get(b).unwrap());
        }
    }
    assert!(
        (applied_sq - base_sq).abs() > 1e-3 * base_sq,
        "the fold should change the norm: {applied_sq} vs {base_sq}"
    );
}
