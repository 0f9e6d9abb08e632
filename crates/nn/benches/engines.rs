//! Clipping-engine benchmark: examples per second and peak heap memory of one training step's
//! gradient computation, non-private (`batch_gradient`) against every per-example clipping
//! engine (`clip_batch`), dense and with a 90% random pruning mask, on synthetic data.
//!
//! `cargo bench -p sparsedp-nn` (one run; `ENGINES_BENCH_REPS=n` timed steps per row,
//! default 3, after one warm-up step; `ENGINES_BENCH_WRN=0` skips WRN-16-4).
//!
//! Peak memory comes from a counting global allocator: the largest number of live heap bytes
//! during the row's steps, minus the live bytes when the row started (model, batch and mask are
//! allocated before). The tensor crate's buffer cache is emptied before every row, so a row
//! cannot reuse buffers another row allocated; buffers it caches during its own steps count as
//! live (they are real process memory).

use sparsedp_nn::models::{TramerBonehCifar, WideResNet};
use sparsedp_nn::{ClipConfig, Engine, Model, ParamMask, ParamRole, batch_gradient, clip_batch};
use sparsedp_tensor::{Tensor, TensorRng, release_cached_buffers};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the caller's arguments; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as `GlobalAlloc::alloc`, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One measured row.
struct Row {
    label: String,
    batch: usize,
    secs_per_step: f64,
    peak_bytes: usize,
}

impl Row {
    fn examples_per_sec(&self) -> f64 {
        self.batch as f64 / self.secs_per_step
    }
}

/// Runs `step` once to warm up, then `reps` times; returns the median seconds per step and the
/// peak live heap bytes above the starting level over all runs.
fn measure(reps: usize, mut step: impl FnMut()) -> (f64, usize) {
    release_cached_buffers();
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    step();
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        step();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    release_cached_buffers();
    (times[times.len() / 2], peak)
}

fn synthetic_batch(model: &dyn Model, n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = TensorRng::seeded(seed);
    let [c, h, w] = model.input_shape();
    let x = Tensor::randn(&[n, c, h, w], 0.0, 1.0, &mut rng).expect("valid shape");
    let k = model.num_classes();
    let u = Tensor::rand_uniform(&[n], 0.0, k as f32, &mut rng).expect("valid shape");
    let labels = u
        .to_vec()
        .iter()
        .map(|&v| (v as usize).min(k - 1))
        .collect();
    (x, labels)
}

/// Keeps each weight coordinate with probability `keep` (biases and norm parameters dense).
fn random_pruning_mask(model: &dyn Model, keep: f32, seed: u64) -> ParamMask {
    let mut rng = TensorRng::seeded(seed);
    let masks = model
        .params()
        .iter()
        .map(|(_, p)| {
            (p.role == ParamRole::Weight).then(|| {
                let u =
                    Tensor::rand_uniform(p.value.shape(), 0.0, 1.0, &mut rng).expect("valid shape");
                let v = u.to_vec().iter().map(|&x| f32::from(x < keep)).collect();
                Tensor::from_vec(v, p.value.shape()).expect("valid shape")
            })
        })
        .collect();
    ParamMask::new(model.params(), masks).expect("mask fits")
}

fn run_model(
    name: &str,
    model: &dyn Model,
    batch: usize,
    engines: &[Engine],
    masks: &[(&str, ParamMask)],
    naive_batch: usize,
    reps: usize,
) -> Vec<Row> {
    let (x, y) = synthetic_batch(model, batch, 1);
    let cfg = ClipConfig::flat(1.0);
    let mut rows = Vec::new();
    let (t, m) = measure(reps, || {
        batch_gradient(model, &x, &y).expect("batch gradient");
    });
    rows.push(Row {
        label: format!("{name} non-private (batch_gradient)"),
        batch,
        secs_per_step: t,
        peak_bytes: m,
    });
    eprintln!("  {}: {:.2} s/step", rows[0].label, t);
    for (mask_name, mask) in masks {
        for &engine in engines {
            let (xb, yb, b, r) = if engine == Engine::Naive {
                let (xs, ys) = (
                    x.narrow(0, 0, naive_batch).expect("narrow"),
                    y[..naive_batch].to_vec(),
                );
                (xs, ys, naive_batch, 1)
            } else {
                (x.clone(), y.clone(), batch, reps)
            };
            let (t, m) = measure(r, || {
                clip_batch(engine, model, &xb, &yb, mask, &cfg).expect("clip batch");
            });
            let label = format!("{name} {} {mask_name}", engine.name());
            eprintln!("  {label}: {t:.2} s/step (batch {b})");
            rows.push(Row {
                label,
                batch: b,
                secs_per_step: t,
                peak_bytes: m,
            });
        }
    }
    rows
}

fn print_table(title: &str, rows: &[Row]) {
    let base = &rows[0];
    println!("\n### {title}\n");
    println!(
        "| configuration | batch | s/step | examples/s | time / non-private | peak heap MiB | memory / non-private |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        // Time ratio per example, so rows at a smaller batch (naive) compare fairly.
        let time_ratio = base.examples_per_sec() / r.examples_per_sec();
        println!(
            "| {} | {} | {:.3} | {:.1} | {:.2}x | {:.1} | {:.2}x |",
            r.label,
            r.batch,
            r.secs_per_step,
            r.examples_per_sec(),
            time_ratio,
            r.peak_bytes as f64 / (1024.0 * 1024.0),
            r.peak_bytes as f64 / base.peak_bytes.max(1) as f64,
        );
    }
}

fn main() {
    let reps: usize = std::env::var("ENGINES_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let wrn = std::env::var("ENGINES_BENCH_WRN").map_or(true, |v| v != "0");
    println!(
        "clipping engines: {} rayon threads, median of {reps} timed steps after one warm-up",
        rayon_threads()
    );

    let tb = TramerBonehCifar::new(0).expect("model");
    let masks = [
        ("dense", ParamMask::dense(tb.params())),
        ("90% pruned", random_pruning_mask(&tb, 0.1, 2)),
    ];
    eprintln!("Tramer-Boneh CIFAR-10 CNN, batch 256");
    let rows = run_model("TB-CIFAR", &tb, 256, &Engine::ALL, &masks, 16, reps);
    print_table(
        "Tramer-Boneh CIFAR-10 CNN (550,570 parameters), batch 256 (naive: batch 16)",
        &rows,
    );

    if wrn {
        let model = WideResNet::wrn16_4(0).expect("model");
        let masks = [("dense", ParamMask::dense(model.params()))];
        eprintln!("WRN-16-4, batch 64");
        let rows = run_model(
            "WRN-16-4",
            &model,
            64,
            &[Engine::BookKeeping],
            &masks,
            1,
            reps,
        );
        print_table("WRN-16-4 (2,751,562 parameters), batch 64", &rows);
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
