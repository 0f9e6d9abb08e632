//! The `sparsedp` binary: invalid configurations fail clearly; a NaN loss stops the run;
//! kill -9 then `--resume` finishes with the same weights and epsilon as an uninterrupted run.

use super::e2e::{load_model, tempdir};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sparsedp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsedp"))
        .args(args)
        .output()
        .expect("the sparsedp binary runs")
}

#[test]
fn invalid_configurations_fail_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "privacy.epsilon=0"], "privacy.epsilon"),
        (&["--set", "privacy.epsilon=-1"], "privacy.epsilon"),
        (&["--set", "privacy.delta=1"], "privacy.delta"),
        (&["--set", "training.batch_size=5000"], "exceeds"),
        (&["--set", "training.lr=-0.1"], "training.lr"),
        (&["--set", "model.name=resnet-9000"], "unknown model"),
        (&["--set", "pruning.density=0"], "pruning.density"),
        (&["--set", "pruning.density=1.5"], "pruning.density"),
        (&["--set", "training.bogus=1"], "bogus"),
        (
            &[
                "--set",
                "data.dataset=cifar10",
                "--data-dir",
                "/nonexistent-sparsedp",
            ],
            "cargo xtask data",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["train", "--print-config"];
        all.extend_from_slice(args);
        let out = sparsedp(&all);
        // --print-config validates too; the dataset case fails at load time instead.
        let out = if out.status.success() {
            let mut run = vec!["train", "-q", "--run-dir"];
            let dir = tempdir("invalid");
            let d = dir.to_str().unwrap().to_string();
            run.push(Box::leak(d.into_boxed_str()));
            run.extend_from_slice(args);
            sparsedp(&run)
        } else {
            out
        };
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr was: {err}");
    }
    // Unknown keys in a config file are named.
    let dir = tempdir("badtoml");
    let f = dir.join("bad.toml");
    std::fs::write(&f, "[training]\nepochs = 1\nlearning_rate = 0.1\n").unwrap();
    let out = sparsedp(&["train", "--config", f.to_str().unwrap(), "--print-config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("learning_rate"));
}

#[test]
fn a_diverging_run_stops_with_a_message() {
    let dir = tempdir("nan");
    let out = sparsedp(&[
        "train",
        "-q",
        "--run-dir",
        dir.to_str().unwrap(),
        "--set",
        "privacy.enabled=false",
        "--set",
        "training.lr=3e38",
        "--set",
        "training.epochs=1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("instead of training on garbage"), "{err}");
}

fn params(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (store, _) = load_model(dir);
    store
        .iter()
        .map(|(_, p)| (p.name.clone(), p.value.to_vec()))
        .collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn kill_dash_nine_then_resume_matches_an_uninterrupted_run() {
    let common = [
        "--set",
        "training.epochs=1.5",
        "--set",
        "output.checkpoint_every=3",
        "--set",
        "pruning.score=random",
        "--set",
        "pruning.density=0.5",
        "--set",
        "selection.selector=random",
        "--set",
        "selection.rate=0.5",
        "--set",
        "training.ema_decay=0.9",
    ];
    let a = tempdir("resume-a");
    let mut args = vec!["train", "-q", "--run-dir", a.to_str().unwrap()];
    args.extend_from_slice(&common);
    assert!(sparsedp(&args).status.success());

    let b = tempdir("resume-b");
    let mut args = vec!["train", "-q", "--run-dir", b.to_str().unwrap()];
    args.extend_from_slice(&common);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparsedp"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = b.join("checkpoint.safetensors");
    let start = Instant::now();
    while !ckpt.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !b.join("summary.json").exists(),
        "the run finished before it was killed"
    );
    // Whatever the moment of the kill, the checkpoint on disk is complete.
    let mut probe = sparsedp::models::build("tb-mnist", 0).unwrap();
    sparsedp_prune::io::load_params_into(&ckpt, probe.params_mut()).expect("a complete checkpoint");

    let out = sparsedp(&["train", "-q", "--resume", "--run-dir", b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        params(&a),
        params(&b),
        "resumed weights differ from the uninterrupted run"
    );
    let (sa, sb) = (summary(&a), summary(&b));
    assert_eq!(sa["epsilon"], sb["epsilon"]);
    assert_eq!(sa["steps"], sb["steps"]);
    assert_eq!(sa["test_accuracy"], sb["test_accuracy"]);
}
