//! Turning example indices into `f32` batches, and the batch streams a trainer consumes.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::prefetch::Prefetch;
use crate::rng::{self, Purpose};
use crate::sampler::{LogicalBatch, PoissonSampler, ShuffledBatches};
use crate::transform::{Augment, Normalize};
use rayon::prelude::*;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// A batch ready for a model: `f32` values in NCHW order plus labels.
///
/// With augmentation multiplicity K (`views`), the rows are example-major: rows
/// `i * K .. (i + 1) * K` are the K views of example `indices[i]`, so `shape[0] = K * indices.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `shape.iter().product()` values, NCHW.
    pub data: Vec<f32>,
    /// `[rows, channels, height, width]`.
    pub shape: [usize; 4],
    /// The label of each row.
    pub labels: Vec<u32>,
    /// The dataset index of each example (one per K rows).
    pub indices: Vec<usize>,
    /// Views per example (K >= 1).
    pub views: usize,
}

impl Batch {
    /// Number of examples (not rows).
    pub fn examples(&self) -> usize {
        self.indices.len()
    }

    /// True when the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Builds [`Batch`]es from a dataset: augmentation, K views per example, normalisation.
///
/// Random choices for view `v` of example `i` at step `t` come from a generator keyed by
/// `(seed, t, i, v)`, so a batch is the same whatever the thread count or the order of building.
/// Examples are decoded in parallel with rayon.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    dataset: Arc<Dataset>,
    normalize: Normalize,
    augment: Augment,
    views: usize,
    seed: u64,
}

impl BatchBuilder {
    /// A builder; `views` is the augmentation multiplicity K (1 for none).
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `views` is zero, the normalisation's channel count
    /// differs from the dataset's, or the augmentation does not fit the image size.
    pub fn new(
        dataset: Arc<Dataset>,
        normalize: Normalize,
        augment: Augment,
        views: usize,
        seed: u64,
    ) -> Result<Self> {
        let [c, h, w] = dataset.shape();
        if views == 0 {
            return Err(DataError::InvalidArgument {
                name: "augmentation multiplicity",
                detail: "0 views per example; use 1 for no multiplicity".into(),
            });
        }
        if normalize.channels() != c {
            return Err(DataError::InvalidArgument {
                name: "normalisation",
                detail: format!(
                    "{} channels for {} with {c} channels",
                    normalize.channels(),
                    dataset.name()
                ),
            });
        }
        augment.validate(h, w)?;
        Ok(Self {
            dataset,
            normalize,
            augment,
            views,
            seed,
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// Views per example (K).
    pub fn views(&self) -> usize {
        self.views
    }

    /// Builds the batch of `indices` for step `step`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] naming the first index out of range.
    pub fn build(&self, indices: &[usize], step: u64) -> Result<Batch> {
        let ds = &*self.dataset;
        if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
            return Err(DataError::InvalidArgument {
                name: "indices",
                detail: format!(
                    "index {bad} out of range for {} ({} examples)",
                    ds.name(),
                    ds.len()
                ),
            });
        }
        let shape = ds.shape();
        let per = ds.image_len();
        let k = self.views;
        let mut data = vec![0f32; indices.len() * k * per];
        if per > 0 {
            data.par_chunks_mut(per * k)
                .zip(indices.par_iter())
                .try_for_each(|(out, &i)| {
                    let src = &ds.images()[i * per..(i + 1) * per];
                    for (v, view) in out.chunks_exact_mut(per).enumerate() {
                        let params = if self.augment.is_identity() {
                            Default::default()
                        } else {
                            let mut r = rng::stream(
                                self.seed,
                                Purpose::Augment,
                                &[step, i as u64, v as u64],
                            );
                            self.augment.draw(&mut r)
                        };
                        self.augment
                            .apply(src, shape, params, &self.normalize, view)?;
                    }
                    Ok::<(), DataError>(())
                })?;
        }
        let labels = indices
            .iter()
            .flat_map(|&i| std::iter::repeat_n(u32::from(ds.labels()[i]), k))
            .collect();
        Ok(Batch {
            data,
            shape: [indices.len() * k, shape[0], shape[1], shape[2]],
            labels,
            indices: indices.to_vec(),
            views: k,
        })
    }
}

/// One physical chunk of a DP-SGD step's logical batch.
///
/// Every step yields at least one chunk: an empty logical batch yields one empty chunk
/// (`num_chunks == 1`, no examples), so the trainer still adds noise and counts the step.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The step (logical batch) this chunk belongs to.
    pub step: u64,
    /// Position of this chunk within the step, `0..num_chunks`.
    pub chunk: usize,
    /// Chunks in this step.
    pub num_chunks: usize,
    /// Examples in the whole logical batch (the realised Poisson batch size).
    pub logical_batch_size: usize,
    /// The chunk's data.
    pub batch: Batch,
}

impl Chunk {
    /// True for the step's last chunk: after it the trainer adds noise and updates.
    pub fn is_last_in_step(&self) -> bool {
        self.chunk + 1 == self.num_chunks
    }
}

/// DP-SGD batches: Poisson-sampled logical batches split into physical chunks of at most
/// `max_chunk` examples (`max_chunk * K` rows), so memory stays bounded whatever the draw.
///
/// Yields the chunks of steps `start..start + steps`, where `start` is the sampler's step.
/// To checkpoint, record the step of the last chunk with [`Chunk::is_last_in_step`] and resume
/// with the sampler's state at that step + 1.
#[derive(Debug)]
pub struct PoissonChunks {
    sampler: PoissonSampler,
    builder: BatchBuilder,
    max_chunk: NonZeroUsize,
    end_step: u64,
    current: Option<(LogicalBatch, usize)>,
}

impl PoissonChunks {
    /// Chunks of `steps` steps drawn by `sampler` and built by `builder`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when the sampler's `n` differs from the dataset's size.
    pub fn new(
        sampler: PoissonSampler,
        builder: BatchBuilder,
        max_chunk: NonZeroUsize,
        steps: u64,
    ) -> Result<Self> {
        if sampler.n() != builder.dataset().len() {
            return Err(DataError::InvalidArgument {
                name: "sampler",
                detail: format!(
                    "samples from {} examples but {} has {}",
                    sampler.n(),
                    builder.dataset().name(),
                    builder.dataset().len()
                ),
            });
        }
        let end_step = sampler.step().saturating_add(steps);
        Ok(Self {
            sampler,
            builder,
            max_chunk,
            end_step,
            current: None,
        })
    }

    /// Runs the stream on a background thread, keeping up to `depth` chunks ready.
    pub fn prefetch(self, depth: usize) -> Prefetch<Result<Chunk>> {
        Prefetch::new(self, depth)
    }
}

impl Iterator for PoissonChunks {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        if self.current.is_none() {
            if self.sampler.step() >= self.end_step {
                return None;
            }
            self.current = Some((self.sampler.next_batch(), 0));
        }
        let (logical, chunk) = self.current.take()?;
        let num_chunks = logical.num_chunks(self.max_chunk).max(1);
        let m = self.max_chunk.get();
        let lo = (chunk * m).min(logical.len());
        let hi = (lo + m).min(logical.len());
        let built = self.builder.build(&logical.indices[lo..hi], logical.step);
        let out = built.map(|batch| Chunk {
            step: logical.step,
            chunk,
            num_chunks,
            logical_batch_size: logical.len(),
            batch,
        });
        if chunk + 1 < num_chunks {
            self.current = Some((logical, chunk + 1));
        }
        Some(out)
    }
}

/// Non-private training batches: shuffled fixed-size batches, built and numbered by a global
/// batch counter (the step passed to the builder).
#[derive(Debug)]
pub struct ShuffledStream {
    sampler: ShuffledBatches,
    builder: BatchBuilder,
    step: u64,
    end_step: u64,
}

impl ShuffledStream {
    /// The first `steps` batches of `sampler`, built by `builder`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when the sampler's `n` differs from the dataset's size.
    pub fn new(sampler: ShuffledBatches, builder: BatchBuilder, steps: u64) -> Result<Self> {
        if sampler.state().n != builder.dataset().len() {
            return Err(DataError::InvalidArgument {
                name: "sampler",
                detail: format!(
                    "samples from {} examples but {} has {}",
                    sampler.state().n,
                    builder.dataset().name(),
                    builder.dataset().len()
                ),
            });
        }
        Ok(Self {
            sampler,
            builder,
            step: 0,
            end_step: steps,
        })
    }

    /// Runs the stream on a background thread, keeping up to `depth` batches ready.
    pub fn prefetch(self, depth: usize) -> Prefetch<Result<Batch>> {
        Prefetch::new(self, depth)
    }
}

impl Iterator for ShuffledStream {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.step >= self.end_step {
            return None;
        }
        let b = self.sampler.next_batch();
        let out = self.builder.build(&b.indices, self.step);
        self.step += 1;
        Some(out)
    }
}
