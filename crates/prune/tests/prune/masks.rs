//! Mask construction: exact densities, never-prune rules, ties, no empty layers, reports.

use super::common::{kept, mixed_store};
use proptest::prelude::*;
use sparsedp_nn::{ParamRole, ParamStore};
use sparsedp_prune::mask::{kept_count, prunable};
use sparsedp_prune::{
    DensityReport, MaskConfig, PruneError, Scores, magnitude_scores, mask_from_scores,
    random_scores,
};

fn weight_total(store: &ParamStore, cfg: &MaskConfig) -> usize {
    let p = prunable(store, cfg);
    store
        .iter()
        .filter(|(id, _)| p[id.0])
        .map(|(_, p)| p.value.numel())
        .sum()
}

#[test]
fn global_density_is_exact_and_never_prunes_bias_or_norm() {
    let store = mixed_store(1);
    let scores = random_scores(&store, 7).unwrap();
    for d in [0.003, 0.01, 0.1, 0.25, 0.5, 0.77, 1.0] {
        let cfg = MaskConfig::global(d);
        let mask = mask_from_scores(&store, &scores, &cfg, None).unwrap();
        let k = kept(&mask, &store);
        let total = weight_total(&store, &cfg);
        let sum: usize = k.iter().flatten().sum();
        assert_eq!(sum, kept_count(d, total), "density {d}");
        for ((_, p), k) in store.iter().zip(&k) {
            match p.role {
                ParamRole::Weight => assert!(k.unwrap() >= 1, "{} emptied at {d}", p.name),
                _ => assert!(k.is_none(), "{} must never be pruned", p.name),
            }
        }
    }
}

#[test]
fn layer_wise_density_is_exact_per_tensor() {
    let store = mixed_store(2);
    let scores = magnitude_scores(&store);
    for d in [0.001, 0.05, 0.3, 0.5, 0.9, 1.0] {
        let mask = mask_from_scores(&store, &scores, &MaskConfig::layer_wise(d), None).unwrap();
        for ((_, p), k) in store.iter().zip(kept(&mask, &store)) {
            if p.role == ParamRole::Weight {
                let n = p.value.numel();
                assert_eq!(k.unwrap(), kept_count(d, n).max(1), "{} at {d}", p.name);
            } else {
                assert!(k.is_none());
            }
        }
    }
}

#[test]
fn first_and_last_layer_can_be_kept_whole() {
    let store = mixed_store(3);
    let scores = random_scores(&store, 1).unwrap();
    let cfg = MaskConfig {
        keep_first_layer: true,
        keep_last_layer: true,
        ..MaskConfig::global(0.2)
    };
    let mask = mask_from_scores(&store, &scores, &cfg, None).unwrap();
    let first = store.find("conv1.weight").unwrap();
    let last = store.find("fc2.weight").unwrap();
    assert!(mask.get(first).is_none() && mask.get(last).is_none());
    let sum: usize = kept(&mask, &store).iter().flatten().sum();
    assert_eq!(sum, kept_count(0.2, weight_total(&store, &cfg)));
    assert!(mask.get(store.find("conv2.weight").unwrap()).is_some());
}

#[test]
fn magnitude_keeps_the_largest_weights_globally() {
    let store = mixed_store(4);
    let scores = magnitude_scores(&store);
    let mask = mask_from_scores(&store, &scores, &MaskConfig::global(0.3), None).unwrap();
    // Oracle: full sort of all |w|.
    let mut all: Vec<f32> = store
        .iter()
        .filter(|(_, p)| p.role == ParamRole::Weight)
        .flat_map(|(_, p)| p.value.to_vec().into_iter().map(f32::abs))
        .collect();
    all.sort_by(|a, b| b.total_cmp(a));
    let k = kept_count(0.3, all.len());
    let threshold = all[k - 1];
    for (id, p) in store.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
        let m = mask.get(id).unwrap().to_vec();
        for (w, m) in p.value.to_vec().iter().zip(m) {
            if w.abs() > threshold {
                assert_eq!(m, 1.0);
            } else if w.abs() < threshold {
                assert_eq!(m, 0.0);
            }
        }
    }
}

#[test]
fn ties_are_broken_by_position() {
    let store = mixed_store(5);
    let values = store
        .iter()
        .map(|(_, p)| vec![1.0; p.value.numel()])
        .collect();
    let scores = Scores::new(&store, values).unwrap();
    let cfg = MaskConfig {
        allow_empty_layers: true,
        ..MaskConfig::global(0.5)
    };
    let mask = mask_from_scores(&store, &scores, &cfg, None).unwrap();
    // All scores equal: the first k weights in (parameter, element) order are kept.
    let mut left = kept_count(0.5, weight_total(&store, &cfg));
    for (id, p) in store.iter().filter(|(_, p)| p.role == ParamRole::Weight) {
        let m = mask.get(id).unwrap().to_vec();
        let take = left.min(m.len());
        assert!(m[..take].iter().all(|&v| v == 1.0), "{}", p.name);
        assert!(m[take..].iter().all(|&v| v == 0.0), "{}", p.name);
        left -= take;
    }
    // And it is reproducible.
    assert_eq!(mask, mask_from_scores(&store, &scores, &cfg, None).unwrap());
}

#[test]
fn no_layer_is_emptied_unless_allowed() {
    let store = mixed_store(6);
    let fc1 = store.find("fc1.weight").unwrap();
    // fc1's scores are all below every other weight's.
    let values = store
        .iter()
        .map(|(id, p)| {
            (0..p.value.numel())
                .map(|e| {
                    if id == fc1 {
                        1e-3 * (e as f32 + 1.0) / 1e4
                    } else {
                        1.0 + e as f32
                    }
                })
                .collect()
        })
        .collect();
    let scores = Scores::new(&store, values).unwrap();
    let d = 0.1;
    let cfg = MaskConfig::global(d);
    let mask = mask_from_scores(&store, &scores, &cfg, None).unwrap();
    let k = kept(&mask, &store);
    assert_eq!(k[fc1.0], Some(1));
    // It keeps its best weight (the last element).
    let m = mask.get(fc1).unwrap().to_vec();
    assert_eq!(m[m.len() - 1], 1.0);
    let sum: usize = k.iter().flatten().sum();
    assert_eq!(sum, kept_count(d, weight_total(&store, &cfg)));

    let allow = MaskConfig {
        allow_empty_layers: true,
        ..cfg
    };
    let mask = mask_from_scores(&store, &scores, &allow, None).unwrap();
    assert_eq!(kept(&mask, &store)[fc1.0], Some(0));
}

#[test]
fn invalid_densities_are_typed_errors() {
    let store = mixed_store(7);
    let scores = random_scores(&store, 0).unwrap();
    for d in [0.0, -0.1, 1.0001, f64::NAN, f64::INFINITY] {
        let err = mask_from_scores(&store, &scores, &MaskConfig::global(d), None).unwrap_err();
        assert!(matches!(err, PruneError::InvalidDensity(_)), "{d}: {err}");
    }
    // Too low to keep one weight in each of the 5 weight tensors.
    let err = mask_from_scores(&store, &scores, &MaskConfig::global(1e-5), None).unwrap_err();
    assert!(matches!(err, PruneError::InvalidConfig(_)), "{err}");
    // Scores of the wrong length.
    let bad = Scores::new(&store, vec![vec![0.0; 3]; store.len()]).unwrap_err();
    assert!(matches!(bad, PruneError::ScoreMismatch { .. }), "{bad}");
    // Non-finite score.
    let mut values = scores.values().to_vec();
    values[0][5] = f32::NAN;
    let s = Scores::new(&store, values).unwrap();
    let err = mask_from_scores(&store, &s, &MaskConfig::global(0.5), None).unwrap_err();
    assert!(matches!(err, PruneError::NonFinite(_)), "{err}");
}

#[test]
fn random_scores_are_reproducible_per_seed() {
    let store = mixed_store(8);
    let cfg = MaskConfig::global(0.2);
    let a = mask_from_scores(&store, &random_scores(&store, 11).unwrap(), &cfg, None).unwrap();
    let b = mask_from_scores(&store, &random_scores(&store, 11).unwrap(), &cfg, None).unwrap();
    let c = mask_from_scores(&store, &random_scores(&store, 12).unwrap(), &cfg, None).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn within_restricts_candidates() {
    let store = mixed_store(9);
    let s1 = random_scores(&store, 1).unwrap();
    let s2 = random_scores(&store, 2).unwrap();
    let first = mask_from_scores(&store, &s1, &MaskConfig::global(0.5), None).unwrap();
    let second = mask_from_scores(&store, &s2, &MaskConfig::global(0.2), Some(&first)).unwrap();
    for (id, _) in store.iter() {
        if let (Some(a), Some(b)) = (first.get(id), second.get(id)) {
            for (a, b) in a.to_vec().iter().zip(b.to_vec()) {
                assert!(b <= *a, "a pruned weight came back");
            }
        }
    }
    let report = DensityReport::new(&store, &second).unwrap();
    let total = weight_total(&store, &MaskConfig::global(0.2));
    assert_eq!(
        report
            .layers
            .iter()
            .filter(|l| l.role == ParamRole::Weight)
            .map(|l| l.kept)
            .sum::<usize>(),
        kept_count(0.2, total)
    );
}

#[test]
fn report_counts_and_table() {
    let store = mixed_store(10);
    let mask = mask_from_scores(
        &store,
        &magnitude_scores(&store),
        &MaskConfig::layer_wise(0.25),
        None,
    )
    .unwrap();
    let r = DensityReport::new(&store, &mask).unwrap();
    assert_eq!(r.layers.len(), store.len());
    let conv2 = &r.layers[store.find("conv2.weight").unwrap().0];
    assert_eq!((conv2.kept, conv2.total), (288, 1152));
    assert!((conv2.density() - 0.25).abs() < 1e-12);
    let bias = &r.layers[store.find("fc1.bias").unwrap().0];
    assert_eq!((bias.kept, bias.total), (33, 33));
    assert!((r.weight_density() - 0.25).abs() < 1e-3);
    let table = r.to_string();
    assert!(
        table.contains("conv2.weight") && table.contains("0.2500"),
        "{table}"
    );
    assert!(table.lines().count() == store.len() + 2, "{table}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Global masks equal the oracle top-k (full sort with the same tie rule) whenever no layer
    /// needs refilling, and are exact in total otherwise.
    #[test]
    fn global_matches_sorted_oracle(seed in 0u64..1000, d in 0.05f64..1.0, quant in 1u32..6) {
        let store = mixed_store(seed);
        // Quantised scores create many ties.
        let values: Vec<Vec<f32>> = random_scores(&store, seed ^ 99)
            .unwrap()
            .values()
            .iter()
            .map(|v| v.iter().map(|x| (x * quant as f32).floor()).collect())
            .collect();
        let scores = Scores::new(&store, values.clone()).unwrap();
        let cfg = MaskConfig { allow_empty_layers: true, ..MaskConfig::global(d) };
        let mask = mask_from_scores(&store, &scores, &cfg, None).unwrap();
        let mut all: Vec<(f32, usize, usize)> = store
            .iter()
            .filter(|(_, p)| p.role == ParamRole::Weight)
            .flat_map(|(id, _)| values[id.0].iter().enumerate().map(move |(e, &s)| (s, id.0, e)))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let k = kept_count(d, all.len());
        let mut want: Vec<Vec<f32>> = store.iter().map(|(_, p)| vec![0.0; p.value.numel()]).collect();
        for &(_, p, e) in &all[..k] {
            want[p][e] = 1.0;
        }
        for (id, p) in store.iter() {
            if p.role == ParamRole::Weight {
                prop_assert_eq!(mask.get(id).unwrap().to_vec(), want[id.0].clone());
            }
        }
    }
}
