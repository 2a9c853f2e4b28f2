//! The metric families, grouped by what they watch, each registered once with its name,
//! help and fixed labels. Names and help texts are the contract with dashboards, alerts and
//! the catalogue in docs/observability.md.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Request latency buckets: 1 ms to 30 s, fine enough to read p50/p99 from.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0,
];

/// Retry tier wait buckets: 1 s to an hour.
const RETRY_WAIT_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Trigger records: consumed, refused, time to settle.
pub(super) struct Events {
    pub(super) consumed: IntCounterVec,
    pub(super) invalid: IntCounterVec,
    pub(super) duration: HistogramVec,
}

/// Webhook HTTP attempts.
pub(super) struct Requests {
    pub(super) total: IntCounterVec,
    pub(super) duration: Histogram,
    pub(super) inflight: IntGauge,
}

/// What became of deliveries: settled, dead-lettered, parked on a retry tier.
pub(super) struct Outcomes {
    pub(super) deliveries: IntCounterVec,
    pub(super) dead_letters: IntCounterVec,
    pub(super) retries_scheduled: IntCounterVec,
    pub(super) retry_wait: Histogram,
    pub(super) held: IntCounter,
}

/// The trigger consumer: lag and backpressure.
pub(super) struct Consumer {
    pub(super) lag: IntGaugeVec,
    pub(super) partitions_assigned: IntGaugeVec,
    pub(super) topic_partitions: IntGaugeVec,
    pub(super) partitions_paused: IntGauge,
    pub(super) memory_budget_full: IntGauge,
    pub(super) pending_events: IntGauge,
}

/// What deliveries depend on: the token endpoint, the template cache, Redis and the producer.
pub(super) struct Dependencies {
    pub(super) oauth_token_requests: IntCounterVec,
    pub(super) template_cache: IntCounterVec,
    pub(super) waits: IntCounterVec,
    pub(super) producer_fatal: IntGauge,
    pub(super) rate_fallback: IntGauge,
    pub(super) rate_adaptations: IntCounterVec,
}

/// Circuit breakers per destination.
pub(super) struct Circuits {
    pub(super) open: IntGauge,
    pub(super) transitions: IntCounterVec,
}

impl Events {
    pub(super) fn register(r: &Registry) -> Events {
        Events {
            consumed: counter(
                r,
                "webhook_events_consumed_total",
                "Trigger records consumed.",
                &["topic"],
            ),
            invalid: counter(
                r,
                "webhook_events_invalid_total",
                "Trigger records refused as invalid (malformed, schema, oversize, too_many_profiles).",
                &["reason"],
            ),
            duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "webhook_event_duration_seconds",
                        "Time from consuming a trigger event to settling it (all its deliveries done).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["topic"],
                ),
            ),
        }
    }
}

impl Requests {
    pub(super) fn register(r: &Registry) -> Requests {
        Requests {
            total: counter(
                r,
                "webhook_requests_total",
                "Webhook HTTP attempts by method and result class (2xx..5xx, timeout, error).",
                &["method", "status_class"],
            ),
            duration: histogram(
                r,
                "webhook_request_duration_seconds",
                "Time from sending a webhook request to its answer (or timeout/error).",
                LATENCY_BUCKETS,
            ),
            inflight: gauge(r, "webhook_inflight_requests", "Webhook HTTP requests in flight."),
        }
    }
}

impl Outcomes {
    pub(super) fn register(r: &Registry) -> Outcomes {
        Outcomes {
            deliveries: counter(
                r,
                "webhook_deliveries_total",
                "Deliveries (one request's worth of profiles) settled, by outcome.",
                &["outcome"],
            ),
            dead_letters: counter(
                r,
                "webhook_dead_letters_total",
                "Deliveries written to the dead-letter topic, by reason.",
                &["reason"],
            ),
            retries_scheduled: counter(
                r,
                "webhook_retries_scheduled_total",
                "Deliveries parked on a retry tier topic, by tier.",
                &["tier"],
            ),
            retry_wait: histogram(
                r,
                "webhook_retry_wait_seconds",
                "Time a delivery waited in a retry tier: from its failure to its next attempt.",
                RETRY_WAIT_BUCKETS,
            ),
            held: register(
                r,
                IntCounter::new(
                    "webhook_deliveries_held_total",
                    "Deliveries of paused campaigns parked on the hold topic (once each, however long the pause).",
                ),
            ),
        }
    }
}

impl Consumer {
    pub(super) fn register(r: &Registry) -> Consumer {
        Consumer {
            lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "webhook_consumer_lag",
                        "Records behind the partition's high watermark, from librdkafka statistics.",
                    ),
                    &["topic", "partition"],
                ),
            ),
            partitions_assigned: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "webhook_partitions_assigned",
                        "Partitions of a consumed topic (trigger, retry tiers) this process's consumers own now.",
                    ),
                    &["topic"],
                ),
            ),
            topic_partitions: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "webhook_topic_partitions",
                        "Partitions a consumed topic (trigger, retry tiers) has, from the cluster's metadata (read every minute).",
                    ),
                    &["topic"],
                ),
            ),
            partitions_paused: gauge(
                r,
                "webhook_partitions_paused",
                "Trigger partitions paused by backpressure (window or memory budget full).",
            ),
            memory_budget_full: gauge(
                r,
                "webhook_memory_budget_full",
                "Event loops whose memory budget (max_pending_bytes) is full: their trigger consumer holds off receiving, and pauses its partitions if it stays full 3 s.",
            ),
            pending_events: gauge(
                r,
                "webhook_pending_events",
                "Trigger records consumed but not yet settled.",
            ),
        }
    }
}

impl Dependencies {
    pub(super) fn register(r: &Registry) -> Dependencies {
        Dependencies {
            oauth_token_requests: counter(
                r,
                "webhook_oauth_token_requests_total",
                "OAuth 2.0 token endpoint requests by result.",
                &["result"],
            ),
            template_cache: counter(
                r,
                "webhook_template_cache_requests_total",
                "Template lookups by cache result (hit, miss).",
                &["result"],
            ),
            producer_fatal: gauge(
                r,
                "webhook_producer_fatal",
                "1 once the Kafka producer has a fatal error: nothing can be parked until the process restarts (/healthz fails).",
            ),
            waits: counter(
                r,
                "webhook_dependency_waits_total",
                "Times work waited because a dependency (redis, kafka_producer) was unavailable.",
                &["dependency"],
            ),
            rate_fallback: gauge(
                r,
                "webhook_rate_limit_fallback",
                "1 while shared rate limits fall back to each replica's share (Redis did not answer its last lease).",
            ),
            rate_adaptations: counter(
                r,
                "webhook_rate_adaptations_total",
                "Changes of a template's effective rate after 429 answers (down) and success (up).",
                &["direction"],
            ),
        }
    }
}

impl Circuits {
    pub(super) fn register(r: &Registry) -> Circuits {
        Circuits {
            open: gauge(
                r,
                "webhook_circuit_open",
                "Destinations whose circuit breaker is open or half-open now.",
            ),
            transitions: counter(
                r,
                "webhook_circuit_transitions_total",
                "Circuit breaker moves, by the state moved to (open, half_open, closed).",
                &["to"],
            ),
        }
    }
}

/// `webhook_build_info`: always 1; the version label says which build is running.
pub(super) fn register_build_info(r: &Registry) {
    let build_info = IntGaugeVec::new(
        Opts::new(
            "webhook_build_info",
            "Always 1; the version label says which build is running.",
        ),
        &["version"],
    )
    .expect("valid metric definition");
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    r.register(Box::new(build_info)).expect("metric registered once");
}

/// process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
pub(super) fn register_process(r: &Registry) {
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
    .expect("metric registered once");
}

/// webhook_log_lines_dropped_total: the log writer's count (see `telemetry`), read at each
/// scrape.
pub(super) fn register_dropped_log_lines(r: &Registry) {
    let counter = IntCounter::new(
        "webhook_log_lines_dropped_total",
        "Log lines dropped because standard error was read slower than the service wrote (the queue to it was full).",
    )
    .expect("valid metric definition");
    r.register(Box::new(DroppedLogLines {
        counter,
        seen: parking_lot::Mutex::new(0),
    }))
    .expect("metric registered once");
}

struct DroppedLogLines {
    counter: IntCounter,
    /// The count already added to `counter`.
    seen: parking_lot::Mutex<u64>,
}

impl Collector for DroppedLogLines {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut seen = self.seen.lock();
        let now = crate::telemetry::dropped_log_lines();
        self.counter.inc_by(now.saturating_sub(*seen));
        *seen = now.max(*seen);
        self.counter.collect()
    }
}

/// webhook_delivery_log_attempts_total{result}: attempts written to the delivery log,
/// written without their references (found by campaign, not by event id), or dropped (its
/// buffer full, or Redis refusing the write after the next flushes too).
pub(super) fn register_delivery_log(r: &Registry) -> IntCounterVec {
    counter(
        r,
        "webhook_delivery_log_attempts_total",
        "Attempts recorded in the delivery log (result=\"written\"), of those the ones whose references could not be written (result=\"unindexed\": found by campaign, not by event id), or dropped from it (result=\"dropped\": its buffer was full or Redis kept refusing the write).",
        &["result"],
    )
}

/// Registers a metric defined in code (so its definition is valid) once.
fn register<M>(r: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("valid metric definition");
    r.register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help))
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())),
    )
}
