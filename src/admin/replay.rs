//! Reading and replaying the dead-letter topic (§5, §8): `dlq inspect` and `dlq replay`.
//!
//! Both read the dead-letter topic from its beginning up to its end as it is when they
//! start (records dead-lettered meanwhile are left for the next run), and select records by
//! reason, template, campaign (targetId) and the time they were dead-lettered. A replayed
//! failed delivery goes to retry tier 1, due now, with no attempt history: it starts its
//! attempts afresh and keeps its chunk index, so its Idempotency-Key does not change. A
//! dead-lettered whole record (invalid event, unknown template, render error) goes back on
//! the trigger topic as it was. Nothing is removed from the dead-letter topic.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::QuietContext;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Config;
use crate::park::{FailedDelivery, Origin, ParkedRecord, Reason, now_ms, producer_config};

/// Which dead letters to act on; every set field must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only this reason (retries_exhausted, rejected, invalid_event, template_not_found, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only deliveries of this template.
    #[arg(long)]
    pub template: Option<String>,
    /// Only this campaign (targetId).
    #[arg(long = "target-id")]
    pub target_id: Option<i64>,
    /// Only records dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only records dead-lettered before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
}

/// One record of the dead-letter topic, as people and scripts see it.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub partition: i32,
    pub offset: i64,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub reason: String,
    pub event_id: Option<String>,
    pub template_id: Option<String>,
    pub target_id: Option<i64>,
    pub chunk: Option<usize>,
    pub attempts: u32,
    pub last_error: String,
    pub last_status: Option<u16>,
    /// Where a replay sends it: "retry" (a failed delivery) or "trigger" (a whole record).
    pub replay_to: &'static str,
    #[serde(skip)]
    parked: ParkedRecord,
}

impl Filter {
    fn matches(&self, letter: &Letter) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == letter.reason)
            && self
                .template
                .as_ref()
                .is_none_or(|t| letter.template_id.as_ref() == Some(t))
            && self.target_id.is_none_or(|t| letter.target_id == Some(t))
            && self
                .since
                .is_none_or(|s| letter.dead_lettered_at.is_some_and(|at| at >= s))
            && self
                .until
                .is_none_or(|u| letter.dead_lettered_at.is_some_and(|at| at < u))
    }
}

fn letter(partition: i32, offset: i64, message: &impl Message) -> Letter {
    let here = Origin {
        topic: message.topic().into(),
        partition,
        offset,
    };
    let parked = ParkedRecord::decode(message, here);
    let failed = FailedDelivery::decode(&parked.value).ok();
    let raw: Option<serde_json::Value> = failed
        .is_none()
        .then(|| serde_json::from_slice(&parked.value).ok())
        .flatten();
    let field = |name: &str| raw.as_ref().and_then(|v| v.get(name));
    Letter {
        partition,
        offset,
        dead_lettered_at: message
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis),
        reason: parked.reason.map(Reason::as_str).unwrap_or_default().to_string(),
        event_id: failed
            .as_ref()
            .map(|f| f.event_id.clone())
            .or_else(|| field("event_id").and_then(|v| v.as_str()).map(str::to_string)),
        template_id: failed
            .as_ref()
            .map(|f| f.template_id.clone())
            .or_else(|| field("template_id").and_then(|v| v.as_str()).map(str::to_string)),
        target_id: failed
            .as_ref()
            .map(|f| f.target_id)
            .or_else(|| field("targetId").and_then(|v| v.as_i64())),
        chunk: failed.as_ref().map(|f| f.chunk),
        attempts: parked.attempts,
        last_error: parked.last_error.clone(),
        last_status: parked.last_status,
        replay_to: if failed.is_some() { "retry" } else { "trigger" },
        parked,
    }
}

/// Every dead letter that matches `filter`, oldest first per partition.
pub fn read(config: &Config, filter: &Filter) -> anyhow::Result<Vec<Letter>> {
    let consumer: BaseConsumer<QuietContext> = crate::consume::consumer_config(config)
        .set("group.id", format!("{}-dlq-reader", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "0")
        .create_with_context(QuietContext)
        .context("cannot create a Kafka consumer")?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(&config.dlq_topic), timeout)
        .context("cannot read the dead-letter topic's metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "dead-letter topic {} not found",
        config.dlq_topic
    );
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&config.dlq_topic, p, timeout)?;
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(&config.dlq_topic, p, Offset::Offset(low))?;
        }
    }
    consumer.assign(&list)?;
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading the dead-letter topic timed out"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.context("reading the dead-letter topic")?;
        let (partition, offset) = (message.partition(), message.offset());
        if ends.get(&partition).is_some_and(|end| offset < *end) {
            let letter = letter(partition, offset, &message);
            if filter.matches(&letter) {
                letters.push(letter);
            }
        }
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
        }
    }
    Ok(letters)
}

/// Republishes `letters`: failed deliveries to retry tier 1 (due now, attempts afresh), whole
/// records to the trigger topic. Waits for every acknowledgement.
pub async fn replay(config: &Config, letters: &[Letter]) -> anyhow::Result<()> {
    let producer: FutureProducer<QuietContext> = producer_config(config)
        .create_with_context(QuietContext)
        .context("cannot create a Kafka producer")?;
    let tier = config.retry_topic(1);
    for letter in letters {
        let key = letter.event_id.clone().unwrap_or_default();
        let result = if letter.replay_to == "retry" {
            // Attempts start afresh, due now; the trigger record's coordinates are kept.
            let mut failed = FailedDelivery::decode(&letter.parked.value)?;
            failed.history = Default::default();
            failed.replayed = true;
            let now = now_ms();
            let record = ParkedRecord {
                reason: None,
                due_at_ms: now,
                value: failed.encode(),
                attempts: 0,
                first_failed_at_ms: now,
                last_error: String::new(),
                last_status: None,
                ..letter.parked.clone()
            };
            producer
                .send(
                    FutureRecord::to(&tier)
                        .key(&key)
                        .payload(&record.value)
                        .headers(record.kafka_headers()),
                    Duration::from_secs(30),
                )
                .await
        } else {
            producer
                .send(
                    FutureRecord::to(&config.trigger_topic)
                        .key(&key)
                        .payload(&letter.parked.value),
                    Duration::from_secs(30),
                )
                .await
        };
        result.map_err(|(err, _)| err).with_context(|| {
            format!(
                "replaying dead letter {}:{} failed",
                letter.partition, letter.offset
            )
        })?;
    }
    Ok(())
}

/// One line per letter, for people.
pub fn describe(letter: &Letter) -> String {
    format!(
        "{}:{}  {}  {:<18}  event {}  template {}  campaign {}  chunk {}  attempts {}  {}",
        letter.partition,
        letter.offset,
        letter
            .dead_lettered_at
            .map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        letter.reason,
        letter.event_id.as_deref().unwrap_or("-"),
        letter.template_id.as_deref().unwrap_or("-"),
        letter.target_id.map_or("-".to_string(), |t| t.to_string()),
        letter.chunk.map_or("-".to_string(), |c| c.to_string()),
        letter.attempts,
        letter.last_error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(reason: &str, template: &str, target: i64, at_ms: i64) -> Letter {
        Letter {
            partition: 0,
            offset: 0,
            dead_lettered_at: DateTime::from_timestamp_millis(at_ms),
            reason: reason.into(),
            event_id: Some("e".into()),
            template_id: Some(template.into()),
            target_id: Some(target),
            chunk: Some(0),
            attempts: 3,
            last_error: "HTTP 503".into(),
            last_status: Some(503),
            replay_to: "retry",
            parked: ParkedRecord {
                reason: Reason::parse(reason),
                due_at_ms: 0,
                origin: Origin {
                    topic: "campaign-triggers".into(),
                    partition: 0,
                    offset: 0,
                },
                key: None,
                value: Vec::new(),
                attempts: 3,
                first_failed_at_ms: 0,
                last_error: "HTTP 503".into(),
                last_status: Some(503),
            },
        }
    }

    #[test]
    fn filters_combine() {
        let letter = sample("rejected", "t1", 7, 1_000_000);
        assert!(Filter::default().matches(&letter));
        let at = |ms| DateTime::from_timestamp_millis(ms);
        let cases = [
            (
                Filter {
                    reason: Some("rejected".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                Filter {
                    reason: Some("expired".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    template: Some("t1".into()),
                    target_id: Some(7),
                    ..Default::default()
                },
                true,
            ),
            (
                Filter {
                    template: Some("t1".into()),
                    target_id: Some(8),
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    since: at(1_000_000),
                    until: at(1_000_001),
                    ..Default::default()
                },
                true,
            ),
            (
                Filter {
                    since: at(1_000_001),
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    until: at(1_000_000),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(filter.matches(&letter), expected, "{filter:?}");
        }
    }
}
