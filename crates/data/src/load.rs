//! The dataset catalogue, the data directory and the verified loaders.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::formats::{
    CIFAR_PIXELS, CifarLayout, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, maybe_gunzip, parse_cifar,
    parse_idx, read_maybe_gz, verify_sha256,
};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the data directory when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "SPARSEDP_DATA";
/// The data directory used when neither `--data-dir` nor [`DATA_DIR_ENV`] is set.
pub const DEFAULT_DATA_DIR: &str = "data";

/// The datasets this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// MNIST handwritten digits, 1 x 28 x 28, 10 classes, 60,000 train / 10,000 test.
    Mnist,
    /// Fashion-MNIST, 1 x 28 x 28, 10 classes, 60,000 train / 10,000 test.
    FashionMnist,
    /// CIFAR-10, 3 x 32 x 32, 10 classes, 50,000 train / 10,000 test.
    Cifar10,
    /// CIFAR-100, 3 x 32 x 32, 100 fine classes (20 coarse), 50,000 train / 10,000 test.
    Cifar100,
    /// The class-balanced MNIST subset bundled with the crate (4,000 train / 1,000 test); needs
    /// no data directory.
    MnistSubset,
}

/// Which half of a dataset's official split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

impl Split {
    /// `train` or `test`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }
}

/// One file of a dataset: its name under the dataset's folder, the number of records it holds
/// and, where published, the SHA-256 of its uncompressed contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// File name (IDX files: without `.gz`; both `NAME.gz` and `NAME` are accepted).
    pub name: &'static str,
    /// Records in the file.
    pub records: usize,
    /// SHA-256 of the uncompressed contents, lowercase hex, where known.
    pub sha256: Option<&'static str>,
}

const fn spec(name: &'static str, records: usize, sha256: &'static str) -> FileSpec {
    FileSpec {
        name,
        records,
        sha256: Some(sha256),
    }
}

const MNIST_TRAIN: [FileSpec; 2] = [
    spec(
        "train-images-idx3-ubyte",
        60000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    spec(
        "train-labels-idx1-ubyte",
        60000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
];
const MNIST_TEST: [FileSpec; 2] = [
    spec(
        "t10k-images-idx3-ubyte",
        10000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    spec(
        "t10k-labels-idx1-ubyte",
        10000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];
const FASHION_TRAIN: [FileSpec; 2] = [
    spec(
        "train-images-idx3-ubyte",
        60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    spec(
        "train-labels-idx1-ubyte",
        60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
];
const FASHION_TEST: [FileSpec; 2] = [
    spec(
        "t10k-images-idx3-ubyte",
        10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    spec(
        "t10k-labels-idx1-ubyte",
        10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];
const CIFAR10_TRAIN: [FileSpec; 5] = [
    spec(
        "data_batch_1.bin",
        10000,
        "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    ),
    spec(
        "data_batch_2.bin",
        10000,
        "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    ),
    spec(
        "data_batch_3.bin",
        10000,
        "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    ),
    spec(
        "data_batch_4.bin",
        10000,
        "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    ),
    spec(
        "data_batch_5.bin",
        10000,
        "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    ),
];
const CIFAR10_TEST: [FileSpec; 1] = [spec(
    "test_batch.bin",
    10000,
    "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
)];
// No SHA-256 of the extracted CIFAR-100 binaries is published where this project could confirm it,
// so they are checked for size, record count and label ranges only.
const CIFAR100_TRAIN: [FileSpec; 1] = [FileSpec {
    name: "train.bin",
    records: 50000,
    sha256: None,
}];
const CIFAR100_TEST: [FileSpec; 1] = [FileSpec {
    name: "test.bin",
    records: 10000,
    sha256: None,
}];

impl DatasetName {
    /// Every dataset, in catalogue order.
    pub const ALL: [Self; 5] = [
        Self::Mnist,
        Self::FashionMnist,
        Self::Cifar10,
        Self::Cifar100,
        Self::MnistSubset,
    ];

    /// The command-line name: `mnist`, `fashion-mnist`, `cifar10`, `cifar100`, `mnist-subset`.
    pub const fn cli_name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::MnistSubset => "mnist-subset",
        }
    }

    /// Parses a command-line name (see [`Self::cli_name`]; `cifar-10`, `cifar-100` and
    /// `fashion_mnist` are accepted too).
    pub fn from_cli_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "mnist" => Self::Mnist,
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Self::FashionMnist,
            "cifar10" | "cifar-10" => Self::Cifar10,
            "cifar100" | "cifar-100" => Self::Cifar100,
            "mnist-subset" | "mnist_subset" => Self::MnistSubset,
            _ => return None,
        })
    }

    /// The folder under the data directory holding the official files.
    pub const fn dir_name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar-10-batches-bin",
            Self::Cifar100 => "cifar-100-binary",
            Self::MnistSubset => "mnist-subset",
        }
    }

    /// `[channels, height, width]` of one image.
    pub const fn shape(self) -> [usize; 3] {
        match self {
            Self::Mnist | Self::FashionMnist | Self::MnistSubset => [1, 28, 28],
            Self::Cifar10 | Self::Cifar100 => [3, 32, 32],
        }
    }

    /// Number of classes (CIFAR-100: fine classes).
    pub const fn classes(self) -> usize {
        match self {
            Self::Cifar100 => 100,
            _ => 10,
        }
    }

    /// The files of one split, in reading order. For IDX datasets: images, then labels.
    pub fn files(self, split: Split) -> &'static [FileSpec] {
        match (self, split) {
            (Self::Mnist, Split::Train) => &MNIST_TRAIN,
            (Self::Mnist, Split::Test) => &MNIST_TEST,
            (Self::FashionMnist, Split::Train) => &FASHION_TRAIN,
            (Self::FashionMnist, Split::Test) => &FASHION_TEST,
            (Self::Cifar10, Split::Train) => &CIFAR10_TRAIN,
            (Self::Cifar10, Split::Test) => &CIFAR10_TEST,
            (Self::Cifar100, Split::Train) => &CIFAR100_TRAIN,
            (Self::Cifar100, Split::Test) => &CIFAR100_TEST,
            (Self::MnistSubset, Split::Train) => &crate::bundled::SUBSET_TRAIN,
            (Self::MnistSubset, Split::Test) => &crate::bundled::SUBSET_TEST,
        }
    }

    /// The `cargo xtask data` name that fetches this dataset (the bundled subset needs none; for it
    /// this is `mnist`, its source).
    pub const fn fetch_name(self) -> &'static str {
        match self {
            Self::MnistSubset => "mnist",
            other => other.cli_name(),
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// How a [`DataDir`] was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSource {
    /// From the `--data-dir` command-line flag.
    Flag,
    /// From the [`DATA_DIR_ENV`] environment variable.
    Env,
    /// The default, [`DEFAULT_DATA_DIR`] relative to the working directory.
    Default,
}

/// The directory holding datasets in their official layouts:
/// `mnist/`, `fashion-mnist/` (official `.gz` names), `cifar-10-batches-bin/`, `cifar-100-binary/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
    source: DataDirSource,
}

/// Options for loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Check the SHA-256 of each file's uncompressed contents where it is known (default true).
    /// Structural checks (magic numbers, sizes, counts, labels) always run.
    pub verify_checksums: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            verify_checksums: true,
        }
    }
}

impl DataDir {
    /// Resolves the data directory: `flag` (from `--data-dir`) if given, else the
    /// [`DATA_DIR_ENV`] environment variable if set and non-empty, else `./data`.
    pub fn resolve(flag: Option<&Path>) -> Self {
        Self::resolve_from(flag, std::env::var_os(DATA_DIR_ENV))
    }

    /// [`Self::resolve`] with the environment value passed in (for tests and callers that read
    /// the environment themselves).
    pub fn resolve_from(flag: Option<&Path>, env: Option<OsString>) -> Self {
        if let Some(p) = flag {
            return Self {
                path: p.to_path_buf(),
                source: DataDirSource::Flag,
            };
        }
        match env {
            Some(v) if !v.is_empty() => Self {
                path: PathBuf::from(v),
                source: DataDirSource::Env,
            },
            _ => Self {
                path: PathBuf::from(DEFAULT_DATA_DIR),
                source: DataDirSource::Default,
            },
        }
    }

    /// A data directory at `path`, as if given by `--data-dir`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            source: DataDirSource::Flag,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it was chosen.
    pub fn source(&self) -> DataDirSource {
        self.source
    }

    /// The directory and how it was chosen, for messages.
    pub fn describe(&self) -> String {
        let how = match self.source {
            DataDirSource::Flag => "given on the command line",
            DataDirSource::Env => "from SPARSEDP_DATA",
            DataDirSource::Default => "the default; set --data-dir or SPARSEDP_DATA to change it",
        };
        format!("{} ({how})", self.path.display())
    }

    /// True when every file of both splits of `name` is present (not checked further).
    pub fn has(&self, name: DatasetName) -> bool {
        name == DatasetName::MnistSubset
            || [Split::Train, Split::Test]
                .iter()
                .all(|&s| self.locate_all(name, s).is_ok())
    }

    /// Loads one split of a dataset, verifying it with the default [`LoadOptions`].
    ///
    /// # Errors
    /// [`DataError::MissingDataset`] (saying how to fetch it) when a file is absent, else any
    /// format or checksum error of [`crate::formats`], naming the file.
    pub fn load(&self, name: DatasetName, split: Split) -> Result<Dataset> {
        self.load_with(name, split, LoadOptions::default())
    }

    /// [`Self::load`] with explicit options.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with(&self, name: DatasetName, split: Split, opts: LoadOptions) -> Result<Dataset> {
        if name == DatasetName::MnistSubset {
            return crate::bundled::load(split, opts);
        }
        let paths = self.locate_all(name, split)?;
        let label = format!("{name}/{}", split.as_str());
        match name {
            DatasetName::Mnist | DatasetName::FashionMnist => {
                let specs = name.files(split);
                let images = read_maybe_gz(&paths[0])?;
                let labels = read_maybe_gz(&paths[1])?;
                idx_dataset(
                    label, &images, &paths[0], specs[0], &labels, &paths[1], specs[1], opts,
                )
            }
            DatasetName::Cifar10 | DatasetName::Cifar100 => {
                let layout = if name == DatasetName::Cifar10 {
                    CifarLayout::Cifar10
                } else {
                    CifarLayout::Cifar100
                };
                let mut parts = Vec::with_capacity(paths.len());
                for (path, spec) in paths.iter().zip(name.files(split)) {
                    let bytes = read_maybe_gz(path)?;
                    parts.push(cifar_records(&bytes, layout, path, *spec, opts)?);
                }
                let n: usize = parts.iter().map(|p| p.labels.len()).sum();
                let mut images = Vec::with_capacity(n * CIFAR_PIXELS);
                let mut labels = Vec::with_capacity(n);
                let mut coarse = (layout == CifarLayout::Cifar100).then(|| Vec::with_capacity(n));
                for p in parts {
                    images.extend_from_slice(&p.images);
                    labels.extend_from_slice(&p.labels);
                    if let (Some(all), Some(c)) = (coarse.as_mut(), p.coarse_labels) {
                        all.extend_from_slice(&c);
                    }
                }
                Dataset::new(label, name.shape(), name.classes(), images, labels, coarse)
            }
            DatasetName::MnistSubset => crate::bundled::load(split, opts),
        }
    }

    /// The path of each file of a split: for IDX files `NAME.gz` if present, else `NAME`.
    fn locate_all(&self, name: DatasetName, split: Split) -> Result<Vec<PathBuf>> {
        let dir = self.path.join(name.dir_name());
        let idx = matches!(name, DatasetName::Mnist | DatasetName::FashionMnist);
        name.files(split)
            .iter()
            .map(|f| {
                let plain = dir.join(f.name);
                if idx {
                    let gz = dir.join(format!("{}.gz", f.name));
                    if gz.is_file() {
                        return Ok(gz);
                    }
                    if plain.is_file() {
                        return Ok(plain);
                    }
                    Err(self.missing(name, gz))
                } else if plain.is_file() {
                    Ok(plain)
                } else {
                    Err(self.missing(name, plain))
                }
            })
            .collect()
    }

    fn missing(&self, name: DatasetName, path: PathBuf) -> DataError {
        DataError::MissingDataset {
            dataset: name.fetch_name(),
            path,
            data_dir: self.describe(),
        }
    }
}

/// Loads one split of a dataset from the data directory chosen by [`DataDir::resolve`].
///
/// # Errors
/// As [`DataDir::load`].
pub fn load(data_dir: Option<&Path>, name: DatasetName, split: Split) -> Result<Dataset> {
    DataDir::resolve(data_dir).load(name, split)
}

/// Parses and checks one IDX images file and its labels file (already inflated).
#[allow(clippy::too_many_arguments)]
pub(crate) fn idx_dataset(
    label: String,
    images: &[u8],
    images_path: &Path,
    images_spec: FileSpec,
    labels: &[u8],
    labels_path: &Path,
    labels_spec: FileSpec,
    opts: LoadOptions,
) -> Result<Dataset> {
    let img = parse_idx(images, IDX_IMAGES_MAGIC, images_path)?;
    let lab = parse_idx(labels, IDX_LABELS_MAGIC, labels_path)?;
    if img.dims[1..] != [28, 28] {
        return Err(DataError::BadShape {
            path: images_path.to_path_buf(),
            expected: vec![images_spec.records as u64, 28, 28],
            found: img.dims.iter().map(|&d| d as u64).collect(),
        });
    }
    for (path, spec, found) in [
        (images_path, images_spec, img.dims[0]),
        (labels_path, labels_spec, lab.dims[0]),
    ] {
        if found != spec.records {
            return Err(DataError::WrongCount {
                path: path.to_path_buf(),
                expected: spec.records,
                found,
            });
        }
    }
    if opts.verify_checksums {
        for (bytes, path, spec) in [
            (images, images_path, images_spec),
            (labels, labels_path, labels_spec),
        ] {
            if let Some(sha) = spec.sha256 {
                verify_sha256(bytes, sha, path)?;
            }
        }
    }
    if let Some((index, &l)) = lab.data.iter().enumerate().find(|&(_, &l)| l >= 10) {
        return Err(DataError::BadLabel {
            path: labels_path.to_path_buf(),
            index,
            label: l,
            classes: 10,
        });
    }
    Dataset::new(
        label,
        [1, 28, 28],
        10,
        img.data.to_vec(),
        lab.data.to_vec(),
        None,
    )
}

fn cifar_records(
    bytes: &[u8],
    layout: CifarLayout,
    path: &Path,
    spec: FileSpec,
    opts: LoadOptions,
) -> Result<crate::formats::CifarRecords> {
    let rec = layout.record_len();
    let actual = bytes.len() as u64;
    if bytes.len().is_multiple_of(rec) && bytes.len() / rec != spec.records {
        return Err(DataError::WrongCount {
            path: path.to_path_buf(),
            expected: spec.records,
            found: bytes.len() / rec,
        });
    }
    let expected = (spec.records * rec) as u64;
    if actual < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if opts.verify_checksums
        && let Some(sha) = spec.sha256
    {
        verify_sha256(bytes, sha, path)?;
    }
    parse_cifar(bytes, layout, path)
}

/// Inflates (if gzip) and parses an in-memory IDX pair; used for the bundled subset.
pub(crate) fn idx_dataset_from_gz(
    label: String,
    images_gz: &[u8],
    labels_gz: &[u8],
    specs: &[FileSpec],
    opts: LoadOptions,
) -> Result<Dataset> {
    let ip = PathBuf::from(format!("<bundled>/mnist-subset/{}.gz", specs[0].name));
    let lp = PathBuf::from(format!("<bundled>/mnist-subset/{}.gz", specs[1].name));
    let images = maybe_gunzip(images_gz.to_vec(), &ip)?;
    let labels = maybe_gunzip(labels_gz.to_vec(), &lp)?;
    idx_dataset(label, &images, &ip, specs[0], &labels, &lp, specs[1], opts)
}
