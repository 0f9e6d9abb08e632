//! Seeded reproducibility, stream independence, distribution moments, secure mode.

use sparsedp_tensor::{Tensor, TensorRng};

fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

#[test]
fn seeded_streams_are_reproducible_and_distinct() {
    let a = Tensor::randn(&[1000], 0.0, 1.0, &mut TensorRng::seeded(9)).unwrap();
    let b = Tensor::randn(&[1000], 0.0, 1.0, &mut TensorRng::seeded(9)).unwrap();
    let c = Tensor::randn(&[1000], 0.0, 1.0, &mut TensorRng::seeded(10)).unwrap();
    let d = Tensor::randn(&[1000], 0.0, 1.0, &mut TensorRng::seeded_stream(9, 1)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
    // a stream continues: two draws differ, and equal one draw of twice the size
    let mut r = TensorRng::seeded(3);
    let x = Tensor::rand_uniform(&[10], 0.0, 1.0, &mut r).unwrap();
    let y = Tensor::rand_uniform(&[10], 0.0, 1.0, &mut r).unwrap();
    assert_ne!(x, y);
    let both = Tensor::rand_uniform(&[20], 0.0, 1.0, &mut TensorRng::seeded(3)).unwrap();
    assert_eq!(Tensor::cat(&[&x, &y], 0).unwrap(), both);
}

#[test]
fn distributions_have_the_right_moments() {
    // n = 200k: the standard error of the mean is sigma/447, so 5 sigma-ish bounds below.
    let mut r = TensorRng::seeded(1);
    let z = Tensor::randn(&[200_000], 2.0, 3.0, &mut r)
        .unwrap()
        .to_vec();
    let (m, s) = moments(&z);
    assert!((m - 2.0).abs() < 0.03, "mean {m}");
    assert!((s - 3.0).abs() < 0.03, "std {s}");
    let u = Tensor::rand_uniform(&[200_000], -1.0, 3.0, &mut r)
        .unwrap()
        .to_vec();
    assert!(u.iter().all(|&v| (-1.0..=3.0).contains(&v)));
    let (m, s) = moments(&u);
    assert!((m - 1.0).abs() < 0.02, "mean {m}");
    assert!((s - 4.0 / 12f64.sqrt()).abs() < 0.02, "std {s}");
    assert!(Tensor::randn(&[2], 0.0, -1.0, &mut r).is_err());
    assert!(Tensor::rand_uniform(&[2], 1.0, 1.0, &mut r).is_err());
    assert!(Tensor::randn(&[2], f32::NAN, 1.0, &mut r).is_err());
}

#[test]
fn secure_mode_draws_from_os_entropy() {
    let mut a = TensorRng::from_os_entropy().unwrap();
    let mut b = TensorRng::from_os_entropy().unwrap();
    assert!(a.is_secure() && !TensorRng::seeded(0).is_secure());
    // Two independent OS seeds colliding has probability 2^-256.
    let x = Tensor::randn(&[64], 0.0, 1.0, &mut a).unwrap();
    let y = Tensor::randn(&[64], 0.0, 1.0, &mut b).unwrap();
    assert_ne!(x, y);
    let (m, _) = moments(&Tensor::randn(&[50_000], 0.0, 1.0, &mut a).unwrap().to_vec());
    assert!(m.abs() < 0.03);
}
