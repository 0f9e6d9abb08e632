//! Broadcasting arithmetic and its backward, scalar ops, broadcast_to / sum_to_shape.

use proptest::prelude::*;
use sparsedp_tensor::{BinaryOp, Tensor, broadcast_shape};

use crate::common::*;

const OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

fn apply(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// Naive broadcasting: maps each output multi-index back to both inputs.
fn bin_ref(
    op: BinaryOp,
    a: &[f64],
    sa: &[usize],
    b: &[f64],
    sb: &[usize],
    out: &[usize],
) -> Vec<f64> {
    let r = out.len();
    let n: usize = out.iter().product();
    let so = strides(out);
    let idx = |flat: usize, s: &[usize]| {
        let st = strides(s);
        let lead = r - s.len();
        (0..s.len())
            .map(|d| ((flat / so[d + lead]) % out[d + lead] % s[d]) * st[d])
            .sum::<usize>()
    };
    (0..n)
        .map(|f| apply(op, a[idx(f, sa)], b[idx(f, sb)]))
        .collect()
}

/// Shapes that broadcast: start from `out` and knock dimensions down to 1 or drop leading ones.
fn pair_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        prop::collection::vec(1usize..5, 0..5),
        any::<u32>(),
        any::<u32>(),
        0usize..3,
    )
        .prop_map(|(out, ma, mb, drop)| {
            let knock = |mask: u32| -> Vec<usize> {
                out.iter()
                    .enumerate()
                    .map(|(i, &d)| if mask >> i & 1 == 1 { 1 } else { d })
                    .collect()
            };
            let a = knock(ma);
            let b = knock(mb);
            let b = b[drop.min(b.len())..].to_vec();
            (a, b)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn broadcasting_ops_and_backward_match_reference((sa, sb) in pair_strategy(), seed in 0u64..1000) {
        let a = randn(&sa, seed);
        // keep divisors away from zero
        let b = randn(&sb, seed + 1).abs().add_scalar(0.5);
        let out = broadcast_shape(&sa, &sb).unwrap();
        let (af, bf) = (f64s(&a), f64s(&b));
        for op in OPS {
            let c = a.binary(&b, op).unwrap();
            prop_assert_eq!(c.shape(), out.as_slice());
            assert_close(&c.to_vec(), &bin_ref(op, &af, &sa, &bf, &sb, &out), FWD_TOL, "binary");
            let g = randn(&out, seed + 2);
            let gf = f64s(&g);
            let (ga, gb) = Tensor::binary_backward(&a, &b, &g, op).unwrap();
            prop_assert_eq!(ga.shape(), a.shape());
            prop_assert_eq!(gb.shape(), b.shape());
            let na = fd_grad(&af, |x| dot(&gf, &bin_ref(op, x, &sa, &bf, &sb, &out)));
            let nb = fd_grad(&bf, |x| dot(&gf, &bin_ref(op, &af, &sa, x, &sb, &out)));
            assert_close(&ga.to_vec(), &na, FD_TOL, "binary grad a");
            assert_close(&gb.to_vec(), &nb, FD_TOL, "binary grad b");
        }
        // broadcast_to and sum_to_shape are adjoint: <bcast(a), g> == <a, sum_to(g)>
        let g = randn(&out, seed + 3);
        let lhs = dot(&f64s(&a.broadcast_to(&out).unwrap()), &f64s(&g));
        let rhs = dot(&af, &f64s(&g.sum_to_shape(&sa).unwrap()));
        prop_assert!((lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()));
    }
}

#[test]
fn scalar_ops_and_axpy() {
    let a = randn(&[3, 5], 1);
    let av = f64s(&a);
    assert_close(
        &a.scale(2.5).to_vec(),
        &av.iter().map(|v| v * 2.5).collect::<Vec<_>>(),
        FWD_TOL,
        "scale",
    );
    assert_close(
        &a.add_scalar(-1.0).to_vec(),
        &av.iter().map(|v| v - 1.0).collect::<Vec<_>>(),
        FWD_TOL,
        "add",
    );
    let p = a.abs().add_scalar(1.0);
    let want: Vec<f64> = f64s(&p).iter().map(|v| 3.0 / v).collect();
    assert_close(&p.rdiv_scalar(3.0).to_vec(), &want, FWD_TOL, "rdiv");
    let b = randn(&[3, 5], 2);
    let mut c = a.clone();
    c.add_scaled_(-0.5, &b).unwrap();
    let want: Vec<f64> = av.iter().zip(f64s(&b)).map(|(x, y)| x - 0.5 * y).collect();
    assert_close(&c.to_vec(), &want, FWD_TOL, "axpy");
    assert!(c.add_scaled_(1.0, &Tensor::zeros(&[5, 3])).is_err());
    // large same-shape inputs take the parallel path
    let big = randn(&[300, 301], 3);
    let s = big.add(&big).unwrap();
    assert_close(
        &s.to_vec(),
        &f64s(&big).iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        FWD_TOL,
        "big add",
    );
}

#[test]
fn broadcast_errors_name_shapes() {
    let e = Tensor::zeros(&[2, 3])
        .add(&Tensor::zeros(&[4]))
        .unwrap_err();
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[4]"),
        "{e}"
    );
    assert!(Tensor::zeros(&[2, 3]).broadcast_to(&[3]).is_err());
    assert!(Tensor::zeros(&[2, 3]).sum_to_shape(&[4]).is_err());
    assert!(
        Tensor::binary_backward(
            &Tensor::zeros(&[2]),
            &Tensor::zeros(&[2]),
            &Tensor::zeros(&[3]),
            BinaryOp::Add
        )
        .is_err()
    );
}
