//! The benchmark problems of issue 13, shared by the examples: a judge set (reported against the
//! peers in `bench/bo/`, never tuned on) and a tune set (what the optimizer is developed on).
//! `bench/bo/problems.py` defines the same functions; `regret -- --check` prints values at fixed
//! points for comparing the two.
//!
//! Sources of the test functions: Branin, Hartmann-3/6, Ackley, Levy, Rosenbrock and
//! Styblinski-Tang as defined in Surjanovic and Bingham's "Virtual Library of Simulation
//! Experiments" (sfu.ca/~ssurjano). `train6`/`train6b` are this project's own: a mixed space
//! shaped like a training run (log learning rate, three integers, a float, a categorical).

use std::collections::BTreeMap;
use tuner::space::{ParamKind, ParamSpec, Value};

/// An objective on named, decoded values.
pub type Objective = fn(&BTreeMap<String, Value>) -> f64;

/// One benchmark problem.
pub struct Problem {
    /// Its name, as `bench/bo` spells it.
    pub name: &'static str,
    /// The search space.
    pub params: Vec<ParamSpec>,
    /// The function to minimize.
    pub f: Objective,
    /// The known minimum.
    pub optimum: f64,
    /// A run whose final regret is above this is "stuck".
    pub stuck_above: f64,
    /// Whether it belongs to the judge set (otherwise the tune set).
    pub judge: bool,
}

fn float(name: &str, low: f64, high: f64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Float {
            low,
            high,
            log: false,
        },
        default: None,
    }
}

fn cube(d: usize, low: f64, high: f64) -> Vec<ParamSpec> {
    (0..d).map(|i| float(&format!("x{i}"), low, high)).collect()
}

/// The values `x0..x{d-1}` of an assignment, in order.
pub fn xs(p: &BTreeMap<String, Value>) -> Vec<f64> {
    (0..)
        .map_while(|i| p.get(&format!("x{i}")).and_then(Value::as_f64))
        .collect()
}

fn branin(p: &BTreeMap<String, Value>) -> f64 {
    let (x1, x2) = (
        p["x1"].as_f64().unwrap_or(0.0),
        p["x2"].as_f64().unwrap_or(0.0),
    );
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn hartmann6(p: &BTreeMap<String, Value>) -> f64 {
    crate::common::hartmann6(&xs(p))
}

fn hartmann3(p: &BTreeMap<String, Value>) -> f64 {
    const A: [[f64; 3]; 4] = [
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
    ];
    const P: [[f64; 3]; 4] = [
        [0.3689, 0.1170, 0.2673],
        [0.4699, 0.4387, 0.7470],
        [0.1091, 0.8732, 0.5547],
        [0.0381, 0.5743, 0.8828],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    let x = xs(p);
    -(0..4)
        .map(|i| {
            let s: f64 = (0..3).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

fn ackley(p: &BTreeMap<String, Value>) -> f64 {
    let x = xs(p);
    let d = x.len() as f64;
    let squares = x.iter().map(|v| v * v).sum::<f64>() / d;
    let cosines = x
        .iter()
        .map(|v| (2.0 * std::f64::consts::PI * v).cos())
        .sum::<f64>()
        / d;
    -20.0 * (-0.2 * squares.sqrt()).exp() - cosines.exp() + 20.0 + std::f64::consts::E
}

fn levy(p: &BTreeMap<String, Value>) -> f64 {
    let pi = std::f64::consts::PI;
    let w: Vec<f64> = xs(p).iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let last = w[w.len() - 1];
    let middle: f64 = w[..w.len() - 1]
        .iter()
        .map(|wi| (wi - 1.0).powi(2) * (1.0 + 10.0 * (pi * wi + 1.0).sin().powi(2)))
        .sum();
    (pi * w[0]).sin().powi(2)
        + middle
        + (last - 1.0).powi(2) * (1.0 + (2.0 * pi * last).sin().powi(2))
}

fn rosenbrock(p: &BTreeMap<String, Value>) -> f64 {
    let x = xs(p);
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

fn styblinski(p: &BTreeMap<String, Value>) -> f64 {
    0.5 * xs(p)
        .iter()
        .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
        .sum::<f64>()
}

/// The constants of a `train6` variant.
struct Train {
    ustar: [f64; 3],
    offset: [f64; 3],
    layers: f64,
    width: f64,
    batch: f64,
    dropout: f64,
}

const CHOICES: [&str; 3] = ["sgd", "adam", "rmsprop"];

fn train(k: &Train, p: &BTreeMap<String, Value>) -> f64 {
    let num = |name: &str| p.get(name).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let o = p
        .get("optimizer")
        .and_then(|v| match v {
            Value::Categorical(s) => Some(s.as_str()),
            _ => None,
        })
        .and_then(|s| CHOICES.iter().position(|c| *c == s))
        .unwrap_or(0);
    let u = num("lr").log10();
    let (layers, width, batch, dropout) =
        (num("layers"), num("width"), num("batch"), num("dropout"));
    let diverged = if u > k.ustar[o] + 1.5 { 0.5 } else { 0.0 };
    0.1 + k.offset[o]
        + 0.04 * (u - k.ustar[o] - 0.1 * (batch / k.batch).log2()).powi(2)
        + 0.02 * (layers - k.layers).powi(2) / 9.0
        + 0.03 * (width.log2() - k.width.log2()).powi(2) / 9.0
        + 0.05 * (dropout - k.dropout * width.log2() / k.width.log2()).powi(2)
        + 0.01 * (batch.log2() - k.batch.log2()).powi(2) / 4.0
        + diverged
}

fn train6(p: &BTreeMap<String, Value>) -> f64 {
    train(
        &Train {
            ustar: [-1.5, -3.3, -2.7],
            offset: [0.08, 0.0, 0.03],
            layers: 4.0,
            width: 256.0,
            batch: 64.0,
            dropout: 0.3,
        },
        p,
    )
}

fn train6b(p: &BTreeMap<String, Value>) -> f64 {
    train(
        &Train {
            ustar: [-1.0, -3.8, -2.2],
            offset: [0.05, 0.02, 0.0],
            layers: 3.0,
            width: 128.0,
            batch: 32.0,
            dropout: 0.2,
        },
        p,
    )
}

fn train_space() -> Vec<ParamSpec> {
    let int = |name: &str, low: i64, high: i64| ParamSpec {
        name: name.into(),
        kind: ParamKind::Int {
            low,
            high,
            log: false,
        },
        default: None,
    };
    vec![
        ParamSpec {
            name: "lr".into(),
            kind: ParamKind::Float {
                low: 1e-8,
                high: 1.0,
                log: true,
            },
            default: None,
        },
        int("layers", 1, 8),
        int("width", 16, 512),
        int("batch", 8, 256),
        float("dropout", 0.0, 0.9),
        ParamSpec {
            name: "optimizer".into(),
            kind: ParamKind::Categorical {
                choices: CHOICES.iter().map(|c| (*c).to_string()).collect(),
            },
            default: None,
        },
    ]
}

/// Every problem, judge set first.
pub fn all() -> Vec<Problem> {
    let p = |name, params, f: Objective, optimum, stuck_above, judge| Problem {
        name,
        params,
        f,
        optimum,
        stuck_above,
        judge,
    };
    vec![
        p(
            "branin",
            vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)],
            branin,
            0.397887,
            0.01,
            true,
        ),
        p(
            "hartmann6",
            cube(6, 0.0, 1.0),
            hartmann6,
            -3.32237,
            0.05,
            true,
        ),
        p("ackley10", cube(10, -5.0, 10.0), ackley, 0.0, 3.0, true),
        p("levy10", cube(10, -10.0, 10.0), levy, 0.0, 5.0, true),
        p(
            "rosenbrock6",
            cube(6, -2.0, 2.0),
            rosenbrock,
            0.0,
            1.0,
            true,
        ),
        p("train6", train_space(), train6, 0.1, 0.02, true),
        p(
            "hartmann3",
            cube(3, 0.0, 1.0),
            hartmann3,
            -3.86278,
            0.05,
            false,
        ),
        p(
            "styblinski8",
            cube(8, -5.0, 5.0),
            styblinski,
            -313.329_325_6,
            20.0,
            false,
        ),
        p(
            "rosenbrock4",
            cube(4, -2.0, 2.0),
            rosenbrock,
            0.0,
            0.5,
            false,
        ),
        p("train6b", train_space(), train6b, 0.1, 0.02, false),
    ]
}

/// Fixed points for `--check`: the optimum's neighbourhood and two generic points of each problem.
pub fn check_points(problem: &Problem) -> Vec<BTreeMap<String, Value>> {
    (0..3)
        .map(|k| {
            problem
                .params
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let t = ((i + 1) as f64 * 0.137 + k as f64 * 0.291).fract();
                    let v = match &spec.kind {
                        ParamKind::Float {
                            low,
                            high,
                            log: false,
                        } => Value::Float(low + t * (high - low)),
                        ParamKind::Float {
                            low,
                            high,
                            log: true,
                        } => Value::Float((low.ln() + t * (high.ln() - low.ln())).exp()),
                        ParamKind::Int { low, high, .. } => {
                            Value::Int(low + (t * (high - low) as f64).round() as i64)
                        }
                        ParamKind::Stepped(steps) => steps.value((t * steps.count as f64) as u64),
                        ParamKind::Categorical { choices } => {
                            Value::Categorical(choices[(k + i) % choices.len()].clone())
                        }
                    };
                    (spec.name.clone(), v)
                })
                .collect()
        })
        .collect()
}
