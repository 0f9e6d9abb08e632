//! `cargo xtask reproduce <suite>`: run a declared grid of `sparsedp train` runs (cached by the
//! hash of each run's resolved configuration), then write `results/<suite>.{json,md}` and plots.

pub mod cache;
pub mod exec;
pub mod plot;
pub mod report;
pub mod suite;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use exec::{Job, Trainer};
use report::CellResult;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Compute backend of the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU backend (rayon + OpenBLAS).
    Cpu,
    /// The wgpu GPU backend (per-example clipping on the GPU; `training.device = "wgpu"`).
    Wgpu,
}

impl Device {
    /// The trainer override selecting this device. The device is part of each run's
    /// configuration (and so of its cache key): GPU and CPU runs round differently.
    fn override_(self) -> String {
        match self {
            Device::Cpu => "training.device=cpu".into(),
            Device::Wgpu => "training.device=wgpu".into(),
        }
    }
}

/// `cargo xtask reproduce`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suite name (a file xtask/suites/<NAME>.toml) or a path to a suite file.
    pub suite: String,
    /// `quick` (small grids, 1 epoch: minutes to an hour on 2 cores), `full` (the published
    /// setups), or another profile the suite file declares (`medium` in some).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Dataset directory (else $SPARSEDP_DATA, else ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Runs made at the same time (each already uses every core).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Results directory (runs go in <DIR>/runs/<hash>).
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Print the command of every run not yet done, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run nothing: write the report from the runs already finished (the others show as
    /// missing).
    #[arg(long)]
    pub report_only: bool,
    /// Runs interrupted after a checkpoint start over instead of resuming.
    #[arg(long)]
    pub no_resume: bool,
    /// Seeds instead of the profile's, e.g. `0,1,2,3` (more seeds to tell methods apart).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Keep only these labels of an axis, e.g. `--only dataset=mnist --only epsilon=3,8`.
    #[arg(long, value_name = "AXIS=LABEL[,LABEL]")]
    pub only: Vec<String>,
    /// Build and use the `sparsedp` of another checkout (e.g. a clean clone at a fixed commit
    /// while this tree has work in progress); its commit is recorded with each run.
    #[arg(long)]
    pub trainer_root: Option<PathBuf>,
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `path` made absolute against the current directory, then shown relative to `root` when it
/// lies inside it (commands printed for a person stay short and portable).
fn under_root(root: &Path, path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match abs.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => abs,
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit of the working tree, `-dirty` when the sources the trainer is built from differ.
pub(crate) fn commit(root: &Path) -> String {
    let head = git(root, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(
        root,
        &[
            "status",
            "--porcelain",
            "--",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// OS, architecture, CPU count and model.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{} {}, {cpus} CPUs ({model})",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// One (cell, seed) of the plan.
struct Slot {
    cell: usize,
    seed: u64,
    job: Job,
}

/// Runs the suite.
pub fn run(args: &Args) -> Result<()> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let started = Instant::now();
    let root = workspace_root();
    let (name, suite) = suite::load(&suite::suites_dir(), &args.suite)?;
    let mut plan = suite::expand(&suite, &args.profile)
        .with_context(|| format!("suite '{name}', profile '{}'", args.profile))?;
    if let Some(seeds) = &args.seeds {
        if seeds.is_empty() {
            bail!("--seeds needs at least one seed");
        }
        plan.seeds = seeds.clone();
    }
    for o in &args.only {
        let (axis, labels) = o
            .split_once('=')
            .with_context(|| format!("--only '{o}' must look like AXIS=LABEL[,LABEL]"))?;
        let labels: Vec<String> = labels.split(',').map(str::to_string).collect();
        plan.restrict(axis, &labels)?;
    }
    let trainer_root = match &args.trainer_root {
        Some(d) => {
            std::fs::canonicalize(d).with_context(|| format!("--trainer-root {}", d.display()))?
        }
        None => root.clone(),
    };
    let bin = exec::build_sparsedp(&trainer_root)?;
    if !suite.requires_models.is_empty() {
        let have = exec::models(&bin)?;
        let missing: Vec<&String> = suite
            .requires_models
            .iter()
            .filter(|m| !have.contains(m))
            .collect();
        if !missing.is_empty() {
            bail!(
                "suite '{name}' needs model {}, which this sparsedp does not have (`sparsedp \
                 info` lists: {}); the model must be added to crates/train/src/models.rs first",
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                have.join(", ")
            );
        }
    }
    let results = under_root(&root, &args.results_dir);
    let results_abs = root.join(&results);
    std::fs::create_dir_all(results_abs.join("runs"))
        .with_context(|| format!("creating {}", results_abs.display()))?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("SPARSEDP_DATA").map(PathBuf::from))
        .map(|d| under_root(&root, &d));
    let trainer = Trainer {
        bin,
        cwd: root.clone(),
        data_dir,
    };
    let results_str = results.display().to_string();
    let commit = commit(&trainer_root);
    let machine = machine();
    let meta = json!({ "git_commit": commit, "machine": machine });

    // Pretraining runs first: cells refer to their directories.
    let mut pre_jobs = Vec::new();
    for p in &plan.pretrain {
        let mut set = p.set.clone();
        set.push(args.device.override_());
        let resolved = trainer.resolve(&p.preset, &set)?;
        let hash = cache::config_hash(&resolved, &results_str);
        let dir = cache::run_dir(&results, &hash);
        let when = p
            .when
            .iter()
            .map(|(a, l)| format!("{a}={l}"))
            .collect::<Vec<_>>()
            .join(" ");
        let serves = if when.is_empty() {
            String::new()
        } else {
            format!(" (for {when})")
        };
        pre_jobs.push(Job {
            name: format!("pretrain @{} with preset {}{serves}", p.name, p.preset),
            preset: p.preset.clone(),
            set,
            dir,
            hash,
        });
    }
    let mut slots = Vec::new();
    for (ci, cell) in plan.cells.iter().enumerate() {
        for &seed in &plan.seeds {
            let mut set = Vec::new();
            for o in cell.seeded(seed) {
                set.push(match suite::reference_in(&o) {
                    Some(r) => {
                        let i = suite::pretrain_for(&plan.pretrain, cell, r)?;
                        let key = o.split_once('=').map(|(k, _)| k).unwrap_or(&o);
                        format!("{key}={}", pre_jobs[i].dir.display())
                    }
                    None => o,
                });
            }
            set.push(args.device.override_());
            let resolved = trainer.resolve(&cell.preset, &set)?;
            let hash = cache::config_hash(&resolved, &results_str);
            let dir = cache::run_dir(&results, &hash);
            let what = cell
                .labels
                .iter()
                .map(|(a, l)| format!("{a}={l}"))
                .collect::<Vec<_>>()
                .join(" ");
            slots.push(Slot {
                cell: ci,
                seed,
                job: Job {
                    name: format!("{what} seed={seed}"),
                    preset: cell.preset.clone(),
                    set,
                    dir,
                    hash,
                },
            });
        }
    }
    let pending = |jobs: &mut dyn Iterator<Item = &Job>| -> Vec<Job> {
        let mut seen = std::collections::BTreeSet::new();
        jobs.filter(|j| {
            cache::state(&root.join(&j.dir)) != cache::State::Done && seen.insert(j.hash.clone())
        })
        .cloned()
        .collect()
    };
    let mut todo_pre = pending(&mut pre_jobs.iter());
    let mut todo = pending(&mut slots.iter().map(|s| &s.job));
    let distinct: std::collections::BTreeSet<&str> =
        slots.iter().map(|s| s.job.hash.as_str()).collect();
    let total = distinct.len() + pre_jobs.len();
    let cached = total - todo.len() - todo_pre.len();
    eprintln!(
        "xtask: suite {name} ({} profile): {} cells x {} seeds = {} runs ({} distinct) + {} \
         pretraining; {cached} done (cached), {} to run",
        args.profile,
        plan.cells.len(),
        plan.seeds.len(),
        slots.len(),
        distinct.len(),
        pre_jobs.len(),
        todo.len() + todo_pre.len()
    );
    if args.dry_run {
        for j in todo_pre.iter().chain(&todo) {
            println!("{}", trainer.command_line(j));
        }
        return Ok(());
    }
    if args.report_only {
        todo_pre.clear();
        todo.clear();
    }
    // Jobs refer to run directories relative to the root, where the trainer runs.
    if args.no_resume {
        for j in todo_pre.iter().chain(&todo) {
            let d = root.join(&j.dir);
            if cache::state(&d) == cache::State::Checkpoint {
                std::fs::remove_dir_all(&d)?;
            }
        }
    }
    let absolute = |jobs: &mut Vec<Job>| {
        for j in jobs.iter_mut() {
            j.dir = root.join(&j.dir);
        }
    };
    absolute(&mut todo_pre);
    absolute(&mut todo);
    let mut failures = trainer.run_all(todo_pre, args.jobs, &meta);
    if !failures.is_empty() {
        for (n, e) in &failures {
            eprintln!("xtask: failed: {n}: {e}");
        }
        bail!(
            "{} pretraining run(s) failed; the cells that start from them were not run",
            failures.len()
        );
    }
    failures.extend(trainer.run_all(todo, args.jobs, &meta));

    // Collect.
    let mut cells: Vec<CellResult> = plan
        .cells
        .iter()
        .map(|c| CellResult {
            labels: c.labels.clone(),
            accuracies: Vec::new(),
            seeds: Vec::new(),
            command: String::new(),
        })
        .collect();
    let mut runs = Vec::new();
    for s in &slots {
        let dir = root.join(&s.job.dir);
        let command = trainer.command_line(&s.job);
        if cells[s.cell].command.is_empty() {
            cells[s.cell].command = command.clone();
        }
        let labels: serde_json::Map<String, Value> = plan.cells[s.cell]
            .labels
            .iter()
            .map(|(a, l)| (a.clone(), Value::String(l.clone())))
            .collect();
        let mut rec = json!({
            "cell": labels,
            "seed": s.seed,
            "config_hash": s.job.hash,
            "run_dir": s.job.dir.display().to_string(),
            "command": command,
        });
        if cache::state(&dir) == cache::State::Done {
            let sum = cache::summary(&dir)?;
            let m = cache::meta(&dir);
            if let Some(a) = sum["test_accuracy"].as_f64() {
                cells[s.cell].accuracies.push(100.0 * a);
                cells[s.cell].seeds.push(s.seed);
            }
            rec["status"] = "done".into();
            for k in [
                "test_accuracy",
                "test_loss",
                "epsilon",
                "delta",
                "sigma",
                "q",
                "steps",
                "planned_steps",
                "stopped_early",
                "seconds",
                "examples_per_second",
                "density",
                "train_examples",
            ] {
                rec[k] = sum[k].clone();
            }
            rec["git_commit"] = m["git_commit"].clone();
            rec["machine"] = m["machine"].clone();
        } else {
            rec["status"] = "not finished".into();
        }
        runs.push(rec);
    }
    let cell_json: Vec<Value> = cells
        .iter()
        .map(|c| {
            let (mean, std, n) = report::mean_std(&c.accuracies)
                .map(|(m, s, n)| (Some(m), s, n))
                .unwrap_or((None, None, 0));
            json!({
                "cell": c.labels.iter().map(|(a, l)| (a.clone(), Value::String(l.clone())))
                    .collect::<serde_json::Map<_, _>>(),
                "accuracy_mean": mean,
                "accuracy_std": std,
                "seeds_done": n,
                "command_seed0": c.command,
            })
        })
        .collect();
    let pretrain_json: Vec<Value> = pre_jobs
        .iter()
        .map(|j| {
            json!({
                "name": j.name,
                "config_hash": j.hash,
                "run_dir": j.dir.display().to_string(),
                "command": trainer.command_line(j),
                "test_accuracy": cache::summary(&root.join(&j.dir)).ok()
                    .map(|s| s["test_accuracy"].clone()),
            })
        })
        .collect();
    let total_seconds: f64 = runs.iter().filter_map(|r| r["seconds"].as_f64()).sum();
    let invocation = std::iter::once("cargo xtask".to_string())
        .chain(std::env::args().skip(1).map(|a| exec::shell_quote(&a)))
        .collect::<Vec<_>>()
        .join(" ");
    let doc = json!({
        "suite": name,
        "profile": args.profile,
        "description": suite.description,
        "generated": { "git_commit": commit, "machine": machine, "invocation": invocation },
        "seeds": plan.seeds,
        "runs_total": total,
        "runs_cached": cached,
        "training_seconds_total": total_seconds,
        "pretrain": pretrain_json,
        "cells": cell_json,
        "runs": runs,
    });
    let json_path = results_abs.join(format!("{name}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;

    let mut md = format!(
        "# {name} ({} profile)\n\n{}\n\nGenerated by `{invocation}` at commit `{commit}` on \
         {machine}. {total} runs ({cached} from the cache), {:.0} s of training in all (summed \
         over runs, wall clock of each).\n\n",
        args.profile, suite.description, total_seconds
    );
    let run_commits: std::collections::BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r["git_commit"].as_str().map(str::to_string))
        .collect();
    if !run_commits.is_empty() {
        md.push_str(&format!(
            "Runs were made at commit(s): {}.\n\n",
            run_commits
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    md.push_str(&report::markdown(&suite, &plan, &cells));
    let mut figures = Vec::new();
    for spec in &suite.plot {
        for fig in plot::figures(&name, &plan, spec, &suite.reference, &cells) {
            plot::write(&results_abs, &fig)?;
            figures.push(fig.stem);
        }
    }
    if !figures.is_empty() {
        md.push_str("## Plots\n\n");
        for f in &figures {
            md.push_str(&format!("![{f}]({f}.svg)\n\n"));
        }
    }
    md.push_str(
        "## Commands\n\nEach cell by hand (seed 0; other seeds change `training.seed` and \
         `model.seed`), from the workspace root:\n\n",
    );
    for j in &pre_jobs {
        md.push_str(&format!("- {}: `{}`\n", j.name, trainer.command_line(j)));
    }
    for (c, cell) in cells.iter().zip(&plan.cells) {
        let what = cell
            .labels
            .iter()
            .map(|(a, l)| format!("{a}={l}"))
            .collect::<Vec<_>>()
            .join(", ");
        md.push_str(&format!("- {what}: `{}`\n", c.command));
    }
    let md_path = results_abs.join(format!("{name}.md"));
    std::fs::write(&md_path, md)?;
    eprintln!(
        "xtask: wrote {}, {} and {} plot(s) in {:.1} s",
        json_path.display(),
        md_path.display(),
        figures.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for (n, e) in &failures {
            eprintln!("xtask: failed: {n}: {e}");
        }
        bail!(
            "{} run(s) failed (the report shows the rest)",
            failures.len()
        );
    }
    Ok(())
}
