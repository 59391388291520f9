//! The counter-based random numbers behind dropout, identical on every backend.
//!
//! A mask element depends only on `(seed, index)`, so a CUDA thread computes the same bit as the
//! CPU without sharing state. The mixer is SplitMix64's finalizer (Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators", OOPSLA 2014); only integer operations and
//! an exact conversion are used, so every backend agrees bit for bit.

/// The 64-bit golden-ratio increment of SplitMix64.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Mixes `seed` and `index` into 64 well-distributed bits.
pub fn mix64(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(GOLDEN_GAMMA))
        .wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` with 24 random bits (exact in `f32`).
pub fn dropout_uniform(seed: u64, index: u64) -> f32 {
    // 24 bits convert to f32 exactly, and multiplying by 2^-24 is exact too.
    (mix64(seed, index) >> 40) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_unit_interval_and_roughly_uniform() {
        let n = 100_000u64;
        let mut sum = 0.0f64;
        let mut below_half = 0u64;
        for i in 0..n {
            let u = dropout_uniform(42, i);
            assert!((0.0..1.0).contains(&u), "u = {u} at {i}");
            sum += f64::from(u);
            below_half += u64::from(u < 0.5);
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((below_half as f64 / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let same = (0..1000)
            .filter(|&i| dropout_uniform(1, i) == dropout_uniform(2, i))
            .count();
        assert!(same < 5, "{same} equal draws");
    }
}
