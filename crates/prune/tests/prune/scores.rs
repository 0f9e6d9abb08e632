//! Scores: SynFlow against closed-form path products, iterative SynFlow, SNIP against autograd
//! and finite differences, provenance checks.

use super::common::{Chain, kept, to_f64};
use sparsedp_nn::layers::Activation;
use sparsedp_nn::models::{TramerBonehCifar, WideResNet, WideResNetConfig};
use sparsedp_nn::{Model, ParamMask, ParamRole, batch_gradient};
use sparsedp_prune::mask::kept_count;
use sparsedp_prune::{
    DataBatch, DataProvenance, MaskConfig, PruneError, PruneScore, SynflowConfig, SynflowRescale,
    magnitude_scores, mask_from_scores, prune, snip_scores, synflow_mask, synflow_scores,
};
use sparsedp_tensor::{Tensor, TensorRng};

/// `A [r, c] x B [c, k]` in f64, row-major.
fn matmul(a: &[f64], b: &[f64], r: usize, c: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * k];
    for i in 0..r {
        for j in 0..c {
            for l in 0..k {
                out[i * k + l] += a[i * c + j] * b[j * k + l];
            }
        }
    }
    out
}

fn abs(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(f64::abs).collect()
}

/// Closed-form SynFlow scores of a 3-layer bias-free chain `y = W3 W2 W1 x`:
/// R = 1^T |W3| |W2| |W1| 1, dR/dW1[j,i] = (1^T |W3||W2|)[j], dR/dW2[j,i] = (1^T|W3|)[j] (|W1| 1)[i],
/// dR/dW3[j,i] = (|W2||W1| 1)[i]; score = |w| dR/dw.
fn closed_form(model: &Chain, dims: &[usize]) -> (Vec<Vec<f64>>, f64) {
    let w: Vec<Vec<f64>> = (0..3)
        .map(|l| abs(to_f64(model.store.value(model.weight(l)))))
        .collect();
    let [d0, d1, d2, d3] = [dims[0], dims[1], dims[2], dims[3]];
    let ones = |n| vec![1.0; n];
    let a1 = matmul(&w[0], &ones(d0), d1, d0, 1); // |W1| 1
    let a2 = matmul(&w[1], &a1, d2, d1, 1); // |W2||W1| 1
    let r: f64 = matmul(&w[2], &a2, d3, d2, 1).iter().sum();
    let b3 = ones(d3); // 1^T
    let b2 = matmul(&b3, &w[2], 1, d3, d2); // 1^T |W3|
    let b1 = matmul(&b2, &w[1], 1, d2, d1); // 1^T |W3||W2|
    let s1 = (0..d1 * d0).map(|e| w[0][e] * b1[e / d0]).collect();
    let s2 = (0..d2 * d1)
        .map(|e| w[1][e] * b2[e / d1] * a1[e % d1])
        .collect();
    let s3 = (0..d3 * d2).map(|e| w[2][e] * a2[e % d2]).collect();
    (vec![s1, s2, s3], r)
}

fn assert_close(got: &[f32], want: &[f64], factor: f64, rel: f64, what: &str) {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(*g) / factor;
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}[{i}]: got {g}, want {w} (scale {scale})"
        );
    }
}

#[test]
fn synflow_matches_closed_form_path_products() {
    let dims = [7, 5, 4, 3];
    // Tanh between layers would distort the path products: the linearised tape must make it
    // the identity.
    let model = Chain::new(&dims, false, Activation::Tanh, 3);
    let (want, r) = closed_form(&model, &dims);
    let exact = synflow_scores(&model, None, SynflowRescale::None).unwrap();
    assert_eq!(exact.log_scale, 0.0);
    assert!(
        (exact.objective - r).abs() <= 1e-5 * r,
        "{} vs {r}",
        exact.objective
    );
    let scaled = synflow_scores(&model, None, SynflowRescale::PerLayer).unwrap();
    let factor = scaled.log_scale.exp();
    for (l, want) in want.iter().enumerate() {
        let id = model.weight(l);
        assert_close(exact.scores.get(id), want, 1.0, 1e-5, "unscaled");
        assert_close(scaled.scores.get(id), want, factor, 1e-4, "rescaled");
    }
}

#[test]
fn synflow_zeroes_biases_and_respects_the_mask() {
    let dims = [6, 5, 4];
    let model = Chain::new(&dims, true, Activation::Relu, 4);
    let s = synflow_scores(&model, None, SynflowRescale::None).unwrap();
    // With biases zeroed, R = 1^T |W2||W1| 1.
    let w1 = abs(to_f64(model.store.value(model.weight(0))));
    let w2 = abs(to_f64(model.store.value(model.weight(1))));
    let r: f64 = matmul(&w2, &matmul(&w1, &[1.0; 6], 5, 6, 1), 4, 5, 1)
        .iter()
        .sum();
    assert!((s.objective - r).abs() <= 1e-5 * r);
    // A masked weight scores 0, and the rest match the masked closed form.
    let store = model.params();
    let mut masks = vec![None; store.len()];
    let mut m1 = vec![1.0f32; 30];
    m1[0] = 0.0;
    m1[7] = 0.0;
    masks[model.weight(0).0] = Some(Tensor::from_vec(m1, &[5, 6]).unwrap());
    let mask = ParamMask::new(store, masks).unwrap();
    let sm = synflow_scores(&model, Some(&mask), SynflowRescale::None).unwrap();
    let g = sm.scores.get(model.weight(0));
    assert_eq!((g[0], g[7]), (0.0, 0.0));
    assert!(g[1] > 0.0);
}

#[test]
fn per_layer_rescaling_keeps_the_ranking_on_chains_and_avoids_overflow() {
    // 6 layers of width 40: R ~ 40^7 * 0.5^6, finite in f32, so both modes run.
    let dims = [40; 7];
    let mut model = Chain::new(&dims, false, Activation::Relu, 5);
    model.set_weights(-1.0, 1.0, 6);
    let a = synflow_scores(&model, None, SynflowRescale::None).unwrap();
    let b = synflow_scores(&model, None, SynflowRescale::PerLayer).unwrap();
    let factor = b.log_scale.exp();
    for l in 0..6 {
        let want: Vec<f64> = a
            .scores
            .get(model.weight(l))
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        assert_close(b.scores.get(model.weight(l)), &want, factor, 1e-4, "ratio");
    }
    for d in [0.5, 0.1, 0.02] {
        let cfg = MaskConfig::global(d);
        let ma = mask_from_scores(model.params(), &a.scores, &cfg, None).unwrap();
        let mb = mask_from_scores(model.params(), &b.scores, &cfg, None).unwrap();
        let diff: usize = model
            .params()
            .iter()
            .filter_map(|(id, _)| Some((ma.get(id)?.to_vec(), mb.get(id)?.to_vec())))
            .map(|(x, y)| x.iter().zip(&y).filter(|(p, q)| p != q).count())
            .sum();
        // Only near-ties within f32 rounding may swap.
        assert!(diff <= 4, "{diff} coordinates differ at density {d}");
    }

    // 30 layers of width 64 with |w| ~ U[0, 3): R ~ 64^31 * 1.5^30 overflows f32.
    let deep = [64; 31];
    let mut model = Chain::new(&deep, false, Activation::Relu, 7);
    model.set_weights(-3.0, 3.0, 8);
    let err = synflow_scores(&model, None, SynflowRescale::None).unwrap_err();
    assert!(matches!(err, PruneError::NonFinite(_)), "{err}");
    let ok = synflow_scores(&model, None, SynflowRescale::PerLayer).unwrap();
    assert!(ok.objective.is_finite() && ok.log_scale < -100.0);
    assert!(ok.scores.values().iter().flatten().any(|&x| x > 0.0));
}

#[test]
fn synflow_with_one_round_equals_single_shot() {
    let model = Chain::new(&[12, 10, 8, 5], true, Activation::Tanh, 9);
    for rescale in [SynflowRescale::None, SynflowRescale::PerLayer] {
        let cfg = MaskConfig::global(0.3);
        let one = synflow_mask(&model, &SynflowConfig { rounds: 1, rescale }, &cfg).unwrap();
        let s = synflow_scores(&model, None, rescale).unwrap();
        let single = mask_from_scores(model.params(), &s.scores, &cfg, None).unwrap();
        assert_eq!(one, single);
    }
}

#[test]
fn iterative_synflow_reaches_the_density_and_differs_from_one_shot() {
    let model = Chain::new(&[30, 40, 40, 10], false, Activation::Relu, 10);
    let cfg = MaskConfig::global(0.05);
    let total: usize = model.params().num_scalars();
    let many = synflow_mask(&model, &SynflowConfig::default(), &cfg).unwrap();
    assert_eq!(
        kept(&many, model.params()).iter().flatten().sum::<usize>(),
        kept_count(0.05, total)
    );
    let again = synflow_mask(&model, &SynflowConfig::default(), &cfg).unwrap();
    assert_eq!(many, again, "SynFlow is deterministic");
    let one = synflow_mask(
        &model,
        &SynflowConfig {
            rounds: 1,
            ..SynflowConfig::default()
        },
        &cfg,
    )
    .unwrap();
    assert_ne!(many, one, "re-scoring must change the mask at 5% density");
    let err = synflow_mask(
        &model,
        &SynflowConfig {
            rounds: 0,
            ..SynflowConfig::default()
        },
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(err, PruneError::InvalidConfig(_)));
}

#[test]
fn synflow_on_the_tramer_boneh_cifar_cnn() {
    let model = TramerBonehCifar::new(1).unwrap();
    let cfg = MaskConfig::layer_wise(0.1);
    let mask = synflow_mask(
        &model,
        &SynflowConfig {
            rounds: 5,
            ..SynflowConfig::default()
        },
        &cfg,
    )
    .unwrap();
    for ((_, p), k) in model.params().iter().zip(kept(&mask, model.params())) {
        match p.role {
            ParamRole::Weight => assert_eq!(k, Some(kept_count(0.1, p.value.numel()).max(1))),
            _ => assert_eq!(k, None),
        }
    }
    // Max pooling is positively homogeneous, so the CNN is a chain: rescaling keeps the scores
    // proportional.
    let a = synflow_scores(&model, None, SynflowRescale::None).unwrap();
    let b = synflow_scores(&model, None, SynflowRescale::PerLayer).unwrap();
    let factor = b.log_scale.exp();
    for (id, p) in model.params().iter() {
        if p.role == ParamRole::Weight {
            let want: Vec<f64> = a.scores.get(id).iter().map(|&x| f64::from(x)).collect();
            assert_close(b.scores.get(id), &want, factor, 1e-3, &p.name);
        }
    }
}

fn public_batch(model: &dyn Model, n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let [c, h, w] = model.input_shape();
    let mut rng = TensorRng::seeded(seed);
    let x = Tensor::randn(&[n, c, h, w], 0.0, 1.0, &mut rng).unwrap();
    let labels = (0..n).map(|i| (i * 7 + 3) % model.num_classes()).collect();
    (x, labels)
}

#[test]
fn snip_matches_autograd_and_finite_differences() {
    let mut model = Chain::new(&[9, 8, 6, 4], true, Activation::Tanh, 11);
    let (x, labels) = public_batch(&model, 5, 12);
    let s = snip_scores(&model, &DataBatch::public(&x, &labels)).unwrap();
    let (grads, _) = batch_gradient(&model, &x, &labels).unwrap();
    for ((id, p), g) in model.params().iter().zip(&grads) {
        let want: Vec<f32> = p
            .value
            .to_vec()
            .iter()
            .zip(g.to_vec())
            .map(|(w, g)| (w * g).abs())
            .collect();
        assert_eq!(s.get(id), want.as_slice(), "{}", p.name);
    }
    // Central differences of the summed loss, in f64 over f32 evaluations.
    let loss = |m: &Chain| -> f64 {
        let (_, l) = batch_gradient(m, &x, &labels).unwrap();
        l.iter().map(|&v| f64::from(v)).sum()
    };
    let h = 1e-2f32;
    for l in 0..3 {
        let id = model.weight(l);
        for e in [0usize, 3, 11] {
            let w0 = model.store.value(id).to_vec();
            let mut plus = w0.clone();
            plus[e] += h;
            let mut minus = w0.clone();
            minus[e] -= h;
            let shape = model.store.value(id).shape().to_vec();
            model.store.get_mut(id).value = Tensor::from_vec(plus, &shape).unwrap();
            let lp = loss(&model);
            model.store.get_mut(id).value = Tensor::from_vec(minus, &shape).unwrap();
            let lm = loss(&model);
            model.store.get_mut(id).value = Tensor::from_vec(w0.clone(), &shape).unwrap();
            let fd = (f64::from(w0[e]) * (lp - lm) / (2.0 * f64::from(h))).abs();
            let got = f64::from(s.get(id)[e]);
            assert!(
                (got - fd).abs() <= 2e-3 + 2e-2 * fd,
                "layer {l} elem {e}: snip {got}, finite differences {fd}"
            );
        }
    }
}

#[test]
fn snip_refuses_private_data_with_a_clear_error() {
    let model = Chain::new(&[9, 8, 4], true, Activation::Tanh, 13);
    let (x, labels) = public_batch(&model, 4, 14);
    let batch = DataBatch::private(&x, &labels);
    assert_eq!(batch.provenance(), DataProvenance::Private);
    let err = snip_scores(&model, &batch).unwrap_err();
    assert!(
        matches!(err, PruneError::PrivateData { score: "snip" }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("PRIVATE") && msg.contains("snip"), "{msg}");
    // Through the configuration entry point too, and without data at all.
    let cfg = MaskConfig::global(0.5);
    let err = prune(&model, &PruneScore::Snip, &cfg, Some(&batch)).unwrap_err();
    assert!(matches!(err, PruneError::PrivateData { .. }));
    let err = prune(&model, &PruneScore::Snip, &cfg, None).unwrap_err();
    assert!(matches!(err, PruneError::InvalidConfig(_)));
    // Public data works through the same entry point.
    let public = DataBatch::public(&x, &labels);
    let m = prune(&model, &PruneScore::Snip, &cfg, Some(&public)).unwrap();
    assert!((m.density(model.params()) - 0.5).abs() < 0.1);
}

#[test]
fn magnitude_and_random_through_prune() {
    let model = Chain::new(&[9, 8, 4], true, Activation::Tanh, 15);
    let store = model.params();
    let s = magnitude_scores(store);
    for (id, p) in store.iter() {
        let want: Vec<f32> = p.value.to_vec().iter().map(|x| x.abs()).collect();
        assert_eq!(s.get(id), want.as_slice());
    }
    let cfg = MaskConfig::global(0.25);
    let a = prune(&model, &PruneScore::Random { seed: 3 }, &cfg, None).unwrap();
    let b = prune(&model, &PruneScore::Random { seed: 3 }, &cfg, None).unwrap();
    assert_eq!(a, b);
    let m = prune(&model, &PruneScore::Magnitude, &cfg, None).unwrap();
    assert_eq!(
        m,
        mask_from_scores(store, &magnitude_scores(store), &cfg, None).unwrap()
    );
    assert_eq!(PruneScore::Snip.name(), "snip");
    assert!(PruneScore::Snip.reads_data() && !PruneScore::Magnitude.reads_data());
}

#[test]
fn synflow_runs_on_wrn_16_4_with_standardisation_bypassed() {
    let model = WideResNet::new(WideResNetConfig::wrn16_4(), 1).unwrap();
    let cfg = MaskConfig::layer_wise(0.1);
    let s = synflow_scores(&model, None, SynflowRescale::PerLayer).unwrap();
    assert!(s.objective.is_finite() && s.objective > 0.0);
    // Every conv is weight-standardised in De et al.'s WRN; the linearised tape bypasses the
    // standardisation, so no layer is reported as transformed and the scores are path products.
    assert!(s.transformed.is_empty(), "{:?}", s.transformed);
    let mask = synflow_mask(
        &model,
        &SynflowConfig {
            rounds: 2,
            ..SynflowConfig::default()
        },
        &cfg,
    )
    .unwrap();
    for ((_, p), k) in model.params().iter().zip(kept(&mask, model.params())) {
        match p.role {
            ParamRole::Weight => assert_eq!(k, Some(kept_count(0.1, p.value.numel()).max(1))),
            _ => assert_eq!(k, None),
        }
    }
}

/// Closed-form Hessian-vector product of the summed cross-entropy of a bias-free linear model
/// `z_i = W x_i`: `H V = sum_i [(diag(p_i) - p_i p_i^T) (V x_i)] x_i^T`.
#[test]
fn grasp_matches_the_closed_form_hessian_vector_product() {
    let (d, k, b) = (6, 4, 8);
    let model = Chain::new(&[d, k], false, Activation::Tanh, 21);
    let (x, labels) = public_batch(&model, b, 22);
    let s = sparsedp_prune::grasp_scores(&model, &DataBatch::public(&x, &labels)).unwrap();
    let w = to_f64(model.store.value(model.weight(0)));
    let xs = to_f64(&x);
    let probs = |i: usize| -> Vec<f64> {
        let z: Vec<f64> = (0..k)
            .map(|r| (0..d).map(|c| w[r * d + c] * xs[i * d + c]).sum())
            .collect();
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let t: f64 = e.iter().sum();
        e.into_iter().map(|v| v / t).collect()
    };
    // g = sum_i (p_i - e_{y_i}) x_i^T
    let mut g = vec![0.0; k * d];
    for i in 0..b {
        let p = probs(i);
        for r in 0..k {
            let err = p[r] - if labels[i] == r { 1.0 } else { 0.0 };
            for c in 0..d {
                g[r * d + c] += err * xs[i * d + c];
            }
        }
    }
    let mut hg = vec![0.0; k * d];
    for i in 0..b {
        let p = probs(i);
        let u: Vec<f64> = (0..k)
            .map(|r| (0..d).map(|c| g[r * d + c] * xs[i * d + c]).sum())
            .collect();
        let pu: f64 = p.iter().zip(&u).map(|(a, b)| a * b).sum();
        for r in 0..k {
            let a = p[r] * u[r] - p[r] * pu;
            for c in 0..d {
                hg[r * d + c] += a * xs[i * d + c];
            }
        }
    }
    let want: Vec<f64> = w.iter().zip(&hg).map(|(w, h)| w * h).collect();
    assert_close(s.get(model.weight(0)), &want, 1.0, 2e-3, "grasp");
    // Signed: GraSP scores are not magnitudes.
    assert!(want.iter().any(|&v| v < 0.0) && want.iter().any(|&v| v > 0.0));

    let err = sparsedp_prune::grasp_scores(&model, &DataBatch::private(&x, &labels)).unwrap_err();
    assert!(
        matches!(err, PruneError::PrivateData { score: "grasp" }),
        "{err}"
    );
    let cfg = MaskConfig::global(0.5);
    let err = prune(&model, &PruneScore::Grasp, &cfg, None).unwrap_err();
    assert!(matches!(err, PruneError::InvalidConfig(_)));
    let m = prune(
        &model,
        &PruneScore::Grasp,
        &cfg,
        Some(&DataBatch::public(&x, &labels)),
    )
    .unwrap();
    assert_eq!(kept(&m, model.params())[model.weight(0).0], Some(12));
}
