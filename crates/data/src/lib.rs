//! Datasets for sparsedp: verified readers, transforms, splits and samplers for DP-SGD.
//!
//! - **Readers** ([`formats`], [`DataDir`]): MNIST and Fashion-MNIST (IDX, gzip or not), CIFAR-10
//!   and CIFAR-100 (binary version). Every file is checked for its magic number, size, record
//!   count, label range and, where published, the SHA-256 of its uncompressed contents; a bad file
//!   is a [`DataError`] that names the file and the problem.
//! - **Data directory** ([`DataDir::resolve`]): `--data-dir`, else `$SPARSEDP_DATA`, else
//!   `./data`, holding `mnist/`, `fashion-mnist/`, `cifar-10-batches-bin/`, `cifar-100-binary/`.
//!   A missing dataset is an error that says how to fetch it (`cargo xtask data <name>`).
//! - **Bundled subset** ([`DatasetName::MnistSubset`]): 4,000 train / 1,000 test MNIST images,
//!   class-balanced, compiled into the crate, so tests and the default job need no download.
//! - **Transforms** ([`Normalize`], [`Augment`]): fixed per-dataset normalisation, random crop
//!   with zero or reflect padding, horizontal flip, K augmented views per example.
//! - **Splits** ([`public_private_split`], [`PublicSource`]).
//! - **Samplers** ([`PoissonSampler`], [`ShuffledBatches`]): Poisson sampling with logical
//!   batches cut into bounded physical chunks ([`PoissonChunks`]); shuffled fixed-size batches.
//!   Both are counter-based ([`rng`]), so a checkpoint is a seed and a step.
//! - **Prefetching** ([`Prefetch`]): batches are built on a background thread (examples in
//!   parallel with rayon) while the caller trains.
//!
//! Images are stored as `u8`, N x C x H x W; batches are plain `Vec<f32>` NCHW with a shape and
//! labels ([`Batch`]).
//!
//! ```
//! use sparsedp_data::{
//!     Augment, BatchBuilder, DataDir, DatasetName, Normalize, PoissonChunks, PoissonSampler, Split,
//! };
//! use std::{num::NonZeroUsize, sync::Arc};
//!
//! let train = Arc::new(DataDir::resolve(None).load(DatasetName::MnistSubset, Split::Train)?);
//! let builder = BatchBuilder::new(
//!     Arc::clone(&train),
//!     Normalize::for_dataset(DatasetName::MnistSubset),
//!     Augment::NONE,
//!     1,
//!     7,
//! )?;
//! let sampler = PoissonSampler::new(train.len(), 64.0 / train.len() as f64, 42)?;
//! let chunk = NonZeroUsize::new(32).expect("nonzero");
//! for c in PoissonChunks::new(sampler, builder, chunk, 3)?.prefetch(2) {
//!     let c = c?;
//!     assert!(c.batch.examples() <= 32);
//!     // ... accumulate clipped gradients; after `c.is_last_in_step()`, noise and update.
//! }
//! # Ok::<(), sparsedp_data::DataError>(())
//! ```

pub mod batch;
mod bundled;
pub mod dataset;
pub mod error;
pub mod formats;
pub mod load;
pub mod prefetch;
pub mod rng;
pub mod sampler;
pub mod split;
pub mod transform;

pub use batch::{Batch, BatchBuilder, Chunk, PoissonChunks, ShuffledStream};
pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use load::{
    DATA_DIR_ENV, DEFAULT_DATA_DIR, DataDir, DataDirSource, DatasetName, FileSpec, LoadOptions,
    Split, load,
};
pub use prefetch::Prefetch;
pub use sampler::{
    LogicalBatch, PoissonMethod, PoissonSampler, PoissonState, ShuffleState, ShuffledBatch,
    ShuffledBatches,
};
pub use split::{PublicPrivate, PublicSource, SplitIndices, public_private_split};
pub use transform::{Augment, Normalize, PadMode, RandomCrop, ViewParams};
