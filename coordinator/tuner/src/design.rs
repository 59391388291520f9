//! The model-free strategies: the space-filling initial design that precedes the GP, random
//! search and grid search, plus the duplicate check shared by every strategy.
//!
//! The initial design is greedy maximin over digitally shifted Sobol' candidates: each new point
//! is the candidate farthest from every point already observed, pending or chosen. Because it
//! looks at the points that exist, successive calls with different seeds still spread out, unlike
//! restarting one scrambled sequence per call. Distances wrap around the unit cube (a torus):
//! with plain Euclidean distance, maximin pushes points into the cube's corners and faces, which
//! on a log-scaled learning rate from 1e-8 to 1 means nearly every design point trains at 1e-8 or
//! near 1 (seen on `basic-mini`); on the torus no region is favoured, so each design point is
//! spread like a uniform draw while the points still keep apart. When every
//! parameter has a default and nothing has been tried yet, the default assignment comes first
//! (the study measured its default configuration, and a good default is a strong first point).

use crate::rng::Rng;
use crate::sobol::sobol_points;
use crate::space::{Assignment, ParamKind, Space};

/// The assignments already observed, pending or chosen; a suggestion must not repeat one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    assignments: Vec<Assignment>,
}

impl Seen {
    pub(crate) fn new(assignments: impl IntoIterator<Item = Assignment>) -> Seen {
        Seen {
            assignments: assignments.into_iter().collect(),
        }
    }

    pub(crate) fn contains(&self, a: &Assignment) -> bool {
        self.assignments.iter().any(|seen| seen == a)
    }

    /// Records `a`; returns false (and records nothing) when it was already there.
    pub(crate) fn insert(&mut self, a: &Assignment) -> bool {
        if self.contains(a) {
            return false;
        }
        self.assignments.push(a.clone());
        true
    }
}

/// Squared distance on the unit torus: each coordinate's difference wraps around, so the cube's
/// faces are no farther from the points than its middle is.
fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs().min(1.0);
            let d = d.min(1.0 - d);
            d * d
        })
        .sum()
}

/// Chooses up to `q` space-filling points away from `existing` (encoded) and unseen.
pub(crate) fn initial_design(
    space: &Space,
    existing: &[Vec<f64>],
    seen: &mut Seen,
    q: usize,
    include_default: bool,
    rng: &mut Rng,
) -> Vec<Assignment> {
    let mut chosen = Vec::with_capacity(q);
    let mut points: Vec<Vec<f64>> = existing.to_vec();
    let default = space
        .default_assignment()
        .filter(|_| include_default && existing.is_empty() && q > 0);
    if let Some(default) = default.filter(|d| seen.insert(d)) {
        points.push(
            space
                .encode(&default)
                .unwrap_or_else(|_| vec![0.5; space.dim()]),
        );
        chosen.push(default);
    }
    let pool_size = (8 * (points.len() + q)).clamp(32, 4096);
    let mut pool: Vec<Vec<f64>> = sobol_points(pool_size, space.dim(), 0, rng)
        .iter()
        .map(|x| space.snap(x))
        .collect();
    while chosen.len() < q && !pool.is_empty() {
        let score = |x: &Vec<f64>| {
            points
                .iter()
                .map(|p| squared_distance(p, x))
                .fold(f64::INFINITY, f64::min)
        };
        let mut best = 0;
        let mut best_score = f64::NEG_INFINITY;
        for (i, x) in pool.iter().enumerate() {
            let s = score(x);
            if s > best_score {
                (best, best_score) = (i, s);
            }
        }
        let x = pool.swap_remove(best);
        let a = space.decode(&x);
        if seen.insert(&a) {
            points.push(x);
            chosen.push(a);
        }
    }
    if chosen.len() < q {
        chosen.extend(random_points(space, seen, q - chosen.len(), rng));
    }
    chosen
}

/// Up to `q` uniform random unseen assignments (fewer only when the space is nearly exhausted).
pub(crate) fn random_points(
    space: &Space,
    seen: &mut Seen,
    q: usize,
    rng: &mut Rng,
) -> Vec<Assignment> {
    let mut chosen = Vec::with_capacity(q);
    let mut attempts = 0;
    while chosen.len() < q && attempts < 200 * q.max(1) {
        attempts += 1;
        let a = space.decode(&rng.point(space.dim()));
        if seen.insert(&a) {
            chosen.push(a);
        }
    }
    if chosen.len() < q {
        // A small finite space: enumerate what is left in grid order.
        if space.cardinality().is_some_and(|c| c <= 1_000_000) {
            let levels: Vec<Vec<f64>> = space.params().iter().map(all_levels).collect();
            chosen.extend(grid_walk(space, &levels, seen, q - chosen.len()));
        }
    }
    chosen
}

/// Encoded positions of every value of a finite parameter.
fn all_levels(spec: &crate::space::ParamSpec) -> Vec<f64> {
    let n = spec.cardinality().unwrap_or(1) as usize;
    (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
}

/// The encoded grid levels of one parameter: `levels` evenly spaced points of the unit interval
/// (ends included; the middle when `levels` is 1), integers deduplicated after rounding, and every
/// choice of a categorical.
fn param_levels(space: &Space, index: usize, levels: usize) -> Vec<f64> {
    let spec = &space.params()[index];
    if let ParamKind::Categorical { choices } = &spec.kind {
        let k = choices.len();
        return (0..k).map(|i| (i as f64 + 0.5) / k as f64).collect();
    }
    let raw: Vec<f64> = if levels <= 1 {
        vec![0.5]
    } else {
        (0..levels)
            .map(|i| i as f64 / (levels - 1) as f64)
            .collect()
    };
    let mut out: Vec<f64> = Vec::with_capacity(raw.len());
    let mut values = Vec::new();
    for x in raw {
        let mut point = vec![0.5; space.dim()];
        point[index] = x;
        let value = space.decode(&point).remove(&spec.name);
        if !values.contains(&value) {
            values.push(value);
            out.push(x);
        }
    }
    out
}

/// The number of points of the grid with `levels` levels a parameter (saturating).
pub fn grid_size(space: &Space, levels: usize) -> usize {
    (0..space.dim()).fold(1usize, |acc, i| {
        acc.saturating_mul(param_levels(space, i, levels).len())
    })
}

/// The next `q` unseen grid points in a fixed order (the last parameter varies fastest).
pub(crate) fn grid_points(
    space: &Space,
    levels: usize,
    seen: &mut Seen,
    q: usize,
) -> Vec<Assignment> {
    let per_param: Vec<Vec<f64>> = (0..space.dim())
        .map(|i| param_levels(space, i, levels))
        .collect();
    grid_walk(space, &per_param, seen, q)
}

fn grid_walk(space: &Space, per_param: &[Vec<f64>], seen: &mut Seen, q: usize) -> Vec<Assignment> {
    let mut chosen = Vec::with_capacity(q);
    let mut digits = vec![0usize; per_param.len()];
    if per_param.iter().any(|l| l.is_empty()) {
        return chosen;
    }
    loop {
        if chosen.len() >= q {
            return chosen;
        }
        let x: Vec<f64> = digits.iter().zip(per_param).map(|(d, l)| l[*d]).collect();
        let a = space.decode(&x);
        if seen.insert(&a) {
            chosen.push(a);
        }
        // Mixed-radix increment, last digit fastest.
        let mut position = digits.len();
        loop {
            if position == 0 {
                return chosen;
            }
            position -= 1;
            digits[position] += 1;
            if digits[position] < per_param[position].len() {
                break;
            }
            digits[position] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{ParamSpec, Value};

    fn space(json: &str) -> Space {
        let params: Vec<ParamSpec> = serde_json::from_str(json).expect("test space parses");
        Space::new(params).expect("test space is valid")
    }

    #[test]
    fn the_initial_design_does_not_crowd_the_faces_of_the_cube() {
        let names: Vec<String> = (0..6)
            .map(|i| format!(r#"{{"name":"x{i}","type":"float","low":0,"high":1}}"#))
            .collect();
        let s = space(&format!("[{}]", names.join(",")));
        let (mut outer, mut all) = (0usize, 0usize);
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut seen = Seen::default();
            for a in initial_design(&s, &[], &mut seen, 8, false, &mut rng) {
                for x in s.encode(&a).expect("encodes") {
                    all += 1;
                    outer += usize::from(!(0.1..=0.9).contains(&x));
                }
            }
        }
        // Uniform points put 20% of their coordinates in the outer tenths; Euclidean maximin
        // put 35% there.
        let share = outer as f64 / all as f64;
        assert!(
            share < 0.3,
            "{share:.2} of the coordinates lie in the outer tenths"
        );
    }

    #[test]
    fn torus_distance_wraps_around() {
        assert!((squared_distance(&[0.05], &[0.95]) - 0.01).abs() < 1e-12);
        assert!((squared_distance(&[0.2, 0.5], &[0.6, 0.5]) - 0.16).abs() < 1e-12);
    }

    #[test]
    fn grid_counts_levels_and_dedups_integers() {
        let s = space(
            r#"[{"name":"a","type":"float","low":0,"high":1},{"name":"b","type":"int","low":1,"high":2},
                {"name":"c","type":"categorical","choices":["x","y","z","w"]}]"#,
        );
        assert_eq!(grid_size(&s, 3), 3 * 2 * 4);
        let mut seen = Seen::default();
        let all = grid_points(&s, 3, &mut seen, 100);
        assert_eq!(all.len(), 24);
        assert_eq!(all[0]["a"], Value::Float(0.0));
        assert_eq!(all[0]["c"], Value::Categorical("x".into()));
        assert_eq!(all[1]["c"], Value::Categorical("y".into()));
        assert!(grid_points(&s, 3, &mut seen, 5).is_empty());
    }

    #[test]
    fn study_grid_has_729_points() {
        let s = space(
            r#"[{"name":"a","type":"float","low":0,"high":1},{"name":"b","type":"float","low":1e-4,"high":1,"log":true},
                {"name":"c","type":"int","low":1,"high":100},{"name":"d","type":"int","low":1,"high":512,"log":true},
                {"name":"e","type":"float","low":0,"high":1},{"name":"f","type":"int","low":2,"high":7}]"#,
        );
        assert_eq!(grid_size(&s, 3), 729);
    }

    #[test]
    fn random_exhausts_a_tiny_space_without_duplicates() {
        let s = space(
            r#"[{"name":"b","type":"int","low":1,"high":3},{"name":"c","type":"categorical","choices":["x","y"]}]"#,
        );
        let mut seen = Seen::default();
        let mut rng = Rng::new(1);
        let points = random_points(&s, &mut seen, 10, &mut rng);
        assert_eq!(points.len(), 6);
    }

    #[test]
    fn design_starts_with_the_default_and_spreads() {
        let s = space(
            r#"[{"name":"a","type":"float","low":0,"high":1,"default":0.5},{"name":"b","type":"float","low":0,"high":1,"default":0.5}]"#,
        );
        let mut seen = Seen::default();
        let mut rng = Rng::new(2);
        let points = initial_design(&s, &[], &mut seen, 5, true, &mut rng);
        assert_eq!(points.len(), 5);
        assert_eq!(points[0]["a"], Value::Float(0.5));
        let encoded: Vec<Vec<f64>> = points
            .iter()
            .map(|a| s.encode(a).expect("encodes"))
            .collect();
        for i in 0..5 {
            for j in 0..i {
                assert!(squared_distance(&encoded[i], &encoded[j]) > 0.05);
            }
        }
    }
}
