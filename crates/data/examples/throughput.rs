//! Measures how fast batches are prepared: CIFAR-sized images (3 x 32 x 32) with random crop
//! (reflect padding 4), flip and normalisation, K views per example, Poisson-sampled with
//! expected batch 256 and chunks of 64, built on rayon and prefetched on a background thread.
//!
//! Run in release: `cargo run --release -p sparsedp-data --example throughput [K]`.
//! Uses synthetic pixels, so it needs no dataset.

use sparsedp_data::{
    Augment, BatchBuilder, Dataset, DatasetName, Normalize, PadMode, PoissonChunks, PoissonSampler,
};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let k: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1);
    let n = 50_000;
    let images: Vec<u8> = (0..n * 3072)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let ds = Arc::new(Dataset::new(
        "synthetic-cifar",
        [3, 32, 32],
        10,
        images,
        labels,
        None,
    )?);
    let builder = BatchBuilder::new(
        Arc::clone(&ds),
        Normalize::for_dataset(DatasetName::Cifar10),
        Augment::cifar(PadMode::Reflect),
        k,
        1,
    )?;
    let sampler = PoissonSampler::new(n, 256.0 / n as f64, 2)?;
    let steps = 100;
    let chunk = NonZeroUsize::new(64).ok_or("zero chunk")?;
    let start = Instant::now();
    let mut examples = 0usize;
    for c in PoissonChunks::new(sampler, builder, chunk, steps)?.prefetch(4) {
        examples += c?.batch.examples();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{steps} steps, {examples} examples x {k} views in {secs:.2} s: {:.0} views/s, {:.1} ms per step ({} rayon threads)",
        (examples * k) as f64 / secs,
        1000.0 * secs / steps as f64,
        rayon::current_num_threads()
    );
    Ok(())
}
