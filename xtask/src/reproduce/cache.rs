//! The run cache: a run's directory is named by a hash of its resolved configuration, so a
//! finished run is found again by recomputing the hash, whatever suite asks for it.

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Hex digits of the hash used in directory names.
pub const SHORT: usize = 16;

/// SHA-256 (hex) of a resolved configuration (`sparsedp train ... --print-config`), with the
/// results directory's path replaced by a fixed token so that runs that start from another run
/// (`model.init_from`) hash the same wherever the results live.
pub fn config_hash(resolved: &str, results_dir: &str) -> String {
    let canonical = if results_dir.is_empty() {
        resolved.to_string()
    } else {
        resolved.replace(results_dir, "<results>")
    };
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory of the run with hash `hash` under `results`.
pub fn run_dir(results: &Path, hash: &str) -> PathBuf {
    results.join("runs").join(&hash[..SHORT.min(hash.len())])
}

/// What is on disk for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `summary.json` exists: finished.
    Done,
    /// A checkpoint but no summary: interrupted, resumable.
    Checkpoint,
    /// Nothing usable (absent, or a run that died before its first checkpoint).
    Fresh,
}

/// The state of the run in `dir`.
pub fn state(dir: &Path) -> State {
    if dir.join("summary.json").is_file() {
        State::Done
    } else if dir.join("checkpoint.safetensors").is_file() && dir.join("config.toml").is_file() {
        State::Checkpoint
    } else {
        State::Fresh
    }
}

/// Provenance written by xtask next to a run: the commit and machine it ran on and the command.
pub const META: &str = "xtask-run.json";

/// Reads `summary.json` of a finished run.
pub fn summary(dir: &Path) -> Result<Value> {
    let p = dir.join("summary.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Reads the provenance file of a run (absent for runs made by hand: `null`).
pub fn meta(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join(META))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_of_the_canonical_text() {
        // sha256("abc"), FIPS 180-2 example.
        assert_eq!(
            config_hash("abc", ""),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let a = config_hash("init_from = \"res/runs/x\"\n", "res");
        let b = config_hash("init_from = \"/abs/out/runs/x\"\n", "/abs/out");
        assert_eq!(a, b);
        assert_ne!(a, config_hash("init_from = \"res/runs/y\"\n", "res"));
        assert_eq!(
            run_dir(Path::new("r"), &a),
            Path::new("r").join("runs").join(&a[..16])
        );
    }

    #[test]
    fn state_follows_the_files_on_disk() {
        let dir = std::env::temp_dir().join(format!("xtask-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(state(&dir), State::Fresh);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
        assert_eq!(state(&dir), State::Fresh);
        std::fs::write(dir.join("checkpoint.safetensors"), "x").unwrap();
        assert_eq!(state(&dir), State::Fresh, "no config.toml: cannot resume");
        std::fs::write(dir.join("config.toml"), "").unwrap();
        assert_eq!(state(&dir), State::Checkpoint);
        std::fs::write(dir.join("summary.json"), "{\"test_accuracy\": 0.5}").unwrap();
        assert_eq!(state(&dir), State::Done);
        assert_eq!(summary(&dir).unwrap()["test_accuracy"], 0.5);
        assert_eq!(meta(&dir), Value::Null);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
