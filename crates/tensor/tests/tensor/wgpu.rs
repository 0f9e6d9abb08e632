//! The wgpu backend against the CPU reference: every op on random inputs, with the tolerance
//! stated per op. The tests skip (with a message) when no wgpu adapter exists; CI runs them on
//! Mesa's software Vulkan driver (lavapipe).
//!
//! Tolerances: `|gpu - cpu| <= atol + rtol |cpu|`. Exact data movement (copies, permutes,
//! gathers, ReLU, max) is compared bit for bit; sums in a different order get `rtol` 1e-5 to
//! 1e-4 depending on the reduction length; transcendental functions (exp, log, tanh, ...) get
//! 1e-4 because WGSL only promises a few ulp for them.

use proptest::prelude::*;
use sparsedp_tensor::{
    BinaryOp, Conv2dParams, Device, Pool2dParams, ReduceOp, Tensor, TensorError, TensorRng,
    UnaryOp, philox_normals, philox4x32_10,
};

/// Whether a wgpu adapter is usable; prints why a test is skipped otherwise.
fn gpu_ready(test: &str) -> bool {
    match Tensor::zeros(&[1]).to_device(Device::Wgpu) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping {test}: no wgpu device ({e})");
            false
        }
    }
}

macro_rules! need_gpu {
    () => {
        if !gpu_ready(module_path!()) {
            return;
        }
    };
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut TensorRng::seeded(seed)).unwrap()
}

fn up(t: &Tensor) -> Tensor {
    t.to_device(Device::Wgpu).unwrap()
}

/// Asserts `|g - c| <= atol + rtol |c|` elementwise, naming the worst element.
fn assert_close(what: &str, gpu: &Tensor, cpu: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(gpu.device(), Device::Wgpu, "{what}: result left the GPU");
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    let (g, c) = (gpu.try_to_vec().unwrap(), cpu.to_vec());
    let mut worst = (0.0f32, 0usize);
    for (i, (&a, &b)) in g.iter().zip(&c).enumerate() {
        if a == b || (a.is_nan() && b.is_nan()) {
            continue;
        }
        // A NaN on one side only counts as an infinite excess.
        let excess = match (a - b).abs() - (atol + rtol * b.abs()) {
            e if e.is_nan() => f32::INFINITY,
            e => e,
        };
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    if worst.0 > 0.0 {
        let i = worst.1;
        panic!(
            "{what}: element {i}: gpu {} vs cpu {} (atol {atol}, rtol {rtol})",
            g[i], c[i]
        );
    }
}

/// Runs `f` on CPU inputs and on their GPU copies and compares.
fn check(
    what: &str,
    inputs: &[&Tensor],
    atol: f32,
    rtol: f32,
    f: impl Fn(&[&Tensor]) -> Result<Tensor, TensorError>,
) {
    let want = f(inputs).unwrap();
    let gpu: Vec<Tensor> = inputs.iter().map(|t| up(t)).collect();
    let refs: Vec<&Tensor> = gpu.iter().collect();
    let got = f(&refs).unwrap();
    assert_close(what, &got, &want, atol, rtol);
}

#[test]
fn transfers_copies_and_layout_ops_are_exact() {
    need_gpu!();
    let x = randn(&[3, 4, 5], 1);
    let g = up(&x);
    assert_eq!(g.device(), Device::Wgpu);
    assert_eq!(g.try_to_vec().unwrap(), x.to_vec());
    assert_eq!(g.to_device(Device::Cpu).unwrap(), x);
    assert_eq!(g.clone().to_vec(), x.to_vec());
    assert!(g.as_slice().is_none());
    check("permute", &[&x], 0.0, 0.0, |t| t[0].permute(&[2, 0, 1]));
    check("transpose", &[&x], 0.0, 0.0, |t| t[0].transpose());
    check("narrow 0", &[&x], 0.0, 0.0, |t| t[0].narrow(0, 1, 2));
    check("narrow 1", &[&x], 0.0, 0.0, |t| t[0].narrow(1, 1, 2));
    check("narrow 2", &[&x], 0.0, 0.0, |t| t[0].narrow(2, 3, 2));
    let y = randn(&[3, 2, 5], 2);
    check("cat", &[&x, &y], 0.0, 0.0, |t| {
        Tensor::cat(&[t[0], t[1], t[0]], 1)
    });
    check("broadcast_to", &[&randn(&[4, 1], 3)], 0.0, 0.0, |t| {
        t[0].broadcast_to(&[2, 4, 3])
    });
    check("reshape", &[&x], 0.0, 0.0, |t| t[0].reshape(&[5, 12]));
    let z = Tensor::full_on(&[7], 2.5, Device::Wgpu).unwrap();
    assert_eq!(z.to_vec(), vec![2.5; 7]);
    assert_eq!(
        Tensor::zeros_on(&[0, 3], Device::Wgpu).unwrap().to_vec(),
        Vec::<f32>::new()
    );
    // A rank-7 permutation exercises the strided kernel beyond the merged common cases.
    let h = randn(&[2, 3, 2, 2, 3, 2, 2], 4);
    check("permute rank 7", &[&h], 0.0, 0.0, |t| {
        t[0].permute(&[6, 4, 2, 0, 1, 3, 5])
    });
}

#[test]
fn binary_scalar_and_axpy_match_cpu() {
    need_gpu!();
    let pairs: [(&[usize], &[usize]); 5] = [
        (&[4, 5], &[4, 5]),
        (&[4, 5], &[5]),
        (&[3, 1, 5], &[4, 1]),
        (&[2, 3, 4], &[]),
        (&[1], &[2, 3]),
    ];
    for (i, (sa, sb)) in pairs.iter().enumerate() {
        let a = randn(sa, 10 + i as u64);
        // Keep divisors away from 0 so relative errors stay meaningful.
        let b = randn(sb, 20 + i as u64).abs().add_scalar(0.5);
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            check(
                &format!("{op:?} {sa:?} {sb:?}"),
                &[&a, &b],
                0.0,
                1e-6,
                |t| t[0].binary(t[1], op),
            );
        }
    }
    let x = randn(&[1000], 5);
    check("scale", &[&x], 0.0, 0.0, |t| Ok(t[0].scale(-1.5)));
    check("add_scalar", &[&x], 0.0, 0.0, |t| Ok(t[0].add_scalar(0.25)));
    check("rdiv_scalar", &[&x], 0.0, 1e-6, |t| {
        Ok(t[0].rdiv_scalar(2.0))
    });
    let y = randn(&[1000], 6);
    check("add_scaled_", &[&x, &y], 1e-7, 1e-6, |t| {
        let mut a = t[0].clone();
        a.add_scaled_(0.3, t[1])?;
        Ok(a)
    });
    check("sum_to_shape", &[&randn(&[3, 4, 5], 7)], 1e-6, 1e-5, |t| {
        t[0].sum_to_shape(&[4, 1])
    });
    let mask = Tensor::from_vec(
        (0..20).map(|i| (i % 3 == 0) as u8 as f32).collect(),
        &[4, 5],
    )
    .unwrap();
    check("masked", &[&randn(&[4, 5], 8), &mask], 0.0, 0.0, |t| {
        t[0].masked(t[1])
    });
}

#[test]
fn unary_ops_and_derivatives_match_cpu() {
    need_gpu!();
    // Spread inputs over [-25, 25] so the saturating branches of tanh/softplus run too.
    let x = randn(&[4096], 30).scale(8.0);
    let pos = x.abs().add_scalar(1e-3);
    let g = randn(&[4096], 31);
    let ops = [
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Mish,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Square,
        UnaryOp::Sigmoid,
    ];
    for op in ops {
        let input = match op {
            UnaryOp::Log | UnaryOp::Sqrt => &pos,
            UnaryOp::Exp => &randn(&[4096], 32).scale(4.0),
            _ => &x,
        };
        let exact = matches!(
            op,
            UnaryOp::Relu | UnaryOp::Abs | UnaryOp::Neg | UnaryOp::Square
        );
        let (atol, rtol) = if exact { (0.0, 0.0) } else { (1e-5, 1e-4) };
        check(&format!("{op:?}"), &[input], atol, rtol, |t| {
            Ok(t[0].unary(op))
        });
        check(&format!("{op:?}'"), &[input, &g], atol, rtol, |t| {
            t[0].unary_backward(op, t[1])
        });
    }
}

#[test]
fn reductions_match_cpu() {
    need_gpu!();
    let x = randn(&[6, 300, 7], 40);
    for axis in 0..3 {
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let exact = op == ReduceOp::Max;
            let (atol, rtol) = if exact { (0.0, 0.0) } else { (1e-4, 1e-5) };
            check(&format!("{op:?} axis {axis}"), &[&x], atol, rtol, |t| {
                t[0].reduce_axis(op, axis, axis == 1)
            });
        }
        let gshape: Vec<usize> = (0..3)
            .filter(|&d| d != axis)
            .map(|d| x.shape()[d])
            .collect();
        let g = randn(&gshape, 41);
        check(
            &format!("max backward axis {axis}"),
            &[&x, &g],
            0.0,
            0.0,
            |t| t[0].max_axis_backward(t[1], axis),
        );
    }
    // A long row (inner == 1) goes to the workgroup tree reduction.
    let long = randn(&[3, 100_000], 42);
    check("sum long rows", &[&long], 1e-3, 1e-5, |t| {
        t[0].sum_axis(1, false)
    });
    check("max long rows", &[&long], 0.0, 0.0, |t| {
        t[0].max_axis(1, false)
    });
    check("row_sq_norms", &[&randn(&[17, 999], 43)], 1e-4, 1e-5, |t| {
        t[0].row_sq_norms()
    });
    let gx = up(&long);
    assert!((gx.sum_all() - long.sum_all()).abs() < 1e-2 * (1.0 + long.sum_all().abs()));
    assert_eq!(up(&x).argmax_axis(1).unwrap(), x.argmax_axis(1).unwrap());
}

#[test]
fn matmul_matches_cpu_for_every_layout() {
    need_gpu!();
    // Sizes that are not multiples of the 64 x 64 tile (and K not a multiple of 16), then of
    // the 128 x 128 tile used when M and N are both at least 128 (K not a multiple of 8).
    for (m, n, k) in [(70, 130, 45), (200, 300, 50)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randn(&if ta { [k, m] } else { [m, k] }, 50);
                let b = randn(&if tb { [n, k] } else { [k, n] }, 51);
                check(
                    &format!("matmul ta={ta} tb={tb}"),
                    &[&a, &b],
                    1e-5,
                    1e-4,
                    |t| t[0].matmul_t(t[1], ta, tb),
                );
                // Batched A with shared B, shared A with batched B, both batched.
                let ab = randn(&if ta { [3, k, m] } else { [3, m, k] }, 52);
                let bb = randn(&if tb { [3, n, k] } else { [3, k, n] }, 53);
                check("bmm batched A", &[&ab, &b], 1e-5, 1e-4, |t| {
                    t[0].matmul_t(t[1], ta, tb)
                });
                check("bmm batched B", &[&a, &bb], 1e-5, 1e-4, |t| {
                    t[0].matmul_t(t[1], ta, tb)
                });
                check("bmm both", &[&ab, &bb], 1e-5, 1e-4, |t| {
                    t[0].matmul_t(t[1], ta, tb)
                });
            }
        }
    }
    // Larger K: the error grows like sqrt(K) for both backends.
    let a = randn(&[64, 2048], 54);
    let b = randn(&[2048, 96], 55);
    check("matmul k=2048", &[&a, &b], 1e-3, 1e-4, |t| {
        t[0].matmul(t[1])
    });
    let g = randn(&[64, 96], 56);
    let (da, db) = Tensor::matmul_backward(&up(&a), &up(&b), &up(&g), false, false).unwrap();
    let (ca, cb) = Tensor::matmul_backward(&a, &b, &g, false, false).unwrap();
    assert_close("matmul_backward a", &da, &ca, 1e-4, 1e-4);
    assert_close("matmul_backward b", &db, &cb, 1e-4, 1e-4);
}

/// Forward, input gradient, weight gradient, per-example weight gradients, im2col and col2im
/// of one convolution.
fn check_conv(what: &str, x_shape: [usize; 4], w_shape: [usize; 4], p: Conv2dParams, bias: bool) {
    let x = randn(&x_shape, 60);
    let w = randn(&w_shape, 61).scale(0.2);
    let b = randn(&[w_shape[0]], 62);
    let k = [w_shape[2], w_shape[3]];
    let tol = (1e-5, 1e-4);
    // Weight gradients sum over all output positions (and examples): f32 rounding grows with
    // that length, and cancellation can leave small results, so the absolute part scales.
    let t = {
        let y = x.conv2d(&w, None, p).unwrap();
        y.shape()[2] * y.shape()[3]
    };
    let wtol = 1e-5 + 1e-7 * (t * x_shape[0]) as f32;
    check(
        &format!("{what} forward"),
        &[&x, &w, &b],
        tol.0,
        tol.1,
        |t| t[0].conv2d(t[1], bias.then_some(t[2]), p),
    );
    let y = x.conv2d(&w, None, p).unwrap();
    let dy = randn(y.shape(), 63);
    check(
        &format!("{what} backward input"),
        &[&dy, &w],
        tol.0,
        tol.1,
        |t| Tensor::conv2d_backward_input(t[0], t[1], [x_shape[2], x_shape[3]], p),
    );
    check(
        &format!("{what} backward weight"),
        &[&x, &dy],
        wtol,
        1e-4,
        |t| t[0].conv2d_backward_weight(t[1], k, p),
    );
    check(
        &format!("{what} per-example"),
        &[&x, &dy],
        wtol,
        1e-4,
        |t| t[0].conv2d_per_example_weight_grad(t[1], k, p),
    );
    check(&format!("{what} im2col"), &[&x], 0.0, 0.0, |t| {
        t[0].im2col(k, p)
    });
    let cols = x.im2col(k, p).unwrap();
    check(&format!("{what} col2im"), &[&cols], 1e-6, 1e-6, |t| {
        t[0].col2im(x_shape, k, p)
    });
}

#[test]
fn conv2d_matches_cpu() {
    need_gpu!();
    check_conv(
        "3x3 pad 1",
        [3, 4, 9, 9],
        [5, 4, 3, 3],
        Conv2dParams::padded(1),
        true,
    );
    let strided = Conv2dParams {
        stride: [2, 1],
        padding: [1, 2],
        dilation: [1, 2],
        groups: 1,
    };
    check_conv(
        "strided dilated",
        [2, 3, 11, 10],
        [4, 3, 3, 2],
        strided,
        false,
    );
    let grouped = Conv2dParams {
        groups: 2,
        ..Conv2dParams::padded(1)
    };
    check_conv("groups 2", [2, 4, 7, 7], [6, 2, 3, 3], grouped, true);
    check_conv(
        "pointwise",
        [3, 8, 5, 5],
        [4, 8, 1, 1],
        Conv2dParams::default(),
        true,
    );
    // 128 output channels over 144 positions: the forward runs on the 128 x 128 tile.
    check_conv(
        "wide",
        [2, 8, 12, 12],
        [128, 8, 3, 3],
        Conv2dParams::padded(1),
        true,
    );
    // The Tramer-Boneh CIFAR-10 first layer shape at a small batch; many examples per
    // workgroup split in the batch weight gradient.
    check_conv(
        "tb-cifar conv1",
        [20, 3, 32, 32],
        [32, 3, 3, 3],
        Conv2dParams::padded(1),
        true,
    );
}

#[test]
fn pooling_matches_cpu() {
    need_gpu!();
    let x = randn(&[2, 3, 9, 8], 70);
    let cases = [
        Pool2dParams::square(2),
        Pool2dParams {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        },
        Pool2dParams {
            kernel: [3, 2],
            stride: [1, 2],
            padding: [1, 0],
        },
    ];
    for p in cases {
        let y = x.max_pool2d(p).unwrap();
        let dy = randn(y.shape(), 71);
        check(&format!("max_pool {p:?}"), &[&x], 0.0, 0.0, |t| {
            t[0].max_pool2d(p)
        });
        check(
            &format!("max_pool backward {p:?}"),
            &[&x, &dy],
            1e-6,
            1e-6,
            |t| t[0].max_pool2d_backward(t[1], p),
        );
        check(&format!("avg_pool {p:?}"), &[&x], 1e-6, 1e-5, |t| {
            t[0].avg_pool2d(p)
        });
        check(
            &format!("avg_pool backward {p:?}"),
            &[&dy],
            1e-6,
            1e-5,
            |t| Tensor::avg_pool2d_backward(t[0], [2, 3, 9, 8], p),
        );
    }
}

#[test]
fn group_norm_matches_cpu() {
    need_gpu!();
    // A large offset checks the two-pass variance.
    let x = randn(&[3, 6, 5, 7], 80).add_scalar(100.0);
    let gamma = randn(&[6], 81);
    let beta = randn(&[6], 82);
    for (groups, affine) in [(2, true), (3, false), (6, true), (1, false)] {
        let what = format!("group_norm g={groups} affine={affine}");
        let (ga, be) = (affine.then_some(&gamma), affine.then_some(&beta));
        let cpu = x.group_norm(groups, ga, be, 1e-5).unwrap();
        let (gx, gg, gb) = (up(&x), up(&gamma), up(&beta));
        let gpu = gx
            .group_norm(groups, affine.then_some(&gg), affine.then_some(&gb), 1e-5)
            .unwrap();
        // xhat is O(1) after subtracting a mean of 100 in f32: absolute 2e-4.
        assert_close(&format!("{what} y"), &gpu.output, &cpu.output, 2e-4, 1e-4);
        assert_close(&format!("{what} xhat"), &gpu.xhat, &cpu.xhat, 2e-4, 1e-4);
        assert_close(&format!("{what} rstd"), &gpu.rstd, &cpu.rstd, 0.0, 1e-4);
        let dy = randn(x.shape(), 83);
        let cg = Tensor::group_norm_backward(&dy, &cpu, ga).unwrap();
        let gg2 = Tensor::group_norm_backward(&up(&dy), &gpu, affine.then_some(&gg)).unwrap();
        assert_close(&format!("{what} dx"), &gg2.input, &cg.input, 1e-3, 1e-3);
        assert_close(
            &format!("{what} dgamma"),
            &gg2.gamma_per_example,
            &cg.gamma_per_example,
            1e-3,
            1e-3,
        );
        assert_close(
            &format!("{what} dbeta"),
            &gg2.beta_per_example,
            &cg.beta_per_example,
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn softmax_and_cross_entropy_match_cpu() {
    need_gpu!();
    let x = randn(&[37, 10], 90).scale(5.0);
    let g = randn(&[37, 10], 91);
    let targets: Vec<usize> = (0..37).map(|i| (i * 7) % 10).collect();
    check("softmax", &[&x], 1e-6, 1e-5, |t| t[0].softmax());
    check("log_softmax", &[&x], 1e-5, 1e-5, |t| t[0].log_softmax());
    let y = x.softmax().unwrap();
    let ly = x.log_softmax().unwrap();
    check("softmax backward", &[&y, &g], 1e-6, 1e-5, |t| {
        t[0].softmax_backward(t[1])
    });
    check("log_softmax backward", &[&ly, &g], 1e-5, 1e-5, |t| {
        t[0].log_softmax_backward(t[1])
    });
    check("cross_entropy", &[&x], 1e-5, 1e-5, |t| {
        t[0].cross_entropy(&targets)
    });
    let w = randn(&[37], 92);
    check("cross_entropy backward", &[&x, &w], 1e-6, 1e-5, |t| {
        t[0].cross_entropy_backward(&targets, t[1])
    });
}

#[test]
fn indexing_matches_cpu() {
    need_gpu!();
    let x = randn(&[3, 5, 4], 100);
    let idx: Vec<usize> = (0..3 * 7 * 4).map(|i| (i * 13 + 1) % 5).collect();
    check("gather", &[&x], 0.0, 0.0, |t| {
        t[0].gather(1, &idx, &[3, 7, 4])
    });
    let src = randn(&[3, 7, 4], 101);
    // Repeated indices accumulate.
    check("scatter_add", &[&x, &src], 1e-6, 1e-6, |t| {
        t[0].scatter_add(1, &idx, t[1])
    });
    let sel = [4, 0, 0, 2];
    check("index_select", &[&x], 0.0, 0.0, |t| {
        t[0].index_select(1, &sel)
    });
    let s2 = randn(&[3, 4, 4], 102);
    check("index_add", &[&x, &s2], 1e-6, 1e-6, |t| {
        t[0].index_add(1, &sel, t[1])
    });
}

#[test]
fn philox_matches_the_random123_known_answers() {
    // Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors).
    assert_eq!(
        philox4x32_10([0, 0, 0, 0], [0, 0]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

/// Kolmogorov-Smirnov distance between the sample and the standard normal CDF.
fn ks_normal(v: &[f32]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let cdf = |x: f64| 0.5 * libm_erfc(-x / std::f64::consts::SQRT_2);
    s.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max)
}

/// erfc by the Numerical Recipes Chebyshev fit (relative error < 1.2e-7), enough for a KS
/// test at n = 200k (critical distance ~3.6e-3).
fn libm_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[test]
fn philox_normals_are_gaussian_and_streams_are_independent() {
    let n = 200_000;
    let z = philox_normals(n, 0.0, 1.0, 42, 0);
    // KS critical value at alpha = 1e-6: sqrt(ln(2 / alpha) / (2 n)) = 6.0e-3. (A scan of
    // keys 0..200 gave a median distance of 1.85e-3, the theoretical 0.87 / sqrt(n) = 1.9e-3.)
    let d = ks_normal(&z);
    assert!(d < 6.0e-3, "KS distance {d}");
    let other = philox_normals(n, 0.0, 1.0, 42, 1);
    assert_ne!(z[..100], other[..100]);
    let corr: f64 = z
        .iter()
        .zip(&other)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum::<f64>()
        / n as f64;
    assert!(corr.abs() < 0.015, "streams correlate: {corr}");
    // Affine parameters and reproducibility.
    let s = philox_normals(8, 3.0, 2.0, 7, 9);
    let t = philox_normals(8, 0.0, 1.0, 7, 9);
    for (a, b) in s.iter().zip(&t) {
        assert!((a - (3.0 + 2.0 * b)).abs() < 1e-6);
    }
    assert_eq!(
        Tensor::randn_philox(&[8], 3.0, 2.0, 7, 9, Device::Cpu)
            .unwrap()
            .to_vec(),
        s
    );
    assert!(Tensor::randn_philox(&[2], 0.0, -1.0, 7, 9, Device::Cpu).is_err());
}

#[test]
fn philox_on_the_gpu_reproduces_the_cpu_stream() {
    need_gpu!();
    for (n, key, stream) in [(1, 1, 0), (10, 99, 3), (100_003, u64::MAX, u64::MAX - 1)] {
        let g = Tensor::randn_philox(&[n], 0.5, 2.0, key, stream, Device::Wgpu).unwrap();
        let c = Tensor::randn_philox(&[n], 0.5, 2.0, key, stream, Device::Cpu).unwrap();
        // Same words, same Box-Muller formula; only log/cos/sin rounding differs.
        assert_close(&format!("philox n={n}"), &g, &c, 1e-4, 1e-4);
    }
    let z = Tensor::randn_philox(&[200_000], 0.0, 1.0, 5, 0, Device::Wgpu).unwrap();
    let d = ks_normal(&z.to_vec());
    assert!(d < 6.0e-3, "KS distance {d}");
}

#[test]
fn device_errors_are_values() {
    assert!(matches!(
        Device::from_name("tpu"),
        Err(TensorError::InvalidArgument { .. })
    ));
    assert_eq!(Device::from_name("CPU").unwrap(), Device::Cpu);
    need_gpu!();
    assert_eq!(Device::from_name("wgpu").unwrap(), Device::Wgpu);
    assert!(Device::Wgpu.describe().starts_with("wgpu: "));
    let c = randn(&[2, 2], 1);
    let g = up(&c);
    assert!(matches!(c.add(&g), Err(TensorError::DeviceMismatch { .. })));
    assert!(matches!(
        g.matmul(&c),
        Err(TensorError::DeviceMismatch { .. })
    ));
    // A result beyond the adapter's largest binding is refused before launch.
    let big = Tensor::zeros_on(&[1 << 20, 1 << 20], Device::Wgpu);
    assert!(matches!(big, Err(TensorError::Device { .. })), "{big:?}");
    let a = Tensor::zeros_on(&[1 << 16, 1], Device::Wgpu).unwrap();
    let b = Tensor::zeros_on(&[1, 1 << 16], Device::Wgpu).unwrap();
    assert!(matches!(a.matmul(&b), Err(TensorError::Device { .. })));
    Device::Wgpu.synchronize().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random convolution geometries: forward and per-example gradients agree with the CPU.
    #[test]
    fn random_conv_geometries_match(
        n in 1usize..4, cg in 1usize..4, og in 1usize..4, groups in 1usize..3,
        h in 3usize..9, w in 3usize..9, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..3, pad in 0usize..2, dil in 1usize..3,
    ) {
        if !gpu_ready("random_conv_geometries_match") {
            return Ok(());
        }
        let p = Conv2dParams { stride: [stride, stride], padding: [pad, pad], dilation: [dil, dil], groups };
        let (c, o) = (cg * groups, og * groups);
        prop_assume!((kh - 1) * dil < h + 2 * pad && (kw - 1) * dil < w + 2 * pad);
        check_conv("random", [n, c, h, w], [o, cg, kh, kw], p, true);
    }

    /// Random broadcasts of every binary op.
    #[test]
    fn random_broadcasts_match(
        dims in proptest::collection::vec(1usize..5, 1..5),
        mask in proptest::collection::vec(any::<bool>(), 5),
        op in 0usize..3,
    ) {
        if !gpu_ready("random_broadcasts_match") {
            return Ok(());
        }
        let b_shape: Vec<usize> = dims.iter().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect();
        let a = randn(&dims, 1);
        let b = randn(&b_shape, 2);
        let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul][op];
        check("broadcast", &[&a, &b], 0.0, 1e-6, |t| t[0].binary(t[1], op));
        check("broadcast swapped", &[&b, &a], 0.0, 1e-6, |t| t[0].binary(t[1], op));
    }
}
