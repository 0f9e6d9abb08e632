//! Per-tensor density report of a mask.

use crate::error::{PruneError, Result};
use sparsedp_nn::{ParamMask, ParamRole, ParamStore};
use std::fmt;

/// Kept and total coordinates of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDensity {
    /// Parameter name.
    pub name: String,
    /// Parameter role.
    pub role: ParamRole,
    /// Active (kept) coordinates.
    pub kept: usize,
    /// All coordinates.
    pub total: usize,
}

impl LayerDensity {
    /// `kept / total` (1 for an empty tensor).
    pub fn density(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.kept as f64 / self.total as f64
        }
    }
}

/// Densities of every parameter tensor under a mask, in registration order.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityReport {
    /// One row per parameter tensor.
    pub layers: Vec<LayerDensity>,
}

impl DensityReport {
    /// The report of `mask` over `store` (errors if the mask covers another number of tensors).
    pub fn new(store: &ParamStore, mask: &ParamMask) -> Result<Self> {
        if mask.len() != store.len() {
            return Err(PruneError::InvalidConfig(format!(
                "mask covers {} parameters, the store has {}",
                mask.len(),
                store.len()
            )));
        }
        let layers = store
            .iter()
            .map(|(id, p)| LayerDensity {
                name: p.name.clone(),
                role: p.role,
                kept: mask.active_count(id, p.value.numel()),
                total: p.value.numel(),
            })
            .collect();
        Ok(DensityReport { layers })
    }

    /// Kept coordinates over all tensors.
    pub fn kept(&self) -> usize {
        self.layers.iter().map(|l| l.kept).sum()
    }

    /// All coordinates.
    pub fn total(&self) -> usize {
        self.layers.iter().map(|l| l.total).sum()
    }

    /// Overall density.
    pub fn density(&self) -> f64 {
        ratio(self.kept(), self.total())
    }

    /// Density over weight tensors only (the prunable role).
    pub fn weight_density(&self) -> f64 {
        let w = self.layers.iter().filter(|l| l.role == ParamRole::Weight);
        let (k, t) = w.fold((0, 0), |(k, t), l| (k + l.kept, t + l.total));
        ratio(k, t)
    }
}

fn ratio(k: usize, t: usize) -> f64 {
    if t == 0 { 1.0 } else { k as f64 / t as f64 }
}

fn role_name(r: ParamRole) -> &'static str {
    match r {
        ParamRole::Weight => "weight",
        ParamRole::Bias => "bias",
        ParamRole::NormScale => "norm-scale",
        ParamRole::NormShift => "norm-shift",
    }
}

impl fmt::Display for DensityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(0)
            .max(5);
        writeln!(
            f,
            "{:<w$}  {:<10}  {:>10}  {:>10}  {:>8}",
            "param", "role", "kept", "total", "density"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<w$}  {:<10}  {:>10}  {:>10}  {:>8.4}",
                l.name,
                role_name(l.role),
                l.kept,
                l.total,
                l.density()
            )?;
        }
        write!(
            f,
            "{:<w$}  {:<10}  {:>10}  {:>10}  {:>8.4}  (weights only: {:.4})",
            "total",
            "",
            self.kept(),
            self.total(),
            self.density(),
            self.weight_density()
        )
    }
}
