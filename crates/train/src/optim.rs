//! Optimisers and learning-rate schedules, restricted to the active coordinates.
//!
//! DP-SGD with sparsity updates only the coordinates that are active in this step (pruning mask
//! AND selection). Inactive coordinates keep their values, and their optimiser state (momentum,
//! Adam moments) is left untouched too: a frozen coordinate must not drift on momentum
//! accumulated while it was active, since that would update it without this step's noise.

use crate::config::TrainingConfig;
use anyhow::{Result, bail};
use sparsedp_nn::{ParamMask, ParamStore};
use sparsedp_tensor::Tensor;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// SGD with (optionally Nesterov) momentum and L2 weight decay.
    Sgd {
        /// Momentum.
        momentum: f32,
        /// Nesterov.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient.
    Adam,
    /// AdamW (Loshchilov & Hutter 2019): decoupled weight decay.
    AdamW,
}

/// Optimiser state: one or two buffers per parameter and a step count.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    /// Update rule.
    pub rule: Rule,
    /// Weight decay.
    pub weight_decay: f32,
    /// First buffer (momentum, or Adam's first moment) per parameter.
    pub m: Vec<Vec<f32>>,
    /// Adam's second moment per parameter (empty for SGD).
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub t: u64,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;

impl Optimizer {
    /// Zero state for `store`.
    pub fn new(cfg: &TrainingConfig, store: &ParamStore) -> Result<Self> {
        let rule = match cfg.optimizer.as_str() {
            "sgd" => Rule::Sgd {
                momentum: cfg.momentum,
                nesterov: cfg.nesterov,
            },
            "adam" => Rule::Adam,
            "adamw" => Rule::AdamW,
            other => bail!("unknown optimizer '{other}'"),
        };
        let zeros: Vec<Vec<f32>> = store
            .iter()
            .map(|(_, p)| vec![0.0; p.value.numel()])
            .collect();
        let v = if matches!(rule, Rule::Sgd { .. }) {
            Vec::new()
        } else {
            zeros.clone()
        };
        Ok(Optimizer {
            rule,
            weight_decay: cfg.weight_decay,
            m: zeros,
            v,
            t: 0,
        })
    }

    /// Applies one update with learning rate `lr` and gradients `grads` (one per parameter) on
    /// the coordinates active in `mask`.
    pub fn step(
        &mut self,
        store: &mut ParamStore,
        grads: &[Tensor],
        mask: &ParamMask,
        lr: f32,
    ) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let wd = self.weight_decay;
        let ids: Vec<_> = store.iter().map(|(id, _)| id).collect();
        for id in ids {
            let active = mask.get(id).map(|m| m.to_vec());
            let g = grads[id.0].to_vec();
            let w = store
                .get_mut(id)
                .value
                .as_mut_slice()
                .ok_or_else(|| anyhow::anyhow!("parameters must be on the CPU to update"))?;
            let m = &mut self.m[id.0];
            for j in 0..w.len() {
                if let Some(a) = &active
                    && a[j] == 0.0
                {
                    continue;
                }
                match self.rule {
                    Rule::Sgd { momentum, nesterov } => {
                        let d = g[j] + wd * w[j];
                        m[j] = momentum * m[j] + d;
                        let step = if nesterov { d + momentum * m[j] } else { m[j] };
                        w[j] -= lr * step;
                    }
                    Rule::Adam | Rule::AdamW => {
                        let gj = if self.rule == Rule::Adam {
                            g[j] + wd * w[j]
                        } else {
                            w[j] -= lr * wd * w[j];
                            g[j]
                        };
                        let v = &mut self.v[id.0];
                        m[j] = BETA1 * m[j] + (1.0 - BETA1) * gj;
                        v[j] = BETA2 * v[j] + (1.0 - BETA2) * gj * gj;
                        let mh = m[j] / (1.0 - BETA1.powi(t));
                        let vh = v[j] / (1.0 - BETA2.powi(t));
                        w[j] -= lr * mh / (vh.sqrt() + ADAM_EPS);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Learning rate at `step` of `total`: linear warm-up, then constant, cosine or step decay.
pub fn learning_rate(cfg: &TrainingConfig, step: u64, total: u64) -> f32 {
    let base = cfg.lr;
    if step < cfg.warmup_steps {
        return base * (step + 1) as f32 / cfg.warmup_steps as f32;
    }
    let frac = if total == 0 {
        0.0
    } else {
        step as f64 / total as f64
    };
    match cfg.schedule.as_str() {
        "cosine" => base * (0.5 * (1.0 + (std::f64::consts::PI * frac).cos())) as f32,
        "step" => {
            let passed = cfg.milestones.iter().filter(|&&m| frac >= m).count();
            base * cfg.gamma.powi(passed as i32)
        }
        _ => base,
    }
}

/// Exponential moving average of the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    /// Decay.
    pub decay: f32,
    /// Averaged values, one per parameter.
    pub values: Vec<Tensor>,
}

impl Ema {
    /// Starts at the current parameters.
    pub fn new(decay: f32, store: &ParamStore) -> Self {
        Ema {
            decay,
            values: store.iter().map(|(_, p)| p.value.clone()).collect(),
        }
    }

    /// `ema = decay * ema + (1 - decay) * w`.
    pub fn update(&mut self, store: &ParamStore) -> Result<()> {
        for ((_, p), e) in store.iter().zip(&mut self.values) {
            let mixed = e.scale(self.decay).add(&p.value.scale(1.0 - self.decay))?;
            *e = mixed;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsedp_nn::ParamRole;

    fn store() -> ParamStore {
        let mut s = ParamStore::new();
        s.add(
            "w",
            Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap(),
            ParamRole::Weight,
        )
        .unwrap();
        s
    }

    #[test]
    fn masked_coordinates_and_their_state_never_change() {
        let cfg = TrainingConfig::default();
        for opt in ["sgd", "adam", "adamw"] {
            let cfg = TrainingConfig {
                optimizer: opt.into(),
                weight_decay: 0.1,
                ..cfg.clone()
            };
            let mut s = store();
            let mut o = Optimizer::new(&cfg, &s).unwrap();
            let g = vec![Tensor::from_vec(vec![1.0, 1.0, 1.0], &[3]).unwrap()];
            let mask = ParamMask::new(
                &s,
                vec![Some(Tensor::from_vec(vec![1.0, 0.0, 1.0], &[3]).unwrap())],
            )
            .unwrap();
            for _ in 0..3 {
                o.step(&mut s, &g, &mask, 0.1).unwrap();
            }
            let w = s.value(sparsedp_nn::ParamId(0)).to_vec();
            assert_eq!(w[1], 2.0, "{opt}: masked coordinate moved");
            assert_ne!(w[0], 1.0);
            assert_eq!(o.m[0][1], 0.0, "{opt}: masked state moved");
        }
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let cfg = TrainingConfig::default(); // sgd, momentum 0.9
        let mut s = store();
        let mut o = Optimizer::new(&cfg, &s).unwrap();
        let g = vec![Tensor::from_vec(vec![1.0, 0.0, 0.0], &[3]).unwrap()];
        let dense = ParamMask::dense(&s);
        o.step(&mut s, &g, &dense, 0.5).unwrap(); // m = 1, w = 1 - 0.5
        o.step(&mut s, &g, &dense, 0.5).unwrap(); // m = 1.9, w = 0.5 - 0.95
        let w = s.value(sparsedp_nn::ParamId(0)).to_vec();
        assert!((w[0] - (-0.45)).abs() < 1e-6, "{}", w[0]);
    }

    #[test]
    fn schedules() {
        let mut cfg = TrainingConfig {
            lr: 1.0,
            warmup_steps: 10,
            ..TrainingConfig::default()
        };
        assert!((learning_rate(&cfg, 0, 100) - 0.1).abs() < 1e-6);
        assert_eq!(learning_rate(&cfg, 50, 100), 1.0);
        cfg.schedule = "cosine".into();
        assert!((learning_rate(&cfg, 50, 100) - 0.5).abs() < 1e-6);
        cfg.schedule = "step".into();
        cfg.milestones = vec![0.5, 0.75];
        assert!((learning_rate(&cfg, 80, 100) - 0.01).abs() < 1e-6);
    }
}
