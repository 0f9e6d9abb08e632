//! Small models for the tests.

use sparsedp_nn::layers::{Activation, Init, Linear};
use sparsedp_nn::{Model, ParamId, ParamRole, ParamStore, Result, Tape, Var};
use sparsedp_tensor::{Tensor, TensorRng};

/// A chain of linear layers on a flattened `[1, 1, d]` input, with `act` between layers (which a
/// linearised tape turns into the identity).
pub struct Chain {
    pub store: ParamStore,
    pub layers: Vec<Linear>,
    pub act: Activation,
    pub input: usize,
    pub classes: usize,
}

impl Chain {
    /// Layer widths `dims[0] -> dims[1] -> ... -> dims[L]`.
    pub fn new(dims: &[usize], bias: bool, act: Activation, seed: u64) -> Self {
        let mut rng = TensorRng::seeded(seed);
        let mut store = ParamStore::new();
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Linear::new(
                    &mut store,
                    &format!("fc{}", i + 1),
                    w[0],
                    w[1],
                    bias,
                    Init::PyTorch,
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        Chain {
            store,
            layers,
            act,
            input: dims[0],
            classes: *dims.last().unwrap(),
        }
    }

    /// Overwrites every weight with uniform values in `[lo, hi)`.
    pub fn set_weights(&mut self, lo: f32, hi: f32, seed: u64) {
        let mut rng = TensorRng::seeded(seed);
        for (_, p) in self.store.iter_mut() {
            if p.role == ParamRole::Weight {
                p.value = Tensor::rand_uniform(p.value.shape(), lo, hi, &mut rng).unwrap();
            }
        }
    }

    pub fn weight(&self, l: usize) -> ParamId {
        self.layers[l].weight
    }
}

impl Model for Chain {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let mut x = t.flatten(x)?;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(t, x)?;
            if i + 1 < self.layers.len() {
                x = self.act.forward(t, x);
            }
        }
        Ok(x)
    }
    fn input_shape(&self) -> [usize; 3] {
        [1, 1, self.input]
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
}

/// A store with weights of several sizes interleaved with biases and norm parameters.
pub fn mixed_store(seed: u64) -> ParamStore {
    let mut rng = TensorRng::seeded(seed);
    let mut s = ParamStore::new();
    let shapes: [(&str, &[usize], ParamRole); 9] = [
        ("conv1.weight", &[8, 3, 3, 3], ParamRole::Weight),
        ("conv1.bias", &[8], ParamRole::Bias),
        ("gn1.weight", &[8], ParamRole::NormScale),
        ("gn1.bias", &[8], ParamRole::NormShift),
        ("conv2.weight", &[16, 8, 3, 3], ParamRole::Weight),
        ("conv3.weight", &[5, 16, 1, 1], ParamRole::Weight),
        ("fc1.weight", &[33, 80], ParamRole::Weight),
        ("fc1.bias", &[33], ParamRole::Bias),
        ("fc2.weight", &[10, 33], ParamRole::Weight),
    ];
    for (n, sh, r) in shapes {
        s.add(n, Tensor::randn(sh, 0.0, 1.0, &mut rng).unwrap(), r)
            .unwrap();
    }
    s
}

/// Kept count per parameter (`None` mask entry: `None`).
pub fn kept(mask: &sparsedp_nn::ParamMask, store: &ParamStore) -> Vec<Option<usize>> {
    store
        .iter()
        .map(|(id, _)| {
            mask.get(id)
                .map(|m| m.to_vec().iter().filter(|&&v| v == 1.0).count())
        })
        .collect()
}

/// Whether `row[i]` of `[rows, cols]` data, as f64.
pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}
