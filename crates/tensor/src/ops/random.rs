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
use rayon::prelude::*;

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

// ----- Philox: the counter-based stream shared by every backend -----------------------------

/// One Philox4x32-10 block (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as
/// 1, 2, 3", SC'11): ten rounds of the multiply-xor round function with the Weyl key schedule.
/// Pinned against the Random123 known-answer vectors in the tests.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// The Philox Gaussian stream `(key, stream)` as `n` values of `N(mean, std^2)`: element `e`
/// comes from block `e / 4` (counter `(e / 4, 0, stream lo, stream hi)`), whose four words
/// form two Box-Muller pairs. Every value depends only on `(key, stream, e)`, so devices
/// compute the same stream in parallel; the wgpu kernel (`wgpu/random.wgsl`) implements the
/// same formula, and agrees up to the rounding of its `log`/`cos`/`sin`.
///
/// The first uniform of a pair is `(w + 1/2) 2^-32` (never 0), so `|z| <= 6.77`: the tail
/// beyond 6.77 sigma (probability 1.3e-11 per sample) is not produced.
pub fn philox_normals(n: usize, mean: f32, std: f32, key: u64, stream: u64) -> Vec<f32> {
    let mut out = crate::buffers::zeroed(n);
    let keyw = [key as u32, (key >> 32) as u32];
    out.par_chunks_mut(4 * 1024)
        .enumerate()
        .for_each(|(chunk, vals)| {
            for (j, quad) in vals.chunks_mut(4).enumerate() {
                let blk = (chunk * 1024 + j) as u32;
                let w = philox4x32_10([blk, 0, stream as u32, (stream >> 32) as u32], keyw);
                let z = box_muller(w);
                for (o, z) in quad.iter_mut().zip(z) {
                    *o = mean + std * z;
                }
            }
        });
    out
}

/// Two Box-Muller pairs from four 32-bit words, in `f32` as on the GPU.
fn box_muller(w: [u32; 4]) -> [f32; 4] {
    let open01 = |w: u32| (w as f32 + 0.5) * 2.328_306_4e-10;
    let half01 = |w: u32| (w >> 8) as f32 * 5.960_464_5e-8;
    let r0 = (-2.0 * open01(w[0]).ln()).sqrt();
    let t0 = std::f32::consts::TAU * half01(w[1]);
    let r1 = (-2.0 * open01(w[2]).ln()).sqrt();
    let t1 = std::f32::consts::TAU * half01(w[3]);
    [r0 * t0.cos(), r0 * t0.sin(), r1 * t1.cos(), r1 * t1.sin()]
}

impl Tensor {
    /// `N(mean, std^2)` samples from the counter-based Philox stream `(key, stream)`, generated
    /// on `device` (no host-to-device transfer on a GPU). The same `(key, stream)` gives the
    /// same values on every backend, up to the rounding of the device's `log`, `cos` and `sin`
    /// (the tests bound the difference).
    ///
    /// **Privacy.** Philox is a statistically strong but not a cryptographic generator, and a
    /// 64-bit key can be searched. For DP noise draw `key` from a secure
    /// [`TensorRng::from_os_entropy`] stream for every step and never log it; for a
    /// cryptographic guarantee use [`Tensor::randn`] with that stream (CPU). See
    /// `docs/architecture.md`.
    pub fn randn_philox(
        shape: &[usize],
        mean: f32,
        std: f32,
        key: u64,
        stream: u64,
        device: crate::Device,
    ) -> Result<Tensor> {
        if !(std.is_finite() && std >= 0.0 && mean.is_finite()) {
            return Err(invalid_arg(
                "randn_philox",
                format!("mean {mean} and std {std} must be finite, std >= 0"),
            ));
        }
        let n = numel(shape);
        if n.div_ceil(4) > u32::MAX as usize {
            return Err(invalid_arg(
                "randn_philox",
                format!("{n} samples exceed the 2^34 a stream addresses"),
            ));
        }
        match device {
            crate::Device::Cpu => Ok(Tensor::from_cpu(
                philox_normals(n, mean, std, key, stream),
                shape.to_vec(),
            )),
            #[cfg(feature = "wgpu")]
            crate::Device::Wgpu => crate::device::on_gpu("randn_philox", n, |g| {
                g.philox_normal(n, mean, std, key, stream)
            })
            .map(|s| Tensor::from_storage(s, shape.to_vec())),
            #[cfg(not(feature = "wgpu"))]
            crate::Device::Wgpu => Err(crate::device::no_wgpu("randn_philox")),
        }
    }
}

impl TensorRng {
    /// The next 64 bits of this stream, e.g. a fresh Philox key per training step drawn from a
    /// secure stream.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.random()
    }
}
