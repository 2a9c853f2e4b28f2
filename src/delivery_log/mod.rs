//! The delivery log (docs/how-it-works.md, "Delivery log"): every attempt, recorded for
//! "what happened to my webhook?", by event and by campaign. A delivery only appends to an
//! in-memory buffer; a background task writes the buffer every quarter second, in batches
//! (two or three pipelined round trips to Redis per flush, never one per delivery), and
//! sends every failed attempt and a sample of the delivered ones to the attempts topic when
//! one is set.
//! Nothing secret and no request body is kept: status, sizes, and at most 256 bytes of an
//! error answer.

mod memory;
mod redis;
mod topic;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{Config, DeliveryLogConfig};
use crate::metrics::Metrics;
use crate::redis_link::RedisConn;

pub use redis::{bucket_of, event_hash};

/// Attempts waiting for the next flush, at most: beyond it (Redis down for long, or far
/// more attempts than a flush writes) they are dropped and counted, never held unbounded.
const MAX_BUFFERED: usize = 100_000;

/// How often the buffer is written.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// At most this many bytes of an error answer are kept.
pub const ANSWER_BYTES: usize = 256;

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Failed, and parked on the retry tier `next_tier` names.
    Retrying,
    /// Failed, or could not be attempted, and parked on the dead-letter topic (`reason`).
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Delivered, Outcome::Retrying, Outcome::DeadLettered]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// One attempt as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoggedAttempt {
    /// Where it sits in its campaign's log: the `cursor` that pages after it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub event_id: String,
    #[serde(rename = "targetId")]
    pub target_id: i64,
    pub template_id: String,
    pub chunk: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made, ms since the epoch.
    pub at_ms: u64,
    /// The destination's `host:port`.
    pub host: String,
    /// The HTTP status, when the destination answered.
    pub status: Option<u16>,
    /// Why there was no answer: `timeout`, `connection`, `auth`, `ssrf_blocked`,
    /// `circuit_open`, or `expired` (not attempted: too old).
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The topic it was consumed from: 0 the trigger topic, N retry tier N.
    pub tier: u32,
    pub outcome: Outcome,
    /// The retry tier it was parked on (`retrying`), or the dead-letter reason.
    pub next: Option<String>,
    /// The start of an error answer's body (at most 256 bytes).
    pub answer: Option<String>,
    /// The request body's size.
    pub request_bytes: u64,
}

/// A page of a campaign's attempts, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptPage {
    pub attempts: Vec<LoggedAttempt>,
    /// Send back as `cursor` for the next (older) page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// What a campaign's attempts are filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    Only(Outcome),
    /// Every attempt that was not delivered.
    Failed,
}

impl Filter {
    /// The filter an `outcome` parameter names: `delivered`, `retrying`, `dead_lettered`,
    /// `failed`, or all when there is none; else what to say about it.
    pub fn parse(outcome: Option<&str>) -> Result<Filter, String> {
        match outcome {
            None | Some("") => Ok(Filter::All),
            Some("failed") => Ok(Filter::Failed),
            Some(text) => Outcome::parse(text)
                .map(Filter::Only)
                .ok_or_else(|| format!("{text:?} is not one of delivered, retrying, dead_lettered, failed")),
        }
    }

    fn keeps(self, attempt: &LoggedAttempt) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(outcome) => attempt.outcome == outcome,
            Filter::Failed => attempt.outcome != Outcome::Delivered,
        }
    }
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the delivery log is off (delivery_log.enabled = false)")]
    Off,
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("invalid cursor: {0}")]
    Cursor(String),
}

/// Where the log is kept.
enum Store {
    Redis(redis::RedisLog),
    /// In the process (the demo, which has no Redis).
    Memory(memory::MemoryLog),
}

/// The delivery log: cheap to clone, shared by every event loop.
#[derive(Clone)]
pub struct DeliveryLog(Option<Arc<Inner>>);

struct Inner {
    /// Recorded since the last flush.
    buffer: Mutex<Vec<LoggedAttempt>>,
    /// Taken by an earlier flush that Redis refused: written again, not sent to the topic
    /// again.
    unwritten: Mutex<Vec<LoggedAttempt>>,
    store: Store,
    /// Set once by [`DeliveryLog::reporting`], before the log is used.
    topic: OnceLock<topic::AttemptsTopic>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl DeliveryLog {
    /// A log kept in Redis under `prefix`, as `config` says; off when it says so.
    pub fn redis(conn: RedisConn, prefix: &str, config: &DeliveryLogConfig) -> DeliveryLog {
        DeliveryLog::with(config, Store::Redis(redis::RedisLog::new(conn, prefix, config)))
    }

    /// A log kept in this process, bounded as `config` says.
    pub fn in_memory(config: &DeliveryLogConfig) -> DeliveryLog {
        DeliveryLog::with(config, Store::Memory(memory::MemoryLog::new(config)))
    }

    /// No log: nothing is recorded, reads answer [`LogError::Off`].
    pub fn off() -> DeliveryLog {
        DeliveryLog(None)
    }

    fn with(config: &DeliveryLogConfig, store: Store) -> DeliveryLog {
        if !config.enabled {
            return DeliveryLog::off();
        }
        DeliveryLog(Some(Arc::new(Inner {
            buffer: Mutex::new(Vec::new()),
            unwritten: Mutex::new(Vec::new()),
            store,
            topic: OnceLock::new(),
            metrics: OnceLock::new(),
        })))
    }

    /// Counts what is written and dropped in `metrics`, and sends to the attempts topic
    /// when `config` sets one.
    /// The first call decides; later ones change nothing.
    pub fn reporting(self, metrics: Arc<Metrics>, config: &Config) -> anyhow::Result<DeliveryLog> {
        if let Some(inner) = &self.0 {
            let _ = inner.metrics.set(metrics);
            if let Some(topic) = topic::AttemptsTopic::new(config)? {
                let _ = inner.topic.set(topic);
            }
        }
        Ok(self)
    }

    /// Whether attempts are recorded.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Records `attempt` at the next flush (the hot path: one push under a lock).
    pub fn record(&self, attempt: LoggedAttempt) {
        let Some(inner) = &self.0 else {
            return;
        };
        let mut buffer = inner.buffer.lock();
        if buffer.len() < MAX_BUFFERED {
            buffer.push(attempt);
            return;
        }
        drop(buffer);
        if let Some(metrics) = inner.metrics.get() {
            metrics.delivery_log(0, 1, 0);
        }
    }

    /// Writes what was recorded so far: to the attempts topic once, and to Redis; what
    /// Redis refused is written again at the next flush (within the buffer's bound).
    pub async fn flush(&self) {
        let Some(inner) = &self.0 else {
            return;
        };
        let fresh = {
            let mut buffer = inner.buffer.lock();
            let capacity = buffer.len();
            std::mem::replace(&mut *buffer, Vec::with_capacity(capacity))
        };
        if let Some(topic) = inner.topic.get() {
            topic.send(&fresh);
        }
        let mut batch = std::mem::take(&mut *inner.unwritten.lock());
        batch.extend(fresh);
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let (refused, unindexed) = match &inner.store {
            Store::Memory(memory) => {
                memory.write(batch);
                (None, 0)
            }
            Store::Redis(redis) => match redis.write(&batch).await {
                Ok(redis::Indexed::Yes) => (None, 0),
                Ok(redis::Indexed::No) => (None, count),
                Err(err) => (Some((err, batch)), 0),
            },
        };
        let (written, dropped) = match refused {
            None => (count, 0),
            Some((err, mut batch)) => {
                warn!(error = %err, attempts = count, "delivery log: cannot write to Redis; kept for the next flush");
                let kept = batch.len().min(MAX_BUFFERED);
                batch.truncate(kept);
                *inner.unwritten.lock() = batch;
                (0, count - kept as u64)
            }
        };
        if let Some(metrics) = inner.metrics.get() {
            metrics.delivery_log(written, dropped, unindexed);
        }
    }

    /// Flushes every quarter second until `stop`, then once more.
    pub async fn run(&self, stop: CancellationToken) {
        if self.0.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                () = stop.cancelled() => break,
            }
        }
        self.flush().await;
        if let Some(topic) = self.0.as_ref().and_then(|inner| inner.topic.get()) {
            topic.flush(Duration::from_secs(5));
        }
    }

    /// Every attempt of `event_id` still in the log, oldest first.
    pub async fn event(&self, event_id: &str) -> Result<Vec<LoggedAttempt>, LogError> {
        match &self.0.as_ref().ok_or(LogError::Off)?.store {
            Store::Redis(redis) => redis.event(event_id).await,
            Store::Memory(memory) => Ok(memory.event(event_id)),
        }
    }

    /// Up to `limit` of campaign `target_id`'s attempts that `filter` keeps, newest first,
    /// older than `cursor` when given.
    pub async fn campaign(
        &self,
        target_id: i64,
        filter: Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, LogError> {
        match &self.0.as_ref().ok_or(LogError::Off)?.store {
            Store::Redis(redis) => redis.campaign(target_id, filter, cursor, limit).await,
            Store::Memory(memory) => memory.campaign(target_id, filter, cursor, limit),
        }
    }
}

/// `text` cut to at most [`ANSWER_BYTES`] bytes, at a character boundary.
pub fn answer_start(text: &str) -> String {
    let mut end = text.len().min(ANSWER_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;
