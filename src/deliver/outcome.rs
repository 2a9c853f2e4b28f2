//! What one attempt's result means (§4): pure functions, no I/O.

use std::time::{Duration, SystemTime};

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
        AttemptResult::Blocked => Verdict::Blocked,
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
        AttemptResult::Connection | AttemptResult::Auth | AttemptResult::Blocked => "error",
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
