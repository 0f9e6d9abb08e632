//! The clipping engines on the wgpu backend against the CPU: per-example norms, clip factors,
//! losses and clipped sums of every engine, with parameters, masks and data on the GPU, match the
//! CPU naive reference (relative error 1e-3: the GPU sums in a different order). Skips with a
//! message when no wgpu adapter exists; CI runs it on lavapipe.

use super::common::{TinyGnNet, batch, random_weight_mask, rel_err};
use sparsedp_nn::models::{TramerBonehCifar, TramerBonehMnist};
use sparsedp_nn::{ClipConfig, Engine, Model, ParamMask, clip_batch};
use sparsedp_tensor::{Device, Tensor};

const TOL: f64 = 1e-3;

fn gpu_ready() -> bool {
    match Tensor::zeros(&[1]).to_device(Device::Wgpu) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: no wgpu device ({e})");
            false
        }
    }
}

fn cpu(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).unwrap()
}

/// Runs every engine on the GPU copy of `model` and compares with the CPU naive engine.
fn check_on_gpu(model: &mut dyn Model, n: usize, keep: f32) {
    let (x, y) = batch(&*model, n, 3);
    let mask = random_weight_mask(model.params(), keep, 4);
    // Clip at about the median norm so both clipped and unclipped examples occur.
    let probe = clip_batch(
        Engine::Naive,
        &*model,
        &x,
        &y,
        &mask,
        &ClipConfig::flat(1e6),
    )
    .unwrap();
    let mut norms = probe.norms.clone();
    norms.sort_by(f32::total_cmp);
    let cfg = ClipConfig {
        chunk: 3,
        ..ClipConfig::flat(norms[n / 2])
    };
    let reference = clip_batch(Engine::Naive, &*model, &x, &y, &mask, &cfg).unwrap();

    model.params_mut().to_device(Device::Wgpu).unwrap();
    let (gx, gmask) = (
        x.to_device(Device::Wgpu).unwrap(),
        mask.to_device(Device::Wgpu).unwrap(),
    );
    for engine in Engine::ALL {
        let out = clip_batch(engine, &*model, &gx, &y, &gmask, &cfg)
            .unwrap_or_else(|e| panic!("{} on wgpu: {e}", engine.name()));
        let name = engine.name();
        let v = |a: &[f32]| Tensor::from_slice(a, &[a.len()]).unwrap();
        let e = rel_err(&v(&out.norms), &v(&reference.norms));
        assert!(e < TOL, "{name}: norms differ by {e:e}");
        let e = rel_err(&v(&out.factors), &v(&reference.factors));
        assert!(e < TOL, "{name}: clip factors differ by {e:e}");
        let e = rel_err(&v(&out.losses), &v(&reference.losses));
        assert!(e < TOL, "{name}: losses differ by {e:e}");
        for (id, p) in model.params().iter() {
            let g = &out.clipped_sum[id.0];
            assert_eq!(g.device(), Device::Wgpu, "{name}: {} left the GPU", p.name);
            let e = rel_err(&cpu(g), &reference.clipped_sum[id.0]);
            assert!(
                e < TOL,
                "{name}: clipped sum of {} differs by {e:e}",
                p.name
            );
            if let Some(m) = mask.get(id) {
                for (g, keep) in cpu(g).to_vec().iter().zip(m.to_vec()) {
                    assert!(
                        keep == 1.0 || *g == 0.0,
                        "{name}: masked coordinate of {} is {g}",
                        p.name
                    );
                }
            }
        }
    }
    model.params_mut().to_device(Device::Cpu).unwrap();
}

#[test]
fn engines_on_wgpu_match_the_cpu_on_tramer_boneh_mnist() {
    if !gpu_ready() {
        return;
    }
    let mut model = TramerBonehMnist::new(1).unwrap();
    check_on_gpu(&mut model, 6, 0.5);
}

#[test]
fn engines_on_wgpu_match_the_cpu_on_tramer_boneh_cifar() {
    if !gpu_ready() {
        return;
    }
    let mut model = TramerBonehCifar::new(2).unwrap();
    check_on_gpu(&mut model, 4, 0.7);
}

#[test]
fn engines_on_wgpu_match_the_cpu_with_group_norm() {
    if !gpu_ready() {
        return;
    }
    let mut model = TinyGnNet::new(5);
    check_on_gpu(&mut model, 5, 1.0);
}

#[test]
fn a_mask_on_another_device_is_an_error_not_a_copy() {
    if !gpu_ready() {
        return;
    }
    let mut model = TramerBonehMnist::new(1).unwrap();
    let (x, y) = batch(&model, 2, 3);
    let mask = ParamMask::dense(model.params());
    model.params_mut().to_device(Device::Wgpu).unwrap();
    // Data on the CPU, parameters on the GPU.
    assert!(
        clip_batch(
            Engine::BookKeeping,
            &model,
            &x,
            &y,
            &mask,
            &ClipConfig::flat(1.0)
        )
        .is_err()
    );
}
