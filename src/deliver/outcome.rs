//! What one attempt's result means (docs/how-it-works.md, "What happens to a delivery"):
//! pure functions, no I/O.

use std::time::{Duration, SystemTime};

use crate::park::Reason;

/// Longest `Retry-After` honoured; a receiver cannot park a delivery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The raw result of one HTTP attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    /// Could not connect, or the connection broke before an answer.
    Connection,
    /// No OAuth 2.0 token could be had; nothing was sent to the destination.
    Auth,
    /// The SSRF guard refused the destination (or its token endpoint); nothing was sent.
    Blocked,
    /// The destination's circuit breaker is open: not attempted, parked for later.
    /// Not attempted: the destination's breaker is open and lets a probe through in
    /// `reopens_in`, so the retry waits on the tier that covers it.
    CircuitOpen {
        reopens_in: std::time::Duration,
    },
}

impl AttemptResult {
    /// Whether the destination itself failed (what opens its circuit breaker): a timeout,
    /// a connection error, 429 or 5xx. A 4xx is an answer; an auth or guard failure never
    /// reached the destination.
    pub fn destination_failed(&self) -> bool {
        matches!(
            self,
            AttemptResult::Timeout
                | AttemptResult::Connection
                | AttemptResult::Status {
                    code: 429 | 500..=599,
                    ..
                }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt, not before `retry_after` when the receiver asked.
    Retryable {
        retry_after: Option<Duration>,
    },
    /// The receiver refused it; retrying will not help.
    Rejected,
    /// The destination is an address the SSRF guard refuses: dead-lettered as `ssrf_blocked`.
    Blocked,
}

pub fn classify(result: &AttemptResult) -> Verdict {
    match *result {
        AttemptResult::Status { code: 200..=299, .. } => Verdict::Delivered,
        AttemptResult::Status {
            code: 408 | 425 | 429 | 500..=599,
            retry_after,
        } => Verdict::Retryable {
            retry_after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        AttemptResult::Status { .. } => Verdict::Rejected,
        AttemptResult::Timeout | AttemptResult::Connection | AttemptResult::Auth => {
            Verdict::Retryable { retry_after: None }
        }
        AttemptResult::CircuitOpen { reopens_in } => Verdict::Retryable {
            retry_after: Some(reopens_in),
        },
        AttemptResult::Blocked => Verdict::Blocked,
    }
}

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

/// The `status_class` label of `webhook_requests_total`.
pub fn status_class(result: &AttemptResult) -> &'static str {
    match result {
        AttemptResult::Status { code, .. } => match code {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        AttemptResult::Timeout => "timeout",
        AttemptResult::Connection
        | AttemptResult::Auth
        | AttemptResult::Blocked
        | AttemptResult::CircuitOpen { .. } => "error",
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn every_status_code_is_classified() {
        for code in 100..=599u16 {
            let verdict = classify(&status(code));
            let expected = match code {
                200..=299 => Verdict::Delivered,
                408 | 425 | 429 | 500..=599 => Verdict::Retryable { retry_after: None },
                _ => Verdict::Rejected,
            };
            assert_eq!(verdict, expected, "{code}");
        }
        assert_eq!(
            classify(&AttemptResult::Timeout),
            Verdict::Retryable { retry_after: None }
        );
        assert_eq!(
            classify(&AttemptResult::Connection),
            Verdict::Retryable { retry_after: None }
        );
        assert_eq!(
            classify(&AttemptResult::Auth),
            Verdict::Retryable { retry_after: None }
        );
        assert_eq!(classify(&AttemptResult::Blocked), Verdict::Blocked);
        // An open breaker's remaining cool-down is the wait: the retry goes to the tier
        // that covers it (next_step), not round tier 1 every few seconds.
        let reopens_in = Duration::from_secs(25);
        assert_eq!(
            classify(&AttemptResult::CircuitOpen { reopens_in }),
            Verdict::Retryable {
                retry_after: Some(reopens_in)
            }
        );
        let tiers = [Duration::from_secs(10), Duration::from_secs(60)];
        assert_eq!(
            next_step(classify(&AttemptResult::CircuitOpen { reopens_in }), 0, 2, &tiers),
            Next::Retry {
                tier: 2,
                wait: Duration::from_secs(25)
            }
        );
    }

    #[test]
    fn only_the_destinations_own_failures_count_for_its_breaker() {
        for code in 100..=599u16 {
            assert_eq!(
                status(code).destination_failed(),
                code == 429 || code >= 500,
                "{code}"
            );
        }
        assert!(AttemptResult::Timeout.destination_failed());
        assert!(AttemptResult::Connection.destination_failed());
        for other in [
            AttemptResult::Auth,
            AttemptResult::Blocked,
            AttemptResult::CircuitOpen {
                reopens_in: Duration::ZERO,
            },
        ] {
            assert!(!other.destination_failed(), "{other:?}");
        }
    }

    #[test]
    fn retry_after_is_kept_and_capped() {
        let asked = |secs| AttemptResult::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            classify(&asked(30)),
            Verdict::Retryable {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            classify(&asked(86_400)),
            Verdict::Retryable {
                retry_after: Some(MAX_RETRY_AFTER)
            }
        );
    }

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
    fn status_classes() {
        assert_eq!(status_class(&status(204)), "2xx");
        assert_eq!(status_class(&status(302)), "3xx");
        assert_eq!(status_class(&status(404)), "4xx");
        assert_eq!(status_class(&status(503)), "5xx");
        assert_eq!(status_class(&AttemptResult::Timeout), "timeout");
        assert_eq!(status_class(&AttemptResult::Connection), "error");
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        // 2001-09-09T01:46:40Z is 1_000_000_000; ten seconds later:
        assert_eq!(
            parse_retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 09 Sep 2001 01:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
