//! A small bound-constrained L-BFGS: the two-loop recursion (Nocedal and Wright, "Numerical
//! Optimization", 2nd ed., algorithm 7.4) on the free variables, a projected backtracking line
//! search with the Armijo condition along the projection arc (Bertsekas, "Projected Newton
//! methods", SIAM J. Control Optim. 1982) whose backtracks go to the minimum of a quadratic
//! through what the rejected trial showed (Nocedal and Wright §3.5), and a restart from steepest
//! descent whenever the quasi-Newton direction is not a descent direction. Non-finite trial
//! values count as failed steps, so an objective may return `+∞` where it cannot be evaluated.

/// Stopping rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    /// Maximum iterations.
    pub max_iterations: usize,
    /// Stop when the projected gradient's largest component is below this.
    pub gradient_tolerance: f64,
    /// Stop when an iteration improves the objective by less than this (relative).
    pub value_tolerance: f64,
    /// Stop when an iteration improves the objective by less than this (absolute): for an
    /// objective whose differences below some size do not matter, such as a log likelihood
    /// in nats. 0 turns the rule off.
    pub improvement_floor: f64,
    /// The first step's largest move in any coordinate, along the steepest descent (later
    /// steps start at the quasi-Newton step). Smaller suits a start already near a minimum,
    /// whose first step would otherwise be cut back evaluation by evaluation.
    pub first_step: f64,
    /// Pairs `(s, y)` kept.
    pub memory: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            max_iterations: 100,
            gradient_tolerance: 1e-6,
            value_tolerance: 1e-10,
            improvement_floor: 0.0,
            first_step: 1.0,
            memory: 8,
        }
    }
}

/// The result of a minimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    /// The best point found.
    pub x: Vec<f64>,
    /// The objective there.
    pub value: f64,
    /// Objective evaluations used.
    pub evaluations: usize,
    /// Whether a stopping rule other than `max_iterations` ended the run (a small gradient, a
    /// small improvement, no acceptable step, or a non-finite start).
    pub converged: bool,
}

fn project(x: &mut [f64], lower: &[f64], upper: &[f64]) {
    for ((v, lo), hi) in x.iter_mut().zip(lower).zip(upper) {
        *v = v.clamp(*lo, *hi);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether coordinate `i` sits on a bound that the step `-g` would push through.
fn is_blocked(x: f64, g: f64, lo: f64, hi: f64) -> bool {
    (x <= lo && g > 0.0) || (x >= hi && g < 0.0)
}

/// The quasi-Newton direction from the stored pairs, with blocked coordinates zeroed.
fn direction(grad: &[f64], pairs: &[(Vec<f64>, Vec<f64>)], blocked: &[bool]) -> Vec<f64> {
    let mut q: Vec<f64> = grad
        .iter()
        .zip(blocked)
        .map(|(g, b)| if *b { 0.0 } else { *g })
        .collect();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y) in pairs.iter().rev() {
        let rho = 1.0 / dot(y, s);
        let a = rho * dot(s, &q);
        for (qi, yi) in q.iter_mut().zip(y) {
            *qi -= a * yi;
        }
        alphas.push((a, rho));
    }
    if let Some((s, y)) = pairs.last() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y), (a, rho)) in pairs.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        for (qi, si) in q.iter_mut().zip(s) {
            *qi += (a - b) * si;
        }
    }
    q.iter()
        .zip(blocked)
        .map(|(v, b)| if *b { 0.0 } else { -v })
        .collect()
}

/// The factor by which a rejected step shrinks: the minimum of the quadratic through the
/// value and slope at the current point (`slope`: the directional derivative times the step)
/// and the trial's value (`rise` above the current one), kept within
/// [[`MIN_BACKTRACK`], [`MAX_BACKTRACK`]]; halving when the trial was not finite or the
/// quadratic has no minimum (Nocedal and Wright, §3.5).
fn backtrack(slope: f64, rise: f64, finite: bool) -> f64 {
    let curvature = rise - slope;
    if finite && slope < 0.0 && curvature > 0.0 {
        (-slope / (2.0 * curvature)).clamp(MIN_BACKTRACK, MAX_BACKTRACK)
    } else {
        MAX_BACKTRACK
    }
}

/// The smallest factor a backtrack shrinks a step by (a quadratic can predict a tiny step from
/// a trial far beyond the minimum; the next trial then tests it).
const MIN_BACKTRACK: f64 = 0.1;
/// The largest: a step always at least halves.
const MAX_BACKTRACK: f64 = 0.5;

/// Minimizes `f` over the box `[lower, upper]` from `x0`. `f(x, grad)` returns the value and
/// writes the gradient. Never panics on a non-finite objective: it returns the best point seen.
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &LbfgsOptions,
) -> Minimum {
    let n = x0.len();
    let mut x = x0.to_vec();
    project(&mut x, lower, upper);
    let mut grad = vec![0.0; n];
    let mut value = f(&x, &mut grad);
    let mut evaluations = 1;
    if !value.is_finite() || grad.iter().any(|g| !g.is_finite()) {
        return Minimum {
            x,
            value: f64::INFINITY,
            evaluations,
            converged: true,
        };
    }
    let mut pairs: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut trial_grad = vec![0.0; n];
    let mut converged = false;
    for iteration in 0..options.max_iterations {
        let blocked: Vec<bool> = (0..n)
            .map(|i| is_blocked(x[i], grad[i], lower[i], upper[i]))
            .collect();
        let projected_norm = (0..n)
            .filter(|i| !blocked[*i])
            .map(|i| grad[i].abs())
            .fold(0.0, f64::max);
        if projected_norm < options.gradient_tolerance {
            converged = true;
            break;
        }
        let mut d = direction(&grad, &pairs, &blocked);
        if dot(&d, &grad) >= 0.0 {
            pairs.clear();
            d = grad
                .iter()
                .zip(&blocked)
                .map(|(g, b)| if *b { 0.0 } else { -g })
                .collect();
        }
        let mut step = if iteration == 0 && pairs.is_empty() {
            (options.first_step / projected_norm).min(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..40 {
            let mut trial: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + step * di).collect();
            project(&mut trial, lower, upper);
            let moved: Vec<f64> = trial.iter().zip(&x).map(|(t, xi)| t - xi).collect();
            let trial_value = f(&trial, &mut trial_grad);
            evaluations += 1;
            let finite = trial_value.is_finite() && trial_grad.iter().all(|g| g.is_finite());
            let slope = dot(&grad, &moved);
            if finite && trial_value <= value + 1e-4 * slope {
                accepted = Some((trial, trial_value, moved));
                break;
            }
            step *= backtrack(slope, trial_value - value, finite);
        }
        let Some((trial, trial_value, s)) = accepted else {
            converged = true;
            break;
        };
        let y: Vec<f64> = trial_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let improvement = value - trial_value;
        if dot(&s, &y) > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == options.memory {
                pairs.remove(0);
            }
            pairs.push((s, y));
        }
        x = trial;
        value = trial_value;
        grad.copy_from_slice(&trial_grad);
        if improvement <= options.value_tolerance * value.abs().max(1.0)
            || improvement < options.improvement_floor
        {
            converged = true;
            break;
        }
    }
    Minimum {
        x,
        value,
        evaluations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
        let (a, b) = (x[0], x[1]);
        g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
        g[1] = 200.0 * (b - a * a);
        (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
    }

    #[test]
    fn minimizes_rosenbrock() {
        let options = LbfgsOptions {
            max_iterations: 500,
            value_tolerance: 0.0,
            ..Default::default()
        };
        let m = minimize(
            rosenbrock,
            &[-1.2, 1.0],
            &[-5.0, -5.0],
            &[5.0, 5.0],
            &options,
        );
        assert!(
            (m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4,
            "{m:?}"
        );
    }

    #[test]
    fn respects_bounds() {
        let options = LbfgsOptions::default();
        let m = minimize(
            rosenbrock,
            &[0.1, 0.1],
            &[-1.0, -1.0],
            &[0.5, 0.5],
            &options,
        );
        assert!(m.x.iter().all(|v| (-1.0..=0.5).contains(v)));
        assert!((m.x[0] - 0.5).abs() < 1e-3, "{m:?}");
    }

    /// An improvement floor ends a run at the first iteration that gains less: Rosenbrock's
    /// valley gains little per step long before its minimum.
    #[test]
    fn an_improvement_floor_ends_the_run_early() {
        let run = |improvement_floor| {
            let options = LbfgsOptions {
                max_iterations: 500,
                value_tolerance: 0.0,
                improvement_floor,
                ..Default::default()
            };
            minimize(rosenbrock, &[-1.2, 1.0], &[-5.0; 2], &[5.0; 2], &options)
        };
        let (full, floored) = (run(0.0), run(0.05));
        assert!(full.value < 1e-8, "{full:?}");
        assert!(floored.converged, "{floored:?}");
        assert!(floored.value > 1e-4, "stopped in the valley: {floored:?}");
        assert!(
            floored.evaluations < full.evaluations,
            "{floored:?} vs {full:?}"
        );
    }

    /// The first step moves no coordinate further than `first_step` (then it stands, since it
    /// descends), and the default moves the steepest one by 1.
    #[test]
    fn the_first_step_is_bounded_by_first_step() {
        let bowl = |x: &[f64], g: &mut [f64]| {
            g.copy_from_slice(x);
            0.5 * x.iter().map(|v| v * v).sum::<f64>()
        };
        let start = [10.0, -20.0];
        for (first_step, moved) in [(0.25, 0.25), (1.0, 1.0)] {
            let options = LbfgsOptions {
                max_iterations: 1,
                first_step,
                ..Default::default()
            };
            let m = minimize(bowl, &start, &[-50.0; 2], &[50.0; 2], &options);
            assert_eq!(m.evaluations, 2, "one step, accepted: {m:?}");
            assert!((m.x[1] - (start[1] + moved)).abs() < 1e-12, "{m:?}");
            assert!((m.x[0] - (start[0] - moved / 2.0)).abs() < 1e-12, "{m:?}");
        }
    }

    /// A first step ten times as long as the way to a quadratic's minimum is cut to that minimum
    /// in one backtrack, and accepted there (halving took three backtracks and stopped at 1.25
    /// times the way).
    #[test]
    fn a_rejected_step_is_cut_to_the_quadratics_minimum() {
        let centre = 0.1;
        let parabola = |x: &[f64], g: &mut [f64]| {
            g[0] = 100.0 * (x[0] - centre);
            50.0 * (x[0] - centre).powi(2)
        };
        let options = LbfgsOptions {
            max_iterations: 1,
            first_step: 1.0,
            ..Default::default()
        };
        let m = minimize(parabola, &[0.0], &[-5.0], &[5.0], &options);
        assert_eq!(
            m.evaluations, 3,
            "start, rejected trial, accepted cut: {m:?}"
        );
        assert!((m.x[0] - centre).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn backtracks_shrink_by_a_tenth_to_a_half() {
        // The quadratic's minimum, within the bounds.
        assert!((backtrack(-1.0, 1.0, true) - 0.25).abs() < 1e-15);
        assert_eq!(backtrack(-1.0, 1e6, true), MIN_BACKTRACK);
        assert_eq!(backtrack(-1.0, -0.9, true), MAX_BACKTRACK);
        // No quadratic to trust: halve.
        assert_eq!(backtrack(-1.0, f64::INFINITY, false), MAX_BACKTRACK);
        assert_eq!(backtrack(1.0, 1.0, true), MAX_BACKTRACK);
    }

    #[test]
    fn infinite_start_returns_without_panicking() {
        let m = minimize(
            |_, _| f64::INFINITY,
            &[0.0],
            &[-1.0],
            &[1.0],
            &LbfgsOptions::default(),
        );
        assert_eq!(m.value, f64::INFINITY);
    }
}
