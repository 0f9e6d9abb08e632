//! The class-balanced MNIST subset bundled with the crate: the first 400 training and the first
//! 100 test images of each digit, in file order (`Dataset::class_balanced_indices`), as gzip IDX
//! files in `fixtures/mnist-subset/` (provenance in `fixtures/README.md`; regenerate with
//! `cargo xtask data mnist-subset`). The files are compiled in, so no data directory is needed.

use crate::dataset::Dataset;
use crate::error::Result;
use crate::load::{FileSpec, LoadOptions, Split, idx_dataset_from_gz};

pub(crate) const SUBSET_TRAIN: [FileSpec; 2] = [
    FileSpec {
        name: "train-images-idx3-ubyte",
        records: 4000,
        sha256: Some("1edb0376ad770d05deea6c696693f5882c993d72d1a2f8ea7f0e3f057f1cfb2f"),
    },
    FileSpec {
        name: "train-labels-idx1-ubyte",
        records: 4000,
        sha256: Some("eff120e01f651c4673776d501e2c9cb8986959930f915af888eeda19e96879f6"),
    },
];
pub(crate) const SUBSET_TEST: [FileSpec; 2] = [
    FileSpec {
        name: "t10k-images-idx3-ubyte",
        records: 1000,
        sha256: Some("b97c8bfeb834d8e7999eaa2d69239abe06653dc09c1e5d7eb0c974c5965bc6a9"),
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte",
        records: 1000,
        sha256: Some("41cf2f530031915ba9fbb241407c369dba1acd7515053edff48cebeee8b260f4"),
    },
];

const TRAIN_IMAGES: &[u8] =
    include_bytes!("../../../fixtures/mnist-subset/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] =
    include_bytes!("../../../fixtures/mnist-subset/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] =
    include_bytes!("../../../fixtures/mnist-subset/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] =
    include_bytes!("../../../fixtures/mnist-subset/t10k-labels-idx1-ubyte.gz");

pub(crate) fn load(split: Split, opts: LoadOptions) -> Result<Dataset> {
    let (specs, images, labels): (&[FileSpec], &[u8], &[u8]) = match split {
        Split::Train => (&SUBSET_TRAIN, TRAIN_IMAGES, TRAIN_LABELS),
        Split::Test => (&SUBSET_TEST, TEST_IMAGES, TEST_LABELS),
    };
    idx_dataset_from_gz(
        format!("mnist-subset/{}", split.as_str()),
        images,
        labels,
        specs,
        opts,
    )
}
