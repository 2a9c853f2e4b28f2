//! Waiting on something that is down (Redis, Kafka, a token endpoint): delays that double
//! from a first one up to a cap, and a sleep that shutdown cuts short.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays doubling from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The delay after `failures` failures in a row, the first delay after one.
    pub fn delay(self, failures: u32) -> Duration {
        self.first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max)
    }

    /// Sleeps [`Backoff::delay`] of `failures`; `false` when `shutdown` came first.
    pub async fn wait(self, failures: u32, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.delay(failures)) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<u64> = (0..10).map(|n| backoff.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(5), "no overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_once_on_shutdown() {
        let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let shutdown = CancellationToken::new();
        assert!(backoff.wait(1, &shutdown).await, "slept");
        shutdown.cancel();
        assert!(!backoff.wait(1, &shutdown).await);
    }
}
