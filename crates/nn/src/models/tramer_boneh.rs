//! The end-to-end CNNs of Tramer & Boneh 2021 ("Differentially Private Learning Needs Better
//! Features (or Much More Data)"), Table 9 and 10.

use crate::error::Result;
use crate::layers::{Activation, Conv2d, Init, Linear, max_pool};
use crate::model::Model;
use crate::param::ParamStore;
use crate::tape::{Tape, Var};
use sparsedp_tensor::{Conv2dParams, TensorRng};

/// MNIST / Fashion-MNIST CNN: Conv(1->16, k8, s2, p2) tanh, MaxPool(2, s1), Conv(16->32, k4,
/// s2) tanh, MaxPool(2, s1), Linear(512->32) tanh, Linear(32->10). 26,010 parameters.
#[derive(Debug, Clone)]
pub struct TramerBonehMnist {
    store: ParamStore,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl TramerBonehMnist {
    /// A freshly initialised model (PyTorch's default init, seeded).
    pub fn new(seed: u64) -> Result<Self> {
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let p = Init::PyTorch;
        let conv1 = Conv2d::new(
            &mut s,
            "conv1",
            1,
            16,
            8,
            Conv2dParams {
                stride: [2, 2],
                padding: [2, 2],
                ..Default::default()
            },
            true,
            p,
            &mut rng,
        )?;
        let conv2 = Conv2d::new(
            &mut s,
            "conv2",
            16,
            32,
            4,
            Conv2dParams {
                stride: [2, 2],
                ..Default::default()
            },
            true,
            p,
            &mut rng,
        )?;
        let fc1 = Linear::new(&mut s, "fc1", 512, 32, true, p, &mut rng)?;
        let fc2 = Linear::new(&mut s, "fc2", 32, 10, true, p, &mut rng)?;
        Ok(TramerBonehMnist {
            store: s,
            conv1,
            conv2,
            fc1,
            fc2,
            act: Activation::Tanh,
        })
    }
}

impl Model for TramerBonehMnist {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let x = self.conv1.forward(t, x)?;
        let x = self.act.forward(t, x);
        let x = t.max_pool2d(x, max_pool(2, 1))?;
        let x = self.conv2.forward(t, x)?;
        let x = self.act.forward(t, x);
        let x = t.max_pool2d(x, max_pool(2, 1))?;
        let x = t.flatten(x)?;
        let x = self.fc1.forward(t, x)?;
        let x = self.act.forward(t, x);
        self.fc2.forward(t, x)
    }
    fn input_shape(&self) -> [usize; 3] {
        [1, 28, 28]
    }
    fn num_classes(&self) -> usize {
        10
    }
}

/// CIFAR-10 CNN: 3x3 convs (padding 1) with channels 32, 32, M, 64, 64, M, 128, 128, M
/// (M = MaxPool 2), tanh, Linear(2048->128) tanh, Linear(128->10). 550,570 parameters.
#[derive(Debug, Clone)]
pub struct TramerBonehCifar {
    store: ParamStore,
    convs: Vec<Conv2d>,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl TramerBonehCifar {
    /// A freshly initialised model (PyTorch's default init, seeded).
    pub fn new(seed: u64) -> Result<Self> {
        let mut rng = TensorRng::seeded(seed);
        let mut s = ParamStore::new();
        let p = Init::PyTorch;
        let chans = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)];
        let convs = chans
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                Conv2d::new(
                    &mut s,
                    &format!("conv{}", i + 1),
                    a,
                    b,
                    3,
                    Conv2dParams::padded(1),
                    true,
                    p,
                    &mut rng,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fc1 = Linear::new(&mut s, "fc1", 2048, 128, true, p, &mut rng)?;
        let fc2 = Linear::new(&mut s, "fc2", 128, 10, true, p, &mut rng)?;
        Ok(TramerBonehCifar {
            store: s,
            convs,
            fc1,
            fc2,
            act: Activation::Tanh,
        })
    }
}

impl Model for TramerBonehCifar {
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }
    fn forward(&self, t: &mut Tape<'_>, x: Var) -> Result<Var> {
        let mut x = x;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(t, x)?;
            x = self.act.forward(t, x);
            if i % 2 == 1 {
                x = t.max_pool2d(x, max_pool(2, 2))?;
            }
        }
        let x = t.flatten(x)?;
        let x = self.fc1.forward(t, x)?;
        let x = self.act.forward(t, x);
        self.fc2.forward(t, x)
    }
    fn input_shape(&self) -> [usize; 3] {
        [3, 32, 32]
    }
    fn num_classes(&self) -> usize {
        10
    }
}
