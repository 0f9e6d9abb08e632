//! Benchmark of the CPU tensor backend, printed as one table per run
//! (`cargo bench -p sparsedp-tensor`).
//!
//! 1. sgemm at 1024^3: our `Tensor::matmul` (both GEMM engines) against raw OpenBLAS with its
//!    own threads and raw single-threaded `matrixmultiply`.
//! 2. conv2d forward, input gradient and weight gradient for every conv layer of the
//!    Tramer & Boneh (2021) CIFAR-10 CNN at batch 256, and the per-example weight gradient,
//!    with both GEMM engines.
//!
//! The development VM is shared, so every measurement is repeated in interleaved rounds (one
//! run of everything per round) and the best time is kept: a burst of load from another
//! process then hurts one round of every measurement instead of all rounds of one of them.
//! FLOPs count a multiply-add as 2. `SPARSEDP_BENCH_ROUNDS` sets the rounds (default 5).

use std::hint::black_box;
use std::time::Instant;

use sparsedp_tensor::{
    Conv2dParams, GemmEngine, Tensor, TensorRng, raw_openblas_sgemm, set_blas_threads,
    set_gemm_engine,
};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU seconds consumed by all threads of this process (Linux `CLOCK_PROCESS_CPUTIME_ID`).
/// Unlike wall time it barely moves when another process takes a core, so FLOPs per CPU-second
/// measure per-core efficiency even on a busy machine.
fn cpu_seconds() -> f64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id (2 = CLOCK_PROCESS_CPUTIME_ID on Linux) and a valid out pointer.
    unsafe { clock_gettime(2, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One timed job: a closure, its FLOPs and the best wall and CPU times seen so far.
struct Job {
    run: Box<dyn FnMut()>,
    flops: f64,
    best: f64,
    best_cpu: f64,
}

impl Job {
    fn new(flops: f64, run: impl FnMut() + 'static) -> Self {
        Job {
            run: Box::new(run),
            flops,
            best: f64::INFINITY,
            best_cpu: f64::INFINITY,
        }
    }
    fn time(&mut self) {
        let c = cpu_seconds();
        let t = Instant::now();
        (self.run)();
        self.best = self.best.min(t.elapsed().as_secs_f64());
        self.best_cpu = self.best_cpu.min(cpu_seconds() - c);
    }
    fn reset(&mut self) {
        self.best = f64::INFINITY;
        self.best_cpu = f64::INFINITY;
    }
    fn gflops(&self) -> f64 {
        self.flops / self.best / 1e9
    }
    /// GFLOP per CPU-second: per-core efficiency, robust to other processes.
    fn gflops_cpu(&self) -> f64 {
        self.flops / self.best_cpu / 1e9
    }
}

/// (name, in channels, out channels, spatial size) of the Tramer-Boneh CIFAR-10 CNN convs.
const LAYERS: [(&str, usize, usize, usize); 6] = [
    ("conv1 3->32 @32x32", 3, 32, 32),
    ("conv2 32->32 @32x32", 32, 32, 32),
    ("conv3 32->64 @16x16", 32, 64, 16),
    ("conv4 64->64 @16x16", 64, 64, 16),
    ("conv5 64->128 @8x8", 64, 128, 8),
    ("conv6 128->128 @8x8", 128, 128, 8),
];
const BATCH: usize = 256;
const ENGINES: [GemmEngine; 2] = [GemmEngine::OpenBlas, GemmEngine::MatrixMultiply];

/// sgemm jobs: ours (OpenBLAS engine), ours (matrixmultiply engine), raw OpenBLAS with
/// `threads` threads, raw OpenBLAS 1 thread, raw matrixmultiply 1 thread.
fn sgemm_jobs(threads: usize) -> Vec<(String, Job)> {
    let n = 1024;
    let mut rng = TensorRng::seeded(1);
    let a = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
    let b = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng).unwrap();
    let flops = 2.0 * (n * n * n) as f64;
    let mut jobs = Vec::new();
    for engine in ENGINES {
        let (a, b) = (a.clone(), b.clone());
        let name = format!("ours: Tensor::matmul, {engine:?} engine (rayon row panels)");
        jobs.push((
            name,
            Job::new(flops, move || {
                set_gemm_engine(engine);
                black_box(a.matmul(&b).unwrap());
                set_gemm_engine(GemmEngine::OpenBlas);
            }),
        ));
    }
    for t in [threads, 1] {
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut c = vec![0.0f32; n * n];
        jobs.push((
            format!("raw OpenBLAS cblas_sgemm, {t} OpenBLAS thread(s)"),
            Job::new(flops, move || {
                set_blas_threads(t);
                raw_openblas_sgemm(n, n, n, &av, &bv, &mut c).unwrap();
                set_blas_threads(1);
            }),
        ));
    }
    let (av, bv) = (a.to_vec(), b.to_vec());
    let mut c = vec![0.0f32; n * n];
    jobs.push((
        "raw matrixmultiply::sgemm, 1 thread".to_string(),
        Job::new(flops, move || unsafe {
            // SAFETY: tight row-major n x n buffers.
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                av.as_ptr(),
                n as isize,
                1,
                bv.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }),
    ));
    jobs
}

/// The four conv jobs of one layer with one engine: forward, input grad, weight grad,
/// per-example weight grad.
fn conv_jobs(c_in: usize, c_out: usize, hw: usize, engine: GemmEngine) -> [Job; 4] {
    let mut rng = TensorRng::seeded(2);
    let p = Conv2dParams::padded(1);
    let x = Tensor::randn(&[BATCH, c_in, hw, hw], 0.0, 1.0, &mut rng).unwrap();
    let w = Tensor::randn(&[c_out, c_in, 3, 3], 0.0, 0.1, &mut rng).unwrap();
    let b = Tensor::zeros(&[c_out]);
    let dy = Tensor::randn(&[BATCH, c_out, hw, hw], 0.0, 1.0, &mut rng).unwrap();
    let flops = 2.0 * (BATCH * c_out * hw * hw * c_in * 9) as f64;
    let with = move |f: Box<dyn Fn()>| {
        move || {
            set_gemm_engine(engine);
            f();
            set_gemm_engine(GemmEngine::OpenBlas);
        }
    };
    let (x1, w1) = (x.clone(), w.clone());
    let (dy2, w2) = (dy.clone(), w);
    let (x3, dy3) = (x.clone(), dy.clone());
    [
        Job::new(
            flops,
            with(Box::new(move || {
                black_box(x1.conv2d(&w1, Some(&b), p).unwrap());
            })),
        ),
        Job::new(
            flops,
            with(Box::new(move || {
                black_box(Tensor::conv2d_backward_input(&dy2, &w2, [hw, hw], p).unwrap());
            })),
        ),
        Job::new(
            flops,
            with(Box::new(move || {
                black_box(x3.conv2d_backward_weight(&dy3, [3, 3], p).unwrap());
            })),
        ),
        Job::new(
            flops,
            with(Box::new(move || {
                black_box(x.conv2d_per_example_weight_grad(&dy, [3, 3], p).unwrap());
            })),
        ),
    ]
}

fn main() {
    // As the `sparsedp` binary does: freed buffers stay mapped between steps.
    sparsedp_tensor::retain_freed_memory();
    let rounds: usize = std::env::var("SPARSEDP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let threads = rayon::current_num_threads();
    println!(
        "# sparsedp-tensor CPU backend benchmark: {threads} rayon threads, {} logical CPUs, \
         best of {rounds} interleaved rounds\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut sgemm = sgemm_jobs(threads);
    let mut convs: Vec<(GemmEngine, &str, [Job; 4])> = Vec::new();
    for engine in ENGINES {
        for (name, ci, co, hw) in LAYERS {
            convs.push((engine, name, conv_jobs(ci, co, hw, engine)));
        }
    }
    // Warm-up (page faults, BLAS buffers, rayon pool), then the timed rounds.
    for round in 0..=rounds {
        for (_, job) in sgemm.iter_mut() {
            job.time();
        }
        for (_, _, jobs) in convs.iter_mut() {
            for job in jobs.iter_mut() {
                job.time();
            }
        }
        if round == 0 {
            sgemm.iter_mut().for_each(|(_, j)| j.reset());
            for (_, _, jobs) in convs.iter_mut() {
                jobs.iter_mut().for_each(Job::reset);
            }
        }
    }

    println!("## sgemm 1024 x 1024 x 1024");
    println!("| implementation | ms | GFLOP/s | GFLOP per CPU-second |");
    println!("|---|---:|---:|---:|");
    for (name, job) in &sgemm {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            job.best * 1e3,
            job.gflops(),
            job.gflops_cpu()
        );
    }
    let ours = sgemm[0].1.gflops();
    let raw = sgemm[2].1.gflops();
    println!(
        "\nours / raw OpenBLAS ({threads} threads) = {:.0}% (target >= 80%: {})\n",
        100.0 * ours / raw,
        if ours >= 0.8 * raw { "met" } else { "MISSED" }
    );

    for engine in ENGINES {
        println!(
            "## conv2d, Tramer-Boneh CIFAR-10 CNN, batch {BATCH}, 3x3 pad 1, {engine:?} engine"
        );
        println!(
            "| layer | GFLOP/pass | fwd GFLOP/s | in-grad GFLOP/s | w-grad GFLOP/s | \
             fwd+bwd ms | fwd+bwd GFLOP/s | per-example w-grad ms | per-example GFLOP/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let (mut tf, mut tt, mut pf, mut pt) = (0.0, 0.0, 0.0, 0.0);
        let (mut tc, mut pc) = (0.0, 0.0);
        for (_, name, jobs) in convs.iter().filter(|(e, _, _)| *e == engine) {
            let [f, i, w, pe] = jobs;
            let total = f.best + i.best + w.best;
            println!(
                "| {name} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                f.flops / 1e9,
                f.gflops(),
                i.gflops(),
                w.gflops(),
                total * 1e3,
                3.0 * f.flops / total / 1e9,
                pe.best * 1e3,
                pe.gflops(),
            );
            tf += 3.0 * f.flops;
            tt += total;
            pf += pe.flops;
            pt += pe.best;
            tc += f.best_cpu + i.best_cpu + w.best_cpu;
            pc += pe.best_cpu;
        }
        let rate = tf / tt / 1e9;
        println!(
            "| **total** | {:.2} | | | | {:.1} | **{:.1}** | {:.1} | **{:.1}** |",
            tf / 3e9,
            tt * 1e3,
            rate,
            pt * 1e3,
            pf / pt / 1e9
        );
        println!(
            "\nconv fwd+bwd total / our sgemm = {:.0}% (target >= 50%: {}); \
             per-example / our sgemm = {:.0}%",
            100.0 * rate / ours,
            if rate >= 0.5 * ours { "met" } else { "MISSED" },
            100.0 * pf / pt / 1e9 / ours
        );
        let ours_cpu = sgemm[0].1.gflops_cpu();
        println!(
            "per CPU-second: conv fwd+bwd {:.1}, per-example {:.1}, our sgemm {:.1} GFLOP \
             (conv / sgemm = {:.0}%)\n",
            tf / tc / 1e9,
            pf / pc / 1e9,
            ours_cpu,
            100.0 * tf / tc / 1e9 / ours_cpu
        );
    }
}
