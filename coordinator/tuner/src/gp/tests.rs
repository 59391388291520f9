//! Tests of the GP posterior, its gradients and the jittered factorization.

use super::*;
use crate::gradcheck::GradCheck;
use crate::rng::Rng;

fn training(n: usize, d: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let x = rng.latin_hypercube(n, d);
    let y = x
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64 * v).sin())
                .sum::<f64>()
                * 3.0
                + 10.0
        })
        .collect();
    (x, y)
}

#[test]
fn posterior_interpolates_training_points() {
    let (x, y) = training(15, 2, 1);
    let noise = 1e-6;
    let gp = Gp::new(Matern52::new(2, 0.3, 1.0), noise, x.clone(), &y).expect("factors");
    let (_, std) = gp.standardization();
    for (xi, yi) in x.iter().zip(&y) {
        let (mean, var) = gp.predict(xi);
        assert!((mean - yi).abs() < 1e-3 * std, "mean {mean} vs {yi}");
        assert!(
            var >= 0.0 && var <= 2.0 * noise * std * std + 1e-12,
            "var {var}"
        );
    }
    let (_, far_var) = gp.predict_standardized(&[5.0, 5.0]);
    assert!((far_var - 1.0).abs() < 1e-9);
}

#[test]
fn batch_prediction_matches_pointwise() {
    let (x, y) = training(20, 3, 2);
    let gp = Gp::new(Matern52::new(3, 0.4, 1.3), 1e-4, x, &y).expect("factors");
    let points = Rng::new(9).latin_hypercube(300, 3);
    let (means, vars) = gp.predict_batch(&points);
    for (p, (m, v)) in points.iter().zip(means.iter().zip(&vars)) {
        let (mean, var) = gp.predict_standardized(p);
        assert!((mean - m).abs() < 1e-9 && (var - v).abs() < 1e-9);
    }
}

#[test]
fn posterior_gradients_match_finite_differences() {
    let (x, y) = training(12, 3, 3);
    let gp = Gp::new(Matern52::new(3, 0.35, 1.0), 1e-5, x, &y).expect("factors");
    let point = [0.31, 0.72, 0.45];
    let (mut gm, mut gv) = (vec![0.0; 3], vec![0.0; 3]);
    gp.predict_with_grad(&point, &mut gm, &mut gv);
    let check = GradCheck::SMOOTH;
    check.assert(
        |p| gp.predict_standardized(p).0,
        &point,
        &gm,
        "posterior mean",
    );
    check.assert(
        |p| gp.predict_standardized(p).1,
        &point,
        &gv,
        "posterior variance",
    );
}

#[test]
fn duplicate_points_factor_with_jitter_or_noise() {
    let x = vec![vec![0.5, 0.5]; 6];
    let y = vec![1.0, 1.1, 0.9, 1.0, 1.05, 0.95];
    let gp = Gp::new(Matern52::new(2, 0.3, 1.0), 0.0, x, &y).expect("jitter rescues duplicates");
    assert!(gp.jitter() > 0.0);
}

#[test]
fn non_finite_kernel_is_an_error_not_a_panic() {
    let mut kernel = Matern52::new(1, 0.3, 1.0);
    kernel.set_params(&[0.0, f64::NAN]);
    assert!(Gp::new(kernel, 1e-6, vec![vec![0.1], vec![0.2]], &[1.0, 2.0]).is_err());
}

/// The plain two-pass mean and deviation, for comparison.
fn plain_standardization(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn standardization_is_the_plain_formula_bit_for_bit_in_the_normal_range() {
    let mut rng = Rng::new(3);
    for (magnitude, n) in [(1.0, 7), (1e-6, 30), (3e5, 200), (1e100, 50)] {
        let y: Vec<f64> = (0..n)
            .map(|_| magnitude * (rng.uniform() * 4.0 - 1.0))
            .collect();
        assert_eq!(
            standardization(&y),
            plain_standardization(&y),
            "{magnitude:e}"
        );
        let (mean, std) = standardization(&y);
        for v in &y {
            assert_eq!(standardize(*v, mean, std), (v - mean) / std);
        }
    }
}

#[test]
fn standardization_keeps_the_spread_of_huge_and_tiny_values() {
    let spread = (2.0f64 / 3.0).sqrt();
    for unit in [1e300, 1e-300] {
        let y = [unit, 2.0 * unit, 3.0 * unit];
        let (mean, std) = standardization(&y);
        assert!((mean / unit - 2.0).abs() < 1e-14, "{unit:e}: mean {mean:e}");
        assert!((std / unit - spread).abs() < 1e-14, "{unit:e}: std {std:e}");
        let z: Vec<f64> = y.iter().map(|v| standardize(*v, mean, std)).collect();
        assert!(
            (z[0] + 1.0 / spread).abs() < 1e-12 && z[1].abs() < 1e-12,
            "{z:?}"
        );
    }
    // Values at both ends of the range: their difference is not an f64, their standardization is.
    let y = [1.7e308, -1.7e308, 0.0];
    let (mean, std) = standardization(&y);
    assert!(mean.is_finite() && std.is_finite(), "{mean:e} {std:e}");
    let z: Vec<f64> = y.iter().map(|v| standardize(*v, mean, std)).collect();
    assert!(z.iter().all(|v| v.is_finite()), "{z:?}");
    assert!((z[0] - 1.5f64.sqrt()).abs() < 1e-12, "{z:?}");
}
