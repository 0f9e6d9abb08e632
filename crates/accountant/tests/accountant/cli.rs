//! The `dp-accountant` command line: golden numbers through the CLI, JSON output, and errors
//! printed with a non-zero exit status.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dp-accountant"))
        .args(args)
        .output()
        .expect("the dp-accountant binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

#[test]
fn epsilon_matches_opacus_through_the_cli() {
    let v = json(&[
        "epsilon", "--q", "0.04", "--sigma", "1.5", "--steps", "2250", "--delta", "1e-5",
        "--series", "signed", "--json",
    ]);
    let eps = v["epsilon"].as_f64().unwrap();
    assert!((eps - 7.32911117143).abs() < 1e-8, "{eps}");
    assert_eq!(v["order"].as_f64(), Some(3.9));
    assert_eq!(v["series"], "signed");
    // Human-readable output by default.
    let out = run(&[
        "epsilon", "--q", "0.04", "--sigma", "1.5", "--steps", "2250", "--delta", "1e-5",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("epsilon = 7.3293"), "{text}");
}

#[test]
fn sigma_and_steps_commands() {
    let v = json(&[
        "sigma",
        "--epsilon",
        "8",
        "--delta",
        "1e-5",
        "--q",
        "0.04",
        "--steps",
        "2250",
        "--series",
        "signed",
        "--json",
    ]);
    assert_eq!(v["sigma"].as_f64(), Some(1.416015625));
    // Epochs and sizes instead of steps and q: 90 epochs at q = 0.04 is 2250 steps.
    let w = json(&[
        "sigma",
        "--epsilon",
        "8",
        "--delta",
        "1e-5",
        "--batch-size",
        "2400",
        "--dataset-size",
        "60000",
        "--epochs",
        "90",
        "--series",
        "signed",
        "--json",
    ]);
    assert_eq!(w["steps"].as_u64(), Some(2250));
    assert_eq!(w["sigma"], v["sigma"]);
    let s = json(&[
        "steps",
        "--epsilon",
        "8",
        "--delta",
        "1e-5",
        "--q",
        "0.04",
        "--sigma",
        "1.5",
        "--json",
    ]);
    let steps = s["steps"].as_u64().unwrap();
    assert!(
        steps > 2250,
        "sigma 1.5 spends less than 8 in 2250 steps, so affords more"
    );
    assert!(s["epsilon"].as_f64().unwrap() <= 8.0);
}

#[test]
fn heterogeneous_phases_and_rdp_curve() {
    let v = json(&[
        "rdp",
        "--phase",
        "0.01:1.0:100",
        "--phase",
        "0.02:2.0:50",
        "--orders",
        "2,3.5,8",
        "--json",
    ]);
    assert_eq!(v["orders"].as_array().unwrap().len(), 3);
    assert_eq!(v["phases"].as_array().unwrap().len(), 2);
    let d = json(&[
        "delta",
        "--phase",
        "0.01:1.0:100",
        "--phase",
        "0.02:2.0:50",
        "--epsilon",
        "1",
        "--json",
    ]);
    let delta = d["delta"].as_f64().unwrap();
    assert!(delta > 0.0 && delta < 1.0);
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "epsilon", "--q", "1.5", "--sigma", "1", "--steps", "3", "--delta", "1e-5",
            ],
            "sampling rate",
        ),
        (
            &[
                "epsilon", "--q", "0.1", "--sigma", "-1", "--steps", "3", "--delta", "1e-5",
            ],
            "noise multiplier",
        ),
        (
            &[
                "epsilon", "--q", "0.1", "--sigma", "NaN", "--steps", "3", "--delta", "1e-5",
            ],
            "noise multiplier",
        ),
        (
            &[
                "epsilon", "--q", "0.1", "--sigma", "1", "--steps", "3", "--delta", "1",
            ],
            "delta",
        ),
        (
            &[
                "epsilon", "--q", "0.1", "--sigma", "1", "--steps", "3", "--delta", "1e-5",
                "--orders", "",
            ],
            "empty",
        ),
        (
            &["epsilon", "--phase", "0.1:1", "--delta", "1e-5"],
            "Q:SIGMA:STEPS",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr was {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn edge_order_warning_goes_to_stderr() {
    let out = run(&[
        "epsilon", "--q", "0.004", "--sigma", "1.1", "--steps", "15000", "--delta", "1e-5",
        "--orders", "2,3",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("largest"), "{err}");
}
