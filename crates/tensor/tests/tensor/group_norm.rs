//! Group normalisation forward and backward (input and per-example affine gradients).

use proptest::prelude::*;
use sparsedp_tensor::Tensor;

use crate::common::*;

/// Naive f64 group norm.
#[allow(clippy::too_many_arguments)]
fn gn_ref(
    x: &[f64],
    n: usize,
    c: usize,
    sp: usize,
    groups: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    let cpg = c / groups;
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for g in 0..groups {
            let idx: Vec<usize> = (g * cpg..(g + 1) * cpg)
                .flat_map(|ch| (0..sp).map(move |s| (i * c + ch) * sp + s))
                .collect();
            let m = idx.iter().map(|&j| x[j]).sum::<f64>() / idx.len() as f64;
            let v = idx.iter().map(|&j| (x[j] - m).powi(2)).sum::<f64>() / idx.len() as f64;
            for &j in &idx {
                let ch = (j / sp) % c;
                y[j] = (x[j] - m) / (v + eps).sqrt() * gamma[ch] + beta[ch];
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn group_norm_matches_reference(n in 1usize..4, groups in 1usize..4, cpg in 1usize..4, h in 1usize..5, w in 1usize..5, seed in 0u64..1000) {
        let c = groups * cpg;
        let sp = h * w;
        let eps = 1e-5f32;
        let x = randn(&[n, c, h, w], seed).scale(2.0).add_scalar(1.5);
        let gamma = randn(&[c], seed + 1);
        let beta = randn(&[c], seed + 2);
        let (xf, gaf, bef) = (f64s(&x), f64s(&gamma), f64s(&beta));
        let fwd = x.group_norm(groups, Some(&gamma), Some(&beta), eps).unwrap();
        let want = gn_ref(&xf, n, c, sp, groups, &gaf, &bef, eps as f64);
        assert_close(&fwd.output.to_vec(), &want, 1e-4, "group_norm forward");
        prop_assert_eq!(fwd.rstd.shape(), &[n, groups]);

        let g = randn(&[n, c, h, w], seed + 3);
        let gf = f64s(&g);
        let grads = Tensor::group_norm_backward(&g, &fwd, Some(&gamma)).unwrap();
        // Normalisation amplifies f32 rounding when a group has one element (variance ~ eps);
        // sp * cpg == 1 is covered too, so the tolerance is stated relative to the scale.
        let num = fd_grad(&xf, |v| dot(&gf, &gn_ref(v, n, c, sp, groups, &gaf, &bef, eps as f64)));
        assert_close(&grads.input.to_vec(), &num, 2e-3, "group_norm dx");
        let num = fd_grad(&gaf, |v| dot(&gf, &gn_ref(&xf, n, c, sp, groups, v, &bef, eps as f64)));
        assert_close(&grads.gamma().unwrap().to_vec(), &num, FD_TOL, "group_norm dgamma");
        let num = fd_grad(&bef, |v| dot(&gf, &gn_ref(&xf, n, c, sp, groups, &gaf, v, eps as f64)));
        assert_close(&grads.beta().unwrap().to_vec(), &num, FD_TOL, "group_norm dbeta");
        // per-example affine gradients: dgamma_ic = sum_t g * xhat, dbeta_ic = sum_t g
        let xh = f64s(&fwd.xhat);
        let want_g: Vec<f64> = (0..n * c).map(|r| (0..sp).map(|s| gf[r * sp + s] * xh[r * sp + s]).sum()).collect();
        let want_b: Vec<f64> = (0..n * c).map(|r| (0..sp).map(|s| gf[r * sp + s]).sum()).collect();
        assert_close(&grads.gamma_per_example.to_vec(), &want_g, FWD_TOL, "per-example dgamma");
        assert_close(&grads.beta_per_example.to_vec(), &want_b, FWD_TOL, "per-example dbeta");

        // without affine parameters the output is xhat
        let plain = x.group_norm(groups, None, None, eps).unwrap();
        prop_assert_eq!(&plain.output, &plain.xhat);
        let ones = vec![1.0; c];
        let zeros = vec![0.0; c];
        let num = fd_grad(&xf, |v| dot(&gf, &gn_ref(v, n, c, sp, groups, &ones, &zeros, eps as f64)));
        let dx = Tensor::group_norm_backward(&g, &plain, None).unwrap().input;
        assert_close(&dx.to_vec(), &num, 2e-3, "group_norm dx (no affine)");
    }
}

#[test]
fn group_norm_validates() {
    let x = Tensor::zeros(&[2, 6, 3]);
    assert!(x.group_norm(4, None, None, 1e-5).is_err());
    assert!(x.group_norm(0, None, None, 1e-5).is_err());
    assert!(x.group_norm(3, None, None, 0.0).is_err());
    assert!(
        x.group_norm(3, Some(&Tensor::ones(&[5])), None, 1e-5)
            .is_err()
    );
    assert!(Tensor::zeros(&[6]).group_norm(3, None, None, 1e-5).is_err());
    let f = x.group_norm(3, None, None, 1e-5).unwrap();
    assert!(Tensor::group_norm_backward(&Tensor::zeros(&[2, 6, 4]), &f, None).is_err());
    assert!(
        Tensor::group_norm_backward(&Tensor::zeros(&[2, 6, 3]), &f, Some(&Tensor::ones(&[2])))
            .is_err()
    );
}
