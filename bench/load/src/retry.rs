//! Exponential backoff with jitter for the simulated agents, and which gRPC codes are worth
//! retrying.
//!
//! The agents of one fleet must not retry in lockstep after a coordinator restart, so each
//! delay is drawn uniformly from `[base/2, base]` (the "equal jitter" of the AWS Architecture
//! Blog, "Exponential Backoff And Jitter", 2015) with a per-agent seed.

use std::time::Duration;

use tonic::Code;

/// Whether a call that failed with `code` may succeed when sent again unchanged: the
/// coordinator was down, draining, overloaded, or the call timed out on the client.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Internal
    )
}

/// Retry limits: a call is retried until it succeeds, fails for good, or `give_up_after` has
/// passed since its first try (and at most `max_tries` times).
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// How long one call is retried for.
    pub give_up_after: Duration,
    /// Tries of one call, the first included.
    pub max_tries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            give_up_after: Duration::from_secs(30),
            max_tries: 200,
        }
    }
}

/// The delays of one call's retries.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    current: Duration,
    rng_state: u64,
}

impl Backoff {
    /// A backoff for `policy`; `seed` decorrelates agents.
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            current: policy.initial,
            rng_state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next delay; doubles the base for the one after, up to the policy's maximum.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.policy.max.max(self.policy.initial));
        base.mul_f64(0.5 + 0.5 * self.next_unit())
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.current = self.policy.initial;
    }

    fn next_unit(&mut self) -> f64 {
        unit(&mut self.rng_state)
    }
}

/// A uniform number in `[0, 1)` from SplitMix64 (Steele, Lea and Flood, OOPSLA 2014), advancing
/// `state`.
pub fn unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            ..RetryPolicy::default()
        };
        let mut backoff = Backoff::new(policy, 7);
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let bounds = [100, 200, 400, 400, 400];
        for (delay, base_ms) in delays.iter().zip(bounds) {
            let base = Duration::from_millis(base_ms);
            assert!(
                *delay >= base / 2 && *delay <= base,
                "{delay:?} vs {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn stale_leases_are_not_transient() {
        assert!(is_transient(Code::Unavailable));
        assert!(!is_transient(Code::FailedPrecondition));
        assert!(!is_transient(Code::NotFound));
    }
}
