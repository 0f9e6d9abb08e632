//! Softmax, log-softmax and per-example cross-entropy with backward.

use proptest::prelude::*;
use sparsedp_tensor::{Tensor, TensorError};

use crate::common::*;

fn softmax_ref(x: &[f64], cols: usize, log: bool) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            r.iter()
                .map(move |v| if log { v - lse } else { (v - lse).exp() })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ce_ref(x: &[f64], cols: usize, t: &[usize]) -> Vec<f64> {
    let ls = softmax_ref(x, cols, true);
    t.iter()
        .enumerate()
        .map(|(i, &c)| -ls[i * cols + c])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn softmax_family_matches_reference(n in 1usize..7, k in 1usize..12, seed in 0u64..1000) {
        let x = randn(&[n, k], seed).scale(4.0);
        let xf = f64s(&x);
        let g = randn(&[n, k], seed + 1);
        let gf = f64s(&g);
        for log in [false, true] {
            let y = if log { x.log_softmax().unwrap() } else { x.softmax().unwrap() };
            assert_close(&y.to_vec(), &softmax_ref(&xf, k, log), FWD_TOL, "softmax");
            let dx = if log { y.log_softmax_backward(&g).unwrap() } else { y.softmax_backward(&g).unwrap() };
            let num = fd_grad(&xf, |v| dot(&gf, &softmax_ref(v, k, log)));
            assert_close(&dx.to_vec(), &num, FD_TOL, "softmax backward");
        }
        let t: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % k).collect();
        let l = x.cross_entropy(&t).unwrap();
        prop_assert_eq!(l.shape(), &[n]);
        assert_close(&l.to_vec(), &ce_ref(&xf, k, &t), FWD_TOL, "cross_entropy");
        let gl = randn(&[n], seed + 2);
        let glf = f64s(&gl);
        let dx = x.cross_entropy_backward(&t, &gl).unwrap();
        let num = fd_grad(&xf, |v| dot(&glf, &ce_ref(v, k, &t)));
        assert_close(&dx.to_vec(), &num, FD_TOL, "cross_entropy backward");
    }
}

#[test]
fn softmax_is_stable_and_validates() {
    let x = Tensor::from_vec(vec![1000.0, 0.0, -1000.0, 1e4], &[2, 2]).unwrap();
    assert!(x.softmax().unwrap().to_vec().iter().all(|v| v.is_finite()));
    assert!(
        x.cross_entropy(&[1, 0])
            .unwrap()
            .to_vec()
            .iter()
            .all(|v| v.is_finite())
    );
    let e = x.cross_entropy(&[0, 2]).unwrap_err();
    assert_eq!(
        e,
        TensorError::IndexOutOfRange {
            op: "cross_entropy",
            index: 2,
            bound: 2
        }
    );
    assert!(x.cross_entropy(&[0]).is_err());
    assert!(Tensor::zeros(&[2, 2, 2]).cross_entropy(&[0, 0]).is_err());
    assert!(
        x.cross_entropy_backward(&[0, 1], &Tensor::ones(&[3]))
            .is_err()
    );
    assert!(Tensor::scalar(1.0).softmax().is_err());
}
