//! conv2d forward / input-backward / weight-backward / per-example gradients and im2col against
//! naive f64 loops and finite differences.

use proptest::prelude::*;
use sparsedp_tensor::{Conv2dParams, Tensor, TensorError};

use crate::common::*;

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    groups: usize,
    cg: usize,
    og: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    p: Conv2dParams,
}

impl Case {
    fn c(&self) -> usize {
        self.cg * self.groups
    }
    fn o(&self) -> usize {
        self.og * self.groups
    }
    fn out_hw(&self) -> Option<(usize, usize)> {
        let f = |i: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d * (k - 1) + 1;
            (i + 2 * p >= span).then(|| (i + 2 * p - span) / s + 1)
        };
        Some((
            f(
                self.h,
                self.kh,
                self.p.stride[0],
                self.p.padding[0],
                self.p.dilation[0],
            )?,
            f(
                self.w,
                self.kw,
                self.p.stride[1],
                self.p.padding[1],
                self.p.dilation[1],
            )?,
        ))
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c(), self.h, self.w]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.o(), self.cg, self.kh, self.kw]
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        (1usize..4, 1usize..4, 1usize..4, 1usize..4),
        (1usize..10, 1usize..10, 1usize..4, 1usize..4),
        (
            1usize..4,
            1usize..4,
            0usize..3,
            0usize..3,
            1usize..3,
            1usize..3,
        ),
    )
        .prop_map(
            |((n, groups, cg, og), (h, w, kh, kw), (sh, sw, ph, pw, dh, dw))| Case {
                n,
                groups,
                cg,
                og,
                h,
                w,
                kh,
                kw,
                p: Conv2dParams {
                    stride: [sh, sw],
                    padding: [ph, pw],
                    dilation: [dh, dw],
                    groups,
                },
            },
        )
        .prop_filter("kernel must fit", |c| c.out_hw().is_some())
}

/// Input value at (n, c, iy, ix) with zero padding.
fn at(x: &[f64], c: &Case, n: usize, ch: usize, iy: isize, ix: isize) -> f64 {
    if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
        return 0.0;
    }
    x[((n * c.c() + ch) * c.h + iy as usize) * c.w + ix as usize]
}

fn in_pos(c: &Case, oy: usize, ox: usize, ki: usize, kj: usize) -> (isize, isize) {
    let iy = (oy * c.p.stride[0] + ki * c.p.dilation[0]) as isize - c.p.padding[0] as isize;
    let ix = (ox * c.p.stride[1] + kj * c.p.dilation[1]) as isize - c.p.padding[1] as isize;
    (iy, ix)
}

/// Naive f64 convolution.
fn conv_ref(c: &Case, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let (oh, ow) = c.out_hw().unwrap();
    let mut y = vec![0.0; c.n * c.o() * oh * ow];
    for n in 0..c.n {
        for o in 0..c.o() {
            let g = o / c.og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for ci in 0..c.cg {
                        for ki in 0..c.kh {
                            for kj in 0..c.kw {
                                let (iy, ix) = in_pos(c, oy, ox, ki, kj);
                                let wv = w[((o * c.cg + ci) * c.kh + ki) * c.kw + kj];
                                s += wv * at(x, c, n, g * c.cg + ci, iy, ix);
                            }
                        }
                    }
                    y[((n * c.o() + o) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    y
}

/// Naive per-example weight gradient: G_n[o, ci, ki, kj] = sum_t dy[n, o, t] * x[n, g*cg+ci, pos].
fn per_example_ref(c: &Case, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let (oh, ow) = c.out_hw().unwrap();
    let d = c.cg * c.kh * c.kw;
    let mut out = vec![0.0; c.n * c.o() * d];
    for n in 0..c.n {
        for o in 0..c.o() {
            let g = o / c.og;
            for ci in 0..c.cg {
                for ki in 0..c.kh {
                    for kj in 0..c.kw {
                        let mut s = 0.0;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let (iy, ix) = in_pos(c, oy, ox, ki, kj);
                                s += dy[((n * c.o() + o) * oh + oy) * ow + ox]
                                    * at(x, c, n, g * c.cg + ci, iy, ix);
                            }
                        }
                        out[(n * c.o() + o) * d + (ci * c.kh + ki) * c.kw + kj] = s;
                    }
                }
            }
        }
    }
    out
}

fn check_case(c: Case, seed: u64) {
    let x = randn(&c.x_shape(), seed);
    let w = randn(&c.w_shape(), seed + 1);
    let b = randn(&[c.o()], seed + 2);
    let (oh, ow) = c.out_hw().unwrap();
    let dy = randn(&[c.n, c.o(), oh, ow], seed + 3);
    let (xf, wf, bf, dyf) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));

    // forward (with and without bias)
    let y = x.conv2d(&w, Some(&b), c.p).unwrap();
    assert_eq!(y.shape(), &[c.n, c.o(), oh, ow]);
    assert_close(
        &y.to_vec(),
        &conv_ref(&c, &xf, &wf, Some(&bf)),
        FWD_TOL,
        "conv2d forward",
    );
    let y0 = x.conv2d(&w, None, c.p).unwrap();
    assert_close(
        &y0.to_vec(),
        &conv_ref(&c, &xf, &wf, None),
        FWD_TOL,
        "conv2d forward no bias",
    );

    // input gradient vs finite differences of the naive forward
    let dx = Tensor::conv2d_backward_input(&dy, &w, [c.h, c.w], c.p).unwrap();
    assert_eq!(dx.shape(), x.shape());
    let num = fd_grad(&xf, |xv| dot(&dyf, &conv_ref(&c, xv, &wf, None)));
    assert_close(&dx.to_vec(), &num, FD_TOL, "conv2d input grad");

    // weight gradient vs finite differences
    let dw = x.conv2d_backward_weight(&dy, [c.kh, c.kw], c.p).unwrap();
    assert_eq!(dw.shape(), w.shape());
    let num = fd_grad(&wf, |wv| dot(&dyf, &conv_ref(&c, &xf, wv, None)));
    assert_close(&dw.to_vec(), &num, FD_TOL, "conv2d weight grad");

    // bias gradient
    let db = Tensor::conv2d_backward_bias(&dy).unwrap();
    let num = fd_grad(&bf, |bv| dot(&dyf, &conv_ref(&c, &xf, &wf, Some(bv))));
    assert_close(&db.to_vec(), &num, FD_TOL, "conv2d bias grad");

    // per-example weight gradient vs the naive per-example formula
    let per = x
        .conv2d_per_example_weight_grad(&dy, [c.kh, c.kw], c.p)
        .unwrap();
    assert_eq!(per.shape(), &[c.n, c.o(), c.cg * c.kh * c.kw]);
    assert_close(
        &per.to_vec(),
        &per_example_ref(&c, &xf, &dyf),
        FWD_TOL,
        "per-example grad",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_all_kernels_match_reference(c in case_strategy(), seed in 0u64..1000) {
        check_case(c, seed);
    }

    #[test]
    fn im2col_matches_reference_and_col2im_is_its_adjoint(c in case_strategy(), seed in 0u64..1000) {
        let x = randn(&c.x_shape(), seed);
        let xf = f64s(&x);
        let p = Conv2dParams { groups: 1, ..c.p };
        let cols = x.im2col([c.kh, c.kw], p).unwrap();
        let (oh, ow) = c.out_hw().unwrap();
        let d = c.c() * c.kh * c.kw;
        assert_eq!(cols.shape(), &[c.n, d, oh * ow]);
        let mut want = vec![0.0; c.n * d * oh * ow];
        for n in 0..c.n {
            for ch in 0..c.c() {
                for ki in 0..c.kh {
                    for kj in 0..c.kw {
                        let row = (ch * c.kh + ki) * c.kw + kj;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let (iy, ix) = in_pos(&c, oy, ox, ki, kj);
                                want[(n * d + row) * oh * ow + oy * ow + ox] = at(&xf, &c, n, ch, iy, ix);
                            }
                        }
                    }
                }
            }
        }
        assert_close(&cols.to_vec(), &want, 0.0, "im2col");
        // <im2col(x), r> == <x, col2im(r)>
        let r = randn(cols.shape(), seed + 9);
        let back = r.col2im(c.x_shape(), [c.kh, c.kw], p).unwrap();
        let lhs = dot(&f64s(&cols), &f64s(&r));
        let rhs = dot(&xf, &f64s(&back));
        prop_assert!((lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()), "adjoint {lhs} vs {rhs}");
    }
}

#[test]
fn conv2d_pointwise_batch_one_and_blocked_batches() {
    // 1x1 stride-1 unpadded takes the no-im2col path; batch 1 takes the parallel-GEMM path.
    // (The (4, 4) case is a depthwise-style grouped pointwise conv.)
    for (n, groups) in [(1, 1), (3, 1), (1, 2), (4, 4)] {
        let c = Case {
            n,
            groups,
            cg: 3,
            og: 2,
            h: 5,
            w: 7,
            kh: 1,
            kw: 1,
            p: Conv2dParams {
                groups,
                ..Default::default()
            },
        };
        check_case(c, 42 + n as u64);
    }
    let c = Case {
        n: 1,
        groups: 1,
        cg: 3,
        og: 4,
        h: 9,
        w: 8,
        kh: 3,
        kw: 3,
        p: Conv2dParams {
            stride: [2, 2],
            padding: [1, 1],
            dilation: [2, 1],
            groups: 1,
        },
    };
    check_case(c, 7);
    // A batch much larger than the thread count: several examples share one column block.
    let c = Case {
        n: 19,
        groups: 2,
        cg: 2,
        og: 3,
        h: 6,
        w: 5,
        kh: 3,
        kw: 2,
        p: Conv2dParams {
            stride: [1, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 2,
        },
    };
    check_case(c, 8);
    // Stride 1 with output width == input width takes the shifted-plane im2col/col2im path.
    let same = |n, kh, kw, ph, pw, dh, dw, h, w| Case {
        n,
        groups: 1,
        cg: 2,
        og: 3,
        h,
        w,
        kh,
        kw,
        p: Conv2dParams {
            stride: [1, 1],
            padding: [ph, pw],
            dilation: [dh, dw],
            groups: 1,
        },
    };
    for (i, c) in [
        same(2, 3, 3, 1, 1, 1, 1, 5, 7),
        same(10, 3, 3, 1, 1, 1, 1, 4, 4),
        same(2, 3, 3, 2, 2, 2, 2, 6, 5),
        same(1, 3, 1, 0, 0, 1, 1, 6, 3),
        same(3, 2, 3, 0, 1, 1, 1, 3, 2),
        same(2, 5, 3, 1, 1, 1, 1, 3, 1),
    ]
    .into_iter()
    .enumerate()
    {
        check_case(c, 20 + i as u64);
    }
}

/// Acceptance: the per-example weight gradients summed over the batch equal the batch weight
/// gradient to 1e-5 relative, on a layer of the real CNN's shape (plus a strided grouped one).
#[test]
fn per_example_sum_equals_batch_weight_grad() {
    let cases = [
        ([16, 32, 16, 16], [64, 32, 3, 3], Conv2dParams::padded(1)),
        (
            [5, 6, 11, 9],
            [4, 3, 3, 2],
            Conv2dParams {
                stride: [2, 1],
                padding: [1, 0],
                dilation: [1, 2],
                groups: 2,
            },
        ),
    ];
    for (i, (xs, ws, p)) in cases.into_iter().enumerate() {
        let x = randn(&xs, 100 + i as u64);
        let w = randn(&ws, 200 + i as u64);
        let y = x.conv2d(&w, None, p).unwrap();
        let dy = randn(y.shape(), 300 + i as u64);
        let k = [ws[2], ws[3]];
        let batch = x.conv2d_backward_weight(&dy, k, p).unwrap();
        let per = x.conv2d_per_example_weight_grad(&dy, k, p).unwrap();
        // Sum in f64 so that only the kernels' own rounding is measured.
        let d = per.shape()[1] * per.shape()[2];
        let pv = per.to_vec();
        let mut sum = vec![0.0f64; d];
        for e in 0..xs[0] {
            for (s, v) in sum.iter_mut().zip(&pv[e * d..(e + 1) * d]) {
                *s += *v as f64;
            }
        }
        let bv = batch.to_vec();
        let num: f64 = sum
            .iter()
            .zip(&bv)
            .map(|(s, b)| (s - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let den: f64 = sum.iter().map(|s| s * s).sum::<f64>().sqrt();
        assert!(
            num / den <= 1e-5,
            "case {i}: relative error {:e}",
            num / den
        );

        // The chunked stream yields the same gradients.
        let mut streamed = Vec::new();
        x.conv2d_per_example_weight_grad_chunked(&dy, k, p, 3, |start, t| {
            assert_eq!(start * d, streamed.len());
            streamed.extend(t.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(streamed, pv);
    }
}

#[test]
fn conv2d_rejects_bad_arguments_with_typed_errors() {
    let x = Tensor::zeros(&[2, 4, 5, 5]);
    let w = Tensor::zeros(&[6, 2, 3, 3]);
    // groups 3 does not divide 4 channels
    let p = Conv2dParams {
        groups: 3,
        ..Default::default()
    };
    assert!(matches!(
        x.conv2d(&w, None, p),
        Err(TensorError::InvalidArgument { .. })
    ));
    // weight expects 2 channels per group but groups = 1 means 4
    let e = x.conv2d(&w, None, Conv2dParams::default()).unwrap_err();
    assert!(matches!(e, TensorError::ShapeMismatch { .. }));
    assert!(
        e.to_string().contains("[2, 4, 5, 5]") && e.to_string().contains("[6, 2, 3, 3]"),
        "{e}"
    );
    // kernel larger than the padded input
    let big = Tensor::zeros(&[6, 4, 7, 7]);
    assert!(x.conv2d(&big, None, Conv2dParams::default()).is_err());
    // zero stride
    let p = Conv2dParams {
        stride: [0, 1],
        ..Default::default()
    };
    assert!(x.conv2d(&Tensor::zeros(&[6, 4, 3, 3]), None, p).is_err());
    // wrong rank, wrong bias, wrong grad shape, zero chunk
    assert!(
        Tensor::zeros(&[4, 5, 5])
            .conv2d(&w, None, Conv2dParams::default())
            .is_err()
    );
    let w4 = Tensor::zeros(&[6, 4, 3, 3]);
    assert!(
        x.conv2d(&w4, Some(&Tensor::zeros(&[5])), Conv2dParams::default())
            .is_err()
    );
    let bad_dy = Tensor::zeros(&[2, 6, 4, 4]);
    assert!(
        x.conv2d_backward_weight(&bad_dy, [3, 3], Conv2dParams::default())
            .is_err()
    );
    assert!(Tensor::conv2d_backward_input(&bad_dy, &w4, [5, 5], Conv2dParams::default()).is_err());
    let dy = Tensor::zeros(&[2, 6, 3, 3]);
    let r = x.conv2d_per_example_weight_grad_chunked(
        &dy,
        [3, 3],
        Conv2dParams::default(),
        0,
        |_, _| Ok(()),
    );
    assert!(r.is_err());
}
