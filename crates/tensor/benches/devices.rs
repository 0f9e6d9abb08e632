//! CPU backend and wgpu backend side by side, in one run on one machine
//! (`cargo bench -p sparsedp-tensor --bench devices`):
//!
//! 1. sgemm 2048 x 2048 x 2048 (`Tensor::matmul`);
//! 2. the six conv layers of the Tramer & Boneh (2021) CIFAR-10 CNN at batch 256: forward,
//!    input gradient and weight gradient (one training step's convolutions), and the
//!    per-example weight gradients DP-SGD needs on top (streamed in chunks of 64 examples);
//! 3. dispatch overhead: a chain of tiny kernels recorded into one command encoder, against
//!    the same chain with a device synchronisation after every kernel.
//!
//! wgpu timings include a `Device::synchronize` at the end of each job, so they are end to end
//! (kernels complete, no transfers: inputs live on the device before timing starts). Each job
//! runs `SPARSEDP_BENCH_ROUNDS` times (default 3) after one warm-up; the best time is kept.
//! The wgpu column is skipped with a message when no adapter exists; set
//! `SPARSEDP_WGPU_ADAPTER` to pick one by name (e.g. `llvmpipe` for Mesa's software driver).

use std::hint::black_box;
use std::time::Instant;

use sparsedp_tensor::{Conv2dParams, Device, Tensor, TensorRng};

const LAYERS: [(&str, usize, usize, usize); 6] = [
    ("conv1 3->32 @32x32", 3, 32, 32),
    ("conv2 32->32 @32x32", 32, 32, 32),
    ("conv3 32->64 @16x16", 32, 64, 16),
    ("conv4 64->64 @16x16", 64, 64, 16),
    ("conv5 64->128 @8x8", 64, 128, 8),
    ("conv6 128->128 @8x8", 128, 128, 8),
];
const BATCH: usize = 256;
const GEMM_N: usize = 2048;

/// Best wall time of `rounds` runs of `f` (after one warm-up), synchronising `device`.
fn best(device: Device, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for r in 0..=rounds {
        let t = Instant::now();
        f();
        device
            .synchronize()
            .expect("device failed during the benchmark");
        if r > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    best
}

/// Seconds for sgemm and, per layer, (fwd + in-grad + w-grad, per-example) on `device`.
struct Timings {
    sgemm: f64,
    layers: Vec<(f64, f64)>,
}

fn measure(device: Device, rounds: usize) -> Timings {
    let mut rng = TensorRng::seeded(1);
    let on = |t: Tensor| t.to_device(device).expect("upload");
    let a = on(Tensor::randn(&[GEMM_N, GEMM_N], 0.0, 1.0, &mut rng).unwrap());
    let b = on(Tensor::randn(&[GEMM_N, GEMM_N], 0.0, 1.0, &mut rng).unwrap());
    let sgemm = best(device, rounds, || {
        black_box(a.matmul(&b).unwrap());
    });
    let p = Conv2dParams::padded(1);
    let mut layers = Vec::new();
    for (_, ci, co, hw) in LAYERS {
        let x = on(Tensor::randn(&[BATCH, ci, hw, hw], 0.0, 1.0, &mut rng).unwrap());
        let w = on(Tensor::randn(&[co, ci, 3, 3], 0.0, 0.1, &mut rng).unwrap());
        let bias = on(Tensor::zeros(&[co]));
        let dy = on(Tensor::randn(&[BATCH, co, hw, hw], 0.0, 1.0, &mut rng).unwrap());
        let step = best(device, rounds, || {
            black_box(x.conv2d(&w, Some(&bias), p).unwrap());
            black_box(Tensor::conv2d_backward_input(&dy, &w, [hw, hw], p).unwrap());
            black_box(x.conv2d_backward_weight(&dy, [3, 3], p).unwrap());
        });
        // In chunks of 64 examples, as the clipping engines stream them (the whole batch of
        // conv6 is 144 MiB, above the default 128 MiB storage binding of many adapters).
        let per = best(device, rounds, || {
            x.conv2d_per_example_weight_grad_chunked(&dy, [3, 3], p, 64, |_, g| {
                black_box(g);
                Ok(())
            })
            .unwrap();
        });
        layers.push((step, per));
    }
    Timings { sgemm, layers }
}

/// Microseconds per kernel for a chain of `n` tiny kernels: (recorded, synchronised each).
fn dispatch_overhead(device: Device, n: usize) -> (f64, f64) {
    let x = Tensor::ones(&[16]).to_device(device).unwrap();
    let chained = best(device, 1, || {
        let mut y = x.clone();
        for _ in 0..n {
            y = y.scale(1.0001);
        }
        black_box(y);
    });
    let synced = best(device, 1, || {
        let mut y = x.clone();
        for _ in 0..n {
            y = y.scale(1.0001);
            device.synchronize().unwrap();
        }
        black_box(y);
    });
    (chained / n as f64 * 1e6, synced / n as f64 * 1e6)
}

fn main() {
    // As the `sparsedp` binary does: freed buffers stay mapped between steps.
    sparsedp_tensor::retain_freed_memory();
    let rounds: usize = std::env::var("SPARSEDP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let gpu = match Device::from_name("wgpu") {
        Ok(d) => Some(d),
        Err(e) => {
            println!("(wgpu column skipped: {e})\n");
            None
        }
    };
    println!(
        "# sparsedp-tensor: CPU vs wgpu, best of {rounds} rounds\n\n- CPU: {}\n- wgpu: {}\n",
        Device::Cpu.describe(),
        gpu.map_or("unavailable".into(), |d| d.describe())
    );
    let cpu = measure(Device::Cpu, rounds);
    let wg = gpu.map(|d| measure(d, rounds));

    let gf = |flops: f64, s: f64| flops / s / 1e9;
    let col = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let ratio = |c: f64, g: Option<f64>| g.map_or("-".to_string(), |g| format!("{:.2}x", c / g));

    let sgemm_flops = 2.0 * (GEMM_N as f64).powi(3);
    println!("## sgemm {GEMM_N}^3");
    println!("| | CPU ms | CPU GFLOP/s | wgpu ms | wgpu GFLOP/s | wgpu speed-up |");
    println!("|---|---:|---:|---:|---:|---:|");
    let ws = wg.as_ref().map(|w| w.sgemm);
    println!(
        "| matmul | {:.1} | {:.1} | {} | {} | {} |\n",
        cpu.sgemm * 1e3,
        gf(sgemm_flops, cpu.sgemm),
        col(ws.map(|s| s * 1e3)),
        col(ws.map(|s| gf(sgemm_flops, s))),
        ratio(cpu.sgemm, ws)
    );

    println!("## Tramer-Boneh CIFAR-10 CNN convolutions, batch {BATCH}");
    println!(
        "| layer | GFLOP fwd+bwd | CPU GFLOP/s | wgpu GFLOP/s | speed-up | \
         per-example CPU GFLOP/s | per-example wgpu GFLOP/s | speed-up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut tf, mut tc, mut tg, mut pc, mut pg) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, (name, ci, co, hw)) in LAYERS.iter().enumerate() {
        let flops = 2.0 * (BATCH * co * hw * hw * ci * 9) as f64;
        let (cs, cp) = cpu.layers[i];
        let g = wg.as_ref().map(|w| w.layers[i]);
        println!(
            "| {name} | {:.2} | {:.1} | {} | {} | {:.1} | {} | {} |",
            3.0 * flops / 1e9,
            gf(3.0 * flops, cs),
            col(g.map(|(s, _)| gf(3.0 * flops, s))),
            ratio(cs, g.map(|(s, _)| s)),
            gf(flops, cp),
            col(g.map(|(_, p)| gf(flops, p))),
            ratio(cp, g.map(|(_, p)| p)),
        );
        tf += flops;
        tc += cs;
        pc += cp;
        if let Some((s, p)) = g {
            tg += s;
            pg += p;
        }
    }
    let have = wg.is_some();
    println!(
        "| **total** | {:.2} | **{:.1}** | **{}** | **{}** | {:.1} | {} | {} |\n",
        3.0 * tf / 1e9,
        gf(3.0 * tf, tc),
        col(have.then(|| gf(3.0 * tf, tg))),
        ratio(tc, have.then_some(tg)),
        gf(tf, pc),
        col(have.then(|| gf(tf, pg))),
        ratio(pc, have.then_some(pg)),
    );
    println!(
        "conv step (fwd+bwd): CPU {:.0} examples/s{}\n",
        BATCH as f64 / tc,
        if have {
            format!(", wgpu {:.0} examples/s", BATCH as f64 / tg)
        } else {
            String::new()
        }
    );

    if let Some(d) = gpu {
        let (chained, synced) = dispatch_overhead(d, 2000);
        println!("## wgpu dispatch overhead (2000 tiny kernels)");
        println!("| mode | microseconds per kernel |\n|---|---:|");
        println!("| recorded into one encoder, one sync | {chained:.1} |");
        println!("| synchronised after every kernel | {synced:.1} |");
    }
}
