//! Selection cost per step on a WRN-16-4-sized parameter store (about 2.7M weights in the real
//! layer shapes) at 10% selection, side by side with one DP-SGD step (book-keeping engine) of
//! the Tramer-Boneh CIFAR-10 CNN at batch 64.
//!
//! Run: `cargo bench -p sparsedp-select` (`SELECT_BENCH_ROUNDS`, default 20). Prints a markdown
//! table (median and min over rounds; rounds interleave all cases).

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

/// A named benchmark case: called with the round number.
type Case<'a> = (String, Box<dyn FnMut(usize) + 'a>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
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

    // The comparison: one DP step (per-example clipping + clipped sum) of the Tramer-Boneh
    // CIFAR-10 CNN at batch 64 with the book-keeping engine, dense and under a 10% random mask.
    let model = TramerBonehCifar::new(1).unwrap();
    let b = 64;
    let x = Tensor::randn(&[b, 3, 32, 32], 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<usize> = (0..b).map(|i| i % 10).collect();
    let clip = ClipConfig::flat(1.0);
    let dense = ParamMask::dense(model.params());
    let mut sel = Selector::new(
        model.params(),
        None,
        SelectorConfig::new(SelectMethod::Random, 0.1, 7),
    )
    .unwrap();
    let mask = sel.select(0, model.params(), None).unwrap();

    // Every case, including the DP step, is measured once per round, rounds interleaved, so
    // that load from other processes on the shared machine hits all rows alike.
    let mut cases: Vec<Case<'_>> = Vec::new();
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
                let (store, grad) = (&store, &grad);
                cases.push((
                    format!("select {} / {budget:?} / {pname}", method.name()),
                    Box::new(move |step| {
                        let m = sel.select(step as u64, store, Some(grad)).unwrap();
                        std::hint::black_box(&m);
                    }),
                ));
            }
        }
    }
    // The floor set by the output type: zero-filled mask tensors for every weight plus
    // `ParamMask::new`'s validation (a copy and a scan of every mask).
    cases.push((
        "floor: build + validate an all-zero ParamMask (no selection)".to_string(),
        Box::new(|_| {
            let masks = store
                .iter()
                .map(|(_, p)| (p.role == ParamRole::Weight).then(|| Tensor::zeros(p.value.shape())))
                .collect();
            std::hint::black_box(ParamMask::new(&store, masks).unwrap());
        }),
    ));

    let (m, xr, lr, cr) = (&model, &x, &labels, &clip);
    cases.push((
        "DP step, Tramer-Boneh CIFAR, B=64, book-keeping, dense".to_string(),
        Box::new(move |_| {
            clip_batch(Engine::BookKeeping, m, xr, lr, &dense, cr).unwrap();
        }),
    ));
    let mref = &mask;
    cases.push((
        "DP step, Tramer-Boneh CIFAR, B=64, book-keeping, 10% random mask".to_string(),
        Box::new(move |_| {
            clip_batch(Engine::BookKeeping, m, xr, lr, mref, cr).unwrap();
        }),
    ));

    // Wall-clock and CPU time per case. The machine is shared (2 cores, other builds running),
    // so wall time includes waiting for a core; CPU time does not. Selection is single-threaded:
    // its CPU time is the calling thread's; the DP step runs on rayon threads: its CPU time is
    // the whole process's (all threads, 10 ms ticks).
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..=rounds {
        for (i, (name, f)) in cases.iter_mut().enumerate() {
            let process = name.starts_with("DP step");
            let c0 = if process {
                process_cpu_ms()
            } else {
                thread_cpu_ms()
            };
            let t = Instant::now();
            f(round);
            let w = t.elapsed().as_secs_f64() * 1e3;
            let c1 = if process {
                process_cpu_ms()
            } else {
                thread_cpu_ms()
            };
            if round > 0 {
                // Round 0 is the warm-up.
                wall[i].push(w);
                if let (Some(a), Some(b)) = (c0, c1) {
                    cpu[i].push(b - a);
                }
            }
        }
    }
    let mut rows: Vec<(String, f64, f64, Option<f64>)> = Vec::new();
    for (((name, _), w), c) in cases.iter().zip(wall).zip(cpu) {
        let c = (!c.is_empty()).then(|| median(c));
        rows.push((name.clone(), median(w.clone()), min(&w), c));
    }
    drop(cases);
    let selected = |method, budget, pruning: Option<&ParamMask>| {
        let cfg = SelectorConfig {
            budget,
            ..SelectorConfig::new(method, 0.1, 7)
        };
        let mut sel = Selector::new(&store, pruning, cfg).unwrap();
        count(&sel.select(1, &store, Some(&grad)).unwrap(), &store)
    };
    println!(
        "active coordinates after 10% selection: dense {} (global), 50% pruned {} (global); the \
         DP step's 10% mask keeps {} of {} coordinates (biases always active)",
        selected(SelectMethod::Random, Budget::Global, None),
        selected(SelectMethod::Random, Budget::Global, Some(&half)),
        count(&mask, model.params()),
        model.params().num_scalars()
    );
    println!();
    println!("| operation | wall median ms | wall min ms | CPU median ms |");
    println!("|---|---:|---:|---:|");
    for (name, med, lo, c) in rows {
        let c = c.map_or("n/a".to_string(), |c| format!("{c:.2}"));
        println!("| {name} | {med:.2} | {lo:.2} | {c} |");
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

/// CPU time of the calling thread in ms (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e6)
}

/// CPU time of the whole process in ms (Linux `/proc/self/stat` utime + stime, 100 ticks/s).
fn process_cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `rest` starts at field 3.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}
