//! Selection cost per step on a WRN-16-4-sized parameter store (about 2.7M weights in the real
//! layer shapes) at 10% selection, side by side with one DP-SGD step (book-keeping engine) of
//! the Tramer-Boneh CIFAR-10 CNN at batch 64.
//!
//! Run: `cargo bench -p sparsedp-select`. Prints a markdown table (median and min over rounds).

use sparsedp_nn::models::TramerBonehCifar;
use sparsedp_nn::{ClipConfig, Engine, Model, ParamMask, ParamRole, ParamStore, clip_batch};
use sparsedp_prune::{MaskConfig, mask_from_scores, random_scores};
use sparsedp_select::{Budget, PublicGradient, SelectMethod, Selector, SelectorConfig};
use sparsedp_tensor::{Tensor, TensorRng};
use std::time::Instant;

/// WRN-16-4 (Zagoruyko & Komodakis 2016) as used for DP by De et al. 2022: a 3x3 stem
/// 3->16, three groups of two pre-activation basic blocks with widths 64, 128, 256 (strides 1, 2,
/// 2; a 1x1 shortcut where the width changes), group norm before every conv, no conv biases, and
/// a 256->10 linear head.
fn wrn_16_4(seed: u64) -> ParamStore {
    let mut rng = TensorRng::seeded(seed);
    let mut s = ParamStore::new();
    let mut conv = |s: &mut ParamStore, name: &str, cin: usize, cout: usize, k: usize| {
        let std = (2.0 / (cin * k * k) as f32).sqrt();
        let w = Tensor::randn(&[cout, cin, k, k], 0.0, std, &mut rng).unwrap();
        s.add(format!("{name}.weight"), w, ParamRole::Weight)
            .unwrap();
    };
    let norm = |s: &mut ParamStore, name: &str, c: usize| {
        s.add(
            format!("{name}.weight"),
            Tensor::ones(&[c]),
            ParamRole::NormScale,
        )
        .unwrap();
        s.add(
            format!("{name}.bias"),
            Tensor::zeros(&[c]),
            ParamRole::NormShift,
        )
        .unwrap();
    };
    conv(&mut s, "conv1", 3, 16, 3);
    let mut cin = 16;
    for (g, width) in [64, 128, 256].into_iter().enumerate() {
        for b in 0..2 {
            let p = format!("block{}.{}", g + 1, b);
            norm(&mut s, &format!("{p}.gn1"), cin);
            conv(&mut s, &format!("{p}.conv1"), cin, width, 3);
            norm(&mut s, &format!("{p}.gn2"), width);
            conv(&mut s, &format!("{p}.conv2"), width, width, 3);
            if cin != width {
                conv(&mut s, &format!("{p}.shortcut"), cin, width, 1);
            }
            cin = width;
        }
    }
    norm(&mut s, "gn_final", cin);
    let w = Tensor::randn(&[10, cin], 0.0, 0.06, &mut rng).unwrap();
    s.add("fc.weight", w, ParamRole::Weight).unwrap();
    s.add("fc.bias", Tensor::zeros(&[10]), ParamRole::Bias)
        .unwrap();
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn time_ms(rounds: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    f(0); // warm-up
    (1..=rounds)
        .map(|r| {
            let t = Instant::now();
            f(r);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::var("SELECT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let store = wrn_16_4(1);
    let weights: usize = store
        .iter()
        .filter(|(_, p)| p.role == ParamRole::Weight)
        .map(|(_, p)| p.value.numel())
        .sum();
    println!(
        "WRN-16-4 store: {} tensors, {} parameters ({} weights); rate 0.1; {} rounds; {} rayon threads",
        store.len(),
        store.num_scalars(),
        weights,
        rounds,
        rayon_threads()
    );
    let mut rng = TensorRng::seeded(9);
    let grad = PublicGradient::assume_public(
        store
            .iter()
            .map(|(_, p)| Tensor::randn(p.value.shape(), 0.0, 1.0, &mut rng).unwrap())
            .collect(),
    );
    let half = mask_from_scores(
        &store,
        &random_scores(&store, 3).unwrap(),
        &MaskConfig::global(0.5),
        None,
    )
    .unwrap();

    let mut rows: Vec<(String, f64, f64, usize)> = Vec::new();
    for (pruning, pname) in [(None, "dense"), (Some(&half), "pruned to 50%")] {
        for method in [
            SelectMethod::Random,
            SelectMethod::Magnitude,
            SelectMethod::PublicGradient,
        ] {
            for budget in [Budget::Global, Budget::LayerWise] {
                let cfg = SelectorConfig {
                    budget,
                    ..SelectorConfig::new(method, 0.1, 7)
                };
                let mut sel = Selector::new(&store, pruning, cfg).unwrap();
                let mut last = None;
                let t = time_ms(rounds, |step| {
                    last = Some(sel.select(step as u64, &store, Some(&grad)).unwrap());
                });
                let active = last.map_or(0, |m| count(&m, &store));
                rows.push((
                    format!("select {} / {budget:?} / {pname}", method.name()),
                    median(t.clone()),
                    min(&t),
                    active,
                ));
            }
        }
    }

    // The comparison: one DP step (per-example clipping + clipped sum) of the Tramer-Boneh
    // CIFAR-10 CNN at batch 64 with the book-keeping engine.
    let model = TramerBonehCifar::new(1).unwrap();
    let b = 64;
    let x = Tensor::randn(&[b, 3, 32, 32], 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<usize> = (0..b).map(|i| i % 10).collect();
    let clip = ClipConfig::flat(1.0);
    let dense = ParamMask::dense(model.params());
    let dp_rounds = rounds.clamp(3, 10);
    let t = time_ms(dp_rounds, |_| {
        clip_batch(Engine::BookKeeping, &model, &x, &labels, &dense, &clip).unwrap();
    });
    rows.push((
        "DP step, Tramer-Boneh CIFAR, B=64, book-keeping, dense".to_string(),
        median(t.clone()),
        min(&t),
        model.params().num_scalars(),
    ));
    let mut sel = Selector::new(
        model.params(),
        None,
        SelectorConfig::new(SelectMethod::Random, 0.1, 7),
    )
    .unwrap();
    let mask = sel.select(0, model.params(), None).unwrap();
    let t = time_ms(dp_rounds, |_| {
        clip_batch(Engine::BookKeeping, &model, &x, &labels, &mask, &clip).unwrap();
    });
    rows.push((
        "DP step, Tramer-Boneh CIFAR, B=64, book-keeping, 10% random mask".to_string(),
        median(t.clone()),
        min(&t),
        count(&mask, model.params()),
    ));

    println!();
    println!("| operation | median ms | min ms | active coordinates |");
    println!("|---|---:|---:|---:|");
    for (name, med, lo, active) in rows {
        println!("| {name} | {med:.2} | {lo:.2} | {active} |");
    }
}

fn count(m: &ParamMask, s: &ParamStore) -> usize {
    s.iter()
        .map(|(id, p)| m.active_count(id, p.value.numel()))
        .sum()
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_else(|_| "?".to_string())
    })
}
