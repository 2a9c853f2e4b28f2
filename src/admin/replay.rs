//! Reading and replaying the dead-letter topic: `dlq inspect` and `dlq replay` (docs/api.md).
//!
//! Both read the dead-letter topic from its beginning up to its end as it is when they
//! start (records dead-lettered meanwhile are left for the next run), and select records by
//! reason, template, campaign (targetId) and the time they were dead-lettered. They read
//! in pages ([`Page`]): at most `limit` matches and [`MAX_PAGE_BYTES`] of their values at
//! once, and a [`Cursor`] to go on from, so memory stays bounded and a replay cut short (a
//! client timeout) can go on where it stopped. A replayed letter is marked in Redis for as
//! long as a dead-letter topic keeps records (30 days), so replaying the same range again
//! skips it (and says so) unless forced. A replayed
//! failed delivery goes to retry tier 1, due now, with no attempt history: it starts its
//! attempts afresh and keeps its chunk index, so its Idempotency-Key does not change. A
//! dead-lettered whole record (invalid event, unknown template, render error) goes back on
//! the trigger topic as it was. Nothing is removed from the dead-letter topic.
//!
//! Reading the topic is in `scan`; marking and republishing letters, here.

mod scan;

pub use scan::{Cursor, Filter, MAX_PAGE_BYTES, Page, Scan, read};

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::kafka::QuietContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::config::Config;
use crate::park::{FailedDelivery, ParkedRecord, now_ms, producer_config};
use crate::stats::{REPLAY_MARK_TTL_SECONDS, ReplayOutcome, replay_outcome_key};
use crate::trace::TraceParent;

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
    /// It was replayed before (within the marks' 30 days): a replay skips it, and a dry run
    /// says so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed_before: bool,
    /// When it was last replayed (RFC 3339), as a dry run or a skipping replay reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<String>,
    /// What became of its last replay, once known: "delivered", or "dead_lettered" again
    /// (a new letter). Only a failed delivery's replay reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_outcome: Option<&'static str>,
    /// When that outcome came (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_outcome_at: Option<String>,
    #[serde(skip)]
    parked: ParkedRecord,
}

/// The Redis key that marks a dead letter as replayed.
fn mark_key(prefix: &str, topic: &str, letter: &Letter) -> String {
    format!("{prefix}replayed:{}", letter_ref(topic, letter))
}

/// How a replayed delivery names the letter it came from: `{topic}:{partition}:{offset}`.
fn letter_ref(topic: &str, letter: &Letter) -> String {
    format!("{topic}:{}:{}", letter.partition, letter.offset)
}

/// Marks `letters` replayed in Redis, unless `force`; those marked before are flagged
/// `replayed_before` and left out of what to replay. Returns the indices to replay.
pub async fn mark(
    redis: &crate::redis_link::RedisConn,
    prefix: &str,
    topic: &str,
    letters: &mut [Letter],
    force: bool,
) -> Result<Vec<usize>, redis::RedisError> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for letter in letters.iter() {
        let set = pipe
            .cmd("SET")
            .arg(mark_key(prefix, topic, letter))
            .arg(now_ms())
            .arg("EX")
            .arg(REPLAY_MARK_TTL_SECONDS);
        if !force {
            set.arg("NX");
        }
    }
    let set: Vec<Option<String>> = pipe.query_async(&mut redis.clone()).await?;
    let mut todo = Vec::new();
    for (i, (letter, marked)) in letters.iter_mut().zip(set).enumerate() {
        if marked.is_some() {
            todo.push(i);
        } else {
            letter.replayed_before = true;
        }
    }
    // A new replay's outcome is unknown until its delivery ends.
    let stale: Vec<String> = todo
        .iter()
        .map(|&i| replay_outcome_key(prefix, &letter_ref(topic, &letters[i])))
        .collect();
    if !stale.is_empty() {
        redis::cmd("DEL")
            .arg(stale)
            .query_async::<()>(&mut redis.clone())
            .await?;
    }
    Ok(todo)
}

/// Flags the `letters` replayed before, with when, without marking any (a dry run).
pub async fn look_up(
    redis: &crate::redis_link::RedisConn,
    prefix: &str,
    topic: &str,
    letters: &mut [Letter],
) -> Result<(), redis::RedisError> {
    if letters.is_empty() {
        return Ok(());
    }
    let marks = letters.iter().map(|l| mark_key(prefix, topic, l));
    let outcomes = letters
        .iter()
        .map(|l| replay_outcome_key(prefix, &letter_ref(topic, l)));
    let keys: Vec<String> = marks.chain(outcomes).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut redis.clone())
        .await?;
    let (marks, outcomes) = values.split_at(letters.len());
    for ((letter, mark), outcome) in letters.iter_mut().zip(marks).zip(outcomes) {
        if let Some(at_ms) = mark.as_deref().and_then(|m| m.parse().ok()) {
            letter.replayed_before = true;
            letter.replayed_at = rfc3339(at_ms);
        }
        if let Some((what, at_ms)) = outcome.as_deref().and_then(parse_outcome) {
            letter.replay_outcome = Some(what.as_str());
            letter.replay_outcome_at = rfc3339(at_ms);
        }
    }
    Ok(())
}

/// A replay outcome as the pipeline writes it: `"{outcome} {ms}"`.
fn parse_outcome(value: &str) -> Option<(ReplayOutcome, i64)> {
    let (what, at_ms) = value.split_once(' ')?;
    let what = match what {
        "delivered" => ReplayOutcome::Delivered,
        "dead_lettered" => ReplayOutcome::DeadLettered,
        _ => return None,
    };
    Some((what, at_ms.parse().ok()?))
}

fn rfc3339(at_ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(at_ms).map(|at| at.to_rfc3339())
}

/// Removes the marks of `letters` (their replay failed: they can be replayed again).
pub async fn unmark(redis: &crate::redis_link::RedisConn, prefix: &str, topic: &str, letters: &[&Letter]) {
    let keys: Vec<String> = letters.iter().map(|l| mark_key(prefix, topic, l)).collect();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut redis.clone()).await;
    }
}

/// Republishes `letters`: failed deliveries to retry tier 1 (due now, attempts afresh), whole
/// records to the trigger topic. Waits for every acknowledgement.
pub async fn replay(config: &Config, letters: &[&Letter]) -> anyhow::Result<()> {
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
            failed.replay_of = Some(letter_ref(&config.dlq_topic, letter));
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
                        .payload(&letter.parked.value)
                        .headers(trace_headers(letter.parked.trace.as_ref())),
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

/// A replayed whole record's headers: the trace context its dead letter carried, so the
/// replay joins the trace it came from.
fn trace_headers(trace: Option<&TraceParent>) -> rdkafka::message::OwnedHeaders {
    trace.into_iter().flat_map(TraceParent::headers).fold(
        rdkafka::message::OwnedHeaders::new(),
        |headers, (key, value)| {
            headers.insert(rdkafka::message::Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
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

    #[test]
    fn a_replay_outcome_is_read_as_the_pipeline_writes_it() {
        for outcome in [ReplayOutcome::Delivered, ReplayOutcome::DeadLettered] {
            let written = format!("{} 1765000000000", outcome.as_str());
            assert_eq!(parse_outcome(&written), Some((outcome, 1_765_000_000_000)));
        }
        for garbage in ["", "delivered", "sent 1", "delivered soon"] {
            assert_eq!(parse_outcome(garbage), None, "{garbage:?}");
        }
    }
}
