//! Where failures go (docs/how-it-works.md, "Retries and dead letters"): retry tier topics
//! and the dead-letter topic. A record is parked only once Kafka acknowledges it (acks=all,
//! idempotent producer); until then the offset of the record it came from is not committed.
//! A producer that cannot reach Kafka is an infrastructure fault: parking waits and
//! retries, it never gives up on the record.

mod record;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::health::Health;
use crate::kafka::QuietContext;
use crate::metrics::Metrics;
use crate::settlement::Settlement;

pub use record::{
    AttemptRecord, FailedDelivery, History, Origin, ParkedRecord, Reason, header, now_ms, trace_of,
};

/// The producer of parked records.
pub struct Parking {
    producer: FutureProducer<QuietContext>,
    dlq_topic: String,
    /// The topic of each retry tier, tier 1 first.
    tiers: Vec<String>,
    delays: Vec<Duration>,
    /// Where a paused campaign's deliveries wait (`<retry_topic_prefix>-held`).
    held_topic: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// What a parked record may add to the event it carries: attempt history, headers.
const PARKED_OVERHEAD_BYTES: usize = 256 * 1024;

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
        .set("message.timeout.ms", "30000")
        // Room for the largest record the service accepts, plus a parked record's history
        // and headers; a broker with a lower limit refuses it and a stub is parked instead.
        .set(
            "message.max.bytes",
            (config.max_event_bytes + PARKED_OVERHEAD_BYTES).to_string(),
        );
    for property in config.kafka.properties.values() {
        client.set(&property.key, &property.value);
    }
    client
}

/// What [`Parking::produce`] is producing: the record to its topic, or, once Kafka refused
/// it for good, its stub to the dead-letter topic.
enum Target<'a> {
    Record(&'a str, &'a ParkedRecord),
    /// The dead-letter topic, and the stub.
    Stub(&'a str, ParkedRecord),
}

impl Target<'_> {
    fn parts(&self) -> (&str, &ParkedRecord) {
        match self {
            Target::Record(topic, letter) => (topic, letter),
            Target::Stub(topic, stub) => (topic, stub),
        }
    }
}

/// What became of a record to park (with the reason of what was written).
enum Produced {
    Acked(Option<Reason>),
    /// Kafka could never take the record; a stub of it is on the dead-letter topic.
    Stub(Option<Reason>),
    Cancelled,
}

/// How much of a refused record's value a stub keeps.
pub const STUB_VALUE_BYTES: usize = 64 * 1024;

/// Errors no retry can fix: the record itself is what Kafka refuses.
fn permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// The dead letter that stands for a record Kafka refused: the same headers (so the trigger
/// record is still named), its first [`STUB_VALUE_BYTES`] bytes, and why in `wd-last-error`.
/// A retry record becomes a dead letter (`internal_error`): it cannot wait on its tier.
fn stub(letter: &ParkedRecord, topic: &str, error: &KafkaError) -> ParkedRecord {
    let kept = letter.value.len().min(STUB_VALUE_BYTES);
    ParkedRecord {
        reason: Some(letter.reason.unwrap_or(Reason::InternalError)),
        value: letter.value[..kept].to_vec(),
        last_error: format!(
            "Kafka refused the {}-byte record for {topic} ({error}); value truncated to {kept} bytes; before: {}",
            letter.value.len(),
            crate::telemetry::truncate(&letter.last_error, 200),
        ),
        ..letter.clone()
    }
}

/// Between attempts to park while Kafka refuses: doubling from 200 ms to 10 s.
const PARK_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

impl Parking {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Parking, rdkafka::error::KafkaError> {
        Ok(Parking {
            producer: producer_config(config).create_with_context(QuietContext)?,
            dlq_topic: config.dlq_topic.clone(),
            tiers: (1..=config.retry_delays.len())
                .map(|n| config.retry_topic(n))
                .collect(),
            delays: config.retry_delays.clone(),
            held_topic: config.held_topic(),
            metrics,
            health,
        })
    }

    /// Whether `topic` is the hold topic, where paused campaigns' deliveries wait.
    pub fn is_held_topic(&self, topic: &str) -> bool {
        self.held_topic == topic
    }

    /// The retry tier `topic` is (1, 2, …), or 0 for any other topic (the trigger topic).
    pub fn tier_of(&self, topic: &str) -> u32 {
        self.tiers
            .iter()
            .position(|tier| tier.as_str() == topic)
            .map_or(0, |index| index as u32 + 1)
    }

    /// The delay of each retry tier, tier 1 first.
    pub fn tier_delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Produces `letter` to the dead-letter topic and waits for the acknowledgement (retrying
    /// while Kafka refuses); abandoned only when shutdown came first.
    pub async fn dead_letter(&self, letter: &ParkedRecord, shutdown: &CancellationToken) -> Settlement {
        match self.produce(&self.dlq_topic, letter, shutdown).await {
            Produced::Acked(reason) | Produced::Stub(reason) => {
                self.metrics
                    .dead_lettered(reason.unwrap_or(Reason::InternalError).as_str());
                Settlement::Settled
            }
            Produced::Cancelled => Settlement::Abandoned,
        }
    }

    /// Produces `letter` to retry tier `tier`, as [`Parking::dead_letter`] does.
    pub async fn retry(
        &self,
        tier: usize,
        letter: &ParkedRecord,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let topic = &self.tiers[tier - 1];
        let produced = self.produce(topic, letter, shutdown).await;
        self.parked(produced, || self.metrics.retry_scheduled(tier))
    }

    /// Produces `letter` to the hold topic, as [`Parking::dead_letter`] does: a paused
    /// campaign's delivery, held there until the campaign is resumed.
    pub async fn hold(&self, letter: &ParkedRecord, shutdown: &CancellationToken) -> Settlement {
        let produced = self.produce(&self.held_topic, letter, shutdown).await;
        self.parked(produced, || self.metrics.delivery_held())
    }

    /// What a record parked on a retry tier or the hold topic settles as: `acked` counts it
    /// when Kafka took it; a stub that stood in for it is counted as a dead letter.
    fn parked(&self, produced: Produced, acked: impl FnOnce()) -> Settlement {
        match produced {
            Produced::Acked(_) => {
                acked();
                Settlement::Settled
            }
            Produced::Stub(reason) => {
                self.metrics
                    .dead_lettered(reason.unwrap_or(Reason::InternalError).as_str());
                Settlement::Settled
            }
            Produced::Cancelled => Settlement::Abandoned,
        }
    }

    /// Produces `letter` to `topic` and waits for Kafka's acknowledgement, retrying while
    /// Kafka refuses for a reason that can pass (broker down, not authorised yet). A record
    /// Kafka can never take (too large, invalid) is replaced by a stub on the dead-letter
    /// topic (see [`stub`]) rather than retried forever, which would stop its partition.
    async fn produce(&self, topic: &str, letter: &ParkedRecord, shutdown: &CancellationToken) -> Produced {
        let mut attempt = 0;
        let mut target = Target::Record(topic, letter);
        loop {
            let (topic, letter) = target.parts();
            let mut record = FutureRecord::to(topic)
                .payload(&letter.value)
                .headers(letter.kafka_headers());
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            let error = match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    self.health.set_producer_up(true);
                    return match target {
                        Target::Record(..) => Produced::Acked(letter.reason),
                        Target::Stub(..) => Produced::Stub(letter.reason),
                    };
                }
                Err((err, _)) => err,
            };
            if permanent(&error) && matches!(target, Target::Record(..)) {
                warn!(error = %error, topic, bytes = letter.value.len(),
                      "Kafka cannot take the record; dead-lettering a truncated stub instead");
                target = Target::Stub(&self.dlq_topic, stub(letter, topic, &error));
                continue;
            }
            self.health.set_producer_up(false);
            self.metrics.dependency_wait("kafka_producer");
            self.check_fatal();
            if attempt == 0
                && let Some(suppressed) = crate::telemetry::limited("park")
            {
                warn!(error = %error, topic, suppressed, "cannot park the record; it waits");
            }
            attempt += 1;
            if !PARK_BACKOFF.wait(attempt, shutdown).await {
                return Produced::Cancelled;
            }
        }
    }

    /// After a failed produce: an idempotent producer's fatal error (a broken sequence, a
    /// fenced producer) means it can never produce again. The record keeps waiting (its
    /// offset uncommitted, so nothing is lost) and liveness fails, so the pod is restarted
    /// with a new producer.
    fn check_fatal(&self) {
        use rdkafka::producer::Producer;
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return;
        };
        if self.health.fatal().is_none() {
            error!(error = %code, reason = %reason,
                   "the Kafka producer failed for good; nothing can be parked until the process restarts (/healthz fails)");
            self.metrics.producer_fatal();
        }
        self.health
            .set_fatal(format!("Kafka producer fatal error: {code}: {reason}"));
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_producer_error_fails_liveness_and_the_record_keeps_waiting() {
        use rdkafka::producer::Producer;
        let kafka = crate::demo::embedded_kafka::EmbeddedKafka::start(&[("dlq", 1)]).unwrap();
        let config = Config::load_from(
            [
                ("WD_KAFKA_BROKERS", kafka.bootstrap_servers()),
                ("WD_DLQ_TOPIC", "dlq"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::default()));
        let parking = Parking::new(&config, metrics.clone(), health.clone()).unwrap();
        // What a broken sequence or a fenced idempotent producer does, on command.
        let reason = std::ffi::CString::new("fenced in a test").unwrap();
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                parking.producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        assert!(
            health.fatal().is_none(),
            "noticed when a produce fails, not before"
        );
        let letter = ParkedRecord {
            reason: Some(Reason::Rejected),
            due_at_ms: 0,
            origin: Origin {
                topic: "campaign-triggers".into(),
                partition: 0,
                offset: 1,
            },
            key: Some("e".into()),
            value: b"{}".to_vec(),
            attempts: 1,
            first_failed_at_ms: 0,
            last_error: "HTTP 400".into(),
            last_status: Some(400),
            trace: None,
        };
        let shutdown = CancellationToken::new();
        let parked = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { parking.produce("dlq", &letter, &shutdown).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while health.fatal().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fatal error was not noticed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(health.fatal().unwrap().contains("fenced in a test"));
        assert!(metrics.render().contains("webhook_producer_fatal 1"));
        assert!(!parked.is_finished(), "the record waits: it is not given up");
        shutdown.cancel();
        assert!(matches!(parked.await.unwrap(), Produced::Cancelled));
    }
}
