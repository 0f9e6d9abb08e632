//! Suite files (`xtask/suites/<name>.toml`): a declared grid of `sparsedp train` runs, and its
//! expansion into cells for one profile.
//!
//! A cell's configuration is built from, in order (later overrides win): the preset, the
//! suite's `set`, the profile's `set`, each axis value's `set` (axes in file order), then the
//! seed (`training.seed` and `model.seed`). Pretraining runs (`[[pretrain]]`) are referred to
//! from a cell's overrides as `@NAME` and replaced by their run directory.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A suite as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// One line on what the suite measures.
    pub description: String,
    /// Preset used when no axis value names one.
    #[serde(default)]
    pub preset: Option<String>,
    /// Overrides applied to every cell.
    #[serde(default)]
    pub set: Vec<String>,
    /// Models the suite needs; checked against `sparsedp info` before anything runs.
    #[serde(default)]
    pub requires_models: Vec<String>,
    /// Profiles by name (`quick`, `full`).
    pub profile: BTreeMap<String, Profile>,
    /// The grid's axes, in the order their overrides apply.
    pub axis: Vec<Axis>,
    /// Runs other cells start from (`model.init_from = "@NAME"`).
    #[serde(default)]
    pub pretrain: Vec<Pretrain>,
    /// Layout of the Markdown table.
    pub table: TableSpec,
    /// Plots to draw.
    #[serde(default)]
    pub plot: Vec<PlotSpec>,
    /// Published numbers shown next to ours.
    #[serde(default)]
    pub reference: Vec<Reference>,
    /// Cells compared against: e.g. `{ density = "1.0" }` compares every cell with the cell of
    /// the same labels but density 1.0 (difference of means and Welch's t).
    #[serde(default)]
    pub compare_to: Option<BTreeMap<String, String>>,
}

/// `[profile.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Seeds of every cell (each sets `training.seed` and `model.seed`).
    pub seeds: Vec<u64>,
    /// Overrides applied to every cell and pretraining run of this profile.
    #[serde(default)]
    pub set: Vec<String>,
    /// Labels kept per axis in this profile (an axis not named keeps all its values).
    #[serde(default)]
    pub only: BTreeMap<String, Vec<String>>,
}

/// `[[axis]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// Name used by the table, plots, profiles and references.
    pub name: String,
    /// Config key set by scalar values (`privacy.epsilon`).
    #[serde(default)]
    pub key: Option<String>,
    /// The values: a number or string (`key = value`) or a table `{ label, set, preset }`.
    pub values: Vec<RawValue>,
}

/// An axis value as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    /// `{ label = "non-private", set = ["privacy.enabled=false"] }`
    Full(ValueSpec),
    /// `3` or `"magnitude"`: sets the axis key.
    Scalar(toml::Value),
}

/// A value with explicit overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// Shown in tables and plots.
    pub label: String,
    /// Overrides.
    #[serde(default)]
    pub set: Vec<String>,
    /// Preset of cells with this value.
    #[serde(default)]
    pub preset: Option<String>,
}

/// `[[pretrain]]`: a run that cells start from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pretrain {
    /// Referred to as `@NAME`.
    pub name: String,
    /// The cells this run serves, by label (e.g. `{ dataset = "mnist" }`): several runs may
    /// share a name, and a cell's `@NAME` picks the one whose labels it has.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
    /// Preset.
    pub preset: String,
    /// Overrides (after the profile's).
    #[serde(default)]
    pub set: Vec<String>,
}

/// `[table]`: which axis gives the rows and which the columns; the other axes give one table
/// each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Row axis.
    pub rows: String,
    /// Column axis.
    pub columns: String,
}

/// `[[plot]]`: accuracy against a numeric axis, one line per value of `series`; the other
/// axes give one figure each. Non-numeric x values (e.g. `non-private`) are drawn as
/// horizontal dashed lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// Numeric axis on x.
    pub x: String,
    /// One line per value of this axis.
    pub series: String,
}

/// `[[reference]]`: a published number, matched to cells by labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Axis name -> label, e.g. `{ dataset = "mnist", epsilon = "3" }`.
    pub at: BTreeMap<String, String>,
    /// Test accuracy in percent.
    pub accuracy: f64,
    /// Where it comes from.
    pub source: String,
}

/// One resolved axis value.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Label.
    pub label: String,
    /// Overrides.
    pub set: Vec<String>,
    /// Preset.
    pub preset: Option<String>,
}

/// One point of the grid (all seeds).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Axis name -> label, in axis order.
    pub labels: Vec<(String, String)>,
    /// Preset.
    pub preset: String,
    /// Overrides, seed excluded.
    pub set: Vec<String>,
}

impl Cell {
    /// The label of axis `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, l)| l.as_str())
    }

    /// Overrides of one seed.
    pub fn seeded(&self, seed: u64) -> Vec<String> {
        let mut s = self.set.clone();
        s.push(format!("training.seed={seed}"));
        s.push(format!("model.seed={seed}"));
        s
    }
}

/// A suite expanded for one profile.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Cells in grid order (first axis slowest).
    pub cells: Vec<Cell>,
    /// Seeds of every cell.
    pub seeds: Vec<u64>,
    /// Pretraining runs.
    pub pretrain: Vec<PretrainRun>,
    /// Axis names and their kept labels, in order.
    pub axes: Vec<(String, Vec<String>)>,
}

/// A pretraining run of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainRun {
    /// `@NAME`.
    pub name: String,
    /// Cells it serves.
    pub when: BTreeMap<String, String>,
    /// Preset.
    pub preset: String,
    /// Overrides (profile's, then its own).
    pub set: Vec<String>,
}

impl PretrainRun {
    /// Whether `cell` may use this run.
    pub fn serves(&self, cell: &Cell) -> bool {
        self.when
            .iter()
            .all(|(a, l)| cell.label(a) == Some(l.as_str()))
    }
}

/// The index of the pretraining run `name` that serves `cell`.
pub fn pretrain_for(pretrain: &[PretrainRun], cell: &Cell, name: &str) -> Result<usize> {
    let hits: Vec<usize> = (0..pretrain.len())
        .filter(|&i| pretrain[i].name == name && pretrain[i].serves(cell))
        .collect();
    match hits[..] {
        [i] => Ok(i),
        [] => bail!(
            "cell {:?} refers to pretraining run '@{name}', but none declared serves it",
            cell.labels
        ),
        _ => bail!(
            "cell {:?}: several pretraining runs named '{name}' serve it",
            cell.labels
        ),
    }
}

impl Plan {
    /// Keeps only the cells whose `axis` label is in `labels` (`--only`).
    pub fn restrict(&mut self, axis: &str, labels: &[String]) -> Result<()> {
        let (_, have) = self
            .axes
            .iter_mut()
            .find(|(n, _)| n == axis)
            .with_context(|| format!("no axis '{axis}' in this suite"))?;
        for l in labels {
            if !have.contains(l) {
                bail!(
                    "axis '{axis}' has no value '{l}' in this profile (it has: {})",
                    have.join(", ")
                );
            }
        }
        have.retain(|l| labels.contains(l));
        self.cells
            .retain(|c| c.label(axis).is_some_and(|l| labels.iter().any(|x| x == l)));
        // Pretraining runs that no remaining cell starts from are not needed.
        let cells = &self.cells;
        self.pretrain.retain(|p| cells.iter().any(|c| p.serves(c)));
        Ok(())
    }
}

/// Directory of the suite files.
pub fn suites_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("suites")
}

/// Names of the suites in `dir`.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Some(s) = p.file_stem().and_then(|s| s.to_str())
        {
            names.push(s.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Loads suite `name` (a name in `dir`, or a path to a TOML file).
pub fn load(dir: &Path, name: &str) -> Result<(String, Suite)> {
    let path = if name.ends_with(".toml") {
        PathBuf::from(name)
    } else {
        dir.join(format!("{name}.toml"))
    };
    if !path.exists() {
        bail!(
            "unknown suite '{name}': choose one of {}",
            list(dir)?.join(", ")
        );
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let suite = parse(&text).with_context(|| format!("in {}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string();
    Ok((stem, suite))
}

/// Parses and checks a suite.
pub fn parse(text: &str) -> Result<Suite> {
    let s: Suite = toml::from_str(text)?;
    let names: Vec<&str> = s.axis.iter().map(|a| a.name.as_str()).collect();
    let known = |n: &str, what: &str| -> Result<()> {
        if names.contains(&n) {
            Ok(())
        } else {
            bail!("{what} names axis '{n}', which the suite does not have")
        }
    };
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    if unique.len() != names.len() {
        bail!("axis names must be unique: {}", names.join(", "));
    }
    known(&s.table.rows, "[table] rows")?;
    known(&s.table.columns, "[table] columns")?;
    if s.table.rows == s.table.columns {
        bail!("[table] rows and columns must be different axes");
    }
    for p in &s.plot {
        known(&p.x, "[[plot]] x")?;
        known(&p.series, "[[plot]] series")?;
    }
    for r in &s.reference {
        for a in r.at.keys() {
            known(a, "[[reference]] at")?;
        }
    }
    if let Some(c) = &s.compare_to {
        for a in c.keys() {
            known(a, "compare_to")?;
        }
    }
    for (pname, p) in &s.profile {
        if p.seeds.is_empty() {
            bail!("profile '{pname}' has no seeds");
        }
        for a in p.only.keys() {
            known(a, &format!("profile '{pname}' only"))?;
        }
    }
    for a in &s.axis {
        values(a)?;
    }
    Ok(s)
}

/// The resolved values of an axis.
pub fn values(a: &Axis) -> Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::new();
    for v in &a.values {
        let value = match v {
            RawValue::Full(f) => Value {
                label: f.label.clone(),
                set: f.set.clone(),
                preset: f.preset.clone(),
            },
            RawValue::Scalar(x) => {
                let key = a
                    .key
                    .as_ref()
                    .with_context(|| format!("axis '{}' has scalar values but no key", a.name))?;
                let (label, raw) = match x {
                    toml::Value::String(s) => (s.clone(), toml_string(s)),
                    toml::Value::Integer(i) => (i.to_string(), i.to_string()),
                    toml::Value::Float(f) => (format_float(*f), format_float(*f)),
                    toml::Value::Boolean(b) => (b.to_string(), b.to_string()),
                    other => bail!("axis '{}': unsupported value {other}", a.name),
                };
                Value {
                    label,
                    set: vec![format!("{key}={raw}")],
                    preset: None,
                }
            }
        };
        if out.iter().any(|o| o.label == value.label) {
            bail!("axis '{}': label '{}' appears twice", a.name, value.label);
        }
        out.push(value);
    }
    if out.is_empty() {
        bail!("axis '{}' has no values", a.name);
    }
    Ok(out)
}

/// A string as an override value: bare when the trainer reads it back as that string (the
/// command line stays readable), quoted otherwise.
fn toml_string(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.parse::<f64>().is_err()
        && !matches!(s, "true" | "false" | "inf" | "nan")
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if bare {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// `1.0` stays `1.0` (a TOML float), `0.5` stays `0.5`.
fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Expands `suite` for `profile`: the cartesian product of the kept axis values.
pub fn expand(suite: &Suite, profile: &str) -> Result<Plan> {
    let prof = suite.profile.get(profile).with_context(|| {
        format!(
            "this suite has no '{profile}' profile (it has: {})",
            suite.profile.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for a in &suite.axis {
        let all = values(a)?;
        let kept = match prof.only.get(&a.name) {
            None => all,
            Some(keep) => {
                for k in keep {
                    if !all.iter().any(|v| &v.label == k) {
                        bail!(
                            "profile '{profile}' keeps '{k}' on axis '{}', which has no such value",
                            a.name
                        );
                    }
                }
                all.into_iter()
                    .filter(|v| keep.contains(&v.label))
                    .collect()
            }
        };
        if kept.is_empty() {
            bail!("profile '{profile}' keeps no value of axis '{}'", a.name);
        }
        axes.push((a.name.clone(), kept));
    }
    let mut cells = Vec::new();
    let mut index = vec![0usize; axes.len()];
    loop {
        let mut labels = Vec::new();
        let mut set = suite.set.clone();
        set.extend(prof.set.iter().cloned());
        let mut preset = suite.preset.clone();
        for (i, (name, vals)) in axes.iter().enumerate() {
            let v = &vals[index[i]];
            labels.push((name.clone(), v.label.clone()));
            set.extend(v.set.iter().cloned());
            if let Some(p) = &v.preset {
                preset = Some(p.clone());
            }
        }
        let preset = preset.with_context(|| {
            format!("no preset for cell {labels:?}: give `preset` in the suite or an axis value")
        })?;
        cells.push(Cell {
            labels,
            preset,
            set: last_wins(set),
        });
        // Odometer, last axis fastest.
        let mut i = axes.len();
        loop {
            if i == 0 {
                let pretrain = suite
                    .pretrain
                    .iter()
                    .map(|p| {
                        let mut set = prof.set.clone();
                        set.extend(p.set.iter().cloned());
                        PretrainRun {
                            name: p.name.clone(),
                            when: p.when.clone(),
                            preset: p.preset.clone(),
                            set: last_wins(set),
                        }
                    })
                    .collect::<Vec<_>>();
                check_refs(&cells, &pretrain)?;
                return Ok(Plan {
                    cells,
                    seeds: prof.seeds.clone(),
                    pretrain,
                    axes: axes
                        .into_iter()
                        .map(|(n, v)| (n, v.into_iter().map(|v| v.label).collect()))
                        .collect(),
                });
            }
            i -= 1;
            index[i] += 1;
            if index[i] < axes[i].1.len() {
                break;
            }
            index[i] = 0;
        }
    }
}

/// Drops overrides of a key that a later override sets again (the trainer applies them in
/// order, so the result is the same; the printed commands get shorter).
pub fn last_wins(set: Vec<String>) -> Vec<String> {
    let key = |o: &str| o.split_once('=').map(|(k, _)| k.trim().to_string());
    let mut out: Vec<String> = Vec::new();
    for (i, o) in set.iter().enumerate() {
        let k = key(o);
        if k.is_none() || !set[i + 1..].iter().any(|later| key(later) == k) {
            out.push(o.clone());
        }
    }
    out
}

/// The `@NAME` a override refers to, if any.
pub fn reference_in(o: &str) -> Option<&str> {
    o.split_once('=')
        .and_then(|(_, v)| v.trim().trim_matches('"').strip_prefix('@'))
}

fn check_refs(cells: &[Cell], pretrain: &[PretrainRun]) -> Result<()> {
    for c in cells {
        for o in &c.set {
            if let Some(name) = reference_in(o) {
                pretrain_for(pretrain, c, name)?;
            }
        }
    }
    for p in pretrain {
        if p.set.iter().any(|o| reference_in(o).is_some()) {
            bail!(
                "pretraining run '{}' refers to another pretraining run: not supported",
                p.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = r#"
description = "test"
preset = "tb-mnist"
set = ["training.epochs=2"]
[profile.quick]
seeds = [0, 1]
set = ["training.epochs=1"]
only = { epsilon = ["3", "non-private"] }
[profile.full]
seeds = [0, 1, 2]
[[axis]]
name = "dataset"
values = [{ label = "mnist", preset = "tb-mnist" }, { label = "fashion-mnist", preset = "tb-fashion-mnist" }]
[[axis]]
name = "epsilon"
key = "privacy.epsilon"
values = [1, 3, { label = "non-private", set = ["privacy.enabled=false"] }]
[table]
rows = "dataset"
columns = "epsilon"
"#;

    #[test]
    fn expands_the_product_in_axis_order() {
        let s = parse(SUITE).unwrap();
        let p = expand(&s, "full").unwrap();
        assert_eq!(p.cells.len(), 6);
        assert_eq!(p.seeds, vec![0, 1, 2]);
        let c = &p.cells[1];
        assert_eq!(c.label("dataset"), Some("mnist"));
        assert_eq!(c.label("epsilon"), Some("3"));
        assert_eq!(c.preset, "tb-mnist");
        assert_eq!(c.set, vec!["training.epochs=2", "privacy.epsilon=3"]);
        let last = &p.cells[5];
        assert_eq!(last.preset, "tb-fashion-mnist");
        assert_eq!(last.label("epsilon"), Some("non-private"));
        assert_eq!(last.set.last().unwrap(), "privacy.enabled=false");
        assert_eq!(
            last.seeded(7)[last.set.len()..],
            ["training.seed=7".to_string(), "model.seed=7".to_string()]
        );
    }

    #[test]
    fn profile_filters_values_and_adds_overrides_after_the_suites() {
        let s = parse(SUITE).unwrap();
        let p = expand(&s, "quick").unwrap();
        assert_eq!(p.cells.len(), 4);
        assert_eq!(p.axes[1].1, vec!["3", "non-private"]);
        // The profile's epochs override the suite's; the earlier override is dropped.
        assert_eq!(
            p.cells[0].set,
            vec!["training.epochs=1", "privacy.epsilon=3"]
        );
        assert_eq!(
            last_wins(vec!["a.b=1".into(), "c.d=2".into(), "a.b = 3".into()]),
            vec!["c.d=2", "a.b = 3"]
        );
    }

    #[test]
    fn restrict_keeps_the_named_labels() {
        let s = parse(SUITE).unwrap();
        let mut p = expand(&s, "full").unwrap();
        p.restrict("dataset", &["fashion-mnist".into()]).unwrap();
        assert_eq!(p.cells.len(), 3);
        assert!(p.cells.iter().all(|c| c.preset == "tb-fashion-mnist"));
        assert_eq!(p.axes[0].1, vec!["fashion-mnist"]);
        assert!(p.restrict("dataset", &["mnist".into()]).is_err());
        assert!(p.restrict("nope", &["x".into()]).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let s = parse(SUITE).unwrap();
        let e = expand(&s, "medium").unwrap_err().to_string();
        assert!(
            e.contains("no 'medium' profile") && e.contains("full, quick"),
            "{e}"
        );
        let bad = SUITE.replace("rows = \"dataset\"", "rows = \"score\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("axis 'score'"), "{e}");
        let bad = SUITE.replace("\"3\", \"non-private\"", "\"4\"");
        let e = expand(&parse(&bad).unwrap(), "quick")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'4'"), "{e}");
        let bad = SUITE.replace("values = [1, 3,", "values = [1, 1,");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn float_labels_keep_their_decimal_point() {
        let a = Axis {
            name: "density".into(),
            key: Some("pruning.density".into()),
            values: vec![
                RawValue::Scalar(toml::Value::Float(1.0)),
                RawValue::Scalar(toml::Value::Float(0.3)),
                RawValue::Scalar(toml::Value::String("snip".into())),
            ],
        };
        let v = values(&a).unwrap();
        assert_eq!(v[0].label, "1.0");
        assert_eq!(v[0].set, vec!["pruning.density=1.0"]);
        assert_eq!(v[1].label, "0.3");
        assert_eq!(v[2].set, vec!["pruning.density=snip"]);
        assert_eq!(toml_string("1e5"), "\"1e5\"");
        assert_eq!(toml_string("true"), "\"true\"");
        assert_eq!(toml_string("a b"), "\"a b\"");
    }

    #[test]
    fn undeclared_pretraining_references_are_refused() {
        let bad = SUITE.replace(
            "set = [\"privacy.enabled=false\"]",
            "set = [\"model.init_from=@pre\"]",
        );
        let e = expand(&parse(&bad).unwrap(), "full")
            .unwrap_err()
            .to_string();
        assert!(e.contains("@pre"), "{e}");
        // Declared for MNIST cells only: the Fashion-MNIST cell is refused, MNIST is served.
        let ok = format!(
            "{bad}\n[[pretrain]]\nname = \"pre\"\nwhen = {{ dataset = \"mnist\" }}\npreset = \"tb-fashion-mnist\"\n"
        );
        let e = expand(&parse(&ok).unwrap(), "full")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fashion-mnist") && e.contains("none declared"),
            "{e}"
        );
        let mnist_only = ok.replace(
            "{ label = \"fashion-mnist\", preset = \"tb-fashion-mnist\" }",
            "",
        );
        let mnist_only = mnist_only.replace("\"mnist\" }, ]", "\"mnist\" }]");
        let plan = expand(&parse(&mnist_only).unwrap(), "full").unwrap();
        assert_eq!(plan.pretrain.len(), 1);
        // --only epsilon=... keeps the MNIST cells and so the pretraining run; a suite whose
        // pretraining serves only cells cut away drops it.
        let mut cut = plan.clone();
        cut.restrict("epsilon", &["3".into()]).unwrap();
        assert_eq!(cut.pretrain.len(), 1);
        cut.pretrain[0].when.insert("epsilon".into(), "1".into());
        cut.restrict("epsilon", &["3".into()]).unwrap();
        assert!(cut.pretrain.is_empty());
        assert_eq!(plan.pretrain[0].preset, "tb-fashion-mnist");
        let cell = &plan.cells[2];
        assert_eq!(pretrain_for(&plan.pretrain, cell, "pre").unwrap(), 0);
        assert_eq!(reference_in("model.init_from=\"@pre\""), Some("pre"));
        assert_eq!(reference_in("model.init_from=runs/x"), None);
    }

    #[test]
    fn every_shipped_suite_parses_and_expands() {
        let dir = suites_dir();
        let names = list(&dir).unwrap();
        assert!(names.contains(&"baselines".to_string()), "{names:?}");
        for n in names {
            let (_, s) = load(&dir, &n).unwrap();
            for p in s.profile.keys() {
                let plan = expand(&s, p).unwrap_or_else(|e| panic!("{n}/{p}: {e:#}"));
                assert!(!plan.cells.is_empty());
            }
        }
    }
}
