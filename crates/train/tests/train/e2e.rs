//! End to end through the library: a few DP steps with pruning and selection; the epsilon
//! reported equals the accountant's for the steps taken; masked coordinates never change; noise
//! goes to active coordinates only.

use sparsedp::trainer::{self, RunOptions, privatize};
use sparsedp::{TrainConfig, models};
use sparsedp_accountant::{FractionalSeries, Orders, Phase, RdpCurve};
use sparsedp_nn::{ParamMask, ParamRole};
use sparsedp_tensor::{Tensor, TensorRng};

fn small_config() -> TrainConfig {
    let mut cfg = TrainConfig::default();
    cfg.training.epochs = 0.25; // ceil(0.25 / 0.064) = 4 steps
    cfg.training.batch_size = 256;
    cfg.training.physical_batch = 100; // several chunks per step
    cfg.output.progress = false;
    cfg.pruning.score = "random".into();
    cfg.pruning.density = 0.5;
    cfg.selection.selector = "random".into();
    cfg.selection.rate = 0.5;
    cfg
}

#[test]
fn epsilon_masks_and_steps_are_as_accounted() {
    let dir = tempdir("e2e");
    let cfg = small_config();
    let init = models::build(&cfg.model.name, cfg.model.seed).unwrap();
    let summary = trainer::train(&cfg, &dir, &RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 4);
    assert_eq!(summary.steps, summary.planned_steps);
    assert!(summary.stopped_early.is_none());

    // Epsilon equals an independent accountant's for the steps taken.
    let q = 256.0 / 4000.0;
    let sigma = summary.sigma.unwrap();
    let expected = RdpCurve::of_phase(
        &Orders::opacus(),
        Phase::new(q, sigma, summary.steps).unwrap(),
        FractionalSeries::AbsoluteBound,
    )
    .unwrap()
    .epsilon(summary.delta.unwrap())
    .unwrap()
    .epsilon;
    let got = summary.epsilon.unwrap();
    assert!(
        (got - expected).abs() <= 1e-9 * expected,
        "{got} vs {expected}"
    );
    assert!(got <= 3.0);

    // Pruned coordinates never changed; unpruned weights did.
    let (trained, mask) = load_model(&dir);
    let mut pruned_seen = 0usize;
    let mut moved = 0usize;
    for (id, p) in init.params().iter() {
        let now = trained.value(id).to_vec();
        let before = p.value.to_vec();
        match mask.get(id) {
            Some(mask) => {
                assert_eq!(p.role, ParamRole::Weight, "only weights are pruned");
                for ((m, a), b) in mask.to_vec().iter().zip(&now).zip(&before) {
                    if *m == 0.0 {
                        assert_eq!(a, b, "pruned coordinate of {} changed", p.name);
                        pruned_seen += 1;
                    } else if a != b {
                        moved += 1;
                    }
                }
            }
            None => assert_ne!(p.role, ParamRole::Weight, "{} has no mask", p.name),
        }
    }
    assert!(pruned_seen > 10_000, "about half of 26k weights are pruned");
    assert!(moved > 1_000, "trainable weights moved");

    // Metrics: one line per step with the running epsilon, then the final line.
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let eps: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["epsilon"].as_f64().unwrap())
        .collect();
    assert_eq!(eps.len(), 4);
    assert!(
        eps.windows(2).all(|w| w[0] < w[1]),
        "epsilon grows with steps: {eps:?}"
    );
    assert_eq!(*eps.last().unwrap(), got);
}

#[test]
fn zero_pruned_weights_start_and_stay_at_zero() {
    let dir = tempdir("zero");
    let mut cfg = small_config();
    cfg.pruning.zero_pruned = true;
    cfg.training.epochs = 0.1;
    trainer::train(&cfg, &dir, &RunOptions::default()).unwrap();
    let (trained, masks) = load_model(&dir);
    let mut zeros = 0usize;
    for (id, p) in trained.iter() {
        let Some(mask) = masks.get(id) else { continue };
        for (m, v) in mask.to_vec().iter().zip(p.value.to_vec()) {
            if *m == 0.0 {
                assert_eq!(v, 0.0, "pruned weight of {} is {v}", p.name);
                zeros += 1;
            }
        }
    }
    assert!(zeros > 10_000);
}

#[test]
fn noise_goes_to_active_coordinates_only() {
    let shape = [50, 40];
    let sums = vec![Tensor::zeros(&shape)];
    let mut store = sparsedp_nn::ParamStore::new();
    store
        .add("w", Tensor::zeros(&shape), ParamRole::Weight)
        .unwrap();
    let keep: Vec<f32> = (0..2000).map(|i| f32::from(i % 3 == 0)).collect();
    let mask = ParamMask::new(
        &store,
        vec![Some(Tensor::from_vec(keep.clone(), &shape).unwrap())],
    )
    .unwrap();
    let (sigma, c, b) = (2.0, 0.5f32, 10.0f32);
    let g = privatize(&sums, &mask, sigma, c, b, &mut TensorRng::seeded(1)).unwrap();
    let v = g[0].to_vec();
    let active: Vec<f32> = v
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k == 1.0)
        .map(|(x, _)| *x)
        .collect();
    assert!(
        v.iter().zip(&keep).all(|(x, k)| *k == 1.0 || *x == 0.0),
        "noise on an inactive coordinate"
    );
    // Active coordinates carry N(0, (sigma C / B)^2): std 0.1.
    let n = active.len() as f64;
    let var = active.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n;
    assert!((var.sqrt() - 0.1).abs() < 0.01, "noise std {}", var.sqrt());
    assert!(active.iter().all(|&x| x != 0.0));
}

#[test]
fn non_private_mode_trains_without_accounting() {
    let dir = tempdir("nonpriv");
    let mut cfg = small_config();
    cfg.privacy.enabled = false;
    cfg.pruning.score = "none".into();
    cfg.selection.selector = "none".into();
    cfg.training.lr = 0.1;
    cfg.training.epochs = 1.0;
    let s = trainer::train(&cfg, &dir, &RunOptions::default()).unwrap();
    assert_eq!(s.epsilon, None);
    assert_eq!(s.sigma, None);
    assert!(s.test_accuracy > 0.5, "{}", s.test_accuracy);
}

/// The trained parameters and the pruning mask stored in a run directory's model file.
pub fn load_model(dir: &std::path::Path) -> (sparsedp_nn::ParamStore, ParamMask) {
    let mut model = models::build("tb-mnist", 0).unwrap();
    let mask = trainer::load_weights(dir, model.as_mut()).unwrap();
    (model.params().clone(), mask)
}

pub fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sparsedp-test-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn training_on_the_public_split_uses_only_it() {
    let dir = tempdir("public");
    let mut cfg = small_config();
    cfg.data.public_fraction = 0.25;
    cfg.data.train_on = "public".into();
    cfg.privacy.enabled = false;
    cfg.pruning.score = "none".into();
    cfg.selection.selector = "none".into();
    let s = trainer::train(&cfg, &dir, &RunOptions::default()).unwrap();
    assert_eq!(
        s.train_examples, 1000,
        "a quarter of the 4,000 training examples"
    );
    cfg.data.public_fraction = 0.0;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("public_fraction")
    );
}

#[test]
fn a_fixed_sigma_run_stops_before_exceeding_its_epsilon_cap() {
    let dir = tempdir("cap");
    let mut cfg = small_config();
    cfg.training.epochs = 2.0; // 32 steps planned
    cfg.privacy.noise_multiplier = Some(0.8);
    cfg.privacy.epsilon = Some(2.0);
    let s = trainer::train(&cfg, &dir, &RunOptions::default()).unwrap();
    let eps = s.epsilon.unwrap();
    assert!(
        s.steps < s.planned_steps,
        "{} of {} steps",
        s.steps,
        s.planned_steps
    );
    assert!(
        s.stopped_early
            .as_deref()
            .unwrap()
            .contains("would spend epsilon")
    );
    assert!(eps <= 2.0, "spent {eps}");
    // One more step would have exceeded the cap.
    let next = RdpCurve::of_phase(
        &Orders::opacus(),
        Phase::new(256.0 / 4000.0, 0.8, s.steps + 1).unwrap(),
        FractionalSeries::AbsoluteBound,
    )
    .unwrap()
    .epsilon(s.delta.unwrap())
    .unwrap()
    .epsilon;
    assert!(next > 2.0, "step {} would spend {next}", s.steps + 1);
}

#[test]
fn delta_defaults_below_one_over_n() {
    assert_eq!(trainer::default_delta(4_000), 1e-5);
    assert_eq!(trainer::default_delta(60_000), 1e-5);
    let n = 500_000;
    let d = trainer::default_delta(n);
    assert!(d < 1.0 / n as f64 && d == 0.1 / n as f64);
}

#[test]
fn training_on_wgpu_matches_training_on_the_cpu() {
    if let Err(e) = sparsedp_tensor::Device::from_name("wgpu") {
        eprintln!("skipping: no wgpu device ({e})");
        return;
    }
    let mut cfg = small_config();
    cfg.training.device = "cpu".into();
    let cpu_dir = tempdir("device-cpu");
    let on_cpu = trainer::train(&cfg, &cpu_dir, &RunOptions::default()).unwrap();
    cfg.training.device = "wgpu".into();
    let gpu_dir = tempdir("device-wgpu");
    let on_gpu = trainer::train(&cfg, &gpu_dir, &RunOptions::default()).unwrap();
    assert!(on_gpu.device.starts_with("wgpu: "), "{}", on_gpu.device);
    assert!(on_cpu.device.starts_with("cpu"), "{}", on_cpu.device);
    // Same plan, same accounting, same noise stream: only the gradients' rounding differs.
    assert_eq!(on_gpu.steps, on_cpu.steps);
    assert_eq!(on_gpu.epsilon, on_cpu.epsilon);
    let (a, mask) = load_model(&cpu_dir);
    let (b, _) = load_model(&gpu_dir);
    for (id, p) in a.iter() {
        let (x, y) = (p.value.to_vec(), b.value(id).to_vec());
        let scale = x.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-3);
        let worst = x
            .iter()
            .zip(&y)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-3 * scale,
            "{}: differs by {worst} (scale {scale})",
            p.name
        );
        if let Some(m) = mask.get(id) {
            // Frozen coordinates are bit-identical: both runs never touch them.
            for ((u, v), k) in x.iter().zip(&y).zip(m.to_vec()) {
                assert!(k == 1.0 || u == v, "{}: frozen coordinate moved", p.name);
            }
        }
    }
    assert!((on_gpu.test_accuracy - on_cpu.test_accuracy).abs() <= 0.01);
}
