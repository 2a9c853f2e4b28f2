//! The format of a parked record (docs/formats.md, "Retry and dead-letter records"): a
//! failed delivery (or a whole unusable trigger record) on a retry tier or on the
//! dead-letter topic. This module is the one home of its header names, its value and their
//! encoding and decoding: the pipeline writes records, the retry consumer and replay read
//! and rewrite them, all through [`ParkedRecord`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use serde::{Deserialize, Serialize};

use crate::event::{KeyValues, Profile, TriggerEvent};
use crate::trace::{TRACEPARENT, TRACESTATE, TraceParent};

/// The `wd-*` header names. Retry records carry all but [`header::REASON`].
pub mod header {
    pub const ATTEMPT: &str = "wd-attempt";
    pub const DUE_AT_MS: &str = "wd-due-at-ms";
    pub const ORIGINAL_TOPIC: &str = "wd-original-topic";
    pub const ORIGINAL_PARTITION: &str = "wd-original-partition";
    pub const ORIGINAL_OFFSET: &str = "wd-original-offset";
    pub const FIRST_FAILED_AT_MS: &str = "wd-first-failed-at-ms";
    pub const LAST_ERROR: &str = "wd-last-error";
    pub const LAST_STATUS: &str = "wd-last-status";
    pub const REASON: &str = "wd-reason";

    /// Every header of a dead-letter record.
    pub const ALL: [&str; 9] = [
        ATTEMPT,
        DUE_AT_MS,
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        FIRST_FAILED_AT_MS,
        LAST_ERROR,
        LAST_STATUS,
        REASON,
    ];
}

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
    /// A bug in the service (a panic) while processing the record: dead-lettered rather
    /// than left unsettled, so one bug never freezes a partition.
    InternalError,
    /// The delivery waited behind its destination's open circuit breaker longer than its
    /// template's `circuit_breaker.max_wait_seconds`.
    CircuitOpenExpired,
    /// Its campaign was cancelled before it was sent.
    Cancelled,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::RetriesExhausted,
        Reason::Rejected,
        Reason::InvalidEvent,
        Reason::TemplateNotFound,
        Reason::RenderError,
        Reason::Expired,
        Reason::SsrfBlocked,
        Reason::InternalError,
        Reason::CircuitOpenExpired,
        Reason::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Rejected => "rejected",
            Reason::InvalidEvent => "invalid_event",
            Reason::TemplateNotFound => "template_not_found",
            Reason::RenderError => "render_error",
            Reason::Expired => "expired",
            Reason::SsrfBlocked => "ssrf_blocked",
            Reason::InternalError => "internal_error",
            Reason::CircuitOpenExpired => "circuit_open_expired",
            Reason::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The trigger record a parked record comes from (`wd-original-*`): kept through every
/// retry tier and replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// One attempt, as a parked record's history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

impl AttemptRecord {
    /// Whether this was no attempt but a delivery parked by an open circuit breaker.
    pub fn circuit_open(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.starts_with("circuit_open"))
    }
}

/// The attempts a parked delivery carries: the first [`History::FIRST`] and the last
/// [`History::LAST`] of them, with the counts of all, so a record stays a few KiB however
/// long its delivery waits (a destination down for a weekend parks it thousands of times).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub attempts: Vec<AttemptRecord>,
    /// Every attempt recorded, circuit-open passes included (records written before
    /// compaction have none: their `attempts` are all of them).
    #[serde(default)]
    pub attempts_total: u32,
    /// How many of them were passes parked by an open circuit breaker, not attempts.
    #[serde(default)]
    pub circuit_open_total: u32,
    /// How many attempts the destination answered with 429 (or 503 and `Retry-After`) while
    /// the delivery's wait was within bounds: a request to slow down, not counted against
    /// `max_retries`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_total: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl History {
    pub const FIRST: usize = 3;
    pub const LAST: usize = 5;

    /// Adds an attempt, dropping the oldest of the last ones past [`History::LAST`].
    pub fn push(&mut self, attempt: AttemptRecord) {
        self.count_what_is_kept();
        self.attempts_total = self.attempts_total.saturating_add(1);
        if attempt.circuit_open() {
            self.circuit_open_total = self.circuit_open_total.saturating_add(1);
        }
        self.attempts.push(attempt);
        if self.attempts.len() > Self::FIRST + Self::LAST {
            self.attempts.remove(Self::FIRST);
        }
    }

    /// Attempts made: passes parked by an open breaker are not attempts.
    pub fn made(&self) -> u32 {
        let mut counted = self.clone();
        counted.count_what_is_kept();
        counted.attempts_total - counted.circuit_open_total
    }

    /// Attempts that count against `max_retries`: those made, less the throttled ones.
    pub fn counted(&self) -> u32 {
        self.made().saturating_sub(self.throttled_total)
    }

    /// A history written before the counts existed holds every attempt: count them.
    fn count_what_is_kept(&mut self) {
        if (self.attempts_total as usize) < self.attempts.len() {
            self.attempts_total = self.attempts.len() as u32;
            self.circuit_open_total = self.attempts.iter().filter(|a| a.circuit_open()).count() as u32;
        }
    }
}

/// The value of a parked delivery: exactly the failed chunk of the event (not the rendered
/// request, so no template header or credential is copied into Kafka) and its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedDelivery {
    pub event_id: String,
    pub template_id: String,
    #[serde(rename = "targetId")]
    pub target_id: i64,
    pub is_test: bool,
    pub key_values: KeyValues,
    pub profiles: Vec<Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The chunk index: retries and replays keep the Idempotency-Key `<event_id>:<chunk>`.
    pub chunk: usize,
    #[serde(flatten)]
    pub history: History,
    /// A dead letter replayed: once delivered it counts as `recovered` in its campaign's
    /// stats, which clears "Webhook Dispatch Failed" when every dead letter was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// The dead letter a replay came from, `{topic}:{partition}:{offset}`: what becomes of
    /// the delivery (delivered, or dead-lettered again) is written beside its replay mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

impl FailedDelivery {
    /// The event the delivery belongs to, with only this delivery's profiles.
    pub fn event(&self) -> TriggerEvent {
        TriggerEvent {
            event_id: self.event_id.clone(),
            template_id: self.template_id.clone(),
            target_id: self.target_id,
            is_test: self.is_test,
            key_values: self.key_values.clone(),
            profiles: self.profiles.clone(),
            created_at: self.created_at,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("JSON values always serialise")
    }

    pub fn decode(value: &[u8]) -> Result<FailedDelivery, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

/// A record bound for a retry tier (no reason) or the dead-letter topic (a reason).
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedRecord {
    pub reason: Option<Reason>,
    /// When the next attempt is due (retry tiers); the time of parking for dead letters.
    pub due_at_ms: u64,
    pub origin: Origin,
    /// Record key: the event id when known, so a partition keeps an event's records in order.
    pub key: Option<String>,
    /// A [`FailedDelivery`] as JSON, or the raw trigger record (unusable events) byte for byte.
    pub value: Vec<u8>,
    pub attempts: u32,
    pub first_failed_at_ms: u64,
    pub last_error: String,
    pub last_status: Option<u16>,
    /// Where the trace goes on (`traceparent` / `tracestate` headers): the step that parked
    /// it, or for a whole record the trace it came with.
    pub trace: Option<TraceParent>,
}

/// The W3C trace context on a record's headers, when it has a valid one.
pub fn trace_of(message: &impl Message) -> Option<TraceParent> {
    let traceparent = header_str(message, TRACEPARENT)?;
    TraceParent::parse(Some(traceparent), header_str(message, TRACESTATE))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ParkedRecord {
    /// The `wd-*` headers, [`header::REASON`] only for a dead letter, and the trace context's
    /// when there is one.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (header::ATTEMPT, self.attempts.to_string()),
            (header::DUE_AT_MS, self.due_at_ms.to_string()),
            (header::ORIGINAL_TOPIC, self.origin.topic.to_string()),
            (header::ORIGINAL_PARTITION, self.origin.partition.to_string()),
            (header::ORIGINAL_OFFSET, self.origin.offset.to_string()),
            (header::FIRST_FAILED_AT_MS, self.first_failed_at_ms.to_string()),
            (header::LAST_ERROR, self.last_error.clone()),
            (
                header::LAST_STATUS,
                self.last_status.map(|s| s.to_string()).unwrap_or_default(),
            ),
        ];
        if let Some(reason) = self.reason {
            headers.push((header::REASON, reason.as_str().to_string()));
        }
        if let Some(trace) = &self.trace {
            headers.extend(trace.headers());
        }
        headers
    }

    /// The headers as Kafka carries them.
    pub fn kafka_headers(&self) -> OwnedHeaders {
        self.headers()
            .into_iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            })
    }

    /// Reads a parked record back from Kafka. Missing or unreadable headers take neutral
    /// values (0, empty); a record without `wd-original-*` is named after where it was read
    /// (`fallback`), so it can always be traced.
    pub fn decode(message: &impl Message, fallback: Origin) -> ParkedRecord {
        let get = |name: &str| header_str(message, name);
        let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        let origin = (|| {
            Some(Origin {
                topic: get(header::ORIGINAL_TOPIC).filter(|t| !t.is_empty())?.into(),
                partition: get(header::ORIGINAL_PARTITION)?.parse().ok()?,
                offset: get(header::ORIGINAL_OFFSET)?.parse().ok()?,
            })
        })()
        .unwrap_or(fallback);
        ParkedRecord {
            reason: get(header::REASON).and_then(Reason::parse),
            due_at_ms: number(header::DUE_AT_MS).unwrap_or(0),
            origin,
            key: message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_string),
            value: message.payload().unwrap_or_default().to_vec(),
            attempts: number(header::ATTEMPT).unwrap_or(0) as u32,
            first_failed_at_ms: number(header::FIRST_FAILED_AT_MS).unwrap_or(0),
            last_error: get(header::LAST_ERROR).unwrap_or_default().to_string(),
            last_status: get(header::LAST_STATUS).and_then(|s| s.parse().ok()),
            trace: trace_of(message),
        }
    }
}

fn header_str<'m>(message: &'m impl Message, name: &str) -> Option<&'m str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn origin(topic: &str, partition: i32, offset: i64) -> Origin {
        Origin {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    fn record(reason: Option<Reason>) -> ParkedRecord {
        ParkedRecord {
            reason,
            due_at_ms: 5,
            origin: origin("campaign-triggers", 3, 42),
            key: Some("e".into()),
            value: b"{}".to_vec(),
            attempts: 1,
            first_failed_at_ms: 1000,
            last_error: "HTTP 400".into(),
            last_status: Some(400),
            trace: None,
        }
    }

    #[test]
    fn a_parked_records_trace_context_reads_back_as_written() {
        let mut parked = record(None);
        parked.trace = TraceParent::parse(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("vendor=opaque"),
        );
        assert!(parked.trace.is_some());
        let read = ParkedRecord::decode(&as_message(&parked, "retry-1"), origin("x", 0, 0));
        assert_eq!(read.trace, parked.trace);
        let untraced = ParkedRecord::decode(&as_message(&record(None), "retry-1"), origin("x", 0, 0));
        assert_eq!(untraced.trace, None);
    }

    #[test]
    fn a_history_keeps_the_first_three_and_the_last_five_and_counts_them_all() {
        let attempt = |at_ms, error: Option<&str>| AttemptRecord {
            at_ms,
            status: error.is_none().then_some(503),
            error: error.map(str::to_string),
            latency_ms: 1,
        };
        let mut history = History::default();
        // A destination down for a weekend: real attempts, then thousands of passes parked
        // by its open breaker, with long errors.
        let long = format!("circuit_open: {}", "x".repeat(200));
        for at in 0..3 {
            history.push(attempt(at, None));
        }
        for at in 3..10_000 {
            history.push(attempt(at, Some(&long)));
        }
        let at: Vec<u64> = history.attempts.iter().map(|a| a.at_ms).collect();
        assert_eq!(at, vec![0, 1, 2, 9995, 9996, 9997, 9998, 9999]);
        assert_eq!(
            (history.attempts_total, history.circuit_open_total),
            (10_000, 9_997)
        );
        assert_eq!(history.made(), 3);
        let failed = FailedDelivery {
            event_id: "e".into(),
            template_id: "t".into(),
            target_id: 1,
            is_test: false,
            key_values: Default::default(),
            profiles: Vec::new(),
            created_at: None,
            chunk: 0,
            history,
            replayed: false,
            replay_of: None,
        };
        assert!(
            failed.encode().len() < 8 * 1024,
            "{} bytes",
            failed.encode().len()
        );
        // A record written before the counts existed: its attempts are all of them.
        let old: FailedDelivery = serde_json::from_str(
            r#"{"event_id":"e","template_id":"t","targetId":1,"is_test":false,"key_values":{},
                "profiles":[],"chunk":0,"attempts":[{"at_ms":1,"status":503,"latency_ms":1},
                {"at_ms":2,"error":"circuit_open: x","latency_ms":0}]}"#,
        )
        .unwrap();
        assert_eq!(old.history.made(), 1);
        let mut old = old.history;
        old.push(attempt(3, None));
        assert_eq!(
            (old.attempts_total, old.circuit_open_total, old.made()),
            (3, 1, 2)
        );
    }

    fn as_message(record: &ParkedRecord, topic: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(record.value.clone()),
            record.key.clone().map(String::into_bytes),
            topic.into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(record.kafka_headers()),
        )
    }

    #[test]
    fn headers_carry_everything_section_5_names() {
        let headers: std::collections::HashMap<_, _> =
            record(Some(Reason::Rejected)).headers().into_iter().collect();
        assert_eq!(headers.len(), header::ALL.len());
        for name in header::ALL {
            assert!(headers.contains_key(name), "{name}");
        }
        assert_eq!(headers[header::REASON], "rejected");
        assert_eq!(headers[header::ORIGINAL_OFFSET], "42");
        assert_eq!(headers[header::LAST_STATUS], "400");
        let retry: Vec<_> = record(None).headers().into_iter().map(|(k, _)| k).collect();
        assert!(!retry.contains(&header::REASON));
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        for reason in Reason::ALL.map(Some).into_iter().chain([None]) {
            let written = record(reason);
            let read = ParkedRecord::decode(&as_message(&written, "webhook-retry-1"), origin("x", 0, 0));
            assert_eq!(read, written);
        }
    }

    #[test]
    fn the_trigger_coordinates_survive_a_tier_and_missing_ones_fall_back() {
        let written = record(None);
        let read = ParkedRecord::decode(
            &as_message(&written, "webhook-retry-2"),
            origin("webhook-retry-2", 1, 9),
        );
        assert_eq!(read.origin, origin("campaign-triggers", 3, 42));
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 1, 9, None);
        let read = ParkedRecord::decode(&bare, origin("webhook-retry-2", 1, 9));
        assert_eq!(read.origin, origin("webhook-retry-2", 1, 9));
        assert_eq!((read.reason, read.attempts, read.last_status), (None, 0, None));
    }

    #[test]
    fn reasons_parse_from_their_names_only() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("Rejected"), None);
    }
}
