//! Samplers: Poisson inclusion frequencies and batch-size distribution (fixed seeds), chunk
//! bounds, checkpoint/restore, shuffled batches.

use proptest::prelude::*;
use sparsedp_data::{
    DataError, PoissonMethod, PoissonSampler, PoissonState, ShuffleState, ShuffledBatches,
};
use std::num::NonZeroUsize;

const METHODS: [PoissonMethod; 2] = [PoissonMethod::Geometric, PoissonMethod::Bernoulli];

/// Upper `alpha = 0.001` quantile of chi-square with `df` degrees of freedom
/// (Wilson-Hilferty; accurate to well under 1% for df >= 10).
fn chi2_crit_001(df: f64) -> f64 {
    let z = 3.090_232;
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Chi-square statistic of observed batch sizes against Binomial(n, q), with bins pooled so
/// each expects at least 20 batches; returns (statistic, degrees of freedom).
fn binomial_chi2(sizes: &[usize], n: usize, q: f64) -> (f64, f64) {
    let t = sizes.len() as f64;
    // log pmf by the ratio recurrence, from k = 0.
    let mut lp = vec![0.0f64; n + 1];
    lp[0] = n as f64 * (-q).ln_1p();
    let odds = (q / (1.0 - q)).ln();
    for k in 0..n {
        lp[k + 1] = lp[k] + ((n - k) as f64 / (k + 1) as f64).ln() + odds;
    }
    let mut counts = vec![0usize; n + 1];
    for &s in sizes {
        counts[s] += 1;
    }
    // Pool k = 0.. into bins of expected >= 20; the last bin takes the upper tail.
    let mut bins: Vec<(f64, usize)> = Vec::new();
    let (mut e, mut o) = (0.0, 0usize);
    for k in 0..=n {
        e += t * lp[k].exp();
        o += counts[k];
        if e >= 20.0 {
            bins.push((e, o));
            e = 0.0;
            o = 0;
        }
    }
    if let Some(last) = bins.last_mut() {
        last.0 += e;
        last.1 += o;
    }
    let chi2 = bins.iter().map(|&(e, o)| (o as f64 - e).powi(2) / e).sum();
    (chi2, (bins.len() - 1) as f64)
}

#[test]
fn batch_sizes_follow_binomial() {
    // Geometric: MNIST-sized; Bernoulli (N draws per step): smaller, to keep the test quick.
    for (method, n, q, steps) in [
        (
            PoissonMethod::Geometric,
            60000usize,
            256.0 / 60000.0,
            6000usize,
        ),
        (PoissonMethod::Bernoulli, 4000, 0.025, 4000),
    ] {
        let mut s = PoissonSampler::new(n, q, 2024)
            .expect("sampler")
            .with_method(method);
        let sizes: Vec<usize> = (0..steps).map(|_| s.next_batch().len()).collect();
        let (chi2, df) = binomial_chi2(&sizes, n, q);
        let crit = chi2_crit_001(df);
        assert!(
            chi2 < crit,
            "{method:?}: chi2 {chi2:.1} >= {crit:.1} (df {df})"
        );
        let mean = sizes.iter().sum::<usize>() as f64 / steps as f64;
        let var = sizes
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / (steps - 1) as f64;
        let (m, v) = (n as f64 * q, n as f64 * q * (1.0 - q));
        assert!(
            (mean - m).abs() < 5.0 * (v / steps as f64).sqrt(),
            "{method:?}: mean {mean} vs {m}"
        );
        assert!(
            (var / v - 1.0).abs() < 0.1,
            "{method:?}: variance {var} vs {v}"
        );

        // The same test has power: a sampler at 1.05 q is rejected.
        let mut wrong = PoissonSampler::new(n, q * 1.05, 2024)
            .expect("sampler")
            .with_method(method);
        let sizes: Vec<usize> = (0..steps).map(|_| wrong.next_batch().len()).collect();
        let (chi2, df) = binomial_chi2(&sizes, n, q);
        assert!(
            chi2 > chi2_crit_001(df),
            "{method:?}: a 5% rate error went unnoticed"
        );
    }
}

#[test]
fn each_example_is_included_with_probability_q() {
    for (method, n, q, steps) in [
        (PoissonMethod::Geometric, 3000usize, 0.05, 4000usize),
        (PoissonMethod::Bernoulli, 1000, 0.05, 4000),
    ] {
        let mut s = PoissonSampler::new(n, q, 99)
            .expect("sampler")
            .with_method(method);
        let mut counts = vec![0usize; n];
        let mut adjacent = 0usize;
        for _ in 0..steps {
            let b = s.next_batch();
            assert!(
                b.indices.windows(2).all(|w| w[0] < w[1]),
                "sorted, no repeats"
            );
            assert!(b.indices.iter().all(|&i| i < n));
            adjacent += b.indices.windows(2).filter(|w| w[1] == w[0] + 1).count();
            for &i in &b.indices {
                counts[i] += 1;
            }
        }
        let (mean, sd) = (steps as f64 * q, (steps as f64 * q * (1.0 - q)).sqrt());
        // Every example within 5 sd (fixed seed; P(any beyond) is about 1e-3 for the sizes here).
        for (i, &c) in counts.iter().enumerate() {
            let z = (c as f64 - mean) / sd;
            assert!(
                z.abs() < 5.0,
                "{method:?}: example {i} drawn {c} times, z = {z:.2}"
            );
        }
        // Jointly: sum of z^2 is chi-square with n degrees of freedom.
        let chi2: f64 = counts
            .iter()
            .map(|&c| ((c as f64 - mean) / sd).powi(2))
            .sum();
        assert!(
            chi2 < chi2_crit_001(n as f64),
            "{method:?}: chi2 {chi2:.0} for df {n}"
        );
        assert!(
            chi2 > n as f64 * 0.8,
            "{method:?}: counts suspiciously even (chi2 {chi2:.0})"
        );
        // Pairs of neighbours are included together with probability q^2 (independence;
        // catches off-by-one errors in the geometric skips).
        let expect = steps as f64 * (n - 1) as f64 * q * q;
        assert!(
            (adjacent as f64 - expect).abs() < 5.0 * expect.sqrt(),
            "{method:?}: {adjacent} adjacent pairs, expected {expect:.0}"
        );
        // First and last examples are reachable.
        assert!(counts[0] > 0 && counts[n - 1] > 0);
    }
}

#[test]
fn extreme_rates_and_invalid_rates() {
    for m in METHODS {
        let mut none = PoissonSampler::new(100, 0.0, 1)
            .expect("q = 0")
            .with_method(m);
        assert!((0..50).all(|_| none.next_batch().is_empty()));
        let mut all = PoissonSampler::new(100, 1.0, 1)
            .expect("q = 1")
            .with_method(m);
        assert_eq!(all.next_batch().indices, (0..100).collect::<Vec<_>>());
        let mut empty = PoissonSampler::new(0, 0.5, 1)
            .expect("n = 0")
            .with_method(m);
        assert!(empty.next_batch().is_empty());
    }
    for q in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            PoissonSampler::new(10, q, 0),
            Err(DataError::InvalidArgument { .. })
        ));
    }
    // Tiny q: mostly empty steps, which are ordinary steps.
    let mut s = PoissonSampler::new(1000, 1e-4, 3).expect("sampler");
    let empties = (0..1000).filter(|_| s.next_batch().is_empty()).count();
    assert!(empties > 850, "{empties} empty steps of 1000 at q N = 0.1");
    assert_eq!(s.step(), 1000);
}

#[test]
fn stream_is_reproducible_from_a_checkpoint() {
    for m in METHODS {
        let q = 0.013_579_246_801_357_9; // not a short decimal: must survive JSON exactly
        let mut a = PoissonSampler::new(5000, q, 77)
            .expect("sampler")
            .with_method(m);
        let first: Vec<_> = (0..40).map(|_| a.next_batch()).collect();
        let json = a.state().to_json();
        let bytes = a.state().to_bytes();
        let rest: Vec<_> = (0..60).map(|_| a.next_batch()).collect();

        let state = PoissonState::from_json(&json).expect("json");
        assert_eq!(state.q.to_bits(), q.to_bits());
        let mut b = PoissonSampler::from_state(state).expect("restore");
        let again: Vec<_> = (0..60).map(|_| b.next_batch()).collect();
        assert_eq!(rest, again, "{m:?}: resumed stream differs");
        let mut c = PoissonSampler::from_state(PoissonState::from_bytes(&bytes).expect("bytes"))
            .expect("restore");
        assert_eq!(c.next_batch(), rest[0]);
        // A fresh sampler with the same seed gives the same stream from the start, and a step is
        // a pure function of (seed, step).
        let mut d = PoissonSampler::new(5000, q, 77)
            .expect("sampler")
            .with_method(m);
        assert_eq!(d.next_batch(), first[0]);
        assert_eq!(d.indices_at(45), rest[5].indices);
        // Another seed gives another stream.
        let e = PoissonSampler::new(5000, q, 78)
            .expect("sampler")
            .with_method(m);
        assert_ne!(e.indices_at(0), first[0].indices);
    }
    assert!(matches!(
        PoissonState::from_json("{\"seed\":1}"),
        Err(DataError::BadCheckpoint { .. })
    ));
    assert!(PoissonState::from_bytes(b"\xff").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Physical chunks never exceed the configured size and, in order, make up the logical batch.
    #[test]
    fn chunks_are_bounded_and_cover_the_batch(
        n in 0usize..3000, q in 0.0f64..=1.0, max in 1usize..300, seed in any::<u64>(), step in 0u64..1000,
    ) {
        let mut s = PoissonSampler::new(n, q, seed).expect("sampler");
        s.set_step(step);
        let b = s.next_batch();
        let max = NonZeroUsize::new(max).expect("nonzero");
        let chunks: Vec<&[usize]> = b.chunks(max).collect();
        prop_assert_eq!(chunks.len(), b.num_chunks(max));
        prop_assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= max.get()));
        prop_assert_eq!(chunks.concat(), b.indices.clone());
    }
}

#[test]
fn shuffled_batches_cover_each_epoch_once() {
    let mut s = ShuffledBatches::new(1003, 100, false, 5).expect("sampler");
    assert_eq!(s.batches_per_epoch(), 11);
    for epoch in 0..3u64 {
        let mut seen = Vec::new();
        for b in 0..11 {
            let batch = s.next_batch();
            assert_eq!((batch.epoch, batch.batch), (epoch, b));
            assert_eq!(batch.indices.len(), if b == 10 { 3 } else { 100 });
            seen.extend(batch.indices);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..1003).collect::<Vec<_>>());
    }
    assert_ne!(s.permutation(0), s.permutation(1));
    assert_ne!(s.permutation(0), (0..1003).collect::<Vec<_>>());
    let mut d = ShuffledBatches::new(1003, 100, true, 5).expect("drop_last");
    assert_eq!(d.batches_per_epoch(), 10);
    assert!((0..25).all(|_| d.next_batch().indices.len() == 100));
    assert!(ShuffledBatches::new(10, 0, false, 0).is_err());
    assert!(ShuffledBatches::new(10, 11, true, 0).is_err());
}

#[test]
fn shuffled_batches_resume_mid_epoch() {
    let mut a = ShuffledBatches::new(500, 64, false, 9).expect("sampler");
    for _ in 0..13 {
        a.next_batch();
    }
    let state = ShuffleState::from_json(&a.state().to_json()).expect("json");
    let mut b = ShuffledBatches::from_state(state).expect("restore");
    for _ in 0..20 {
        assert_eq!(a.next_batch(), b.next_batch());
    }
}
