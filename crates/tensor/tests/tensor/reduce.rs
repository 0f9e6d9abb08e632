//! Reductions and their backward, per-row squared norms.

use proptest::prelude::*;
use sparsedp_tensor::{ReduceOp, Tensor};

use crate::common::*;

fn reduce_ref(op: ReduceOp, x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for i in 0..inner {
            let vals = (0..len).map(|l| x[(o * len + l) * inner + i]);
            out.push(match op {
                ReduceOp::Sum => vals.sum(),
                ReduceOp::Mean => vals.sum::<f64>() / len as f64,
                ReduceOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn axis_reductions_match_reference(shape in prop::collection::vec(1usize..6, 1..5), ax in 0usize..4, keep: bool, seed in 0u64..1000) {
        let axis = ax % shape.len();
        let x = randn(&shape, seed);
        let xf = f64s(&x);
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let y = x.reduce_axis(op, axis, keep).unwrap();
            let mut want_shape = shape.clone();
            if keep { want_shape[axis] = 1 } else { want_shape.remove(axis); }
            prop_assert_eq!(y.shape(), want_shape.as_slice());
            assert_close(&y.to_vec(), &reduce_ref(op, &xf, &shape, axis), FWD_TOL, "reduce");
        }
        // backward of sum and max vs finite differences (random normals: no ties)
        let g = randn(x.sum_axis(axis, keep).unwrap().shape(), seed + 1);
        let gf = f64s(&g);
        let ds = Tensor::sum_axis_backward(&g, &shape, axis).unwrap();
        let num = fd_grad(&xf, |v| dot(&gf, &reduce_ref(ReduceOp::Sum, v, &shape, axis)));
        assert_close(&ds.to_vec(), &num, FD_TOL, "sum backward");
        let dm = x.max_axis_backward(&g, axis).unwrap();
        let num = fd_grad(&xf, |v| dot(&gf, &reduce_ref(ReduceOp::Max, v, &shape, axis)));
        assert_close(&dm.to_vec(), &num, FD_TOL, "max backward");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The kernel's layouts: one output row split into segments (reducing the batch axis of a
    /// wide tensor), many contiguous rows (`inner == 1`, e.g. an image plane), and short rows
    /// whose tasks hold many segments.
    #[test]
    fn axis_reductions_match_reference_on_wide_and_long_shapes(
        outer in 1usize..4, len in 1usize..70, inner in prop::sample::select(vec![1usize, 3, 511, 512, 513, 1300]),
        seed in 0u64..1000,
    ) {
        let shape = [outer, len, inner];
        let x = randn(&shape, seed);
        let xf = f64s(&x);
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let y = x.reduce_axis(op, 1, false).unwrap();
            assert_close(&y.to_vec(), &reduce_ref(op, &xf, &shape, 1), FWD_TOL, "reduce");
        }
        // Long contiguous rows: reduce the last axis of [outer * len, inner].
        let flat = x.reshape(&[outer * len, inner]).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let y = flat.reduce_axis(op, 1, false).unwrap();
            assert_close(&y.to_vec(), &reduce_ref(op, &xf, &[outer * len, inner], 1), FWD_TOL, "row reduce");
        }
    }
}

#[test]
fn totals_multi_axis_and_norms() {
    let x = randn(&[4, 3, 5], 3);
    let xf = f64s(&x);
    let total: f64 = xf.iter().sum();
    assert!((x.sum_all() as f64 - total).abs() < 1e-4);
    assert!((x.mean_all() as f64 - total / 60.0).abs() < 1e-5);
    let s = x.sum_axes(&[2, 0], false).unwrap();
    assert_eq!(s.shape(), &[3]);
    let want: Vec<f64> = (0..3)
        .map(|c| {
            (0..4)
                .flat_map(|n| (0..5).map(move |k| (n, k)))
                .map(|(n, k)| xf[(n * 3 + c) * 5 + k])
                .sum()
        })
        .collect();
    assert_close(&s.to_vec(), &want, FWD_TOL, "sum_axes");
    assert!(x.sum_axes(&[1, 1], false).is_err());
    let nr = x.row_sq_norms().unwrap();
    let want: Vec<f64> = (0..4)
        .map(|n| xf[n * 15..(n + 1) * 15].iter().map(|v| v * v).sum())
        .collect();
    assert_close(&nr.to_vec(), &want, FWD_TOL, "row_sq_norms");
    assert!(Tensor::scalar(1.0).row_sq_norms().is_err());
    assert!(x.sum_axis(3, false).is_err());
    // argmax: first maximum wins ties
    let t = Tensor::from_vec(vec![1., 3., 3., 0., -1., 2., 5., 5., 0.], &[3, 3]).unwrap();
    assert_eq!(t.argmax_axis(1).unwrap(), vec![1, 2, 0]);
    assert_eq!(t.argmax_axis(0).unwrap(), vec![2, 2, 0]);
    let am = x.argmax_axis(1).unwrap();
    for (p, &a) in am.iter().enumerate() {
        let (n, k) = (p / 5, p % 5);
        let best = (0..3)
            .map(|c| xf[(n * 3 + c) * 5 + k])
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(xf[(n * 3 + a) * 5 + k], best);
    }
    assert!(x.argmax_axis(3).is_err());
    assert!(Tensor::zeros(&[2, 0]).argmax_axis(1).is_err());
    assert!(Tensor::zeros(&[2, 0]).max_axis(1, false).is_err());
    assert!(x.max_axis_backward(&Tensor::zeros(&[7]), 1).is_err());
}
