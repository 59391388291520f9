//! Which results the GP is fitted to when an experiment has more than
//! [`crate::SuggestConfig::max_model_points`] of them.
//!
//! An exact GP costs `O(n³)` a likelihood evaluation. On a 2-core machine, for a round of 8
//! points on a 6-D problem, the warm fit took 1–2 s at 1,000 results, 15.5 s at 2,000 and 53 s at
//! 3,000; the cold fit that follows a coordinator restart took 7, 44 and 130 s. At that rate a
//! cold fit passes the coordinator's 300 s suggestion budget near 4,000 results, and a round
//! that does fails the experiment (docs/BENCHMARKS.md §2, "Large experiments").
//!
//! Above the cap the GP sees a subset of size `cap` (subset of data; Rasmussen and Williams
//! 2006, §8.3.1): the best quarter of the cap by value, which keeps the regions expected
//! improvement works in resolved, and a uniform draw from the rest, which keeps the global
//! picture. BO places most of its points near good regions, so the draw is dense there too.
//! All results still count for everything else: no observed assignment is proposed again, and
//! the local candidates start from the best results of all.

use crate::rng::Rng;

/// The share of the cap given to the best results.
const BEST_SHARE: usize = 4;

/// The indices (ascending) of the results the GP is fitted to, or `None` when all of them are
/// (there are at most `cap`). `y_min` are the minimization-oriented values; the draw is seeded.
pub fn model_points(y_min: &[f64], cap: usize, seed: u64) -> Option<Vec<usize>> {
    let n = y_min.len();
    if n <= cap {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Best first; ties keep the earlier result first.
    order.sort_by(|a, b| y_min[*a].total_cmp(&y_min[*b]).then(a.cmp(b)));
    let best = cap.div_ceil(BEST_SHARE).min(cap);
    let mut rng = Rng::with_stream(seed, 5);
    // A partial Fisher-Yates shuffle of the rest picks `cap - best` of them uniformly.
    for i in best..cap {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut chosen = order[..cap].to_vec();
    chosen.sort_unstable();
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_cap_keeps_every_result() {
        let y = [3.0, 1.0, 2.0];
        assert_eq!(model_points(&y, 3, 1), None);
        assert_eq!(model_points(&y, 10, 1), None);
    }

    #[test]
    fn above_the_cap_keeps_the_best_quarter_and_distinct_others() {
        let n = 1000;
        // Values in a scrambled order, so index and rank differ.
        let y: Vec<f64> = (0..n).map(|i| ((i * 7919) % n) as f64).collect();
        let cap = 100;
        let chosen = model_points(&y, cap, 3).expect("above the cap");
        assert_eq!(chosen.len(), cap);
        assert!(
            chosen.windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct"
        );
        assert!(chosen.iter().all(|i| *i < n));
        // The 25 smallest values are all in.
        let mut ranked: Vec<usize> = (0..n).collect();
        ranked.sort_by(|a, b| y[*a].total_cmp(&y[*b]));
        for best in &ranked[..cap / 4] {
            assert!(chosen.contains(best), "best result {best} left out");
        }
        // The rest is drawn from everywhere, not only the next best.
        let worst_half = ranked[n / 2..]
            .iter()
            .filter(|i| chosen.contains(i))
            .count();
        assert!(worst_half > 20, "{worst_half} of the worst half");
    }

    #[test]
    fn the_draw_is_deterministic_for_a_seed_and_moves_with_it() {
        let y: Vec<f64> = (0..500).map(|i| f64::from(i).sin()).collect();
        let a = model_points(&y, 64, 9);
        assert_eq!(a, model_points(&y, 64, 9));
        assert_ne!(a, model_points(&y, 64, 10));
    }

    #[test]
    fn ties_and_a_cap_below_four_still_give_cap_distinct_points() {
        let y = vec![1.0; 50];
        for cap in 1..5 {
            let chosen = model_points(&y, cap, 2).expect("above the cap");
            assert_eq!(chosen.len(), cap);
            assert!(chosen.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
