//! Parameter masks: which coordinates are active.
//!
//! DP-SGD with sparsity uses two masks: a pruning mask fixed before training (parameter
//! freezing) and a selection mask drawn at every step (gradient dropping). A coordinate is
//! *active* in a step when both masks keep it. Active coordinates are the only ones whose
//! per-example gradient counts towards the clipping norm, that receive noise, and that are
//! updated; inactive ones keep their values. See `docs/method.md`.

use crate::error::{NnError, Result};
use crate::param::{ParamId, ParamStore};
use sparsedp_tensor::Tensor;

/// A 0/1 mask per parameter tensor; `None` means "all coordinates active" (dense).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamMask {
    masks: Vec<Option<Tensor>>,
}

impl ParamMask {
    /// The dense mask (everything active) for `store`.
    pub fn dense(store: &ParamStore) -> Self {
        ParamMask {
            masks: vec![None; store.len()],
        }
    }

    /// A mask from one optional 0/1 tensor per parameter, validated against `store`: one entry
    /// per parameter, shapes equal, every value exactly 0 or 1.
    pub fn new(store: &ParamStore, masks: Vec<Option<Tensor>>) -> Result<Self> {
        if masks.len() != store.len() {
            return Err(NnError::InvalidConfig(format!(
                "a mask needs one entry per parameter tensor: {} parameters, {} entries",
                store.len(),
                masks.len()
            )));
        }
        for ((_, p), m) in store.iter().zip(&masks) {
            if let Some(m) = m {
                if m.shape() != p.value.shape() {
                    return Err(NnError::MaskMismatch {
                        param: p.name.clone(),
                        reason: format!(
                            "shape {:?} differs from the parameter's {:?}",
                            m.shape(),
                            p.value.shape()
                        ),
                    });
                }
                if let Some(bad) = m.to_vec().into_iter().find(|&v| v != 0.0 && v != 1.0) {
                    return Err(NnError::MaskMismatch {
                        param: p.name.clone(),
                        reason: format!("values must be 0 or 1, found {bad}"),
                    });
                }
            }
        }
        Ok(ParamMask { masks })
    }

    /// The mask of parameter `id` (`None`: dense).
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.masks.get(id.0).and_then(|m| m.as_ref())
    }

    /// Number of entries (parameter tensors).
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// True when the mask covers no parameters.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// True when every coordinate is active.
    pub fn is_dense(&self) -> bool {
        self.masks.iter().all(|m| m.is_none())
    }

    /// Coordinates active in both masks (pruning AND selection). Errors if the masks cover a
    /// different number of parameters.
    pub fn and(&self, other: &ParamMask) -> Result<ParamMask> {
        if self.len() != other.len() {
            return Err(NnError::InvalidConfig(format!(
                "cannot combine masks over {} and {} parameters",
                self.len(),
                other.len()
            )));
        }
        let masks = self
            .masks
            .iter()
            .zip(&other.masks)
            .map(|(a, b)| match (a, b) {
                (None, None) => Ok(None),
                (Some(m), None) | (None, Some(m)) => Ok(Some(m.clone())),
                (Some(a), Some(b)) => Ok(Some(a.mul(b)?)),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamMask { masks })
    }

    /// Number of active coordinates of parameter `id` given its number of elements.
    pub fn active_count(&self, id: ParamId, numel: usize) -> usize {
        match self.get(id) {
            None => numel,
            Some(m) => m.to_vec().iter().filter(|&&v| v != 0.0).count(),
        }
    }

    /// Fraction of active coordinates over all parameters of `store`.
    pub fn density(&self, store: &ParamStore) -> f64 {
        let total = store.num_scalars();
        if total == 0 {
            return 1.0;
        }
        let active: usize = store
            .iter()
            .map(|(id, p)| self.active_count(id, p.value.numel()))
            .sum();
        active as f64 / total as f64
    }

    /// `t * mask(id)` (unchanged when dense).
    pub fn apply(&self, id: ParamId, t: &Tensor) -> Result<Tensor> {
        match self.get(id) {
            None => Ok(t.clone()),
            Some(m) => Ok(t.mul(m)?),
        }
    }

    /// A copy of the mask with every tensor on `device`.
    pub fn to_device(&self, device: sparsedp_tensor::Device) -> Result<ParamMask> {
        let masks = self
            .masks
            .iter()
            .map(|m| m.as_ref().map(|t| t.to_device(device)).transpose())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(ParamMask { masks })
    }
}
