//! One record, start to finish (docs/how-it-works.md, "The pipeline"). A trigger record:
//! parse and validate it, resolve its template, render its deliveries, send them. A
//! retry-tier record: one failed delivery, attempted again. Every failure is parked: on the
//! next retry tier while the template's `max_retries` allow, else on the dead-letter topic.
//! The answer says whether the record is settled (every delivery delivered or acknowledged
//! by Kafka where it was parked: its offset may be committed) or was abandoned at shutdown
//! (it will be consumed again).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info_span, warn};

mod attempt;
mod dead_letter;

use attempt::Job;
pub use dead_letter::panic_message;

use crate::deliver::Sender;
use crate::event::{EventLimits, TriggerEvent};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::{FailedDelivery, History, Origin, Parking, Reason, now_ms};
use crate::render::{Deliveries, Delivery, deliveries, rendered_bytes, retry_deliveries};
use crate::stats::Stats;
use crate::template::Prepared;
use crate::template::{Lookup, TemplateCache};
use crate::trace::{Step, StepKind, TraceParent};

/// Everything the per-record work needs, shared by every task.
#[derive(Clone)]
pub struct Pipeline {
    pub templates: TemplateCache,
    pub sender: Arc<Sender>,
    pub parking: Arc<Parking>,
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

    /// Counts `bytes` until the guard drops (settled, abandoned or panicked).
    fn hold(&self, bytes: usize) -> RenderedGuard {
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

/// Deliveries of one event attempted at once, at most; the per-host limit applies beyond it.
const DELIVERIES_IN_FLIGHT_PER_EVENT: usize = 64;

/// Bytes of one event's requests made and held at once: chunks are rendered as they are
/// attempted, so an event of large chunks sends fewer at a time rather than holding them
/// all (`max_rendered_bytes` bounds the whole event, the memory budget all of them).
const RENDERED_IN_FLIGHT_PER_EVENT: usize = 4 << 20;

/// What every delivery of one record shares.
#[derive(Clone, Copy)]
struct Common<'a> {
    template: &'a Prepared,
    event: &'a TriggerEvent,
    origin: &'a Origin,
    history: &'a History,
    first_failed_at_ms: Option<u64>,
    replayed: bool,
    replay_of: Option<&'a str>,
    /// The record's `consume` step: each attempt's parent.
    trace: &'a TraceParent,
}

impl<'a> Common<'a> {
    /// The job of attempting `delivery`, one of this record's.
    fn job<'d>(&self, delivery: &'d Delivery) -> Job<'d>
    where
        'a: 'd,
    {
        Job {
            template: self.template,
            event: self.event,
            delivery,
            origin: self.origin,
            history: self.history.clone(),
            first_failed_at_ms: self.first_failed_at_ms,
            replayed: self.replayed,
            replay_of: self.replay_of,
            trace: self.trace,
        }
    }
}

/// Backoff while a dependency (Redis) is down: doubling from 100 ms up to 5 s.
fn dependency_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Pipeline {
    /// The pipeline of another event loop (`worker_threads`): `sender` is that loop's;
    /// templates, parking, stats and metrics are shared; rendered bytes are counted per
    /// loop, against that loop's consumer's share of the memory budget.
    pub fn for_another_loop(&self, sender: Sender) -> Pipeline {
        Pipeline {
            sender: Arc::new(sender),
            rendered: RenderedBytes::default(),
            ..self.clone()
        }
    }

    /// Requests waiting for their destination's permit or rate (they hold no slot).
    pub fn waiting(&self) -> usize {
        self.sender.waiting()
    }

    /// Changes when more requests wait for their destination (see `Limits::watch_waiting`).
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

    /// A trigger record, continuing `trace` (its `traceparent`) or starting a trace.
    pub async fn process(
        &self,
        payload: &[u8],
        origin: Origin,
        trace: Option<&TraceParent>,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let mut consume = Step::start(StepKind::Consume, trace);
        note_record(&mut consume, &origin);
        let event = match TriggerEvent::parse(payload, self.event_limits) {
            Ok(event) => event,
            Err(err) => {
                warn!(reason = err.reason(), error = %err, bytes = payload.len(), "invalid trigger event");
                self.metrics.event_invalid(err.reason());
                consume.failed(err.reason());
                return Box::pin(self.dead_letter_invalid(
                    payload,
                    origin,
                    err.to_string(),
                    consume.at(),
                    shutdown,
                ))
                .await;
            }
        };
        note_event(&mut consume, &event);
        let span = event_span(&event, consume.at());
        async {
            let Some(template) = self.resolve(&event, shutdown).await else {
                return Settlement::Abandoned;
            };
            let template = match template {
                Lookup::Found(template) => template,
                Lookup::Missing(why) => {
                    warn!(reason = "template_not_found", error = %why, "no usable template for the event");
                    let key = Some(event.event_id.clone());
                    let letter = self.whole_record(
                        payload,
                        Reason::TemplateNotFound,
                        key,
                        origin,
                        why,
                        Some(consume.at()),
                    );
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            let render = Step::start(StepKind::Render, Some(consume.at()));
            let deliveries = deliveries(&template, &event, self.max_rendered_bytes);
            drop(render);
            let deliveries = match deliveries {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the webhook request");
                    let key = Some(event.event_id.clone());
                    let letter = self.whole_record(
                        payload,
                        Reason::RenderError,
                        key,
                        origin,
                        err.to_string(),
                        Some(consume.at()),
                    );
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            let common = Common {
                template: &template,
                event: &event,
                origin: &origin,
                history: &History::default(),
                first_failed_at_ms: None,
                replayed: false,
                replay_of: None,
                trace: consume.at(),
            };
            Settlement::from_done(self.attempt_all(deliveries, common, shutdown).await)
        }
        .instrument(span)
        .await
    }

    /// Attempts every delivery, as many at a time as [`DELIVERIES_IN_FLIGHT_PER_EVENT`] and
    /// [`RENDERED_IN_FLIGHT_PER_EVENT`] allow, each counted in the rendered bytes from when
    /// it is made until it is settled. `true` when all were delivered or parked.
    async fn attempt_all(
        &self,
        deliveries: Deliveries<'_>,
        common: Common<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        use futures::StreamExt;
        // What is rendered already is counted from now on; deliveries made as taken, each
        // from when it is made.
        let _rendered = self.rendered.hold(deliveries.rendered_already());
        let made_as_taken = deliveries.made_as_taken();
        if deliveries.len() == 1 {
            // Most events are one request: sent right here, without a stream of futures
            // (an allocation and a copy of the attempt's future, and wake-ups through it).
            let Some(delivery) = deliveries.into_iter().next() else {
                return true;
            };
            let _made = made_as_taken.then(|| self.rendered.hold(rendered_bytes(&delivery)));
            return self.attempt(common.job(&delivery), shutdown).await;
        }
        let at_once = deliveries
            .how_many_within(RENDERED_IN_FLIGHT_PER_EVENT)
            .min(DELIVERIES_IN_FLIGHT_PER_EVENT);
        futures::stream::iter(deliveries)
            .map(|delivery| async move {
                let _made = made_as_taken.then(|| self.rendered.hold(rendered_bytes(&delivery)));
                self.attempt(common.job(&delivery), shutdown).await
            })
            .buffer_unordered(at_once)
            .fold(true, |all, done| async move { all && done })
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
        trace: Option<&TraceParent>,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let mut consume = Step::start(StepKind::Consume, trace);
        note_record(&mut consume, &origin);
        let failed = match FailedDelivery::decode(payload) {
            Ok(failed) => failed,
            Err(err) => {
                warn!(error = %err, "unreadable retry record");
                return Box::pin(self.dead_letter_invalid(
                    payload,
                    origin,
                    err.to_string(),
                    consume.at(),
                    shutdown,
                ))
                .await;
            }
        };
        let event = failed.event();
        note_event(&mut consume, &event);
        let span = event_span(&event, consume.at());
        async {
            let key = Some(event.event_id.clone());
            let template = match self.resolve(&event, shutdown).await {
                None => return Settlement::Abandoned,
                Some(Lookup::Found(template)) => template,
                Some(Lookup::Missing(why)) => {
                    warn!(reason = "template_not_found", error = %why, "the retried delivery has no usable template");
                    let letter = self.whole_record(payload, Reason::TemplateNotFound, key, origin, why, Some(consume.at()));
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            let render = Step::start(StepKind::Render, Some(consume.at()));
            let deliveries = retry_deliveries(&template, &event, failed.chunk, self.max_rendered_bytes);
            drop(render);
            let deliveries = match deliveries {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    warn!(error = %err, "cannot render the retried request");
                    let letter = self.whole_record(payload, Reason::RenderError, key, origin, err.to_string(), Some(consume.at()));
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            if let Some(failed_at) = failed.history.attempts.last().map(|a| a.at_ms + a.latency_ms) {
                self.metrics
                    .retry_waited(now_ms().saturating_sub(failed_at) as f64 / 1000.0);
            }
            let common = Common {
                template: &template,
                event: &event,
                origin: &origin,
                history: &failed.history,
                first_failed_at_ms,
                replayed: failed.replayed,
                replay_of: failed.replay_of.as_deref(),
                trace: consume.at(),
            };
            Settlement::from_done(self.attempt_all(deliveries, common, shutdown).await)
        }
        .instrument(span)
        .await
    }
}

/// The log span of an event: its ids, and its trace's (the `consume` step's).
fn event_span(event: &TriggerEvent, at: &TraceParent) -> tracing::Span {
    info_span!(
        "event",
        event_id = event.event_id.as_str(),
        template_id = event.template_id.as_str(),
        target_id = event.target_id,
        { crate::trace::LOG_TRACE_ID } = at.trace_id(),
        { crate::trace::LOG_SPAN_ID } = at.span_id()
    )
}

/// The trigger record a `consume` step stands for, on its exported span.
fn note_record(step: &mut Step, origin: &Origin) {
    if step.recording() {
        step.note("messaging.system", "kafka");
        step.note("messaging.destination.name", origin.topic.to_string());
        step.note("messaging.destination.partition.id", origin.partition.to_string());
        step.note("messaging.kafka.offset", origin.offset);
    }
}

/// The event a `consume` step carries, on its exported span.
fn note_event(step: &mut Step, event: &TriggerEvent) {
    if step.recording() {
        step.note("webhook.event_id", event.event_id.clone());
        step.note("webhook.template_id", event.template_id.clone());
        step.note("webhook.target_id", event.target_id);
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
