//! The `dp-accountant` command line, as a library module so other front ends (the `sparsedp`
//! CLI's `account` command) mount the same command.
//!
//! ```text
//! dp-accountant epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5
//! dp-accountant sigma --epsilon 8 --delta 1e-5 --q 0.04 --steps 2250
//! dp-accountant delta --q 0.04 --sigma 1.5 --steps 2250 --epsilon 8
//! dp-accountant steps --epsilon 8 --delta 1e-5 --q 0.04 --sigma 1.5
//! dp-accountant rdp --q 0.04 --sigma 1.5 --steps 2250 --orders 2,4,8
//! ```
//! Every command takes `--json`. Errors are returned as messages (the binaries print them and
//! exit with status 2); warnings (an optimal order at the edge of the order set) go to stderr.

use crate::{
    CalibrationOptions, Error, FractionalSeries, Orders, Phase, PrivacyGuarantee, RdpCurve,
    calibrate_sigma, max_steps, sampling_rate, steps_for_epochs,
};
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use serde_json::{Value, json};

/// The command, named `dp-accountant`; rename it to mount it elsewhere.
pub fn command() -> Command {
    let q = Arg::new("q")
        .long("q")
        .value_name("Q")
        .value_parser(value_parser!(f64))
        .allow_negative_numbers(true)
        .help("Poisson sampling probability per step (or give --batch-size and --dataset-size)");
    let batch = Arg::new("batch-size")
        .long("batch-size")
        .value_name("B")
        .value_parser(value_parser!(u64))
        .requires("dataset-size")
        .conflicts_with("q")
        .help("Expected batch size; q = B / N");
    let dataset = Arg::new("dataset-size")
        .long("dataset-size")
        .value_name("N")
        .value_parser(value_parser!(u64))
        .requires("batch-size")
        .help("Number of training examples N");
    let sigma = Arg::new("sigma")
        .long("sigma")
        .value_name("SIGMA")
        .value_parser(value_parser!(f64))
        .allow_negative_numbers(true)
        .help("Noise multiplier (noise std / clipping norm)");
    let steps = Arg::new("steps")
        .long("steps")
        .value_name("T")
        .value_parser(value_parser!(u64))
        .help("Number of steps");
    let epochs = Arg::new("epochs")
        .long("epochs")
        .value_name("E")
        .value_parser(value_parser!(f64))
        .allow_negative_numbers(true)
        .conflicts_with("steps")
        .help("Number of epochs; steps = ceil(E / q)");
    let phase = Arg::new("phase")
        .long("phase")
        .value_name("Q:SIGMA:STEPS")
        .action(ArgAction::Append)
        .conflicts_with_all(["q", "sigma", "steps", "epochs", "batch-size"])
        .help("A training phase; repeat for heterogeneous phases (composed additively)");
    let delta = Arg::new("delta")
        .long("delta")
        .value_name("DELTA")
        .value_parser(value_parser!(f64))
        .allow_negative_numbers(true)
        .required(true)
        .help("Target delta, in (0, 1)");
    let epsilon = Arg::new("epsilon")
        .long("epsilon")
        .value_name("EPSILON")
        .value_parser(value_parser!(f64))
        .allow_negative_numbers(true)
        .required(true)
        .help("Target epsilon");
    let common = [
        Arg::new("orders")
            .long("orders")
            .value_name("SET")
            .default_value("opacus")
            .help("Renyi orders: opacus, dp-accounting, tf-privacy, or a comma-separated list"),
        Arg::new("series")
            .long("series")
            .value_name("KIND")
            .default_value("abs")
            .value_parser(["abs", "signed"])
            .help("Fractional-order series: abs (upper bound, default) or signed (as in Opacus)"),
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print JSON instead of text"),
    ];
    Command::new("dp-accountant")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "Renyi-DP accountant for DP-SGD (Poisson-subsampled Gaussian, add/remove-one \
             neighbours). Every reported epsilon and delta is rounded against the claim.",
        )
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("epsilon")
                .about("Epsilon spent by a training run at a given delta")
                .args([q.clone(), batch.clone(), dataset.clone()])
                .args([sigma.clone(), steps.clone(), epochs.clone(), phase.clone()])
                .arg(delta.clone())
                .args(common.clone()),
        )
        .subcommand(
            Command::new("delta")
                .about("Delta of a training run at a given epsilon")
                .args([q.clone(), batch.clone(), dataset.clone()])
                .args([sigma.clone(), steps.clone(), epochs.clone(), phase.clone()])
                .arg(epsilon.clone())
                .args(common.clone()),
        )
        .subcommand(
            Command::new("rdp")
                .about("The composed RDP curve of a training run")
                .args([q.clone(), batch.clone(), dataset.clone()])
                .args([sigma.clone(), steps.clone(), epochs.clone(), phase])
                .args(common.clone()),
        )
        .subcommand(
            Command::new("sigma")
                .about("Smallest noise multiplier meeting (epsilon, delta) for a training plan")
                .args([q.clone(), batch.clone(), dataset.clone(), steps, epochs])
                .args([epsilon.clone(), delta.clone()])
                .arg(
                    Arg::new("tolerance")
                        .long("tolerance")
                        .value_name("TOL")
                        .value_parser(value_parser!(f64))
                        .allow_negative_numbers(true)
                        .default_value("0.01")
                        .help("Stop when target - epsilon <= TOL (never above the target)"),
                )
                .args(common.clone()),
        )
        .subcommand(
            Command::new("steps")
                .about("Largest number of steps within (epsilon, delta) at a given q and sigma")
                .args([q, batch, dataset, sigma])
                .args([epsilon, delta])
                .args(common),
        )
}

/// Runs the parsed command (the matches of [`command`]), printing to stdout.
pub fn run(m: &ArgMatches) -> Result<(), String> {
    let (name, sub) = m.subcommand().expect("clap requires a subcommand");
    let orders = parse_orders(sub.get_one::<String>("orders").expect("has a default"))?;
    let series = match sub.get_one::<String>("series").map(String::as_str) {
        Some("signed") => FractionalSeries::Signed,
        _ => FractionalSeries::AbsoluteBound,
    };
    let json = sub.get_flag("json");
    let out = match name {
        "epsilon" | "delta" | "rdp" => {
            let phases = phases(sub)?;
            let mut curve = RdpCurve::zero(orders.clone());
            for &p in &phases {
                let phase_curve = RdpCurve::of_phase(&orders, p, series).map_err(msg)?;
                curve = curve.compose(&phase_curve).map_err(msg)?;
            }
            report_curve(name, sub, &curve, &phases, series)?
        }
        "sigma" => {
            let q = q_of(sub)?;
            let steps = steps_of(sub, q)?;
            let options = CalibrationOptions {
                orders,
                series,
                epsilon_tolerance: *sub.get_one::<f64>("tolerance").expect("has a default"),
                ..CalibrationOptions::default()
            };
            let eps = get::<f64>(sub, "epsilon")?;
            let delta = get::<f64>(sub, "delta")?;
            let c = calibrate_sigma(eps, delta, q, steps, &options).map_err(msg)?;
            warn(&c.guarantee);
            Output {
                text: format!(
                    "sigma = {}  (epsilon = {:.6} <= {eps} at delta = {delta}, q = {q}, steps = \
                     {steps}, optimal order {})",
                    c.sigma,
                    c.guarantee.epsilon,
                    order_text(&c.guarantee)
                ),
                json: json!({
                    "sigma": c.sigma, "epsilon": c.guarantee.epsilon, "target_epsilon": eps,
                    "delta": delta, "q": q, "steps": steps, "order": c.guarantee.order,
                    "series": series.name(), "evaluations": c.evaluations,
                }),
            }
        }
        "steps" => {
            let q = q_of(sub)?;
            let sigma = get::<f64>(sub, "sigma")?;
            let eps = get::<f64>(sub, "epsilon")?;
            let delta = get::<f64>(sub, "delta")?;
            let b = max_steps(eps, delta, q, sigma, &orders, series).map_err(msg)?;
            if let Some(g) = &b.guarantee {
                warn(g);
            }
            let text = match b.steps {
                None => "unlimited: this mechanism releases nothing (q = 0 or sigma = inf)".into(),
                Some(t) => format!(
                    "steps = {t}  (epsilon = {:.6} <= {eps} at delta = {delta}, q = {q}, sigma = \
                     {sigma})",
                    b.guarantee.map_or(0.0, |g| g.epsilon)
                ),
            };
            Output {
                text,
                json: json!({
                    "steps": b.steps, "epsilon": b.guarantee.map(|g| g.epsilon),
                    "target_epsilon": eps, "delta": delta, "q": q, "sigma": sigma,
                    "series": series.name(),
                }),
            }
        }
        other => return Err(format!("unknown command {other}")),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out.json).expect("JSON of plain values")
        );
    } else {
        println!("{}", out.text);
    }
    Ok(())
}

struct Output {
    text: String,
    json: Value,
}

fn report_curve(
    name: &str,
    sub: &ArgMatches,
    curve: &RdpCurve,
    phases: &[Phase],
    series: FractionalSeries,
) -> Result<Output, String> {
    let phases_json: Vec<Value> = phases
        .iter()
        .map(|p| json!({"q": p.q, "sigma": p.sigma, "steps": p.steps}))
        .collect();
    match name {
        "epsilon" => {
            let delta = get::<f64>(sub, "delta")?;
            let g = curve.epsilon(delta).map_err(msg)?;
            warn(&g);
            Ok(Output {
                text: format!(
                    "epsilon = {:.6}  (delta = {delta}, optimal order {})",
                    g.epsilon,
                    order_text(&g)
                ),
                json: json!({
                    "epsilon": g.epsilon, "delta": delta, "order": g.order,
                    "order_at_edge": g.edge.is_some(), "phases": phases_json,
                    "series": series.name(),
                }),
            })
        }
        "delta" => {
            let eps = get::<f64>(sub, "epsilon")?;
            let g = curve.delta(eps).map_err(msg)?;
            warn(&g);
            Ok(Output {
                text: format!(
                    "delta = {:e}  (epsilon = {eps}, optimal order {})",
                    g.delta,
                    order_text(&g)
                ),
                json: json!({
                    "delta": g.delta, "epsilon": eps, "order": g.order,
                    "order_at_edge": g.edge.is_some(), "phases": phases_json,
                    "series": series.name(),
                }),
            })
        }
        _ => {
            let rows: Vec<String> = curve
                .orders()
                .as_slice()
                .iter()
                .zip(curve.values())
                .map(|(a, r)| format!("{a:>8} {r:.12e}"))
                .collect();
            Ok(Output {
                text: format!("{:>8} {}\n{}", "order", "rdp", rows.join("\n")),
                json: json!({
                    "orders": curve.orders().as_slice(), "rdp": curve.values(),
                    "phases": phases_json, "series": series.name(),
                }),
            })
        }
    }
}

fn phases(sub: &ArgMatches) -> Result<Vec<Phase>, String> {
    if let Some(specs) = sub.get_many::<String>("phase") {
        return specs.map(|s| parse_phase(s)).collect();
    }
    let q = q_of(sub)?;
    let sigma = get::<f64>(sub, "sigma")?;
    let steps = steps_of(sub, q)?;
    Ok(vec![Phase::new(q, sigma, steps).map_err(msg)?])
}

fn parse_phase(spec: &str) -> Result<Phase, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || format!("--phase expects Q:SIGMA:STEPS, e.g. 0.01:1.1:1000, got '{spec}'");
    if parts.len() != 3 {
        return Err(bad());
    }
    let q: f64 = parts[0].trim().parse().map_err(|_| bad())?;
    let sigma: f64 = parts[1].trim().parse().map_err(|_| bad())?;
    let steps: u64 = parts[2].trim().parse().map_err(|_| bad())?;
    Phase::new(q, sigma, steps).map_err(msg)
}

fn q_of(sub: &ArgMatches) -> Result<f64, String> {
    if let Some(&b) = sub.get_one::<u64>("batch-size") {
        let n = *sub.get_one::<u64>("dataset-size").expect("clap: requires");
        return sampling_rate(b, n).map_err(msg);
    }
    get::<f64>(sub, "q")
}

fn steps_of(sub: &ArgMatches, q: f64) -> Result<u64, String> {
    if let Some(&e) = sub.get_one::<f64>("epochs") {
        return steps_for_epochs(e, q).map_err(msg);
    }
    get::<u64>(sub, "steps").map_err(|_| "missing --steps (or --epochs)".to_string())
}

fn get<T: Clone + Send + Sync + 'static>(sub: &ArgMatches, id: &str) -> Result<T, String> {
    sub.get_one::<T>(id)
        .cloned()
        .ok_or_else(|| format!("missing --{id}"))
}

fn parse_orders(spec: &str) -> Result<Orders, String> {
    match spec {
        "opacus" => Ok(Orders::opacus()),
        "dp-accounting" => Ok(Orders::dp_accounting()),
        "tf-privacy" => Ok(Orders::tf_privacy()),
        list => {
            let values = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim().parse::<f64>().map_err(|_| {
                        format!(
                            "--orders: '{s}' is not a number (use opacus, dp-accounting, \
                             tf-privacy or a comma-separated list)"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Orders::new(values).map_err(msg)
        }
    }
}

fn order_text(g: &PrivacyGuarantee) -> String {
    g.order.map_or("n/a".into(), |o| o.to_string())
}

fn warn(g: &PrivacyGuarantee) {
    if let Some(w) = g.warning() {
        eprintln!("warning: {w}");
    }
}

fn msg(e: Error) -> String {
    e.to_string()
}
