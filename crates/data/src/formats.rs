//! Parsers for the official on-disk formats (IDX and the CIFAR binary records), gzip handling and
//! SHA-256 checks.
//!
//! The parsers take bytes already in memory and a path used only in error messages, so they are
//! cheap to fuzz (`fuzz/`) and never allocate on the strength of a header alone: every size is
//! checked against the bytes actually present before anything is copied.

use crate::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Largest uncompressed size accepted from a gzip stream (a guard against decompression bombs;
/// the largest official file, MNIST's training images, is 47,040,016 bytes).
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// A parsed IDX file of unsigned bytes, borrowing its data from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxView<'a> {
    /// The dimensions from the header, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The `dims.iter().product()` data bytes, row-major.
    pub data: &'a [u8],
}

/// Parses an IDX file of unsigned bytes whose magic number must be `expected_magic`
/// ([`IDX_LABELS_MAGIC`] or [`IDX_IMAGES_MAGIC`]; the low byte is the number of dimensions).
///
/// # Errors
/// [`DataError::BadMagic`] for a wrong magic number, [`DataError::Truncated`] when the header or
/// data is short, [`DataError::TrailingData`] when bytes follow the data, and
/// [`DataError::BadShape`] when the dimensions' product overflows.
pub fn parse_idx<'a>(bytes: &'a [u8], expected_magic: u32, path: &Path) -> Result<IdxView<'a>> {
    let ndims = (expected_magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        let mut padded = [0u8; 4];
        padded[..bytes.len()].copy_from_slice(bytes);
        let found = u32::from_be_bytes(padded);
        // A prefix of the right magic is a truncation; anything else is the wrong file.
        if bytes == &expected_magic.to_be_bytes()[..bytes.len()] {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                expected: header as u64,
                actual: bytes.len() as u64,
            });
        }
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: expected_magic,
            found,
        });
    }
    let magic = be_u32(&bytes[0..4]);
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: expected_magic,
            found: magic,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header as u64,
            actual: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| be_u32(&bytes[4 + 4 * i..8 + 4 * i]) as usize)
        .collect();
    let overflow = || DataError::BadShape {
        path: path.to_path_buf(),
        expected: Vec::new(),
        found: dims.iter().map(|&d| d as u64).collect(),
    };
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let total = len.checked_add(header).ok_or_else(overflow)?;
    let actual = bytes.len() as u64;
    if bytes.len() < total {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: total as u64,
            actual,
        });
    }
    if bytes.len() > total {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected: total as u64,
            actual,
        });
    }
    Ok(IdxView {
        dims,
        data: &bytes[header..],
    })
}

/// Encodes unsigned bytes as an IDX file (the inverse of [`parse_idx`]); used to write fixtures.
///
/// # Errors
/// [`DataError::InvalidArgument`] when `dims` has not 1 to 3 entries, a dimension does not fit
/// in `u32`, or the product of `dims` differs from `data.len()`.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if dims.is_empty() || dims.len() > 3 {
        return Err(DataError::InvalidArgument {
            name: "dims",
            detail: format!("{dims:?}: IDX files here have 1 to 3 dimensions"),
        });
    }
    if dims.iter().product::<usize>() != data.len() || dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(DataError::InvalidArgument {
            name: "dims",
            detail: format!("{dims:?} does not describe {} bytes", data.len()),
        });
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Which CIFAR binary layout a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CifarLayout {
    /// CIFAR-10: 1 label byte (0..10), then 3072 pixel bytes.
    Cifar10,
    /// CIFAR-100: 1 coarse label byte (0..20), 1 fine label byte (0..100), then 3072 pixel bytes.
    Cifar100,
}

impl CifarLayout {
    /// Bytes per record: 3073 for CIFAR-10, 3074 for CIFAR-100.
    pub const fn record_len(self) -> usize {
        match self {
            Self::Cifar10 => 1 + CIFAR_PIXELS,
            Self::Cifar100 => 2 + CIFAR_PIXELS,
        }
    }
}

/// Pixel bytes per CIFAR image: 3 planes (R, G, B) of 32 x 32, each row-major.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// The records of one CIFAR binary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarRecords {
    /// `n * 3072` pixel bytes, image-major, each image as 3 x 32 x 32 (CHW).
    pub images: Vec<u8>,
    /// The label of each record (CIFAR-100: the fine label).
    pub labels: Vec<u8>,
    /// CIFAR-100 only: the coarse (superclass) label of each record.
    pub coarse_labels: Option<Vec<u8>>,
}

/// Parses a whole CIFAR binary file.
///
/// # Errors
/// [`DataError::Truncated`] when the length is not a whole number of records (naming the length a
/// whole number would need), [`DataError::BadLabel`] for a label out of range.
pub fn parse_cifar(bytes: &[u8], layout: CifarLayout, path: &Path) -> Result<CifarRecords> {
    let rec = layout.record_len();
    if !bytes.len().is_multiple_of(rec) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: (bytes.len().div_ceil(rec) * rec) as u64,
            actual: bytes.len() as u64,
        });
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * CIFAR_PIXELS);
    let mut labels = Vec::with_capacity(n);
    let mut coarse = match layout {
        CifarLayout::Cifar10 => None,
        CifarLayout::Cifar100 => Some(Vec::with_capacity(n)),
    };
    let bad = |index: usize, label: u8, classes: usize| DataError::BadLabel {
        path: path.to_path_buf(),
        index,
        label,
        classes,
    };
    for (index, record) in bytes.chunks_exact(rec).enumerate() {
        let (label, pixels) = match layout {
            CifarLayout::Cifar10 => {
                if record[0] >= 10 {
                    return Err(bad(index, record[0], 10));
                }
                (record[0], &record[1..])
            }
            CifarLayout::Cifar100 => {
                if record[0] >= 20 {
                    return Err(bad(index, record[0], 20));
                }
                if record[1] >= 100 {
                    return Err(bad(index, record[1], 100));
                }
                if let Some(c) = coarse.as_mut() {
                    c.push(record[0]);
                }
                (record[1], &record[2..])
            }
        };
        labels.push(label);
        images.extend_from_slice(pixels);
    }
    Ok(CifarRecords {
        images,
        labels,
        coarse_labels: coarse,
    })
}

/// Returns `bytes` unchanged, or inflated when they start with the gzip magic `1f 8b`
/// (multi-member streams are supported).
///
/// # Errors
/// [`DataError::Decompress`] for a corrupt or truncated stream, or one that inflates beyond
/// [`MAX_DECOMPRESSED_BYTES`].
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let mut decoder = MultiGzDecoder::new(&bytes[..]).take(MAX_DECOMPRESSED_BYTES + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| DataError::Decompress {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DataError::Decompress {
            path: path.to_path_buf(),
            detail: format!("inflates beyond the limit of {MAX_DECOMPRESSED_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Reads a file and inflates it if it is gzip-compressed (see [`maybe_gunzip`]).
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read, else as [`maybe_gunzip`].
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    maybe_gunzip(bytes, path)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('?'));
        s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('?'));
    }
    s
}

/// Checks that `bytes` hash to `expected` (lowercase hex SHA-256).
///
/// # Errors
/// [`DataError::ChecksumMismatch`] naming `path`, the expected and the actual hash.
pub fn verify_sha256(bytes: &[u8], expected: &str, path: &Path) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(DataError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
