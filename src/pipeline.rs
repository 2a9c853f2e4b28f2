//! One trigger record, start to finish (§1 steps 1–7): parse and validate it, resolve its
//! template, render its deliveries, send them, and park every failure on the dead-letter
//! topic. The answer says whether the record is settled (every delivery delivered or
//! acknowledged by Kafka on the dead-letter topic: its offset may be committed) or was
//! abandoned at shutdown (it will be consumed again).
//!
//! No retry tiers yet: a retryable failure is dead-lettered after its one attempt as
//! `retries_exhausted` (see `park`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::deliver::{Attempt, AttemptResult, Sender, Verdict, classify};
use crate::event::{EventLimits, Object, TriggerEvent};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::{AttemptRecord, DeadLetter, Origin, Parking, Reason, now_ms};
use crate::render::{Delivery, render};
use crate::template::{Lookup, Prepared, TemplateCache};

/// Everything the per-record work needs, shared by every task.
pub struct Pipeline {
    pub templates: TemplateCache,
    pub sender: Sender,
    pub parking: Parking,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub event_limits: EventLimits,
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

/// The value of a dead-lettered delivery: exactly the failed chunk of the event (not the
/// rendered request, so no template header or credential is copied into Kafka) and its
/// attempts.
#[derive(Serialize)]
struct FailedDelivery<'a> {
    event_id: &'a str,
    template_id: &'a str,
    #[serde(rename = "targetId")]
    target_id: i64,
    is_test: bool,
    key_values: &'a Object,
    profiles: &'a [Object],
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
    /// The chunk index: replays keep the Idempotency-Key `<event_id>:<chunk>`.
    chunk: usize,
    attempts: Vec<AttemptRecord>,
}

/// Backoff while a dependency (Redis) is down: doubling from 100 ms up to 5 s.
fn dependency_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Pipeline {
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
                    return Settlement::from_done(self.parking.dead_letter(&letter, shutdown).await);
                }
            };
            let deliveries = match render(&template, &event) {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the webhook request");
                    let key = Some(event.event_id.clone());
                    let letter =
                        self.whole_record(payload, Reason::RenderError, key, origin, err.to_string());
                    return Settlement::from_done(self.parking.dead_letter(&letter, shutdown).await);
                }
            };
            let done = futures::future::join_all(
                deliveries
                    .iter()
                    .map(|d| self.deliver(&template, &event, d, &origin, shutdown)),
            )
            .await;
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
                Ok(lookup) => return Some(lookup),
                Err(err) => {
                    // Not the event's fault: wait for the store, never drop the event.
                    self.health.set_redis_up(false);
                    self.metrics.dependency_wait("redis");
                    if attempt == 0 {
                        warn!(error = %err, "template store unavailable; the event waits");
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

    /// Sends one delivery and parks it if it failed. `false` when shutdown (or the drain's
    /// end) came before it was attempted or parked.
    async fn deliver(
        &self,
        template: &Prepared,
        event: &TriggerEvent,
        delivery: &Delivery,
        origin: &Origin,
        shutdown: &CancellationToken,
    ) -> bool {
        let span = info_span!(
            "delivery",
            chunk = delivery.chunk,
            attempt = 1,
            profiles = delivery.profiles.len()
        );
        async {
            let Some(attempt) = self.sender.send(delivery, &template.template).await else {
                return false;
            };
            let reason = match classify(&attempt.result) {
                Verdict::Delivered => {
                    debug!(result = ?attempt.result, latency_ms = attempt.latency.as_millis() as u64, "delivered");
                    self.metrics.delivered();
                    return true;
                }
                Verdict::Rejected => Reason::Rejected,
                Verdict::Retryable { .. } => Reason::RetriesExhausted,
            };
            let error = describe(&attempt);
            warn!(reason = reason.as_str(), error = %error, latency_ms = attempt.latency.as_millis() as u64,
                  "webhook dispatch failed; dead-lettering the delivery");
            let value = FailedDelivery {
                event_id: &event.event_id,
                template_id: &event.template_id,
                target_id: event.target_id,
                is_test: event.is_test,
                key_values: &event.key_values,
                profiles: &event.profiles[delivery.profiles.clone()],
                created_at: event.created_at,
                chunk: delivery.chunk,
                attempts: vec![record(&attempt)],
            };
            let letter = DeadLetter {
                reason,
                origin: origin.clone(),
                key: Some(event.event_id.clone()),
                value: serde_json::to_vec(&value).expect("JSON values always serialise"),
                attempts: 1,
                first_failed_at_ms: now_ms(),
                last_error: error,
                last_status: status(&attempt.result),
            };
            let parked = self.parking.dead_letter(&letter, shutdown).await;
            if parked {
                self.metrics.delivery_dead_lettered();
            }
            parked
        }
        .instrument(span)
        .await
    }

    /// A dead letter carrying the record's own bytes, byte for byte.
    fn whole_record(
        &self,
        payload: &[u8],
        reason: Reason,
        key: Option<String>,
        origin: Origin,
        error: String,
    ) -> DeadLetter {
        DeadLetter {
            reason,
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

fn status(result: &AttemptResult) -> Option<u16> {
    match result {
        AttemptResult::Status { code, .. } => Some(*code),
        _ => None,
    }
}

fn describe(attempt: &Attempt) -> String {
    match (&attempt.result, &attempt.detail) {
        (AttemptResult::Status { code, .. }, _) => format!("HTTP {code}"),
        (AttemptResult::Timeout, _) => "timeout".to_string(),
        (AttemptResult::Connection, Some(detail)) => format!("connection error: {detail}"),
        (AttemptResult::Connection, None) => "connection error".to_string(),
    }
}

fn record(attempt: &Attempt) -> AttemptRecord {
    AttemptRecord {
        at_ms: now_ms().saturating_sub(attempt.latency.as_millis() as u64),
        status: status(&attempt.result),
        error: match attempt.result {
            AttemptResult::Status { .. } => None,
            _ => Some(describe(attempt)),
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
        assert_eq!(describe(&attempt(status.clone(), None)), "HTTP 503");
        assert_eq!(describe(&attempt(AttemptResult::Timeout, None)), "timeout");
        let refused = attempt(AttemptResult::Connection, Some("connection refused"));
        assert_eq!(describe(&refused), "connection error: connection refused");
        let history = record(&attempt(status, None));
        assert_eq!(
            (history.status, history.error, history.latency_ms),
            (Some(503), None, 12)
        );
    }
}
