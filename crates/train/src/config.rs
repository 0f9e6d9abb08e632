//! Training configuration: the TOML file a user writes (every field documented, unknown keys
//! rejected), command-line overrides, presets, and validation into plain types.
//!
//! Raw input is checked once here; the trainer trusts a [`TrainConfig`].

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration of a run, as written in TOML.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset and augmentation.
    pub data: DataConfig,
    /// Model architecture and initialisation.
    pub model: ModelConfig,
    /// Privacy: target budget or noise, clipping, accounting.
    pub privacy: PrivacyConfig,
    /// Optimisation.
    pub training: TrainingConfig,
    /// Pre-pruning (parameter freezing) before training.
    pub pruning: PruningConfig,
    /// Per-step gradient selection (gradient dropping).
    pub selection: SelectionConfig,
    /// Where and how often results are written.
    pub output: OutputConfig,
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist-subset` (bundled, no download), `mnist`, `fashion-mnist` or `cifar10`.
    pub dataset: String,
    /// Dataset directory; default: `$SPARSEDP_DATA`, else `./data`.
    pub data_dir: Option<PathBuf>,
    /// Random crop padding in pixels (0: no crop).
    pub crop_padding: usize,
    /// Random horizontal flips.
    pub flip: bool,
    /// Augmentation multiplicity K: augmented views per example, averaged before clipping.
    pub views: usize,
    /// Fraction of the training set held out as *public* data (for SNIP or public-gradient
    /// selection); the rest is the private training set. 0 disables the split.
    pub public_fraction: f64,
    /// `private` (default): train on the private part; `public`: train on the public split
    /// (e.g. non-private pretraining before private fine-tuning with `model.init_from`).
    pub train_on: String,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Architecture (`sparsedp info` lists them): `tb-mnist`, `tb-cifar10`, ...
    pub name: String,
    /// Initialisation seed.
    pub seed: u64,
    /// Start from this checkpoint's weights (fine-tuning), e.g. a non-private pretraining run.
    pub init_from: Option<PathBuf>,
    /// Re-initialise the classifier head after loading `init_from`.
    pub reinit_head: bool,
}

/// `[privacy]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// `false`: non-private baseline (same code path, no clipping, no noise, no accounting).
    pub enabled: bool,
    /// Target epsilon: sigma is calibrated for the planned steps. With `noise_multiplier` also
    /// given, sigma is that value and epsilon is a cap: the run stops before a step that would
    /// exceed it.
    pub epsilon: Option<f64>,
    /// Noise multiplier sigma (noise std / clipping norm); epsilon is then reported (and capped
    /// if `epsilon` is given too).
    pub noise_multiplier: Option<f64>,
    /// Delta; default: 1e-5 when that is below 1/N, else 1/(10 N).
    pub delta: Option<f64>,
    /// Clipping norm C.
    pub clip_norm: f32,
    /// Per-example clipping engine: `book-keeping` (default), `mixed`, `ghost`, `materialize`,
    /// `naive`.
    pub engine: String,
    /// Per-layer clipping (each parametric layer gets C / sqrt(L)) instead of flat clipping.
    pub per_layer_clipping: bool,
    /// Draw noise from the operating system's entropy (not reproducible) instead of the seeded
    /// stream.
    pub secure_rng: bool,
    /// Renyi orders: `opacus`, `dp-accounting`, `tf-privacy`.
    pub orders: String,
}

/// `[training]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the (private) training set; steps = ceil(epochs / q).
    pub epochs: f64,
    /// Expected (logical) batch size B; Poisson rate q = B / N.
    pub batch_size: usize,
    /// Largest physical chunk run at once (bounds memory).
    pub physical_batch: usize,
    /// `sgd` (with `momentum`), `adam` or `adamw`.
    pub optimizer: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw).
    pub weight_decay: f32,
    /// `constant`, `cosine` or `step`.
    pub schedule: String,
    /// For `step`: multiply the rate by `gamma` at each of these fractions of training.
    pub milestones: Vec<f64>,
    /// For `step`.
    pub gamma: f32,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Exponential moving average of the weights (e.g. 0.999); evaluation uses it.
    pub ema_decay: Option<f32>,
    /// Evaluate on the test set every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Seed of sampling, augmentation, selection and noise streams.
    pub seed: u64,
    /// Where per-example gradients are computed: `auto` (a hardware GPU through wgpu if there
    /// is one, else the CPU; the `SPARSEDP_DEVICE` environment variable overrides), `cpu` or
    /// `wgpu`. Noise, the update, the optimiser and the accountant always run on the CPU.
    pub device: String,
}

/// `[pruning]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruningConfig {
    /// `none`, `random`, `magnitude`, `synflow` or `snip` (SNIP needs `data.public_fraction`).
    pub score: String,
    /// Fraction of prunable weights kept, in (0, 1].
    pub density: f64,
    /// `global` (one threshold) or `layer` (the same density per layer).
    pub scope: String,
    /// Never prune the first and last layer.
    pub keep_first_last: bool,
    /// SynFlow rounds.
    pub rounds: usize,
    /// `false` (default): pruned weights are frozen at their initial values (parameter
    /// freezing); `true`: they are set to zero before training (classic pruning).
    pub zero_pruned: bool,
}

/// `[selection]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// `none`, `random` or `magnitude`.
    pub selector: String,
    /// Fraction of the unpruned coordinates updated at each step, in (0, 1].
    pub rate: f64,
    /// `global` or `layer`.
    pub scope: String,
}

/// `[output]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Run directory (config, metrics, checkpoints, final model); default `runs/<timestamp>`.
    pub run_dir: Option<PathBuf>,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "mnist-subset".into(),
            data_dir: None,
            crop_padding: 0,
            flip: false,
            views: 1,
            public_fraction: 0.0,
            train_on: "private".into(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "tb-mnist".into(),
            seed: 0,
            init_from: None,
            reinit_head: false,
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            enabled: true,
            epsilon: Some(3.0),
            noise_multiplier: None,
            delta: None,
            clip_norm: 0.1,
            engine: "book-keeping".into(),
            per_layer_clipping: false,
            secure_rng: false,
            orders: "opacus".into(),
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 30.0,
            batch_size: 512,
            physical_batch: 256,
            optimizer: "sgd".into(),
            lr: 2.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: "constant".into(),
            milestones: Vec::new(),
            gamma: 0.1,
            warmup_steps: 0,
            ema_decay: None,
            device: "auto".into(),
            eval_every: 0,
            seed: 0,
        }
    }
}

impl Default for PruningConfig {
    fn default() -> Self {
        PruningConfig {
            score: "none".into(),
            density: 1.0,
            scope: "global".into(),
            keep_first_last: false,
            rounds: 100,
            zero_pruned: false,
        }
    }
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            selector: "none".into(),
            rate: 1.0,
            scope: "global".into(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            run_dir: None,
            checkpoint_every: 0,
            progress: true,
        }
    }
}

const ONE_OF: &str = "must be one of";

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        bail!("{field} = '{value}' {ONE_OF} {}", allowed.join(", "))
    }
}

impl TrainConfig {
    /// Reads a TOML file (unknown keys are errors that name the key).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in config file {}", path.display()))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The configuration as TOML (the resolved config written into every run directory).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// Applies `section.key=value` overrides (the value is parsed as TOML, falling back to a
    /// string), then re-checks the whole config against the schema.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        let mut value = toml::Value::try_from(self)?;
        for o in overrides {
            let (key, raw) = o
                .split_once('=')
                .with_context(|| format!("override '{o}' must look like section.key=value"))?;
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()));
            let mut cur = &mut value;
            let parts: Vec<&str> = key.trim().split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let table = cur
                    .as_table_mut()
                    .with_context(|| format!("override '{o}': '{part}' is not a section"))?;
                if i + 1 == parts.len() {
                    table.insert(part.to_string(), parsed.clone());
                    break;
                }
                cur = table
                    .get_mut(*part)
                    .with_context(|| format!("override '{o}': unknown section '{part}'"))?;
            }
        }
        value
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid override: {e}"))
    }

    /// Checks every field; errors name the field and the allowed values.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        one_of(
            "data.dataset",
            &d.dataset,
            &["mnist-subset", "mnist", "fashion-mnist", "cifar10"],
        )?;
        one_of("data.train_on", &d.train_on, &["private", "public"])?;
        if d.train_on == "public" && d.public_fraction == 0.0 {
            bail!("data.train_on = 'public' needs a public split: set data.public_fraction");
        }
        if d.views == 0 {
            bail!("data.views must be at least 1");
        }
        if !(0.0..1.0).contains(&d.public_fraction) {
            bail!(
                "data.public_fraction must be in [0, 1), got {}",
                d.public_fraction
            );
        }
        crate::models::check_name(&self.model.name)?;
        let p = &self.privacy;
        if p.enabled {
            if p.epsilon.is_none() && p.noise_multiplier.is_none() {
                bail!("give privacy.epsilon or privacy.noise_multiplier");
            }
            if let Some(e) = p.epsilon
                && !(e.is_finite() && e > 0.0)
            {
                bail!("privacy.epsilon must be a positive number, got {e}");
            }
            if let Some(s) = p.noise_multiplier
                && !(s.is_finite() && s > 0.0)
            {
                bail!("privacy.noise_multiplier must be a positive number, got {s}");
            }
            if let Some(delta) = p.delta
                && !(delta > 0.0 && delta < 1.0)
            {
                bail!("privacy.delta must be in (0, 1), got {delta}");
            }
            if !(p.clip_norm.is_finite() && p.clip_norm > 0.0) {
                bail!("privacy.clip_norm must be positive, got {}", p.clip_norm);
            }
        }
        one_of(
            "privacy.engine",
            &p.engine,
            &["book-keeping", "mixed", "ghost", "materialize", "naive"],
        )?;
        one_of(
            "privacy.orders",
            &p.orders,
            &["opacus", "dp-accounting", "tf-privacy"],
        )?;
        let t = &self.training;
        if !(t.epochs.is_finite() && t.epochs > 0.0) {
            bail!("training.epochs must be positive, got {}", t.epochs);
        }
        if t.batch_size == 0 || t.physical_batch == 0 {
            bail!("training.batch_size and training.physical_batch must be at least 1");
        }
        one_of(
            "training.optimizer",
            &t.optimizer,
            &["sgd", "adam", "adamw"],
        )?;
        one_of("training.device", &t.device, &["auto", "cpu", "wgpu"])?;
        if !(t.lr.is_finite() && t.lr > 0.0) {
            bail!("training.lr must be positive, got {}", t.lr);
        }
        if !(0.0..1.0).contains(&t.momentum) {
            bail!("training.momentum must be in [0, 1), got {}", t.momentum);
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            bail!(
                "training.weight_decay must be non-negative, got {}",
                t.weight_decay
            );
        }
        one_of(
            "training.schedule",
            &t.schedule,
            &["constant", "cosine", "step"],
        )?;
        if t.milestones.iter().any(|m| !(0.0..=1.0).contains(m)) {
            bail!("training.milestones are fractions of training, each in [0, 1]");
        }
        if let Some(e) = t.ema_decay
            && !(0.0..1.0).contains(&e)
        {
            bail!("training.ema_decay must be in [0, 1), got {e}");
        }
        let pr = &self.pruning;
        one_of(
            "pruning.score",
            &pr.score,
            &["none", "random", "magnitude", "synflow", "snip"],
        )?;
        if !(pr.density > 0.0 && pr.density <= 1.0) {
            bail!("pruning.density must be in (0, 1], got {}", pr.density);
        }
        one_of("pruning.scope", &pr.scope, &["global", "layer"])?;
        if pr.score == "snip" && d.public_fraction == 0.0 {
            bail!(
                "pruning.score = 'snip' reads data: it needs public data (set data.public_fraction, \
                 e.g. 0.1); SNIP on private data is refused"
            );
        }
        let s = &self.selection;
        one_of(
            "selection.selector",
            &s.selector,
            &["none", "random", "magnitude"],
        )?;
        if !(s.rate > 0.0 && s.rate <= 1.0) {
            bail!("selection.rate must be in (0, 1], got {}", s.rate);
        }
        one_of("selection.scope", &s.scope, &["global", "layer"])?;
        Ok(())
    }
}
