//! Counter-based random streams: every random decision is drawn from a ChaCha20 generator whose
//! key is derived from (seed, purpose, counters), so any stream can be re-created from a seed and a
//! few integers (a step, an example index, a view), independent of thread scheduling and of what
//! was drawn before.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// What a random stream is used for; part of the key, so streams of different purposes never
/// coincide even under the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Poisson sampling of a logical batch (counter: step).
    Poisson = 1,
    /// Shuffling one epoch (counter: epoch).
    Shuffle = 2,
    /// Augmenting one example (counters: step, example index, view).
    Augment = 3,
    /// Public/private splits (no counter).
    Split = 4,
}

/// The ChaCha20 generator for `(seed, purpose, counters)`.
pub fn stream(seed: u64, purpose: Purpose, counters: &[u64]) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(b"sparsedp-data/v1");
    h.update([purpose as u8]);
    h.update(seed.to_le_bytes());
    h.update((counters.len() as u64).to_le_bytes());
    for c in counters {
        h.update(c.to_le_bytes());
    }
    ChaCha20Rng::from_seed(h.finalize().into())
}

/// A uniform draw from [0, 1) with 53 random bits.
pub fn uniform01(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire's method).
pub fn below(rng: &mut impl Rng, n: u64) -> u64 {
    debug_assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher-Yates shuffle driven by `rng`.
pub fn shuffle<T>(rng: &mut impl Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
