//! Tests of the crate's entry points: BO finds minima and maxima, the GP sees a subset above
//! `max_model_points` and models only the newest pending points, integer spaces never repeat, invalid input is an error, the initial design
//! never takes most of a small budget, and length-scales are named by parameter.

use super::*;
use space::{ParamSpec, Value};

fn unit_space(dim: usize) -> Space {
    Space::unit_cube(dim).expect("valid")
}

fn run_loop(
    space: &Space,
    cfg: &SuggestConfig,
    evaluations: usize,
    q: usize,
    f: impl Fn(&[f64]) -> f64,
) -> f64 {
    let mut observations: Vec<Observation> = Vec::new();
    let mut round = 0;
    while observations.len() < evaluations {
        for c in suggest(space, &observations, &[], q, cfg, round).expect("suggests") {
            let x = space.encode(&c.params).expect("encodes");
            observations.push(Observation {
                params: c.params,
                value: f(&x),
            });
        }
        round += 1;
    }
    observations
        .iter()
        .map(|o| o.value)
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn bo_finds_the_minimum_of_a_smooth_function() {
    let space = unit_space(2);
    let f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2);
    let best = run_loop(&space, &SuggestConfig::default(), 20, 1, f);
    assert!(best < 1e-4, "best {best}");
    let batch = run_loop(&space, &SuggestConfig::default(), 24, 4, f);
    assert!(batch < 1e-3, "batch best {batch}");
}

#[test]
fn above_max_model_points_the_gp_sees_a_subset_with_the_best_results() {
    let space = unit_space(2);
    let f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2);
    let mut rng = rng::Rng::new(5);
    let observations: Vec<Observation> = (0..90)
        .map(|_| {
            let x = rng.point(2);
            Observation {
                params: space.decode(&x),
                value: f(&x),
            }
        })
        .collect();
    let cfg = SuggestConfig {
        max_model_points: 40,
        ..SuggestConfig::default()
    };
    let model = fit(&space, &observations, &cfg, 3).expect("fits");
    let gp = model.gp().expect("BO model");
    assert_eq!(gp.x().len(), 40, "the GP holds the cap");
    assert_eq!(
        model.observation_count(),
        90,
        "the model keeps every result"
    );
    let best = observations
        .iter()
        .min_by(|a, b| a.value.total_cmp(&b.value))
        .expect("results");
    let best_x = space.encode(&best.params).expect("encodes");
    assert!(gp.x().contains(&best_x), "the best result is modelled");
    // Proposals avoid every result, modelled or not, and are deterministic for a seed.
    let out = propose(&model, &[], 6, &cfg, 3).expect("proposes");
    assert_eq!(out.len(), 6);
    for c in &out {
        assert!(!observations.iter().any(|o| o.params == c.params));
    }
    assert_eq!(out, propose(&model, &[], 6, &cfg, 3).expect("proposes"));
    // At or under the cap every result is modelled.
    let all = fit(&space, &observations[..40], &cfg, 3).expect("fits");
    assert_eq!(all.gp().expect("BO model").x().len(), 40);
    let bad = SuggestConfig {
        max_model_points: 7,
        ..SuggestConfig::default()
    };
    let err = fit(&space, &observations, &bad, 3).expect_err("below the minimum");
    assert!(err.to_string().contains("max_model_points"), "{err}");
}

/// Pending points beyond the cap are not modelled: the batch is the one the newest `cap` alone
/// give, and a larger cap (modelling them all) gives another. None is ever re-suggested.
#[test]
fn only_the_newest_pending_points_condition_the_gp() {
    let space = unit_space(2);
    let f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2);
    let mut rng = rng::Rng::new(11);
    let mut draw = |count: usize| -> Vec<Vec<f64>> { (0..count).map(|_| rng.point(2)).collect() };
    let observations: Vec<Observation> = draw(30)
        .into_iter()
        .map(|x| Observation {
            params: space.decode(&x),
            value: f(&x),
        })
        .collect();
    let pending: Vec<Assignment> = draw(50).iter().map(|x| space.decode(x)).collect();
    let cap = 20;
    let capped = SuggestConfig {
        max_model_points: cap,
        ..SuggestConfig::default()
    };
    let all = suggest(&space, &observations, &pending, 4, &capped, 3).expect("suggests");
    let newest = &pending[pending.len() - cap..];
    let only_newest = suggest(&space, &observations, newest, 4, &capped, 3).expect("suggests");
    assert_eq!(all, only_newest, "the older pending points were modelled");
    let uncapped = SuggestConfig {
        max_model_points: 100,
        ..SuggestConfig::default()
    };
    let every = suggest(&space, &observations, &pending, 4, &uncapped, 3).expect("suggests");
    assert_ne!(
        all, every,
        "modelling every pending point changes the batch"
    );
    for candidate in all.iter().chain(&every) {
        assert!(
            !pending.contains(&candidate.params),
            "a pending point again"
        );
    }
}

/// A deadline that has passed stops a BO round with `DeadlinePassed`: before the fit, in the
/// middle of it (a deadline that passes while the likelihood is being optimized), and between
/// the points of a batch. One that does not pass changes nothing.
#[test]
fn a_round_past_its_deadline_stops_with_an_error_and_one_in_time_is_unchanged() {
    use std::time::{Duration, Instant};
    let space = unit_space(4);
    let mut rng = rng::Rng::new(3);
    let observations: Vec<Observation> = (0..300)
        .map(|_| {
            let x = rng.point(4);
            Observation {
                params: space.decode(&x),
                value: x.iter().map(|v| (v - 0.4).powi(2)).sum::<f64>() + 0.01 * rng.uniform(),
            }
        })
        .collect();
    let with_deadline = |deadline| SuggestConfig {
        deadline,
        ..SuggestConfig::default()
    };
    let past = with_deadline(Some(Instant::now()));
    let error = suggest(&space, &observations, &[], 4, &past, 1).expect_err("past");
    assert_eq!(error, Error::DeadlinePassed);
    assert!(error.to_string().contains("deadline"), "{error}");
    // A deadline that passes while the GP is being fitted ends the call with the error.
    let soon = with_deadline(Some(Instant::now() + Duration::from_millis(1)));
    let error = fit(&space, &observations, &soon, 1).expect_err("passes during the fit");
    assert_eq!(error, Error::DeadlinePassed);
    // A model fitted in time, and a batch whose deadline passed before its points.
    let model = fit(&space, &observations, &SuggestConfig::default(), 1).expect("fits");
    let error = propose(&model, &[], 4, &past, 1).expect_err("past");
    assert_eq!(error, Error::DeadlinePassed);
    // The fit stops inside: past the deadline every likelihood evaluation fails (L-BFGS takes a
    // failed evaluation as a failed step and stops).
    let x: Vec<Vec<f64>> = observations
        .iter()
        .map(|o| space.encode(&o.params).expect("encodes"))
        .collect();
    let y: Vec<f64> = observations.iter().map(|o| o.value).collect();
    let mut grad = vec![0.0; 6];
    let theta = [0.0, 0.0, 0.0, 0.0, 0.0, -3.0];
    let mut likelihood = lml::Likelihood::new(&x, &y);
    assert!(likelihood.evaluate(&theta, &mut grad).is_ok());
    let mut stopped = lml::Likelihood::new(&x, &y).with_deadline(Some(Instant::now()));
    assert_eq!(
        stopped.evaluate(&theta, &mut grad),
        Err(Error::DeadlinePassed)
    );
    let later = with_deadline(Some(Instant::now() + Duration::from_secs(3600)));
    assert_eq!(
        suggest(&space, &observations, &[], 4, &later, 1).expect("in time"),
        suggest(&space, &observations, &[], 4, &SuggestConfig::default(), 1).expect("no deadline"),
    );
}

#[test]
fn maximization_finds_the_maximum() {
    let space = unit_space(1);
    let cfg = SuggestConfig::new(Strategy::Bo, Direction::Maximize);
    let mut observations = Vec::new();
    for round in 0..12u64 {
        for c in suggest(&space, &observations, &[], 1, &cfg, round).expect("suggests") {
            let x = c.params["x0"].as_f64().expect("float");
            observations.push(Observation {
                params: c.params,
                value: -(x - 0.6).powi(2),
            });
        }
    }
    let best = observations
        .iter()
        .map(|o| o.value)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(best > -1e-4, "best {best}");
}

#[test]
fn integer_spaces_never_repeat() {
    let params: Vec<ParamSpec> = serde_json::from_str(r#"[{"name":"a","type":"int","low":1,"high":3},{"name":"b","type":"int","low":1,"high":4}]"#).expect("parses");
    let space = Space::new(params).expect("valid");
    let mut observations: Vec<Observation> = Vec::new();
    for round in 0..6u64 {
        for c in suggest(
            &space,
            &observations,
            &[],
            2,
            &SuggestConfig::default(),
            round,
        )
        .expect("suggests")
        {
            assert!(!observations.iter().any(|o| o.params == c.params));
            let (Value::Int(a), Value::Int(b)) = (&c.params["a"], &c.params["b"]) else {
                panic!("ints")
            };
            observations.push(Observation {
                params: c.params.clone(),
                value: (a * b) as f64,
            });
        }
    }
    assert_eq!(observations.len(), 12);
    assert_eq!(
        suggest(&space, &observations, &[], 5, &SuggestConfig::default(), 99)
            .expect("suggests")
            .len(),
        0
    );
}

#[test]
fn invalid_inputs_are_errors() {
    let space = unit_space(1);
    let bad = Observation {
        params: space.decode(&[0.5]),
        value: f64::NAN,
    };
    assert!(suggest(&space, &[bad], &[], 1, &SuggestConfig::default(), 0).is_err());
    let cfg = SuggestConfig {
        strategy: Strategy::Grid { levels: 0 },
        ..SuggestConfig::default()
    };
    assert!(suggest(&space, &[], &[], 1, &cfg, 0).is_err());
    let mut wrong = space.decode(&[0.5]);
    wrong.insert("y".into(), Value::Int(1));
    assert!(suggest(&space, &[], &[wrong], 1, &SuggestConfig::default(), 0).is_err());
}

#[test]
fn design_is_never_most_of_a_small_budget() {
    for (budget, dim) in [(4, 1), (8, 2), (10, 6), (12, 10), (30, 10), (64, 8)] {
        let cfg = SuggestConfig {
            budget,
            ..SuggestConfig::default()
        };
        let design = cfg.effective_initial_trials(dim);
        assert!(
            design <= budget.div_ceil(4).max(2),
            "{budget} {dim}: {design}"
        );
        assert!(design >= 2);
    }
    let unknown = SuggestConfig::default();
    assert_eq!(
        unknown.effective_initial_trials(10),
        11,
        "d + 1 without a budget"
    );
    let large = SuggestConfig {
        budget: 200,
        ..SuggestConfig::default()
    };
    assert_eq!(
        large.effective_initial_trials(10),
        11,
        "a large budget is not capped"
    );
    // A 10-trial experiment in 6-D: the GP proposes from the fourth trial on.
    let space = unit_space(6);
    let cfg = SuggestConfig {
        budget: 10,
        ..SuggestConfig::default()
    };
    let mut observations = Vec::new();
    for round in 0..10u64 {
        let model = fit(&space, &observations, &cfg, round).expect("fits");
        assert_eq!(
            model.gp().is_some(),
            observations.len() >= 3,
            "round {round}"
        );
        for c in propose(&model, &[], 1, &cfg, round).expect("proposes") {
            let x = space.encode(&c.params).expect("encodes");
            let value = x.iter().map(|v| (v - 0.4).powi(2)).sum();
            observations.push(Observation {
                params: c.params,
                value,
            });
        }
    }
}

#[test]
fn length_scales_name_each_parameter() {
    let space = unit_space(2);
    let observations: Vec<Observation> = (0..8)
        .map(|i| {
            let x = [i as f64 / 8.0, (i * 3 % 8) as f64 / 8.0];
            Observation {
                params: space.decode(&x),
                value: (6.0 * x[0]).sin(),
            }
        })
        .collect();
    let model = fit(&space, &observations, &SuggestConfig::default(), 0).expect("fits");
    let scales = length_scales(&model).expect("BO model");
    assert_eq!(scales[0].0, "x0");
    assert!(scales[0].1 < scales[1].1, "x0 matters more: {scales:?}");
}
