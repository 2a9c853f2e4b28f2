//! What both consumers are: a consumer group member that hands records to the pipeline and
//! commits only what is settled, so delivery is at least once. This module owns the
//! mechanics they share:
//!
//! - the partition book and librdkafka's callbacks that keep it ([`super::book`]);
//! - one task per record, whose panic dead-letters the record (`internal_error`) rather than
//!   leaving it unsettled;
//! - settling finished records and storing the offsets that became committable;
//! - the drain on shutdown, the final commit, and the close, which always runs on a thread of
//!   its own: with the broker unreachable it takes librdkafka minutes, and done inside an
//!   async task (or the drop of one) it would hold the runtime all that time.
//!
//! The trigger consumer adds its backlog and window rules; the retry consumer, holding
//! records until they are due.
//!
//! The drain, the final commit and the close are in [`drain`]; the record tasks and
//! settling, here.

mod drain;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::Budget;
pub use super::book::{Book, Done, FetchChanges, Key, Role};
use super::book::{MemberContext, lock, set_fetch_state};
use super::offsets::Ticket;
use crate::config::{Config, GroupProtocol, group_protocol};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::Origin;
use crate::pipeline::{Backpressure, Pipeline, Settlement, panic_message};
use crate::trace::TraceParent;

/// A record on its way to the pipeline.
pub struct Record {
    pub topic: Arc<str>,
    pub ticket: Ticket,
    pub payload: Bytes,
    /// The trigger record it stands for (a retry record names its trigger record).
    pub origin: Origin,
    /// The W3C trace context on its headers, which its delivery continues.
    pub trace: Option<TraceParent>,
    pub kind: Kind,
}

/// What the pipeline does with a record.
pub enum Kind {
    /// A trigger event: parse, resolve, render, send.
    Trigger,
    /// A failed delivery from a retry tier, attempted again.
    Retry { first_failed_at_ms: Option<u64> },
}

/// Hands a record to the pipeline by its kind.
async fn process(
    pipeline: &Pipeline,
    kind: Kind,
    topic: &str,
    payload: &[u8],
    origin: Origin,
    trace: Option<&TraceParent>,
    shutdown: &CancellationToken,
) -> Settlement {
    match kind {
        Kind::Trigger => pipeline.process(payload, origin, trace, shutdown).await,
        Kind::Retry { first_failed_at_ms } => {
            pipeline
                .process_retry(payload, first_failed_at_ms, origin, topic, trace, shutdown)
                .await
        }
    }
}

/// A consumer group member: the consumer, its book, and the pipeline it feeds.
pub struct Member {
    /// Taken only when the member closes (or is dropped).
    consumer: Option<StreamConsumer<MemberContext>>,
    role: Role,
    pub book: Arc<Mutex<Book>>,
    pipeline: Arc<Pipeline>,
    /// The event loop's: how many of its requests wait, and its rendered bytes.
    pub backpressure: Backpressure,
    metrics: Arc<Metrics>,
    /// Records processed at once: enough to keep every request slot busy and the next
    /// ones rendered.
    max_active: usize,
    drain_timeout: Duration,
    /// Set once the drain starts: nothing is resumed after that.
    draining: bool,
    /// The process's other members of the same group (event loops): all commit before any
    /// leaves, since a member leaving starts a rebalance that refuses the others' commits.
    leave_together: Option<Arc<tokio::sync::Barrier>>,
}

impl Member {
    /// Joins the group with `client`'s settings and subscribes to `topics`.
    pub fn join(
        role: Role,
        client: &ClientConfig,
        topics: &[&str],
        config: &Config,
        budget: Budget,
        pipeline: Arc<Pipeline>,
        health: Option<Arc<Health>>,
    ) -> Result<Member, KafkaError> {
        let book = Arc::new(Mutex::new(Book::default()));
        let metrics = pipeline.metrics().clone();
        let consumer: StreamConsumer<MemberContext> = client.create_with_context(MemberContext {
            role,
            closing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            consumer_protocol: matches!(
                group_protocol(&config.kafka.properties),
                Ok(GroupProtocol::Consumer)
            ),
            book: book.clone(),
            metrics: metrics.clone(),
            health,
        })?;
        consumer.subscribe(topics)?;
        if let Some(health) = &consumer.context().health {
            health.member_created();
        }
        Ok(Member {
            consumer: Some(consumer),
            role,
            book,
            backpressure: pipeline.backpressure(),
            pipeline,
            metrics,
            max_active: budget.max_inflight * 2,
            drain_timeout: config.drain_timeout,
            draining: false,
            leave_together: None,
        })
    }

    /// Leaves the group only once every member waiting on `barrier` has committed.
    pub fn leave_together(&mut self, barrier: Arc<tokio::sync::Barrier>) {
        self.leave_together = Some(barrier);
    }

    pub fn consumer(&self) -> &StreamConsumer<MemberContext> {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken when the member goes")
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// How many record tasks may run now. Records waiting for a saturated or rate-limited
    /// destination do not hold a slot (up to as many again), so such a destination only
    /// slows its own traffic; each record in progress also holds its rendered requests,
    /// hence the bound.
    pub fn slots(&self) -> usize {
        self.max_active + self.backpressure.waiting().min(self.max_active)
    }

    /// The memory budget's count: received records' bytes and what is rendered from them.
    pub fn pending_bytes(&self, book: &Book) -> usize {
        book.pending_bytes + self.backpressure.rendered_bytes()
    }

    /// Starts one record. A panic is a bug: the record is dead-lettered (`internal_error`),
    /// never left unsettled, which would stop its partition's commits for good. The task
    /// is noted under its id, so that even a task that ends without its [`Done`] (aborted,
    /// or a panic while dead-lettering) settles ([`Member::settle`]).
    pub fn spawn(&self, tasks: &mut JoinSet<Done>, record: Record, shutdown: &CancellationToken) {
        let running = Done {
            topic: record.topic.clone(),
            ticket: record.ticket,
            bytes: record.payload.len(),
            started: Instant::now(),
            settlement: Settlement::Abandoned,
        };
        let pipeline = self.pipeline.clone();
        let shutdown = shutdown.clone();
        // Boxed: the task's future is large, and tokio moves it whole several times over
        // its life (spawn, completion, reading the output); a box moves as a pointer.
        let task = tasks.spawn(Box::pin(async move {
            let started = Instant::now();
            let Record {
                topic,
                ticket,
                payload,
                origin,
                trace,
                kind,
            } = record;
            let process = process(
                &pipeline,
                kind,
                &topic,
                &payload,
                origin.clone(),
                trace.as_ref(),
                &shutdown,
            );
            let settlement = match AssertUnwindSafe(process).catch_unwind().await {
                Ok(settlement) => settlement,
                Err(panic) => {
                    let panic = panic_message(&*panic);
                    let dead_letter =
                        pipeline.dead_letter_panic(&payload, origin, trace.as_ref(), &panic, &shutdown);
                    Box::pin(dead_letter).await
                }
            };
            Done {
                topic,
                ticket,
                bytes: payload.len(),
                started,
                settlement,
            }
        }));
        let mut book = self.book();
        book.started((running.topic.clone(), running.ticket.partition));
        book.running.insert(task.id(), running);
    }

    /// Settles finished records: one lock, one offset store. Returns the partitions whose
    /// window moved.
    pub fn settle(&self, batch: Vec<Result<(Id, Done), JoinError>>) -> Vec<Key> {
        let mut stored: BTreeMap<Key, Option<i64>> = BTreeMap::new();
        {
            let mut book = self.book();
            for joined in batch {
                let Some(done) = task_outcome(self.role, &mut book, joined) else {
                    continue;
                };
                book.pending_bytes = book.pending_bytes.saturating_sub(done.bytes);
                book.finished(&(done.topic.clone(), done.ticket.partition));
                if done.settlement == Settlement::Abandoned {
                    continue; // consumed again after restart
                }
                if self.role == Role::Trigger {
                    self.metrics
                        .event_settled(&done.topic, done.started.elapsed().as_secs_f64());
                }
                let key = (done.topic.clone(), done.ticket.partition);
                let offset = book.tracker(&done.topic).settle(done.ticket);
                let entry = stored.entry(key).or_default();
                *entry = offset.or(*entry);
            }
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &stored {
            if let Some(offset) = offset {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if list.count() > 0
            && let Err(err) = self.consumer().store_offsets(&list)
        {
            // A partition was revoked in between: its new owner re-consumes from the commit.
            debug!(role = self.role.name(), error = %err, "offsets not stored");
        }
        self.finish_revocation(false);
        stored.into_keys().collect()
    }

    /// Gives up the partitions of a revocation that waited for its records in flight, once
    /// they settled or the wait is over ([`Book::due_revocation`]): commits what is settled
    /// and tells librdkafka, which lets the group's rebalance go on.
    pub fn finish_revocation(&self, force: bool) {
        let Some(keys) = self.book().due_revocation(Instant::now(), force) else {
            return;
        };
        let mut revoked = TopicPartitionList::new();
        for (topic, partition) in &keys {
            revoked.add_partition(topic, *partition);
        }
        let consumer = self.consumer();
        consumer.context().give_up(consumer, &revoked);
        if let Err(err) = consumer.incremental_unassign(&revoked) {
            warn!(role = self.role.name(), error = %err, "cannot give up the revoked partitions");
        }
    }

    /// When a revocation waiting for records in flight is given up at the latest.
    pub fn revocation_deadline(&self) -> Option<Instant> {
        self.book().revocation_deadline()
    }

    /// Applies fetch state changes decided by the consumer's flow rules.
    pub fn set_fetch_state(&self, changes: &FetchChanges) {
        if !self.draining {
            set_fetch_state(self.consumer(), self.role, changes);
        }
    }
}

/// What a finished record task reports, or for a task that ended without a report, what
/// it was running: an aborted one is abandoned (consumed again), and one that panicked
/// while dead-lettering its record (a bug in the last resort) is settled, said in an error
/// line with its coordinates, so its partition's commits go on.
fn task_outcome(role: Role, book: &mut Book, joined: Result<(Id, Done), JoinError>) -> Option<Done> {
    match joined {
        Ok((id, done)) => {
            book.running.remove(&id);
            Some(done)
        }
        Err(err) => {
            let mut done = book.running.remove(&err.id())?;
            if err.is_panic() {
                error!(role = role.name(), error = %err, topic = %done.topic,
                       partition = done.ticket.partition, offset = done.ticket.offset,
                       "a record's task panicked while dead-lettering it; the record is given up (consume it again from this offset by hand)");
                done.settlement = Settlement::Settled;
            }
            Some(done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_without_its_report_still_settles() {
        let topic: Arc<str> = "t".into();
        let mut book = Book::default();
        let tickets: Vec<Ticket> = (0..3).map(|offset| book.track(&topic, 0, offset, 10)).collect();
        let mut tasks = JoinSet::new();
        let running = |ticket: Ticket| Done {
            topic: topic.clone(),
            ticket,
            bytes: 10,
            started: Instant::now(),
            settlement: Settlement::Abandoned,
        };
        // One panics outside any catch (a bug while dead-lettering), one is aborted (the end
        // of a drain), one reports as usual.
        let panics = tasks.spawn(async { panic!("a bug in the last resort") });
        let aborted = tasks.spawn(std::future::pending());
        let reports = tasks.spawn({
            let mut done = running(tickets[2]);
            done.settlement = Settlement::Settled;
            async move { done }
        });
        for (task, ticket) in [
            (&panics, tickets[0]),
            (&aborted, tickets[1]),
            (&reports, tickets[2]),
        ] {
            book.running.insert(task.id(), running(ticket));
        }
        aborted.abort();
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let done = task_outcome(Role::Trigger, &mut book, joined).expect("every task is known");
            outcomes.push((done.ticket.offset, done.settlement));
        }
        outcomes.sort_by_key(|(offset, _)| *offset);
        assert_eq!(
            outcomes,
            vec![
                (0, Settlement::Settled),
                (1, Settlement::Abandoned),
                (2, Settlement::Settled)
            ]
        );
        assert!(book.running.is_empty());
    }
}
