//! Reading the dead-letter topic: one page at a time, from where a [`Cursor`] says up to
//! the end the scan started with, keeping the letters a [`Filter`] selects, at most `limit`
//! of them and [`MAX_PAGE_BYTES`] of their values.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::Letter;
use crate::config::Config;
use crate::kafka::QuietContext;
use crate::park::{FailedDelivery, Origin, ParkedRecord, Reason};

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
    /// Only the dead letters of this event.
    #[arg(long = "event-id")]
    pub event_id: Option<String>,
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

impl Filter {
    fn matches(&self, letter: &Letter) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == letter.reason)
            && self
                .template
                .as_ref()
                .is_none_or(|t| letter.template_id.as_ref() == Some(t))
            && self.target_id.is_none_or(|t| letter.target_id == Some(t))
            && self
                .event_id
                .as_ref()
                .is_none_or(|e| letter.event_id.as_ref() == Some(e))
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
