use super::*;
use crate::rng::Rng;
use crate::space::{ParamKind, ParamSpec, Value};
use crate::{Observation, SuggestConfig, fit};

/// A float `x0` on `[0, 1]` and a categorical `c` of three choices.
fn space() -> Space {
    let mut params = Space::unit_cube(1).expect("valid").params().to_vec();
    params.push(ParamSpec {
        name: "c".into(),
        kind: ParamKind::Categorical {
            choices: vec!["a".into(), "b".into(), "c".into()],
        },
        default: None,
    });
    Space::new(params).expect("valid")
}

/// The sampler of `model` over uniform base points, seeded by `rng`.
fn sampler_of(model: &crate::Model, rng: &mut Rng) -> ChoiceSampler {
    ChoiceSampler::new(
        model.space(),
        model.gp().expect("a BO model"),
        |count, rng| (0..count).map(|_| rng.point(2)).collect(),
        rng,
    )
    .expect("a categorical space samples")
}

/// Ten evenly spread values of `x` for each choice in `choices`.
fn grid(choices: &[usize]) -> Vec<(usize, f64)> {
    choices
        .iter()
        .flat_map(|&c| (0..10).map(move |i| (c, (f64::from(i) + 0.5) / 10.0)))
        .collect()
}

/// A GP of `f(x, choice)` at 10 evenly spread `x` for each choice in `choices`.
fn gp_of(choices: &[usize], f: impl Fn(f64, usize) -> f64) -> crate::Model {
    gp_at(&grid(choices), f)
}

/// A GP of `f(x, choice)` at the `(choice, x)` pairs of `at`.
fn gp_at(at: &[(usize, f64)], f: impl Fn(f64, usize) -> f64) -> crate::Model {
    let space = space();
    let observations: Vec<Observation> = at
        .iter()
        .map(|&(c, x)| Observation {
            params: space.decode(&[x, choice_coordinate(c, 3)]),
            value: f(x, c),
        })
        .collect();
    fit(&space, &observations, &SuggestConfig::default(), 1).expect("fits")
}

/// How often each choice wins in `draws` draws.
fn wins(model: &crate::Model, draws: usize) -> [usize; 3] {
    let mut rng = Rng::new(9);
    let sampler = sampler_of(model, &mut rng);
    let mut counts = [0; 3];
    for _ in 0..draws {
        let held = sampler.sample(&mut rng);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0, 1, "the categorical's coordinate");
        let choice = (0..3)
            .find(|&c| (choice_coordinate(c, 3) - held[0].1).abs() < 1e-12)
            .expect("a choice's centre");
        counts[choice] += 1;
    }
    counts
}

#[test]
fn a_clearly_better_choice_wins_nearly_every_draw() {
    let model = gp_of(&[0, 1, 2], |x, c| (x - 0.5).powi(2) + [0.0, 1.0, 1.0][c]);
    let counts = wins(&model, 200);
    assert!(counts[0] >= 190, "{counts:?}");
}

#[test]
fn a_choice_barely_tried_is_still_drawn() {
    // Choice `c` was tried at its two worst points only, both worse than choice `a`'s best: no
    // result shows it better, but the posterior allows it to be better in between, so some
    // draws pick it, though fewer than the choice the data favour.
    let mut at = grid(&[0, 1]);
    at.extend([(2, 0.05), (2, 0.95)]);
    let model = gp_at(&at, |x, c| 4.0 * (x - 0.5).powi(2) + [0.0, 0.5, -0.3][c]);
    let counts = wins(&model, 200);
    assert!(counts[2] > 0, "{counts:?}");
    assert!(counts[0] > counts[2], "{counts:?}");
    assert!(counts[1] < counts[0], "{counts:?}");
}

#[test]
fn every_choice_is_in_the_pool_once_a_base_point() {
    let model = gp_of(&[0, 1, 2], |x, c| x + c as f64);
    let sampler = sampler_of(&model, &mut Rng::new(3));
    assert_eq!(sampler.pool.len(), POOL_BASE * 3);
    for copies in sampler.pool.chunks(3) {
        let mut seen: Vec<f64> = copies.iter().map(|p| p[1]).collect();
        seen.sort_by(f64::total_cmp);
        let centres: Vec<f64> = (0..3).map(|c| choice_coordinate(c, 3)).collect();
        assert_eq!(seen, centres);
        assert!(
            copies.iter().all(|p| p[0] == copies[0][0]),
            "same base point"
        );
    }
}

#[test]
fn the_pool_stays_within_its_cap() {
    assert_eq!(ChoiceSampler::base_points(3), POOL_BASE);
    assert_eq!(ChoiceSampler::base_points(50), 10);
    for choices in [2, 3, 7, 64, 300, 512, 513, 5000] {
        let copies = ChoiceSampler::copies(choices);
        assert!(copies <= choices);
        assert!(ChoiceSampler::base_points(copies) * copies <= MAX_POOL);
    }
}

#[test]
fn a_categorical_of_thousands_of_choices_samples_from_a_capped_pool() {
    let choices: Vec<String> = (0..3000).map(|i| format!("c{i}")).collect();
    let mut params = Space::unit_cube(1).expect("valid").params().to_vec();
    params.push(ParamSpec {
        name: "c".into(),
        kind: ParamKind::Categorical {
            choices: choices.clone(),
        },
        default: None,
    });
    let space = Space::new(params).expect("valid");
    let observations: Vec<Observation> = (0..12)
        .map(|i| {
            let x = (f64::from(i) + 0.5) / 12.0;
            Observation {
                params: space.decode(&[x, x]),
                value: (x - 0.4).powi(2),
            }
        })
        .collect();
    let model = fit(&space, &observations, &SuggestConfig::default(), 1).expect("fits");
    let mut rng = Rng::new(2);
    let sampler = ChoiceSampler::new(
        &space,
        model.gp().expect("a BO model"),
        |count, rng| (0..count).map(|_| rng.point(2)).collect(),
        &mut rng,
    )
    .expect("samples");
    assert_eq!(sampler.pool.len(), MAX_POOL);
    let held = sampler.sample(&mut rng);
    let index = (held[0].1 * 3000.0 - 0.5).round();
    assert!((0.0..3000.0).contains(&index));
    assert!((choice_coordinate(index as usize, 3000) - held[0].1).abs() < 1e-12);
    let batch = crate::propose(&model, &[], 4, &SuggestConfig::default(), 3).expect("proposes");
    assert_eq!(batch.len(), 4);
}

#[test]
fn a_space_without_categoricals_has_no_sampler_and_draws_nothing() {
    let space = Space::unit_cube(2).expect("valid");
    let observations: Vec<Observation> = (0..8)
        .map(|i| {
            let x = f64::from(i) / 8.0;
            Observation {
                params: space.decode(&[x, 1.0 - x]),
                value: x * x,
            }
        })
        .collect();
    let model = fit(&space, &observations, &SuggestConfig::default(), 1).expect("fits");
    let mut rng = Rng::new(5);
    let mut untouched = rng.clone();
    let sampler = ChoiceSampler::new(
        &space,
        model.gp().expect("a BO model"),
        |_, _| panic!("no pool is built"),
        &mut rng,
    );
    assert!(sampler.is_none());
    assert_eq!(rng.next_u64(), untouched.next_u64());
}

/// `-(x₀ − 0.3)² − 2 (x₁ − 0.7)²`, with its gradient.
struct Bowl;

impl Acquisition for Bowl {
    fn dim(&self) -> usize {
        2
    }
    fn value(&self, x: &[f64]) -> f64 {
        -(x[0] - 0.3).powi(2) - 2.0 * (x[1] - 0.7).powi(2)
    }
    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad[0] = -2.0 * (x[0] - 0.3);
        grad[1] = -4.0 * (x[1] - 0.7);
        self.value(x)
    }
}

#[test]
fn fixed_coordinates_are_held_and_get_no_gradient() {
    let fixed = [(1, 0.2)];
    let held_bowl = Fixed {
        inner: &Bowl,
        fixed: &fixed,
    };
    let mut grad = [0.0; 2];
    for x in [[0.1, 0.9], [0.3, 0.2], [0.8, 0.0]] {
        let expected = Bowl.value(&[x[0], 0.2]);
        assert_eq!(held_bowl.value(&x), expected);
        assert_eq!(held_bowl.value_and_grad(&x, &mut grad), expected);
        assert_eq!(grad, [-2.0 * (x[0] - 0.3), 0.0]);
    }
    let points = vec![vec![0.1, 0.9], vec![0.5, 0.5]];
    assert_eq!(
        held_bowl.values(&points),
        vec![Bowl.value(&[0.1, 0.2]), Bowl.value(&[0.5, 0.2])]
    );
    // Nothing fixed: the inner acquisition exactly.
    let free = Fixed {
        inner: &Bowl,
        fixed: &[],
    };
    assert_eq!(free.value(&[0.1, 0.9]), Bowl.value(&[0.1, 0.9]));
    assert_eq!(
        free.value_and_grad(&[0.1, 0.9], &mut grad),
        Bowl.value(&[0.1, 0.9])
    );
    assert_eq!(grad, [-2.0 * (0.1 - 0.3), -4.0 * (0.9 - 0.7)]);
}

#[test]
fn proposals_keep_the_drawn_choices_valid_and_distinct() {
    // A batch of 8 from a model with one unexplored choice: valid, distinct assignments.
    let mut at = grid(&[0, 1]);
    at.extend([(2, 0.05), (2, 0.95)]);
    let model = gp_at(&at, |x, c| 4.0 * (x - 0.5).powi(2) + [0.0, 0.5, -0.3][c]);
    let batch = crate::propose(&model, &[], 8, &SuggestConfig::default(), 4).expect("proposes");
    assert_eq!(batch.len(), 8);
    let mut seen = std::collections::BTreeSet::new();
    for candidate in &batch {
        assert!(
            matches!(candidate.params.get("c"), Some(Value::Categorical(c)) if ["a", "b", "c"].contains(&c.as_str()))
        );
        assert!(seen.insert(format!("{:?}", candidate.params)), "duplicate");
    }
}

#[test]
fn a_drawn_choice_with_nothing_left_gives_way_to_the_others() {
    // Choice `a` at every integer, `b` at the two ends only: most draws favour `a`, whose
    // assignments are all seen, so the point must come from searching `b`, where the model
    // expects the middle to be best (the random fallback would land anywhere in 1..=19).
    let space = Space::new(vec![
        ParamSpec {
            name: "k".into(),
            kind: ParamKind::Int {
                low: 0,
                high: 20,
                log: false,
            },
            default: None,
        },
        ParamSpec {
            name: "c".into(),
            kind: ParamKind::Categorical {
                choices: vec!["a".into(), "b".into()],
            },
            default: None,
        },
    ])
    .expect("valid");
    let observation = |k: i64, c: &str, value: f64| Observation {
        params: [
            ("k".to_string(), Value::Int(k)),
            ("c".to_string(), Value::Categorical(c.into())),
        ]
        .into_iter()
        .collect(),
        value,
    };
    let mut observations: Vec<Observation> = (0..=20)
        .map(|k| observation(k, "a", ((k - 10) as f64).powi(2) / 100.0))
        .collect();
    observations.push(observation(0, "b", 1.5));
    observations.push(observation(20, "b", 1.5));
    let model = fit(&space, &observations, &SuggestConfig::default(), 1).expect("fits");
    for seed in 0..5 {
        let batch = crate::propose(&model, &[], 1, &SuggestConfig::default(), seed).expect("one");
        let k = batch[0].params.get("k").and_then(Value::as_f64).expect("k");
        assert_eq!(
            batch[0].params.get("c"),
            Some(&Value::Categorical("b".into()))
        );
        assert!((k - 10.0).abs() <= 3.0, "seed {seed}: k = {k}");
    }
}
