//! Activations and maps: forward vs f64 formulas, backward vs finite differences.

use sparsedp_tensor::{Tensor, UnaryOp};

use crate::common::*;

fn f64_ref(op: UnaryOp, x: f64) -> f64 {
    let sp = |x: f64| (1.0 + x.exp()).ln();
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        UnaryOp::Mish => x * sp(x).tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Neg => -x,
        UnaryOp::Square => x * x,
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

const ALL: [UnaryOp; 11] = [
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

#[test]
fn unary_forward_and_backward_match_reference() {
    // Odd size; values kept away from the kinks of relu/abs (|x| >= 0.05) and, for log/sqrt,
    // positive. Includes large magnitudes to exercise the stable softplus/sigmoid branches.
    let raw = randn(&[7, 13], 11).scale(3.0);
    let away = raw
        .to_vec()
        .iter()
        .map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v })
        .collect::<Vec<_>>();
    let x = Tensor::from_vec(away, &[7, 13]).unwrap();
    let pos = x.abs().add_scalar(0.1);
    let g = randn(&[7, 13], 12);
    let gf = f64s(&g);
    for op in ALL {
        let input = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
            &pos
        } else {
            &x
        };
        let xf = f64s(input);
        let y = input.unary(op);
        let want: Vec<f64> = xf.iter().map(|&v| f64_ref(op, v)).collect();
        assert_close(&y.to_vec(), &want, 1e-5, &format!("{op:?} forward"));
        let dx = input.unary_backward(op, &g).unwrap();
        let num = fd_grad(&xf, |v| {
            dot(&gf, &v.iter().map(|&t| f64_ref(op, t)).collect::<Vec<_>>())
        });
        assert_close(&dx.to_vec(), &num, FD_TOL, &format!("{op:?} backward"));
    }
    // named shortcuts call the same kernels
    assert_eq!(x.relu(), x.unary(UnaryOp::Relu));
    assert_eq!(x.gelu(), x.unary(UnaryOp::Gelu));
    assert_eq!(x.mish(), x.unary(UnaryOp::Mish));
    assert_eq!(x.tanh(), x.unary(UnaryOp::Tanh));
    assert_eq!(pos.log(), pos.unary(UnaryOp::Log));
    assert_eq!(pos.sqrt(), pos.unary(UnaryOp::Sqrt));
    assert_eq!(x.exp(), x.unary(UnaryOp::Exp));
    assert_eq!(x.abs(), x.unary(UnaryOp::Abs));
}

#[test]
fn unary_edge_conventions() {
    let x = Tensor::from_vec(vec![0.0, -0.0, 100.0, -100.0], &[4]).unwrap();
    let g = Tensor::ones(&[4]);
    assert_eq!(
        x.unary_backward(UnaryOp::Relu, &g).unwrap().to_vec()[0],
        0.0
    );
    assert_eq!(x.unary_backward(UnaryOp::Abs, &g).unwrap().to_vec()[0], 0.0);
    // mish / sigmoid stay finite at large |x|
    assert!(x.mish().to_vec().iter().all(|v| v.is_finite()));
    assert!(
        x.unary_backward(UnaryOp::Mish, &g)
            .unwrap()
            .to_vec()
            .iter()
            .all(|v| v.is_finite())
    );
    assert!(
        x.unary(UnaryOp::Sigmoid)
            .to_vec()
            .iter()
            .all(|v| v.is_finite())
    );
    assert!(
        x.unary_backward(UnaryOp::Relu, &Tensor::ones(&[3]))
            .is_err()
    );
}

/// CPU tanh is a vectorisable polynomial (`fast_tanh`), not libm: it must agree with f64 `tanh`
/// to a few f32 ulps over the whole range (tiny, moderate, saturated, signed zeros, infinities),
/// keep the sign, and keep NaN.
#[test]
fn tanh_is_accurate_to_a_few_ulps() {
    let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-5).collect();
    xs.extend([
        1e-30, -1e-30, 1e-8, -3e-6, 0.0, -0.0, 8.9, 9.1, 20.0, -50.0, 1e30,
    ]);
    xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE]);
    let n = xs.len();
    let ys = Tensor::from_vec(xs.clone(), &[n]).unwrap().tanh().to_vec();
    let mut worst = 0.0f64;
    for (&x, &y) in xs.iter().zip(&ys) {
        let want = f64::from(x).tanh();
        let ulp = f64::from(f32::EPSILON) * want.abs().max(f64::from(f32::MIN_POSITIVE));
        let err = (f64::from(y) - want).abs() / ulp;
        worst = worst.max(err);
        assert!(err <= 4.0, "tanh({x}) = {y}, want {want} ({err:.1} ulp)");
        assert_eq!(
            y.is_sign_negative(),
            x.is_sign_negative(),
            "sign of tanh({x})"
        );
    }
    assert!(worst > 0.0, "the comparison must see rounding");
    let nan = Tensor::from_vec(vec![f32::NAN], &[1]).unwrap().tanh();
    assert!(nan.to_vec()[0].is_nan());
}
