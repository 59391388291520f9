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
use std::collections::HashSet;

use crate::space::{Assignment, ParamKind, Space, Value};

/// One parameter value in a hashable form: floats by their bits (with `-0.0` as `0.0`, so that
/// the two compare equal as they do as `f64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyValue {
    Int(i64),
    Float(u64),
    Categorical(String),
}

fn key_of(a: &Assignment) -> Vec<(String, KeyValue)> {
    a.iter()
        .map(|(name, value)| {
            let key = match value {
                Value::Int(v) => KeyValue::Int(*v),
                Value::Float(v) => KeyValue::Float((v + 0.0).to_bits()),
                Value::Categorical(v) => KeyValue::Categorical(v.clone()),
            };
            (name.clone(), key)
        })
        .collect()
}

/// The assignments already observed, pending or chosen; a suggestion must not repeat one.
/// Membership is a hash lookup, so checking a candidate costs the same with 10 or 100,000 trials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    assignments: Vec<Assignment>,
    keys: HashSet<Vec<(String, KeyValue)>>,
}

impl Seen {
    pub(crate) fn new(assignments: impl IntoIterator<Item = Assignment>) -> Seen {
        let mut seen = Seen::default();
        for a in assignments {
            seen.insert(&a);
        }
        seen
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, a: &Assignment) -> bool {
        self.keys.contains(&key_of(a))
    }

    /// Records `a`; returns false (and records nothing) when it was already there.
    pub(crate) fn insert(&mut self, a: &Assignment) -> bool {
        if !self.keys.insert(key_of(a)) {
            return false;
        }
        self.assignments.push(a.clone());
        true
    }

    /// The assignments recorded, in the order they were.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.iter()
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
    // Each candidate's squared distance to its nearest point, kept up to date as points are
    // chosen: one pass over the existing points, then one over the pool a chosen point (not a
    // pass over every point for every choice, which took seconds a round with 10,000 trials
    // running).
    let mut nearest: Vec<f64> = pool
        .iter()
        .map(|x| {
            points
                .iter()
                .map(|p| squared_distance(p, x))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    while chosen.len() < q && !pool.is_empty() {
        let mut best = 0;
        let mut best_score = f64::NEG_INFINITY;
        for (i, &s) in nearest.iter().enumerate() {
            if s > best_score {
                (best, best_score) = (i, s);
            }
        }
        let x = pool.swap_remove(best);
        nearest.swap_remove(best);
        let a = space.decode(&x);
        if seen.insert(&a) {
            for (candidate, d) in pool.iter().zip(nearest.iter_mut()) {
                *d = d.min(squared_distance(&x, candidate));
            }
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
            let per_param = space.params().iter().map(all_levels).collect();
            let grid = Grid::from_levels(space, per_param);
            chosen.extend(grid.unseen(space, seen, q - chosen.len()));
        }
    }
    chosen
}

/// Encoded positions of every value of a finite parameter.
fn all_levels(spec: &crate::space::ParamSpec) -> Vec<f64> {
    let n = spec.cardinality().unwrap_or(1) as usize;
    (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
}

/// The most steps of a stepped parameter the grid enumerates one by one (the most levels a
/// spec may ask of a numeric parameter).
pub const GRID_STEPS: u64 = 10_000;

/// The encoded grid levels of one parameter: `levels` evenly spaced points of the unit interval
/// (ends included; the middle when `levels` is 1), integers deduplicated after rounding, every
/// choice of a categorical and every step of a stepped parameter of at most [`GRID_STEPS`] steps
/// (its step is its grid; one with more is levelled as an integer is). Costs O(`levels`) (or the
/// choices, or the steps): decoding is monotone, so a repeated integer is always the previous
/// one.
fn param_levels(space: &Space, index: usize, levels: usize) -> Vec<f64> {
    let spec = &space.params()[index];
    let every = match &spec.kind {
        ParamKind::Categorical { choices } => Some(choices.len() as u64),
        ParamKind::Stepped(steps) if steps.count <= GRID_STEPS => Some(steps.count),
        _ => None,
    };
    if let Some(k) = every {
        return (0..k).map(|i| (i as f64 + 0.5) / k as f64).collect();
    }
    let mut out: Vec<f64> = Vec::with_capacity(levels.clamp(1, 1 << 16));
    let mut previous: Option<Value> = None;
    for i in 0..levels.max(1) {
        let x = if levels <= 1 {
            0.5
        } else {
            i as f64 / (levels - 1) as f64
        };
        let value = spec.decode_value(x);
        if previous.as_ref() != Some(&value) {
            previous = Some(value);
            out.push(x);
        }
    }
    out
}

/// The number of points of the grid with `levels` levels a parameter (saturating).
pub fn grid_size(space: &Space, levels: usize) -> usize {
    grid_size_at_most(space, levels, usize::MAX).unwrap_or(usize::MAX)
}

/// The number of points of the grid with `levels` levels a parameter, or `None` when it exceeds
/// `cap`. Stops counting as soon as the product passes `cap`, so a huge grid costs no more to
/// refuse than a grid of `cap` points (each parameter costs O(`levels`)).
pub fn grid_size_at_most(space: &Space, levels: usize, cap: usize) -> Option<usize> {
    let mut size = 1usize;
    for index in 0..space.dim() {
        size = size.checked_mul(param_levels(space, index, levels).len())?;
        if size > cap {
            return None;
        }
    }
    Some(size)
}

/// A grid, enumerated lazily: the `i`-th point is computed from `i` (mixed radix, the last
/// parameter varying fastest) and the grid itself is never materialised. Only each parameter's
/// levels are kept, with the values they decode to, so a seen assignment maps back to its index.
struct Grid {
    levels: Vec<Vec<f64>>,
    values: Vec<Vec<Value>>,
    len: Option<usize>,
}

impl Grid {
    fn new(space: &Space, levels: usize) -> Grid {
        let per_param = (0..space.dim())
            .map(|i| param_levels(space, i, levels))
            .collect();
        Grid::from_levels(space, per_param)
    }

    fn from_levels(space: &Space, levels: Vec<Vec<f64>>) -> Grid {
        let values: Vec<Vec<Value>> = space
            .params()
            .iter()
            .zip(&levels)
            .map(|(spec, xs)| xs.iter().map(|&x| spec.decode_value(x)).collect())
            .collect();
        let len = levels
            .iter()
            .try_fold(1usize, |acc, l| acc.checked_mul(l.len()));
        Grid {
            levels,
            values,
            len,
        }
    }

    /// The `index`-th point, `None` past the end.
    fn point(&self, space: &Space, index: usize) -> Option<Assignment> {
        if self.len.is_none_or(|len| index >= len) {
            return None;
        }
        let mut rest = index;
        let mut x = vec![0.0; self.levels.len()];
        for (position, levels) in self.levels.iter().enumerate().rev() {
            x[position] = levels[rest % levels.len()];
            rest /= levels.len();
        }
        Some(space.decode(&x))
    }

    /// The index of `a` when it is a point of this grid.
    fn index_of(&self, space: &Space, a: &Assignment) -> Option<usize> {
        let mut index = 0usize;
        for (spec, values) in space.params().iter().zip(&self.values) {
            let value = a.get(&spec.name)?;
            let digit = if let ParamKind::Categorical { .. } = spec.kind {
                values.iter().position(|v| v == value)?
            } else {
                // Numeric levels decode in strictly increasing order: search, then check.
                let target = value.as_f64()?;
                let at = values.partition_point(|v| v.as_f64().is_some_and(|v| v < target));
                (values.get(at) == Some(value)).then_some(at)?
            };
            index = index.checked_mul(values.len())?.checked_add(digit)?;
        }
        Some(index)
    }

    /// The first `q` points not in `seen`, in grid order, recorded in `seen`. Costs
    /// O(|seen| log |seen| + q): the seen points are mapped to their indices and skipped.
    fn unseen(&self, space: &Space, seen: &mut Seen, q: usize) -> Vec<Assignment> {
        let mut taken: Vec<usize> = seen
            .iter()
            .filter_map(|a| self.index_of(space, a))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        let mut taken = taken.into_iter().peekable();
        let mut chosen = Vec::with_capacity(q.min(self.len.unwrap_or(usize::MAX)));
        let mut index = 0usize;
        while chosen.len() < q {
            if taken.next_if_eq(&index).is_some() {
                index += 1;
                continue;
            }
            let Some(a) = self.point(space, index) else {
                break;
            };
            if seen.insert(&a) {
                chosen.push(a);
            }
            index += 1;
        }
        chosen
    }
}

/// The next `q` unseen grid points in a fixed order (the last parameter varies fastest).
pub(crate) fn grid_points(
    space: &Space,
    levels: usize,
    seen: &mut Seen,
    q: usize,
) -> Vec<Assignment> {
    Grid::new(space, levels).unseen(space, seen, q)
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

    /// Greedy maximin written plainly: every candidate scored against every point for every
    /// choice. The design keeps each candidate's nearest distance up to date instead.
    fn plain_maximin(
        space: &Space,
        existing: &[Vec<f64>],
        seen: &mut Seen,
        q: usize,
        rng: &mut Rng,
    ) -> Vec<Assignment> {
        let mut points = existing.to_vec();
        let pool_size = (8 * (points.len() + q)).clamp(32, 4096);
        let mut pool: Vec<Vec<f64>> = sobol_points(pool_size, space.dim(), 0, rng)
            .iter()
            .map(|x| space.snap(x))
            .collect();
        let mut chosen = Vec::new();
        while chosen.len() < q && !pool.is_empty() {
            let mut best = 0;
            let mut best_score = f64::NEG_INFINITY;
            for (i, candidate) in pool.iter().enumerate() {
                let mut score = f64::INFINITY;
                for point in &points {
                    score = score.min(squared_distance(point, candidate));
                }
                if score > best_score {
                    (best, best_score) = (i, score);
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

    #[test]
    fn the_design_is_the_plain_greedy_maximin() {
        let floats = space(
            r#"[{"name":"a","type":"float","low":0,"high":1},{"name":"b","type":"float","low":1e-6,"high":1,"log":true},{"name":"c","type":"float","low":-3,"high":3}]"#,
        );
        // Few distinct values: snapped candidates collide and are skipped.
        let integers = space(
            r#"[{"name":"i","type":"int","low":0,"high":3},{"name":"j","type":"int","low":1,"high":4}]"#,
        );
        for s in [&floats, &integers] {
            for seed in 0..6 {
                for (existing, q) in [(0, 5), (7, 16), (60, 9)] {
                    let mut rng = Rng::new(100 + seed);
                    let points: Vec<Vec<f64>> =
                        (0..existing).map(|_| s.snap(&rng.point(s.dim()))).collect();
                    let mut seen = Seen::new(points.iter().map(|x| s.decode(x)));
                    let (mut seen_plain, mut rng_plain) = (seen.clone(), rng.clone());
                    let design = initial_design(s, &points, &mut seen, q, false, &mut rng);
                    let plain = plain_maximin(s, &points, &mut seen_plain, q, &mut rng_plain);
                    assert_eq!(design, plain, "seed {seed}, {existing} existing, q = {q}");
                    assert!(design.len() <= q);
                    if std::ptr::eq(s, &floats) {
                        assert_eq!(design.len(), q);
                    }
                }
            }
        }
    }

    #[test]
    fn a_huge_grid_is_sized_without_being_built() {
        let s = space(
            r#"[{"name":"a","type":"float","low":0,"high":1},{"name":"b","type":"float","low":0,"high":1}]"#,
        );
        let started = std::time::Instant::now();
        // 4294967295 levels used to allocate 34 GB for the first parameter alone.
        assert_eq!(grid_size_at_most(&s, 10_000, 1_000_000), None);
        assert_eq!(grid_size_at_most(&s, 1000, 1_000_000), Some(1_000_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn grid_points_come_from_their_index_and_skip_what_was_seen() {
        let s = space(
            r#"[{"name":"a","type":"int","low":1,"high":5},{"name":"c","type":"categorical","choices":["x","y","z"]}]"#,
        );
        let grid = Grid::new(&s, 5);
        let mut seen = Seen::default();
        let all = grid_points(&s, 5, &mut seen.clone(), 100);
        assert_eq!(all.len(), 15);
        for (i, a) in all.iter().enumerate() {
            assert_eq!(grid.point(&s, i).as_ref(), Some(a));
            assert_eq!(grid.index_of(&s, a), Some(i));
        }
        assert_eq!(grid.point(&s, 15), None);
        // Seen points anywhere in the grid are skipped, the rest come in order.
        seen.insert(&all[0]);
        seen.insert(&all[2]);
        let next = grid_points(&s, 5, &mut seen, 3);
        assert_eq!(next, vec![all[1].clone(), all[3].clone(), all[4].clone()]);
    }

    #[test]
    fn a_large_grid_suggests_quickly_when_much_of_it_was_seen() {
        let s = space(r#"[{"name":"a","type":"float","low":0,"high":1}]"#);
        let started = std::time::Instant::now();
        let mut seen = Seen::default();
        let first = grid_points(&s, 100_000, &mut seen, 50_000);
        assert_eq!(first.len(), 50_000);
        let mut again = Seen::new(first);
        let next = grid_points(&s, 100_000, &mut again, 10);
        assert_eq!(next[0]["a"], Value::Float(50_000.0 / 99_999.0));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn seen_is_a_set_that_treats_negative_zero_as_zero() {
        let mut seen = Seen::default();
        let a: Assignment = [("x".to_string(), Value::Float(0.0))].into();
        let b: Assignment = [("x".to_string(), Value::Float(-0.0))].into();
        assert!(seen.insert(&a));
        assert!(!seen.insert(&b));
        assert!(seen.contains(&b));
        assert_eq!(seen.iter().count(), 1);
    }

    #[test]
    fn random_search_of_100000_points_is_fast() {
        let s = space(
            r#"[{"name":"a","type":"float","low":0,"high":1},{"name":"b","type":"float","low":0,"high":1}]"#,
        );
        let started = std::time::Instant::now();
        let mut seen = Seen::default();
        let mut rng = Rng::new(3);
        assert_eq!(
            random_points(&s, &mut seen, 100_000, &mut rng).len(),
            100_000
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
