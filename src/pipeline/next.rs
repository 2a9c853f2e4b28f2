//! What follows an attempt (docs/how-it-works.md, "What happens to a delivery"): delivered,
//! parked on a retry tier, or dead-lettered with a reason. A pure function, no I/O.

use std::time::Duration;

use crate::deliver::Verdict;
use crate::park::Reason;

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Park it on retry tier `tier` (1-based), due `wait` from now.
    Retry {
        tier: usize,
        wait: Duration,
    },
    DeadLetter(Reason),
}

/// The next step after attempt number `attempt` (1 = the first) ended in `verdict`, for a
/// template allowing `max_retries` retries and retry tiers with `tier_delays` (tier 1 first;
/// at least one).
///
/// Retry n goes to tier n (the last tier repeats) and is never due before that tier's
/// delay; a longer `Retry-After` moves it to the first later tier whose delay covers the
/// wait, so no tier partition holds a record due later than the ones produced after it.
/// Beyond the last tier's delay the wait is capped at it.
pub fn next_step(verdict: Verdict, attempt: u32, max_retries: u32, tier_delays: &[Duration]) -> Next {
    let retry_after = match verdict {
        Verdict::Delivered => return Next::Delivered,
        Verdict::Rejected => return Next::DeadLetter(Reason::Rejected),
        Verdict::Blocked => return Next::DeadLetter(Reason::SsrfBlocked),
        Verdict::Retryable { .. } if attempt > max_retries => {
            return Next::DeadLetter(Reason::RetriesExhausted);
        }
        Verdict::Retryable { retry_after } => retry_after,
    };
    let last = tier_delays.len().max(1);
    let delay = |tier: usize| tier_delays.get(tier - 1).copied().unwrap_or_default();
    // `attempt` 0: not attempted yet (an open circuit breaker); it waits on tier 1.
    let nominal = (attempt as usize).clamp(1, last);
    let wait = retry_after.map_or(delay(nominal), |asked| asked.max(delay(nominal)));
    let tier = (nominal..=last).find(|&t| delay(t) >= wait).unwrap_or(last);
    Next::Retry {
        tier,
        wait: wait.min(delay(tier).max(delay(nominal))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];

    fn retryable(after: Option<u64>) -> Verdict {
        Verdict::Retryable {
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn retry(tier: usize, secs: u64) -> Next {
        Next::Retry {
            tier,
            wait: Duration::from_secs(secs),
        }
    }

    #[test]
    fn final_verdicts_never_retry() {
        for attempt in 1..=5 {
            assert_eq!(next_step(Verdict::Delivered, attempt, 2, &TIERS), Next::Delivered);
            assert_eq!(
                next_step(Verdict::Rejected, attempt, 2, &TIERS),
                Next::DeadLetter(Reason::Rejected)
            );
            assert_eq!(
                next_step(Verdict::Blocked, attempt, 2, &TIERS),
                Next::DeadLetter(Reason::SsrfBlocked)
            );
        }
    }

    #[test]
    fn retry_n_goes_to_tier_n_and_the_last_tier_repeats() {
        assert_eq!(next_step(retryable(None), 1, 5, &TIERS), retry(1, 10));
        assert_eq!(next_step(retryable(None), 2, 5, &TIERS), retry(2, 60));
        assert_eq!(next_step(retryable(None), 5, 5, &TIERS), retry(2, 60));
        let one = [Duration::from_secs(7)];
        assert_eq!(next_step(retryable(None), 3, 5, &one), retry(1, 7));
    }

    #[test]
    fn retries_stop_after_max_retries() {
        let exhausted = Next::DeadLetter(Reason::RetriesExhausted);
        assert_eq!(next_step(retryable(None), 2, 2, &TIERS), retry(2, 60));
        assert_eq!(next_step(retryable(None), 3, 2, &TIERS), exhausted);
        assert_eq!(next_step(retryable(None), 1, 0, &TIERS), exhausted);
        assert_eq!(next_step(retryable(Some(5)), 2, 1, &TIERS), exhausted);
    }

    #[test]
    fn retry_after_moves_a_retry_to_the_tier_that_covers_it() {
        // Shorter than the tier's delay: the tier's delay wins (jitter only adds).
        assert_eq!(next_step(retryable(Some(3)), 1, 2, &TIERS), retry(1, 10));
        // Longer: the first tier whose delay covers it, never an earlier one.
        assert_eq!(next_step(retryable(Some(30)), 1, 2, &TIERS), retry(2, 30));
        assert_eq!(next_step(retryable(Some(60)), 1, 2, &TIERS), retry(2, 60));
        // Beyond every tier: the last tier, capped at its delay, not an hour at its head.
        assert_eq!(next_step(retryable(Some(3600)), 1, 2, &TIERS), retry(2, 60));
        assert_eq!(next_step(retryable(Some(3600)), 2, 2, &TIERS), retry(2, 60));
    }

    #[test]
    fn a_delivery_behind_an_open_breaker_waits_on_the_tier_that_covers_its_cool_down() {
        // Not attempted (attempt 0): an open breaker's remaining cool-down is the wait.
        let reopens_in = Some(Duration::from_secs(25));
        let verdict = Verdict::Retryable {
            retry_after: reopens_in,
        };
        assert_eq!(next_step(verdict, 0, 2, &TIERS), retry(2, 25));
    }
}
