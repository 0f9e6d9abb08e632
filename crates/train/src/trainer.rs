//! The DP-SGD training loop.
//!
//! One step (see `docs/method.md` and `../shared`'s DP-SGD sheet, reproduced in the docs):
//! 1. the active mask of the step: pruning mask AND this step's selection (never reads private
//!    data);
//! 2. a Poisson-sampled logical batch (rate `q`), run as physical chunks; per chunk the clipping
//!    engine returns `sum_i c_i (M o G_i)`, accumulated over chunks;
//! 3. Gaussian noise of std `sigma * C` on the active coordinates only;
//! 4. division by the *expected* batch size `q N` (not the realised one, which is private);
//! 5. an optimiser update of the active coordinates only;
//! 6. one `(q, sigma)` step recorded by the accountant; the run stops before a step that would
//!    exceed the target epsilon.
//!
//! Every random choice (sampling, augmentation, selection, noise) is drawn from a stream derived
//! from `(seed, step)`, so a run resumed from a checkpoint repeats an uninterrupted one exactly.

use crate::config::TrainConfig;
use crate::models;
use crate::optim::{Ema, Optimizer, learning_rate};
use crate::sparsity::Sparsity;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use sparsedp_accountant::{
    CalibrationOptions, FractionalSeries, Orders, Phase, RdpAccountant, calibrate_sigma,
    steps_for_epochs,
};
use sparsedp_data::{
    Augment, BatchBuilder, DataDir, Dataset, DatasetName, Normalize, PadMode, PoissonChunks,
    PoissonSampler, RandomCrop, Split, public_private_split,
};
use sparsedp_nn::{ClipConfig, Engine, Model, ParamMask, Tape, batch_gradient, clip_batch};
use sparsedp_prune::io::{load_params_into, save_params, save_params_with_metadata};
use sparsedp_tensor::{Device, Tensor, TensorRng};
use std::collections::HashMap;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Domain separators for the per-step random streams derived from the training seed.
const NOISE_STREAM: u64 = 0x6e6f697365; // "noise"

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Test-set accuracy of the final (or EMA) weights.
    pub test_accuracy: f64,
    /// Test-set mean loss.
    pub test_loss: f64,
    /// Epsilon spent (`None` for non-private runs).
    pub epsilon: Option<f64>,
    /// Delta.
    pub delta: Option<f64>,
    /// Noise multiplier.
    pub sigma: Option<f64>,
    /// Poisson sampling rate.
    pub q: f64,
    /// Steps taken.
    pub steps: u64,
    /// Steps planned.
    pub planned_steps: u64,
    /// Why the run stopped before the plan, if it did.
    pub stopped_early: Option<String>,
    /// Training examples processed per second (wall clock of the steps taken in this process).
    pub examples_per_second: f64,
    /// Wall-clock seconds of training in this process.
    pub seconds: f64,
    /// Fraction of active (trainable) coordinates after pruning.
    pub density: f64,
    /// Private training set size.
    pub train_examples: usize,
    /// The device that computed the per-example gradients, e.g. `cpu (2 threads)`.
    pub device: String,
}

/// The datasets of a run.
pub struct RunData {
    /// Private training set.
    pub train: Arc<Dataset>,
    /// Public data (a held-out part of the training set), if configured.
    pub public: Option<Arc<Dataset>>,
    /// Test set.
    pub test: Arc<Dataset>,
    /// Which dataset.
    pub name: DatasetName,
}

/// Loads the datasets of `cfg` (and the public split, if any).
pub fn load_data(cfg: &TrainConfig) -> Result<RunData> {
    let name = DatasetName::from_cli_name(&cfg.data.dataset)
        .with_context(|| format!("unknown dataset '{}'", cfg.data.dataset))?;
    let dir = DataDir::resolve(cfg.data.data_dir.as_deref());
    let train = dir.load(name, Split::Train)?;
    let test = dir.load(name, Split::Test)?;
    let (train, public) = if cfg.data.public_fraction > 0.0 {
        let split = public_private_split(train.len(), cfg.data.public_fraction, cfg.training.seed)?;
        let public = train.subset(&split.public, format!("{}-public", train.name()))?;
        let private = train.subset(&split.private, format!("{}-private", train.name()))?;
        (private, Some(Arc::new(public)))
    } else {
        (train, None)
    };
    let (train, public) = match (cfg.data.train_on.as_str(), public) {
        // Training on the public split: it becomes the training set, and nothing else of the
        // training data is touched.
        ("public", Some(p)) => (Arc::try_unwrap(p).unwrap_or_else(|p| (*p).clone()), None),
        (_, p) => (train, p),
    };
    Ok(RunData {
        train: Arc::new(train),
        public,
        test: Arc::new(test),
        name,
    })
}

/// Delta when none is given: 1e-5 if that is below 1/N, else 1/(10 N).
pub fn default_delta(n: usize) -> f64 {
    if 1e-5 < 1.0 / n as f64 {
        1e-5
    } else {
        0.1 / n as f64
    }
}

fn orders(name: &str) -> Orders {
    match name {
        "dp-accounting" => Orders::dp_accounting(),
        "tf-privacy" => Orders::tf_privacy(),
        _ => Orders::opacus(),
    }
}

/// The privacy plan: sampling rate, steps, delta and noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Poisson sampling rate `B / N`.
    pub q: f64,
    /// Planned steps.
    pub steps: u64,
    /// Delta.
    pub delta: f64,
    /// Noise multiplier (0 for non-private runs).
    pub sigma: f64,
    /// Target epsilon, if calibrated.
    pub target_epsilon: Option<f64>,
}

/// Computes the plan: `q = B / N`, `steps = ceil(epochs / q)`, delta, and sigma (calibrated so
/// the planned steps stay within the target epsilon, or as given).
pub fn plan(cfg: &TrainConfig, n: usize) -> Result<Plan> {
    if cfg.training.batch_size > n {
        bail!(
            "training.batch_size = {} exceeds the {n} private training examples",
            cfg.training.batch_size
        );
    }
    let q = sparsedp_accountant::sampling_rate(cfg.training.batch_size as u64, n as u64)?;
    let steps = steps_for_epochs(cfg.training.epochs, q)?;
    let p = &cfg.privacy;
    let delta = p.delta.unwrap_or_else(|| default_delta(n));
    if !p.enabled {
        return Ok(Plan {
            q,
            steps,
            delta,
            sigma: 0.0,
            target_epsilon: None,
        });
    }
    let sigma = match (p.epsilon, p.noise_multiplier) {
        (_, Some(s)) => s,
        (Some(eps), None) => {
            let options = CalibrationOptions {
                orders: orders(&p.orders),
                epsilon_tolerance: (eps * 1e-3).min(0.01),
                ..CalibrationOptions::default()
            };
            calibrate_sigma(eps, delta, q, steps, &options)?.sigma
        }
        (None, None) => bail!("give privacy.epsilon or privacy.noise_multiplier"),
    };
    Ok(Plan {
        q,
        steps,
        delta,
        sigma,
        target_epsilon: p.epsilon,
    })
}

fn augment(cfg: &TrainConfig) -> Augment {
    Augment {
        crop: (cfg.data.crop_padding > 0).then_some(RandomCrop {
            padding: cfg.data.crop_padding,
            mode: PadMode::Reflect,
        }),
        hflip: cfg.data.flip,
    }
}

/// Test accuracy and mean loss of `model` on `data` (batches of 500).
pub fn evaluate(model: &dyn Model, data: &Arc<Dataset>, name: DatasetName) -> Result<(f64, f64)> {
    let builder = BatchBuilder::new(
        Arc::clone(data),
        Normalize::for_dataset(name),
        Augment::NONE,
        1,
        0,
    )?;
    let n = data.len();
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(500) {
        let b = builder.build(chunk, 0)?;
        let x = Tensor::from_vec(b.data, &b.shape)?;
        let labels: Vec<usize> = b.labels.iter().map(|&l| l as usize).collect();
        let mut tape = Tape::new(model.params());
        let input = tape.input(x);
        let logits = model.forward(&mut tape, input)?;
        let losses = tape.value(logits).cross_entropy(&labels)?;
        loss_sum += losses.to_vec().iter().map(|&l| f64::from(l)).sum::<f64>();
        let k = model.num_classes();
        let v = tape.value(logits).to_vec();
        for (row, &label) in v.chunks(k).zip(&labels) {
            let arg = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            correct += usize::from(arg == label);
        }
    }
    Ok((correct as f64 / n as f64, loss_sum / n as f64))
}

/// State restored from a checkpoint.
struct Restored {
    step: u64,
    history: Vec<Phase>,
}

/// The checkpoint file in a run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The final model file in a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Metadata key of the checkpoint's training state (JSON).
const CHECKPOINT_META: &str = "sparsedp.train";

// Everything a checkpoint holds is passed explicitly, so nothing is saved by accident.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    dir: &Path,
    model: &dyn Model,
    opt: &Optimizer,
    ema: Option<&Ema>,
    sparsity: &Sparsity,
    step: u64,
    acc: Option<&RdpAccountant>,
    plan: &Plan,
) -> Result<()> {
    let mut extra = Vec::new();
    for (id, p) in model.params().iter() {
        let shape = p.value.shape();
        extra.push((
            format!("optim.m/{}", p.name),
            Tensor::from_slice(&opt.m[id.0], shape)?,
        ));
        if !opt.v.is_empty() {
            extra.push((
                format!("optim.v/{}", p.name),
                Tensor::from_slice(&opt.v[id.0], shape)?,
            ));
        }
        if let Some(e) = ema {
            extra.push((format!("ema/{}", p.name), e.values[id.0].clone()));
        }
    }
    let history: Vec<[f64; 3]> = acc
        .map(|a| {
            a.history()
                .iter()
                .map(|p| [p.q, p.sigma, p.steps as f64])
                .collect()
        })
        .unwrap_or_default();
    let meta = serde_json::json!({
        "step": step,
        "optimizer_t": opt.t,
        "history": history,
        "sigma": plan.sigma,
        "q": plan.q,
    });
    let metadata = HashMap::from([(CHECKPOINT_META.to_string(), meta.to_string())]);
    save_params_with_metadata(
        &dir.join(CHECKPOINT),
        model.params(),
        Some(&sparsity.pruning),
        &extra,
        &metadata,
    )?;
    Ok(())
}

fn load_checkpoint(
    dir: &Path,
    model: &mut dyn Model,
    opt: &mut Optimizer,
    ema: Option<&mut Ema>,
    sparsity: &mut Sparsity,
) -> Result<Restored> {
    let path = dir.join(CHECKPOINT);
    let loaded = load_params_into(&path, model.params_mut())?;
    let meta: serde_json::Value = serde_json::from_str(
        loaded
            .metadata
            .get(CHECKPOINT_META)
            .with_context(|| format!("{} is not a training checkpoint", path.display()))?,
    )?;
    let extra: HashMap<&str, &Tensor> = loaded.extra.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let get = |name: &str| -> Result<Vec<f32>> {
        extra
            .get(name)
            .map(|t| t.to_vec())
            .with_context(|| format!("{} lacks tensor {name}", path.display()))
    };
    let names: Vec<(sparsedp_nn::ParamId, String)> = model
        .params()
        .iter()
        .map(|(id, p)| (id, p.name.clone()))
        .collect();
    for (id, name) in &names {
        opt.m[id.0] = get(&format!("optim.m/{name}"))?;
        if !opt.v.is_empty() {
            opt.v[id.0] = get(&format!("optim.v/{name}"))?;
        }
    }
    if let Some(e) = ema {
        for (id, name) in &names {
            let v = get(&format!("ema/{name}"))?;
            e.values[id.0] = Tensor::from_vec(v, model.params().value(*id).shape())?;
        }
    }
    sparsity.pruning = loaded
        .mask
        .unwrap_or_else(|| ParamMask::dense(model.params()));
    opt.t = meta["optimizer_t"]
        .as_u64()
        .context("checkpoint: optimizer_t")?;
    let history = meta["history"]
        .as_array()
        .context("checkpoint: history")?
        .iter()
        .map(|h| -> Result<Phase> {
            let a = h.as_array().context("checkpoint: history entry")?;
            let f = |i: usize| {
                a.get(i)
                    .and_then(|v| v.as_f64())
                    .context("checkpoint: history")
            };
            Ok(Phase::new(f(0)?, f(1)?, f(2)? as u64)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Restored {
        step: meta["step"].as_u64().context("checkpoint: step")?,
        history,
    })
}

/// Loads a trained model's weights from a run directory or a `.safetensors` file (the final
/// `model.safetensors` or a checkpoint) into `model`; returns the stored pruning mask.
pub fn load_weights(path: &Path, model: &mut dyn Model) -> Result<ParamMask> {
    let file_path = if path.is_dir() {
        let m = path.join(MODEL_FILE);
        if m.exists() { m } else { path.join(CHECKPOINT) }
    } else {
        path.to_path_buf()
    };
    let loaded = load_params_into(&file_path, model.params_mut())?;
    Ok(loaded
        .mask
        .unwrap_or_else(|| ParamMask::dense(model.params())))
}

/// Saves the final model (weights, or their EMA, and the pruning mask).
fn save_model(dir: &Path, model: &dyn Model, sparsity: &Sparsity) -> Result<PathBuf> {
    let path = dir.join(MODEL_FILE);
    save_params(&path, model.params(), Some(&sparsity.pruning), &[])?;
    Ok(path)
}

/// Appends JSON lines to `metrics.jsonl`.
struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    /// Opens the metrics file: truncated for a new run; on resume, records past the checkpoint's
    /// step (written by the interrupted process after its last checkpoint) are dropped.
    fn open(dir: &Path, keep_up_to: Option<u64>) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        if keep_up_to.is_none() {
            std::fs::write(&path, "")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(step) = keep_up_to
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&path, kept)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Metrics { file })
    }

    fn write(&mut self, v: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")?;
        Ok(())
    }
}

/// Options of a run that are not part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Print a line per evaluation instead of a progress bar.
    pub quiet: bool,
}

/// Trains as `cfg` says, writing into `dir`; returns the summary (also in `summary.json`).
pub fn train(cfg: &TrainConfig, dir: &Path, opts: &RunOptions) -> Result<Summary> {
    cfg.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join("config.toml");
    if !opts.resume {
        std::fs::write(&config_path, cfg.to_toml())?;
    }
    let data = load_data(cfg)?;
    let n = data.train.len();
    let plan = plan(cfg, n)?;
    let mut model = models::build(&cfg.model.name, cfg.model.seed)?;
    if model.input_shape() != data.train.shape() {
        bail!(
            "model '{}' expects inputs {:?} but {} has {:?}",
            cfg.model.name,
            model.input_shape(),
            data.name.cli_name(),
            data.train.shape()
        );
    }
    if let Some(from) = &cfg.model.init_from {
        load_weights(from, model.as_mut())?;
        if cfg.model.reinit_head {
            crate::sparsity::reinit_head(model.as_mut())?;
        }
    }
    let mut sparsity = Sparsity::new(cfg, model.as_ref(), data.public.as_ref(), data.name)?;
    if cfg.pruning.zero_pruned {
        // Classic pruning: the frozen coordinates are zero rather than their initial values.
        let ids: Vec<_> = model.params().iter().map(|(id, _)| id).collect();
        for id in ids {
            let pruned = sparsity.pruning.apply(id, model.params().value(id))?;
            model.params_mut().get_mut(id).value = pruned;
        }
    }
    let mut opt = Optimizer::new(&cfg.training, model.params())?;
    let mut ema = cfg.training.ema_decay.map(|d| Ema::new(d, model.params()));
    let dp = cfg.privacy.enabled;
    let mut accountant = dp
        .then(|| RdpAccountant::new(orders(&cfg.privacy.orders), FractionalSeries::AbsoluteBound));
    let mut start = 0u64;
    if opts.resume {
        let r = load_checkpoint(dir, model.as_mut(), &mut opt, ema.as_mut(), &mut sparsity)
            .with_context(|| format!("cannot resume from {}", dir.display()))?;
        start = r.step;
        if let Some(acc) = accountant.as_mut() {
            *acc = RdpAccountant::with_history(acc.orders().clone(), acc.series(), &r.history)?;
        }
    }
    let mut metrics = Metrics::open(dir, opts.resume.then_some(start))?;
    let device = resolve_device(&cfg.training.device)?;
    // On a GPU, a second instance of the model holds device copies of the parameters, refreshed
    // from the CPU model (the one the optimiser updates and checkpoints save) at every step.
    let mut gpu_model = match device {
        Device::Cpu => None,
        _ => Some(models::build(&cfg.model.name, cfg.model.seed)?),
    };
    let mut active_dev = None;
    let engine = Engine::from_name(&cfg.privacy.engine).context("unknown engine")?;
    let clip = {
        let mut c = ClipConfig::flat(cfg.privacy.clip_norm);
        c.views = cfg.data.views;
        if cfg.privacy.per_layer_clipping {
            let layers = crate::sparsity::parametric_layers(model.as_ref())?;
            let b = cfg.privacy.clip_norm / (layers as f32).sqrt();
            c.per_layer = Some(vec![b; layers]);
        }
        c
    };
    let builder = BatchBuilder::new(
        Arc::clone(&data.train),
        Normalize::for_dataset(data.name),
        augment(cfg),
        cfg.data.views,
        cfg.training.seed,
    )?;
    let mut sampler = PoissonSampler::new(n, plan.q, cfg.training.seed)?;
    sampler.set_step(start);
    let chunk = NonZeroUsize::new(cfg.training.physical_batch).context("physical_batch >= 1")?;
    let remaining = plan.steps.saturating_sub(start);
    let stream = PoissonChunks::new(sampler, builder, chunk, remaining)?.prefetch(2);

    let bar = progress_bar(plan.steps, start, cfg.output.progress && !opts.quiet);
    let expected = (plan.q * n as f64) as f32;
    let started = Instant::now();
    let mut processed = 0usize;
    let mut sums: Vec<Tensor> = Vec::new();
    let mut step_loss = (0.0f64, 0usize);
    let mut step_clipped = (0usize, 0usize);
    let mut stopped_early = None;
    let mut step = start;
    let mut last_eval: Option<(f64, f64)> = None;
    let mut active = sparsity.pruning.clone();
    let mut skip_step = false;
    for c in stream {
        let c = c?;
        if c.chunk == 0 {
            step = c.step;
            // Stop before a step that would exceed the budget.
            if let (Some(acc), Some(target)) = (accountant.as_ref(), plan.target_epsilon) {
                let next = acc
                    .curve_with(plan.q, plan.sigma, 1)?
                    .epsilon(plan.delta)?
                    .epsilon;
                if next > target {
                    stopped_early = Some(format!(
                        "step {} would spend epsilon {next:.4} > target {target}",
                        step + 1
                    ));
                    break;
                }
            }
            active = sparsity.active_mask(model.as_ref(), step)?;
            if let Some(gm) = gpu_model.as_mut() {
                upload_params(model.params(), gm.params_mut(), device)?;
                active_dev = Some(active.to_device(device)?);
            }
            sums = model
                .params()
                .iter()
                .map(|(_, p)| Tensor::zeros(p.value.shape()))
                .collect();
            step_loss = (0.0, 0);
            step_clipped = (0, 0);
            skip_step = false;
        }
        if skip_step {
            continue;
        }
        let last_in_step = c.is_last_in_step();
        let logical_batch_size = c.logical_batch_size;
        let b = c.batch;
        if !b.is_empty() {
            let examples = b.examples();
            // The chunk is owned and not read again: its pixels move into the tensor.
            let x = Tensor::from_vec(b.data, &b.shape)?.to_device(device)?;
            let labels: Vec<usize> = b.labels.iter().map(|&l| l as usize).collect();
            let (m, mask) = match (gpu_model.as_ref(), active_dev.as_ref()) {
                (Some(gm), Some(a)) => (gm.as_ref(), a),
                _ => (model.as_ref(), &active),
            };
            if dp {
                let out = clip_batch(engine, m, &x, &labels, mask, &clip)
                    .map_err(|e| nonfinite_context(e, step))?;
                for (s, g) in sums.iter_mut().zip(&out.clipped_sum) {
                    add_on_host(s, g)?;
                }
                step_loss.0 += out.losses.iter().map(|&l| f64::from(l)).sum::<f64>();
                step_loss.1 += out.losses.len();
                step_clipped.0 += out.factors.iter().filter(|&&f| f < 1.0).count();
                step_clipped.1 += out.factors.len();
            } else {
                let (g, losses) =
                    batch_gradient(m, &x, &labels).map_err(|e| nonfinite_context(e, step))?;
                for (s, g) in sums.iter_mut().zip(&g) {
                    add_on_host(s, g)?;
                }
                step_loss.0 += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
                step_loss.1 += losses.len();
            }
            processed += examples;
        }
        if !last_in_step {
            continue;
        }
        // Noise on the active coordinates, then the expected-batch-size average.
        let grads = if dp {
            let mut rng = if cfg.privacy.secure_rng {
                TensorRng::from_os_entropy()?
            } else {
                TensorRng::seeded_stream(cfg.training.seed ^ NOISE_STREAM, step)
            };
            privatize(
                &sums,
                &active,
                plan.sigma,
                cfg.privacy.clip_norm,
                expected,
                &mut rng,
            )?
        } else {
            sums.iter().map(|s| s.scale(1.0 / expected)).collect()
        };
        let lr = learning_rate(&cfg.training, step, plan.steps);
        opt.step(model.params_mut(), &grads, &active, lr)?;
        if let Some(acc) = accountant.as_mut() {
            acc.step(plan.q, plan.sigma)?;
        }
        if let Some(e) = ema.as_mut() {
            e.update(model.params())?;
        }
        let done = step + 1;
        let eps = match accountant.as_ref() {
            Some(a) => Some(a.epsilon(plan.delta)?.epsilon),
            None => None,
        };
        let elapsed = started.elapsed().as_secs_f64();
        let loss = step_loss.0 / step_loss.1.max(1) as f64;
        if !loss.is_finite() {
            bail!(
                "the training loss became {loss} at step {done}: stopping instead of training on garbage (lower training.lr or privacy.clip_norm)"
            );
        }
        metrics.write(&serde_json::json!({
            "step": done,
            "epoch": done as f64 * plan.q,
            "loss": loss,
            "batch_size": logical_batch_size,
            "epsilon": eps,
            "lr": lr,
            "clip_fraction": step_clipped.0 as f64 / step_clipped.1.max(1) as f64,
            "examples_per_second": processed as f64 / elapsed.max(1e-9),
        }))?;
        let eval_now = cfg.training.eval_every > 0 && done.is_multiple_of(cfg.training.eval_every);
        if eval_now {
            let (acc, tl) = with_eval_weights(model.as_mut(), ema.as_ref(), |m| {
                evaluate(m, &data.test, data.name)
            })?;
            last_eval = Some((acc, tl));
            metrics
                .write(&serde_json::json!({"step": done, "test_accuracy": acc, "test_loss": tl}))?;
            if opts.quiet {
                eprintln!(
                    "step {done}/{}: loss {loss:.4}, test accuracy {:.2}%{}",
                    plan.steps,
                    acc * 100.0,
                    eps.map(|e| format!(", epsilon {e:.3}")).unwrap_or_default()
                );
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(done);
            bar.set_message(format!(
                "loss {loss:.3}{}{} | {:.0} ex/s",
                last_eval
                    .map(|(a, _)| format!(" | acc {:.1}%", a * 100.0))
                    .unwrap_or_default(),
                eps.map(|e| format!(" | eps {e:.2}")).unwrap_or_default(),
                processed as f64 / elapsed.max(1e-9)
            ));
        }
        if cfg.output.checkpoint_every > 0 && done.is_multiple_of(cfg.output.checkpoint_every) {
            save_checkpoint(
                dir,
                model.as_ref(),
                &opt,
                ema.as_ref(),
                &sparsity,
                done,
                accountant.as_ref(),
                &plan,
            )?;
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let steps_done = match (&stopped_early, accountant.as_ref()) {
        (_, Some(a)) => a.steps(),
        (None, None) => plan.steps,
        (Some(_), None) => step,
    };
    save_checkpoint(
        dir,
        model.as_ref(),
        &opt,
        ema.as_ref(),
        &sparsity,
        steps_done,
        accountant.as_ref(),
        &plan,
    )?;
    let (test_accuracy, test_loss) = with_eval_weights(model.as_mut(), ema.as_ref(), |m| {
        evaluate(m, &data.test, data.name)
    })?;
    if let Some(e) = ema.as_ref() {
        // The saved model is what was evaluated.
        for ((_, p), v) in model.params_mut().iter_mut().zip(&e.values) {
            p.value = v.clone();
        }
    }
    save_model(dir, model.as_ref(), &sparsity)?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = Summary {
        test_accuracy,
        test_loss,
        epsilon: match accountant.as_ref() {
            Some(a) => Some(a.epsilon(plan.delta)?.epsilon),
            None => None,
        },
        delta: dp.then_some(plan.delta),
        sigma: dp.then_some(plan.sigma),
        q: plan.q,
        steps: steps_done,
        planned_steps: plan.steps,
        stopped_early,
        examples_per_second: processed as f64 / seconds.max(1e-9),
        seconds,
        density: sparsity.pruning.density(model.params()),
        train_examples: n,
        device: device.describe(),
    };
    metrics.write(&serde_json::json!({"step": steps_done, "final": true, "test_accuracy": test_accuracy, "test_loss": test_loss, "epsilon": summary.epsilon}))?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

/// The privatised gradient of one step: `M o (sum + N(0, (sigma C)^2 I)) / (q N)` per parameter.
///
/// Noise is drawn for every coordinate (so the random stream does not depend on the mask) and
/// then restricted to the active ones: inactive coordinates get exactly zero, neither signal nor
/// noise. The divisor is the *expected* batch size `q N`: the realised Poisson batch size depends
/// on the private data and is never used.
pub fn privatize(
    clipped_sums: &[Tensor],
    active: &ParamMask,
    sigma: f64,
    clip_norm: f32,
    expected_batch: f32,
    rng: &mut TensorRng,
) -> Result<Vec<Tensor>> {
    let std = (sigma * f64::from(clip_norm)) as f32;
    clipped_sums
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let noise = Tensor::randn(s.shape(), 0.0, std, rng)?;
            let noisy = active.apply(sparsedp_nn::ParamId(i), &s.add(&noise)?)?;
            Ok(noisy.scale(1.0 / expected_batch))
        })
        .collect()
}

fn nonfinite_context(e: sparsedp_nn::NnError, step: u64) -> anyhow::Error {
    match e {
        sparsedp_nn::NnError::NonFinite(m) => anyhow::anyhow!(
            "training diverged at step {}: {m}; stopping instead of training on garbage (lower training.lr or check the data)",
            step + 1
        ),
        other => other.into(),
    }
}

/// Runs `f` with the EMA weights swapped in (if any), then restores the live weights.
fn with_eval_weights<T>(
    model: &mut dyn Model,
    ema: Option<&Ema>,
    f: impl FnOnce(&dyn Model) -> Result<T>,
) -> Result<T> {
    let Some(e) = ema else { return f(model) };
    let live: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, p)| p.value.clone())
        .collect();
    for ((_, p), v) in model.params_mut().iter_mut().zip(&e.values) {
        p.value = v.clone();
    }
    let out = f(model);
    for ((_, p), v) in model.params_mut().iter_mut().zip(live) {
        p.value = v;
    }
    out
}

fn progress_bar(total: u64, start: u64, show: bool) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps | {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    Some(bar)
}

/// The device of `training.device`: `auto` is [`Device::best`] (which honours
/// `SPARSEDP_DEVICE`), `cpu` and `wgpu` are explicit (`wgpu` fails when no adapter opens).
fn resolve_device(name: &str) -> Result<Device> {
    let d = if name == "auto" {
        Device::best()
    } else {
        Device::from_name(name)
    };
    d.with_context(|| format!("training.device = {name:?}"))
}

/// Copies the CPU model's parameter values onto `device`, into the GPU model.
fn upload_params(
    from: &sparsedp_nn::ParamStore,
    to: &mut sparsedp_nn::ParamStore,
    device: Device,
) -> Result<()> {
    for ((_, src), (_, dst)) in from.iter().zip(to.iter_mut()) {
        dst.value = src.value.to_device(device)?;
    }
    Ok(())
}

/// `sum += g`, downloading `g` first when it lives on a device (the step's sums, the noise and
/// the update stay on the host).
fn add_on_host(sum: &mut Tensor, g: &Tensor) -> Result<()> {
    if g.device() == Device::Cpu {
        sum.add_scaled_(1.0, g)?;
    } else {
        sum.add_scaled_(1.0, &g.to_device(Device::Cpu)?)?;
    }
    Ok(())
}
