//! Shared helpers: random data, comparison with stated tolerances, finite differences.

use sparsedp_tensor::{Tensor, TensorRng};

/// A tensor of standard-normal values from a fixed seed.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut TensorRng::seeded(seed)).unwrap()
}

/// `t`'s values as f64.
pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Asserts `|got - want| <= tol * (1 + max|want|)` elementwise: an absolute tolerance scaled by
/// the magnitude of the reference, which is what f32 accumulation error looks like.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (err {err:e} > {:e})",
            tol * scale
        );
    }
}

/// Gradient of `f` at `x` by central differences in f64.
pub fn fd_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-6 * x[i].abs().max(1.0);
            xp[i] = x[i] + h;
            let fp = f(&xp);
            xp[i] = x[i] - h;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// `sum(r * y)`, the scalar whose gradient equals the backward of `y` given upstream `r`.
pub fn dot(r: &[f64], y: &[f64]) -> f64 {
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Tolerance for f32 kernels vs f64 references (forward).
pub const FWD_TOL: f64 = 1e-5;
/// Tolerance for f32 backward kernels vs f64 finite differences.
pub const FD_TOL: f64 = 1e-4;
