//! Batch building, augmentation multiplicity, Poisson chunk streams and prefetching.

use sparsedp_data::{
    Augment, BatchBuilder, DataDir, DataError, Dataset, DatasetName, Normalize, PadMode,
    PoissonChunks, PoissonSampler, Prefetch, ShuffledBatches, ShuffledStream, Split,
};
use std::num::NonZeroUsize;
use std::sync::Arc;

fn mnist() -> Arc<Dataset> {
    Arc::new(
        DataDir::at("/nonexistent")
            .load(DatasetName::MnistSubset, Split::Train)
            .expect("subset"),
    )
}

fn builder(ds: &Arc<Dataset>, aug: Augment, views: usize) -> BatchBuilder {
    BatchBuilder::new(
        Arc::clone(ds),
        Normalize::for_dataset(DatasetName::Mnist),
        aug,
        views,
        11,
    )
    .expect("builder")
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("nonzero")
}

#[test]
fn plain_batches_are_normalised_images() {
    let ds = mnist();
    let b = builder(&ds, Augment::NONE, 1)
        .build(&[3, 0, 3999], 0)
        .expect("build");
    assert_eq!(b.shape, [3, 1, 28, 28]);
    assert_eq!(b.data.len(), 3 * 784);
    assert_eq!(
        b.labels,
        vec![
            u32::from(ds.labels()[3]),
            u32::from(ds.labels()[0]),
            u32::from(ds.labels()[3999])
        ]
    );
    let img = ds.image(0).expect("0");
    for (k, &px) in img.iter().enumerate() {
        let want = (f32::from(px) / 255.0 - 0.1307) / 0.3081;
        assert!((b.data[784 + k] - want).abs() < 1e-5);
    }
    assert!(matches!(
        builder(&ds, Augment::NONE, 1).build(&[4000], 0),
        Err(DataError::InvalidArgument { .. })
    ));
    let empty = builder(&ds, Augment::NONE, 1).build(&[], 0).expect("empty");
    assert_eq!(
        (empty.shape, empty.data.len(), empty.is_empty()),
        ([0, 1, 28, 28], 0, true)
    );
}

#[test]
fn multiplicity_gives_k_distinct_deterministic_views_per_example() {
    let ds = mnist();
    let aug = Augment {
        crop: Some(sparsedp_data::RandomCrop {
            padding: 4,
            mode: PadMode::Zero,
        }),
        hflip: true,
    };
    let k = 4;
    let bb = builder(&ds, aug, k);
    let idx = [10, 20, 30];
    let b = bb.build(&idx, 5).expect("build");
    assert_eq!(b.shape, [12, 1, 28, 28]);
    assert_eq!(b.views, 4);
    assert_eq!(b.examples(), 3);
    for (i, &e) in idx.iter().enumerate() {
        for v in 0..k {
            assert_eq!(b.labels[i * k + v], u32::from(ds.labels()[e]));
        }
        let views: Vec<&[f32]> = b.data[i * k * 784..(i + 1) * k * 784].chunks(784).collect();
        let distinct = (0..k)
            .flat_map(|a| (a + 1..k).map(move |c| (a, c)))
            .filter(|&(a, c)| views[a] != views[c])
            .count();
        assert!(
            distinct >= 5,
            "example {e}: views not augmented independently"
        );
    }
    // Same (seed, step, indices): same batch, whatever the thread count.
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let again = single.install(|| bb.build(&idx, 5)).expect("build");
    assert_eq!(b, again);
    // Another step: other views. Where an example sits in a batch does not matter.
    assert_ne!(bb.build(&idx, 6).expect("build").data, b.data);
    let alone = bb.build(&[20], 5).expect("build");
    assert_eq!(alone.data[..], b.data[k * 784..2 * k * 784]);
    assert!(BatchBuilder::new(Arc::clone(&ds), Normalize::unit(1), aug, 0, 0).is_err());
    assert!(BatchBuilder::new(Arc::clone(&ds), Normalize::unit(3), aug, 1, 0).is_err());
}

#[test]
fn poisson_chunks_are_bounded_and_cover_every_step() {
    let ds = mnist();
    let n = ds.len();
    let q = 50.0 / n as f64;
    let sampler = PoissonSampler::new(n, q, 3).expect("sampler");
    let reference = sampler.clone();
    let max = 16;
    let steps = 40u64;
    let chunks: Vec<_> =
        PoissonChunks::new(sampler, builder(&ds, Augment::NONE, 2), nz(max), steps)
            .expect("stream")
            .collect::<Result<_, _>>()
            .expect("chunks");
    let mut step = 0u64;
    let mut i = 0;
    while i < chunks.len() {
        let want = reference.indices_at(step);
        let first = &chunks[i];
        assert_eq!(first.step, step);
        assert_eq!(first.num_chunks, want.len().div_ceil(max).max(1));
        assert_eq!(first.logical_batch_size, want.len());
        let mut got = Vec::new();
        for c in 0..first.num_chunks {
            let ch = &chunks[i + c];
            assert_eq!((ch.step, ch.chunk), (step, c));
            assert!(ch.batch.examples() <= max);
            assert_eq!(ch.batch.shape[0], 2 * ch.batch.examples());
            assert_eq!(ch.is_last_in_step(), c + 1 == first.num_chunks);
            got.extend_from_slice(&ch.batch.indices);
        }
        assert_eq!(got, want);
        i += first.num_chunks;
        step += 1;
    }
    assert_eq!(step, steps);
    // An empty logical batch still yields one (empty) chunk, so the step is not skipped.
    let tiny = PoissonSampler::new(n, 1e-6, 3).expect("sampler");
    let c: Vec<_> = PoissonChunks::new(tiny, builder(&ds, Augment::NONE, 1), nz(8), 5)
        .expect("stream")
        .collect::<Result<_, _>>()
        .expect("chunks");
    assert_eq!(c.len(), 5);
    assert!(
        c.iter()
            .all(|c| c.batch.is_empty() && c.is_last_in_step() && c.num_chunks == 1)
    );
    assert!(
        PoissonChunks::new(
            PoissonSampler::new(10, 0.5, 0).expect("s"),
            builder(&ds, Augment::NONE, 1),
            nz(4),
            1
        )
        .is_err()
    );
}

#[test]
fn prefetching_yields_the_same_stream() {
    let ds = mnist();
    let make = || {
        let s = PoissonSampler::new(ds.len(), 0.02, 8).expect("sampler");
        PoissonChunks::new(
            s,
            builder(&ds, Augment::cifar(PadMode::Reflect), 1),
            nz(32),
            12,
        )
        .expect("stream")
    };
    let direct: Vec<_> = make().collect::<Result<_, _>>().expect("direct");
    let ahead: Vec<_> = make()
        .prefetch(3)
        .collect::<Result<_, _>>()
        .expect("prefetched");
    assert_eq!(direct, ahead);
    // Dropping a prefetcher early stops its thread (the drop joins it; this must not hang).
    let mut p = make().prefetch(1);
    assert!(p.next().is_some());
    drop(p);
    // Shuffled stream, prefetched.
    let sb = ShuffledBatches::new(ds.len(), 256, true, 4).expect("sampler");
    let batches: Vec<_> = ShuffledStream::new(sb, builder(&ds, Augment::NONE, 1), 20)
        .expect("stream")
        .prefetch(2)
        .collect::<Result<_, _>>()
        .expect("batches");
    assert_eq!(batches.len(), 20);
    assert!(batches.iter().all(|b| b.shape == [256, 1, 28, 28]));
    // Generic prefetching keeps order.
    let v: Vec<u32> = Prefetch::new(0..1000u32, 4).collect();
    assert_eq!(v, (0..1000).collect::<Vec<_>>());
}

#[test]
fn prefetching_overlaps_with_the_consumer() {
    // The producer takes 20 ms per item and the consumer 20 ms per item: run one after the other
    // that is 40 ms per item, overlapped about 20.
    let slow = (0..10).inspect(|_| std::thread::sleep(std::time::Duration::from_millis(20)));
    let start = std::time::Instant::now();
    for _ in Prefetch::new(slow, 2) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let t = start.elapsed().as_secs_f64();
    assert!(
        t < 0.36,
        "no overlap: {t:.3} s for 10 items (sequential would be 0.40 s)"
    );
}

#[test]
fn a_panicking_producer_is_not_a_short_stream() {
    let items = (0..5u32).inspect(|&i| assert!(i < 3, "producer failure at item {i}"));
    let mut p = Prefetch::new(items, 1);
    let got: Vec<u32> = (0..3).filter_map(|_| p.next()).collect();
    assert_eq!(got, vec![0, 1, 2]);
    let rest = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.next()));
    assert!(
        rest.is_err(),
        "the producer's panic must reach the consumer"
    );
}
