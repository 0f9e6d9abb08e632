//! Construction, shape manipulation, device and error reporting.

use proptest::prelude::*;
use sparsedp_tensor::{Device, Tensor, TensorError};

use crate::common::*;

#[test]
fn construction_and_inspection() {
    let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(t.rank(), 2);
    assert_eq!(t.numel(), 6);
    assert_eq!(t.dim(1).unwrap(), 3);
    assert!(t.dim(2).is_err());
    assert_eq!(t.device(), Device::Cpu);
    assert_eq!(t.to_device(Device::Cpu).unwrap(), t);
    assert_eq!(t.as_slice().unwrap()[4], 4.0);
    assert_eq!(Tensor::scalar(2.5).item().unwrap(), 2.5);
    assert!(t.item().is_err());
    assert_eq!(Tensor::ones(&[2, 2]).sum_all(), 4.0);
    // Debug output is bounded, whatever the size of the tensor.
    let dbg = format!("{:?}", Tensor::zeros(&[1000, 1000]));
    assert!(
        dbg.len() < 200 && dbg.contains("[1000, 1000]") && dbg.contains("..."),
        "{dbg}"
    );
    assert_eq!(
        format!("{t:?}"),
        "Tensor { shape: [2, 3], device: Cpu, values: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] }"
    );
    let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
    assert_eq!(
        e,
        TensorError::LengthMismatch {
            op: "from_vec",
            expected: 6,
            actual: 5
        }
    );
    assert!(e.to_string().contains("6") && e.to_string().contains("5"));
    // a shape whose element count overflows is a length error, not an arithmetic panic
    assert!(Tensor::from_vec(vec![], &[usize::MAX, 3]).is_err());
    assert!(
        Tensor::zeros(&[2, 3])
            .reshape(&[usize::MAX / 2, 4])
            .is_err()
    );
}

#[test]
fn reshape_infers_and_rejects() {
    let t = randn(&[2, 3, 4], 1);
    assert_eq!(t.reshape(&[6, usize::MAX]).unwrap().shape(), &[6, 4]);
    assert_eq!(t.flatten_batch().unwrap().shape(), &[2, 12]);
    let e = t.reshape(&[5, 5]).unwrap_err();
    assert!(
        e.to_string().contains("[2, 3, 4]") && e.to_string().contains("[5, 5]"),
        "{e}"
    );
    assert!(t.reshape(&[usize::MAX, usize::MAX]).is_err());
    assert_eq!(t.clone().into_reshape(&[24]).unwrap().to_vec(), t.to_vec());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn permute_matches_index_arithmetic(shape in prop::collection::vec(1usize..5, 1..5), seed in 0u64..100) {
        let r = shape.len();
        // a rotation plus a swap, so every rank gets a non-trivial permutation
        let mut perm: Vec<usize> = (1..r).chain(0..1).collect();
        if r > 2 { perm.swap(0, r - 1); }
        let t = randn(&shape, seed);
        let p = t.permute(&perm).unwrap();
        let out_shape: Vec<usize> = perm.iter().map(|&i| shape[i]).collect();
        prop_assert_eq!(p.shape(), out_shape.as_slice());
        let (si, so) = (strides(&shape), strides(&out_shape));
        let (tv, pv) = (t.to_vec(), p.to_vec());
        for (flat, &v) in pv.iter().enumerate() {
            let mut src = 0;
            for d in 0..r {
                src += (flat / so[d]) % out_shape[d] * si[perm[d]];
            }
            prop_assert_eq!(v, tv[src]);
        }
    }

    #[test]
    fn narrow_and_cat_roundtrip(n in 1usize..6, c in 1usize..4, k in 0usize..6, seed in 0u64..100) {
        let t = randn(&[c, n + k, 3], seed);
        let a = t.narrow(1, 0, n).unwrap();
        let b = t.narrow(1, n, k).unwrap();
        prop_assert_eq!(Tensor::cat(&[&a, &b], 1).unwrap(), t);
    }
}

#[test]
fn transpose_and_errors() {
    let t = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
    assert_eq!(
        t.transpose().unwrap().to_vec(),
        vec![1., 4., 2., 5., 3., 6.]
    );
    assert!(Tensor::zeros(&[3]).transpose().is_err());
    assert!(t.permute(&[0, 0]).is_err());
    assert!(t.permute(&[0]).is_err());
    assert!(t.narrow(1, 2, 2).is_err());
    assert!(t.narrow(2, 0, 1).is_err());
    assert!(Tensor::cat(&[&t, &Tensor::zeros(&[3, 3])], 1).is_err());
    assert!(Tensor::cat(&[], 0).is_err());
    // every error is a std::error::Error with a message naming the op
    let e: Box<dyn std::error::Error> = Box::new(t.permute(&[1]).unwrap_err());
    assert!(e.to_string().starts_with("permute"));
}
