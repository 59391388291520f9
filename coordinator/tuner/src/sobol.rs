//! Sobol' low-discrepancy points (Sobol', USSR Comput. Math. 1967), generated in Gray-code order
//! (Antonov and Saleev 1979) with direction numbers from Joe and Kuo, "Constructing Sobol
//! sequences with better two-dimensional projections", SIAM J. Sci. Comput. 30 (2008), file
//! `new-joe-kuo-6.21201` (dimensions 2 to 32). Points are randomized by a seeded digital shift
//! (XOR of a random 32-bit word per coordinate), which keeps the net structure. Coordinates past
//! the table's 32 are filled with uniform draws.

use crate::rng::Rng;

/// Bits of precision per coordinate.
const BITS: usize = 32;

/// Joe–Kuo rows for dimensions 2..=32: degree `s`, polynomial coefficients `a`, initial `m_i`.
const JOE_KUO: [(u32, u32, &[u32]); 31] = [
    (1, 0, &[1]),
    (2, 1, &[1, 3]),
    (3, 1, &[1, 3, 1]),
    (3, 2, &[1, 1, 1]),
    (4, 1, &[1, 1, 3, 3]),
    (4, 4, &[1, 3, 5, 13]),
    (5, 2, &[1, 1, 5, 5, 17]),
    (5, 4, &[1, 1, 5, 5, 5]),
    (5, 7, &[1, 1, 7, 11, 19]),
    (5, 11, &[1, 1, 5, 1, 1]),
    (5, 13, &[1, 1, 1, 3, 11]),
    (5, 14, &[1, 3, 5, 5, 31]),
    (6, 1, &[1, 3, 3, 9, 7, 49]),
    (6, 13, &[1, 1, 1, 15, 21, 21]),
    (6, 16, &[1, 3, 1, 13, 27, 49]),
    (6, 19, &[1, 1, 1, 15, 7, 5]),
    (6, 22, &[1, 3, 1, 15, 13, 25]),
    (6, 25, &[1, 1, 5, 5, 19, 61]),
    (7, 1, &[1, 3, 7, 11, 23, 15, 103]),
    (7, 4, &[1, 3, 7, 13, 13, 15, 69]),
    (7, 7, &[1, 1, 3, 13, 7, 35, 63]),
    (7, 8, &[1, 3, 5, 9, 1, 25, 53]),
    (7, 14, &[1, 3, 1, 13, 9, 35, 107]),
    (7, 19, &[1, 3, 1, 5, 27, 61, 31]),
    (7, 21, &[1, 1, 5, 11, 19, 41, 61]),
    (7, 28, &[1, 3, 5, 3, 3, 13, 69]),
    (7, 31, &[1, 1, 7, 13, 1, 19, 1]),
    (7, 32, &[1, 3, 7, 5, 13, 19, 59]),
    (7, 37, &[1, 1, 3, 9, 25, 29, 41]),
    (7, 41, &[1, 3, 5, 13, 23, 1, 55]),
    (7, 42, &[1, 3, 7, 3, 13, 59, 17]),
];

/// The largest dimension with Sobol' coordinates.
pub const MAX_SOBOL_DIM: usize = JOE_KUO.len() + 1;

/// Direction numbers `v_k = m_k 2^(32-k)` of one coordinate (dimension index `j`, 0-based).
fn directions(j: usize) -> [u32; BITS] {
    let mut v = [0u32; BITS];
    if j == 0 {
        for (k, vk) in v.iter_mut().enumerate() {
            *vk = 1 << (BITS - 1 - k);
        }
        return v;
    }
    let (s, a, m) = JOE_KUO[j - 1];
    let s = s as usize;
    for k in 0..s.min(BITS) {
        v[k] = m[k] << (BITS - 1 - k);
    }
    for k in s..BITS {
        let mut value = v[k - s] ^ (v[k - s] >> s);
        for i in 1..s {
            if (a >> (s - 1 - i)) & 1 == 1 {
                value ^= v[k - i];
            }
        }
        v[k] = value;
    }
    v
}

/// `n` digitally shifted Sobol' points in `[0,1)^d`, skipping the first `skip` points of the
/// sequence (shifted by the same words, so consecutive calls with the same `rng` state continue
/// one randomized sequence).
pub fn sobol_points(n: usize, d: usize, skip: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let sobol_dims = d.min(MAX_SOBOL_DIM);
    let dirs: Vec<[u32; BITS]> = (0..sobol_dims).map(directions).collect();
    let shifts: Vec<u32> = (0..sobol_dims)
        .map(|_| (rng.next_u64() >> 32) as u32)
        .collect();
    let mut state = vec![0u32; sobol_dims];
    let mut points = Vec::with_capacity(n);
    let scale = 1.0 / (1u64 << BITS) as f64;
    for index in 0..(skip + n) {
        if index > 0 {
            // Gray code: flip the direction number of the lowest zero bit of index - 1.
            let bit = ((index - 1) as u64).trailing_ones() as usize;
            for (x, dir) in state.iter_mut().zip(&dirs) {
                *x ^= dir[bit.min(BITS - 1)];
            }
        }
        if index < skip {
            continue;
        }
        let mut point: Vec<f64> = state
            .iter()
            .zip(&shifts)
            .map(|(x, s)| (x ^ s) as f64 * scale)
            .collect();
        point.extend((sobol_dims..d).map(|_| rng.uniform()));
        points.push(point);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshifted_first_points_match_the_known_sequence() {
        // With a zero shift the 2-D sequence starts (0,0), (.5,.5), (.75,.25), (.25,.75).
        let dirs: Vec<[u32; BITS]> = (0..2).map(directions).collect();
        assert_eq!(dirs[0][0], 1 << 31);
        assert_eq!(dirs[1][0], 1 << 31);
        assert_eq!(dirs[1][1], 3 << 30);
        let mut state = [0u32; 2];
        let mut seen = vec![];
        for index in 1..4usize {
            let bit = ((index - 1) as u64).trailing_ones() as usize;
            for (x, dir) in state.iter_mut().zip(&dirs) {
                *x ^= dir[bit];
            }
            seen.push((
                state[0] as f64 / 2f64.powi(32),
                state[1] as f64 / 2f64.powi(32),
            ));
        }
        assert_eq!(seen, vec![(0.5, 0.5), (0.75, 0.25), (0.25, 0.75)]);
    }

    #[test]
    fn first_power_of_two_points_stratify_each_axis() {
        let mut rng = Rng::new(5);
        let points = sobol_points(64, 10, 0, &mut rng);
        for j in 0..10 {
            let mut bins: Vec<usize> = points.iter().map(|p| (p[j] * 64.0) as usize).collect();
            bins.sort_unstable();
            assert_eq!(bins, (0..64).collect::<Vec<_>>(), "axis {j}");
        }
    }

    #[test]
    fn high_dimensions_are_filled() {
        let mut rng = Rng::new(5);
        let points = sobol_points(4, 40, 0, &mut rng);
        assert!(
            points
                .iter()
                .all(|p| p.len() == 40 && p.iter().all(|x| (0.0..1.0).contains(x)))
        );
    }
}
