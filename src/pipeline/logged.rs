//! An attempt as the delivery log records it ([`crate::delivery_log`]).

use crate::deliver::{Attempt, AttemptResult};
use crate::delivery_log::{LoggedAttempt, Outcome, answer_start};
use crate::park::now_ms;

use super::attempt::Job;
use super::next::Next;

/// Attempt `number` of `job`'s delivery (`attempt`: what it got, or why it was not made)
/// and what followed it.
pub(super) fn logged(
    job: &Job<'_>,
    attempt: Result<&Attempt, &'static str>,
    number: u32,
    next: Next,
) -> LoggedAttempt {
    let (status, error, answer, latency_ms) = match attempt {
        Ok(attempt) => {
            let (status, error, answer) = match &attempt.result {
                AttemptResult::Status { code, said, .. } => {
                    let failed = !(200..300).contains(code);
                    (
                        Some(*code),
                        None,
                        said.as_deref().filter(|_| failed).map(answer_start),
                    )
                }
                AttemptResult::Timeout { .. } => (None, Some("timeout"), None),
                AttemptResult::Connection { .. } => (None, Some("connection"), None),
                AttemptResult::Auth { .. } => (None, Some("auth"), None),
                AttemptResult::Blocked { .. } => (None, Some("ssrf_blocked"), None),
                AttemptResult::CircuitOpen { .. } => (None, Some("circuit_open"), None),
            };
            (status, error, answer, attempt.latency.as_millis() as u64)
        }
        Err(why) => (None, Some(why), None, 0),
    };
    let (outcome, next) = match next {
        Next::Delivered => (Outcome::Delivered, None),
        Next::Retry { tier, .. } => (Outcome::Retrying, Some(tier.to_string())),
        Next::DeadLetter(reason) => (Outcome::DeadLettered, Some(reason.as_str().to_string())),
    };
    LoggedAttempt {
        id: String::new(),
        event_id: job.event.event_id.clone(),
        target_id: job.event.target_id,
        template_id: job.event.template_id.clone(),
        chunk: job.delivery.chunk as u32,
        attempt: number,
        at_ms: now_ms(),
        host: job.delivery.host_key(),
        status,
        error: error.map(str::to_string),
        latency_ms,
        tier: job.tier,
        outcome,
        next,
        answer,
        request_bytes: job.delivery.body.as_ref().map_or(0, |b| b.len() as u64),
    }
}
