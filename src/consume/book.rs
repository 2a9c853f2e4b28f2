//! The partition book of a consumer group member and the librdkafka callbacks that keep it
//! (see [`super::member`]): offset trackers, paused partitions and the memory budget's count,
//! shared by the consume loop and the rebalance callbacks; commit what is settled when
//! partitions are revoked; set every assigned partition's fetch state when they come
//! (librdkafka keeps an application's pause across revoke and assign); report lag; log
//! commit failures and librdkafka's lines through the log budget.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::offsets::{OffsetTracker, Ticket};
use crate::health::Health;
use crate::metrics::Metrics;

/// A partition of a topic.
pub type Key = (Arc<str>, i32);

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
    reported: (i64, i64, i64),
}

impl Book {
    pub(super) fn tracker(&mut self, topic: &Arc<str>) -> &mut OffsetTracker {
        self.trackers.entry(topic.clone()).or_default()
    }

    /// Tracks a received record; its bytes count until it settles.
    pub fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64, bytes: usize) -> Ticket {
        self.pending_bytes += bytes;
        self.tracker(topic).track(partition, offset)
    }

    /// Whether a record's partition is still assigned as it was when the record came.
    /// A record that is not is dropped (its bytes uncounted): its new owner consumes it.
    pub fn keep(&mut self, topic: &Arc<str>, ticket: Ticket, bytes: usize) -> bool {
        let current = self.trackers.get(topic).is_some_and(|t| t.is_current(ticket));
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
        let now = (
            self.paused.len() as i64,
            self.total_unsettled() as i64,
            self.memory_full_since.is_some() as i64,
        );
        metrics.add_backpressure(
            now.0 - self.reported.0,
            now.1 - self.reported.1,
            now.2 - self.reported.2,
        );
        self.reported = now;
    }

    /// Every assigned partition.
    pub fn assigned(&self) -> Vec<Key> {
        self.trackers
            .iter()
            .flat_map(|(topic, tracker)| tracker.partitions().map(|p| (topic.clone(), p)))
            .collect()
    }

    /// Records whether `key` should be paused; a change lands in `changes`.
    pub fn want_paused(&mut self, key: Key, pause: bool, changes: &mut FetchChanges) {
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

/// The member's librdkafka context: the callbacks described above.
pub struct MemberContext {
    pub(super) role: Role,
    /// Set when the consumer closes: closing revokes every partition, and a synchronous
    /// commit inside that revocation can wait forever, so that one is asynchronous.
    pub(super) closing: AtomicBool,
    pub(super) book: Arc<Mutex<Book>>,
    pub(super) metrics: Arc<Metrics>,
    /// Readiness follows the trigger members' assignments (one member per event loop).
    pub(super) health: Option<Arc<Health>>,
    /// Whether this member has partitions, as last told to `health`.
    pub(super) assigned: AtomicBool,
}

impl MemberContext {
    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }
}

pub(super) fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    // A panic while the book was held is a bug that already dead-lettered its record; the
    // book itself is consistent after every single call, so carry on with it.
    book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }

    /// Lag of the assigned partitions (§7).
    fn stats(&self, statistics: Statistics) {
        let book = self.book();
        for (topic, tracker) in &book.trackers {
            let Some(stats) = statistics.topics.get(&**topic) else {
                continue;
            };
            for partition in tracker.partitions() {
                if let Some(p) = stats.partitions.get(&partition)
                    && p.consumer_lag >= 0
                {
                    self.metrics.consumer_lag(topic, partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for MemberContext {
    /// Commits what is settled before the partitions go; later completions are dropped.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        {
            let mut book = self.book();
            for element in revoked.elements() {
                let topic: Arc<str> = element.topic().into();
                if let Some(offset) = book.tracker(&topic).revoke(element.partition()) {
                    let _ = commit.add_partition_offset(&topic, element.partition(), Offset::Offset(offset));
                }
                book.paused.remove(&(topic.clone(), element.partition()));
                self.metrics.forget_partition(&topic, element.partition());
            }
            // What the partitions held leaves the gauges with them (at close, all of it).
            if self.role == Role::Trigger {
                book.report_backpressure(&self.metrics);
            }
        }
        info!(
            role = self.role.name(),
            partitions = revoked.count(),
            "partitions revoked"
        );
        let mode = if self.closing.load(Ordering::Relaxed) {
            CommitMode::Async
        } else {
            CommitMode::Sync
        };
        if commit.count() > 0
            && let Err(err) = consumer.commit(&commit, mode)
        {
            warn!(role = self.role.name(), error = %err,
                  "commit on revocation failed; those records may be processed again");
        }
    }

    /// librdkafka keeps an application's pause across revoke and assign, so a partition
    /// that comes back may still be paused: set every assigned partition's fetch state from
    /// the flow rules (nothing of it is unsettled yet, so only the memory budget holds it).
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let mut changes = FetchChanges::default();
                let mut book = self.book();
                let full = book.memory_pauses;
                for element in assigned.elements() {
                    let key: Key = (element.topic().into(), element.partition());
                    book.tracker(&key.0).assign(key.1);
                    // Unknown to the book means "not paused": force the call either way.
                    book.paused.remove(&key);
                    if full {
                        book.paused.insert(key.clone());
                        changes.pause.push(key);
                    } else {
                        changes.resume.push(key);
                    }
                }
                if self.role == Role::Trigger {
                    book.report_backpressure(&self.metrics);
                }
                drop(book);
                set_fetch_state(consumer, self.role, &changes);
                info!(
                    role = self.role.name(),
                    partitions = assigned.count(),
                    "partitions assigned"
                );
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => warn!(role = self.role.name(), error = %err, "rebalance error"),
        }
        if let Some(health) = &self.health {
            let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
            if self.assigned.swap(assigned, Ordering::Relaxed) != assigned {
                health.kafka_assignment_changed(assigned);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                // While the group coordinator is away every commit fails: one line per interval.
                let what = format!("offset-commit:{}", self.role.name());
                if let Some(suppressed) = crate::telemetry::limited(&crate::kafka::fault(&what, &err)) {
                    warn!(role = self.role.name(), error = %err, suppressed,
                          "offset commit failed; it is retried with the next commit");
                }
            }
        }
    }
}

pub(super) fn set_fetch_state<C: Consumer<MemberContext>>(consumer: &C, role: Role, changes: &FetchChanges) {
    for (keys, pausing) in [(&changes.pause, true), (&changes.resume, false)] {
        if keys.is_empty() {
            continue;
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in keys {
            list.add_partition(topic, *partition);
        }
        let result = if pausing {
            consumer.pause(&list)
        } else {
            consumer.resume(&list)
        };
        match result {
            Ok(()) => debug!(
                role = role.name(),
                partitions = list.count(),
                pausing,
                "fetch state set"
            ),
            Err(err) => warn!(role = role.name(), error = %err, pausing, "cannot pause/resume partitions"),
        }
    }
}
