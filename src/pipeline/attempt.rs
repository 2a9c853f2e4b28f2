//! One delivery, start to finish: send, decide the next step ([`next_step`], a pure
//! function), act on it (park on a retry tier or the dead-letter topic), record it (stats,
//! metrics, the attempt history the parked record carries).

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, warn};

use super::logged::logged;
use super::next::{Next, next_step};
use super::{Pipeline, Settlement};
use crate::campaigns::State;
use crate::deliver::{Attempt, AttemptResult, classify};
use crate::event::TriggerEvent;
use crate::park::{AttemptRecord, FailedDelivery, History, Origin, ParkedRecord, Reason, now_ms};
use crate::render::Delivery;
use crate::stats::{Event as StatsEvent, ReplayOutcome};
use crate::template::Prepared;
use crate::trace::{Step, StepKind, TraceParent};

/// A delivery about to be attempted, with what earlier attempts left.
pub(super) struct Job<'a> {
    pub(super) template: &'a Prepared,
    pub(super) event: &'a TriggerEvent,
    pub(super) delivery: &'a Delivery,
    pub(super) origin: &'a Origin,
    pub(super) history: History,
    pub(super) first_failed_at_ms: Option<u64>,
    /// A replayed dead letter (see `FailedDelivery::replayed`).
    pub(super) replayed: bool,
    /// The dead letter it was replayed from (see `FailedDelivery::replay_of`).
    pub(super) replay_of: Option<&'a str>,
    /// The retry tier the delivery was read from (0: the trigger topic).
    pub(super) tier: u32,
    /// The record's `consume` step: the attempt's parent.
    pub(super) trace: &'a TraceParent,
}

impl Pipeline {
    /// Sends one delivery; if it fails, parks it on the next retry tier or, when it was
    /// rejected or its retries are spent, on the dead-letter topic. Abandoned when shutdown
    /// (or the drain's end) came before it was attempted or parked.
    pub(super) async fn attempt(&self, job: Job<'_>, shutdown: &CancellationToken) -> Settlement {
        let number = job.history.made() + 1;
        // At debug level: creating a span formats its fields whether or not a line is
        // written, and this runs once per delivery. The warnings below carry chunk and
        // attempt themselves.
        let span = debug_span!(
            "delivery",
            chunk = job.delivery.chunk,
            attempt = number,
            profiles = job.delivery.profiles.len()
        );
        async {
            if let Some(age) = expired(
                job.template.template.max_age_seconds,
                job.event.created_at,
                Utc::now(),
            ) {
                // Failure paths are boxed: kept inline, the producer's futures would make
                // every delivery's future (moved and copied whole) several times larger.
                let why = format!("event is {age} s old, over max_age_seconds");
                let unsent = self.dead_letter_unsent(&job, number - 1, Reason::Expired, why, shutdown);
                return Box::pin(unsent).await;
            }
            let campaign = self.campaigns.state(job.event.target_id);
            if campaign != State::Active {
                return Box::pin(self.controlled(&job, campaign, number - 1, shutdown)).await;
            }
            let mut step = Step::start(StepKind::Attempt, Some(job.trace));
            let Some(attempt) = self
                .sender
                .send(job.delivery, job.template, job.event.target_id, step.at())
                .await
            else {
                return Settlement::Abandoned;
            };
            let (next, attempted) = self.decide(&job, &attempt);
            note_attempt(&mut step, number, &attempt, next);
            if self.log.enabled() {
                self.log.record(logged(&job, Ok(&attempt), number, next));
            }
            if next == Next::Delivered {
                self.delivered(&job, &attempt);
                return Settlement::Settled;
            }
            Box::pin(self.failed(&job, &attempt, attempted, next, step, shutdown)).await
        }
        .instrument(span)
        .await
    }

    /// What follows `attempt` of `job`'s delivery, and how many attempts count against
    /// `max_retries`. Deliveries parked by an open circuit breaker were not attempted: they
    /// do not use up max_retries (an open breaker is a wait, like an outage, not a
    /// verdict), and neither do answers asking to slow down (429, or 503 with `Retry-After`:
    /// the template's rate is lowered, see `deliver::rates`); both waits are bounded by the
    /// template's `circuit_breaker.max_wait_seconds` from the first failure, past which a
    /// 429 counts like any failure.
    fn decide(&self, job: &Job<'_>, attempt: &Attempt) -> (Next, u32) {
        let circuit_open = matches!(attempt.result, AttemptResult::CircuitOpen { .. });
        if !circuit_open {
            self.stats.record(job.event.target_id, StatsEvent::Request);
        }
        let max_wait = job
            .template
            .template
            .circuit_breaker
            .unwrap_or_default()
            .max_wait_seconds;
        let waited = waited_over(job.first_failed_at_ms, now_ms(), max_wait);
        let counts = !circuit_open && (waited || !attempt.result.slow_down());
        let attempted = job.history.counted() + u32::from(counts);
        let next = if circuit_open && waited {
            Next::DeadLetter(Reason::CircuitOpenExpired)
        } else {
            next_step(
                classify(&attempt.result),
                attempted,
                job.template.template.max_retries,
                self.parking.tier_delays(),
            )
        };
        (next, attempted)
    }

    /// Counts `job`'s delivery as delivered, and as the outcome of its replay if it was one.
    fn delivered(&self, job: &Job<'_>, attempt: &Attempt) {
        debug!(result = ?attempt.result, latency_ms = attempt.latency.as_millis() as u64, "delivered");
        let target = job.event.target_id;
        self.metrics.delivered();
        self.stats.record(target, StatsEvent::Delivered);
        if job.replayed {
            self.stats.record(target, StatsEvent::Recovered);
        }
        if let Some(letter) = job.replay_of {
            self.stats.replay_outcome(letter, ReplayOutcome::Delivered);
        }
    }

    /// Parks `job`'s delivery after its failed `attempt` as `next` says, with the attempt in
    /// its history; the retry (or a replay) continues the trace from the park step, a child
    /// of the attempt's `step`.
    async fn failed(
        &self,
        job: &Job<'_>,
        attempt: &Attempt,
        attempted: u32,
        next: Next,
        step: Step,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let error = attempt.describe();
        let now = now_ms();
        self.stats.error(job.event.target_id, &error, now);
        let mut history = job.history.clone();
        history.push(record(attempt));
        if attempted == job.history.counted() && attempt.result.slow_down() {
            history.throttled_total = history.throttled_total.saturating_add(1);
        }
        let mut letter = parked_record(job, history, attempted, error, status(&attempt.result), now);
        let parking = Step::start(StepKind::Park, Some(step.at()));
        drop(step);
        letter.trace = Some(parking.at().clone());
        self.park(next, letter, job, shutdown).await
    }

    /// Counts `job`'s delivery as dead-lettered, and as the outcome of its replay if it was
    /// one.
    pub(super) fn counted_dead_letter(&self, job: &Job<'_>) {
        self.metrics.delivery_dead_lettered();
        self.stats.record(job.event.target_id, StatsEvent::DeadLettered);
        if let Some(letter) = job.replay_of {
            self.stats.replay_outcome(letter, ReplayOutcome::DeadLettered);
        }
    }

    /// Acts on the decision for a failed attempt: parks `letter` on its retry tier or on the
    /// dead-letter topic, and counts it. Abandoned when shutdown came first.
    async fn park(
        &self,
        next: Next,
        mut letter: ParkedRecord,
        job: &Job<'_>,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let target = job.event.target_id;
        match next {
            Next::Delivered => Settlement::Settled,
            Next::Retry { tier, wait } => {
                letter.due_at_ms = letter.due_at_ms.saturating_add(wait.as_millis() as u64);
                debug!(error = %letter.last_error, tier, wait_ms = wait.as_millis() as u64,
                       "attempt failed; retrying later");
                let parked = self.parking.retry(tier, &letter, shutdown).await;
                if parked.is_settled() {
                    self.stats.record(target, StatsEvent::Retried);
                }
                parked
            }
            Next::DeadLetter(reason) => {
                letter.reason = Some(reason);
                warn!(reason = reason.as_str(), error = %letter.last_error, chunk = job.delivery.chunk,
                      attempts = letter.attempts, "webhook dispatch failed; dead-lettering the delivery");
                let parked = self.parking.dead_letter(&letter, shutdown).await;
                if parked.is_settled() {
                    self.counted_dead_letter(job);
                }
                parked
            }
        }
    }
}

/// `job`'s delivery as a record to park (due now, no reason yet: the caller's decision
/// sets them), carrying `history`.
pub(super) fn parked_record(
    job: &Job<'_>,
    history: History,
    attempts: u32,
    last_error: String,
    last_status: Option<u16>,
    now: u64,
) -> ParkedRecord {
    ParkedRecord {
        reason: None,
        due_at_ms: now,
        origin: job.origin.clone(),
        key: Some(job.event.event_id.clone()),
        value: failed_value(job, history).encode(),
        attempts,
        first_failed_at_ms: job.first_failed_at_ms.unwrap_or(now),
        last_error,
        last_status,
        trace: None,
    }
}

/// The parked value of `job`'s delivery with `history`.
fn failed_value(job: &Job<'_>, history: History) -> FailedDelivery {
    FailedDelivery {
        event_id: job.event.event_id.clone(),
        template_id: job.event.template_id.clone(),
        target_id: job.event.target_id,
        is_test: job.event.is_test,
        key_values: job.event.key_values.clone(),
        profiles: job.event.profiles[job.delivery.profiles.clone()].to_vec(),
        created_at: job.event.created_at,
        chunk: job.delivery.chunk,
        history,
        replayed: job.replayed,
        replay_of: job.replay_of.map(str::to_string),
    }
}

/// Whether a delivery whose first failure was at `first_failed_at_ms` has waited over
/// `max_wait_seconds` by `now_ms` (a delivery that has not failed before has not waited).
fn waited_over(first_failed_at_ms: Option<u64>, now_ms: u64, max_wait_seconds: u64) -> bool {
    first_failed_at_ms.is_some_and(|at| now_ms.saturating_sub(at) > max_wait_seconds.saturating_mul(1000))
}

/// The event's age in seconds when it is over the template's `max_age_seconds`; events
/// without `created_at` never expire.
fn expired(
    max_age_seconds: Option<u64>,
    created_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<u64> {
    let age = now.signed_duration_since(created_at?).num_seconds().max(0) as u64;
    (age > max_age_seconds?).then_some(age)
}

/// The longest error text an attempt record keeps.
const MAX_ERROR_BYTES: usize = 256;

fn status(result: &AttemptResult) -> Option<u16> {
    match result {
        AttemptResult::Status { code, .. } => Some(*code),
        _ => None,
    }
}

fn record(attempt: &Attempt) -> AttemptRecord {
    AttemptRecord {
        at_ms: now_ms().saturating_sub(attempt.latency.as_millis() as u64),
        status: status(&attempt.result),
        // Bounded, like everything a parked record carries: a connection error's chain
        // can be long, and a record holds eight of them.
        error: match attempt.result {
            AttemptResult::Status { .. } => None,
            _ => Some(crate::telemetry::truncate(&attempt.describe(), MAX_ERROR_BYTES).to_string()),
        },
        latency_ms: attempt.latency.as_millis() as u64,
    }
}

/// An attempt's result and what comes next, on its exported span.
fn note_attempt(step: &mut Step, number: u32, attempt: &Attempt, next: Next) {
    if !step.recording() {
        return;
    }
    step.note("webhook.attempt", i64::from(number));
    if let Some(code) = status(&attempt.result) {
        step.note("http.response.status_code", i64::from(code));
    }
    match next {
        Next::Delivered => step.note("webhook.outcome", "delivered"),
        Next::Retry { tier, .. } => {
            step.note("webhook.outcome", "retry");
            step.note("webhook.retry_tier", tier as i64);
            step.failed(attempt.describe());
        }
        Next::DeadLetter(reason) => {
            step.note("webhook.outcome", "dead_letter");
            step.note("webhook.dead_letter_reason", reason.as_str());
            step.failed(attempt.describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deliveries_expire_only_past_max_age_and_with_a_created_at() {
        let now = Utc::now();
        let ago = |s| Some(now - chrono::Duration::seconds(s));
        assert_eq!(expired(Some(60), ago(61), now), Some(61));
        assert_eq!(expired(Some(60), ago(60), now), None);
        assert_eq!(expired(Some(60), None, now), None, "no created_at: never expires");
        assert_eq!(expired(None, ago(1_000_000), now), None, "no max_age_seconds");
        assert_eq!(
            expired(Some(0), Some(now + chrono::Duration::seconds(5)), now),
            None,
            "future clock skew"
        );
    }

    #[test]
    fn the_wait_behind_an_open_breaker_counts_from_the_first_failure() {
        let day = 86_400;
        assert!(
            !waited_over(None, 10_000_000_000, day),
            "never failed: not waiting"
        );
        assert!(!waited_over(Some(0), day * 1000, day));
        assert!(waited_over(Some(0), day * 1000 + 1, day));
        assert!(
            !waited_over(Some(5_000), 1_000, day),
            "a clock behind the first failure"
        );
    }

    #[test]
    fn attempts_are_described_without_urls() {
        let attempt = |result| Attempt {
            result,
            latency: Duration::from_millis(12),
        };
        let status = AttemptResult::Status {
            code: 503,
            retry_after: None,
            said: Some("try later".into()),
        };
        assert_eq!(attempt(status.clone()).describe(), "HTTP 503");
        assert_eq!(
            attempt(AttemptResult::Timeout { cause: None }).describe(),
            "timeout"
        );
        let refused = attempt(AttemptResult::Connection {
            cause: "connection refused".into(),
        });
        assert_eq!(refused.describe(), "connection error: connection refused");
        let history = record(&attempt(status));
        assert_eq!(
            (history.status, history.error, history.latency_ms),
            (Some(503), None, 12)
        );
    }
}
