//! Random tensors from an explicit generator: reproducible (seeded) or secure (OS entropy).
//!
//! Both modes use ChaCha20, a cryptographically strong stream cipher, so the *algorithm* is the
//! same and only the seed differs:
//! * [`TensorRng::seeded`] / [`TensorRng::seeded_stream`]: reproducible streams for
//!   initialisation, data augmentation and tests. Never use these for DP noise: anyone who knows
//!   the seed can subtract the noise.
//! * [`TensorRng::from_os_entropy`]: seeded from the operating system's entropy source
//!   (`getrandom`), for the Gaussian noise of DP-SGD.
//!
//! Samples are drawn sequentially, so the values depend only on the seed and the order of
//! calls, never on the number of threads. Normal samples are drawn in `f64`
//! (`rand_distr::StandardNormal`) and rounded to `f32` once.

use rand::rngs::SysRng;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;

use crate::error::{Result, TensorError, invalid_arg};
use crate::tensor::{Tensor, numel};

/// A ChaCha20 random stream for tensor sampling; see the module docs for the two modes.
#[derive(Debug, Clone)]
pub struct TensorRng {
    rng: ChaCha20Rng,
    secure: bool,
}

impl TensorRng {
    /// A reproducible stream from a 64-bit seed.
    pub fn seeded(seed: u64) -> Self {
        TensorRng {
            rng: ChaCha20Rng::seed_from_u64(seed),
            secure: false,
        }
    }

    /// A reproducible stream from a seed and a stream id: different ids give independent
    /// streams for the same seed (e.g. one per worker or per layer).
    pub fn seeded_stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        TensorRng { rng, secure: false }
    }

    /// A secure stream seeded from the operating system's entropy source (for DP noise).
    pub fn from_os_entropy() -> Result<Self> {
        let rng = ChaCha20Rng::try_from_rng(&mut SysRng)
            .map_err(|e| TensorError::Entropy(e.to_string()))?;
        Ok(TensorRng { rng, secure: true })
    }

    /// Whether this stream was seeded from OS entropy (safe for DP noise).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Fills `out` with samples from `N(mean, std^2)`.
    pub fn fill_normal(&mut self, out: &mut [f32], mean: f32, std: f32) -> Result<()> {
        if !(std.is_finite() && std >= 0.0 && mean.is_finite()) {
            return Err(invalid_arg(
                "normal",
                format!("mean {mean} and std {std} must be finite, std >= 0"),
            ));
        }
        let (m, s) = (mean as f64, std as f64);
        for v in out {
            let z: f64 = self.rng.sample(StandardNormal);
            *v = (m + s * z) as f32;
        }
        Ok(())
    }

    /// Fills `out` with samples from the uniform distribution on `[low, high)` (the upper end
    /// can be hit only through `f32` rounding).
    pub fn fill_uniform(&mut self, out: &mut [f32], low: f32, high: f32) -> Result<()> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(invalid_arg(
                "uniform",
                format!("need finite low < high, got [{low}, {high})"),
            ));
        }
        let (l, w) = (low as f64, high as f64 - low as f64);
        for v in out {
            let u: f64 = self.rng.random();
            *v = (l + w * u) as f32;
        }
        Ok(())
    }
}

impl Tensor {
    /// A CPU tensor of i.i.d. `N(mean, std^2)` samples from `rng`.
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut TensorRng) -> Result<Tensor> {
        let mut v = crate::buffers::zeroed(numel(shape));
        rng.fill_normal(&mut v, mean, std)?;
        Ok(Tensor::from_cpu(v, shape.to_vec()))
    }

    /// A CPU tensor of i.i.d. uniform samples on `[low, high)` from `rng`.
    pub fn rand_uniform(
        shape: &[usize],
        low: f32,
        high: f32,
        rng: &mut TensorRng,
    ) -> Result<Tensor> {
        let mut v = crate::buffers::zeroed(numel(shape));
        rng.fill_uniform(&mut v, low, high)?;
        Ok(Tensor::from_cpu(v, shape.to_vec()))
    }
}
