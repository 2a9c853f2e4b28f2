//! Whole records on the dead-letter topic: an event that cannot be delivered at all (invalid,
//! no template, cannot render) and a record whose processing panicked (`internal_error`).

use crate::trace::TraceParent;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{Pipeline, Settlement};
use crate::park::{Origin, ParkedRecord, Reason, now_ms};
use crate::stats::Event as StatsEvent;

impl Pipeline {
    /// Settles a record whose processing panicked (a bug): dead-lettered whole, reason
    /// `internal_error`, so the partition flows on and the record can be replayed once the
    /// bug is fixed.
    pub async fn dead_letter_panic(
        &self,
        payload: &[u8],
        origin: Origin,
        trace: Option<&TraceParent>,
        panic: &str,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let event_id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("event_id")?.as_str().map(str::to_string));
        error!(event_id = event_id.as_deref().unwrap_or(""), topic = %origin.topic,
               partition = origin.partition, offset = origin.offset, panic,
               "internal error while processing the record; dead-lettering it as internal_error");
        let error = format!("internal error: {}", crate::telemetry::truncate(panic, 200));
        let letter = self.whole_record(payload, Reason::InternalError, event_id, origin, error, trace);
        self.parking.dead_letter(&letter, shutdown).await
    }

    /// Dead-letters a record that cannot be read (`invalid_event`), continuing `trace`.
    pub(super) async fn dead_letter_invalid(
        &self,
        payload: &[u8],
        origin: Origin,
        error: String,
        trace: &TraceParent,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let letter = self.whole_record(payload, Reason::InvalidEvent, None, origin, error, Some(trace));
        self.parking.dead_letter(&letter, shutdown).await
    }

    /// Dead-letters a whole event (unknown template, render error) and counts it for its
    /// campaign.
    pub(super) async fn dead_letter_event(
        &self,
        target_id: i64,
        letter: &ParkedRecord,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let parked = self.parking.dead_letter(letter, shutdown).await;
        if parked.is_settled() {
            self.stats.record(target_id, StatsEvent::DeadLettered);
            self.stats.error(target_id, &letter.last_error, now_ms());
        }
        parked
    }

    /// A dead letter carrying the record's own bytes, byte for byte.
    pub(super) fn whole_record(
        &self,
        payload: &[u8],
        reason: Reason,
        key: Option<String>,
        origin: Origin,
        error: String,
        trace: Option<&TraceParent>,
    ) -> ParkedRecord {
        ParkedRecord {
            reason: Some(reason),
            due_at_ms: now_ms(),
            origin,
            key,
            value: payload.to_vec(),
            attempts: 0,
            first_failed_at_ms: now_ms(),
            last_error: error,
            last_status: None,
            trace: trace.cloned(),
        }
    }
}

/// What a caught panic says (its message when it has one).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string())
}
