//! gather / scatter_add, index_select / index_add, and 0/1 masking.

use sparsedp_tensor::{Tensor, TensorError};

use crate::common::*;

#[test]
fn gather_and_scatter_add_match_reference_and_are_adjoint() {
    let x = randn(&[3, 5, 4], 1);
    let xf = f64s(&x);
    // axis 1, J = 2, duplicate indices included
    let ishape = [3, 2, 4];
    let index: Vec<usize> = (0..24).map(|i| (i * 7 + 3) % 5).collect();
    let y = x.gather(1, &index, &ishape).unwrap();
    let mut want = Vec::new();
    for o in 0..3 {
        for j in 0..2 {
            for i in 0..4 {
                want.push(xf[(o * 5 + index[(o * 2 + j) * 4 + i]) * 4 + i]);
            }
        }
    }
    assert_close(&y.to_vec(), &want, 0.0, "gather");
    // <gather(x), g> == <x, scatter_add(0, g)>
    let g = randn(&ishape, 2);
    let back = Tensor::zeros(x.shape()).scatter_add(1, &index, &g).unwrap();
    let (l, r) = (dot(&f64s(&y), &f64s(&g)), dot(&xf, &f64s(&back)));
    assert!((l - r).abs() < 1e-4 * (1.0 + l.abs()), "{l} vs {r}");
    // last-axis gather picks the label logit
    let logits = randn(&[4, 3], 3);
    let picked = logits.gather(1, &[2, 0, 1, 1], &[4, 1]).unwrap();
    let lv = logits.to_vec();
    assert_eq!(picked.to_vec(), vec![lv[2], lv[3], lv[7], lv[10]]);
    // errors
    let e = x.gather(1, &[5; 24], &ishape).unwrap_err();
    assert_eq!(
        e,
        TensorError::IndexOutOfRange {
            op: "gather",
            index: 5,
            bound: 5
        }
    );
    assert!(x.gather(1, &index, &[3, 2, 5]).is_err());
    assert!(x.gather(3, &index, &ishape).is_err());
    assert!(x.gather(1, &index[..20], &ishape).is_err());
}

#[test]
fn index_select_and_index_add() {
    let x = randn(&[5, 2, 3], 4);
    let sel = x.index_select(0, &[4, 0, 4]).unwrap();
    assert_eq!(sel.shape(), &[3, 2, 3]);
    let xv = x.to_vec();
    assert_eq!(&sel.to_vec()[..6], &xv[24..30]);
    assert_eq!(&sel.to_vec()[6..12], &xv[..6]);
    // adjoint: duplicates accumulate
    let g = randn(&[3, 2, 3], 5);
    let back = Tensor::zeros(x.shape())
        .index_add(0, &[4, 0, 4], &g)
        .unwrap();
    let (l, r) = (dot(&f64s(&sel), &f64s(&g)), dot(&f64s(&x), &f64s(&back)));
    assert!((l - r).abs() < 1e-4 * (1.0 + l.abs()));
    // middle axis
    let mid = x.index_select(2, &[2, 1]).unwrap();
    assert_eq!(mid.shape(), &[5, 2, 2]);
    assert_eq!(mid.to_vec()[..2], [xv[2], xv[1]]);
    assert!(x.index_select(0, &[5]).is_err());
    assert!(Tensor::zeros(x.shape()).index_add(0, &[1], &g).is_err());
}

#[test]
fn masking_by_zero_one_tensor() {
    let x = randn(&[2, 3], 6);
    let m = Tensor::from_vec(vec![1.0, 0.0, 1.0], &[3]).unwrap();
    let y = x.masked(&m).unwrap();
    let xv = x.to_vec();
    assert_eq!(y.to_vec(), vec![xv[0], 0.0, xv[2], xv[3], 0.0, xv[5]]);
    let bad = Tensor::from_vec(vec![1.0, 0.5, 1.0], &[3]).unwrap();
    assert!(matches!(
        x.masked(&bad),
        Err(TensorError::InvalidArgument { .. })
    ));
    // the mask may not enlarge the tensor
    assert!(x.masked(&Tensor::ones(&[4, 2, 3])).is_err());
}
