//! The crate's error type: every failure names the file (or value) and the problem.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while locating, reading, checking or sampling a dataset.
///
/// Variants that concern a file carry its path, so a message alone tells the user which file to
/// delete or fetch again.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The operating system refused to read or write a file.
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A gzip stream could not be decompressed (corrupt or truncated `.gz`), or it inflates
    /// beyond the size limit.
    Decompress {
        /// The compressed file.
        path: PathBuf,
        /// What the decoder reported.
        detail: String,
    },
    /// The file does not start with the magic number its format requires.
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// The magic number the format requires.
        expected: u32,
        /// The first four bytes of the file, big-endian (fewer bytes are zero-padded).
        found: u32,
    },
    /// The file is shorter than its header (IDX) or the record layout (CIFAR) requires.
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// The length in bytes the header or layout requires.
        expected: u64,
        /// The actual (uncompressed) length in bytes.
        actual: u64,
    },
    /// The file is longer than its header or record layout allows.
    TrailingData {
        /// The file concerned.
        path: PathBuf,
        /// The length in bytes the header or layout allows.
        expected: u64,
        /// The actual (uncompressed) length in bytes.
        actual: u64,
    },
    /// A header dimension differs from what the dataset requires (e.g. images that are not
    /// 28 x 28), or the header's dimensions overflow.
    BadShape {
        /// The file concerned.
        path: PathBuf,
        /// The shape the dataset requires (empty when only overflow was detected).
        expected: Vec<u64>,
        /// The shape the file declares.
        found: Vec<u64>,
    },
    /// The number of records differs from the dataset's known count, or images and labels of one
    /// split disagree.
    WrongCount {
        /// The file concerned.
        path: PathBuf,
        /// The number of records required.
        expected: usize,
        /// The number of records found.
        found: usize,
    },
    /// A label is outside `0..classes`.
    BadLabel {
        /// The file concerned.
        path: PathBuf,
        /// The record index.
        index: usize,
        /// The offending label.
        label: u8,
        /// The number of classes.
        classes: usize,
    },
    /// The SHA-256 of the (uncompressed) contents differs from the published value.
    ChecksumMismatch {
        /// The file concerned.
        path: PathBuf,
        /// The published SHA-256, lowercase hex.
        expected: String,
        /// The SHA-256 of what was read, lowercase hex.
        actual: String,
    },
    /// A dataset file is absent from the data directory.
    MissingDataset {
        /// The dataset's command-line name (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`).
        dataset: &'static str,
        /// The first required file that is missing.
        path: PathBuf,
        /// The data directory that was searched and how it was chosen.
        data_dir: String,
    },
    /// An argument is out of range (a sampling rate outside [0, 1], a zero chunk size, ...).
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Why the value is rejected, including the value.
        detail: String,
    },
    /// A sampler checkpoint could not be decoded.
    BadCheckpoint {
        /// What was wrong.
        detail: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Decompress { path, detail } => {
                write!(f, "{}: corrupt gzip data: {detail}", path.display())
            }
            Self::BadMagic {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: bad magic number 0x{found:08x} (expected 0x{expected:08x}); \
                 wrong file or corrupt",
                path.display()
            ),
            Self::Truncated {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: truncated: {actual} bytes, but {expected} are required",
                path.display()
            ),
            Self::TrailingData {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: {actual} bytes, but the format allows only {expected}",
                path.display()
            ),
            Self::BadShape {
                path,
                expected,
                found,
            } if expected.is_empty() => {
                write!(
                    f,
                    "{}: header dimensions {found:?} overflow",
                    path.display()
                )
            }
            Self::BadShape {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: header dimensions {found:?}, expected {expected:?}",
                path.display()
            ),
            Self::WrongCount {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: {found} records, expected {expected}",
                path.display()
            ),
            Self::BadLabel {
                path,
                index,
                label,
                classes,
            } => write!(
                f,
                "{}: record {index} has label {label}, outside 0..{classes}",
                path.display()
            ),
            Self::ChecksumMismatch {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: SHA-256 of the contents is {actual}, expected {expected}; \
                 the file is corrupt or not the official release",
                path.display()
            ),
            Self::MissingDataset {
                dataset,
                path,
                data_dir,
            } => write!(
                f,
                "dataset {dataset} not found: {} is missing (data directory {data_dir}). \
                 Get it with `cargo xtask data {dataset} --dest <DATA_DIR>`, then pass \
                 --data-dir <DATA_DIR> or set SPARSEDP_DATA=<DATA_DIR>",
                path.display()
            ),
            Self::InvalidArgument { name, detail } => write!(f, "invalid {name}: {detail}"),
            Self::BadCheckpoint { detail } => write!(f, "bad sampler checkpoint: {detail}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
