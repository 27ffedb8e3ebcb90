//! Retry delays: exponential, capped, with full jitter, so that a fleet that lost its
//! server does not come back in lockstep.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first retry waits up to this long.
    pub base: Duration,
    /// No retry waits longer.
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first): uniformly random in
    /// `[delay/2, delay]`, where delay is `base · 2^attempt` capped at `cap`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let delay = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        let half = delay / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A uniform random number in [0, 1).
pub fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    // Without an entropy source the jitter degrades to none; nothing else depends on it.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 0..30 {
            let d = b.delay(attempt);
            let full = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(b.cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(5)).collect();
        assert!(spread.len() > 10, "jitter: {spread:?}");
    }
}
