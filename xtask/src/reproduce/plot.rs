//! Plots of a suite: test accuracy against a numeric axis, one line per series, as SVG and PNG.
//!
//! Text is drawn with DejaVu Sans embedded from the `dejavu` crate (Bitstream Vera license,
//! free to embed), registered with plotters' `ab_glyph` renderer, so no system font is read.
//! PNG pixels come from plotters' in-memory bitmap backend and are encoded with the `png` crate.

use super::report::CellResult;
use super::suite::{Plan, PlotSpec, Reference};
use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// One line of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, mean, std)` at numeric x values, sorted by x.
    pub points: Vec<(f64, f64, f64)>,
    /// Means at non-numeric x labels (drawn as horizontal lines), `(label, mean)`.
    pub levels: Vec<(String, f64)>,
    /// Published numbers for this series, `(x, accuracy, source)`, drawn as crosses.
    pub published: Vec<(f64, f64, String)>,
}

/// One figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Title.
    pub title: String,
    /// x axis name.
    pub x: String,
    /// Lines.
    pub series: Vec<Series>,
    /// File stem (no extension).
    pub stem: String,
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The figures of one `[[plot]]` spec: one per combination of the axes other than `x` and
/// `series`.
pub fn figures(
    suite_name: &str,
    plan: &Plan,
    spec: &PlotSpec,
    references: &[Reference],
    cells: &[CellResult],
) -> Vec<Figure> {
    let means = super::report::by_labels(cells);
    let others: Vec<&str> = plan
        .axes
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != spec.x && *n != spec.series)
        .collect();
    let labels_of = |axis: &str| -> Vec<String> {
        plan.axes
            .iter()
            .find(|(n, _)| n == axis)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for fixed in super::report::combinations(plan, &others) {
        let mut series = Vec::new();
        for s in labels_of(&spec.series) {
            let mut points = Vec::new();
            let mut levels = Vec::new();
            for x in labels_of(&spec.x) {
                let mut key = fixed.clone();
                key.push((spec.series.clone(), s.clone()));
                key.push((spec.x.clone(), x.clone()));
                // Cell labels are in axis order: look the key up order-independently.
                let hit = means.iter().find(|(labels, _)| {
                    labels.len() == key.len() && key.iter().all(|k| labels.contains(k))
                });
                if let Some((_, &(m, sd))) = hit {
                    match x.parse::<f64>() {
                        Ok(v) if v.is_finite() => points.push((v, m, sd)),
                        _ => levels.push((x.clone(), m)),
                    }
                }
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Published numbers at a numeric x whose other labels are this series' and figure's.
            let published = references
                .iter()
                .filter_map(|r| {
                    let x = r.at.get(&spec.x)?.parse::<f64>().ok()?;
                    let fits = r.at.iter().all(|(a, l)| {
                        a == &spec.x
                            || (a == &spec.series && l == &s)
                            || fixed.iter().any(|(fa, fl)| fa == a && fl == l)
                    });
                    fits.then(|| (x, r.accuracy, r.source.clone()))
                })
                .collect::<Vec<_>>();
            if !points.is_empty() || !levels.is_empty() {
                series.push(Series {
                    name: format!("{} = {s}", spec.series),
                    points,
                    levels,
                    published,
                });
            }
        }
        // A line needs two points: a grid cut to one x value (a quick profile) draws nothing.
        if series.iter().all(|s| s.points.len() < 2) {
            continue;
        }
        let what = fixed
            .iter()
            .map(|(a, l)| format!("{a} {l}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stem = format!("{suite_name}-{}-by-{}", slug(&spec.x), slug(&spec.series));
        for (_, l) in &fixed {
            stem.push('-');
            stem.push_str(&slug(l));
        }
        out.push(Figure {
            title: if what.is_empty() {
                format!("{suite_name}: accuracy vs {}", spec.x)
            } else {
                format!("{suite_name} ({what}): accuracy vs {}", spec.x)
            },
            x: spec.x.clone(),
            series,
            stem,
        });
    }
    out
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Axis ranges with a margin: `(x0, x1, y0, y1)`.
pub fn ranges(fig: &Figure) -> (f64, f64, f64, f64) {
    let xs = fig.series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.0)
            .chain(s.published.iter().map(|p| p.0))
    });
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let ys = fig.series.iter().flat_map(|s| {
        s.points
            .iter()
            .flat_map(|p| [p.1 - p.2, p.1 + p.2])
            .chain(s.levels.iter().map(|l| l.1))
            .chain(s.published.iter().map(|p| p.1))
    });
    let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    // One x value (or none): a unit-wide range around it.
    if !(x0.is_finite() && x1.is_finite()) {
        (x0, x1) = (0.0, 1.0);
    } else if x1 <= x0 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let pad = (x1 - x0) * 0.05;
    if !(y0.is_finite() && y1.is_finite()) {
        (y0, y1) = (0.0, 100.0);
    } else if y1 <= y0 {
        (y0, y1) = (y0 - 1.0, y1 + 1.0);
    }
    let ypad = (y1 - y0) * 0.08;
    (
        x0 - pad,
        x1 + pad,
        (y0 - ypad).max(0.0),
        (y1 + ypad).min(100.0),
    )
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (x0, x1, y0, y1) = ranges(fig);
    let mut chart = ChartBuilder::on(&root)
        .caption(&fig.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(fig.x.as_str())
        .y_desc("test accuracy (%)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    for (i, s) in fig.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if !s.points.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
                )
                .map_err(plot_err)?;
            chart
                .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                    ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color.stroke_width(1), 8)
                }))
                .map_err(plot_err)?;
        }
        for (x, y, source) in &s.published {
            chart
                .draw_series(std::iter::once(Cross::new(
                    (*x, *y),
                    7,
                    color.stroke_width(3),
                )))
                .map_err(plot_err)?
                .label(format!("{}: published, {source}", s.name))
                .legend(move |(x, y)| Cross::new((x + 10, y), 5, color.stroke_width(2)));
        }
        for (label, level) in &s.levels {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, *level), (x1, *level)],
                    8,
                    5,
                    color.stroke_width(1),
                ))
                .map_err(plot_err)?
                .label(format!("{} ({label})", s.name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], color)
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .map_err(|_| anyhow!("the embedded DejaVu Sans font did not load"));
    });
    result
}

/// Image size in pixels.
const SIZE: (u32, u32) = (900, 560);

/// Writes `dir/<stem>.svg` and `dir/<stem>.png`; returns both paths.
pub fn write(dir: &Path, fig: &Figure) -> Result<Vec<PathBuf>> {
    register_font()?;
    let svg = dir.join(format!("{}.svg", fig.stem));
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), fig)
        .with_context(|| format!("writing {}", svg.display()))?;
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area(),
        fig,
    )?;
    let png = dir.join(format!("{}.png", fig.stem));
    let file =
        std::fs::File::create(&png).with_context(|| format!("creating {}", png.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&pixels)?;
    w.finish()?;
    Ok(vec![svg, png])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::suite::{expand, parse};

    const SUITE: &str = r#"
description = "t"
preset = "tb-mnist"
[profile.quick]
seeds = [0]
[[axis]]
name = "dataset"
values = [{ label = "mnist" }]
[[axis]]
name = "epsilon"
key = "privacy.epsilon"
values = [8, 1, { label = "non-private", set = ["privacy.enabled=false"] }]
[table]
rows = "dataset"
columns = "epsilon"
[[plot]]
x = "epsilon"
series = "dataset"
"#;

    #[test]
    fn figures_sort_numeric_x_and_turn_other_labels_into_levels() {
        let s = parse(SUITE).unwrap();
        let plan = expand(&s, "quick").unwrap();
        let c = |e: &str, a: f64| CellResult {
            labels: vec![
                ("dataset".into(), "mnist".into()),
                ("epsilon".into(), e.into()),
            ],
            accuracies: vec![a, a + 2.0],
            seeds: vec![0, 1],
            command: String::new(),
        };
        let cells = vec![c("8", 96.0), c("1", 90.0), c("non-private", 98.0)];
        let refs = vec![
            Reference {
                at: [("dataset", "mnist"), ("epsilon", "3")]
                    .map(|(a, l)| (a.to_string(), l.to_string()))
                    .into(),
                accuracy: 98.1,
                source: "TB".into(),
            },
            Reference {
                at: [("dataset", "cifar10"), ("epsilon", "3")]
                    .map(|(a, l)| (a.to_string(), l.to_string()))
                    .into(),
                accuracy: 59.2,
                source: "TB".into(),
            },
        ];
        let figs = figures("baselines", &plan, &s.plot[0], &refs, &cells);
        assert_eq!(figs.len(), 1);
        let f = &figs[0];
        assert_eq!(f.stem, "baselines-epsilon-by-dataset");
        assert_eq!(f.series[0].points.len(), 2);
        assert_eq!(f.series[0].points[0].0, 1.0);
        assert_eq!(f.series[0].points[0].1, 91.0);
        assert!((f.series[0].points[0].2 - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(f.series[0].levels, vec![("non-private".to_string(), 99.0)]);
        assert_eq!(f.series[0].published, vec![(3.0, 98.1, "TB".to_string())]);
        let (x0, x1, y0, y1) = ranges(f);
        // One epsilon left: no figure.
        let one = vec![c("8", 96.0), c("non-private", 98.0)];
        assert!(figures("baselines", &plan, &s.plot[0], &refs, &one).is_empty());
        assert!(x0 < 1.0 && x1 > 8.0 && y0 < 91.0 - 2f64.sqrt() && y1 > 99.0 && y1 <= 100.0);
    }

    #[test]
    fn writes_a_readable_svg_and_png() {
        let fig = Figure {
            title: "t: accuracy vs density".into(),
            x: "density".into(),
            series: vec![
                Series {
                    name: "score = random".into(),
                    points: vec![(0.1, 80.0, 1.0), (0.5, 85.0, 0.5), (1.0, 86.0, 0.0)],
                    levels: vec![("non-private".into(), 90.0)],
                    published: vec![(0.5, 88.0, "Paper 2021".into())],
                },
                Series {
                    name: "score = magnitude".into(),
                    points: vec![(0.1, 82.0, 2.0), (1.0, 86.0, 1.0)],
                    levels: Vec::new(),
                    published: Vec::new(),
                },
            ],
            stem: "plot-test".into(),
        };
        let dir = std::env::temp_dir().join(format!("xtask-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = write(&dir, &fig).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            svg.contains("score = magnitude") && svg.contains("density"),
            "{svg}"
        );
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&files[1]).unwrap(),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        // Text and lines were drawn: a good share of pixels is not white.
        let dark = buf.chunks(3).filter(|p| p.iter().all(|&c| c < 128)).count();
        assert!(dark > 2000, "only {dark} dark pixels");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
