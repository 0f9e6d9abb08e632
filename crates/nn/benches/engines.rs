//! Clipping-engine benchmark: examples per second and peak heap memory of one training step's
//! gradient computation, non-private (`batch_gradient`) against every per-example clipping
//! engine (`clip_batch`), dense and with a 90% random pruning mask, on synthetic data.
//!
//! `cargo bench -p sparsedp-nn` (one run; `ENGINES_BENCH_REPS=n` timed rounds, default 3,
//! after one warm-up round; `ENGINES_BENCH_WRN=0` skips WRN-16-4; `ENGINES_BENCH_ONLY=a,b` keeps
//! only the configurations whose label contains `a` or `b`, beside the non-private baseline).
//! Rounds are interleaved (each round runs every configuration once) and the best time is
//! reported next to the median: on a shared machine the best is the least disturbed measurement.
//!
//! CPU time (all threads, from `/proc/self/stat`) is reported next to wall time: on a shared
//! machine the CPU seconds a step consumes are less sensitive to other processes than its wall
//! time, so CPU-time ratios are the more robust comparison between engines.
//!
//! Peak memory comes from a counting global allocator: the largest number of live heap bytes
//! during the row's steps, minus the live bytes when the row started (model, batch and mask are
//! allocated before), measured on a step that starts from an empty tensor buffer cache, so a row
//! cannot reuse buffers another row allocated; buffers it caches during its own step count as
//! live (they are real process memory). The timed step follows it directly (steady state).

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

/// One configuration: a label, its batch size and one step.
struct Config<'a> {
    label: String,
    batch: usize,
    step: Box<dyn FnMut() + 'a>,
}

/// One measured row.
struct Row {
    label: String,
    batch: usize,
    best: f64,
    median: f64,
    /// Least CPU time (all threads) of a timed step, if the platform reports it.
    cpu: Option<f64>,
    peak_bytes: usize,
}

/// CPU time (user + system, all threads) of this process in seconds, from `/proc/self/stat`
/// (Linux; 10 ms ticks). `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Row {
    fn examples_per_sec(&self) -> f64 {
        self.batch as f64 / self.best
    }
}

/// Runs one warm-up round and then `reps` timed rounds over all configurations, interleaved
/// (round r runs every configuration once), so load changes on the shared machine hit every
/// configuration alike. In each round a configuration first runs an untimed step from an empty
/// tensor buffer cache, whose peak of live heap bytes above the level before the step is its
/// memory figure (the largest over rounds), then the timed step: the steady state of a training
/// loop, which repeats one configuration. Time: best and median seconds over the timed rounds.
fn measure(configs: &mut [Config<'_>], reps: usize) -> Vec<Row> {
    let mut times = vec![Vec::with_capacity(reps); configs.len()];
    let mut cpus: Vec<Option<f64>> = vec![None; configs.len()];
    let mut peaks = vec![0usize; configs.len()];
    for round in 0..=reps {
        for (i, c) in configs.iter_mut().enumerate() {
            // Memory: an untimed step from an empty tensor buffer cache, so buffers the cache
            // held for another configuration do not hide this one's allocations.
            release_cached_buffers();
            let base = CURRENT.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            (c.step)();
            peaks[i] = peaks[i].max(PEAK.load(Ordering::Relaxed).saturating_sub(base));
            // Time: the next step of the same configuration, as in a training loop (the cache
            // and the heap, kept mapped by `retain_freed_memory`, are shaped for it).
            let cpu0 = process_cpu_seconds();
            let t = Instant::now();
            (c.step)();
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu0.and_then(|a| process_cpu_seconds().map(|b| b - a));
            if round > 0 {
                times[i].push(secs);
                if let Some(cpu) = cpu {
                    cpus[i] = Some(cpus[i].map_or(cpu, |m: f64| m.min(cpu)));
                }
            }
            eprintln!("  round {round}: {} {secs:.2} s", c.label);
        }
    }
    release_cached_buffers();
    configs
        .iter()
        .zip(times)
        .zip(cpus)
        .zip(peaks)
        .map(|(((c, mut t), cpu), peak_bytes)| {
            t.sort_by(f64::total_cmp);
            Row {
                label: c.label.clone(),
                batch: c.batch,
                best: t[0],
                median: t[t.len() / 2],
                cpu,
                peak_bytes,
            }
        })
        .collect()
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

#[allow(clippy::too_many_arguments)]
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
    let (xn, yn) = (
        x.narrow(0, 0, naive_batch.min(batch)).expect("narrow"),
        y[..naive_batch.min(batch)].to_vec(),
    );
    let cfg = ClipConfig::flat(1.0);
    let mut configs = vec![Config {
        label: format!("{name} non-private (batch_gradient)"),
        batch,
        step: Box::new(|| {
            batch_gradient(model, &x, &y).expect("batch gradient");
        }),
    }];
    for (mask_name, mask) in masks {
        for &engine in engines {
            let (xb, yb) = if engine == Engine::Naive {
                (&xn, &yn)
            } else {
                (&x, &y)
            };
            let cfg = &cfg;
            configs.push(Config {
                label: format!("{name} {} {mask_name}", engine.name()),
                batch: yb.len(),
                step: Box::new(move || {
                    clip_batch(engine, model, xb, yb, mask, cfg).expect("clip batch");
                }),
            });
        }
    }
    // `ENGINES_BENCH_ONLY=a,b`: keep the configurations whose label contains one of the
    // comma-separated substrings (the non-private baseline always stays: ratios need it).
    if let Ok(only) = std::env::var("ENGINES_BENCH_ONLY") {
        let keys: Vec<&str> = only.split(',').filter(|k| !k.is_empty()).collect();
        let mut i = 0;
        configs.retain(|c| {
            i += 1;
            i == 1 || keys.iter().any(|k| c.label.contains(k))
        });
    }
    measure(&mut configs, reps)
}

fn print_table(title: &str, rows: &[Row]) {
    let base = &rows[0];
    println!("\n### {title}\n");
    println!(
        "| configuration | batch | s/step best (median) | examples/s | time / non-private | CPU s/step | CPU / non-private | peak heap MiB | memory / non-private |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        // Time ratio per example, so rows at a smaller batch (naive) compare fairly.
        let time_ratio = base.examples_per_sec() / r.examples_per_sec();
        // CPU seconds per example, relative to non-private.
        let (cpu, cpu_ratio) = match (r.cpu, base.cpu) {
            (Some(c), Some(b)) if b > 0.0 => (
                format!("{c:.2}"),
                format!("{:.2}x", (c / r.batch as f64) / (b / base.batch as f64)),
            ),
            _ => ("-".to_string(), "-".to_string()),
        };
        println!(
            "| {} | {} | {:.2} ({:.2}) | {:.1} | {:.2}x | {cpu} | {cpu_ratio} | {:.1} | {:.2}x |",
            r.label,
            r.batch,
            r.best,
            r.median,
            r.examples_per_sec(),
            time_ratio,
            r.peak_bytes as f64 / (1024.0 * 1024.0),
            r.peak_bytes as f64 / base.peak_bytes.max(1) as f64,
        );
    }
}

fn main() {
    // As the `sparsedp` binary does: freed buffers stay mapped between steps.
    sparsedp_tensor::retain_freed_memory();
    let reps: usize = std::env::var("ENGINES_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let wrn = std::env::var("ENGINES_BENCH_WRN").map_or(true, |v| v != "0");
    println!(
        "clipping engines: {} threads; one warm-up round, then {reps} interleaved timed rounds",
        rayon_threads()
    );

    let tb = TramerBonehCifar::new(0).expect("model");
    let masks = [
        ("dense", ParamMask::dense(tb.params())),
        ("90% pruned", random_pruning_mask(&tb, 0.1, 2)),
    ];
    let rows = run_model("TB-CIFAR", &tb, 256, &Engine::ALL, &masks, 16, reps);
    print_table(
        "Tramer-Boneh CIFAR-10 CNN (550,570 parameters), batch 256 (naive: batch 16)",
        &rows,
    );

    if wrn {
        let model = WideResNet::wrn16_4(0).expect("model");
        let masks = [("dense", ParamMask::dense(model.params()))];
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
