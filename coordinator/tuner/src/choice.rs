//! Categorical choices by Thompson sampling: before each point of a BO batch, draw one function
//! from the GP's joint posterior over a pool of points that covers every choice, and hold the
//! categorical coordinates at the choices of that draw's minimizer while the acquisition
//! searches the rest of the space ([`Fixed`]).
//!
//! Why: with the worst result as the GP's prior mean ([`crate::fit::fit_gp_opts`]), expected
//! improvement in a choice the data have barely touched is small everywhere, so a run that
//! first finds a good learning rate with one optimizer spends the rest of its budget there, even
//! when another optimizer is better at a learning rate of its own. On the tune problem `train6b`
//! 45 of 100 runs at q = 1 converged on a wrong choice, having evaluated the right one at 1 to 4
//! points (docs/BENCHMARKS.md §2). A posterior draw's minimum over a whole choice is low when
//! anywhere in it might beat the incumbent, so a choice is tried as often as the model thinks
//! it may be the best one; the draws settle on one choice as the data decide. With the draws,
//! 19 of the same 100 runs stuck, and at q = 8 6 instead of 29.
//!
//! A pool whose covariance cannot be factored even with jitter (never seen in the benchmarks)
//! leaves every choice to the acquisition, as before this module; so does a drawn choice whose
//! candidates all decode to assignments already seen ([`crate::bo`]'s proposal loop).
//!
//! Choosing the categorical value by a bandit and optimizing the continuous part given it is the
//! decomposition of CoCaBO (Ru et al., "Bayesian optimisation over multiple continuous and
//! categorical inputs", ICML 2020); here the bandit is Thompson sampling (Thompson 1933) from the
//! GP itself, whose draws for a batch differ, as in Kandasamy et al., "Parallelised Bayesian
//! optimisation via Thompson sampling" (AISTATS 2018).

use crate::acquisition::Acquisition;
use crate::gp::{Gp, factor_gram};
use crate::kernel::Kernel;
use crate::rng::Rng;
use crate::space::Space;

/// The most points in a sampling pool: its joint covariance is factored once a proposal
/// (`O(P³)`, a few milliseconds at 512).
pub(crate) const MAX_POOL: usize = 512;
/// Base points of a pool (each copied once per choice) when the pool allows that many.
pub(crate) const POOL_BASE: usize = 128;
/// Jitter on the pool's covariance, relative to the prior variance: its points include
/// near-duplicates, so the posterior covariance alone is rarely positive definite.
const POOL_JITTER: f64 = 1e-8;

/// Draws the categorical coordinates of a space's BO points from the GP's posterior.
pub(crate) struct ChoiceSampler {
    /// `(coordinate, number of choices)` of each categorical with two or more choices.
    categoricals: Vec<(usize, usize)>,
    pool: Vec<Vec<f64>>,
    mean: Vec<f64>,
    /// Lower Cholesky factor of the pool's posterior covariance, row-major.
    chol: Vec<f64>,
}

impl ChoiceSampler {
    /// The number of base points of a pool for `copies` choices: [`POOL_BASE`], fewer when the
    /// copies would pass [`MAX_POOL`], and at least one.
    pub(crate) fn base_points(copies: usize) -> usize {
        (MAX_POOL / copies.max(1)).clamp(1, POOL_BASE)
    }

    /// The copies of each base point for a largest categorical of `choices`: one a choice, at
    /// most [`MAX_POOL`] (a larger categorical offers a window of that many consecutive
    /// choices from a random start, a new one each proposal).
    pub(crate) fn copies(choices: usize) -> usize {
        choices.min(MAX_POOL)
    }

    /// A sampler over base points from `base(count, rng)` (encoded, in `[0,1]^d`;
    /// [`ChoiceSampler::base_points`] of them), each copied once for every choice of the space's
    /// largest categorical, up to [`ChoiceSampler::copies`] (every categorical takes its choices
    /// in rotation from a random start). `None` when `space` has no categorical with two or more
    /// choices or when the pool's covariance cannot be factored (the caller then searches every
    /// choice, as without a sampler).
    pub(crate) fn new(
        space: &Space,
        gp: &Gp,
        base: impl FnOnce(usize, &mut Rng) -> Vec<Vec<f64>>,
        rng: &mut Rng,
    ) -> Option<Self> {
        let categoricals: Vec<(usize, usize)> = space
            .categories()
            .into_iter()
            .enumerate()
            .filter(|(_, m)| *m > 1)
            .collect();
        let copies = Self::copies(categoricals.iter().map(|c| c.1).max()?);
        let base = base(Self::base_points(copies), rng);
        let mut pool = Vec::with_capacity(base.len() * copies);
        for point in &base {
            let starts: Vec<usize> = categoricals.iter().map(|(_, m)| rng.below(*m)).collect();
            for copy in 0..copies {
                let mut x = point.clone();
                for ((k, m), start) in categoricals.iter().zip(&starts) {
                    x[*k] = choice_coordinate((start + copy) % m, *m);
                }
                pool.push(x);
            }
        }
        let (mean, chol) = posterior_factor(gp, &pool)?;
        Some(ChoiceSampler {
            categoricals,
            pool,
            mean,
            chol,
        })
    }

    /// The categorical coordinates `(coordinate, encoded value)` of the minimizer of one draw
    /// from the posterior over the pool.
    pub(crate) fn sample(&self, rng: &mut Rng) -> Vec<(usize, f64)> {
        let m = self.pool.len();
        let z: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
        let mut best = (f64::INFINITY, 0);
        for i in 0..m {
            let row = &self.chol[i * m..i * m + i + 1];
            let draw = self.mean[i] + row.iter().zip(&z).map(|(l, z)| l * z).sum::<f64>();
            if draw < best.0 {
                best = (draw, i);
            }
        }
        let winner = &self.pool[best.1];
        self.categoricals
            .iter()
            .map(|(k, _)| (*k, winner[*k]))
            .collect()
    }
}

/// The encoded coordinate of choice `index` of `choices` (the centre of its bin, as
/// [`Space::encode`] places it).
fn choice_coordinate(index: usize, choices: usize) -> f64 {
    (index as f64 + 0.5) / choices as f64
}

/// Posterior means (standardized) and the row-major lower Cholesky factor of the posterior
/// covariance of `pool` plus [`POOL_JITTER`] of the prior variance, more when that does not
/// factor ([`factor_gram`]); `None` if nothing does.
fn posterior_factor(gp: &Gp, pool: &[Vec<f64>]) -> Option<(Vec<f64>, Vec<f64>)> {
    let (mean, _) = gp.predict_batch(pool);
    let whitened = gp.whitened_cross(pool);
    let cov = gp.kernel().cross(pool, pool) - whitened.transpose() * &whitened;
    let prior = gp.kernel().prior_variance();
    let (llt, _) = factor_gram(&cov, POOL_JITTER * prior, prior).ok()?;
    let l = llt.L();
    let m = pool.len();
    let mut chol = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            chol[i * m + j] = l[(i, j)];
        }
    }
    chol.iter().all(|v| v.is_finite()).then_some((mean, chol))
}

/// An acquisition with some coordinates held at fixed values: every point is evaluated with
/// them in place, and their gradient is zero, so L-BFGS never moves them.
pub(crate) struct Fixed<'a, A> {
    /// The acquisition evaluated.
    pub(crate) inner: &'a A,
    /// `(coordinate, value)` pairs; empty holds nothing and adds no cost.
    pub(crate) fixed: &'a [(usize, f64)],
}

/// `x` with the `(coordinate, value)` pairs of `fixed` in place.
pub(crate) fn held(x: &[f64], fixed: &[(usize, f64)]) -> Vec<f64> {
    let mut y = x.to_vec();
    for (k, v) in fixed {
        y[*k] = *v;
    }
    y
}

impl<A: Acquisition> Acquisition for Fixed<'_, A> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn value(&self, x: &[f64]) -> f64 {
        if self.fixed.is_empty() {
            return self.inner.value(x);
        }
        self.inner.value(&held(x, self.fixed))
    }

    fn value_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        if self.fixed.is_empty() {
            return self.inner.value_and_grad(x, grad);
        }
        let value = self.inner.value_and_grad(&held(x, self.fixed), grad);
        for (k, _) in self.fixed {
            grad[*k] = 0.0;
        }
        value
    }

    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        if self.fixed.is_empty() {
            return self.inner.values(points);
        }
        let moved: Vec<Vec<f64>> = points.iter().map(|p| held(p, self.fixed)).collect();
        self.inner.values(&moved)
    }
}

#[cfg(test)]
mod tests;
