//! Transforms: normalisation, crops with zero and reflect padding, flips, random draws.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sparsedp_data::{Augment, DataError, DatasetName, Normalize, PadMode, RandomCrop, ViewParams};

/// A 2-channel 4 x 5 image whose pixel at (c, y, x) is 100 c + 10 y + x.
fn image() -> (Vec<u8>, [usize; 3]) {
    let shape = [2, 4, 5];
    let mut v = Vec::new();
    for c in 0..2 {
        for y in 0..4 {
            for x in 0..5 {
                v.push((100 * c + 10 * y + x) as u8);
            }
        }
    }
    (v, shape)
}

/// Output in pixel units (undo `x / 255` with a unit normalisation).
fn view(aug: Augment, p: ViewParams) -> Vec<i32> {
    let (src, shape) = image();
    let mut out = vec![0f32; src.len()];
    aug.apply(&src, shape, p, &Normalize::unit(2), &mut out)
        .expect("apply");
    out.iter().map(|v| (v * 255.0).round() as i32).collect()
}

fn at(v: &[i32], c: usize, y: usize, x: usize) -> i32 {
    v[c * 20 + y * 5 + x]
}

#[test]
fn normalisation_uses_the_published_constants() {
    let n = Normalize::for_dataset(DatasetName::Cifar10);
    assert_eq!(n.mean(), &[0.4914, 0.4822, 0.4465]);
    assert_eq!(n.std(), &[0.2470, 0.2435, 0.2616]);
    assert_eq!(Normalize::for_dataset(DatasetName::Mnist).mean(), &[0.1307]);
    let src = [0u8, 255, 128];
    let mut out = [0f32; 3];
    let mnist = Normalize::for_dataset(DatasetName::Mnist);
    Augment::NONE
        .apply(&src, [1, 1, 3], ViewParams::default(), &mnist, &mut out)
        .expect("apply");
    for (o, s) in out.iter().zip(src) {
        let want = (f32::from(s) / 255.0 - 0.1307) / 0.3081;
        assert!((o - want).abs() < 1e-5, "{o} vs {want}");
    }
    assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
    assert!(Normalize::new(vec![0.5, 0.5], vec![0.2]).is_err());
}

#[test]
fn identity_view_reproduces_the_image() {
    let (src, _) = image();
    let want: Vec<i32> = src.iter().map(|&v| i32::from(v)).collect();
    assert_eq!(view(Augment::NONE, ViewParams::default()), want);
    // A centred crop window is the identity too.
    let crop = Augment {
        crop: Some(RandomCrop {
            padding: 2,
            mode: PadMode::Zero,
        }),
        hflip: false,
    };
    assert_eq!(
        view(
            crop,
            ViewParams {
                dy: 2,
                dx: 2,
                flip: false
            }
        ),
        want
    );
}

#[test]
fn flip_mirrors_columns() {
    let v = view(
        Augment {
            crop: None,
            hflip: true,
        },
        ViewParams {
            dy: 0,
            dx: 0,
            flip: true,
        },
    );
    for c in 0..2 {
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!(at(&v, c, y, x), (100 * c + 10 * y + (4 - x)) as i32);
            }
        }
    }
}

#[test]
fn zero_padded_crop_shifts_and_fills_with_zero() {
    let aug = Augment {
        crop: Some(RandomCrop {
            padding: 2,
            mode: PadMode::Zero,
        }),
        hflip: false,
    };
    // Window at the top-left corner of the padded image: content moves down-right by 2.
    let v = view(
        aug,
        ViewParams {
            dy: 0,
            dx: 0,
            flip: false,
        },
    );
    assert_eq!(at(&v, 1, 0, 0), 0);
    assert_eq!(at(&v, 1, 1, 4), 0);
    assert_eq!(at(&v, 1, 2, 2), 100);
    assert_eq!(at(&v, 1, 3, 4), 112);
    // Bottom-right corner: content moves up-left by 2.
    let v = view(
        aug,
        ViewParams {
            dy: 4,
            dx: 4,
            flip: false,
        },
    );
    assert_eq!(at(&v, 0, 0, 0), 22);
    assert_eq!(at(&v, 0, 1, 2), 34);
    assert_eq!(at(&v, 0, 2, 0), 0);
    assert_eq!(at(&v, 0, 0, 3), 0);
}

#[test]
fn reflect_padded_crop_mirrors_without_repeating_the_edge() {
    let aug = Augment {
        crop: Some(RandomCrop {
            padding: 2,
            mode: PadMode::Reflect,
        }),
        hflip: false,
    };
    let v = view(
        aug,
        ViewParams {
            dy: 0,
            dx: 0,
            flip: false,
        },
    );
    // Padded row/column -2 -> 2, -1 -> 1.
    assert_eq!(at(&v, 0, 0, 0), 22);
    assert_eq!(at(&v, 0, 1, 1), 11);
    assert_eq!(at(&v, 0, 2, 2), 0);
    let v = view(
        aug,
        ViewParams {
            dy: 4,
            dx: 4,
            flip: false,
        },
    );
    // Rows 2, 3, then mirrored 2, 1; columns 2, 3, 4, 3, 2.
    let rows: Vec<i32> = (0..4).map(|y| at(&v, 0, y, 0)).collect();
    assert_eq!(rows, vec![22, 32, 22, 12]);
    let cols: Vec<i32> = (0..5).map(|x| at(&v, 0, 0, x)).collect();
    assert_eq!(cols, vec![22, 23, 24, 23, 22]);
    // Reflect padding must be smaller than the image.
    let big = Augment {
        crop: Some(RandomCrop {
            padding: 4,
            mode: PadMode::Reflect,
        }),
        hflip: false,
    };
    let (src, shape) = image();
    let mut out = vec![0f32; src.len()];
    let r = big.apply(
        &src,
        shape,
        ViewParams::default(),
        &Normalize::unit(2),
        &mut out,
    );
    assert!(matches!(r, Err(DataError::InvalidArgument { .. })));
}

#[test]
fn crop_then_flip_order() {
    let aug = Augment {
        crop: Some(RandomCrop {
            padding: 1,
            mode: PadMode::Zero,
        }),
        hflip: true,
    };
    let v = view(
        aug,
        ViewParams {
            dy: 1,
            dx: 0,
            flip: true,
        },
    );
    // Window columns -1..4 (shifted right by one), then mirrored: output x = 0 is column 3.
    let cols: Vec<i32> = (0..5).map(|x| at(&v, 0, 0, x)).collect();
    assert_eq!(cols, vec![3, 2, 1, 0, 0]);
}

#[test]
fn random_draws_cover_every_offset_and_both_flips() {
    let aug = Augment::cifar(PadMode::Reflect);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut seen_dy = [0usize; 9];
    let mut seen_dx = [0usize; 9];
    let mut flips = 0usize;
    let draws = 9000;
    for _ in 0..draws {
        let p = aug.draw(&mut rng);
        seen_dy[p.dy] += 1;
        seen_dx[p.dx] += 1;
        flips += usize::from(p.flip);
    }
    // Each offset about 1000 times (sd ~ 30); flips about half.
    assert!(
        seen_dy
            .iter()
            .chain(&seen_dx)
            .all(|&c| (850..1150).contains(&c)),
        "{seen_dy:?} {seen_dx:?}"
    );
    assert!((4300..4700).contains(&flips), "{flips}");
    assert!(Augment::NONE.is_identity());
    assert_eq!(Augment::NONE.draw(&mut rng), ViewParams::default());
}

#[test]
fn mismatched_buffers_are_errors() {
    let (src, shape) = image();
    let mut short = vec![0f32; 3];
    let r = Augment::NONE.apply(
        &src,
        shape,
        ViewParams::default(),
        &Normalize::unit(2),
        &mut short,
    );
    assert!(matches!(r, Err(DataError::InvalidArgument { .. })));
    let mut out = vec![0f32; src.len()];
    let r = Augment::NONE.apply(
        &src,
        shape,
        ViewParams::default(),
        &Normalize::unit(3),
        &mut out,
    );
    assert!(r.is_err());
    let crop = Augment {
        crop: Some(RandomCrop {
            padding: 1,
            mode: PadMode::Zero,
        }),
        hflip: false,
    };
    let r = crop.apply(
        &src,
        shape,
        ViewParams {
            dy: 3,
            dx: 0,
            flip: false,
        },
        &Normalize::unit(2),
        &mut out,
    );
    assert!(r.is_err());
}
