//! Tests of the kernels: values, gradients against finite differences, the batched `cross`, and
//! the mixed (categorical) kernel's gradients and positive semi-definiteness.

use super::*;

use crate::gradcheck::GradCheck;

/// A copy of `k` with parameters `p`.
fn with_params(k: &Matern52, p: &[f64]) -> Matern52 {
    let mut copy = k.clone();
    copy.set_params(p);
    copy
}

fn kernel() -> Matern52 {
    let mut k = Matern52::new(3, 0.4, 1.0);
    k.set_params(&[-0.9f64, 0.2, -1.7, 0.3]);
    k
}

#[test]
fn value_at_zero_distance_is_the_variance() {
    let k = kernel();
    let x = [0.1, 0.5, 0.9];
    assert!((k.value(&x, &x) - 0.3f64.exp()).abs() < 1e-14);
    assert!(k.value(&x, &[0.9, 0.1, 0.2]) < k.value(&x, &[0.12, 0.5, 0.9]));
}

#[test]
fn param_gradient_matches_finite_differences() {
    let k = kernel();
    let (a, b) = ([0.13, 0.57, 0.91], [0.44, 0.21, 0.86]);
    let mut grad = vec![0.0; 4];
    k.value_and_param_grad(&a, &b, &mut grad);
    GradCheck::SMOOTH.assert(
        |p| with_params(&k, p).value(&a, &b),
        &k.params(),
        &grad,
        "kernel in its parameters",
    );
}

#[test]
fn cross_matches_pointwise_values() {
    let k = kernel();
    let xs = vec![
        vec![0.1, 0.2, 0.3],
        vec![0.9, 0.4, 0.05],
        vec![0.5, 0.5, 0.5],
    ];
    let points = vec![vec![0.12, 0.7, 0.33], vec![0.9, 0.4, 0.05]];
    let cross = k.cross(&xs, &points);
    for (i, x) in xs.iter().enumerate() {
        for (j, p) in points.iter().enumerate() {
            assert_eq!(cross[(i, j)], k.value(x, p), "({i}, {j})");
        }
    }
}

#[test]
fn x_gradient_matches_finite_differences() {
    let k = kernel();
    let (a, b) = ([0.13, 0.57, 0.91], [0.44, 0.21, 0.86]);
    let mut grad = vec![0.0; 3];
    k.value_and_x_grad(&a, &b, &mut grad);
    GradCheck::SMOOTH.assert(|x| k.value(x, &b), &a, &grad, "kernel in x");
}

/// Dimensions 0 and 2 numeric, 1 with three choices, 3 with two.
fn mixed() -> Matern52 {
    let mut k = Matern52::new(4, 0.4, 1.0).with_categories(&[0, 3, 0, 2]);
    k.set_params(&[-0.9f64, 0.2, -1.7, -0.4, 0.3]);
    k
}

#[test]
fn categorical_dimensions_compare_choices() {
    let k = mixed();
    let a = [0.3, 0.5, 0.2, 0.25];
    // The same choices (other coordinates inside the same bins) give the same value.
    assert_eq!(k.value(&a, &a), k.value(&a, &[0.3, 0.4, 0.2, 0.1]));
    // Choices 0 and 1 are as far apart as 0 and 2.
    let near = k.value(&a, &[0.3, 1.0 / 6.0, 0.2, 0.25]);
    let far = k.value(&a, &[0.3, 5.0 / 6.0, 0.2, 0.25]);
    assert_eq!(near, far);
    assert!(near < k.value(&a, &a));
}

#[test]
fn mixed_param_gradient_matches_finite_differences() {
    let k = mixed();
    let a = [0.13, 0.5, 0.91, 0.25];
    for b in [
        [0.44, 1.0 / 6.0, 0.86, 0.75],
        [0.2, 0.5, 0.3, 0.75],
        [0.7, 5.0 / 6.0, 0.6, 0.25],
    ] {
        let mut grad = vec![0.0; 5];
        k.value_and_param_grad(&a, &b, &mut grad);
        GradCheck::SMOOTH.assert(
            |p| with_params(&k, p).value(&a, &b),
            &k.params(),
            &grad,
            &format!("mixed kernel in its parameters at {b:?}"),
        );
    }
}

#[test]
fn mixed_x_gradient_matches_finite_differences_and_is_zero_in_categories() {
    let k = mixed();
    let b = [0.44, 1.0 / 6.0, 0.86, 0.75];
    for a in [[0.13, 0.5, 0.91, 0.25], [0.5, 1.0 / 6.0, 0.2, 0.75]] {
        let mut grad = vec![0.0; 4];
        k.value_and_x_grad(&a, &b, &mut grad);
        assert_eq!((grad[1], grad[3]), (0.0, 0.0));
        GradCheck::SMOOTH.assert_coordinates(
            |x| k.value(x, &b),
            &a,
            &grad,
            [0, 2],
            &format!("mixed kernel in x at {a:?}"),
        );
    }
}

#[test]
fn mixed_cross_matches_pointwise_values() {
    let k = mixed();
    let mut rng = crate::rng::Rng::new(3);
    let xs: Vec<Vec<f64>> = (0..9).map(|_| rng.point(4)).collect();
    let points: Vec<Vec<f64>> = (0..5).map(|_| rng.point(4)).collect();
    let cross = k.cross(&xs, &points);
    for (i, x) in xs.iter().enumerate() {
        for (j, p) in points.iter().enumerate() {
            assert_eq!(cross[(i, j)], k.value(x, p), "({i}, {j})");
        }
    }
}

#[test]
fn mixed_gram_matrix_is_positive_semi_definite() {
    let mut rng = crate::rng::Rng::new(5);
    for (trial, log_scales) in [[-2.0, 0.5, -1.0, 1.5], [0.0, -3.0, 0.7, -2.0]]
        .iter()
        .enumerate()
    {
        let mut k = mixed();
        let mut params = log_scales.to_vec();
        params.push(0.0);
        k.set_params(&params);
        // Many repeated choices, so that rows share categorical coordinates.
        let x: Vec<Vec<f64>> = (0..60).map(|_| rng.point(4)).collect();
        let gram = Mat::<f64>::from_fn(x.len(), x.len(), |i, j| k.value(&x[i], &x[j]));
        let eigen = gram
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .expect("eigenvalues converge");
        let smallest = eigen.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            smallest > -1e-10,
            "trial {trial}: smallest eigenvalue {smallest}"
        );
    }
}
