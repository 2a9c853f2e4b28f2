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
use crate::stats::{REPLAY_MARK_TTL_SECONDS, ReplayOutcome, replay_outcome_key};
use crate::trace::TraceParent;

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

/// The most bytes of record values a page holds.
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// Where a scan of the dead-letter topic goes on from: per partition, the next offset and
/// the end the scan stops at. Written as `partition:next:end` joined by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<(i32, i64, i64)>);

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(p, next, end)| format!("{p}:{next}:{end}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Cursor, String> {
        let bad = || format!("{text:?} is not a cursor this service gave");
        let parts = text
            .split(',')
            .map(|part| {
                let mut numbers = part.split(':');
                let mut next = || numbers.next().and_then(|n| n.parse::<i64>().ok());
                match (next(), next(), next(), numbers.next()) {
                    (Some(p), Some(next), Some(end), None)
                        if (0..=i64::from(i32::MAX)).contains(&p) && 0 <= next && next <= end =>
                    {
                        Ok((p as i32, next, end))
                    }
                    _ => Err(bad()),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parts.is_empty() || parts.len() > 10_000 {
            return Err(bad());
        }
        Ok(Cursor(parts))
    }
}

/// One page of a scan: where it starts and how many matches it may hold.
#[derive(Debug, Clone)]
pub struct Page {
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// The matches of one page and where the next one starts (`None`: the scan is over).
pub struct Scan {
    pub letters: Vec<Letter>,
    pub next: Option<Cursor>,
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
        replayed_before: false,
        replayed_at: None,
        replay_outcome: None,
        replay_outcome_at: None,
        parked,
    }
}

/// Per partition of the dead-letter `topic`: where a page starts (the earliest record, or
/// where `cursor` says) and where the scan ends; partitions with nothing left are left out.
fn page_ranges(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    cursor: Option<&Cursor>,
) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .context("cannot read the dead-letter topic's metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "dead-letter topic {topic} not found");
    let mut ranges = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let range = match cursor {
            None => Some((low, high)),
            Some(cursor) => cursor
                .0
                .iter()
                .find(|(cp, ..)| *cp == p)
                .map(|(_, next, end)| ((*next).max(low), *end)),
        };
        if let Some((start, end)) = range.filter(|(start, end)| start < end) {
            ranges.insert(p, (start, end));
        }
    }
    Ok(ranges)
}

/// The dead letters that match `filter` in one `page`, oldest first per partition.
pub fn read(config: &Config, filter: &Filter, page: &Page) -> anyhow::Result<Scan> {
    let consumer: BaseConsumer<QuietContext> = crate::consume::consumer_config(config)
        .set("group.id", format!("{}-dlq-reader", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "0")
        .create_with_context(QuietContext)
        .context("cannot create a Kafka consumer")?;
    let ranges = page_ranges(&consumer, &config.dlq_topic, page.cursor.as_ref())?;
    let mut list = TopicPartitionList::new();
    for (p, (start, _)) in &ranges {
        list.add_partition_offset(&config.dlq_topic, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&list)?;
    let mut ends: HashMap<i32, i64> = ranges.iter().map(|(p, (_, end))| (*p, *end)).collect();
    // The next offset to read of each partition not done.
    let mut positions: HashMap<i32, i64> = ranges.iter().map(|(p, (start, _))| (*p, *start)).collect();
    let mut letters = Vec::new();
    let mut bytes = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() && letters.len() < page.limit.max(1) && bytes < MAX_PAGE_BYTES {
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
            positions.insert(partition, offset + 1);
            if filter.matches(&letter) {
                bytes += letter.parked.value.len();
                letters.push(letter);
            }
        }
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
        }
    }
    let mut rest: Vec<(i32, i64, i64)> = ends
        .iter()
        .map(|(p, end)| (*p, positions.get(p).copied().unwrap_or(*end), *end))
        .filter(|(_, next, end)| next < end)
        .collect();
    rest.sort();
    Ok(Scan {
        letters,
        next: (!rest.is_empty()).then_some(Cursor(rest)),
    })
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
            replayed_before: false,
            replayed_at: None,
            replay_outcome: None,
            replay_outcome_at: None,
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
                trace: None,
            },
        }
    }

    #[test]
    fn cursors_read_back_as_written_and_refuse_anything_else() {
        let cursor = Cursor(vec![(0, 5, 9), (3, 0, 2)]);
        assert_eq!(cursor.to_string(), "0:5:9,3:0:2");
        assert_eq!("0:5:9,3:0:2".parse::<Cursor>(), Ok(cursor));
        for bad in ["", "x", "0:5", "0:5:9:1", "0:9:5", "-1:0:1", "0:-1:1", "0:1:2,,"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
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
