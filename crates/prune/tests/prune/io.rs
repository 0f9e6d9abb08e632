//! Checkpoints: round trip, typed errors, atomic writes.

use super::common::mixed_store;
use sparsedp_nn::{ParamRole, ParamStore};
use sparsedp_prune::io::{load_params_into, save_params};
use sparsedp_prune::{MaskConfig, PruneError, mask_from_scores, random_scores};
use sparsedp_tensor::Tensor;
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparsedp-prune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn zeroed(store: &ParamStore) -> ParamStore {
    let mut s = store.clone();
    for (_, p) in s.iter_mut() {
        p.value = Tensor::zeros(p.value.shape());
    }
    s
}

#[test]
fn round_trip_with_mask_and_extras() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("ckpt.safetensors");
    let store = mixed_store(21);
    let scores = random_scores(&store, 2).unwrap();
    let mask = mask_from_scores(&store, &scores, &MaskConfig::global(0.3), None).unwrap();
    let extra = vec![
        (
            "step".to_string(),
            Tensor::from_vec(vec![1234.0], &[1]).unwrap(),
        ),
        ("adam.m.fc2.weight".to_string(), Tensor::ones(&[10, 33])),
    ];
    save_params(&path, &store, Some(&mask), &extra).unwrap();
    // Overwriting works, and no temporary file is left behind.
    save_params(&path, &store, Some(&mask), &extra).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);

    let mut loaded = zeroed(&store);
    let out = load_params_into(&path, &mut loaded).unwrap();
    assert_eq!(loaded, store, "values must round-trip bit for bit");
    assert_eq!(out.mask.as_ref(), Some(&mask));
    // Biases and norm parameters had no mask and come back dense.
    for (id, p) in store.iter() {
        assert_eq!(
            out.mask.as_ref().unwrap().get(id).is_some(),
            p.role == ParamRole::Weight
        );
    }
    let mut want = extra.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.extra, want);

    // Without a mask.
    save_params(&path, &store, None, &[]).unwrap();
    let out = load_params_into(&path, &mut loaded).unwrap();
    assert!(out.mask.is_none() && out.extra.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_extra_and_misshaped_tensors_are_typed_errors() {
    let dir = temp_dir("errors");
    let path = dir.join("a.safetensors");
    let store = mixed_store(22);
    save_params(&path, &store, None, &[]).unwrap();

    // The model has a parameter the file lacks.
    let mut bigger = store.clone();
    bigger
        .add("head.weight", Tensor::ones(&[2, 2]), ParamRole::Weight)
        .unwrap();
    let before = bigger.clone();
    match load_params_into(&path, &mut bigger).unwrap_err() {
        PruneError::MissingTensor { name, .. } => assert_eq!(name, "head.weight"),
        e => panic!("wrong error {e}"),
    }
    assert_eq!(
        bigger, before,
        "a failed load must leave the store unchanged"
    );

    // The file has a tensor the model lacks.
    let mut smaller = ParamStore::new();
    for (_, p) in store.iter().filter(|(_, p)| p.name != "fc1.bias") {
        smaller
            .add(p.name.clone(), p.value.clone(), p.role)
            .unwrap();
    }
    match load_params_into(&path, &mut smaller).unwrap_err() {
        PruneError::UnexpectedTensor { name, .. } => assert_eq!(name, "fc1.bias"),
        e => panic!("wrong error {e}"),
    }

    // Shapes differ.
    let mut reshaped = ParamStore::new();
    for (_, p) in store.iter() {
        let v = if p.name == "conv3.weight" {
            Tensor::zeros(&[5, 16])
        } else {
            p.value.clone()
        };
        reshaped.add(p.name.clone(), v, p.role).unwrap();
    }
    let err = load_params_into(&path, &mut reshaped).unwrap_err();
    match &err {
        PruneError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "conv3.weight");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[5, 16][..], &[5, 16, 1, 1][..])
            );
        }
        e => panic!("wrong error {e}"),
    }
    assert!(err.to_string().contains("conv3.weight"));

    // Not a safetensors file; a missing file.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let mut s = store.clone();
    assert!(matches!(
        load_params_into(&junk, &mut s).unwrap_err(),
        PruneError::Format { .. }
    ));
    assert!(matches!(
        load_params_into(&dir.join("absent"), &mut s).unwrap_err(),
        PruneError::Io { .. }
    ));
    let bad_mask = dir.join("badmask.safetensors");
    let mut fake = store.clone();
    fake.add(
        "mask.conv1.weight",
        Tensor::full(&[8, 3, 3, 3], 0.5),
        ParamRole::Weight,
    )
    .unwrap();
    // Reserved prefixes are refused at save time...
    assert!(matches!(
        save_params(&bad_mask, &fake, None, &[]).unwrap_err(),
        PruneError::InvalidConfig(_)
    ));
    // ...and duplicate extra names too.
    let dup = vec![
        ("x".to_string(), Tensor::ones(&[1])),
        ("x".to_string(), Tensor::ones(&[1])),
    ];
    assert!(matches!(
        save_params(&bad_mask, &store, None, &dup).unwrap_err(),
        PruneError::InvalidConfig(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
