//! Group normalisation (Wu & He 2018) with backward.
//!
//! GroupNorm is the DP-compatible normaliser: its statistics are per example, so one example's
//! output never depends on another's (BatchNorm would break per-example clipping). The forward
//! returns `xhat` and `1/sigma` besides the output because the backward needs them and because
//! the per-example affine gradients are `dgamma_ic = sum_t g_ict xhat_ict`,
//! `dbeta_ic = sum_t g_ict` (see `dp-sgd-math.md`).

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, invalid_arg, invalid_shape, mismatch};
use crate::tensor::{Tensor, check_same_device, numel};

/// Validated geometry of a group normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormGeometry {
    /// Batch size N.
    pub n: usize,
    /// Channels C.
    pub c: usize,
    /// Elements per channel (product of the dimensions after C).
    pub spatial: usize,
    /// Number of groups G (divides C).
    pub groups: usize,
    /// Variance epsilon.
    pub eps: f32,
}

impl GroupNormGeometry {
    fn new(op: &'static str, shape: &[usize], groups: usize, eps: f32) -> Result<Self> {
        if shape.len() < 2 {
            return Err(invalid_shape(op, shape, "expected [N, C, ...]"));
        }
        let (n, c) = (shape[0], shape[1]);
        if groups == 0 || c % groups != 0 {
            return Err(invalid_arg(
                op,
                format!("groups {groups} must divide channels {c}"),
            ));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(invalid_arg(
                op,
                format!("eps {eps} must be positive and finite"),
            ));
        }
        Ok(GroupNormGeometry {
            n,
            c,
            spatial: numel(&shape[2..]),
            groups,
            eps,
        })
    }
    fn group_len(&self) -> usize {
        self.c / self.groups * self.spatial
    }
}

/// What the forward pass returns.
#[derive(Debug, Clone)]
pub struct GroupNormOutput {
    /// `gamma * xhat + beta`, same shape as the input.
    pub output: Tensor,
    /// The normalised input `(x - mean) / sqrt(var + eps)`, same shape as the input.
    pub xhat: Tensor,
    /// `1 / sqrt(var + eps)` per example and group, `[N, G]`.
    pub rstd: Tensor,
}

/// What the backward pass returns.
#[derive(Debug, Clone)]
pub struct GroupNormGrads {
    /// Gradient with respect to the input.
    pub input: Tensor,
    /// Per-example gradient of gamma, `[N, C]` (rows sum to the batch gradient).
    pub gamma_per_example: Tensor,
    /// Per-example gradient of beta, `[N, C]`.
    pub beta_per_example: Tensor,
}

impl GroupNormGrads {
    /// Batch gradient of gamma, `[C]`.
    pub fn gamma(&self) -> Result<Tensor> {
        self.gamma_per_example.sum_axis(0, false)
    }
    /// Batch gradient of beta, `[C]`.
    pub fn beta(&self) -> Result<Tensor> {
        self.beta_per_example.sum_axis(0, false)
    }
}

/// CPU kernel: returns `(y, xhat, rstd)`.
pub(crate) fn cpu_group_norm(
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    g: &GroupNormGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let gl = g.group_len();
    let mut xhat = crate::buffers::zeroed(x.len());
    let mut rstd = crate::buffers::zeroed(g.n * g.groups);
    if gl > 0 {
        xhat.par_chunks_mut(gl)
            .zip(rstd.par_iter_mut())
            .enumerate()
            .for_each(|(ng, (xh, r))| {
                let xs = &x[ng * gl..(ng + 1) * gl];
                // Two-pass mean/variance in f64: robust for large-offset activations.
                let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / gl as f64;
                let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / gl as f64;
                let rs = 1.0 / (var + g.eps as f64).sqrt();
                *r = rs as f32;
                for (o, &v) in xh.iter_mut().zip(xs) {
                    *o = ((v as f64 - mean) * rs) as f32;
                }
            });
    }
    let mut y = xhat.clone();
    if gamma.is_some() || beta.is_some() {
        let sp = g.spatial.max(1);
        y.par_chunks_mut(sp).enumerate().for_each(|(nc, row)| {
            let ch = nc % g.c;
            let (ga, be) = (gamma.map_or(1.0, |v| v[ch]), beta.map_or(0.0, |v| v[ch]));
            row.iter_mut().for_each(|v| *v = *v * ga + be);
        });
    }
    (y, xhat, rstd)
}

/// CPU kernel: `dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))` per group,
/// with `dxhat = dy * gamma`.
pub(crate) fn cpu_group_norm_backward_input(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: Option<&[f32]>,
    g: &GroupNormGeometry,
) -> Vec<f32> {
    let gl = g.group_len();
    let cpg = g.c / g.groups;
    let mut dx = crate::buffers::zeroed(dy.len());
    if gl == 0 {
        return dx;
    }
    dx.par_chunks_mut(gl).enumerate().for_each(|(ng, dxg)| {
        let grp = ng % g.groups;
        let dys = &dy[ng * gl..(ng + 1) * gl];
        let xh = &xhat[ng * gl..(ng + 1) * gl];
        let scale = |i: usize| gamma.map_or(1.0, |ga| ga[grp * cpg + i / g.spatial.max(1)]);
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for i in 0..gl {
            let d = (dys[i] * scale(i)) as f64;
            s1 += d;
            s2 += d * xh[i] as f64;
        }
        let (m1, m2) = (s1 / gl as f64, s2 / gl as f64);
        let r = rstd[ng] as f64;
        for i in 0..gl {
            let d = (dys[i] * scale(i)) as f64;
            dxg[i] = (r * (d - m1 - xh[i] as f64 * m2)) as f32;
        }
    });
    dx
}

/// CPU kernel: per-example `(dgamma, dbeta)`, each `N x C`.
pub(crate) fn cpu_group_norm_affine_grads(
    dy: &[f32],
    xhat: &[f32],
    g: &GroupNormGeometry,
) -> (Vec<f32>, Vec<f32>) {
    let sp = g.spatial;
    let pairs: Vec<(f32, f32)> = (0..g.n * g.c)
        .into_par_iter()
        .map(|nc| {
            let d = &dy[nc * sp..(nc + 1) * sp];
            let x = &xhat[nc * sp..(nc + 1) * sp];
            let dg: f64 = d.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let db: f64 = d.iter().map(|&a| a as f64).sum();
            (dg as f32, db as f32)
        })
        .collect();
    pairs.into_iter().unzip()
}

impl Tensor {
    /// Group normalisation of `[N, C, ...]` with `groups` groups and optional per-channel
    /// affine parameters `gamma`, `beta` (`[C]`).
    pub fn group_norm(
        &self,
        groups: usize,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f32,
    ) -> Result<GroupNormOutput> {
        let g = GroupNormGeometry::new("group_norm", self.shape(), groups, eps)?;
        for p in [gamma, beta].into_iter().flatten() {
            check_same_device("group_norm", self, p)?;
            if p.shape() != [g.c] {
                return Err(mismatch("group_norm affine", &[g.c], p.shape()));
            }
        }
        let (y, xhat, rstd) = match self.storage() {
            Storage::Cpu(x) => {
                let ga = gamma.and_then(|t| t.storage().cpu());
                let be = beta.and_then(|t| t.storage().cpu());
                let (y, xh, r) = CpuBackend.group_norm(x, ga, be, &g);
                (Storage::Cpu(y), Storage::Cpu(xh), Storage::Cpu(r))
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(x) => {
                let ga = gamma.and_then(|t| t.storage().gpu());
                let be = beta.and_then(|t| t.storage().gpu());
                let (y, xh, r) = crate::wgpu::gpu_or_lost().group_norm(x, ga, be, &g);
                (Storage::Wgpu(y), Storage::Wgpu(xh), Storage::Wgpu(r))
            }
        };
        Ok(GroupNormOutput {
            output: Tensor::from_storage(y, self.shape().to_vec()),
            xhat: Tensor::from_storage(xhat, self.shape().to_vec()),
            rstd: Tensor::from_storage(rstd, vec![g.n, groups]),
        })
    }

    /// Backward of [`Tensor::group_norm`] from the forward's `xhat` and `rstd`.
    pub fn group_norm_backward(
        grad_out: &Tensor,
        forward: &GroupNormOutput,
        gamma: Option<&Tensor>,
    ) -> Result<GroupNormGrads> {
        let op = "group_norm_backward";
        let xhat = &forward.xhat;
        check_same_device(op, grad_out, xhat)?;
        if grad_out.shape() != xhat.shape() {
            return Err(mismatch(op, xhat.shape(), grad_out.shape()));
        }
        let [n, groups] = *forward.rstd.shape() else {
            return Err(invalid_shape(
                op,
                forward.rstd.shape(),
                "rstd must be [N, G]",
            ));
        };
        let g = GroupNormGeometry::new(op, xhat.shape(), groups, 1.0)?;
        if n != g.n {
            return Err(mismatch(op, xhat.shape(), forward.rstd.shape()));
        }
        if let Some(ga) = gamma {
            check_same_device(op, grad_out, ga)?;
            if ga.shape() != [g.c] {
                return Err(mismatch(op, &[g.c], ga.shape()));
            }
        }
        check_same_device(op, grad_out, &forward.rstd)?;
        let (dx, dg, db) = match (grad_out.storage(), xhat.storage(), forward.rstd.storage()) {
            (Storage::Cpu(dy), Storage::Cpu(xh), Storage::Cpu(r)) => {
                let ga = gamma.and_then(|t| t.storage().cpu());
                let dx = CpuBackend.group_norm_backward_input(dy, xh, r, ga, &g);
                let (dg, db) = CpuBackend.group_norm_affine_grads(dy, xh, &g);
                (Storage::Cpu(dx), Storage::Cpu(dg), Storage::Cpu(db))
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(dy), Storage::Wgpu(xh), Storage::Wgpu(r)) => {
                let gp = crate::wgpu::gpu_or_lost();
                let ga = gamma.and_then(|t| t.storage().gpu());
                let dx = gp.group_norm_backward_input(dy, xh, r, ga, &g);
                let (dg, db) = gp.group_norm_affine_grads(dy, xh, &g);
                (Storage::Wgpu(dx), Storage::Wgpu(dg), Storage::Wgpu(db))
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices(op)),
        };
        Ok(GroupNormGrads {
            input: Tensor::from_storage(dx, xhat.shape().to_vec()),
            gamma_per_example: Tensor::from_storage(dg, vec![g.n, g.c]),
            beta_per_example: Tensor::from_storage(db, vec![g.n, g.c]),
        })
    }
}
