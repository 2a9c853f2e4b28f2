//! The attempts topic: every failed attempt and a sample of the delivered ones, as JSON
//! (docs/formats.md, "Attempts topic"), keyed by event id, for stores that keep them longer
//! than the log does. Sent without waiting: an attempt the producer cannot take is left to
//! the log in Redis, never a reason to hold a delivery.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tracing::warn;

use super::{LoggedAttempt, Outcome};
use crate::config::Config;
use crate::kafka::QuietContext;

pub(super) struct AttemptsTopic {
    producer: FutureProducer<QuietContext>,
    topic: String,
    /// Delivered attempts whose sample hash falls below this are sent.
    below: u64,
}

impl AttemptsTopic {
    pub(super) fn new(config: &Config) -> anyhow::Result<Option<AttemptsTopic>> {
        let Some(topic) = &config.delivery_log.attempts_topic else {
            return Ok(None);
        };
        let producer = crate::park::producer_config(config)
            .create_with_context(QuietContext)
            .map_err(|err| anyhow::anyhow!("cannot create the attempts topic's producer: {err}"))?;
        Ok(Some(AttemptsTopic {
            producer,
            topic: topic.clone(),
            below: (config.delivery_log.success_sample * u32::MAX as f64) as u64,
        }))
    }

    /// Sends the failed attempts of `batch` and the sampled delivered ones.
    pub(super) fn send(&self, batch: &[LoggedAttempt]) {
        let mut refused = 0;
        for attempt in batch.iter().filter(|a| self.keeps(a)) {
            let Ok(value) = serde_json::to_vec(attempt) else {
                continue;
            };
            let record = FutureRecord::to(&self.topic)
                .key(attempt.event_id.as_bytes())
                .payload(&value);
            // The delivery report is not awaited: the topic is a copy, not the record.
            if self.producer.send_result(record).is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            warn!(refused, topic = %self.topic, "attempts topic: the producer's queue is full; those attempts are in the log only");
        }
    }

    /// Waits up to `timeout` for what was sent to be acknowledged (at shutdown: the
    /// producer's queue is dropped with it).
    pub(super) fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            warn!(error = %err, topic = %self.topic, "attempts topic: not every attempt was acknowledged before the stop");
        }
    }

    /// Every failure; a delivered attempt when its event's hash falls in the sample (the
    /// same events on every replica).
    fn keeps(&self, attempt: &LoggedAttempt) -> bool {
        attempt.outcome != Outcome::Delivered || u64::from(super::event_hash(&attempt.event_id)) < self.below
    }
}
