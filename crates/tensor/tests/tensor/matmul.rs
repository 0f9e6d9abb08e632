//! matmul / batched matmul with transposed operands, both GEMM engines, and backward.

use proptest::prelude::*;
use sparsedp_tensor::{
    GemmEngine, Tensor, TensorError, blas_threads, gemm_engine, raw_openblas_sgemm, set_gemm_engine,
};

use crate::common::*;

/// Naive f64 `op(A) op(B)` for one matrix pair; `a` stored `ar x ac`, `b` stored `br x bc`.
#[allow(clippy::too_many_arguments)]
fn mm_ref(
    a: &[f64],
    ac: usize,
    b: &[f64],
    bc: usize,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                let av = if ta { a[p * ac + i] } else { a[i * ac + p] };
                let bv = if tb { b[j * bc + p] } else { b[p * bc + j] };
                s += av * bv;
            }
            c[i * n + j] = s;
        }
    }
    c
}

fn stored(rows: usize, cols: usize, t: bool) -> [usize; 2] {
    if t { [cols, rows] } else { [rows, cols] }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matmul_2d_and_batched_match_reference(
        m in 1usize..9, n in 1usize..9, k in 1usize..9, batch in 1usize..4,
        ta: bool, tb: bool, mode in 0usize..4, seed in 0u64..1000,
    ) {
        let sa = stored(m, k, ta);
        let sb = stored(k, n, tb);
        // mode: 0 = 2x2, 1 = 3x3, 2 = 3x2 (shared B), 3 = 2x3 (shared A)
        let a_batched = mode == 1 || mode == 2;
        let b_batched = mode == 1 || mode == 3;
        let ash: Vec<usize> = if a_batched { vec![batch, sa[0], sa[1]] } else { sa.to_vec() };
        let bsh: Vec<usize> = if b_batched { vec![batch, sb[0], sb[1]] } else { sb.to_vec() };
        let a = randn(&ash, seed);
        let b = randn(&bsh, seed + 1);
        let c = a.matmul_t(&b, ta, tb).unwrap();
        let (af, bf) = (f64s(&a), f64s(&b));
        let nb = if mode == 0 { 1 } else { batch };
        let mut want = Vec::new();
        for i in 0..nb {
            let ai = if a_batched { &af[i * m * k..(i + 1) * m * k] } else { &af[..] };
            let bi = if b_batched { &bf[i * k * n..(i + 1) * k * n] } else { &bf[..] };
            want.extend(mm_ref(ai, sa[1], bi, sb[1], m, n, k, ta, tb));
        }
        if mode == 0 {
            prop_assert_eq!(c.shape(), &[m, n]);
        } else {
            prop_assert_eq!(c.shape(), &[batch, m, n]);
        }
        assert_close(&c.to_vec(), &want, FWD_TOL, "matmul");

        // backward vs finite differences of the naive product
        let g = randn(c.shape(), seed + 2);
        let gf = f64s(&g);
        let fwd = |av: &[f64], bv: &[f64]| -> Vec<f64> {
            let mut out = Vec::new();
            for i in 0..nb {
                let ai = if a_batched { &av[i * m * k..(i + 1) * m * k] } else { av };
                let bi = if b_batched { &bv[i * k * n..(i + 1) * k * n] } else { bv };
                out.extend(mm_ref(ai, sa[1], bi, sb[1], m, n, k, ta, tb));
            }
            out
        };
        let (da, db) = Tensor::matmul_backward(&a, &b, &g, ta, tb).unwrap();
        prop_assert_eq!(da.shape(), a.shape());
        prop_assert_eq!(db.shape(), b.shape());
        assert_close(&da.to_vec(), &fd_grad(&af, |x| dot(&gf, &fwd(x, &bf))), FD_TOL, "matmul dA");
        assert_close(&db.to_vec(), &fd_grad(&bf, |x| dot(&gf, &fwd(&af, x))), FD_TOL, "matmul dB");
    }
}

/// Large enough to take the row-panel parallel path; checked on both GEMM engines.
#[test]
fn large_matmul_both_engines() {
    let (m, n, k) = (203, 97, 131);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = randn(&stored(m, k, ta), 5);
        let b = randn(&stored(k, n, tb), 6);
        let want = mm_ref(
            &f64s(&a),
            a.shape()[1],
            &f64s(&b),
            b.shape()[1],
            m,
            n,
            k,
            ta,
            tb,
        );
        for engine in [GemmEngine::MatrixMultiply, GemmEngine::OpenBlas] {
            set_gemm_engine(engine);
            let c = a.matmul_t(&b, ta, tb).unwrap();
            assert_close(&c.to_vec(), &want, FWD_TOL, "large matmul");
        }
    }
    set_gemm_engine(GemmEngine::OpenBlas);
    // batched with a shared right operand folds into one tall GEMM
    let a = randn(&[7, 40, 64], 8);
    let b = randn(&[64, 33], 9);
    let c = a.matmul(&b).unwrap();
    let (af, bf) = (f64s(&a), f64s(&b));
    let mut want = Vec::new();
    for i in 0..7 {
        want.extend(mm_ref(
            &af[i * 40 * 64..(i + 1) * 40 * 64],
            64,
            &bf,
            33,
            40,
            33,
            64,
            false,
            false,
        ));
    }
    assert_close(&c.to_vec(), &want, FWD_TOL, "tall matmul");
}

#[test]
fn matmul_shape_errors_name_shapes() {
    let a = Tensor::zeros(&[2, 3]);
    let b = Tensor::zeros(&[4, 5]);
    let e = a.matmul(&b).unwrap_err();
    assert_eq!(
        e,
        TensorError::ShapeMismatch {
            op: "matmul",
            lhs: vec![2, 3],
            rhs: vec![4, 5]
        }
    );
    assert!(e.to_string().contains("[2, 3]") && e.to_string().contains("[4, 5]"));
    assert!(a.matmul_t(&b, true, false).is_err());
    assert!(
        Tensor::zeros(&[2, 2, 3])
            .bmm(&Tensor::zeros(&[3, 3, 2]))
            .is_err()
    );
    assert!(Tensor::zeros(&[3]).matmul(&a).is_err());
    assert!(Tensor::zeros(&[2, 2, 2, 2]).matmul(&a).is_err());
    assert_eq!(
        a.matmul_t(&Tensor::zeros(&[5, 3]), false, true)
            .unwrap()
            .shape(),
        &[2, 5]
    );
    assert_eq!(a.matmul(&Tensor::zeros(&[3, 0])).unwrap().shape(), &[2, 0]);
    assert_eq!(
        Tensor::zeros(&[2, 0])
            .matmul(&Tensor::zeros(&[0, 4]))
            .unwrap()
            .to_vec(),
        vec![0.0; 8]
    );
}

#[test]
fn raw_openblas_entry_point_and_engine_switch() {
    let (m, n, k) = (5, 4, 3);
    let a = randn(&[m, k], 10);
    let b = randn(&[k, n], 11);
    let mut c = vec![0.0; m * n];
    raw_openblas_sgemm(m, n, k, &a.to_vec(), &b.to_vec(), &mut c).unwrap();
    let want = mm_ref(&f64s(&a), k, &f64s(&b), n, m, n, k, false, false);
    assert_close(&c, &want, FWD_TOL, "raw sgemm");
    let e = raw_openblas_sgemm(m, n, k, &a.to_vec()[1..], &b.to_vec(), &mut c).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::LengthMismatch {
                expected: 15,
                actual: 14,
                ..
            }
        ),
        "{e}"
    );
    assert!(raw_openblas_sgemm(m, n, k, &a.to_vec(), &b.to_vec(), &mut c[..3]).is_err());
    // the backend keeps OpenBLAS single-threaded (parallelism comes from rayon)
    assert_eq!(blas_threads(), 1);
    assert!(matches!(
        gemm_engine(),
        GemmEngine::OpenBlas | GemmEngine::MatrixMultiply
    ));
}
