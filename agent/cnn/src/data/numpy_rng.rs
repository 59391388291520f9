//! numpy's legacy `np.random.seed(s); np.random.permutation(n)`, reproduced exactly.
//!
//! The legacy `RandomState` seeds MT19937 with Matsumoto and Nishimura's `init_genrand` when
//! the seed is an integer (M. Matsumoto and T. Nishimura, "Mersenne Twister: a 623-dimensionally
//! equidistributed uniform pseudo-random number generator", ACM TOMACS 8(1), 1998). `permutation`
//! shuffles `arange(n)` by Fisher–Yates from the last element down: for `i = n-1 .. 1` it swaps
//! element `i` with element `j`, where `j` is uniform in `[0, i]` by masked rejection sampling
//! (draw 32 bits, keep the bits below the smallest all-ones mask covering `i`, retry while the
//! result exceeds `i`). Written from that description; checked against the values numpy prints.

/// The 32-bit Mersenne Twister.
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// 64 bits from two draws, the first as the high half (numpy's `next_uint64`).
    fn next_u64(&mut self) -> u64 {
        let high = u64::from(self.next_u32());
        (high << 32) | u64::from(self.next_u32())
    }

    /// Uniform in `[0, max]` by masked rejection sampling (numpy's `random_interval`).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let value = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }
}

/// `np.random.seed(seed); np.random.permutation(n)` with numpy's legacy generator.
pub fn legacy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    let mut values: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.interval(i as u64) as usize;
        values.swap(i, j);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_output_for_seed_5489() {
        // The 10000th output of the default-seeded MT19937 is 4123659995 (C++ std::mt19937).
        let mut rng = Mt19937::new(5489);
        let last = (0..10_000).map(|_| rng.next_u32()).last();
        assert_eq!(last, Some(4_123_659_995));
    }

    #[test]
    fn permutation_of_mr_starts_like_numpy() {
        let p = legacy_permutation(10_662, 10);
        assert_eq!(
            &p[..10],
            &[7359, 5573, 10180, 8057, 8470, 6793, 333, 1124, 6010, 327]
        );
        assert_eq!(&p[9662..9667], &[3067, 7963, 4268, 9086, 2240]);
    }
}
