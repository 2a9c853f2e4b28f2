//! One trigger record, start to finish (§1 steps 1–6): parse and validate it, resolve its
//! template, render its deliveries and send them. The answer says whether the record is
//! settled (its offset may be committed) or was abandoned at shutdown (it will be consumed
//! again).
//!
//! This version has no retry tiers or dead-letter topic yet: a delivery that fails is
//! logged, counted in `webhook_delivery_failures_total{reason}` and settled.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::deliver::{Sender, Verdict, classify};
use crate::event::{EventLimits, TriggerEvent};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::render::{Delivery, render};
use crate::template::{Lookup, Prepared, TemplateCache};

/// Everything the per-record work needs, shared by every task.
pub struct Pipeline {
    pub templates: TemplateCache,
    pub sender: Sender,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub event_limits: EventLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Every delivery reached a final outcome: the offset may be committed.
    Settled,
    /// Shutdown came before every delivery was attempted: leave it uncommitted, it will
    /// be consumed again.
    Abandoned,
}

/// Backoff while a dependency (Redis) is down: doubling from 100 ms up to 5 s.
fn dependency_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Pipeline {
    pub async fn process(&self, payload: &[u8], shutdown: &CancellationToken) -> Settlement {
        let event = match TriggerEvent::parse(payload, self.event_limits) {
            Ok(event) => event,
            Err(err) => {
                warn!(reason = err.reason(), error = %err, bytes = payload.len(), "invalid trigger event");
                self.metrics.event_invalid(err.reason());
                return Settlement::Settled;
            }
        };
        let span = info_span!("event", event_id = %event.event_id, template_id = %event.template_id,
                              target_id = event.target_id);
        async {
            let Some(template) = self.resolve(&event, shutdown).await else {
                return Settlement::Abandoned;
            };
            let Some(template) = template else {
                return Settlement::Settled;
            };
            let deliveries = match render(&template, &event) {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the webhook request");
                    self.metrics.delivery_failed("render_error");
                    return Settlement::Settled;
                }
            };
            let attempted =
                futures::future::join_all(deliveries.iter().map(|d| self.deliver(&template, d))).await;
            if attempted.into_iter().all(|a| a) {
                Settlement::Settled
            } else {
                Settlement::Abandoned
            }
        }
        .instrument(span)
        .await
    }

    /// The event's template: `None` at shutdown while the store is down, `Some(None)` when
    /// it does not exist (counted and settled).
    async fn resolve(&self, event: &TriggerEvent, shutdown: &CancellationToken) -> Option<Option<Prepared>> {
        let mut attempt = 0;
        loop {
            match self.templates.get(&event.template_id).await {
                Ok(Lookup::Found(template)) => return Some(Some(template)),
                Ok(Lookup::Missing(why)) => {
                    warn!(reason = "template_not_found", error = %why, "no usable template for the event");
                    self.metrics.delivery_failed("template_not_found");
                    return Some(None);
                }
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

    /// Sends one delivery and records its outcome; `false` when the sender was closed first.
    async fn deliver(&self, template: &Prepared, delivery: &Delivery) -> bool {
        let span = info_span!(
            "delivery",
            chunk = delivery.chunk,
            attempt = 1,
            profiles = delivery.profiles
        );
        async {
            let Some(attempt) = self.sender.send(delivery, &template.template).await else {
                return false;
            };
            match classify(&attempt.result) {
                Verdict::Delivered => {
                    debug!(result = ?attempt.result, latency_ms = attempt.latency.as_millis() as u64, "delivered");
                    self.metrics.delivered();
                }
                verdict => {
                    let reason = match verdict {
                        Verdict::Rejected => "rejected",
                        _ => "retryable",
                    };
                    warn!(reason, result = ?attempt.result, detail = attempt.detail.as_deref().unwrap_or(""),
                          latency_ms = attempt.latency.as_millis() as u64, "webhook dispatch failed");
                    self.metrics.delivery_failed(reason);
                }
            }
            true
        }
        .instrument(span)
        .await
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
}
