//! `sparsedp`: differentially private CNN training with pre-pruning and gradient dropping.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sparsedp::config::TrainConfig;
use sparsedp::{models, presets, sparsity, trainer};
use sparsedp_data::{DataDir, DatasetName};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sparsedp",
    version,
    about = "Differentially private image classification with pre-pruning and gradient dropping",
    long_about = "Differentially private image classification (DP-SGD) with pre-pruning, per-step \
gradient selection and exact per-example clipping. `sparsedp train` with no arguments trains a DP \
CNN on the bundled MNIST subset."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model (default: the `default` preset on the bundled MNIST subset).
    Train(TrainArgs),
    /// Evaluate a trained model on a dataset's test set.
    Eval(EvalArgs),
    /// Score a model's parameters and save the pruning mask.
    Prune(PruneArgs),
    /// Datasets found, models (parameters, FLOPs), presets and the compute backend.
    Info(InfoArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// TOML configuration file (every field optional; see `sparsedp train --print-config`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Start from a preset (default, tb-mnist, tb-fashion-mnist, tb-cifar10); the config file
    /// and overrides apply on top.
    #[arg(long)]
    preset: Option<String>,
    /// Override a field, e.g. `--set training.epochs=5 --set privacy.epsilon=8`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Dataset directory (else $SPARSEDP_DATA, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run directory (default: runs/<unix time>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its checkpoint (its config.toml is used).
    #[arg(long)]
    resume: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// No progress bar; a log line per evaluation.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// A run directory or a .safetensors model file.
    model: PathBuf,
    /// Model architecture (default: from the run directory's config).
    #[arg(long)]
    arch: Option<String>,
    /// Dataset (default: from the run directory's config).
    #[arg(long)]
    dataset: Option<String>,
    /// Dataset directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct PruneArgs {
    /// Configuration whose [model] and [pruning] sections are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override a field, e.g. `--set pruning.score=synflow --set pruning.density=0.3`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Output file (weights and mask, safetensors).
    #[arg(long, short, default_value = "mask.safetensors")]
    out: PathBuf,
}

#[derive(Args)]
struct InfoArgs {
    /// Report one model's parameters and FLOPs.
    #[arg(long)]
    model: Option<String>,
    /// Dataset directory to inspect.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The GPU probe of `training.device = auto` loads the Vulkan drivers; on Linux without a
    // session runtime directory (containers, CI, cron, some ssh sessions) Mesa's Wayland code
    // then prints "error: XDG_RUNTIME_DIR is invalid or not set" although nothing failed. Point
    // it at the temporary directory, as a desktop session would point it at its own.
    #[cfg(target_os = "linux")]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first statement of `main`, before any thread is spawned, so no other thread
        // can read the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    // Keep freed tensor buffers mapped between steps (see the function's docs: 1.5-1.7x faster
    // steps on the development VM).
    sparsedp_tensor::retain_freed_memory();
    let account = sparsedp_accountant::cli::command()
        .name("account")
        .about("The privacy accountant: epsilon, delta, sigma, steps, rdp");
    let matches = Cli::command().subcommand(account).get_matches();
    if let Some(("account", m)) = matches.subcommand() {
        return match sparsedp_accountant::cli::run(m) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        None => train(TrainArgs {
            config: None,
            preset: None,
            overrides: Vec::new(),
            data_dir: None,
            run_dir: None,
            resume: false,
            print_config: false,
            quiet: false,
        }),
        Some(Cmd::Train(a)) => train(a),
        Some(Cmd::Eval(a)) => eval(a),
        Some(Cmd::Prune(a)) => prune(a),
        Some(Cmd::Info(a)) => info(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn resolve_config(
    config: Option<&PathBuf>,
    preset: Option<&str>,
    overrides: &[String],
) -> Result<TrainConfig> {
    let base = match (config, preset) {
        (Some(path), None) => TrainConfig::from_file(path)?,
        (None, p) => presets::preset(p.unwrap_or("default"))?,
        (Some(path), Some(p)) => {
            // The file's fields override the preset's.
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("in config file {}", path.display()))?;
            let mut over = Vec::new();
            for (section, table) in file {
                let table = table
                    .as_table()
                    .with_context(|| format!("{}: [{section}] must be a table", path.display()))?
                    .clone();
                for (k, v) in table {
                    over.push(format!("{section}.{k}={v}"));
                }
            }
            presets::preset(p)?.with_overrides(&over)?
        }
    };
    let cfg = base.with_overrides(overrides)?;
    cfg.validate()?;
    Ok(cfg)
}

fn train(a: TrainArgs) -> Result<()> {
    let run_dir = match &a.run_dir {
        Some(d) => d.clone(),
        None if a.resume => anyhow::bail!("--resume needs --run-dir"),
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from("runs").join(t.to_string())
        }
    };
    let mut cfg = if a.resume {
        TrainConfig::from_file(&run_dir.join("config.toml"))
            .context("--resume reads the run directory's config.toml")?
    } else {
        resolve_config(a.config.as_ref(), a.preset.as_deref(), &a.overrides)?
    };
    if let Some(d) = a.data_dir {
        cfg.data.data_dir = Some(d);
    }
    if a.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let plan = trainer::plan(&cfg, trainer::load_data(&cfg)?.train.len())?;
    eprintln!(
        "sparsedp: {} on {}, {} steps (q = {:.5}){}; run directory {}",
        cfg.model.name,
        cfg.data.dataset,
        plan.steps,
        plan.q,
        if cfg.privacy.enabled {
            format!(
                ", sigma = {:.4}, delta = {:e}{}",
                plan.sigma,
                plan.delta,
                plan.target_epsilon
                    .map(|e| format!(", target epsilon {e}"))
                    .unwrap_or_default()
            )
        } else {
            ", non-private".to_string()
        },
        run_dir.display()
    );
    let summary = trainer::train(
        &cfg,
        &run_dir,
        &trainer::RunOptions {
            resume: a.resume,
            quiet: a.quiet,
        },
    )?;
    println!(
        "test accuracy {:.2}%  |  {}  |  {} steps in {:.1} s ({:.0} examples/s), density {:.3}",
        summary.test_accuracy * 100.0,
        match (summary.epsilon, summary.delta) {
            (Some(e), Some(d)) => format!("epsilon {e:.3} at delta {d:e}"),
            _ => "non-private".to_string(),
        },
        summary.steps,
        summary.seconds,
        summary.examples_per_second,
        summary.density
    );
    if let Some(why) = &summary.stopped_early {
        println!("stopped early: {why}");
    }
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let cfg_path = a.model.join("config.toml");
    let run_cfg = if a.model.is_dir() && cfg_path.exists() {
        Some(TrainConfig::from_file(&cfg_path)?)
    } else {
        None
    };
    let arch = a
        .arch
        .or_else(|| run_cfg.as_ref().map(|c| c.model.name.clone()))
        .context("give --arch (no run directory config found)")?;
    let dataset = a
        .dataset
        .or_else(|| run_cfg.as_ref().map(|c| c.data.dataset.clone()))
        .context("give --dataset (no run directory config found)")?;
    let mut cfg = TrainConfig::default();
    cfg.model.name = arch;
    cfg.data.dataset = dataset;
    cfg.data.data_dir = a.data_dir.or(run_cfg.and_then(|c| c.data.data_dir));
    let mut model = models::build(&cfg.model.name, 0)?;
    trainer::load_weights(&a.model, model.as_mut())?;
    let data = trainer::load_data(&cfg)?;
    let (acc, loss) = trainer::evaluate(model.as_ref(), &data.test, data.name)?;
    println!(
        "{} on {} test: accuracy {:.2}%, loss {loss:.4}",
        cfg.model.name,
        cfg.data.dataset,
        acc * 100.0
    );
    Ok(())
}

fn prune(a: PruneArgs) -> Result<()> {
    let cfg = resolve_config(a.config.as_ref(), None, &a.overrides)?;
    let model = models::build(&cfg.model.name, cfg.model.seed)?;
    let data = trainer::load_data(&cfg)?;
    let s = sparsity::Sparsity::new(&cfg, model.as_ref(), data.public.as_ref(), data.name)?;
    sparsity::save_mask(&a.out, model.as_ref(), &s.pruning)?;
    println!(
        "{} pruned by {} to density {:.4}; saved to {}",
        cfg.model.name,
        cfg.pruning.score,
        s.pruning.density(model.params()),
        a.out.display()
    );
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    if let Some(name) = a.model {
        let m = models::build(&name, 0)?;
        let macs = models::forward_macs(m.as_ref())?;
        println!("model {name}");
        println!("  parameters: {}", m.params().num_scalars());
        println!(
            "  input: {:?}, classes: {}",
            m.input_shape(),
            m.num_classes()
        );
        println!(
            "  forward FLOPs per example: {} ({} multiply-accumulates)",
            2 * macs,
            macs
        );
        return Ok(());
    }
    println!("sparsedp {}", env!("CARGO_PKG_VERSION"));
    println!(
        "compute: CPU backend ({} rayon threads; GEMM engine {:?})",
        rayon_threads(),
        sparsedp_tensor::gemm_engine()
    );
    let dir = DataDir::resolve(a.data_dir.as_deref());
    println!("data directory: {}", dir.describe());
    for name in [
        DatasetName::MnistSubset,
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
    ] {
        let found = dir.has(name);
        println!(
            "  {:<14} {}",
            name.cli_name(),
            if found {
                "found".to_string()
            } else {
                format!("missing (cargo xtask data {})", name.cli_name())
            }
        );
    }
    println!("models:");
    for (n, d) in models::MODELS {
        println!("  {n:<16} {d}");
    }
    println!("presets:");
    for (n, d) in presets::PRESETS {
        println!("  {n:<17} {d}");
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
