//! One record, start to finish (§1 steps 1–7). A trigger record: parse and validate it,
//! resolve its template, render its deliveries, send them. A retry-tier record: one failed
//! delivery, attempted again. Every failure is parked: on the next retry tier while the
//! template's `max_retries` allow, else on the dead-letter topic. The answer says whether the
//! record is settled (every delivery delivered or acknowledged by Kafka where it was parked:
//! its offset may be committed) or was abandoned at shutdown (it will be consumed again).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, warn};

use crate::deliver::{Attempt, AttemptResult, Next, Sender, classify, next_step};
use crate::event::{EventLimits, TriggerEvent};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::{AttemptRecord, FailedDelivery, Origin, ParkedRecord, Parking, Reason, now_ms};
use crate::render::{Delivery, render, render_retry, rendered_bytes};
use crate::stats::{Event as StatsEvent, Stats};
use crate::template::{Lookup, Prepared, TemplateCache};

/// Everything the per-record work needs, shared by every task.
pub struct Pipeline {
    pub templates: TemplateCache,
    pub sender: Arc<Sender>,
    pub parking: Parking,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub event_limits: EventLimits,
    /// Most bytes of requests one event may render to (`max_rendered_bytes`).
    pub max_rendered_bytes: usize,
    /// Bytes of rendered requests held by records in progress: they count against the
    /// consumers' memory budget like the records' own bytes.
    pub rendered: RenderedBytes,
}

/// A count of rendered request bytes alive in the process.
#[derive(Debug, Default, Clone)]
pub struct RenderedBytes(Arc<std::sync::atomic::AtomicUsize>);

impl RenderedBytes {
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts `deliveries` until the guard drops (settled, abandoned or panicked).
    fn hold(&self, deliveries: &[Delivery]) -> RenderedGuard {
        let bytes = deliveries.iter().map(rendered_bytes).sum();
        self.0.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        RenderedGuard {
            count: self.clone(),
            bytes,
        }
    }
}

struct RenderedGuard {
    count: RenderedBytes,
    bytes: usize,
}

impl Drop for RenderedGuard {
    fn drop(&mut self) {
        self.count
            .0
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Every delivery reached a final outcome: the offset may be committed.
    Settled,
    /// Shutdown came before every delivery was attempted or parked: leave it uncommitted,
    /// it will be consumed again.
    Abandoned,
}

impl Settlement {
    fn from_done(done: bool) -> Settlement {
        if done {
            Settlement::Settled
        } else {
            Settlement::Abandoned
        }
    }
}

/// A delivery about to be attempted, with what earlier attempts left.
struct Job<'a> {
    template: &'a Prepared,
    event: &'a TriggerEvent,
    delivery: &'a Delivery,
    origin: &'a Origin,
    history: Vec<AttemptRecord>,
    first_failed_at_ms: Option<u64>,
}

/// Backoff while a dependency (Redis) is down: doubling from 100 ms up to 5 s.
fn dependency_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Pipeline {
    /// Requests waiting for their destination's permit or rate (they hold no slot).
    pub fn waiting(&self) -> usize {
        self.sender.waiting()
    }

    /// Changes whenever [`Pipeline::waiting`] does.
    pub fn watch_waiting(&self) -> tokio::sync::watch::Receiver<usize> {
        self.sender.watch_waiting()
    }

    /// Bytes of rendered requests held by records in progress.
    pub fn rendered_bytes(&self) -> usize {
        self.rendered.get()
    }

    /// The retry tier topics, first to last.
    pub fn tier_topics(&self) -> Vec<String> {
        self.parking.tier_topics()
    }

    /// Lets the requests in flight finish and starts no new ones (end of a drain).
    pub fn stop_sending(&self) {
        self.sender.close();
    }

    pub async fn process(&self, payload: &[u8], origin: Origin, shutdown: &CancellationToken) -> Settlement {
        let event = match TriggerEvent::parse(payload, self.event_limits) {
            Ok(event) => event,
            Err(err) => {
                warn!(reason = err.reason(), error = %err, bytes = payload.len(), "invalid trigger event");
                self.metrics.event_invalid(err.reason());
                let letter = self.whole_record(payload, Reason::InvalidEvent, None, origin, err.to_string());
                return Settlement::from_done(self.parking.dead_letter(&letter, shutdown).await);
            }
        };
        let span = info_span!("event", event_id = %event.event_id, template_id = %event.template_id,
                              target_id = event.target_id);
        async {
            let Some(template) = self.resolve(&event, shutdown).await else {
                return Settlement::Abandoned;
            };
            let template = match template {
                Lookup::Found(template) => template,
                Lookup::Missing(why) => {
                    warn!(reason = "template_not_found", error = %why, "no usable template for the event");
                    let key = Some(event.event_id.clone());
                    let letter = self.whole_record(payload, Reason::TemplateNotFound, key, origin, why);
                    return self.dead_letter_event(event.target_id, &letter, shutdown).await;
                }
            };
            let deliveries = match render(&template, &event, self.max_rendered_bytes) {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the webhook request");
                    let key = Some(event.event_id.clone());
                    let letter =
                        self.whole_record(payload, Reason::RenderError, key, origin, err.to_string());
                    return self.dead_letter_event(event.target_id, &letter, shutdown).await;
                }
            };
            let _rendered = self.rendered.hold(&deliveries);
            let jobs = deliveries.iter().map(|delivery| Job {
                template: &template,
                event: &event,
                delivery,
                origin: &origin,
                history: Vec::new(),
                first_failed_at_ms: None,
            });
            let done = futures::future::join_all(jobs.map(|job| self.attempt(job, shutdown))).await;
            Settlement::from_done(done.into_iter().all(|d| d))
        }
        .instrument(span)
        .await
    }

    /// The event's template. `None` at shutdown while the store is down; waits otherwise.
    async fn resolve(&self, event: &TriggerEvent, shutdown: &CancellationToken) -> Option<Lookup> {
        let mut attempt = 0;
        loop {
            match self.templates.get(&event.template_id).await {
                Ok(lookup) => {
                    self.health.set_secret_key_ok(true);
                    return Some(lookup);
                }
                Err(err) if err.is_key_missing() => {
                    // Not the event's fault either: a replica without the key (a rolling
                    // key rotation) waits until it has it, never dead-letters.
                    self.health.set_secret_key_ok(false);
                    self.metrics.dependency_wait("secret_key");
                    if attempt == 0
                        && let Some(suppressed) = crate::telemetry::limited("secret-key")
                    {
                        error!(error = %err, suppressed,
                               "template cannot be decrypted with this replica's secret_key (WD_SECRET_KEY); the event waits: give every replica the key");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(dependency_backoff(attempt)) => {}
                    }
                    attempt += 1;
                }
                Err(err) => {
                    // Not the event's fault: wait for the store, never drop the event.
                    self.health.set_redis_up(false);
                    self.metrics.dependency_wait("redis");
                    if attempt == 0
                        && let Some(suppressed) = crate::telemetry::limited("template-store")
                    {
                        warn!(error = %err, suppressed, "template store unavailable; the event waits");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(dependency_backoff(attempt)) => {}
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// A record of a retry tier: one failed delivery, due now, attempted again.
    pub async fn process_retry(
        &self,
        payload: &[u8],
        first_failed_at_ms: Option<u64>,
        origin: Origin,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let failed = match FailedDelivery::decode(payload) {
            Ok(failed) => failed,
            Err(err) => {
                warn!(error = %err, "unreadable retry record");
                let letter = self.whole_record(payload, Reason::InvalidEvent, None, origin, err.to_string());
                return Settlement::from_done(self.parking.dead_letter(&letter, shutdown).await);
            }
        };
        let event = failed.event();
        let span = info_span!("event", event_id = %event.event_id, template_id = %event.template_id,
                              target_id = event.target_id);
        async {
            let key = Some(event.event_id.clone());
            let template = match self.resolve(&event, shutdown).await {
                None => return Settlement::Abandoned,
                Some(Lookup::Found(template)) => template,
                Some(Lookup::Missing(why)) => {
                    warn!(reason = "template_not_found", error = %why, "the retried delivery has no usable template");
                    let letter = self.whole_record(payload, Reason::TemplateNotFound, key, origin, why);
                    return self.dead_letter_event(event.target_id, &letter, shutdown).await;
                }
            };
            let deliveries = match render_retry(&template, &event, failed.chunk, self.max_rendered_bytes) {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the retried request");
                    let letter = self.whole_record(payload, Reason::RenderError, key, origin, err.to_string());
                    return self.dead_letter_event(event.target_id, &letter, shutdown).await;
                }
            };
            if let Some(failed_at) = failed.attempts.last().map(|a| a.at_ms + a.latency_ms) {
                self.metrics
                    .retry_waited(now_ms().saturating_sub(failed_at) as f64 / 1000.0);
            }
            let _rendered = self.rendered.hold(&deliveries);
            let jobs = deliveries.iter().map(|delivery| Job {
                template: &template,
                event: &event,
                delivery,
                origin: &origin,
                history: failed.attempts.clone(),
                first_failed_at_ms,
            });
            let done = futures::future::join_all(jobs.map(|job| self.attempt(job, shutdown))).await;
            Settlement::from_done(done.into_iter().all(|d| d))
        }
        .instrument(span)
        .await
    }

    /// Sends one delivery; if it fails, parks it on the next retry tier or, when it was
    /// rejected or its retries are spent, on the dead-letter topic. `false` when shutdown
    /// (or the drain's end) came before it was attempted or parked.
    async fn attempt(&self, job: Job<'_>, shutdown: &CancellationToken) -> bool {
        // Deliveries parked by an open circuit breaker were not attempted: they do not use
        // up max_retries (an open breaker is a wait, like an outage, not a verdict).
        let number = job.history.iter().filter(|a| !a.circuit_open()).count() as u32 + 1;
        let target = job.event.target_id;
        let span = info_span!(
            "delivery",
            chunk = job.delivery.chunk,
            attempt = number,
            profiles = job.delivery.profiles.len()
        );
        async {
            if let Some(age) = expired(job.template.template.max_age_seconds, job.event.created_at, Utc::now()) {
                let error = format!("event is {age} s old, over max_age_seconds");
                warn!(reason = "expired", error = %error, "not sending a delivery that is too old");
                let now = now_ms();
                let letter = ParkedRecord {
                    reason: Some(Reason::Expired),
                    due_at_ms: now,
                    origin: job.origin.clone(),
                    key: Some(job.event.event_id.clone()),
                    value: failed_value(&job, job.history.clone()).encode(),
                    attempts: number - 1,
                    first_failed_at_ms: job.first_failed_at_ms.unwrap_or(now),
                    last_error: error,
                    last_status: job.history.last().and_then(|a| a.status),
                };
                let parked = self.parking.dead_letter(&letter, shutdown).await;
                if parked {
                    self.metrics.delivery_dead_lettered();
                    self.stats.record(target, StatsEvent::DeadLettered);
                    self.stats.error(target, &letter.last_error, now);
                }
                return parked;
            }
            let Some(attempt) = self.sender.send(job.delivery, job.template).await else {
                return false;
            };
            if attempt.result != AttemptResult::CircuitOpen {
                self.stats.record(target, StatsEvent::Request);
            }
            let attempted = if attempt.result == AttemptResult::CircuitOpen {
                number - 1
            } else {
                number
            };
            let next = next_step(
                classify(&attempt.result),
                attempted,
                job.template.template.max_retries,
                self.parking.tier_delays(),
            );
            if next == Next::Delivered {
                debug!(result = ?attempt.result, latency_ms = attempt.latency.as_millis() as u64, "delivered");
                self.metrics.delivered();
                self.stats.record(target, StatsEvent::Delivered);
                return true;
            }
            let error = attempt.describe();
            let now = now_ms();
            self.stats.error(target, &error, now);
            let mut history = job.history.clone();
            history.push(record(&attempt));
            let letter = ParkedRecord {
                reason: None,
                due_at_ms: now,
                origin: job.origin.clone(),
                key: Some(job.event.event_id.clone()),
                value: failed_value(&job, history).encode(),
                attempts: attempted,
                first_failed_at_ms: job.first_failed_at_ms.unwrap_or(now),
                last_error: error,
                last_status: status(&attempt.result),
            };
            self.park(next, letter, target, shutdown).await
        }
        .instrument(span)
        .await
    }

    /// Acts on the decision for a failed attempt: parks `letter` on its retry tier or on the
    /// dead-letter topic, and counts it. `false` when shutdown came first.
    async fn park(
        &self,
        next: Next,
        mut letter: ParkedRecord,
        target: i64,
        shutdown: &CancellationToken,
    ) -> bool {
        match next {
            Next::Delivered => true,
            Next::Retry { tier, wait } => {
                letter.due_at_ms = letter.due_at_ms.saturating_add(wait.as_millis() as u64);
                debug!(error = %letter.last_error, tier, wait_ms = wait.as_millis() as u64,
                       "attempt failed; retrying later");
                let parked = self.parking.retry(tier, &letter, shutdown).await;
                if parked {
                    self.stats.record(target, StatsEvent::Retried);
                }
                parked
            }
            Next::DeadLetter(reason) => {
                letter.reason = Some(reason);
                warn!(reason = reason.as_str(), error = %letter.last_error, attempts = letter.attempts,
                      "webhook dispatch failed; dead-lettering the delivery");
                let parked = self.parking.dead_letter(&letter, shutdown).await;
                if parked {
                    self.metrics.delivery_dead_lettered();
                    self.stats.record(target, StatsEvent::DeadLettered);
                }
                parked
            }
        }
    }

    /// Settles a record whose processing panicked (a bug): dead-lettered whole, reason
    /// `internal_error`, so the partition flows on and the record can be replayed once the
    /// bug is fixed.
    pub async fn dead_letter_panic(
        &self,
        payload: &[u8],
        origin: Origin,
        panic: &str,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let event_id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("event_id")?.as_str().map(str::to_string));
        error!(event_id = event_id.as_deref().unwrap_or(""), topic = %origin.topic,
               partition = origin.partition, offset = origin.offset, panic,
               "internal error while processing the record; dead-lettering it as internal_error");
        let error = format!("internal error: {}", crate::kafka::truncate(panic, 200));
        let letter = self.whole_record(payload, Reason::InternalError, event_id, origin, error);
        Settlement::from_done(self.parking.dead_letter(&letter, shutdown).await)
    }

    /// Dead-letters a whole event (unknown template, render error) and counts it for its
    /// campaign.
    async fn dead_letter_event(
        &self,
        target_id: i64,
        letter: &ParkedRecord,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let parked = self.parking.dead_letter(letter, shutdown).await;
        if parked {
            self.stats.record(target_id, StatsEvent::DeadLettered);
            self.stats.error(target_id, &letter.last_error, now_ms());
        }
        Settlement::from_done(parked)
    }

    /// A dead letter carrying the record's own bytes, byte for byte.
    fn whole_record(
        &self,
        payload: &[u8],
        reason: Reason,
        key: Option<String>,
        origin: Origin,
        error: String,
    ) -> ParkedRecord {
        ParkedRecord {
            reason: Some(reason),
            due_at_ms: now_ms(),
            origin,
            key,
            value: payload.to_vec(),
            attempts: 0,
            first_failed_at_ms: now_ms(),
            last_error: error,
            last_status: None,
        }
    }
}

/// What a caught panic says (its message when it has one).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string())
}

/// The parked value of `job`'s delivery with `history`.
fn failed_value(job: &Job<'_>, history: Vec<AttemptRecord>) -> FailedDelivery {
    FailedDelivery {
        event_id: job.event.event_id.clone(),
        template_id: job.event.template_id.clone(),
        target_id: job.event.target_id,
        is_test: job.event.is_test,
        key_values: job.event.key_values.clone(),
        profiles: job.event.profiles[job.delivery.profiles.clone()].to_vec(),
        created_at: job.event.created_at,
        chunk: job.delivery.chunk,
        attempts: history,
    }
}

/// The event's age in seconds when it is over the template's `max_age_seconds` (§3); events
/// without `created_at` never expire.
fn expired(
    max_age_seconds: Option<u64>,
    created_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<u64> {
    let age = now.signed_duration_since(created_at?).num_seconds().max(0) as u64;
    (age > max_age_seconds?).then_some(age)
}

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
        error: match attempt.result {
            AttemptResult::Status { .. } => None,
            _ => Some(attempt.describe()),
        },
        latency_ms: attempt.latency.as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_backoff_doubles_and_caps() {
        assert_eq!(dependency_backoff(0), Duration::from_millis(100));
        assert_eq!(dependency_backoff(1), Duration::from_millis(200));
        assert_eq!(dependency_backoff(5), Duration::from_millis(3200));
        assert_eq!(dependency_backoff(6), Duration::from_secs(5));
        assert_eq!(dependency_backoff(60), Duration::from_secs(5));
    }

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
    fn attempts_are_described_without_urls() {
        let attempt = |result, detail: Option<&str>| Attempt {
            result,
            latency: Duration::from_millis(12),
            detail: detail.map(str::to_string),
        };
        let status = AttemptResult::Status {
            code: 503,
            retry_after: None,
        };
        assert_eq!(attempt(status.clone(), None).describe(), "HTTP 503");
        assert_eq!(attempt(AttemptResult::Timeout, None).describe(), "timeout");
        let refused = attempt(AttemptResult::Connection, Some("connection refused"));
        assert_eq!(refused.describe(), "connection error: connection refused");
        let history = record(&attempt(status, None));
        assert_eq!(
            (history.status, history.error, history.latency_ms),
            (Some(503), None, 12)
        );
    }
}
