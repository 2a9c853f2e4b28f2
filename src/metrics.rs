//! Every metric the service exports (§7), in one place, on a registry of its own (so two
//! dispatchers in one process, as in the tests, do not collide). Labels are fixed and
//! low-cardinality: no template or campaign ids. The calls made for every record and every
//! request use label handles resolved on first use ([`Handles`]): `with_label_values` hashes
//! the labels on every call.

use std::sync::{OnceLock, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, core::Collector,
};

pub struct Metrics {
    registry: Registry,
    events_consumed: IntCounterVec,
    events_invalid: IntCounterVec,
    requests: IntCounterVec,
    request_duration: Histogram,
    deliveries: IntCounterVec,
    dead_letters: IntCounterVec,
    inflight: IntGauge,
    consumer_lag: IntGaugeVec,
    oauth_token_requests: IntCounterVec,
    template_cache: IntCounterVec,
    partitions_paused: IntGauge,
    retries_scheduled: IntCounterVec,
    retry_wait: Histogram,
    pending_events: IntGauge,
    store_waits: IntCounterVec,
    circuit_open: IntGauge,
    circuit_transitions: IntCounterVec,
    event_duration: HistogramVec,
    handles: Handles,
}

/// Label values of the hot-path series, each resolved once, when first used (so a series
/// appears in the exposition exactly when it would with `with_label_values`).
#[derive(Default)]
struct Handles {
    /// `webhook_requests_total` by [`METHODS`] × [`STATUS_CLASSES`].
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()],
    /// `webhook_deliveries_total` by [`OUTCOMES`].
    deliveries: [OnceLock<IntCounter>; OUTCOMES.len()],
    /// `webhook_template_cache_requests_total`: hit, miss.
    template_cache: [OnceLock<IntCounter>; 2],
    /// Per topic: `webhook_events_consumed_total` and `webhook_event_duration_seconds`.
    topics: RwLock<Vec<TopicHandles>>,
}

struct TopicHandles {
    topic: Box<str>,
    consumed: OnceLock<IntCounter>,
    duration: OnceLock<Histogram>,
}

const METHODS: [&str; 4] = ["POST", "GET", "PUT", "DELETE"];
const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "error"];
const OUTCOMES: [&str; 3] = ["delivered", "retried", "dead_lettered"];
/// Topics given handles; others (there are a handful) go through `with_label_values`.
const MAX_TOPIC_HANDLES: usize = 16;

fn slot(values: &[&str], value: &str) -> Option<usize> {
    values.iter().position(|v| *v == value)
}

/// Request latency buckets: 1 ms to 30 s, fine enough to read p50/p99 from.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0,
];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_request_duration_seconds",
                "Time from sending a webhook request to its answer (or timeout/error).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric definition");
        r.register(Box::new(request_duration.clone()))
            .expect("metric registered once");
        let event_duration = HistogramVec::new(
            HistogramOpts::new(
                "webhook_event_duration_seconds",
                "Time from consuming a trigger event to settling it (all its deliveries done).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["topic"],
        )
        .expect("valid metric definition");
        r.register(Box::new(event_duration.clone()))
            .expect("metric registered once");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "webhook_consumer_lag",
                "Records behind the partition's high watermark, from librdkafka statistics.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric definition");
        r.register(Box::new(consumer_lag.clone()))
            .expect("metric registered once");
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
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("metric registered once");

        Metrics {
            events_consumed: counter(
                &r,
                "webhook_events_consumed_total",
                "Trigger records consumed.",
                &["topic"],
            ),
            events_invalid: counter(
                &r,
                "webhook_events_invalid_total",
                "Trigger records refused as invalid (malformed, schema, oversize, too_many_profiles).",
                &["reason"],
            ),
            requests: counter(
                &r,
                "webhook_requests_total",
                "Webhook HTTP attempts by method and result class (2xx..5xx, timeout, error).",
                &["method", "status_class"],
            ),
            request_duration,
            deliveries: counter(
                &r,
                "webhook_deliveries_total",
                "Deliveries (one request's worth of profiles) settled, by outcome.",
                &["outcome"],
            ),
            dead_letters: counter(
                &r,
                "webhook_dead_letters_total",
                "Deliveries written to the dead-letter topic, by reason.",
                &["reason"],
            ),
            inflight: gauge(
                &r,
                "webhook_inflight_requests",
                "Webhook HTTP requests in flight.",
            ),
            consumer_lag,
            oauth_token_requests: counter(
                &r,
                "webhook_oauth_token_requests_total",
                "OAuth 2.0 token endpoint requests by result.",
                &["result"],
            ),
            template_cache: counter(
                &r,
                "webhook_template_cache_requests_total",
                "Template lookups by cache result (hit, miss).",
                &["result"],
            ),
            retries_scheduled: counter(
                &r,
                "webhook_retries_scheduled_total",
                "Deliveries parked on a retry tier topic, by tier.",
                &["tier"],
            ),
            retry_wait: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "webhook_retry_wait_seconds",
                        "Time a delivery waited in a retry tier: from its failure to its next attempt.",
                    )
                    .buckets(vec![
                        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                    ]),
                )
                .expect("valid metric definition");
                r.register(Box::new(h.clone())).expect("metric registered once");
                h
            },
            partitions_paused: gauge(
                &r,
                "webhook_partitions_paused",
                "Trigger partitions paused by backpressure (window or memory budget full).",
            ),
            pending_events: gauge(
                &r,
                "webhook_pending_events",
                "Trigger records consumed but not yet settled.",
            ),
            store_waits: counter(
                &r,
                "webhook_dependency_waits_total",
                "Times work waited because a dependency (redis, kafka_producer) was unavailable.",
                &["dependency"],
            ),
            circuit_open: gauge(
                &r,
                "webhook_circuit_open",
                "Destinations whose circuit breaker is open or half-open now.",
            ),
            circuit_transitions: counter(
                &r,
                "webhook_circuit_transitions_total",
                "Circuit breaker moves, by the state moved to (open, half_open, closed).",
                &["to"],
            ),
            event_duration,
            registry: r,
            handles: Handles::default(),
        }
    }

    /// Creates the series every dashboard and alert expects, at 0, so `rate()` and
    /// `increase()` work from the first scrape.
    pub fn with_known_series(self, reasons: &[&str]) -> Metrics {
        for outcome in ["delivered", "retried", "dead_lettered"] {
            self.deliveries.with_label_values(&[outcome]);
        }
        for reason in reasons {
            self.dead_letters.with_label_values(&[reason]);
        }
        for reason in ["malformed", "schema", "oversize", "too_many_profiles"] {
            self.events_invalid.with_label_values(&[reason]);
        }
        for result in ["success", "error"] {
            self.oauth_token_requests.with_label_values(&[result]);
        }
        for to in ["open", "half_open", "closed"] {
            self.circuit_transitions.with_label_values(&[to]);
        }
        for result in ["hit", "miss"] {
            self.template_cache.with_label_values(&[result]);
        }
        for dependency in ["redis", "kafka_producer"] {
            self.store_waits.with_label_values(&[dependency]);
        }
        self
    }

    /// Creates the per-topic series of the trigger topic at 0 (the stall alert compares
    /// its consumption rate with its lag).
    pub fn with_trigger_topic(self, topic: &str) -> Metrics {
        self.events_consumed.with_label_values(&[topic]);
        self
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("exposition is UTF-8")
    }

    pub fn event_consumed(&self, topic: &str) {
        let series = || self.events_consumed.with_label_values(&[topic]);
        self.topic(topic, |h| h.consumed.get_or_init(series).inc(), || series().inc());
    }

    pub fn event_invalid(&self, reason: &str) {
        self.events_invalid.with_label_values(&[reason]).inc();
    }

    pub fn event_settled(&self, topic: &str, seconds: f64) {
        let series = || self.event_duration.with_label_values(&[topic]);
        self.topic(
            topic,
            |h| h.duration.get_or_init(series).observe(seconds),
            || series().observe(seconds),
        );
    }

    pub fn request(&self, method: &str, status_class: &str, seconds: f64) {
        match (slot(&METHODS, method), slot(&STATUS_CLASSES, status_class)) {
            (Some(m), Some(c)) => self.handles.requests[m][c]
                .get_or_init(|| self.requests.with_label_values(&[method, status_class]))
                .inc(),
            _ => self.requests.with_label_values(&[method, status_class]).inc(),
        }
        self.request_duration.observe(seconds);
    }

    pub fn delivered(&self) {
        self.outcome(0);
    }

    /// A delivery parked on the dead-letter topic (acknowledged by Kafka).
    pub fn delivery_dead_lettered(&self) {
        self.outcome(2);
    }

    /// Any record acknowledged on the dead-letter topic: a delivery, or a whole event that
    /// was invalid or could not be routed.
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters.with_label_values(&[reason]).inc();
    }

    /// Counts a settled delivery by `OUTCOMES[index]`.
    fn outcome(&self, index: usize) {
        self.handles.deliveries[index]
            .get_or_init(|| self.deliveries.with_label_values(&[OUTCOMES[index]]))
            .inc();
    }

    /// Runs `hit` on the handles of `topic` (made on first use), or `miss` once there are
    /// too many topics to keep handles for.
    fn topic(&self, topic: &str, hit: impl Fn(&TopicHandles), miss: impl FnOnce()) {
        let find = |handles: &[TopicHandles]| handles.iter().position(|h| &*h.topic == topic);
        {
            let handles = self.handles.topics.read().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = find(&handles[..]) {
                return hit(&handles[i]);
            }
        }
        let mut handles = self.handles.topics.write().unwrap_or_else(|p| p.into_inner());
        if find(&handles[..]).is_none() && handles.len() < MAX_TOPIC_HANDLES {
            handles.push(TopicHandles {
                topic: topic.into(),
                consumed: OnceLock::new(),
                duration: OnceLock::new(),
            });
        }
        match find(&handles[..]) {
            Some(i) => hit(&handles[i]),
            None => miss(),
        }
    }

    pub fn inflight(&self) -> &IntGauge {
        &self.inflight
    }

    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    pub fn oauth_token_request(&self, result: &str) {
        self.oauth_token_requests.with_label_values(&[result]).inc();
    }

    pub fn template_cache(&self, result: &str) {
        match ["hit", "miss"].iter().position(|r| *r == result) {
            Some(i) => self.handles.template_cache[i]
                .get_or_init(|| self.template_cache.with_label_values(&[result]))
                .inc(),
            None => self.template_cache.with_label_values(&[result]).inc(),
        }
    }

    pub fn set_backpressure(&self, paused_partitions: usize, pending_events: usize) {
        self.partitions_paused.set(paused_partitions as i64);
        self.pending_events.set(pending_events as i64);
    }

    pub fn retry_scheduled(&self, tier: usize) {
        self.retries_scheduled
            .with_label_values(&[&tier.to_string()])
            .inc();
        self.outcome(1);
    }

    pub fn retry_waited(&self, seconds: f64) {
        self.retry_wait.observe(seconds);
    }

    /// A circuit breaker moved `to` a state; `open_now` destinations are open or half-open.
    pub fn circuit_transition(&self, to: &str, open_now: usize) {
        self.circuit_transitions.with_label_values(&[to]).inc();
        self.circuit_open.set(open_now as i64);
    }

    pub fn circuit_transitions(&self, to: &str) -> u64 {
        self.circuit_transitions.with_label_values(&[to]).get()
    }

    pub fn dependency_wait(&self, dependency: &str) {
        self.store_waits.with_label_values(&[dependency]).inc();
    }

    /// Counter value by label values, for summaries and tests.
    pub fn deliveries(&self, outcome: &str) -> u64 {
        self.deliveries.with_label_values(&[outcome]).get()
    }

    pub fn invalid_events(&self, reason: &str) -> u64 {
        self.events_invalid.with_label_values(&[reason]).get()
    }

    pub fn dead_letters(&self, reason: &str) -> u64 {
        self.dead_letters.with_label_values(&[reason]).get()
    }

    /// Approximate latency quantile from the histogram buckets (linear within a bucket,
    /// as PromQL's `histogram_quantile`).
    pub fn request_latency_quantile(&self, q: f64) -> Option<f64> {
        let families = self.request_duration.collect();
        let h = families.first()?.get_metric().first()?.get_histogram();
        let total = h.get_sample_count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for bucket in h.get_bucket() {
            let count = bucket.cumulative_count();
            if count as f64 >= rank {
                let inside = (count - below) as f64;
                let fraction = if inside > 0.0 {
                    (rank - below as f64) / inside
                } else {
                    1.0
                };
                return Some(lower + (bucket.upper_bound() - lower) * fraction);
            }
            lower = bucket.upper_bound();
            below = count;
        }
        Some(lower)
    }

    pub fn request_count(&self) -> u64 {
        self.request_duration.get_sample_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_spec_metric() {
        let m = Metrics::new();
        m.event_consumed("t");
        m.event_invalid("schema");
        m.request("POST", "2xx", 0.01);
        m.delivered();
        m.delivery_dead_lettered();
        m.dead_lettered("rejected");
        m.consumer_lag("t", 0, 3);
        m.oauth_token_request("success");
        m.template_cache("hit");
        let text = m.render();
        for name in [
            "webhook_events_consumed_total",
            "webhook_events_invalid_total",
            "webhook_requests_total",
            "webhook_request_duration_seconds",
            "webhook_deliveries_total",
            "webhook_dead_letters_total",
            "webhook_inflight_requests",
            "webhook_consumer_lag",
            "webhook_oauth_token_requests_total",
            "webhook_template_cache_requests_total",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} missing");
        }
        let version = format!(
            "webhook_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&version), "{text}");
    }

    #[test]
    fn resolved_handles_count_in_the_exposed_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.event_consumed("triggers");
            m.event_settled("triggers", 0.01);
            m.request("POST", "2xx", 0.01);
            m.delivered();
            m.template_cache("hit");
        }
        m.request("PATCH", "2xx", 0.01); // not a method the handles know: still counted
        m.retry_scheduled(1);
        assert_eq!(m.deliveries("delivered"), 3);
        assert_eq!(m.deliveries("retried"), 1);
        let text = m.render();
        for line in [
            "webhook_events_consumed_total{topic=\"triggers\"} 3",
            "webhook_event_duration_seconds_count{topic=\"triggers\"} 3",
            "webhook_requests_total{method=\"POST\",status_class=\"2xx\"} 3",
            "webhook_requests_total{method=\"PATCH\",status_class=\"2xx\"} 1",
            "webhook_template_cache_requests_total{result=\"hit\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A series appears when first used, as with `with_label_values`.
        assert!(!text.contains("result=\"miss\""), "{text}");
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let m = Metrics::new();
        assert_eq!(m.request_latency_quantile(0.5), None);
        for _ in 0..100 {
            m.request("GET", "2xx", 0.004); // bucket (0.003, 0.005]
        }
        let p50 = m.request_latency_quantile(0.5).unwrap();
        assert!((0.003..=0.005).contains(&p50), "{p50}");
    }
}
