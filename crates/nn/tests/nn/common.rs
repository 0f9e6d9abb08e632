//! Helpers shared by the nn tests.

use sparsedp_nn::layers::{Activation, Conv2d, GroupNorm, Init, Linear};
use sparsedp_nn::{Model, ParamMask, ParamRole, ParamStore, Result, Tape, Var};
use sparsedp_tensor::{Conv2dParams, Tensor, TensorRng};

/// `||a - b|| / max(||b||, tiny)`.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec(), b.to_vec());
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A random 0/1 mask keeping about `keep` of each weight tensor (biases and norm parameters
/// dense), as pruning produces.
pub fn random_weight_mask(store: &ParamStore, keep: f32, seed: u64) -> ParamMask {
    let mut rng = TensorRng::seeded(seed);
    let masks = store
        .iter()
        .map(|(_, p)| {
            (p.role == ParamRole::Weight).then(|| {
                let u = Tensor::rand_uniform(p.value.shape(), 0.0, 1.0, &mut rng).unwrap();
                let v: Vec<f32> = u.to_vec().iter().map(|&x| f32::from(x < keep)).collect();
                Tensor::from_vec(v, p.value.shape()).unwrap()
            })
        })
        .collect();
    ParamMask::new(store, masks).unwrap()
}

/// A random 0/1 mask over every parameter (as a per-step selection over all coordinates).
pub fn random_full_mask(store: &ParamStore, keep: f32, seed: u64) -> ParamMask {
    let mut rng = TensorRng::seeded(seed);
    let masks = store
        .iter()
        .map(|(_, p)| {
            let u = Tensor::rand_uniform(p.value.shape(), 0.0, 1.0, &mut rng).unwrap();
            let v: Vec<f32> = u.to_vec().iter().map(|&x| f32::from(x < keep)).collect();
            Some(Tensor::from_vec(v, p.value.shape()).unwrap())
        })
        .collect();
    ParamMask::new(store, masks).unwrap()
}

/// A small residual CNN with GroupNorm and weight-standardised convs, a grouped conv and a
/// global average pool: exercises every layer kind the engines handle.
pub struct TinyGnNet {
    store: ParamStore,
    conv1: Conv2d,
    gn1: GroupNorm,
    conv2: Conv2d,
    gn2: GroupNorm,
    grouped: Conv2d,
    fc: Linear,
}

impl TinyGnNet {
    pub fn new(seed: u64) -> Self {
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let i = Init::KaimingNormal;
        let conv1 = Conv2d::new(
            &mut s,
            "conv1",
            3,
            8,
            3,
            Conv2dParams::padded(1),
            false,
            i,
            &mut rng,
        )
        .unwrap()
        .standardized(1e-5);
        let gn1 = GroupNorm::new(&mut s, "gn1", 8, 4).unwrap();
        let conv2 = Conv2d::new(
            &mut s,
            "conv2",
            8,
            8,
            3,
            Conv2dParams::padded(1),
            true,
            i,
            &mut rng,
        )
        .unwrap();
        let gn2 = GroupNorm::new(&mut s, "gn2", 8, 2).unwrap();
        let grouped = Conv2d::new(
            &mut s,
            "grouped",
            8,
            8,
            3,
            Conv2dParams {
                stride: [2, 2],
                padding: [1, 1],
                groups: 2,
                ..Default::default()
            },
            true,
            i,
            &mut rng,
        )
        .unwrap();
        let fc = Linear::new(&mut s, "fc", 8, 5, true, Init::PyTorch, &mut rng).unwrap();
        // Non-trivial affine parameters so their gradients are generic.
        for (_, p) in s.iter_mut() {
            if p.role == ParamRole::NormScale || p.role == ParamRole::NormShift {
                p.value = Tensor::rand_uniform(p.value.shape(), 0.5, 1.5, &mut rng).unwrap();
            }
        }
        TinyGnNet {
            store: s,
            conv1,
            gn1,
            conv2,
            gn2,
            grouped,
            fc,
        }
    }
}

impl Model for TinyGnNet {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let h = self.conv1.forward(t, x)?;
        let h = self.gn1.forward(t, h)?;
        let h = Activation::Mish.forward(t, h);
        let r = self.conv2.forward(t, h)?;
        let r = self.gn2.forward(t, r)?;
        let r = Activation::Relu.forward(t, r);
        let h = t.add(h, r)?; // residual
        let h = self.grouped.forward(t, h)?;
        let h = Activation::Gelu.forward(t, h);
        let h = t.spatial_mean(h)?;
        self.fc.forward(t, h)
    }
    fn input_shape(&self) -> [usize; 3] {
        [3, 8, 8]
    }
    fn num_classes(&self) -> usize {
        5
    }
}

/// A random batch for `model`: `n` rows of standard normal inputs and uniform labels.
pub fn batch(model: &dyn Model, n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = TensorRng::seeded(seed);
    let [c, h, w] = model.input_shape();
    let x = Tensor::randn(&[n, c, h, w], 0.0, 1.0, &mut rng).unwrap();
    let u = Tensor::rand_uniform(&[n], 0.0, model.num_classes() as f32, &mut rng).unwrap();
    let labels = u
        .to_vec()
        .iter()
        .map(|&v| (v as usize).min(model.num_classes() - 1))
        .collect();
    (x, labels)
}
