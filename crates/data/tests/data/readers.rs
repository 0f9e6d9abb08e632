//! Readers: the bundled fixture, and deliberately corrupted copies made in a temp dir, each of
//! which must give its specific error variant naming the file.

use super::common::{TempDir, fixture_dir, gunzip_file, gzip, write};
use sparsedp_data::formats::{
    CifarLayout, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, encode_idx, parse_cifar, parse_idx, sha256_hex,
};
use sparsedp_data::{DataDir, DataError, DatasetName, LoadOptions, Split};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn subset(split: Split) -> sparsedp_data::Dataset {
    DataDir::at("/nonexistent")
        .load(DatasetName::MnistSubset, split)
        .expect("bundled subset loads")
}

#[test]
fn bundled_subset_is_class_balanced_and_verified() {
    let train = subset(Split::Train);
    let test = subset(Split::Test);
    assert_eq!((train.len(), test.len()), (4000, 1000));
    assert_eq!(train.shape(), [1, 28, 28]);
    assert_eq!(train.label_histogram(), vec![400; 10]);
    assert_eq!(test.label_histogram(), vec![100; 10]);
    assert_eq!(train.images().len(), 4000 * 784);
    // The files on disk are the bundled ones, with the SHA-256s recorded in fixtures/README.md.
    let dir = fixture_dir();
    let expect = [
        (
            "train-images-idx3-ubyte.gz",
            "1edb0376ad770d05deea6c696693f5882c993d72d1a2f8ea7f0e3f057f1cfb2f",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "eff120e01f651c4673776d501e2c9cb8986959930f915af888eeda19e96879f6",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "b97c8bfeb834d8e7999eaa2d69239abe06653dc09c1e5d7eb0c974c5965bc6a9",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "41cf2f530031915ba9fbb241407c369dba1acd7515053edff48cebeee8b260f4",
        ),
    ];
    for (name, sha) in expect {
        assert_eq!(sha256_hex(&gunzip_file(&dir.join(name))), sha, "{name}");
    }
    // Pixels are not all zero and not all the same image.
    assert!(train.image(0).expect("0") != train.image(1).expect("1"));
    assert!(train.images().contains(&255));
}

#[test]
fn fixture_files_parse_as_idx() {
    let images = gunzip_file(&fixture_dir().join("t10k-images-idx3-ubyte.gz"));
    let labels = gunzip_file(&fixture_dir().join("t10k-labels-idx1-ubyte.gz"));
    let p = Path::new("t10k");
    let iv = parse_idx(&images, IDX_IMAGES_MAGIC, p).expect("images");
    assert_eq!(iv.dims, vec![1000, 28, 28]);
    let lv = parse_idx(&labels, IDX_LABELS_MAGIC, p).expect("labels");
    assert_eq!(lv.dims, vec![1000]);
    assert_eq!(lv.data, subset(Split::Test).labels());
    // encode_idx is the inverse of parse_idx.
    assert_eq!(encode_idx(&iv.dims, iv.data).expect("encode"), images);
}

/// A data directory whose `mnist/` holds a synthetic but well-formed 10,000-image test split
/// (the fixture's 1,000 test images repeated ten times), optionally gzip-compressed.
fn synthetic_mnist_test(dir: &Path, gz: bool) -> (PathBuf, PathBuf) {
    let t = subset(Split::Test);
    let images: Vec<u8> = t.images().repeat(10);
    let labels: Vec<u8> = t.labels().repeat(10);
    let img = encode_idx(&[10000, 28, 28], &images).expect("encode");
    let lab = encode_idx(&[10000], &labels).expect("encode");
    let (ip, lp) = if gz {
        (
            dir.join("mnist/t10k-images-idx3-ubyte.gz"),
            dir.join("mnist/t10k-labels-idx1-ubyte.gz"),
        )
    } else {
        (
            dir.join("mnist/t10k-images-idx3-ubyte"),
            dir.join("mnist/t10k-labels-idx1-ubyte"),
        )
    };
    write(&ip, &if gz { gzip(&img) } else { img });
    write(&lp, &if gz { gzip(&lab) } else { lab });
    (ip, lp)
}

fn mnist_test(dir: &Path, verify: bool) -> Result<sparsedp_data::Dataset, DataError> {
    DataDir::at(dir).load_with(
        DatasetName::Mnist,
        Split::Test,
        LoadOptions {
            verify_checksums: verify,
        },
    )
}

#[test]
fn well_formed_but_unofficial_files_fail_the_checksum() {
    for gz in [true, false] {
        let tmp = TempDir::new("checksum");
        let (ip, _) = synthetic_mnist_test(tmp.path(), gz);
        match mnist_test(tmp.path(), true) {
            Err(DataError::ChecksumMismatch {
                path,
                expected,
                actual,
            }) => {
                assert_eq!(path, ip);
                assert_eq!(
                    expected,
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
                );
                assert_ne!(actual, expected);
            }
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
        // With checksums off, the same files load: every structural check passes.
        let ds = mnist_test(tmp.path(), false).expect("structurally valid");
        assert_eq!(ds.len(), 10000);
        assert_eq!(ds.label_histogram(), vec![1000; 10]);
        let msg = DataError::ChecksumMismatch {
            path: ip.clone(),
            expected: "a".into(),
            actual: "b".into(),
        }
        .to_string();
        assert!(
            msg.contains(&ip.display().to_string()) && msg.contains("SHA-256"),
            "{msg}"
        );
    }
}

#[test]
fn bad_magic_is_reported() {
    let tmp = TempDir::new("magic");
    let (ip, _) = synthetic_mnist_test(tmp.path(), false);
    let mut bytes = std::fs::read(&ip).expect("read");
    bytes[2] = 0x0d; // type byte: float instead of unsigned byte
    write(&ip, &bytes);
    match mnist_test(tmp.path(), false) {
        Err(DataError::BadMagic {
            path,
            expected,
            found,
        }) => {
            assert_eq!(path, ip);
            assert_eq!(expected, 0x803);
            assert_eq!(found, 0x0d03);
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }
    // Labels and images swapped: wrong magic for the role.
    let labels = gunzip_file(&fixture_dir().join("t10k-labels-idx1-ubyte.gz"));
    assert!(matches!(
        parse_idx(&labels, IDX_IMAGES_MAGIC, Path::new("x")),
        Err(DataError::BadMagic {
            expected: 0x803,
            found: 0x801,
            ..
        })
    ));
    // A CIFAR batch or a text file is not IDX.
    assert!(matches!(
        parse_idx(b"hello world", IDX_LABELS_MAGIC, Path::new("x")),
        Err(DataError::BadMagic { .. })
    ));
}

#[test]
fn truncated_files_are_reported() {
    let tmp = TempDir::new("trunc");
    let (ip, _) = synthetic_mnist_test(tmp.path(), false);
    let bytes = std::fs::read(&ip).expect("read");
    write(&ip, &bytes[..bytes.len() - 100]);
    match mnist_test(tmp.path(), false) {
        Err(DataError::Truncated {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, ip);
            assert_eq!(expected, 16 + 7_840_000);
            assert_eq!(actual, 16 + 7_840_000 - 100);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Cut inside the header, and inside the magic.
    let p = Path::new("x");
    assert!(matches!(
        parse_idx(&bytes[..10], IDX_IMAGES_MAGIC, p),
        Err(DataError::Truncated {
            expected: 16,
            actual: 10,
            ..
        })
    ));
    assert!(matches!(
        parse_idx(&bytes[..3], IDX_IMAGES_MAGIC, p),
        Err(DataError::Truncated {
            expected: 16,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        parse_idx(&[], IDX_IMAGES_MAGIC, p),
        Err(DataError::Truncated { .. })
    ));
    // Trailing bytes.
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        parse_idx(&long, IDX_IMAGES_MAGIC, p),
        Err(DataError::TrailingData {
            expected: 7_840_016,
            actual: 7_840_017,
            ..
        })
    ));
}

#[test]
fn truncated_or_corrupt_gzip_is_reported() {
    let tmp = TempDir::new("gz");
    let (ip, _) = synthetic_mnist_test(tmp.path(), true);
    let gz = std::fs::read(&ip).expect("read");
    write(&ip, &gz[..gz.len() / 2]);
    match mnist_test(tmp.path(), false) {
        Err(DataError::Decompress { path, .. }) => assert_eq!(path, ip),
        other => panic!("expected Decompress for a truncated .gz, got {other:?}"),
    }
    let mut bad = gz.clone();
    let n = bad.len();
    bad[n - 6] ^= 0xff; // inside the CRC32 / size trailer
    write(&ip, &bad);
    assert!(matches!(
        mnist_test(tmp.path(), false),
        Err(DataError::Decompress { .. })
    ));
}

#[test]
fn wrong_counts_are_reported() {
    // The fixture's 1,000-image files under the official MNIST names: well-formed, wrong count.
    let tmp = TempDir::new("count");
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::create_dir_all(tmp.path().join("mnist")).expect("mkdir");
        std::fs::copy(fixture_dir().join(f), tmp.path().join("mnist").join(f)).expect("copy");
    }
    match mnist_test(tmp.path(), true) {
        Err(DataError::WrongCount {
            path,
            expected,
            found,
        }) => {
            assert!(
                path.ends_with("mnist/t10k-images-idx3-ubyte.gz"),
                "{}",
                path.display()
            );
            assert_eq!((expected, found), (10000, 1000));
        }
        other => panic!("expected WrongCount, got {other:?}"),
    }
    // Images right, labels with another count.
    let tmp = TempDir::new("count2");
    let (_, lp) = synthetic_mnist_test(tmp.path(), false);
    let labels = encode_idx(&[9999], &vec![1u8; 9999]).expect("encode");
    write(&lp, &labels);
    match mnist_test(tmp.path(), false) {
        Err(DataError::WrongCount {
            path,
            expected: 10000,
            found: 9999,
        }) => assert_eq!(path, lp),
        other => panic!("expected WrongCount on labels, got {other:?}"),
    }
    // Wrong image size.
    let tmp = TempDir::new("shape");
    let (ip, _) = synthetic_mnist_test(tmp.path(), false);
    write(
        &ip,
        &encode_idx(&[10000, 14, 56], &vec![0u8; 7_840_000]).expect("encode"),
    );
    assert!(matches!(
        mnist_test(tmp.path(), false),
        Err(DataError::BadShape { .. })
    ));
    // Out-of-range labels.
    let tmp = TempDir::new("label");
    let (_, lp) = synthetic_mnist_test(tmp.path(), false);
    let mut labels = vec![3u8; 10000];
    labels[77] = 10;
    write(&lp, &encode_idx(&[10000], &labels).expect("encode"));
    match mnist_test(tmp.path(), false) {
        Err(DataError::BadLabel {
            index: 77,
            label: 10,
            classes: 10,
            ..
        }) => {}
        other => panic!("expected BadLabel, got {other:?}"),
    }
}

#[test]
fn idx_header_overflow_is_an_error_not_a_panic() {
    let mut b = vec![0, 0, 8, 3];
    for _ in 0..3 {
        b.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    let r = parse_idx(&b, IDX_IMAGES_MAGIC, Path::new("x"));
    assert!(
        matches!(
            r,
            Err(DataError::BadShape { .. }) | Err(DataError::Truncated { .. })
        ),
        "{r:?}"
    );
}

/// 10,000 CIFAR-10 records with labels cycling 0..10 and pixels from the record index.
fn synthetic_cifar10(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3073);
    for i in 0..n {
        out.push((i % 10) as u8);
        out.extend((0..3072).map(|k| ((i * 7 + k) % 251) as u8));
    }
    out
}

fn cifar_test(dir: &Path, verify: bool) -> Result<sparsedp_data::Dataset, DataError> {
    DataDir::at(dir).load_with(
        DatasetName::Cifar10,
        Split::Test,
        LoadOptions {
            verify_checksums: verify,
        },
    )
}

#[test]
fn cifar10_corruptions_are_reported() {
    let tmp = TempDir::new("cifar");
    let path = tmp.path().join("cifar-10-batches-bin/test_batch.bin");
    let good = synthetic_cifar10(10000);
    write(&path, &good);
    // Well-formed: structural checks pass, the checksum does not.
    let ds = cifar_test(tmp.path(), false).expect("structurally valid");
    assert_eq!(
        (ds.len(), ds.shape(), ds.classes()),
        (10000, [3, 32, 32], 10)
    );
    assert_eq!(
        ds.image(3).expect("3")[..5],
        good[3 * 3073 + 1..3 * 3073 + 6]
    );
    assert_eq!(ds.label(13), Some(3));
    match cifar_test(tmp.path(), true) {
        Err(DataError::ChecksumMismatch {
            path: p, expected, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(
                expected,
                "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b"
            );
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    // Cut mid-record.
    write(&path, &good[..good.len() - 1000]);
    match cifar_test(tmp.path(), false) {
        Err(DataError::Truncated {
            path: p,
            expected,
            actual,
        }) => {
            assert_eq!(p, path);
            assert_eq!((expected, actual), (30_730_000, 30_729_000));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Cut at a record boundary: a wrong record count.
    write(&path, &good[..9999 * 3073]);
    assert!(matches!(
        cifar_test(tmp.path(), false),
        Err(DataError::WrongCount {
            expected: 10000,
            found: 9999,
            ..
        })
    ));
    // Extra bytes.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 5]);
    write(&path, &long);
    assert!(matches!(
        cifar_test(tmp.path(), false),
        Err(DataError::TrailingData { .. })
    ));
    // A label out of range.
    let mut bad = good.clone();
    bad[42 * 3073] = 10;
    write(&path, &bad);
    match cifar_test(tmp.path(), false) {
        Err(DataError::BadLabel {
            path: p,
            index: 42,
            label: 10,
            classes: 10,
        }) => assert_eq!(p, path),
        other => panic!("expected BadLabel, got {other:?}"),
    }
}

#[test]
fn cifar100_records_carry_coarse_and_fine_labels() {
    let mut bytes = Vec::new();
    for i in 0..50usize {
        bytes.push((i % 20) as u8);
        bytes.push((i * 2 % 100) as u8);
        bytes.extend(std::iter::repeat_n(i as u8, 3072));
    }
    let r = parse_cifar(&bytes, CifarLayout::Cifar100, Path::new("x")).expect("parse");
    assert_eq!(r.labels[7], 14);
    assert_eq!(r.coarse_labels.as_ref().expect("coarse")[7], 7);
    assert_eq!(r.images[7 * 3072..8 * 3072], [7u8; 3072]);
    let mut bad = bytes.clone();
    bad[3 * 3074 + 1] = 100;
    assert!(matches!(
        parse_cifar(&bad, CifarLayout::Cifar100, Path::new("x")),
        Err(DataError::BadLabel {
            index: 3,
            label: 100,
            classes: 100,
            ..
        })
    ));
    bad[3 * 3074 + 1] = 0;
    bad[3 * 3074] = 20;
    assert!(matches!(
        parse_cifar(&bad, CifarLayout::Cifar100, Path::new("x")),
        Err(DataError::BadLabel { classes: 20, .. })
    ));
    // Through the loader: train.bin must hold 50,000 records.
    let tmp = TempDir::new("c100");
    write(&tmp.path().join("cifar-100-binary/train.bin"), &bytes);
    write(&tmp.path().join("cifar-100-binary/test.bin"), &bytes);
    assert!(matches!(
        DataDir::at(tmp.path()).load(DatasetName::Cifar100, Split::Test),
        Err(DataError::WrongCount {
            expected: 10000,
            found: 50,
            ..
        })
    ));
}

#[test]
fn missing_datasets_say_how_to_get_them() {
    let tmp = TempDir::new("missing");
    for (name, fetch) in [
        (DatasetName::Mnist, "mnist"),
        (DatasetName::FashionMnist, "fashion-mnist"),
        (DatasetName::Cifar10, "cifar10"),
        (DatasetName::Cifar100, "cifar100"),
    ] {
        let err = DataDir::at(tmp.path())
            .load(name, Split::Train)
            .expect_err("absent");
        assert!(matches!(err, DataError::MissingDataset { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("cargo xtask data {fetch}")), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        assert!(!DataDir::at(tmp.path()).has(name));
    }
    assert!(DataDir::at(tmp.path()).has(DatasetName::MnistSubset));
}

#[test]
fn data_dir_resolution_order() {
    let flag = Path::new("/flag");
    let env = Some(OsString::from("/env"));
    let d = DataDir::resolve_from(Some(flag), env.clone());
    assert_eq!(
        (d.path(), d.source()),
        (flag, sparsedp_data::DataDirSource::Flag)
    );
    let d = DataDir::resolve_from(None, env);
    assert_eq!(
        (d.path(), d.source()),
        (Path::new("/env"), sparsedp_data::DataDirSource::Env)
    );
    let d = DataDir::resolve_from(None, Some(OsString::new()));
    assert_eq!(
        (d.path(), d.source()),
        (Path::new("data"), sparsedp_data::DataDirSource::Default)
    );
    let d = DataDir::resolve_from(None, None);
    assert_eq!(d.path(), Path::new(sparsedp_data::DEFAULT_DATA_DIR));
    assert!(d.describe().contains("SPARSEDP_DATA"));
}

#[test]
fn dataset_names_round_trip() {
    for n in DatasetName::ALL {
        assert_eq!(DatasetName::from_cli_name(n.cli_name()), Some(n));
    }
    assert_eq!(
        DatasetName::from_cli_name("CIFAR-10"),
        Some(DatasetName::Cifar10)
    );
    assert_eq!(DatasetName::from_cli_name("imagenet"), None);
}

#[test]
fn dataset_constructor_and_subset_reject_bad_input() {
    assert!(sparsedp_data::Dataset::new("x", [1, 2, 2], 10, vec![0; 7], vec![0, 1], None).is_err());
    assert!(matches!(
        sparsedp_data::Dataset::new("x", [1, 2, 2], 2, vec![0; 8], vec![0, 2], None),
        Err(DataError::BadLabel {
            index: 1,
            label: 2,
            ..
        })
    ));
    let t = subset(Split::Test);
    assert!(matches!(
        t.subset(&[0, 1000], "s"),
        Err(DataError::InvalidArgument { .. })
    ));
    let s = t.subset(&[5, 5, 0], "s").expect("subset");
    assert_eq!(s.image(1), t.image(5));
    assert_eq!(s.label(2), t.label(0));
    assert_eq!(t.image(1000), None);
    assert_eq!(t.image(usize::MAX), None);
    assert_eq!(t.label(usize::MAX), None);
    assert!(t.class_balanced_indices(101).is_err());
    assert_eq!(t.class_balanced_indices(100).expect("all").len(), 1000);
}
