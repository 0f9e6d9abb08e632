//! Aggregation over seeds and the Markdown table of a suite.

use super::suite::{Plan, Suite};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Accuracy (percent) of every seed of one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    /// Axis name -> label, in axis order.
    pub labels: Vec<(String, String)>,
    /// Test accuracy in percent, one per finished seed.
    pub accuracies: Vec<f64>,
    /// The seed of each accuracy.
    pub seeds: Vec<u64>,
    /// Command for the first seed.
    pub command: String,
}

/// Mean, sample standard deviation (`None` for fewer than 2 values) and count.
pub fn mean_std(xs: &[f64]) -> Option<(f64, Option<f64>, usize)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.len() > 1)
        .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std, xs.len()))
}

/// Paired comparison of two cells over the seeds both finished (a seed fixes the
/// initialisation, the batch sampling and the noise stream, so runs with the same seed share
/// much of their luck): mean of the differences `a - b`, its paired t statistic (`None` with
/// fewer than two pairs or no spread) and the number of pairs; `None` without a common seed.
pub fn paired(a: &CellResult, b: &CellResult) -> Option<(f64, Option<f64>, usize)> {
    let d: Vec<f64> = a
        .seeds
        .iter()
        .zip(&a.accuracies)
        .filter_map(|(s, x)| {
            b.seeds
                .iter()
                .position(|t| t == s)
                .map(|i| x - b.accuracies[i])
        })
        .collect();
    let (m, sd, n) = mean_std(&d)?;
    let t = sd.and_then(|sd| {
        let se = sd / (n as f64).sqrt();
        (se > 0.0).then(|| m / se)
    });
    Some((m, t, n))
}

/// `97.12 ± 0.15`, `97.12` for one seed, `—` for none; `(n=2)` when fewer seeds than planned.
pub fn format_cell(xs: &[f64], planned: usize) -> String {
    match mean_std(xs) {
        None => "—".into(),
        Some((m, s, n)) => {
            let mut out = match s {
                Some(s) => format!("{m:.2} ± {s:.2}"),
                None => format!("{m:.2}"),
            };
            if n < planned {
                let _ = write!(out, " (n={n})");
            }
            out
        }
    }
}

fn find<'a>(cells: &'a [CellResult], labels: &[(String, String)]) -> Option<&'a CellResult> {
    cells.iter().find(|c| {
        labels
            .iter()
            .all(|(a, l)| c.labels.iter().any(|(ca, cl)| ca == a && cl == l))
    })
}

/// Every combination of the labels of `axes` (first axis slowest).
pub fn combinations(plan: &Plan, axes: &[&str]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (name, labels) in &plan.axes {
        if !axes.contains(&name.as_str()) {
            continue;
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                labels.iter().map(move |l| {
                    let mut p = prefix.clone();
                    p.push((name.clone(), l.clone()));
                    p
                })
            })
            .collect();
    }
    out
}

fn heading(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(a, l)| format!("{a} = {l}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown report body: one table per combination of the axes that are neither rows nor
/// columns, published numbers as extra rows, and differences to `compare_to` where declared.
pub fn markdown(suite: &Suite, plan: &Plan, cells: &[CellResult]) -> String {
    let rows_axis = suite.table.rows.as_str();
    let cols_axis = suite.table.columns.as_str();
    let labels_of = |axis: &str| -> Vec<String> {
        plan.axes
            .iter()
            .find(|(n, _)| n == axis)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    let rows = labels_of(rows_axis);
    let cols = labels_of(cols_axis);
    let others: Vec<&str> = plan
        .axes
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != rows_axis && *n != cols_axis)
        .collect();
    let planned = plan.seeds.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Test accuracy (%), mean ± sample std over {planned} seed{} (`training.seed` = \
         `model.seed` = {}); rows: {rows_axis}, columns: {cols_axis}.\n",
        if planned == 1 { "" } else { "s" },
        plan.seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for section in combinations(plan, &others) {
        if !section.is_empty() {
            let _ = writeln!(out, "### {}\n", heading(&section));
        }
        let _ = writeln!(out, "| {rows_axis} \\ {cols_axis} | {} |", cols.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(cols.len()));
        // Published numbers that apply to this section.
        let refs: Vec<_> = suite
            .reference
            .iter()
            .filter(|r| {
                r.at.iter().all(|(a, l)| {
                    if a == rows_axis {
                        rows.contains(l)
                    } else if a == cols_axis {
                        cols.contains(l)
                    } else {
                        section.iter().any(|(sa, sl)| sa == a && sl == l)
                    }
                })
            })
            .collect();
        let reference_row = |row: Option<&str>| -> Vec<String> {
            let mut sources: Vec<&str> = Vec::new();
            for r in &refs {
                if r.at.get(rows_axis).map(|s| s.as_str()) == row
                    && !sources.contains(&r.source.as_str())
                {
                    sources.push(&r.source);
                }
            }
            sources
                .into_iter()
                .map(|src| {
                    let vals: Vec<String> = cols
                        .iter()
                        .map(|c| {
                            refs.iter()
                                .find(|r| {
                                    r.source == src
                                        && r.at.get(rows_axis).map(|s| s.as_str()) == row
                                        && r.at.get(cols_axis) == Some(c)
                                })
                                .map(|r| format!("*{:.1}*", r.accuracy))
                                .unwrap_or_else(|| "".into())
                        })
                        .collect();
                    format!("| *published: {src}* | {} |", vals.join(" | "))
                })
                .collect()
        };
        for r in &rows {
            let vals: Vec<String> = cols
                .iter()
                .map(|c| {
                    let mut key = section.clone();
                    key.push((rows_axis.to_string(), r.clone()));
                    key.push((cols_axis.to_string(), c.clone()));
                    find(cells, &key)
                        .map(|cell| format_cell(&cell.accuracies, planned))
                        .unwrap_or_else(|| "—".into())
                })
                .collect();
            let _ = writeln!(out, "| {r} | {} |", vals.join(" | "));
            for line in reference_row(Some(r)) {
                let _ = writeln!(out, "{line}");
            }
        }
        for line in reference_row(None) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        if let Some(base) = &suite.compare_to {
            let _ = writeln!(
                out,
                "Difference to {} (percentage points, mean over seeds of the per-seed \
                 difference; paired t in brackets: with 4 seeds |t| > 3.2 is a two-sided 5% \
                 difference, with 3 seeds |t| > 4.3, with 2 seeds |t| > 12.7):\n",
                heading(
                    &base
                        .iter()
                        .map(|(a, l)| (a.clone(), l.clone()))
                        .collect::<Vec<_>>()
                )
            );
            let _ = writeln!(out, "| {rows_axis} \\ {cols_axis} | {} |", cols.join(" | "));
            let _ = writeln!(out, "|---|{}", "---:|".repeat(cols.len()));
            for r in &rows {
                let vals: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        let mut key = section.clone();
                        key.push((rows_axis.to_string(), r.clone()));
                        key.push((cols_axis.to_string(), c.clone()));
                        let mut bkey = key.clone();
                        for (a, l) in bkey.iter_mut() {
                            if let Some(b) = base.get(a) {
                                *l = b.clone();
                            }
                        }
                        if key == bkey {
                            return "(reference)".into();
                        }
                        match (find(cells, &key), find(cells, &bkey)) {
                            (Some(x), Some(y)) => match paired(x, y) {
                                Some((d, Some(t), _)) => format!("{d:+.2} ({t:+.1})"),
                                Some((d, None, _)) => format!("{d:+.2}"),
                                None => "—".into(),
                            },
                            _ => "—".into(),
                        }
                    })
                    .collect();
                let _ = writeln!(out, "| {r} | {} |", vals.join(" | "));
            }
            out.push('\n');
        }
    }
    out
}

/// Mean test accuracy per cell, keyed by labels, for plots.
pub fn by_labels(cells: &[CellResult]) -> BTreeMap<Vec<(String, String)>, (f64, f64)> {
    cells
        .iter()
        .filter_map(|c| {
            mean_std(&c.accuracies).map(|(m, s, _)| (c.labels.clone(), (m, s.unwrap_or(0.0))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::suite::{expand, parse};

    const SUITE: &str = r#"
description = "t"
preset = "tb-mnist"
compare_to = { density = "1.0" }
[profile.quick]
seeds = [0, 1]
[[axis]]
name = "dataset"
values = [{ label = "mnist" }, { label = "fashion-mnist" }]
[[axis]]
name = "score"
key = "pruning.score"
values = ["random", "magnitude"]
[[axis]]
name = "density"
key = "pruning.density"
values = [1.0, 0.5]
[table]
rows = "score"
columns = "density"
[[reference]]
at = { dataset = "mnist", density = "1.0" }
accuracy = 98.1
source = "Paper 2021"
"#;

    fn cell(d: &str, s: &str, den: &str, acc: &[f64]) -> CellResult {
        CellResult {
            labels: vec![
                ("dataset".into(), d.into()),
                ("score".into(), s.into()),
                ("density".into(), den.into()),
            ],
            accuracies: acc.to_vec(),
            seeds: (0..acc.len() as u64).collect(),
            command: String::new(),
        }
    }

    #[test]
    fn statistics() {
        let (m, s, n) = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((m, n), (2.0, 3));
        assert!((s.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), Some((5.0, None, 1)));
        assert_eq!(mean_std(&[]), None);
        let c = |seeds: &[u64], acc: &[f64]| CellResult {
            labels: Vec::new(),
            accuracies: acc.to_vec(),
            seeds: seeds.to_vec(),
            command: String::new(),
        };
        // Differences 2, 3, 4 over seeds 0, 1, 2 (seed 3 unpaired): mean 3, sd 1, t = 3 sqrt 3.
        let a = c(&[2, 0, 1, 3], &[14.0, 12.0, 13.0, 50.0]);
        let b = c(&[0, 1, 2], &[10.0, 10.0, 10.0]);
        let (d, t, n) = paired(&a, &b).unwrap();
        assert_eq!((d, n), (3.0, 3));
        assert!((t.unwrap() - 3.0 * 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(paired(&b, &b), Some((0.0, None, 3)));
        assert_eq!(paired(&c(&[5], &[1.0]), &b), None);
        assert_eq!(format_cell(&[97.0, 98.0], 2), "97.50 ± 0.71");
        assert_eq!(format_cell(&[97.0], 2), "97.00 (n=1)");
        assert_eq!(format_cell(&[], 2), "—");
    }

    #[test]
    fn tables_have_sections_references_and_differences() {
        let s = parse(SUITE).unwrap();
        let plan = expand(&s, "quick").unwrap();
        let cells = vec![
            cell("mnist", "random", "1.0", &[97.0, 98.0]),
            cell("mnist", "random", "0.5", &[96.0, 96.0]),
            cell("mnist", "magnitude", "1.0", &[97.0, 98.0]),
            cell("mnist", "magnitude", "0.5", &[98.0, 99.0]),
            cell("fashion-mnist", "random", "1.0", &[80.0]),
        ];
        let md = markdown(&s, &plan, &cells);
        let expected_mnist = "### dataset = mnist\n\n\
             | score \\ density | 1.0 | 0.5 |\n\
             |---|---:|---:|\n\
             | random | 97.50 ± 0.71 | 96.00 ± 0.00 |\n\
             | magnitude | 97.50 ± 0.71 | 98.50 ± 0.71 |\n\
             | *published: Paper 2021* | *98.1* |  |\n";
        assert!(md.contains(expected_mnist), "{md}");
        assert!(
            md.contains("| random | (reference) | -1.50 (-3.0) |"),
            "{md}"
        );
        // magnitude: per-seed differences +1, +1: no spread, so no t.
        assert!(md.contains("| magnitude | (reference) | +1.00 |"), "{md}");
        // No reference in the Fashion-MNIST section; missing cells are dashes.
        let fashion = md.split("### dataset = fashion-mnist").nth(1).unwrap();
        assert!(!fashion.contains("published"), "{fashion}");
        assert!(
            fashion.contains("| random | 80.00 (n=1) | — |"),
            "{fashion}"
        );
        assert!(md.starts_with("Test accuracy (%), mean ± sample std over 2 seeds"));
    }
}
