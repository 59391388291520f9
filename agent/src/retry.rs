//! Exponential backoff with jitter, and what each gRPC status means to the agent.

use std::time::Duration;

use tonic::Code;

/// What the agent does after a call failed with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (coordinator down, draining, overloaded, timed out): retry after a backoff.
    Retry,
    /// The lease went to another attempt (`FailedPrecondition`) or is unknown (`NotFound`):
    /// drop what belongs to it, never retry.
    Stale,
    /// Anything else (`InvalidArgument`, `Unauthenticated`, ...): retrying will not help.
    Fatal,
}

/// Classifies a status code per the API contract (COMMON.md, "gRPC API").
pub fn disposition(code: Code) -> Disposition {
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Unknown
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Internal => Disposition::Retry,
        Code::FailedPrecondition | Code::NotFound => Disposition::Stale,
        _ => Disposition::Fatal,
    }
}

/// Exponential backoff with "full jitter": each delay is uniform in `[base/2, base]`, and the base
/// doubles from `initial` up to `max` (AWS Architecture Blog, "Exponential Backoff And Jitter",
/// 2015, uses the same idea to spread retries of many clients).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng_state: u64,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`; `seed` decorrelates agents and slots.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            current: initial,
            rng_state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next delay to wait; grows the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let fraction = 0.5 + 0.5 * self.next_unit();
        base.mul_f64(fraction)
    }

    /// Starts over from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// A uniform number in `[0, 1)` from SplitMix64 (Steele, Lea and Flood, OOPSLA 2014).
    fn next_unit(&mut self) -> f64 {
        self.rng_state = self.rng_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed for [`Backoff`] that differs between processes and slots.
pub fn jitter_seed(slot: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ (slot as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut backoff = Backoff::new(initial, max, 7);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(
            delays[0] >= initial / 2 && delays[0] <= initial,
            "{delays:?}"
        );
        assert!(delays[3] >= Duration::from_millis(400), "{delays:?}");
        assert!(delays.iter().all(|delay| *delay <= max), "{delays:?}");
        assert!(delays[7] >= max / 2, "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= initial);
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let mut first = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 1);
        let mut second = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 2);
        let a: Vec<Duration> = (0..4).map(|_| first.next_delay()).collect();
        let b: Vec<Duration> = (0..4).map(|_| second.next_delay()).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn statuses_map_to_the_contract() {
        assert_eq!(disposition(Code::Unavailable), Disposition::Retry);
        assert_eq!(disposition(Code::DeadlineExceeded), Disposition::Retry);
        assert_eq!(disposition(Code::FailedPrecondition), Disposition::Stale);
        assert_eq!(disposition(Code::NotFound), Disposition::Stale);
        assert_eq!(disposition(Code::InvalidArgument), Disposition::Fatal);
        assert_eq!(disposition(Code::Unauthenticated), Disposition::Fatal);
    }
}
