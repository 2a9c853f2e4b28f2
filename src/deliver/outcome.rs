//! What one attempt's result means: delivered, worth another attempt, refused, or blocked
//! (the pipeline decides what follows, `pipeline::next_step`). Pure functions, no I/O.

use std::time::{Duration, SystemTime};

use crate::metrics::StatusClass;

/// Longest `Retry-After` honoured; a receiver cannot park a delivery for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The raw result of one HTTP attempt, with what there is to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// An answer: its status, its `Retry-After` when it gave one, and the start of an error
    /// answer's body (what the destination said is often the best hint).
    Status {
        code: u16,
        retry_after: Option<Duration>,
        said: Option<String>,
    },
    /// No answer within the template's timeout; why, when connecting took too long.
    Timeout { cause: Option<String> },
    /// Could not connect, or the connection broke before an answer: why.
    Connection { cause: String },
    /// No OAuth 2.0 token could be had; nothing was sent to the destination.
    Auth { why: String },
    /// The SSRF guard refused the destination (or its token endpoint); nothing was sent.
    Blocked { why: String },
    /// Not attempted: the destination's breaker is open and lets a probe through in
    /// `reopens_in`, so the retry waits on the tier that covers it.
    CircuitOpen { reopens_in: Duration },
}

impl AttemptResult {
    /// The destination asks to slow down: 429, or 503 with `Retry-After`.
    pub fn slow_down(&self) -> bool {
        matches!(
            self,
            AttemptResult::Status { code: 429, .. }
                | AttemptResult::Status {
                    code: 503,
                    retry_after: Some(_),
                    ..
                }
        )
    }

    /// Whether the destination itself failed (what opens its circuit breaker): a timeout,
    /// a connection error, or 5xx. A 4xx is an answer; an auth or guard failure never
    /// reached the destination; a request to slow down (429, 503 with `Retry-After`) is
    /// met by lowering the template's rate, not by cutting the destination off.
    pub fn destination_failed(&self) -> bool {
        !self.slow_down()
            && matches!(
                self,
                AttemptResult::Timeout { .. }
                    | AttemptResult::Connection { .. }
                    | AttemptResult::Status { code: 500..=599, .. }
            )
    }

    /// What happened, for people and for `wd-last-error`: `HTTP 503`, `timeout`,
    /// `connection error: …`, `auth: …` (no token), `ssrf_blocked: …`.
    pub fn describe(&self) -> String {
        match self {
            AttemptResult::Status { code, .. } => format!("HTTP {code}"),
            AttemptResult::Timeout { .. } => "timeout".to_string(),
            AttemptResult::Connection { cause } => format!("connection error: {cause}"),
            AttemptResult::Auth { why } => format!("auth: {why}"),
            AttemptResult::Blocked { why } => format!("ssrf_blocked: {why}"),
            AttemptResult::CircuitOpen { .. } => {
                "circuit_open: the destination keeps failing; not attempted".to_string()
            }
        }
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
    match result {
        AttemptResult::Status { code: 200..=299, .. } => Verdict::Delivered,
        AttemptResult::Status {
            code: 408 | 425 | 429 | 500..=599,
            retry_after,
            ..
        } => Verdict::Retryable {
            retry_after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        AttemptResult::Status { .. } => Verdict::Rejected,
        AttemptResult::Timeout { .. } | AttemptResult::Connection { .. } | AttemptResult::Auth { .. } => {
            Verdict::Retryable { retry_after: None }
        }
        AttemptResult::CircuitOpen { reopens_in } => Verdict::Retryable {
            retry_after: Some(*reopens_in),
        },
        AttemptResult::Blocked { .. } => Verdict::Blocked,
    }
}

/// The `status_class` label of `webhook_requests_total`.
pub fn status_class(result: &AttemptResult) -> StatusClass {
    match result {
        AttemptResult::Status { code, .. } => StatusClass::of(*code),
        AttemptResult::Timeout { .. } => StatusClass::Timeout,
        AttemptResult::Connection { .. }
        | AttemptResult::Auth { .. }
        | AttemptResult::Blocked { .. }
        | AttemptResult::CircuitOpen { .. } => StatusClass::Error,
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
            said: None,
        }
    }

    fn timeout() -> AttemptResult {
        AttemptResult::Timeout { cause: None }
    }

    fn connection() -> AttemptResult {
        AttemptResult::Connection {
            cause: "connection refused".into(),
        }
    }

    fn auth() -> AttemptResult {
        AttemptResult::Auth {
            why: "no token".into(),
        }
    }

    fn blocked() -> AttemptResult {
        AttemptResult::Blocked {
            why: "10.0.0.1 is private".into(),
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
        assert_eq!(classify(&timeout()), Verdict::Retryable { retry_after: None });
        assert_eq!(classify(&connection()), Verdict::Retryable { retry_after: None });
        assert_eq!(classify(&auth()), Verdict::Retryable { retry_after: None });
        assert_eq!(classify(&blocked()), Verdict::Blocked);
        // An open breaker's remaining cool-down is the wait: the retry goes to the tier
        // that covers it (next_step), not round tier 1 every few seconds.
        let reopens_in = Duration::from_secs(25);
        assert_eq!(
            classify(&AttemptResult::CircuitOpen { reopens_in }),
            Verdict::Retryable {
                retry_after: Some(reopens_in)
            }
        );
    }

    #[test]
    fn only_the_destinations_own_failures_count_for_its_breaker() {
        for code in 100..=599u16 {
            assert_eq!(
                status(code).destination_failed(),
                code >= 500,
                "{code}: a 429 asks to slow down, which lowers the rate instead"
            );
        }
        let slow_down = AttemptResult::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(5)),
            said: None,
        };
        assert!(!slow_down.destination_failed() && slow_down.slow_down());
        assert!(timeout().destination_failed());
        assert!(connection().destination_failed());
        for other in [
            auth(),
            blocked(),
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
            said: None,
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

    #[test]
    fn status_classes() {
        let class = |result: AttemptResult| status_class(&result).as_str();
        assert_eq!(class(status(101)), "1xx");
        assert_eq!(class(status(204)), "2xx");
        assert_eq!(class(status(302)), "3xx");
        assert_eq!(class(status(404)), "4xx");
        assert_eq!(class(status(503)), "5xx");
        assert_eq!(class(timeout()), "timeout");
        assert_eq!(class(connection()), "error");
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
