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
mod backpressure;
mod common;
mod control;
mod dead_letter;
mod logged;
mod next;

pub use crate::settlement::Settlement;
pub use backpressure::{Backpressure, RenderedBytes};
use common::Common;
pub use dead_letter::panic_message;
pub use next::{Next, next_step};

use crate::backoff::Backoff;
use crate::campaigns::Campaigns;
use crate::deliver::Sender;
use crate::delivery_log::DeliveryLog;
use crate::event::{EventLimits, TriggerEvent};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::{FailedDelivery, History, Origin, ParkedRecord, Parking, Reason, now_ms};
use crate::render::{Deliveries, deliveries, rendered_bytes, retry_deliveries};
use crate::stats::{Event as StatsEvent, Stats};
use crate::template::{Lookup, TemplateCache, Unavailable};
use crate::trace::{Step, StepKind, TraceParent};

/// What every event loop's pipeline shares: the templates, where failures are parked, the
/// stats, metrics and health, and the limits on one record.
#[derive(Clone)]
pub struct Shared {
    pub templates: TemplateCache,
    /// Which campaigns are paused or cancelled.
    pub campaigns: Arc<Campaigns>,
    pub parking: Arc<Parking>,
    pub stats: Arc<Stats>,
    /// Where every attempt is recorded.
    pub log: DeliveryLog,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub event_limits: EventLimits,
    /// Most bytes of requests one event may render to (`max_rendered_bytes`).
    pub max_rendered_bytes: usize,
}

/// One event loop's pipeline: the shared parts, the loop's sender, and the loop's count of
/// rendered bytes (its records' requests count against its consumers' memory budget).
pub struct Pipeline {
    templates: TemplateCache,
    campaigns: Arc<Campaigns>,
    sender: Arc<Sender>,
    parking: Arc<Parking>,
    stats: Arc<Stats>,
    log: DeliveryLog,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    event_limits: EventLimits,
    max_rendered_bytes: usize,
    rendered: RenderedBytes,
}

/// Deliveries of one event attempted at once, at most; the per-host limit applies beyond it.
const DELIVERIES_IN_FLIGHT_PER_EVENT: usize = 64;

/// Bytes of one event's requests made and held at once: chunks are rendered as they are
/// attempted, so an event of large chunks sends fewer at a time rather than holding them
/// all (`max_rendered_bytes` bounds the whole event, the memory budget all of them).
const RENDERED_IN_FLIGHT_PER_EVENT: usize = 4 << 20;

/// A record read: its bytes and where they came from, the event it carries and, for a
/// retry tier's record, the failed delivery and when it first failed.
struct Record<'a> {
    payload: &'a [u8],
    origin: Origin,
    event: TriggerEvent,
    retried: Option<(&'a FailedDelivery, Option<u64>)>,
    /// The retry tier it was read from (0: the trigger topic).
    tier: u32,
}

/// While the template store is down: doubling from 100 ms up to 5 s.
const DEPENDENCY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

impl Pipeline {
    /// An event loop's pipeline, sending through `sender` (the loop's).
    pub fn new(shared: &Shared, sender: Arc<Sender>) -> Pipeline {
        let Shared {
            templates,
            campaigns,
            parking,
            stats,
            log,
            metrics,
            health,
            event_limits,
            max_rendered_bytes,
        } = shared.clone();
        Pipeline {
            templates,
            campaigns,
            sender,
            parking,
            stats,
            log,
            metrics,
            health,
            event_limits,
            max_rendered_bytes,
            rendered: RenderedBytes::default(),
        }
    }

    /// What the loop's consumers pace themselves by.
    pub fn backpressure(&self) -> Backpressure {
        Backpressure {
            sender: self.sender.clone(),
            rendered: self.rendered.clone(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Which campaigns are paused or cancelled (the retry consumer holds what they park).
    pub fn campaigns(&self) -> &Arc<Campaigns> {
        &self.campaigns
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
                let why = err.to_string();
                return Box::pin(self.dead_letter_invalid(payload, origin, why, consume.at(), shutdown))
                    .await;
            }
        };
        let record = Record {
            payload,
            origin,
            event,
            retried: None,
            tier: 0,
        };
        self.deliver(record, consume, shutdown).await
    }

    /// A record of retry tier topic `topic`: one failed delivery, due now, attempted again.
    #[allow(clippy::too_many_arguments)]
    pub async fn process_retry(
        &self,
        payload: &[u8],
        first_failed_at_ms: Option<u64>,
        origin: Origin,
        topic: &str,
        trace: Option<&TraceParent>,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let mut consume = Step::start(StepKind::Consume, trace);
        note_record(&mut consume, &origin);
        let failed = match FailedDelivery::decode(payload) {
            Ok(failed) => failed,
            Err(err) => {
                warn!(error = %err, "unreadable retry record");
                let why = err.to_string();
                return Box::pin(self.dead_letter_invalid(payload, origin, why, consume.at(), shutdown))
                    .await;
            }
        };
        let held = self.parking.is_held_topic(topic);
        let record = Record {
            payload,
            origin,
            event: failed.event(),
            retried: Some((&failed, first_failed_at_ms)),
            tier: self.parking.tier_of(topic),
        };
        let settled = self.deliver(record, consume, shutdown).await;
        if held && settled.is_settled() {
            // Off the hold topic: sent, held again (counted again) or dead-lettered.
            self.stats.record(failed.target_id, StatsEvent::Released);
        }
        settled
    }

    /// What every record goes through once read: its template resolved (dead-lettered when
    /// there is none), its deliveries rendered (dead-lettered when they cannot be), then
    /// attempted, all in the event's log span.
    async fn deliver(
        &self,
        record: Record<'_>,
        mut consume: Step,
        shutdown: &CancellationToken,
    ) -> Settlement {
        note_event(&mut consume, &record.event);
        let span = event_span(&record.event, consume.at());
        async {
            let event = &record.event;
            let template = match self.resolve(event, shutdown).await {
                None => return Settlement::Abandoned,
                Some(Lookup::Found(template)) => template,
                Some(Lookup::Missing(why)) => {
                    if record.retried.is_some() {
                        warn!(reason = "template_not_found", error = %why, "the retried delivery has no usable template");
                    } else {
                        warn!(reason = "template_not_found", error = %why, "no usable template for the event");
                    }
                    let letter = self.record_letter(&record, Reason::TemplateNotFound, why, consume.at());
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            let render = Step::start_exported(StepKind::Render, consume.at());
            let deliveries = match record.retried {
                None => deliveries(&template, event, self.max_rendered_bytes),
                Some((failed, _)) => retry_deliveries(&template, event, failed.chunk, self.max_rendered_bytes),
            };
            drop(render);
            let deliveries = match deliveries {
                Ok(deliveries) => deliveries,
                Err(err) => {
                    if record.retried.is_some() {
                        warn!(error = %err, "cannot render the retried request");
                    } else {
                        warn!(error = %err, "cannot render the webhook request");
                    }
                    let letter = self.record_letter(&record, Reason::RenderError, err.to_string(), consume.at());
                    return Box::pin(self.dead_letter_event(event.target_id, &letter, shutdown)).await;
                }
            };
            let fresh = History::default();
            let common = match record.retried {
                None => Common::fresh(&template, event, &record.origin, &fresh, consume.at()),
                Some((failed, first_failed_at_ms)) => {
                    self.note_retry_wait(failed);
                    Common {
                        tier: record.tier,
                        ..Common::retried(&template, event, &record.origin, failed, first_failed_at_ms, consume.at())
                    }
                }
            };
            self.attempt_all(deliveries, common, shutdown).await
        }
        .instrument(span)
        .await
    }

    /// The dead letter of a whole `record` (its own bytes) for `reason`.
    fn record_letter(
        &self,
        record: &Record<'_>,
        reason: Reason,
        why: String,
        at: &TraceParent,
    ) -> ParkedRecord {
        let key = Some(record.event.event_id.clone());
        self.whole_record(record.payload, reason, key, record.origin.clone(), why, Some(at))
    }

    /// How long a retried delivery waited between its last attempt and this one.
    fn note_retry_wait(&self, failed: &FailedDelivery) {
        if let Some(failed_at) = failed.history.attempts.last().map(|a| a.at_ms + a.latency_ms) {
            self.metrics
                .retry_waited(now_ms().saturating_sub(failed_at) as f64 / 1000.0);
        }
    }

    /// Attempts every delivery, as many at a time as [`DELIVERIES_IN_FLIGHT_PER_EVENT`] and
    /// [`RENDERED_IN_FLIGHT_PER_EVENT`] allow, each counted in the rendered bytes from when
    /// it is made until it is settled. Settled when all were delivered or parked.
    async fn attempt_all(
        &self,
        deliveries: Deliveries<'_>,
        common: Common<'_>,
        shutdown: &CancellationToken,
    ) -> Settlement {
        use futures::StreamExt;
        // What is rendered already is counted from now on; deliveries made as taken, each
        // from when it is made.
        let _rendered = self.rendered.hold(deliveries.rendered_already());
        let made_as_taken = deliveries.made_as_taken();
        if deliveries.len() == 1 {
            // Most events are one request: sent right here, without a stream of futures
            // (an allocation and a copy of the attempt's future, and wake-ups through it).
            let Some(delivery) = deliveries.into_iter().next() else {
                return Settlement::Settled;
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
            .fold(Settlement::Settled, |all, one| async move { all.and(one) })
            .await
    }

    /// The event's template. `None` at shutdown while the store is down; waits otherwise.
    async fn resolve(&self, event: &TriggerEvent, shutdown: &CancellationToken) -> Option<Lookup> {
        let mut failures = 0;
        loop {
            match self.templates.get(&event.template_id).await {
                Ok(lookup) => {
                    self.health.set_secret_key_ok(true);
                    return Some(lookup);
                }
                Err(err) => self.template_waits(&err, failures == 0),
            }
            failures += 1;
            if !DEPENDENCY_BACKOFF.wait(failures, shutdown).await {
                return None;
            }
        }
    }

    /// An event waits for its template because of `err`, which is never the event's fault:
    /// counted, shown in readiness, and said (`first` of the event's waits, at most once an
    /// interval).
    fn template_waits(&self, err: &Unavailable, first: bool) {
        if err.is_key_missing() {
            // A replica without the key (a rolling key rotation) waits until it has it,
            // never dead-letters.
            self.health.set_secret_key_ok(false);
            self.metrics.dependency_wait("secret_key");
            if first && let Some(suppressed) = crate::telemetry::limited("secret-key") {
                error!(error = %err, suppressed,
                       "template cannot be decrypted with this replica's secret_key (WD_SECRET_KEY); the event waits: give every replica the key");
            }
        } else {
            self.health.set_redis_up(false);
            self.metrics.dependency_wait("redis");
            if first && let Some(suppressed) = crate::telemetry::limited("template-store") {
                warn!(error = %err, suppressed, "template store unavailable; the event waits");
            }
        }
    }
}

/// The log span of an event: its ids, and its trace's (the `consume` step's), which its
/// JSON lines carry.
fn event_span(event: &TriggerEvent, at: &TraceParent) -> tracing::Span {
    let span = info_span!(
        "event",
        event_id = event.event_id.as_str(),
        template_id = event.template_id.as_str(),
        target_id = event.target_id,
    );
    crate::telemetry::attach_trace_ids(&span, at);
    span
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
