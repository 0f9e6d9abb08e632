//! Model parameters: named tensors with a role, in registration order.

use crate::error::{NnError, Result};
use sparsedp_tensor::Tensor;

/// Index of a parameter in its [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// What a parameter does; decides whether pruning may touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// A linear or convolution weight (prunable).
    Weight,
    /// A bias (never pruned by default).
    Bias,
    /// A normalisation scale, gamma (never pruned).
    NormScale,
    /// A normalisation shift, beta (never pruned).
    NormShift,
}

/// One named parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Unique, stable name (e.g. `conv1.weight`), used in checkpoints and reports.
    pub name: String,
    /// Current value.
    pub value: Tensor,
    /// Role.
    pub role: ParamRole,
}

/// All parameters of a model, in the order the model registered them (input to output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamStore {
    params: Vec<Param>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        ParamStore::default()
    }

    /// Registers a parameter. Errors if the name is already taken.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        value: Tensor,
        role: ParamRole,
    ) -> Result<ParamId> {
        let name = name.into();
        if self.params.iter().any(|p| p.name == name) {
            return Err(NnError::InvalidConfig(format!(
                "duplicate parameter name '{name}'"
            )));
        }
        self.params.push(Param { name, value, role });
        Ok(ParamId(self.params.len() - 1))
    }

    /// The parameter `id`.
    ///
    /// # Panics
    /// If `id` did not come from this store (ids are only made by [`ParamStore::add`]).
    pub fn get(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    /// Mutable access to parameter `id` (same panics as [`ParamStore::get`]).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Param {
        &mut self.params[id.0]
    }

    /// The parameter's value.
    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.params[id.0].value
    }

    /// Looks a parameter up by name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }

    /// `(id, param)` pairs in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param)> {
        self.params.iter().enumerate().map(|(i, p)| (ParamId(i), p))
    }

    /// Mutable parameters in registration order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Param)> {
        self.params
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (ParamId(i), p))
    }

    /// Moves every parameter to `device` in place (an upload or a download).
    pub fn to_device(&mut self, device: sparsedp_tensor::Device) -> Result<()> {
        for p in &mut self.params {
            if p.value.device() != device {
                p.value = p.value.to_device(device)?;
            }
        }
        Ok(())
    }

    /// The device of the parameters (the CPU for an empty store).
    pub fn device(&self) -> sparsedp_tensor::Device {
        self.params
            .first()
            .map_or(sparsedp_tensor::Device::Cpu, |p| p.value.device())
    }
}
