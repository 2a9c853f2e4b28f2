//! Where failures go (§5): retry tier topics and the dead-letter topic. A record is parked
//! only once Kafka acknowledges it (acks=all, idempotent producer); until then the offset of
//! the record it came from is not committed. A producer that cannot reach Kafka is an
//! infrastructure fault: parking waits and retries, it never gives up on the record.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;

/// Why a record is dead-lettered (`wd-reason`, and the `reason` label of
/// `webhook_dead_letters_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    RetriesExhausted,
    Rejected,
    InvalidEvent,
    TemplateNotFound,
    RenderError,
    Expired,
    SsrfBlocked,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Rejected => "rejected",
            Reason::InvalidEvent => "invalid_event",
            Reason::TemplateNotFound => "template_not_found",
            Reason::RenderError => "render_error",
            Reason::Expired => "expired",
            Reason::SsrfBlocked => "ssrf_blocked",
        }
    }

    pub const ALL: [Reason; 7] = [
        Reason::RetriesExhausted,
        Reason::Rejected,
        Reason::InvalidEvent,
        Reason::TemplateNotFound,
        Reason::RenderError,
        Reason::Expired,
        Reason::SsrfBlocked,
    ];
}

/// Every header of a dead-letter record (§5); retry records carry all but `wd-reason`.
pub const HEADERS: [&str; 9] = [
    "wd-attempt",
    "wd-due-at-ms",
    "wd-original-topic",
    "wd-original-partition",
    "wd-original-offset",
    "wd-first-failed-at-ms",
    "wd-last-error",
    "wd-last-status",
    "wd-reason",
];

/// Where the failed record came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// One attempt, as a parked record's history keeps it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// A record bound for a retry tier (no reason) or the dead-letter topic (a reason).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: Option<Reason>,
    /// When the next attempt is due (retry tiers); the time of parking for dead letters.
    pub due_at_ms: u64,
    pub origin: Origin,
    /// Record key: the event id when known, so a partition keeps an event's letters in order.
    pub key: Option<String>,
    /// The value: the raw record (bad or unroutable events) or the failed delivery as JSON.
    pub value: Vec<u8>,
    pub attempts: u32,
    pub first_failed_at_ms: u64,
    pub last_error: String,
    pub last_status: Option<u16>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DeadLetter {
    /// The §5 headers: `wd-attempt`, `wd-due-at-ms`, `wd-original-*`, `wd-first-failed-at-ms`,
    /// `wd-last-error`, `wd-last-status`, `wd-reason`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("wd-attempt", self.attempts.to_string()),
            ("wd-due-at-ms", self.due_at_ms.to_string()),
            ("wd-original-topic", self.origin.topic.to_string()),
            ("wd-original-partition", self.origin.partition.to_string()),
            ("wd-original-offset", self.origin.offset.to_string()),
            ("wd-first-failed-at-ms", self.first_failed_at_ms.to_string()),
            ("wd-last-error", self.last_error.clone()),
            (
                "wd-last-status",
                self.last_status.map(|s| s.to_string()).unwrap_or_default(),
            ),
        ];
        if let Some(reason) = self.reason {
            headers.push(("wd-reason", reason.as_str().to_string()));
        }
        headers
    }
}

/// The producer of parked records.
pub struct Parking {
    producer: FutureProducer,
    dlq_topic: String,
    /// `(topic, delay)` of each retry tier, tier 1 first.
    tiers: Vec<(String, Duration)>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The producer's librdkafka settings: durable (acks=all), no duplicates from its own
/// retries (idempotence), then the operator's properties.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("client.id", "webhook-dispatcher")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for property in config.kafka.properties.values() {
        client.set(&property.key, &property.value);
    }
    client
}

/// Backoff between attempts to park while Kafka refuses: doubling from 200 ms to 10 s.
fn park_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(10))
}

impl Parking {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Parking, rdkafka::error::KafkaError> {
        Ok(Parking {
            producer: producer_config(config).create()?,
            dlq_topic: config.dlq_topic.clone(),
            tiers: (1..=config.retry_delays.len())
                .map(|n| (config.retry_topic(n), config.retry_delays[n - 1]))
                .collect(),
            metrics,
            health,
        })
    }

    /// The tier a delivery goes to after `failed` failed attempts (retry n → tier n, the last
    /// tier repeats), and its delay.
    pub fn tier(&self, failed: u32) -> (usize, &str, Duration) {
        let n = (failed as usize).clamp(1, self.tiers.len());
        let (topic, delay) = &self.tiers[n - 1];
        (n, topic, *delay)
    }

    /// Every retry tier topic.
    pub fn tier_topics(&self) -> Vec<String> {
        self.tiers.iter().map(|(topic, _)| topic.clone()).collect()
    }

    /// Produces `letter` to the dead-letter topic and waits for the acknowledgement (retrying
    /// while Kafka refuses); `false` only when shutdown came first.
    pub async fn dead_letter(&self, letter: &DeadLetter, shutdown: &CancellationToken) -> bool {
        let parked = self.produce(&self.dlq_topic, letter, shutdown).await;
        if parked && let Some(reason) = letter.reason {
            self.metrics.dead_lettered(reason.as_str());
        }
        parked
    }

    /// Produces `letter` to retry tier `tier`, as [`Parking::dead_letter`] does.
    pub async fn retry(&self, tier: usize, letter: &DeadLetter, shutdown: &CancellationToken) -> bool {
        let topic = &self.tiers[tier - 1].0;
        let parked = self.produce(topic, letter, shutdown).await;
        if parked {
            self.metrics.retry_scheduled(tier);
        }
        parked
    }

    /// Produces `letter` to `topic` and waits for Kafka's acknowledgement, retrying while
    /// Kafka refuses. `false` only when shutdown came first (the record then stays
    /// unsettled and is consumed again after restart).
    async fn produce(&self, topic: &str, letter: &DeadLetter, shutdown: &CancellationToken) -> bool {
        let mut headers = OwnedHeaders::new();
        for (key, value) in letter.headers() {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut attempt = 0;
        loop {
            let mut record = FutureRecord::to(topic)
                .payload(&letter.value)
                .headers(headers.clone());
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    self.health.set_producer_up(true);
                    return true;
                }
                Err((err, _)) => {
                    self.health.set_producer_up(false);
                    self.metrics.dependency_wait("kafka_producer");
                    if attempt == 0 {
                        warn!(error = %err, topic, "cannot park the record; it waits");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(park_backoff(attempt)) => {}
            }
            attempt += 1;
        }
    }

    /// Waits (up to `timeout`) for produced records still in librdkafka's queue.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        if let Err(err) = self.producer.flush(timeout) {
            warn!(error = %err, "producer flush incomplete at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_everything_section_5_names() {
        let letter = DeadLetter {
            reason: Some(Reason::Rejected),
            due_at_ms: 5,
            origin: Origin {
                topic: "t".into(),
                partition: 3,
                offset: 42,
            },
            key: Some("e".into()),
            value: b"{}".to_vec(),
            attempts: 1,
            first_failed_at_ms: 1000,
            last_error: "HTTP 400".into(),
            last_status: Some(400),
        };
        let headers: std::collections::HashMap<_, _> = letter.headers().into_iter().collect();
        assert_eq!(headers.len(), HEADERS.len());
        for name in HEADERS {
            assert!(headers.contains_key(name), "{name}");
        }
        assert_eq!(headers["wd-reason"], "rejected");
        assert_eq!(headers["wd-original-offset"], "42");
        assert_eq!(headers["wd-last-status"], "400");
    }

    #[test]
    fn park_backoff_doubles_and_caps() {
        assert_eq!(park_backoff(0), Duration::from_millis(200));
        assert_eq!(park_backoff(3), Duration::from_millis(1600));
        assert_eq!(park_backoff(30), Duration::from_secs(10));
    }
}
