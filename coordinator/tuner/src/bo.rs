//! The BO step: fits the GP, then fills a batch point by point with the constant liar or greedy
//! Monte Carlo q-EI, rejecting candidates that decode to an assignment already observed,
//! pending or chosen (so integer rounding never yields duplicates).
//!
//! Constant liar (Ginsbourger, Le Riche and Carraro 2010): every pending trial and every point
//! already chosen for this batch enters the GP as a fantasy observation whose value is the lie
//! (see [`crate::BatchStrategy`]); the GP keeps the hyperparameters and standardization fitted on
//! the real data and is conditioned on the fantasies by extending its Cholesky factor
//! ([`Gp::extended`], `O(n²)` a point) before the next point is chosen.
//!
//! q-LogEI ([`crate::acquisition::qei::QEi`], the default) models the pending and already
//! chosen points jointly, at most [`MAX_JOINT_SET`] of them; older pending points enter its GP
//! as best-value lies, as the liar's do, so its cost stays bounded however many trials run.
//!
//! In a space with categoricals, each point's choices are drawn first, from one sample of the
//! GP's posterior ([`ChoiceSampler`], Thompson sampling), and the acquisition then searches the
//! other coordinates with those choices held ([`crate::choice::Fixed`]); see
//! [`crate::SuggestConfig::sample_choices`]. A batch's state is [`batch::Batch`].
//!
//! The GP models the warped values ([`Warp`]: a Yeo-Johnson power transform fitted by
//! likelihood), so the lies are warped the same way as the observations. The EI incumbent is
//! the best real observation when the fitted noise is negligible, else the best posterior mean
//! at the observed points (a noisy draw that came out lucky does not set the bar).

mod batch;

use crate::acquisition::Acquisition;
use crate::choice::{ChoiceSampler, held};
use crate::design::{Seen, random_points};
use crate::error::Result;
use crate::gp::Gp;
use crate::lattice::Lattice;
use crate::optimize::candidates;
use crate::rng::Rng;
use crate::space::{Assignment, Space};
use crate::warp::Warp;
use crate::{BatchStrategy, Direction, Model, SuggestConfig};
use batch::{Basis, Batch};

/// L-BFGS iterations of each acquisition refinement.
const REFINE_ITERATIONS: usize = 60;
/// Points re-scored after snapping to the values they decode to.
const SNAP_RESCORE: usize = 64;
/// Distance (in every encoded coordinate) up to which a snapped point is the point it came from,
/// so its score is not recomputed: a float parameter's decode-encode round trip moves it by
/// rounding only, while an integer's or a categorical's moves it by a whole step or not at all.
const SNAP_UNMOVED: f64 = 1e-12;
/// Observed points whose neighbourhoods get local candidates.
const INCUMBENTS: usize = 5;
/// Noise variance (standardized) up to which the best observation is the EI incumbent.
const NEGLIGIBLE_NOISE: f64 = 1e-3;
/// Pending and chosen points that q-LogEI models jointly at most. The joint covariance, and so
/// a candidate's cost, grows with the set; older points beyond it enter the GP as best-value
/// lies (the constant liar) instead, so a fleet experiment with hundreds of trials running
/// pays for a set of this size, not for hundreds.
pub(crate) const MAX_JOINT_SET: usize = 16;
/// q-LogEI scores every `QEI_CANDIDATE_STRIDE`-th candidate (the same mix of Sobol', uniform and
/// local points, half as many): its Monte Carlo estimate costs about three times the analytic
/// LogEI's a candidate, and scoring took most of a q = 8 proposal (docs/BENCHMARKS.md §2).
const QEI_CANDIDATE_STRIDE: usize = 2;

/// Fits the GP to encoded points and warped minimization-oriented values ([`Warp`]), with the
/// overlap kernel in `space`'s categorical dimensions when [`SuggestConfig::mixed_search`] is
/// set.
pub(crate) fn fit_gp(
    space: &Space,
    x: &[Vec<f64>],
    y_min: &[f64],
    cfg: &SuggestConfig,
    seed: u64,
    warm: Option<&[f64]>,
) -> Result<(Gp, Warp)> {
    let warp = Warp::fit(y_min);
    let warped: Vec<f64> = y_min.iter().map(|y| warp.apply(*y)).collect();
    let categories = if cfg.mixed_search {
        space.categories()
    } else {
        Vec::new()
    };
    let options = crate::fit::FitOptions {
        warm,
        deterministic: cfg.deterministic,
        categories: &categories,
        deadline: cfg.deadline,
    };
    let gp = crate::fit::fit_gp_opts(x, &warped, cfg.fit_restarts, seed, &options)?;
    Ok((gp, warp))
}

/// The EI incumbent (standardized): the best observation when the fitted noise is negligible
/// (below [`NEGLIGIBLE_NOISE`]), otherwise the best posterior mean at the observed points, which
/// a lucky noisy draw does not pull below what the model believes.
fn incumbent_value(gp: &Gp) -> f64 {
    let best_observed = gp
        .y_standardized()
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    if gp.noise_variance() <= NEGLIGIBLE_NOISE {
        return best_observed;
    }
    gp.predict_batch(gp.x())
        .0
        .into_iter()
        .fold(f64::INFINITY, f64::min)
}

/// The lie in the model's internal (minimization) units. `McQei` uses the best value when it
/// falls back to a liar (when the set's joint covariance cannot be factored).
fn lie_value(model: &Model, batch: BatchStrategy) -> f64 {
    let sign = match model.config.direction {
        Direction::Minimize => 1.0,
        Direction::Maximize => -1.0,
    };
    let user = model.y_min.iter().map(|y| sign * y);
    let lie_user = match batch {
        BatchStrategy::ClMin => user.fold(f64::INFINITY, f64::min),
        BatchStrategy::ClMax => user.fold(f64::NEG_INFINITY, f64::max),
        // The standardization's mean, which cannot overflow on values near f64::MAX.
        BatchStrategy::ClMean => crate::gp::standardization(&user.collect::<Vec<f64>>()).0,
        BatchStrategy::McQei => return model.y_min.iter().copied().fold(f64::INFINITY, f64::min),
    };
    sign * lie_user
}

/// The encoded observed points, best first.
fn incumbents(model: &Model) -> Vec<Vec<f64>> {
    let mut order: Vec<usize> = (0..model.y_min.len()).collect();
    order.sort_by(|a, b| model.y_min[*a].total_cmp(&model.y_min[*b]));
    order
        .into_iter()
        .take(INCUMBENTS)
        .map(|i| model.x[i].clone())
        .collect()
}

/// A point a batch has taken: its assignment and its encoding.
type Picked = (Assignment, Vec<f64>);

/// Picks the best unseen point of a maximization; records it in `seen`.
fn pick(
    space: &Space,
    acquisition: &impl Acquisition,
    scored: Vec<(Vec<f64>, f64)>,
    seen: &mut Seen,
) -> Option<Picked> {
    let mut snapped: Vec<(Vec<f64>, f64)> = scored
        .iter()
        .take(SNAP_RESCORE)
        .map(|(x, value)| {
            let snapped = space.snap(x);
            // A float's decode-encode round trip moves it by an ulp or so: its score stands.
            let moved = snapped
                .iter()
                .zip(x)
                .any(|(a, b)| (a - b).abs() > SNAP_UNMOVED);
            let value = if moved {
                acquisition.value(&snapped)
            } else {
                *value
            };
            (snapped, value)
        })
        .collect();
    snapped.sort_by(|a, b| b.1.total_cmp(&a.1));
    let rest = scored
        .into_iter()
        .skip(SNAP_RESCORE)
        .map(|(x, v)| (space.snap(&x), v));
    for (x, _) in snapped.into_iter().chain(rest) {
        let a = space.decode(&x);
        if seen.insert(&a) {
            return Some((a, x));
        }
    }
    None
}

/// Where q-LogEI's joint set starts among `len` pending and chosen points (oldest first) when
/// the first `folded` are already lies in its GP: never before `folded`, and late enough that at
/// most [`MAX_JOINT_SET`] remain.
fn joint_set_start(len: usize, folded: usize) -> usize {
    folded.max(len.saturating_sub(MAX_JOINT_SET))
}

/// Proposes `q` points with the fitted `gp`.
pub(crate) fn propose(
    model: &Model,
    gp: &Gp,
    pending_x: &[Vec<f64>],
    seen: &mut Seen,
    q: usize,
    cfg: &SuggestConfig,
    rng: &mut Rng,
) -> Result<Vec<Assignment>> {
    let space = &model.space;
    let best = incumbent_value(gp);
    let lie = model.warp.apply(lie_value(model, cfg.batch));
    let local = incumbents(model);
    let lattice = if cfg.mixed_search {
        Lattice::new(space)
    } else {
        Lattice::continuous(space.dim())
    };
    let basis = Basis {
        gp,
        space,
        lattice: &lattice,
        cfg,
        best,
        lie,
    };
    let mut batch = Batch::new(basis, pending_x);
    let mut chosen = Vec::with_capacity(q);
    // Each point's categorical choices, drawn from the posterior (crate::choice).
    let sampler = if cfg.sample_choices {
        ChoiceSampler::new(
            space,
            gp,
            |count, rng| candidates(&lattice, count, &local, rng),
            rng,
        )
    } else {
        None
    };
    for _ in 0..q {
        cfg.check_deadline()?;
        let drawn = sampler.as_ref().map(|s| s.sample(rng)).unwrap_or_default();
        let fresh = candidates(&lattice, cfg.candidates, &local, rng);
        // The drawn choices first; when every candidate with them decodes to an assignment
        // already seen (a space of few discrete values), every choice.
        let picked = if drawn.is_empty() {
            batch.choose(fresh, &[], seen, rng)?
        } else {
            let with_drawn = fresh.iter().map(|p| held(p, &drawn)).collect();
            match batch.choose(with_drawn, &drawn, seen, rng)? {
                Some(picked) => Some(picked),
                None => batch.choose(fresh, &[], seen, rng)?,
            }
        };
        let Some((assignment, x)) = picked else {
            chosen.extend(random_points(space, seen, 1, rng));
            continue;
        };
        batch.push(x);
        chosen.push(assignment);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Observation, Strategy, fit};

    /// One float parameter on `[0, 1]`.
    fn unit_space() -> Space {
        Space::unit_cube(1).expect("valid")
    }

    fn model(direction: Direction) -> Model {
        let space = unit_space();
        let observations: Vec<Observation> = [1.0, 5.0, 3.0]
            .iter()
            .enumerate()
            .map(|(i, v)| Observation {
                params: space.decode(&[0.2 + 0.3 * i as f64]),
                value: *v,
            })
            .collect();
        let cfg = SuggestConfig {
            strategy: Strategy::Bo,
            direction,
            initial_trials: 2,
            ..SuggestConfig::default()
        };
        fit(&space, &observations, &cfg, 1).expect("fits")
    }

    /// A model of `values` at evenly spread points of `[0, 1]`.
    fn model_of(values: &[f64], cfg: &SuggestConfig) -> Model {
        let space = unit_space();
        let n = values.len() as f64;
        let observations: Vec<Observation> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Observation {
                params: space.decode(&[(i as f64 + 0.5) / n]),
                value: *v,
            })
            .collect();
        fit(&space, &observations, cfg, 1).expect("fits")
    }

    #[test]
    fn noisy_incumbent_is_the_best_posterior_mean() {
        // A smooth trend plus Gaussian noise of sd 0.3: the fit explains the scatter as noise.
        let mut noise = crate::rng::Rng::new(4);
        let values: Vec<f64> = (0..40)
            .map(|i| (3.0 * f64::from(i) / 40.0).sin() + 0.3 * noise.normal())
            .collect();
        let model = model_of(&values, &SuggestConfig::default());
        let gp = model.gp().expect("BO model");
        assert!(
            gp.noise_variance() > NEGLIGIBLE_NOISE,
            "{}",
            gp.noise_variance()
        );
        let means = gp.predict_batch(gp.x()).0;
        let argmin = means.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(incumbent_value(gp), argmin);
        let best_observed = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        assert!(argmin > best_observed, "{argmin} vs {best_observed}");
        // Pinned noise: the incumbent is the best observation.
        let cfg = SuggestConfig {
            deterministic: true,
            ..SuggestConfig::default()
        };
        let pinned = model_of(&values, &cfg);
        let gp = pinned.gp().expect("BO model");
        let best_observed = gp
            .y_standardized()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        assert_eq!(incumbent_value(gp), best_observed);
    }

    #[test]
    fn lies_are_warped_like_the_observations() {
        let values: Vec<f64> = (0..12).map(|i| 10f64.powi(i % 6) + f64::from(i)).collect();
        for direction in [Direction::Minimize, Direction::Maximize] {
            let cfg = SuggestConfig::new(Strategy::Bo, direction);
            let user: Vec<f64> = match direction {
                Direction::Minimize => values.clone(),
                Direction::Maximize => values.iter().map(|v| -v).collect(),
            };
            let model = model_of(&user, &cfg);
            let gp = model.gp().expect("BO model");
            let (mean, std) = gp.standardization();
            let lie = model.warp.apply(lie_value(&model, cfg.batch));
            let best = gp
                .y_standardized()
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            // The best-value lie is the best warped observation, in either direction.
            assert!(((lie - mean) / std - best).abs() < 1e-12, "{direction:?}");
            assert!(model.warp.lambda() < 1.0, "heavy tail compressed");
        }
    }

    #[test]
    fn the_joint_set_keeps_the_newest_points_and_never_unfolds() {
        assert_eq!(joint_set_start(0, 0), 0);
        assert_eq!(joint_set_start(MAX_JOINT_SET, 0), 0);
        assert_eq!(joint_set_start(MAX_JOINT_SET + 5, 0), 5);
        assert_eq!(joint_set_start(MAX_JOINT_SET + 6, 5), 6);
        // Points already folded stay folded.
        assert_eq!(joint_set_start(3, 2), 2);
    }

    #[test]
    fn q_log_ei_with_more_pending_trials_than_its_joint_set_gives_new_distinct_points() {
        let space = unit_space();
        let observations: Vec<Observation> = (0..12)
            .map(|i| {
                let x = (f64::from(i) + 0.5) / 12.0;
                Observation {
                    params: space.decode(&[x]),
                    value: (6.0 * x).sin(),
                }
            })
            .collect();
        // Far more pending trials than the joint set holds.
        let pending: Vec<Assignment> = (0..MAX_JOINT_SET * 2 + 3)
            .map(|i| space.decode(&[(i as f64 + 0.25) / (MAX_JOINT_SET * 2 + 3) as f64]))
            .collect();
        let cfg = SuggestConfig {
            batch: BatchStrategy::McQei,
            initial_trials: 2,
            ..SuggestConfig::default()
        };
        let out = crate::suggest(&space, &observations, &pending, 4, &cfg, 3).expect("suggests");
        assert_eq!(out.len(), 4);
        for (i, c) in out.iter().enumerate() {
            assert!(!pending.contains(&c.params), "{:?} is pending", c.params);
            assert!(!out[..i].iter().any(|o| o.params == c.params), "repeated");
        }
        let again = crate::suggest(&space, &observations, &pending, 4, &cfg, 3).expect("suggests");
        assert_eq!(out, again, "deterministic for a seed");
    }

    #[test]
    fn lies_are_named_in_user_units() {
        let minimize = model(Direction::Minimize);
        assert_eq!(lie_value(&minimize, BatchStrategy::ClMin), 1.0);
        assert_eq!(lie_value(&minimize, BatchStrategy::ClMax), 5.0);
        assert_eq!(lie_value(&minimize, BatchStrategy::ClMean), 3.0);
        // Maximizing, internal values are negated: ClMin (user 1.0, the worst) is internal -1.0,
        // the largest internal value; ClMax (user 5.0, the best) is internal -5.0.
        let maximize = model(Direction::Maximize);
        assert_eq!(lie_value(&maximize, BatchStrategy::ClMin), -1.0);
        assert_eq!(lie_value(&maximize, BatchStrategy::ClMax), -5.0);
        assert_eq!(lie_value(&maximize, BatchStrategy::McQei), -5.0);
        assert_eq!(
            BatchStrategy::best_value_lie(Direction::Maximize),
            BatchStrategy::ClMax
        );
    }
}
