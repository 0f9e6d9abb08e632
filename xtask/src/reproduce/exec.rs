//! Running `sparsedp` as a subprocess: building it once, resolving configurations, training
//! runs (N at a time) with their output in the run directory.

use super::cache::{self, State};
use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// Builds `sparsedp` in release mode and returns the binary's path.
pub fn build_sparsedp(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo build --release -p sparsedp");
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "sparsedp"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p sparsedp failed ({status})");
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => {
            let out = Command::new(&cargo)
                .current_dir(root)
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .output()
                .context("running cargo metadata")?;
            if !out.status.success() {
                bail!("cargo metadata failed ({})", out.status);
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            PathBuf::from(
                v["target_directory"]
                    .as_str()
                    .context("cargo metadata: no target_directory")?,
            )
        }
    };
    let bin = target
        .join("release")
        .join(format!("sparsedp{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("built sparsedp but found no binary at {}", bin.display());
    }
    Ok(bin)
}

/// How to invoke the trainer.
#[derive(Debug, Clone)]
pub struct Trainer {
    /// The `sparsedp` binary.
    pub bin: PathBuf,
    /// Working directory of every run (the workspace root).
    pub cwd: PathBuf,
    /// `--data-dir`, if given.
    pub data_dir: Option<PathBuf>,
}

/// One training run to make.
#[derive(Debug, Clone)]
pub struct Job {
    /// Shown in progress lines.
    pub name: String,
    /// Preset.
    pub preset: String,
    /// Overrides (seed included).
    pub set: Vec<String>,
    /// Run directory.
    pub dir: PathBuf,
    /// Config hash.
    pub hash: String,
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Trainer {
    /// `train --preset P --set ...` (no run directory, data directory or flags).
    fn train_args(preset: &str, set: &[String]) -> Vec<String> {
        let mut a = vec!["train".to_string(), "--preset".into(), preset.into()];
        for s in set {
            a.push("--set".into());
            a.push(s.clone());
        }
        a
    }

    /// The resolved configuration (`--print-config`) of a run.
    pub fn resolve(&self, preset: &str, set: &[String]) -> Result<String> {
        let mut args = Self::train_args(preset, set);
        args.push("--print-config".into());
        let out = Command::new(&self.bin)
            .current_dir(&self.cwd)
            .args(&args)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "sparsedp rejected the configuration `{}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The full argument list of a run (`resume`: continue from its checkpoint).
    pub fn run_args(&self, job: &Job, resume: bool) -> Vec<String> {
        let mut a = if resume {
            vec!["train".to_string(), "--resume".into()]
        } else {
            Self::train_args(&job.preset, &job.set)
        };
        a.push("--run-dir".into());
        a.push(job.dir.display().to_string());
        if let Some(d) = &self.data_dir {
            a.push("--data-dir".into());
            a.push(d.display().to_string());
        }
        a.push("-q".into());
        a
    }

    /// The command a person can paste to make a run by hand (from the workspace root).
    pub fn command_line(&self, job: &Job) -> String {
        let bin = self
            .bin
            .strip_prefix(&self.cwd)
            .unwrap_or(&self.bin)
            .display()
            .to_string();
        std::iter::once(bin)
            .chain(self.run_args(job, false))
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Makes one run; its stdout and stderr go to `train.log` in the run directory.
    fn run_one(&self, job: &Job, meta: &serde_json::Value) -> Result<String> {
        let _lock = Lock::wait_for(&job.dir, &job.name)?;
        if cache::state(&job.dir) == State::Done {
            return Ok("found finished (made by another xtask)".into());
        }
        let resume = cache::state(&job.dir) == State::Checkpoint;
        if !resume {
            // Clear what a run that died before its first checkpoint left (not the lock).
            for e in std::fs::read_dir(&job.dir)? {
                let p = e?.path();
                if p.file_name().is_some_and(|n| n != LOCK) {
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p)?;
                    } else {
                        std::fs::remove_file(&p)?;
                    }
                }
            }
        }
        let mut meta = meta.clone();
        meta["config_hash"] = job.hash.clone().into();
        meta["command"] = self.command_line(job).into();
        meta["resumed"] = resume.into();
        std::fs::write(
            job.dir.join(cache::META),
            serde_json::to_string_pretty(&meta)?,
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(job.dir.join("train.log"))?;
        let status = Command::new(&self.bin)
            .current_dir(&self.cwd)
            .args(self.run_args(job, resume))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !status.success() {
            let text = std::fs::read_to_string(job.dir.join("train.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            bail!(
                "{status}; {} (log: {})",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                job.dir.join("train.log").display()
            );
        }
        if cache::state(&job.dir) != State::Done {
            bail!("sparsedp exited 0 but wrote no summary.json");
        }
        Ok(if resume { "resumed" } else { "ran" }.to_string())
    }

    /// Runs `jobs`, `parallel` at a time; returns the failures (name, error).
    pub fn run_all(
        &self,
        jobs: Vec<Job>,
        parallel: usize,
        meta: &serde_json::Value,
    ) -> Vec<(String, String)> {
        let total = jobs.len();
        let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..parallel.max(1).min(total.max(1)) {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                        let Some((i, job)) = next else { break };
                        eprintln!("xtask: [{}/{total}] start {}", i + 1, job.name);
                        let t = Instant::now();
                        match self.run_one(&job, meta) {
                            Ok(how) => {
                                let acc = cache::summary(&job.dir)
                                    .ok()
                                    .and_then(|v| v["test_accuracy"].as_f64())
                                    .map(|a| format!("{:.2}%", 100.0 * a))
                                    .unwrap_or_default();
                                eprintln!(
                                    "xtask: [{}/{total}] {how} {}: {acc} in {:.0} s",
                                    i + 1,
                                    job.name,
                                    t.elapsed().as_secs_f64()
                                );
                            }
                            Err(e) => {
                                eprintln!("xtask: [{}/{total}] FAILED {}: {e:#}", i + 1, job.name);
                                if let Ok(mut f) = failures.lock() {
                                    f.push((job.name.clone(), format!("{e:#}")));
                                }
                            }
                        }
                    }
                });
            }
        });
        failures.into_inner().unwrap_or_default()
    }
}

/// Name of the lock file in a run directory.
const LOCK: &str = "xtask.lock";

/// A run directory taken by this process (two `cargo xtask reproduce` at once never train the
/// same run); released on drop. A lock whose process is gone is taken over.
struct Lock(PathBuf);

impl Lock {
    /// Takes the lock, waiting while another live xtask holds it.
    fn wait_for(dir: &Path, name: &str) -> Result<Lock> {
        let mut told = false;
        loop {
            match Lock::take(dir) {
                Ok(l) => return Ok(l),
                Err(e) if e.to_string().contains("being trained by another xtask") => {
                    if !told {
                        eprintln!("xtask: waiting: {name} is being trained by another xtask");
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn take(dir: &Path) -> Result<Lock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write as _;
                    write!(f, "{}", std::process::id())?;
                    return Ok(Lock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).unwrap_or_default();
                    let alive =
                        !pid.trim().is_empty() && Path::new("/proc").join(pid.trim()).exists();
                    if alive {
                        bail!(
                            "{} is being trained by another xtask (pid {}); if it is not, \
                             remove {}",
                            dir.display(),
                            pid.trim(),
                            path.display()
                        );
                    }
                    std::fs::remove_file(&path)?;
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("could not take {}", path.display())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The models `sparsedp info` lists.
pub fn models(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new(bin)
        .arg("info")
        .output()
        .context("running sparsedp info")?;
    if !out.status.success() {
        bail!(
            "sparsedp info failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_models(&String::from_utf8_lossy(&out.stdout)))
}

/// The names under `models:` in `sparsedp info` output.
pub fn parse_models(info: &str) -> Vec<String> {
    let mut in_models = false;
    let mut out = Vec::new();
    for line in info.lines() {
        if !line.starts_with(' ') {
            in_models = line.trim_end() == "models:";
            continue;
        }
        if in_models && let Some(name) = line.split_whitespace().next() {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_pasteable() {
        assert_eq!(shell_quote("privacy.epsilon=3"), "privacy.epsilon=3");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("x=\"s\""), "'x=\"s\"'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        let t = Trainer {
            bin: PathBuf::from("/ws/target/release/sparsedp"),
            cwd: PathBuf::from("/ws"),
            data_dir: Some(PathBuf::from("data")),
        };
        let job = Job {
            name: "n".into(),
            preset: "tb-mnist".into(),
            set: vec!["privacy.epsilon=3".into(), "training.seed=1".into()],
            dir: PathBuf::from("results/runs/abc"),
            hash: "abc".into(),
        };
        assert_eq!(
            t.command_line(&job),
            "target/release/sparsedp train --preset tb-mnist --set privacy.epsilon=3 \
             --set training.seed=1 --run-dir results/runs/abc --data-dir data -q"
        );
        assert_eq!(
            t.run_args(&job, true)[..4],
            ["train", "--resume", "--run-dir", "results/runs/abc"]
        );
    }

    #[test]
    fn a_run_directory_is_locked_once() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lock = Lock::take(&dir).unwrap();
        let e = Lock::take(&dir).err().unwrap().to_string();
        assert!(e.contains("another xtask"), "{e}");
        drop(lock);
        assert!(!dir.join(LOCK).exists());
        // A lock left by a process that no longer exists is taken over.
        std::fs::write(dir.join(LOCK), "4294967295").unwrap();
        let again = Lock::take(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn models_are_read_from_info() {
        let info = "sparsedp 0.1.0\ndata directory: x\n  mnist found\nmodels:\n  tb-mnist     \
                    Tramer\n  tb-cifar10   CNN\npresets:\n  default  x\n";
        assert_eq!(parse_models(info), vec!["tb-mnist", "tb-cifar10"]);
    }
}
