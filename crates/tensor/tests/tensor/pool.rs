//! Max and average pooling with backward.

use proptest::prelude::*;
use sparsedp_tensor::{Pool2dParams, Tensor};

use crate::common::*;

fn pool_ref(
    x: &[f64],
    s: [usize; 4],
    p: Pool2dParams,
    max: bool,
) -> Option<(Vec<f64>, usize, usize)> {
    let [n, c, h, w] = s;
    let oh = (h + 2 * p.padding[0]).checked_sub(p.kernel[0])? / p.stride[0] + 1;
    let ow = (w + 2 * p.padding[1]).checked_sub(p.kernel[1])? / p.stride[1] + 1;
    let mut out = Vec::new();
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for ki in 0..p.kernel[0] {
                    for kj in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ki) as isize - p.padding[0] as isize;
                        let ix = (ox * p.stride[1] + kj) as isize - p.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[(plane * h + iy as usize) * w + ix as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out.push(if max {
                    acc
                } else {
                    acc / (p.kernel[0] * p.kernel[1]) as f64
                });
            }
        }
    }
    Some((out, oh, ow))
}

/// Reference max-pool backward with the documented tie rule: each window's gradient goes to
/// its first maximal element in row-major window order (no padding).
fn max_pool_backward_ref(x: &[f32], s: [usize; 4], k: usize, g: &[f32]) -> Vec<f32> {
    let [n, c, h, w] = s;
    let (oh, ow) = ((h - k) / k + 1, (w - k) / k + 1);
    let mut dx = vec![0.0f32; x.len()];
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (plane * h + oy * k) * w + ox * k;
                for ki in 0..k {
                    for kj in 0..k {
                        let i = (plane * h + oy * k + ki) * w + ox * k + kj;
                        if x[i] > x[best] {
                            best = i;
                        }
                    }
                }
                dx[best] += g[(plane * oh + oy) * ow + ox];
            }
        }
    }
    dx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The 2x2 / stride-2 pool has its own kernel; odd sizes (a dropped last row or column)
    /// and ties (values from {0, 1, 2}) must follow the generic rule exactly.
    #[test]
    fn max_pool_2x2_fast_path_matches_reference_with_ties(
        n in 1usize..3, c in 1usize..3, h in 2usize..10, w in 2usize..10, seed in 0u64..1000,
    ) {
        let shape = [n, c, h, w];
        let u = randn(&shape, seed).to_vec();
        let xv: Vec<f32> = u.iter().map(|v| (v.abs() * 1.5).floor().min(2.0)).collect();
        let x = Tensor::from_vec(xv.clone(), &shape).unwrap();
        let p = Pool2dParams::square(2);
        let (want, oh, ow) = pool_ref(&f64s(&x), shape, p, true).unwrap();
        let y = x.max_pool2d(p).unwrap();
        prop_assert_eq!(y.shape(), &[n, c, oh, ow]);
        assert_close(&y.to_vec(), &want, 0.0, "max_pool 2x2");
        let g = randn(&[n, c, oh, ow], seed + 1);
        let dx = x.max_pool2d_backward(&g, p).unwrap();
        prop_assert_eq!(dx.to_vec(), max_pool_backward_ref(&xv, shape, 2, &g.to_vec()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn pooling_matches_reference(
        n in 1usize..3, c in 1usize..4, h in 1usize..9, w in 1usize..9,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
        ph in 0usize..2, pw in 0usize..2, seed in 0u64..1000,
    ) {
        let p = Pool2dParams { kernel: [kh, kw], stride: [sh, sw], padding: [ph.min(kh / 2), pw.min(kw / 2)] };
        let shape = [n, c, h, w];
        let x = randn(&shape, seed);
        let xf = f64s(&x);
        let Some((want, oh, ow)) = pool_ref(&xf, shape, p, true) else {
            prop_assert!(x.max_pool2d(p).is_err());
            return Ok(());
        };
        let g = randn(&[n, c, oh, ow], seed + 1);
        let gf = f64s(&g);
        let y = x.max_pool2d(p).unwrap();
        prop_assert_eq!(y.shape(), &[n, c, oh, ow]);
        assert_close(&y.to_vec(), &want, 0.0, "max_pool");
        let dx = x.max_pool2d_backward(&g, p).unwrap();
        let num = fd_grad(&xf, |v| dot(&gf, &pool_ref(v, shape, p, true).unwrap().0));
        assert_close(&dx.to_vec(), &num, FD_TOL, "max_pool backward");

        let y = x.avg_pool2d(p).unwrap();
        assert_close(&y.to_vec(), &pool_ref(&xf, shape, p, false).unwrap().0, FWD_TOL, "avg_pool");
        let dx = Tensor::avg_pool2d_backward(&g, shape, p).unwrap();
        let num = fd_grad(&xf, |v| dot(&gf, &pool_ref(v, shape, p, false).unwrap().0));
        assert_close(&dx.to_vec(), &num, FD_TOL, "avg_pool backward");
    }
}

#[test]
fn pooling_validates() {
    let x = Tensor::zeros(&[1, 1, 4, 4]);
    assert!(
        x.max_pool2d(Pool2dParams {
            kernel: [2, 2],
            stride: [0, 1],
            padding: [0, 0]
        })
        .is_err()
    );
    assert!(
        x.max_pool2d(Pool2dParams {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [2, 0]
        })
        .is_err()
    );
    assert!(
        Tensor::zeros(&[4, 4])
            .avg_pool2d(Pool2dParams::square(2))
            .is_err()
    );
    assert!(
        x.max_pool2d_backward(&Tensor::zeros(&[1, 1, 3, 3]), Pool2dParams::square(2))
            .is_err()
    );
    assert!(
        Tensor::avg_pool2d_backward(
            &Tensor::zeros(&[1, 1, 3, 3]),
            [1, 1, 4, 4],
            Pool2dParams::square(2)
        )
        .is_err()
    );
    assert_eq!(
        x.max_pool2d(Pool2dParams::square(2)).unwrap().shape(),
        &[1, 1, 2, 2]
    );
}
