//! `cargo xtask`: project automation for sparsedp.
//!
//! Every task is an ordinary Rust program, so it runs the same on a developer's machine and in CI
//! with nothing but cargo installed.

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Validate(args) => validate::run(&args),
    }
}
