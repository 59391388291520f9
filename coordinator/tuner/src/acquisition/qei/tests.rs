//! q-LogEI against analytic EI and finite differences, the skipped samples' exactness, the
//! stratified base samples, and an error (never a dropped covariance) for a set that cannot be
//! factored.

use super::*;
use crate::acquisition::ei::expected_improvement;
use crate::gradcheck::GradCheck;
use crate::kernel::Matern52;
use crate::special::norm_cdf;

fn gp() -> Gp {
    let x = Rng::new(21).latin_hypercube(10, 2);
    let y: Vec<f64> = x.iter().map(|p| (4.0 * p[0]).sin() + p[1]).collect();
    Gp::new(Matern52::new(2, 0.3, 1.0), 1e-6, x, &y).expect("factors")
}

/// The GP's smallest standardized target: the EI incumbent of a noise-free fit.
fn best_observed(gp: &Gp) -> f64 {
    gp.y_standardized()
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn empty_set_matches_analytic_ei() {
    let gp = gp();
    let best = best_observed(&gp);
    let q = QEi::new(&gp, best, vec![], 20_000, 1).expect("factors");
    for p in [[0.3, 0.3], [0.8, 0.1]] {
        let (mean, var) = gp.predict_standardized(&p);
        let exact = expected_improvement(mean, var.sqrt(), best);
        let mc = q.value(&p).exp();
        assert!(
            (mc - exact).abs() < 0.05 * exact.max(1e-3),
            "{mc} vs {exact}"
        );
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let gp = gp();
    let best = best_observed(&gp);
    let q = QEi::new(&gp, best, vec![vec![0.55, 0.45], vec![0.2, 0.8]], 64, 3).expect("factors");
    for point in [[0.31, 0.62], [0.83, 0.17], [0.47, 0.52]] {
        let mut grad = [0.0; 2];
        let value = q.value_and_grad(&point, &mut grad);
        assert!((value - q.value(&point)).abs() < 1e-12 * value.abs().max(1.0));
        GradCheck::MONTE_CARLO.assert(
            |p| q.value(p),
            &point,
            &grad,
            &format!("q-LogEI at {point:?}"),
        );
    }
}

#[test]
fn samples_past_their_cut_are_unchanged_by_the_candidate() {
    for best in [-2.0, 0.0, 1.5] {
        for set_log in [-60.0, -25.0, -14.0, -8.0, -2.0, 0.5, 3.0] {
            let cut = unchanged_from(best, set_log);
            assert!(cut.is_finite(), "best {best}, set {set_log}");
            // At the cut and beyond, the maximum is the set's exactly, with zero weight.
            for f in [cut, cut + 1e-6, cut + 1.0, cut + 1e6] {
                let (value, weight) = smooth_max(set_log, log_improvement(best, f).0);
                assert_eq!(
                    (value, weight),
                    (set_log, 0.0),
                    "best {best}, set {set_log}"
                );
            }
            // Tight: a little before the cut the candidate counts.
            let before = cut - 2e-3 * (cut - best).max(TAU_RELU);
            let floor = set_log - EXACT_GAP * TAU_MAX;
            assert!(
                log_improvement_value(best, before) >= floor,
                "best {best}, set {set_log}: cut {cut} is loose"
            );
        }
    }
    assert_eq!(unchanged_from(0.0, f64::NEG_INFINITY), f64::INFINITY);
}

#[test]
fn skipping_unchanged_samples_leaves_every_value_as_computed_in_full() {
    let gp = gp();
    let best = best_observed(&gp);
    let set = vec![vec![0.55, 0.45], vec![0.2, 0.8], vec![0.9, 0.9]];
    let q = QEi::new(&gp, best, set, 256, 5).expect("factors");
    let mut skipped = 0;
    for point in Rng::new(8).latin_hypercube(40, 2) {
        // The estimate sample by sample, with no sample skipped.
        let (mean, var, v) = gp.predict_whitened(&point);
        let dots = q.set_dots(&v);
        let k = q.set.len();
        let mut cov: Vec<f64> = (0..k)
            .map(|i| gp.kernel().value(&point, &q.set[i]) - dots[i])
            .collect();
        for i in 0..k {
            let s: f64 = (0..i).map(|j| q.set_chol[i * k + j] * cov[j]).sum();
            cov[i] = (cov[i] - s) / q.set_chol[i * k + i];
        }
        let schur = (var - cov.iter().map(|c| c * c).sum::<f64>())
            .max(0.0)
            .sqrt();
        let joint: Vec<f64> = (0..q.samples)
            .map(|m| {
                let z = &q.base[m * (k + 1)..(m + 1) * (k + 1)];
                let f = mean + cov.iter().zip(z).map(|(c, zi)| c * zi).sum::<f64>() + schur * z[k];
                skipped += usize::from(f >= q.unchanged[m]);
                smooth_max(q.set_log[m], log_improvement_value(best, f)).0
            })
            .collect();
        let (value, full) = (q.value(&point), log_mean_exp(&joint, None));
        assert!(
            (value - full).abs() <= 1e-12 * full.abs().max(1.0),
            "{point:?}: {value} vs {full}"
        );
    }
    assert!(
        skipped > 40 * 256 / 4,
        "the cut skips few samples: {skipped}"
    );
}

#[test]
fn base_normals_are_stratified_sobol_quantiles() {
    let gp = gp();
    let q = QEi::new(&gp, 0.0, vec![vec![0.5, 0.5]], 256, 4).expect("factors");
    for column in 0..2 {
        let mut bins: Vec<usize> = (0..256)
            .map(|m| (norm_cdf(q.base[2 * m + column]) * 256.0) as usize)
            .collect();
        bins.sort_unstable();
        assert_eq!(bins, (0..256).collect::<Vec<_>>(), "column {column}");
    }
}

#[test]
fn far_from_any_improvement_the_log_value_and_its_gradient_stay_informative() {
    let gp = gp();
    // An incumbent ten standard deviations below every sample: q-EI underflows to zero.
    let best = -10.0;
    let q = QEi::new(&gp, best, vec![vec![0.55, 0.45]], 64, 3).expect("factors");
    let point = [0.31, 0.62];
    let mut grad = [0.0; 2];
    let value = q.value_and_grad(&point, &mut grad);
    assert!(value.is_finite() && value < -20.0, "{value}");
    assert!(grad.iter().any(|g| g.abs() > 1e-3), "gradient {grad:?}");
    GradCheck::MONTE_CARLO.assert(
        |p| q.value(p),
        &point,
        &grad,
        "q-LogEI underflowing to zero",
    );
}

#[test]
fn a_point_next_to_the_set_adds_little() {
    let gp = gp();
    let best = best_observed(&gp);
    let set = vec![vec![0.55, 0.45]];
    let alone = QEi::new(&gp, best, vec![], 2000, 2)
        .expect("factors")
        .value(&set[0]);
    let joined = QEi::new(&gp, best, set.clone(), 2000, 2).expect("factors");
    let next_to = joined.value(&[0.5501, 0.4501]);
    assert!(next_to <= alone + 0.01, "log values: {next_to} vs {alone}");
    assert!(joined.value(&[0.05, 0.95]) >= next_to - 1e-12);
    let values = joined.values(&[vec![0.2, 0.2], vec![0.9, 0.9]]);
    assert!((values[0] - joined.value(&[0.2, 0.2])).abs() < 1e-9);
}

#[test]
fn a_set_whose_covariance_cannot_be_factored_is_an_error_not_a_dropped_covariance() {
    let gp = gp();
    let best = 0.0;
    let error = QEi::new(&gp, best, vec![vec![f64::NAN, 0.5], vec![0.2, 0.8]], 16, 1)
        .expect_err("a NaN point cannot be factored");
    assert!(
        matches!(error, Error::NotPositiveDefinite { n: 2, .. }),
        "{error}"
    );
    // Two identical points are singular but factor with jitter: still a usable estimate.
    let twins = QEi::new(&gp, best, vec![vec![0.4, 0.4], vec![0.4, 0.4]], 16, 1);
    assert!(twins.is_ok());
}
