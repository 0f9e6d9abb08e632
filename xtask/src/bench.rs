//! `cargo xtask bench`: runs the project's benchmarks and keeps every report together with the
//! commit and machine it came from, so numbers quoted in `docs/benchmarks.md` can be traced and
//! rerun. `--no-run` only builds the benchmark executables and prints their paths, for copying
//! them to another machine (a GPU host that has no Rust toolchain, say).

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Benchmarks to run, in this order (default: all of them): tensor, devices, engines, select.
    names: Vec<String>,
    /// Directory the reports are written to (`<name>-<UTC time>.md`).
    #[arg(long, default_value = "results/bench")]
    out: PathBuf,
    /// Build the executables and print their paths instead of running them.
    #[arg(long)]
    no_run: bool,
}

/// `(name, package, what it measures)` of every benchmark, in the default order (cheapest
/// first).
pub const BENCHES: &[(&str, &str, &str)] = &[
    (
        "select",
        "sparsedp-select",
        "per-step gradient selection against one DP step",
    ),
    (
        "tensor",
        "sparsedp-tensor",
        "CPU kernels: sgemm, the CIFAR-10 CNN's convolutions, per-example gradients",
    ),
    (
        "devices",
        "sparsedp-tensor",
        "CPU and wgpu side by side: sgemm 2048^3, the CNN's convolutions, dispatch overhead",
    ),
    (
        "engines",
        "sparsedp-nn",
        "clipping engines against non-private training: examples/s and peak memory",
    ),
];

/// The benchmarks `names` asks for (all when empty), or an error naming the unknown one.
pub fn select(names: &[String]) -> Result<Vec<(&'static str, &'static str, &'static str)>> {
    if names.is_empty() {
        return Ok(BENCHES.to_vec());
    }
    names
        .iter()
        .map(|n| {
            BENCHES.iter().copied().find(|b| b.0 == n).with_context(|| {
                let all: Vec<&str> = BENCHES.iter().map(|b| b.0).collect();
                format!("unknown benchmark '{n}': choose from {}", all.join(", "))
            })
        })
        .collect()
}

/// Runs (or with `--no-run` builds) the selected benchmarks.
pub fn run(args: &Args) -> Result<()> {
    let benches = select(&args.names)?;
    let root = crate::reproduce::workspace_root();
    if args.no_run {
        for (name, package, _) in benches {
            let exe = build(&root, package, name)?;
            println!("{name}: {}", exe.display());
        }
        return Ok(());
    }
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, package, what) in benches {
        let started = SystemTime::now();
        let command = format!("cargo bench -p {package} --bench {name}");
        eprintln!("==> {name}: {command}");
        let mut child = cargo(&root)
            .args(["bench", "-p", package, "--bench", name])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{command}`"))?;
        // Tee: the report is shown as it is produced and kept for the file.
        let mut report = String::new();
        let stdout = child.stdout.take().context("benchmark stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the benchmark's output")?;
            println!("{line}");
            report.push_str(&line);
            report.push('\n');
        }
        let status = child.wait().context("waiting for the benchmark")?;
        if !status.success() {
            bail!("{name} failed: `{command}` exited with {status}");
        }
        let secs = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamp = utc(secs);
        let header = format!(
            "# Benchmark `{name}`: {what}\n\n\
             - **Command:** `{command}` (via `cargo xtask bench {name}`)\n\
             - **Started:** {} UTC\n\
             - **Commit:** `{}`\n\
             - **Machine:** {}\n\n",
            stamp.replace('T', " "),
            crate::reproduce::commit(&root),
            crate::reproduce::machine(),
        );
        let path = out.join(format!("{name}-{}.md", stamp.replace(':', "")));
        write_atomically(&path, &format!("{header}{report}"))?;
        eprintln!("==> {name}: report in {}", path.display());
    }
    Ok(())
}

/// Builds one benchmark and returns its executable, from cargo's JSON messages.
fn build(root: &Path, package: &str, name: &str) -> Result<PathBuf> {
    let output = cargo(root)
        .args([
            "bench",
            "-p",
            package,
            "--bench",
            name,
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("could not start `cargo bench --no-run`")?;
    if !output.status.success() {
        bail!("building benchmark {name} failed");
    }
    executable(&String::from_utf8_lossy(&output.stdout), name)
        .with_context(|| format!("cargo reported no executable for benchmark {name}"))
}

/// The `executable` of the bench target `name` in cargo's `--message-format=json` output.
pub fn executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// `validate`'s cargo command, run from the workspace root.
fn cargo(root: &Path) -> Command {
    let mut cmd = crate::validate::cargo();
    cmd.current_dir(root);
    cmd
}

/// Writes `text` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written report.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("md.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time, by the proleptic Gregorian calendar (days to
/// civil date as in H. Hinnant's `civil_from_days`).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_matches_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00");
        // `date -u -d @951782400`: the leap day of a century leap year.
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00");
        // `date -u -d @1795953600`
        assert_eq!(utc(1_795_953_600), "2026-11-29T12:00:00");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59");
    }

    #[test]
    fn selection_keeps_order_and_names_unknown_benchmarks() {
        assert_eq!(select(&[]).unwrap().len(), BENCHES.len());
        let picked = select(&["engines".into(), "tensor".into()]).unwrap();
        assert_eq!(
            picked.iter().map(|b| b.0).collect::<Vec<_>>(),
            ["engines", "tensor"]
        );
        let err = select(&["gemm".into()]).unwrap_err().to_string();
        assert!(
            err.contains("unknown benchmark 'gemm'") && err.contains("engines"),
            "{err}"
        );
    }

    #[test]
    fn executable_is_read_from_cargo_messages() {
        let msgs = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"sparsedp_nn","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"engines","kind":["bench"]},"executable":"/t/release/deps/engines-1"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable(msgs, "engines"),
            Some(PathBuf::from("/t/release/deps/engines-1"))
        );
        assert_eq!(executable(msgs, "tensor"), None);
    }
}
