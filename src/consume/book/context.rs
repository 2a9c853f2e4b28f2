//! The member's librdkafka callbacks, which keep its [`Book`]: commit what is settled
//! when partitions are revoked, or wait for their records in flight first (see the
//! parent module); set every assigned partition's fetch state when they come; report lag
//! and group membership; log commit failures and librdkafka's lines through the log budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::{ConsumerGroup, Statistics};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{Book, FetchChanges, Key, Role, lock};
use crate::health::Health;
use crate::metrics::Metrics;

/// The member's librdkafka context: the callbacks described above.
pub struct MemberContext {
    pub(in crate::consume) role: Role,
    /// Set when the consumer closes: closing revokes every partition, and a synchronous
    /// commit inside that revocation can wait forever, so that one is asynchronous.
    pub(in crate::consume) closing: AtomicBool,
    /// Set when the member drains: its records in flight finish anyway, and a revocation
    /// then completes at once.
    pub(in crate::consume) draining: AtomicBool,
    pub(in crate::consume) book: Arc<Mutex<Book>>,
    pub(in crate::consume) metrics: Arc<Metrics>,
    /// Readiness follows the trigger members' assignments (one member per event loop).
    pub(in crate::consume) health: Option<Arc<Health>>,
    /// Whether this member is in its group, as last told to `health`.
    pub(in crate::consume) joined: AtomicBool,
    /// The member uses the consumer group protocol (KIP-848), not the classic one.
    pub(in crate::consume) consumer_protocol: bool,
}

impl MemberContext {
    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "OFFSET"
            && let Some((topic, partition, at)) = offset_reset(message)
        {
            self.book().resets.insert((topic.into(), partition), at);
        }
        crate::kafka::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }

    /// Lag of the assigned partitions (`webhook_consumer_lag`), and group membership as the
    /// group handler's state says ([`membership`]).
    fn stats(&self, statistics: Statistics) {
        if let Some(joined) = statistics
            .cgrp
            .as_ref()
            .and_then(|group| membership(group, self.consumer_protocol))
            && !self.closing.load(Ordering::Relaxed)
        {
            self.report_membership(joined);
        }
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

impl MemberContext {
    /// Whether the revocation of `revoked` waits for records in flight on them (see the
    /// module doc): then they are paused and noted, and librdkafka is not told yet.
    fn defer_revocation<C: Consumer<Self>>(&self, consumer: &C, revoked: &TopicPartitionList) -> bool {
        // A lost assignment (the session expired) is already someone else's: nothing waits.
        if self.closing.load(Ordering::Relaxed)
            || self.draining.load(Ordering::Relaxed)
            || consumer.assignment_lost()
        {
            return false;
        }
        let keys: Vec<Key> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().into(), e.partition()))
            .collect();
        let in_flight: usize = {
            let mut book = self.book();
            let in_flight = keys.iter().map(|key| book.in_flight(key)).sum();
            if in_flight == 0 {
                return false;
            }
            book.revoking.extend(keys);
            book.revoking_since.get_or_insert_with(Instant::now);
            in_flight
        };
        if let Err(err) = consumer.pause(revoked) {
            warn!(role = self.role.name(), error = %err, "cannot pause partitions being revoked");
        }
        info!(
            role = self.role.name(),
            partitions = revoked.count(),
            in_flight,
            "partitions being revoked: finishing their records in flight first"
        );
        true
    }

    /// Commits what is settled of `revoked` and forgets them; later completions are dropped.
    pub(in crate::consume) fn give_up<C: Consumer<Self>>(&self, consumer: &C, revoked: &TopicPartitionList) {
        let mut commit = TopicPartitionList::new();
        {
            let mut book = self.book();
            for element in revoked.elements() {
                let topic: Arc<str> = element.topic().into();
                if let Some(offset) = book.tracker(&topic).revoke(element.partition()) {
                    let _ = commit.add_partition_offset(&topic, element.partition(), Offset::Offset(offset));
                }
                let key = (topic.clone(), element.partition());
                book.started.remove(&key);
                book.paused.remove(&key);
                self.metrics.forget_partition(&topic, element.partition());
            }
            // What the partitions held leaves the gauges with them (at close, all of it).
            if self.role == Role::Trigger {
                book.report_backpressure(&self.metrics);
            }
        }
        self.count_partitions(revoked, -1);
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

    /// Moves the process's count of owned partitions, per topic, by `sign` × `partitions`.
    fn count_partitions(&self, partitions: &TopicPartitionList, sign: i64) {
        for element in partitions.elements() {
            self.metrics.partitions_assigned(element.topic(), sign);
        }
    }

    /// Tells readiness whether this member is in its group now.
    pub(in crate::consume) fn report_membership(&self, joined: bool) {
        if let Some(health) = &self.health
            && self.joined.swap(joined, Ordering::Relaxed) != joined
        {
            health.group_membership_changed(joined);
        }
    }
}

impl ConsumerContext for MemberContext {
    /// rust-rdkafka's own sequence (pre-rebalance, assign or unassign, post-rebalance),
    /// except that a cooperative revocation with records in flight waits for them.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let partitions: &TopicPartitionList = partitions;
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if cooperative && self.defer_revocation(consumer, partitions) {
                    return;
                }
                Rebalance::Revoke(partitions)
            }
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let done = match (&rebalance, cooperative) {
            (Rebalance::Assign(_), true) => consumer.incremental_assign(partitions),
            (Rebalance::Assign(_), false) => consumer.assign(partitions),
            (Rebalance::Revoke(_), true) => consumer.incremental_unassign(partitions),
            _ => consumer.unassign(),
        };
        if let Err(err) = done {
            warn!(role = self.role.name(), error = %err, "cannot apply the group's assignment");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    /// Commits what is settled before the partitions go; later completions are dropped.
    /// A member whose session was lost, or that is closing, is out of its group until the
    /// next assignment; any other revocation is part of a rebalance it stays in.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            if self.closing.load(Ordering::Relaxed) || consumer.assignment_lost() {
                self.report_membership(false);
            }
            self.give_up(consumer, revoked);
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
                self.count_partitions(assigned, 1);
                // The group gave this member its assignment, even an empty one: it is in.
                self.report_membership(true);
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

/// Whether librdkafka's statistics of a group handler say its member is in the group
/// (`None`: they say nothing new). Out while it has no connection to the group coordinator;
/// in once settled: `steady`, or under the consumer group protocol `init`, where a member
/// the group gives no partitions stays (it gets no assignment callback either).
fn membership(group: &ConsumerGroup, consumer_protocol: bool) -> Option<bool> {
    if group.state != "up" {
        return Some(false);
    }
    match group.join_state.as_str() {
        "steady" => Some(true),
        "init" if consumer_protocol => Some(true),
        _ => None,
    }
}

/// The topic, partition and offset of librdkafka's line for an offset the broker no
/// longer has (`TOPIC [P]: offset reset (at offset N (leader epoch E), broker B) to …`).
fn offset_reset(message: &str) -> Option<(&str, i32, i64)> {
    // librdkafka names the thread first: `[thrd:main]: `.
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ")?.1,
        None => message,
    };
    let (head, rest) = message.split_once(" [")?;
    let (partition, rest) = rest.split_once("]: offset reset (at offset ")?;
    let at: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((head, partition.parse().ok()?, at.parse().ok()?))
}

pub(in crate::consume) fn set_fetch_state<C: Consumer<MemberContext>>(
    consumer: &C,
    role: Role,
    changes: &FetchChanges,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafkas_offset_reset_line_is_read() {
        let line = "[thrd:main]: campaign-triggers [3]: offset reset (at offset 42 (leader epoch 0), broker 1) to offset BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(offset_reset(line), Some(("campaign-triggers", 3, 42)));
        assert_eq!(
            offset_reset("t [0]: offset reset (at offset 7, broker 1) to END"),
            Some(("t", 0, 7))
        );
        assert_eq!(offset_reset("something else [1]: entirely"), None);
    }

    #[test]
    fn the_group_handlers_state_says_whether_the_member_is_in_its_group() {
        let group = |state: &str, join_state: &str| ConsumerGroup {
            state: state.into(),
            join_state: join_state.into(),
            ..Default::default()
        };
        for consumer_protocol in [false, true] {
            assert_eq!(membership(&group("up", "steady"), consumer_protocol), Some(true));
            assert_eq!(
                membership(&group("wait-coord", "steady"), consumer_protocol),
                Some(false)
            );
            assert_eq!(membership(&group("up", "wait-sync"), consumer_protocol), None);
        }
        // Before its first join under the classic protocol; with nothing assigned under KIP-848.
        assert_eq!(membership(&group("up", "init"), false), None);
        assert_eq!(membership(&group("up", "init"), true), Some(true));
    }
}
