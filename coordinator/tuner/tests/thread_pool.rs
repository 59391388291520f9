//! A BO round does not depend on rayon's pool. The tuner spreads candidate scoring, acquisition
//! refinements, a cold fit's restarts and (after a round whose noise was fitted) the
//! worst-mean and values'-mean fits over the pool's threads; every such piece computes the same
//! numbers on any thread and is combined in a fixed order, so one thread and four must give the
//! same hyperparameters and the same suggestions, bit for bit. The cases take each of those
//! paths: a cold fit of 40 results (restarts), warm fits past 100 results of noise-free values
//! (the pinned warm fit) and of noisy ones (both fits at once).

use tuner::fit::WORST_MEAN_MAX_NOISE;
use tuner::rng::Rng;
use tuner::space::{Assignment, Space};
use tuner::{Observation, SuggestConfig, fit_warm, propose};

fn space() -> Space {
    Space::unit_cube(4).expect("valid space")
}

/// `n` results of a smooth 4-D function at random points, with Gaussian noise of sd `noise`.
fn observations(space: &Space, n: usize, noise: f64) -> Vec<Observation> {
    let mut rng = Rng::new(29);
    (0..n)
        .map(|_| {
            let x = rng.point(4);
            let value = (5.0 * x[0]).sin() + (x[1] - 0.3).powi(2) + x[2] * x[3];
            Observation {
                params: space.decode(&x),
                value: value + noise * rng.normal(),
            }
        })
        .collect()
}

/// The fitted hyperparameters and 4 suggestions of one round, on a pool of `threads`.
fn round(
    threads: usize,
    space: &Space,
    observations: &[Observation],
    warm: Option<&[f64]>,
) -> (Option<Vec<f64>>, Vec<Assignment>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a pool");
    pool.install(|| {
        let cfg = SuggestConfig::default();
        let model = fit_warm(space, observations, &cfg, 7, warm).expect("fits");
        let points = propose(&model, &[], 4, &cfg, 7).expect("proposes");
        (
            model.hyperparameters(),
            points.into_iter().map(|c| c.params).collect(),
        )
    })
}

#[test]
fn one_thread_and_four_give_the_same_round() {
    let space = space();
    let cold = observations(&space, 40, 0.0);
    assert_eq!(round(1, &space, &cold, None), round(4, &space, &cold, None));
    for (noise, pinned) in [(0.0, true), (0.3, false)] {
        let results = observations(&space, 120, noise);
        let (previous, _) = round(4, &space, &results[..119], None);
        let previous = previous.expect("a BO model");
        let log_noise = previous[previous.len() - 1];
        if pinned {
            assert!(log_noise < -18.0, "noise-free results pin: {previous:?}");
        } else {
            assert!(
                log_noise > WORST_MEAN_MAX_NOISE.ln(),
                "noisy results end on the values' mean: {previous:?}"
            );
        }
        let one = round(1, &space, &results, Some(&previous));
        let four = round(4, &space, &results, Some(&previous));
        assert!(one.0.is_some() && one.1.len() == 4);
        assert_eq!(one, four, "noise sd {noise}");
    }
}
