//! Every metric the service exports (docs/observability.md lists them), in one place, on a
//! registry of its own (so two dispatchers in one process, as in the tests, do not
//! collide). Labels are fixed and low-cardinality: no template or campaign ids. The calls
//! made for every record and every request use label handles resolved on first use
//! ([`Handles`]): `with_label_values` hashes the labels on every call.

mod exposition;
mod families;
mod handles;

#[cfg(test)]
mod tests;

use prometheus::{IntGauge, Registry};

use families::{Circuits, Consumer, Dependencies, Events, Outcomes, Requests};
use handles::Handles;
pub use handles::{MethodLabel, Outcome, StatusClass};

/// One consumer group member's part of the backpressure gauges, or a change to it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure {
    pub paused_partitions: i64,
    pub pending_events: i64,
    /// 1 while the member's memory budget is full.
    pub budget_full: i64,
}

impl std::ops::Sub for Backpressure {
    type Output = Backpressure;

    fn sub(self, before: Backpressure) -> Backpressure {
        Backpressure {
            paused_partitions: self.paused_partitions - before.paused_partitions,
            pending_events: self.pending_events - before.pending_events,
            budget_full: self.budget_full - before.budget_full,
        }
    }
}

pub struct Metrics {
    registry: Registry,
    events: Events,
    requests: Requests,
    outcomes: Outcomes,
    consumer: Consumer,
    dependencies: Dependencies,
    circuits: Circuits,
    delivery_log: prometheus::IntCounterVec,
    handles: Handles,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered on a registry of its own, plus the build and process ones.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        families::register_build_info(&registry);
        families::register_process(&registry);
        families::register_dropped_log_lines(&registry);
        Metrics {
            events: Events::register(&registry),
            requests: Requests::register(&registry),
            outcomes: Outcomes::register(&registry),
            consumer: Consumer::register(&registry),
            dependencies: Dependencies::register(&registry),
            delivery_log: families::register_delivery_log(&registry),
            circuits: Circuits::register(&registry),
            registry,
            handles: Handles::default(),
        }
    }

    /// Creates the series every dashboard and alert expects, at 0, so `rate()` and
    /// `increase()` work from the first scrape.
    pub fn with_known_series(self, reasons: &[&str]) -> Metrics {
        for outcome in ["delivered", "retried", "dead_lettered"] {
            self.outcomes.deliveries.with_label_values(&[outcome]);
        }
        for reason in reasons {
            self.outcomes.dead_letters.with_label_values(&[reason]);
        }
        for reason in ["malformed", "schema", "oversize", "too_many_profiles"] {
            self.events.invalid.with_label_values(&[reason]);
        }
        for result in ["success", "error"] {
            self.dependencies
                .oauth_token_requests
                .with_label_values(&[result]);
        }
        for to in ["open", "half_open", "closed"] {
            self.circuits.transitions.with_label_values(&[to]);
        }
        for result in ["hit", "miss"] {
            self.dependencies.template_cache.with_label_values(&[result]);
        }
        for dependency in ["redis", "kafka_producer"] {
            self.dependencies.waits.with_label_values(&[dependency]);
        }
        self
    }

    /// Creates the per-topic series of the trigger topic at 0 (the stall alert compares
    /// its consumption rate with its lag).
    pub fn with_trigger_topic(self, topic: &str) -> Metrics {
        self.events.consumed.with_label_values(&[topic]);
        self
    }

    pub fn event_consumed(&self, topic: &str) {
        let series = || self.events.consumed.with_label_values(&[topic]);
        self.handles
            .topic(topic, |h| h.consumed.get_or_init(series).inc(), || series().inc());
    }

    pub fn event_invalid(&self, reason: &str) {
        self.events.invalid.with_label_values(&[reason]).inc();
    }

    pub fn event_settled(&self, topic: &str, seconds: f64) {
        let series = || self.events.duration.with_label_values(&[topic]);
        self.handles.topic(
            topic,
            |h| h.duration.get_or_init(series).observe(seconds),
            || series().observe(seconds),
        );
    }

    pub fn request(&self, method: MethodLabel, class: StatusClass, seconds: f64) {
        self.handles.requests[method as usize][class as usize]
            .get_or_init(|| {
                self.requests
                    .total
                    .with_label_values(&[method.as_str(), class.as_str()])
            })
            .inc();
        self.requests.duration.observe(seconds);
    }

    /// Attempts the delivery log wrote, dropped, and wrote without their references in one
    /// flush.
    pub fn delivery_log(&self, written: u64, dropped: u64, unindexed: u64) {
        if unindexed > 0 {
            self.delivery_log
                .with_label_values(&["unindexed"])
                .inc_by(unindexed);
        }
        if written > 0 {
            self.delivery_log.with_label_values(&["written"]).inc_by(written);
        }
        if dropped > 0 {
            self.delivery_log.with_label_values(&["dropped"]).inc_by(dropped);
        }
    }

    pub fn delivered(&self) {
        self.outcome(Outcome::Delivered);
    }

    /// A delivery parked on the dead-letter topic (acknowledged by Kafka).
    pub fn delivery_dead_lettered(&self) {
        self.outcome(Outcome::DeadLettered);
    }

    /// Any record acknowledged on the dead-letter topic: a delivery, or a whole event that
    /// was invalid or could not be routed.
    pub fn dead_lettered(&self, reason: &str) {
        self.outcomes.dead_letters.with_label_values(&[reason]).inc();
    }

    /// Counts a settled delivery.
    fn outcome(&self, outcome: Outcome) {
        self.handles.deliveries[outcome as usize]
            .get_or_init(|| self.outcomes.deliveries.with_label_values(&[outcome.as_str()]))
            .inc();
    }

    pub fn inflight(&self) -> &IntGauge {
        &self.requests.inflight
    }

    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer
            .lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Moves the count of `topic`'s partitions this process owns by `change`.
    pub fn partitions_assigned(&self, topic: &str, change: i64) {
        self.consumer
            .partitions_assigned
            .with_label_values(&[topic])
            .add(change);
    }

    /// How many partitions `topic` has, as the cluster's metadata says. The count of those
    /// this process owns is shown beside it from then on, at 0 while it owns none.
    pub fn topic_partitions(&self, topic: &str, partitions: usize) {
        self.consumer.partitions_assigned.with_label_values(&[topic]);
        self.consumer
            .topic_partitions
            .with_label_values(&[topic])
            .set(partitions as i64);
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self
            .consumer
            .lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    pub fn oauth_token_request(&self, result: &str) {
        self.dependencies
            .oauth_token_requests
            .with_label_values(&[result])
            .inc();
    }

    pub fn template_cache(&self, result: &str) {
        match ["hit", "miss"].iter().position(|r| *r == result) {
            Some(i) => self.handles.template_cache[i]
                .get_or_init(|| self.dependencies.template_cache.with_label_values(&[result]))
                .inc(),
            None => self
                .dependencies
                .template_cache
                .with_label_values(&[result])
                .inc(),
        }
    }

    /// Moves the backpressure gauges by one trigger member's change (each event loop has
    /// its own member; the gauges are the process's).
    /// Adds `change` to the backpressure gauges, which sum every trigger member's part.
    pub fn add_backpressure(&self, change: Backpressure) {
        self.consumer.partitions_paused.add(change.paused_partitions);
        self.consumer.pending_events.add(change.pending_events);
        self.consumer.memory_budget_full.add(change.budget_full);
    }

    pub fn retry_scheduled(&self, tier: usize) {
        self.outcomes
            .retries_scheduled
            .with_label_values(&[&tier.to_string()])
            .inc();
        self.outcome(Outcome::Retried);
    }

    /// A paused campaign's delivery was parked on the hold topic.
    pub fn delivery_held(&self) {
        self.outcomes.held.inc();
    }

    /// Whether shared rate limits fall back to this replica's share now.
    pub fn rate_fallback(&self, falling_back: bool) {
        self.dependencies.rate_fallback.set(i64::from(falling_back));
    }

    /// A template's effective rate went `direction` (`down` after 429s, `up` after success).
    pub fn rate_adapted(&self, direction: &str) {
        self.dependencies
            .rate_adaptations
            .with_label_values(&[direction])
            .inc();
    }

    pub fn retry_waited(&self, seconds: f64) {
        self.outcomes.retry_wait.observe(seconds);
    }

    /// A circuit breaker moved `to` a state; `open_now` destinations are open or half-open.
    pub fn circuit_transition(&self, to: &str, open_now: usize) {
        self.circuits.transitions.with_label_values(&[to]).inc();
        self.circuits.open.set(open_now as i64);
    }

    /// The Kafka producer hit a fatal error: it can never park a record again.
    pub fn producer_fatal(&self) {
        self.dependencies.producer_fatal.set(1);
    }

    pub fn dependency_wait(&self, dependency: &str) {
        self.dependencies.waits.with_label_values(&[dependency]).inc();
    }
}
