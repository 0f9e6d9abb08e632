//! Selection: exact budgets, subsets of the pruning mask, reproducibility, uniformity,
//! magnitude and public-gradient top-k against a sorted oracle, provenance, schedules.

use proptest::prelude::*;
use sparsedp_nn::models::TramerBonehMnist;
use sparsedp_nn::{Model, ParamMask, ParamRole, ParamStore, batch_gradient};
use sparsedp_prune::{DataBatch, MaskConfig, PruneError, mask_from_scores, random_scores};
use sparsedp_select::{
    Budget, PublicGradient, RateSchedule, SelectError, SelectMethod, Selector, SelectorConfig,
};
use sparsedp_tensor::{Tensor, TensorRng};

fn store(seed: u64) -> ParamStore {
    let mut rng = TensorRng::seeded(seed);
    let mut s = ParamStore::new();
    let shapes: [(&str, &[usize], ParamRole); 7] = [
        ("conv1.weight", &[8, 3, 3, 3], ParamRole::Weight),
        ("conv1.bias", &[8], ParamRole::Bias),
        ("gn1.weight", &[8], ParamRole::NormScale),
        ("conv2.weight", &[16, 8, 3, 3], ParamRole::Weight),
        ("fc1.weight", &[33, 80], ParamRole::Weight),
        ("fc1.bias", &[33], ParamRole::Bias),
        ("fc2.weight", &[10, 33], ParamRole::Weight),
    ];
    for (n, sh, r) in shapes {
        s.add(n, Tensor::randn(sh, 0.0, 1.0, &mut rng).unwrap(), r)
            .unwrap();
    }
    s
}

fn pruning(s: &ParamStore, density: f64) -> ParamMask {
    let scores = random_scores(s, 77).unwrap();
    mask_from_scores(s, &scores, &MaskConfig::global(density), None).unwrap()
}

fn ones(m: &ParamMask, id: sparsedp_nn::ParamId) -> Option<Vec<f32>> {
    m.get(id).map(|t| t.to_vec())
}

fn count(m: &ParamMask, s: &ParamStore, weights_only: bool) -> usize {
    s.iter()
        .filter(|(_, p)| !weights_only || p.role == ParamRole::Weight)
        .map(|(id, p)| m.active_count(id, p.value.numel()))
        .sum()
}

fn unpruned_weights(prune: &ParamMask, s: &ParamStore) -> usize {
    count(prune, s, true)
}

fn rnd(m: usize, r: f64) -> usize {
    ((r * m as f64).round() as usize).clamp(1, m)
}

fn cfg(method: SelectMethod, budget: Budget, rate: f64) -> SelectorConfig {
    SelectorConfig {
        budget,
        ..SelectorConfig::new(method, rate, 5)
    }
}

fn gradient(s: &ParamStore, seed: u64) -> PublicGradient {
    let mut rng = TensorRng::seeded(seed);
    PublicGradient::assume_public(
        s.iter()
            .map(|(_, p)| Tensor::randn(p.value.shape(), 0.0, 1.0, &mut rng).unwrap())
            .collect(),
    )
}

#[test]
fn budgets_are_exact_and_inside_the_pruning_mask() {
    let s = store(1);
    let prune = pruning(&s, 0.4);
    let m_total = unpruned_weights(&prune, &s);
    let g = gradient(&s, 2);
    for method in [
        SelectMethod::Random,
        SelectMethod::Magnitude,
        SelectMethod::PublicGradient,
    ] {
        for rate in [0.01, 0.1, 0.33, 1.0] {
            // Global.
            let mut sel =
                Selector::new(&s, Some(&prune), cfg(method, Budget::Global, rate)).unwrap();
            assert_eq!(sel.candidates(), m_total);
            let m = sel.select(3, &s, Some(&g)).unwrap();
            assert_eq!(count(&m, &s, true), rnd(m_total, rate), "{method:?} {rate}");
            assert_eq!(sel.selected_count(3), rnd(m_total, rate));
            for (id, p) in s.iter() {
                match p.role {
                    ParamRole::Weight => {
                        let (a, b) = (ones(&m, id).unwrap(), ones(&prune, id).unwrap());
                        assert!(a.iter().zip(&b).all(|(a, b)| a <= b), "outside pruning");
                    }
                    _ => assert!(m.get(id).is_none(), "{} must stay dense", p.name),
                }
            }
            // Layer-wise.
            let mut sel =
                Selector::new(&s, Some(&prune), cfg(method, Budget::LayerWise, rate)).unwrap();
            let m = sel.select(3, &s, Some(&g)).unwrap();
            for (id, p) in s.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
                let unpruned = prune.active_count(id, p.value.numel());
                assert_eq!(
                    m.active_count(id, p.value.numel()),
                    rnd(unpruned, rate),
                    "{} {method:?} {rate}",
                    p.name
                );
            }
        }
    }
}

#[test]
fn random_selection_is_reproducible_per_seed_and_step() {
    let s = store(3);
    let prune = pruning(&s, 0.5);
    let c = cfg(SelectMethod::Random, Budget::Global, 0.1);
    let mut a = Selector::new(&s, Some(&prune), c.clone()).unwrap();
    let mut b = Selector::new(&s, Some(&prune), c.clone()).unwrap();
    let a5 = a.select(5, &s, None).unwrap();
    // b reaches step 5 after other steps; a fresh selector and repeated calls agree.
    let b3 = b.select(3, &s, None).unwrap();
    b.select(9, &s, None).unwrap();
    assert_eq!(b.select(5, &s, None).unwrap(), a5);
    assert_eq!(a.select(5, &s, None).unwrap(), a5);
    assert_ne!(a5, b3, "steps must differ");
    let mut other = Selector::new(&s, Some(&prune), SelectorConfig { seed: 6, ..c }).unwrap();
    assert_ne!(other.select(5, &s, None).unwrap(), a5, "seeds must differ");
}

#[test]
fn random_selection_is_uniform() {
    let mut s = ParamStore::new();
    s.add("w", Tensor::zeros(&[10, 20]), ParamRole::Weight)
        .unwrap();
    let id = s.find("w").unwrap();
    let mut sel = Selector::new(&s, None, cfg(SelectMethod::Random, Budget::Global, 0.1)).unwrap();
    let steps = 2000;
    let mut hits = [0u32; 200];
    for t in 0..steps {
        let m = sel.select(t, &s, None).unwrap();
        for (h, v) in hits.iter_mut().zip(m.get(id).unwrap().to_vec()) {
            *h += v as u32;
        }
    }
    // Each coordinate: Binomial(2000, 0.1), mean 200, sd 13.4; 5 sd bounds.
    for (i, &h) in hits.iter().enumerate() {
        assert!(
            (133..=267).contains(&h),
            "coordinate {i} selected {h} times"
        );
    }
}

/// The oracle: sort candidates by |v| descending, then by (parameter, element).
fn oracle(s: &ParamStore, prune: &ParamMask, values: &[Vec<f32>], k: usize) -> Vec<Vec<f32>> {
    let mut c: Vec<(f32, usize, usize)> = Vec::new();
    for (id, p) in s.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
        let pm = ones(prune, id).unwrap_or_else(|| vec![1.0; p.value.numel()]);
        for (e, v) in values[id.0].iter().enumerate() {
            if pm[e] == 1.0 {
                c.push((v.abs(), id.0, e));
            }
        }
    }
    c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut out: Vec<Vec<f32>> = s.iter().map(|(_, p)| vec![0.0; p.value.numel()]).collect();
    for &(_, p, e) in &c[..k] {
        out[p][e] = 1.0;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn magnitude_and_gradient_match_the_sorted_oracle(
        seed in 0u64..500, rate in 0.01f64..1.0, density in 0.2f64..1.0, quant in 0u32..3,
    ) {
        let mut s = store(seed);
        // Quantise some stores so that ties occur.
        if quant > 0 {
            for (_, p) in s.iter_mut() {
                let v: Vec<f32> = p.value.to_vec().iter().map(|x| (x * quant as f32).round()).collect();
                p.value = Tensor::from_vec(v, p.value.shape()).unwrap();
            }
        }
        let prune = pruning(&s, density);
        let m = unpruned_weights(&prune, &s);
        let k = rnd(m, rate);
        let weights: Vec<Vec<f32>> = s.iter().map(|(_, p)| p.value.to_vec()).collect();
        let mut sel = Selector::new(&s, Some(&prune), cfg(SelectMethod::Magnitude, Budget::Global, rate)).unwrap();
        let got = sel.select(0, &s, None).unwrap();
        let want = oracle(&s, &prune, &weights, k);
        for (id, p) in s.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
            prop_assert_eq!(ones(&got, id).unwrap(), want[id.0].clone(), "{}", &p.name);
        }
        let g = gradient(&s, seed + 1);
        let gv: Vec<Vec<f32>> = g.grads().iter().map(|t| t.to_vec()).collect();
        let mut sel = Selector::new(&s, Some(&prune), cfg(SelectMethod::PublicGradient, Budget::Global, rate)).unwrap();
        let got = sel.select(0, &s, Some(&g)).unwrap();
        let want = oracle(&s, &prune, &gv, k);
        for (id, _) in s.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
            prop_assert_eq!(ones(&got, id).unwrap(), want[id.0].clone());
        }
    }
}

#[test]
fn public_gradient_refuses_private_data() {
    let model = TramerBonehMnist::new(1).unwrap();
    let mut rng = TensorRng::seeded(2);
    let x = Tensor::randn(&[4, 1, 28, 28], 0.0, 1.0, &mut rng).unwrap();
    let labels = vec![0, 3, 5, 9];
    let err =
        PublicGradient::from_public_batch(&model, &DataBatch::private(&x, &labels)).unwrap_err();
    assert!(
        matches!(err, SelectError::Prune(PruneError::PrivateData { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("PRIVATE"), "{err}");
    let g = PublicGradient::from_public_batch(&model, &DataBatch::public(&x, &labels)).unwrap();
    let (want, _) = batch_gradient(&model, &x, &labels).unwrap();
    assert_eq!(g.grads(), want.as_slice());
    let store = model.params();
    let mut sel = Selector::new(
        store,
        None,
        cfg(SelectMethod::PublicGradient, Budget::LayerWise, 0.2),
    )
    .unwrap();
    assert!(matches!(
        sel.select(0, store, None).unwrap_err(),
        SelectError::MissingPublicGradient
    ));
    let m = sel.select(0, store, Some(&g)).unwrap();
    let w = count(&m, store, true) as f64
        / store
            .iter()
            .filter(|(_, p)| p.role == ParamRole::Weight)
            .map(|(_, p)| p.value.numel())
            .sum::<usize>() as f64;
    assert!((w - 0.2).abs() < 1e-3, "{w}");
}

#[test]
fn non_weights_can_be_selected_too() {
    let s = store(4);
    let c = SelectorConfig {
        select_non_weights: true,
        ..cfg(SelectMethod::Magnitude, Budget::LayerWise, 0.5)
    };
    let mut sel = Selector::new(&s, None, c).unwrap();
    let m = sel.select(0, &s, None).unwrap();
    let b = s.find("fc1.bias").unwrap();
    assert_eq!(m.active_count(b, 33), 17);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let s = store(5);
    for r in [0.0, -1.0, 1.5, f64::NAN] {
        let e = Selector::new(&s, None, cfg(SelectMethod::Random, Budget::Global, r)).unwrap_err();
        assert!(matches!(e, SelectError::InvalidRate(_)), "{e}");
    }
    let mut sel =
        Selector::new(&s, None, cfg(SelectMethod::Magnitude, Budget::Global, 0.1)).unwrap();
    // NaN weight.
    let mut bad = s.clone();
    let id = bad.find("fc2.weight").unwrap();
    let mut v = bad.value(id).to_vec();
    v[3] = f32::NAN;
    bad.get_mut(id).value = Tensor::from_vec(v, &[10, 33]).unwrap();
    assert!(matches!(
        sel.select(0, &bad, None).unwrap_err(),
        SelectError::NonFinite(_)
    ));
    // Another model's store.
    let mut other = s.clone();
    other.get_mut(id).value = Tensor::zeros(&[33, 10]);
    assert!(matches!(
        sel.select(0, &other, None).unwrap_err(),
        SelectError::Mismatch { .. }
    ));
    // Wrongly shaped public gradient.
    let mut sel = Selector::new(
        &s,
        None,
        cfg(SelectMethod::PublicGradient, Budget::Global, 0.1),
    )
    .unwrap();
    let g = PublicGradient::assume_public(vec![Tensor::zeros(&[1]); s.len()]);
    assert!(matches!(
        sel.select(0, &s, Some(&g)).unwrap_err(),
        SelectError::Mismatch { .. }
    ));
}

#[test]
fn rate_schedules() {
    let c = RateSchedule::Constant(0.3);
    assert_eq!((c.rate(0), c.rate(10_000)), (0.3, 0.3));
    let l = RateSchedule::Linear {
        from: 0.5,
        to: 0.1,
        steps: 100,
    };
    l.validate().unwrap();
    assert!((l.rate(0) - 0.5).abs() < 1e-12);
    assert!((l.rate(50) - 0.3).abs() < 1e-12);
    assert!((l.rate(100) - 0.1).abs() < 1e-12 && (l.rate(1000) - 0.1).abs() < 1e-12);
    let s = RateSchedule::Steps(vec![(0, 1.0), (10, 0.5), (20, 0.1)]);
    s.validate().unwrap();
    let got: Vec<f64> = [0, 9, 10, 19, 20, 500].iter().map(|&t| s.rate(t)).collect();
    assert_eq!(got, vec![1.0, 1.0, 0.5, 0.5, 0.1, 0.1]);
    for bad in [
        RateSchedule::Steps(vec![]),
        RateSchedule::Steps(vec![(1, 0.5)]),
        RateSchedule::Steps(vec![(0, 0.5), (0, 0.4)]),
        RateSchedule::Steps(vec![(0, 0.5), (3, 2.0)]),
        RateSchedule::Linear {
            from: 0.0,
            to: 0.5,
            steps: 3,
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    // The selector follows the schedule.
    let st = store(6);
    let mut sel = Selector::new(
        &st,
        None,
        SelectorConfig {
            rate: s,
            ..cfg(SelectMethod::Random, Budget::Global, 1.0)
        },
    )
    .unwrap();
    let m_total = sel.candidates();
    assert_eq!(
        count(&sel.select(0, &st, None).unwrap(), &st, true),
        m_total
    );
    assert_eq!(
        count(&sel.select(25, &st, None).unwrap(), &st, true),
        rnd(m_total, 0.1)
    );
}

#[test]
fn large_ranges_use_the_radix_path_and_match_the_oracle() {
    // 400 x 400 = 160,000 and 300 x 300 = 90,000 weights: the global range (250,000) and the
    // first tensor take the histogram path.
    let mut rng = TensorRng::seeded(31);
    let mut s = ParamStore::new();
    let a = Tensor::randn(&[400, 400], 0.0, 1.0, &mut rng).unwrap();
    // Coarse values: many ties inside the threshold bucket.
    let a = Tensor::from_vec(
        a.to_vec().iter().map(|x| (x * 8.0).round() / 8.0).collect(),
        &[400, 400],
    )
    .unwrap();
    s.add("a.weight", a, ParamRole::Weight).unwrap();
    s.add(
        "b.weight",
        Tensor::randn(&[300, 300], 0.0, 0.5, &mut rng).unwrap(),
        ParamRole::Weight,
    )
    .unwrap();
    let prune = pruning(&s, 0.9);
    let weights: Vec<Vec<f32>> = s.iter().map(|(_, p)| p.value.to_vec()).collect();
    for rate in [0.001, 0.1, 0.5] {
        let mut sel = Selector::new(
            &s,
            Some(&prune),
            cfg(SelectMethod::Magnitude, Budget::Global, rate),
        )
        .unwrap();
        let got = sel.select(0, &s, None).unwrap();
        let want = oracle(
            &s,
            &prune,
            &weights,
            rnd(unpruned_weights(&prune, &s), rate),
        );
        for (id, p) in s.iter() {
            assert_eq!(ones(&got, id).unwrap(), want[id.0], "{} at {rate}", p.name);
        }
        let mut sel = Selector::new(
            &s,
            Some(&prune),
            cfg(SelectMethod::Magnitude, Budget::LayerWise, rate),
        )
        .unwrap();
        let got = sel.select(0, &s, None).unwrap();
        for (id, p) in s.iter() {
            // Oracle restricted to this tensor.
            let mut single = ParamStore::new();
            single.add("w", p.value.clone(), ParamRole::Weight).unwrap();
            let pm = ParamMask::new(&single, vec![prune.get(id).cloned()]).unwrap();
            let k = rnd(prune.active_count(id, p.value.numel()), rate);
            let want = oracle(&single, &pm, &weights[id.0..=id.0], k);
            assert_eq!(ones(&got, id).unwrap(), want[0], "{} at {rate}", p.name);
        }
    }
}
