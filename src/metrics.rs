//! Every metric the service exports (§7), in one place, on a registry of its own (so two
//! dispatchers in one process, as in the tests, do not collide). Labels are fixed and
//! low-cardinality: no template or campaign ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
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
    event_duration: HistogramVec,
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
            event_duration,
            registry: r,
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
        self.events_consumed.with_label_values(&[topic]).inc();
    }

    pub fn event_invalid(&self, reason: &str) {
        self.events_invalid.with_label_values(&[reason]).inc();
    }

    pub fn event_settled(&self, topic: &str, seconds: f64) {
        self.event_duration.with_label_values(&[topic]).observe(seconds);
    }

    pub fn request(&self, method: &str, status_class: &str, seconds: f64) {
        self.requests.with_label_values(&[method, status_class]).inc();
        self.request_duration.observe(seconds);
    }

    pub fn delivered(&self) {
        self.deliveries.with_label_values(&["delivered"]).inc();
    }

    /// A delivery parked on the dead-letter topic (acknowledged by Kafka).
    pub fn delivery_dead_lettered(&self) {
        self.deliveries.with_label_values(&["dead_lettered"]).inc();
    }

    /// Any record acknowledged on the dead-letter topic: a delivery, or a whole event that
    /// was invalid or could not be routed.
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters.with_label_values(&[reason]).inc();
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
        self.template_cache.with_label_values(&[result]).inc();
    }

    pub fn set_backpressure(&self, paused_partitions: usize, pending_events: usize) {
        self.partitions_paused.set(paused_partitions as i64);
        self.pending_events.set(pending_events as i64);
    }

    pub fn retry_scheduled(&self, tier: usize) {
        self.retries_scheduled
            .with_label_values(&[&tier.to_string()])
            .inc();
        self.deliveries.with_label_values(&["retried"]).inc();
    }

    pub fn retry_waited(&self, seconds: f64) {
        self.retry_wait.observe(seconds);
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
