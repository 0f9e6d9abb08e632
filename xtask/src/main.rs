//! `cargo xtask`: project automation for sparsedp.
//!
//! Every task is an ordinary Rust program, so it runs the same on a developer's machine and in CI
//! with nothing but cargo installed.

mod bench;
mod data;
mod reproduce;
mod validate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sparsedp project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs, cheapest first: rustfmt, clippy (warnings are errors), tests.
    Validate(validate::Args),
    /// Put datasets in the data directory, verified by SHA-256: mnist, fashion-mnist, cifar10,
    /// cifar100 (--source original), all; or regenerate the bundled fixtures/mnist-subset.
    Data(data::Args),
    /// Run a suite of training runs (xtask/suites/<SUITE>.toml), cached by config hash, and
    /// write results/<SUITE>.{json,md} and plots: baselines, pre-pruning, gradient-dropping,
    /// combined, fine-tune, wrn-cifar10.
    Reproduce(reproduce::Args),
    /// Run the benchmarks (select, tensor, devices, engines) and keep each report with its
    /// commit and machine under results/bench; --no-run builds them and prints the executables.
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Validate(args) => validate::run(&args),
        Task::Data(args) => data::run(&args),
        Task::Reproduce(args) => reproduce::run(&args),
        Task::Bench(args) => bench::run(&args),
    }
}
