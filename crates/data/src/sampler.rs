//! Batch samplers: Poisson sampling for DP-SGD and shuffled fixed-size batches for non-private
//! training.
//!
//! Both are pure functions of a small state (seed plus counters, see [`crate::rng`]), so a
//! checkpoint is a few integers ([`PoissonState`], [`ShuffleState`]) that serialise to JSON or
//! bytes, and the stream after a restore is bit-identical to an uninterrupted run.

use crate::error::{DataError, Result};
use crate::rng::{self, Purpose};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;

/// How a Poisson sample is drawn. Both give each example an independent inclusion with
/// probability q (up to the rounding of one f64 per draw); they produce different streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PoissonMethod {
    /// Jump from one included example to the next with a geometric gap
    /// (`floor(ln U / ln(1 - q))`): about `q * N` draws per step instead of `N`.
    #[default]
    Geometric,
    /// One uniform draw per example, included when below q: `N` draws per step.
    Bernoulli,
}

/// The checkpoint of a [`PoissonSampler`]: its configuration and the next step to draw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoissonState {
    /// Number of examples sampled from.
    pub n: usize,
    /// Sampling rate q, in [0, 1].
    pub q: f64,
    /// The seed.
    pub seed: u64,
    /// The next step to draw (steps already drawn: `0..step`).
    pub step: u64,
    /// The sampling method.
    pub method: PoissonMethod,
}

/// Poisson sampling: at every step each of `n` examples joins the logical batch independently
/// with probability `q`, so batch sizes follow Binomial(n, q) and may be zero.
///
/// The batch of step `t` depends only on `(seed, t)`. An empty logical batch is an ordinary step:
/// DP-SGD must still add noise and count the step in the accountant.
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonSampler {
    state: PoissonState,
}

/// The examples drawn for one step, sorted ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalBatch {
    /// The step that drew it.
    pub step: u64,
    /// The drawn example indices.
    pub indices: Vec<usize>,
}

impl LogicalBatch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for an empty draw (possible under Poisson sampling).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The batch as physical chunks of at most `max` examples each, in order; an empty batch
    /// has no chunks.
    pub fn chunks(&self, max: NonZeroUsize) -> std::slice::Chunks<'_, usize> {
        self.indices.chunks(max.get())
    }

    /// Number of physical chunks of at most `max` examples.
    pub fn num_chunks(&self, max: NonZeroUsize) -> usize {
        self.indices.len().div_ceil(max.get())
    }
}

impl PoissonSampler {
    /// A sampler over `n` examples with rate `q`, starting at step 0, using
    /// [`PoissonMethod::Geometric`].
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `q` is not in [0, 1].
    pub fn new(n: usize, q: f64, seed: u64) -> Result<Self> {
        Self::from_state(PoissonState {
            n,
            q,
            seed,
            step: 0,
            method: PoissonMethod::default(),
        })
    }

    /// Restores a sampler from a checkpoint.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `state.q` is not in [0, 1].
    pub fn from_state(state: PoissonState) -> Result<Self> {
        if !(0.0..=1.0).contains(&state.q) {
            return Err(DataError::InvalidArgument {
                name: "sampling rate q",
                detail: format!("{} is not in [0, 1]", state.q),
            });
        }
        Ok(Self { state })
    }

    /// The same sampler drawing with `method` (changes the stream).
    pub fn with_method(mut self, method: PoissonMethod) -> Self {
        self.state.method = method;
        self
    }

    /// The checkpoint: restore with [`Self::from_state`].
    pub fn state(&self) -> PoissonState {
        self.state
    }

    /// The next step to draw.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// Sets the next step to draw (e.g. to resume after step `t`, set `t + 1`).
    pub fn set_step(&mut self, step: u64) {
        self.state.step = step;
    }

    /// Number of examples.
    pub fn n(&self) -> usize {
        self.state.n
    }

    /// The sampling rate q.
    pub fn q(&self) -> f64 {
        self.state.q
    }

    /// The expected logical batch size q * n: DP-SGD divides the noisy sum by this, not by the
    /// realised batch size.
    pub fn expected_batch_size(&self) -> f64 {
        self.state.q * self.state.n as f64
    }

    /// The indices of step `step`, sorted; a pure function of `(seed, step)` and the configuration.
    pub fn indices_at(&self, step: u64) -> Vec<usize> {
        let PoissonState {
            n, q, seed, method, ..
        } = self.state;
        if q <= 0.0 || n == 0 {
            return Vec::new();
        }
        if q >= 1.0 {
            return (0..n).collect();
        }
        let mut rng = rng::stream(seed, Purpose::Poisson, &[step]);
        match method {
            PoissonMethod::Bernoulli => (0..n).filter(|_| rng::uniform01(&mut rng) < q).collect(),
            PoissonMethod::Geometric => {
                let ln_keep = (-q).ln_1p(); // ln(1 - q) < 0
                let mut out = Vec::with_capacity((q * n as f64 * 1.2) as usize + 8);
                let mut next = 0usize; // first candidate not yet decided
                loop {
                    // U in (0, 1]; the gap G = floor(ln U / ln(1 - q)) has P(G >= k) = (1 - q)^k.
                    let u = 1.0 - rng::uniform01(&mut rng);
                    let gap = (u.ln() / ln_keep).floor();
                    if gap >= (n - next) as f64 {
                        break;
                    }
                    next += gap as usize;
                    out.push(next);
                    next += 1;
                }
                out
            }
        }
    }

    /// Draws the next logical batch and advances the step.
    pub fn next_batch(&mut self) -> LogicalBatch {
        let step = self.state.step;
        let indices = self.indices_at(step);
        self.state.step += 1;
        LogicalBatch { step, indices }
    }
}

impl Iterator for PoissonSampler {
    type Item = LogicalBatch;

    /// Never ends: the caller decides the number of steps.
    fn next(&mut self) -> Option<LogicalBatch> {
        Some(self.next_batch())
    }
}

/// The checkpoint of a [`ShuffledBatches`] sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleState {
    /// Number of examples.
    pub n: usize,
    /// Examples per batch.
    pub batch_size: usize,
    /// Drop the last, short batch of each epoch.
    pub drop_last: bool,
    /// The seed.
    pub seed: u64,
    /// The current epoch.
    pub epoch: u64,
    /// The next batch within the epoch.
    pub batch: usize,
}

/// Fixed-size batches from a fresh permutation each epoch (for non-private training).
#[derive(Debug, Clone)]
pub struct ShuffledBatches {
    state: ShuffleState,
    permutation: Option<(u64, Vec<usize>)>,
}

/// One batch of [`ShuffledBatches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffledBatch {
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its position in the epoch.
    pub batch: usize,
    /// The example indices, in permutation order.
    pub indices: Vec<usize>,
}

impl ShuffledBatches {
    /// A sampler over `n` examples in batches of `batch_size`, starting at epoch 0.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `batch_size` is zero, `n` is zero, or `drop_last` is set
    /// and `batch_size > n` (no batch at all).
    pub fn new(n: usize, batch_size: usize, drop_last: bool, seed: u64) -> Result<Self> {
        Self::from_state(ShuffleState {
            n,
            batch_size,
            drop_last,
            seed,
            epoch: 0,
            batch: 0,
        })
    }

    /// Restores a sampler from a checkpoint.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn from_state(state: ShuffleState) -> Result<Self> {
        if state.batch_size == 0 || state.n == 0 || (state.drop_last && state.batch_size > state.n)
        {
            return Err(DataError::InvalidArgument {
                name: "batch size",
                detail: format!(
                    "{} for {} examples (drop_last = {})",
                    state.batch_size, state.n, state.drop_last
                ),
            });
        }
        Ok(Self {
            state,
            permutation: None,
        })
    }

    /// The checkpoint.
    pub fn state(&self) -> ShuffleState {
        self.state
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.state.drop_last {
            self.state.n / self.state.batch_size
        } else {
            self.state.n.div_ceil(self.state.batch_size)
        }
    }

    /// The permutation of epoch `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.state.n).collect();
        rng::shuffle(
            &mut rng::stream(self.state.seed, Purpose::Shuffle, &[epoch]),
            &mut p,
        );
        p
    }

    /// The next batch; moves to the next epoch after the last batch of one.
    pub fn next_batch(&mut self) -> ShuffledBatch {
        if self.state.batch >= self.batches_per_epoch() {
            self.state.epoch += 1;
            self.state.batch = 0;
        }
        let epoch = self.state.epoch;
        if self.permutation.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.permutation = Some((epoch, self.permutation(epoch)));
        }
        let perm = self
            .permutation
            .as_ref()
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[]);
        let start = self.state.batch * self.state.batch_size;
        let end = (start + self.state.batch_size).min(perm.len());
        let batch = ShuffledBatch {
            epoch,
            batch: self.state.batch,
            indices: perm[start..end].to_vec(),
        };
        self.state.batch += 1;
        batch
    }
}

impl Iterator for ShuffledBatches {
    type Item = ShuffledBatch;

    /// Never ends: the caller decides the number of epochs.
    fn next(&mut self) -> Option<ShuffledBatch> {
        Some(self.next_batch())
    }
}

macro_rules! checkpoint_codec {
    ($t:ty) => {
        impl $t {
            /// The checkpoint as JSON.
            pub fn to_json(&self) -> String {
                // Serialising plain integers, floats and unit enums cannot fail.
                serde_json::to_string(self).unwrap_or_default()
            }

            /// Parses a checkpoint written by `to_json`.
            ///
            /// # Errors
            /// [`DataError::BadCheckpoint`] when the text is not such a checkpoint.
            pub fn from_json(s: &str) -> Result<Self> {
                serde_json::from_str(s).map_err(|e| DataError::BadCheckpoint {
                    detail: e.to_string(),
                })
            }

            /// The checkpoint as UTF-8 JSON bytes.
            pub fn to_bytes(&self) -> Vec<u8> {
                self.to_json().into_bytes()
            }

            /// Parses bytes written by `to_bytes`.
            ///
            /// # Errors
            /// [`DataError::BadCheckpoint`] when the bytes are not such a checkpoint.
            pub fn from_bytes(b: &[u8]) -> Result<Self> {
                serde_json::from_slice(b).map_err(|e| DataError::BadCheckpoint {
                    detail: e.to_string(),
                })
            }
        }
    };
}
checkpoint_codec!(PoissonState);
checkpoint_codec!(ShuffleState);
