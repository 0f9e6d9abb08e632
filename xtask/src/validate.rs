//! `cargo xtask validate`: the checks CI runs, cheapest first, stopping at the first failure.

use anyhow::{Context, bail};
use std::process::Command;
use std::time::Instant;

/// Options of `cargo xtask validate`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip `cargo test` (format and lint only).
    #[arg(long)]
    no_test: bool,
}

/// The README's test command; CI runs exactly this after the format and lint checks.
pub const TEST_COMMAND: &[&str] = &["test", "--workspace"];

/// Runs the checks in order of cost: a formatting slip should not wait behind a full test build.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut steps: Vec<(&str, Vec<&str>)> = vec![
        ("format", vec!["fmt", "--all", "--check"]),
        (
            "lint",
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The tensor crate without its (default) wgpu backend must build cleanly too.
        (
            "lint without wgpu",
            vec![
                "clippy",
                "-p",
                "sparsedp-tensor",
                "--no-default-features",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    if !args.no_test {
        steps.push(("test", TEST_COMMAND.to_vec()));
    }
    for (name, cargo_args) in steps {
        let start = Instant::now();
        eprintln!("==> {name}: cargo {}", cargo_args.join(" "));
        let mut cmd = cargo();
        cmd.args(&cargo_args);
        let status = cmd
            .status()
            .with_context(|| format!("could not start `cargo {}`", cargo_args.join(" ")))?;
        if !status.success() {
            bail!(
                "{name} failed: `cargo {}` exited with {status}",
                cargo_args.join(" ")
            );
        }
        eprintln!("==> {name}: ok ({:.1} s)", start.elapsed().as_secs_f64());
    }
    eprintln!("==> all checks passed");
    Ok(())
}

/// A command running the cargo that invoked us (so `cargo +toolchain xtask` is honoured), else
/// `cargo`. Mesa's Vulkan driver (the wgpu tests' and benchmarks' adapter on GPU-less machines)
/// wants a runtime directory and complains on every adapter query without one, so it gets the
/// temporary directory when the environment has none.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    cmd
}
