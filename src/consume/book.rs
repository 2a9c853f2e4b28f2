//! The partition book of a consumer group member and the librdkafka callbacks that keep it
//! (see [`super::member`]): offset trackers, paused partitions and the memory budget's count,
//! shared by the consume loop and the rebalance callbacks; commit what is settled when
//! partitions are revoked; set every assigned partition's fetch state when they come
//! (librdkafka keeps an application's pause across revoke and assign); report lag; log
//! commit failures and librdkafka's lines through the log budget.
//!
//! A revocation waits for the records in flight on its partitions: the group takes a
//! partition over from a running member whenever another joins (a rolling update, a second
//! event loop starting a moment later), and records in flight then would finish after the
//! commit and be sent again by the new owner. Under the cooperative protocols (classic with
//! cooperative-sticky, and KIP-848's) the group waits for this member's unassign, so the
//! callback pauses the partitions and returns; the member gives them up once their records
//! in flight have settled, or after [`REVOKE_WAIT`] ([`super::member::Member::finish_revocation`]).
//!
//! The callbacks are in [`context`]; the book, here.

mod context;

pub use context::MemberContext;
pub(super) use context::set_fetch_state;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;

use super::offsets::{OffsetTracker, Ticket};
use crate::metrics::{Backpressure, Metrics};
use crate::settlement::Settlement;

/// A partition of a topic.
pub type Key = (Arc<str>, i32);

/// The longest a revocation waits for its records in flight: well within the group's
/// rebalance timeout (`max.poll.interval.ms`, 5 minutes by default), and the longest one
/// attempt may take is `timeout_ms` (5 s by default).
pub const REVOKE_WAIT: Duration = Duration::from_secs(15);

/// Which consumer a member is: the trigger topic's, or the retry tiers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Trigger,
    Retry,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Trigger => "trigger",
            Role::Retry => "retry",
        }
    }
}

/// Partition bookkeeping shared by the consume loop and the rebalance callbacks.
#[derive(Default)]
pub struct Book {
    trackers: crate::FastMap<Arc<str>, OffsetTracker>,
    /// Partitions this member paused.
    paused: HashSet<Key>,
    /// Bytes of the records received and not settled (the memory budget counts them).
    pub pending_bytes: usize,
    /// Whether the memory budget pauses every partition (it has hysteresis; see
    /// [`super::flow`]). Partitions assigned meanwhile come paused.
    pub memory_pauses: bool,
    /// Since when the memory budget is full (the trigger consumer holds off receiving).
    pub memory_full_since: Option<Instant>,
    /// Paused partitions, unsettled records and whether the memory budget is full, as last
    /// added to the process's gauges (which sum the trigger members of every event loop).
    reported: Backpressure,
    /// Records started (their task running) and not settled yet, per partition.
    started: crate::FastMap<Key, usize>,
    /// What each running record task is running (see `Member::spawn`).
    pub(super) running: crate::FastMap<tokio::task::Id, Done>,
    /// Partitions the group is taking away, given up once their records in flight settle.
    revoking: Vec<Key>,
    /// When the oldest revocation still waiting began.
    revoking_since: Option<Instant>,
    /// Partitions librdkafka moved off an offset the broker no longer has (retention
    /// deleted the records before they were consumed), and that offset: the next record
    /// received says how many were skipped.
    resets: crate::FastMap<Key, i64>,
}

/// What a finished record task reports back (the book notes it while the task runs, see
/// `Member::spawn`).
pub struct Done {
    pub(in crate::consume) topic: Arc<str>,
    pub(in crate::consume) ticket: Ticket,
    pub(in crate::consume) bytes: usize,
    pub(in crate::consume) started: Instant,
    pub(in crate::consume) settlement: Settlement,
}

impl Book {
    pub(super) fn tracker(&mut self, topic: &Arc<str>) -> &mut OffsetTracker {
        self.trackers.entry(topic.clone()).or_default()
    }

    /// Tracks a received record; its bytes count until it settles.
    pub fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64, bytes: usize) -> Ticket {
        if !self.resets.is_empty()
            && let Some(at) = self.resets.remove(&(topic.clone(), partition))
            && offset > at
        {
            warn!(topic = %topic, partition, from = at, to = offset, skipped = offset - at,
                  "records deleted by the topic's retention before they were consumed were skipped");
        }
        self.pending_bytes += bytes;
        self.tracker(topic).track(partition, offset)
    }

    /// Whether a record's partition is still assigned as it was when the record came (and
    /// is not being revoked). A record that is not is dropped (its bytes uncounted): its new
    /// owner consumes it.
    pub fn keep(&mut self, topic: &Arc<str>, ticket: Ticket, bytes: usize) -> bool {
        let current = self.trackers.get(topic).is_some_and(|t| t.is_current(ticket))
            && !self
                .revoking
                .iter()
                .any(|(t, p)| t == topic && *p == ticket.partition);
        if !current {
            self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        }
        current
    }

    pub fn unsettled(&self, key: &Key) -> usize {
        self.trackers.get(&key.0).map_or(0, |t| t.unsettled(key.1))
    }

    pub fn total_unsettled(&self) -> usize {
        self.trackers.values().map(OffsetTracker::total_unsettled).sum()
    }

    pub fn is_paused(&self, key: &Key) -> bool {
        self.paused.contains(key)
    }

    /// Brings this member's part of the backpressure gauges up to date.
    pub fn report_backpressure(&mut self, metrics: &Metrics) {
        let now = Backpressure {
            paused_partitions: self.paused.len() as i64,
            pending_events: self.total_unsettled() as i64,
            budget_full: i64::from(self.memory_full_since.is_some()),
        };
        metrics.add_backpressure(now - self.reported);
        self.reported = now;
    }

    /// Every assigned partition.
    pub fn assigned(&self) -> Vec<Key> {
        self.trackers
            .iter()
            .flat_map(|(topic, tracker)| tracker.partitions().map(|p| (topic.clone(), p)))
            .collect()
    }

    /// A record of `key` started.
    pub fn started(&mut self, key: Key) {
        *self.started.entry(key).or_default() += 1;
    }

    /// A started record of `key` settled.
    pub fn finished(&mut self, key: &Key) {
        if let Some(n) = self.started.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.started.remove(key);
            }
        }
    }

    fn in_flight(&self, key: &Key) -> usize {
        self.started.get(key).copied().unwrap_or(0)
    }

    /// The partitions of a waiting revocation, taken, when it may complete now: their
    /// records in flight settled, [`REVOKE_WAIT`] passed, or `force`.
    pub fn due_revocation(&mut self, now: Instant, force: bool) -> Option<Vec<Key>> {
        let since = self.revoking_since?;
        let settled = self.revoking.iter().all(|key| self.in_flight(key) == 0);
        if !(force || settled || now.saturating_duration_since(since) >= REVOKE_WAIT) {
            return None;
        }
        self.revoking_since = None;
        Some(std::mem::take(&mut self.revoking))
    }

    /// When a waiting revocation completes at the latest.
    pub fn revocation_deadline(&self) -> Option<Instant> {
        self.revoking_since.map(|since| since + REVOKE_WAIT)
    }

    /// Records whether `key` should be paused; a change lands in `changes`. A partition
    /// being revoked stays paused.
    pub fn want_paused(&mut self, key: Key, pause: bool, changes: &mut FetchChanges) {
        if self.revoking.contains(&key) {
            return;
        }
        if pause && self.paused.insert(key.clone()) {
            changes.pause.push(key);
        } else if !pause && self.paused.remove(&key) {
            changes.resume.push(key);
        }
    }
}

/// Partitions whose fetch state must change.
#[derive(Debug, Default)]
pub struct FetchChanges {
    pub pause: Vec<Key>,
    pub resume: Vec<Key>,
}

pub(super) fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    // A panic while the book was held is a bug that already dead-lettered its record; the
    // book itself is consistent after every single call, so carry on with it.
    book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
