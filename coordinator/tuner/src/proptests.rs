//! Property tests of `suggest` (STYLE.md §9.4): suggestions are valid, distinct and new; a seed
//! fixes the output; an affine change of the objective does not change BO's suggestions; GP
//! variance is non-negative and near the noise level at training points; the acquisition search
//! of a mixed space never leaves the lattice of its integers and categoricals.

use proptest::prelude::*;

use crate::gp::Gp;
use crate::kernel::Matern52;
use crate::space::{Assignment, ParamKind, ParamSpec, Space, Value};
use crate::{
    BatchStrategy, Direction, Observation, Strategy as SearchStrategy, SuggestConfig, suggest,
};

fn param_kind() -> impl Strategy<Value = ParamKind> {
    prop_oneof![
        Just(ParamKind::Float {
            low: -5.0,
            high: 10.0,
            log: false
        }),
        Just(ParamKind::Float {
            low: 1e-6,
            high: 1.0,
            log: true
        }),
        (1i64..4, 2i64..20).prop_map(|(low, span)| ParamKind::Int {
            low,
            high: low + span,
            log: false
        }),
        Just(ParamKind::Int {
            low: 1,
            high: 512,
            log: true
        }),
        (1usize..4).prop_map(|k| ParamKind::Categorical {
            choices: (0..=k).map(|i| format!("c{i}")).collect()
        }),
    ]
}

fn space_strategy() -> impl Strategy<Value = Space> {
    prop::collection::vec(param_kind(), 1..=6).prop_map(|kinds| {
        let params = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| ParamSpec {
                name: format!("p{i}"),
                kind,
                default: None,
            })
            .collect();
        Space::new(params).expect("generated spaces are valid")
    })
}

/// A space, `n` observations of a smooth function and `pending` points, all from `seed`.
fn problem(
    space: &Space,
    n: usize,
    pending: usize,
    seed: u64,
) -> (Vec<Observation>, Vec<Assignment>) {
    let mut rng = crate::rng::Rng::new(seed);
    let observations = (0..n)
        .map(|_| {
            let x = space.snap(&rng.point(space.dim()));
            let value = x
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 2) as f64 * v).sin() + (v - 0.3).powi(2))
                .sum();
            Observation {
                params: space.decode(&x),
                value,
            }
        })
        .collect();
    let pending = (0..pending)
        .map(|_| space.decode(&rng.point(space.dim())))
        .collect();
    (observations, pending)
}

fn small_config(strategy: SearchStrategy, batch: BatchStrategy) -> SuggestConfig {
    SuggestConfig {
        strategy,
        batch,
        candidates: 256,
        refine_starts: 2,
        fit_restarts: 2,
        mc_samples: 64,
        ..SuggestConfig::default()
    }
}

fn strategy_choice() -> impl Strategy<Value = (SearchStrategy, BatchStrategy)> {
    prop_oneof![
        Just((SearchStrategy::Bo, BatchStrategy::ClMin)),
        Just((SearchStrategy::Bo, BatchStrategy::ClMean)),
        Just((SearchStrategy::Bo, BatchStrategy::ClMax)),
        Just((SearchStrategy::Bo, BatchStrategy::McQei)),
        Just((SearchStrategy::Random, BatchStrategy::ClMin)),
        Just((SearchStrategy::Grid { levels: 3 }, BatchStrategy::ClMin)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn suggestions_are_valid_distinct_and_new(
        space in space_strategy(), n in 0usize..40, pending in 0usize..4, q in 1usize..5,
        (strategy, batch) in strategy_choice(), mixed in any::<bool>(), seed in any::<u64>(),
    ) {
        let (observations, pending) = problem(&space, n, pending, seed);
        let cfg = SuggestConfig { mixed_search: mixed, ..small_config(strategy, batch) };
        let out = suggest(&space, &observations, &pending, q, &cfg, seed).expect("suggest succeeds");
        if !matches!(strategy, SearchStrategy::Grid { .. }) {
            // Finite spaces may run out only when tiny; these never are.
            prop_assert!(out.len() == q || space.cardinality().is_some_and(|c| c < 64));
        }
        for (i, candidate) in out.iter().enumerate() {
            prop_assert!(space.validate(&candidate.params).is_ok());
            prop_assert!(space.encode(&candidate.params).expect("encodes").iter().all(|v| (0.0..=1.0).contains(v)));
            prop_assert!(!pending.contains(&candidate.params));
            prop_assert!(!observations.iter().any(|o| space.normalize(&o.params).ok().as_ref() == Some(&candidate.params)));
            prop_assert!(!out[..i].iter().any(|c| c.params == candidate.params));
        }
    }

    #[test]
    fn a_seed_fixes_the_output(space in space_strategy(), n in 0usize..30, (strategy, batch) in strategy_choice(), mixed in any::<bool>(), seed in any::<u64>()) {
        let (observations, pending) = problem(&space, n, 1, seed);
        let cfg = SuggestConfig { mixed_search: mixed, ..small_config(strategy, batch) };
        let a = suggest(&space, &observations, &pending, 2, &cfg, seed).expect("suggest succeeds");
        let b = suggest(&space, &observations, &pending, 2, &cfg, seed).expect("suggest succeeds");
        prop_assert_eq!(a, b);
    }

    #[test]
    fn affine_changes_of_y_do_not_change_bo(dim in 1usize..=6, n in 8usize..40, scale_pow in -6i32..10, shift in -100i32..100, seed in any::<u64>()) {
        let params = (0..dim).map(|i| ParamSpec { name: format!("x{i}"), kind: ParamKind::Float { low: 0.0, high: 1.0, log: false }, default: None }).collect();
        let space = Space::new(params).expect("valid");
        let (observations, pending) = problem(&space, n, 1, seed);
        let scale = 2f64.powi(scale_pow);
        let changed: Vec<Observation> = observations.iter().map(|o| Observation { params: o.params.clone(), value: scale * o.value + f64::from(shift) }).collect();
        let cfg = small_config(SearchStrategy::Bo, BatchStrategy::ClMin);
        let a = suggest(&space, &observations, &pending, 2, &cfg, seed).expect("suggest succeeds");
        let b = suggest(&space, &changed, &pending, 2, &cfg, seed).expect("suggest succeeds");
        // A negated objective that is maximized is the same problem too.
        let negated: Vec<Observation> = observations.iter().map(|o| Observation { params: o.params.clone(), value: -o.value }).collect();
        let max_cfg = SuggestConfig { direction: Direction::Maximize, batch: BatchStrategy::ClMax, ..cfg };
        let c = suggest(&space, &negated, &pending, 2, &max_cfg, seed).expect("suggest succeeds");
        for other in [&b, &c] {
            for (x, y) in a.iter().zip(other.iter()) {
                let (ex, ey) = (space.encode(&x.params).expect("encodes"), space.encode(&y.params).expect("encodes"));
                let gap = ex.iter().zip(&ey).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
                prop_assert!(gap < 1e-3, "suggestions moved by {} under y -> {} y + {}", gap, scale, shift);
            }
        }
    }

    #[test]
    fn gp_variance_is_non_negative_and_small_at_data(dim in 1usize..=6, n in 2usize..40, seed in any::<u64>()) {
        let mut rng = crate::rng::Rng::new(seed);
        let x = rng.latin_hypercube(n, dim);
        let y: Vec<f64> = x.iter().map(|p| p.iter().map(|v| (3.0 * v).sin()).sum()).collect();
        let noise = 1e-4;
        let gp = Gp::new(Matern52::new(dim, 0.5, 1.0), noise, x.clone(), &y).expect("factors");
        for p in rng.latin_hypercube(20, dim) {
            prop_assert!(gp.predict_standardized(&p).1 >= 0.0);
        }
        for p in &x {
            let (_, var) = gp.predict_standardized(p);
            prop_assert!(var <= noise * 1.01 + gp.jitter(), "variance {} at a training point", var);
        }
    }

    #[test]
    fn discrete_acquisition_search_stays_on_the_lattice(
        space in space_strategy(), n in 6usize..30, seed in any::<u64>(),
    ) {
        use crate::acquisition::ei::LogEi;
        use crate::lattice::Lattice;
        use crate::optimize::{candidates, maximize};
        let (observations, _) = problem(&space, n, 0, seed);
        let x: Vec<Vec<f64>> = observations.iter().map(|o| space.encode(&o.params).expect("encodes")).collect();
        let y: Vec<f64> = observations.iter().map(|o| o.value).collect();
        let gp = crate::fit::fit_gp_opts(&x, &y, 2, seed, &crate::fit::FitOptions { categories: &space.categories(), ..Default::default() }).expect("fits");
        let best = gp.y_standardized().iter().copied().fold(f64::INFINITY, f64::min);
        let acquisition = LogEi::new(&gp, best);
        let lattice = Lattice::new(&space);
        let mut rng = crate::rng::Rng::new(seed);
        let points = candidates(&lattice, 128, &x[..3], &mut rng);
        let scored = maximize(&lattice, &acquisition, points, 3, 20);
        prop_assert!(!scored.is_empty());
        for (p, _) in &scored {
            prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            let snapped = space.snap(p);
            for k in lattice.discrete_dims() {
                prop_assert_eq!(p[k], snapped[k], "coordinate {} of {:?} is off the lattice", k, p);
            }
        }
        // What BO suggests for the space: integers in bounds, categoricals among the choices.
        let cfg = SuggestConfig { mixed_search: true, ..small_config(SearchStrategy::Bo, BatchStrategy::ClMin) };
        for candidate in suggest(&space, &observations, &[], 3, &cfg, seed).expect("suggest succeeds") {
            for spec in space.params() {
                match (&spec.kind, &candidate.params[&spec.name]) {
                    (ParamKind::Int { low, high, .. }, Value::Int(v)) => prop_assert!((low..=high).contains(&v)),
                    (ParamKind::Categorical { choices }, Value::Categorical(c)) => prop_assert!(choices.contains(c)),
                    (ParamKind::Float { low, high, .. }, Value::Float(v)) => prop_assert!(v >= low && v <= high),
                    (kind, value) => prop_assert!(false, "{:?} for a {:?}", value, kind),
                }
            }
        }
    }
}
