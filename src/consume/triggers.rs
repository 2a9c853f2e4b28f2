//! The trigger-topic consumer. One task owns the group member: it receives records, keeps
//! the ones not started yet as raw bytes by campaign, starts them while processing slots are
//! free (campaigns taking turns),
//! pauses a partition when its window of unsettled records is full, and stops receiving
//! while the memory budget is full, pausing every partition if that lasts (the rules are
//! in [`super::flow`]). The member (offsets, callbacks, record tasks, drain) is shared
//! with the retry consumer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::OptionFuture;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::Budget;
use super::backlog::{Backlog, campaign_of};
use super::flow::{FlowLimits, HOLD_LIMIT, memory_full_since, memory_pauses, should_pause};
use super::member::{Book, Done, FetchChanges, Key, Kind, Member, Record, Role};
use super::offsets::Ticket;
use crate::config::{Config, GroupProtocol, group_protocol};
use crate::health::Health;
use crate::park::Origin;
use crate::park::trace_of;
use crate::pipeline::Pipeline;
use crate::trace::TraceParent;

/// Most records taken from librdkafka's queue in one turn of the loop.
const RECEIVE_BATCH: usize = 512;

/// Records consumed and not settled: a bounded set being processed, and the rest waiting
/// as raw bytes (cheap, so partition windows can be large without pausing often: every
/// pause makes librdkafka drop its prefetched records and refetch on resume).
#[derive(Default)]
struct Work {
    active: JoinSet<Done>,
    backlog: Backlog<(Ticket, Bytes, Option<TraceParent>)>,
}

pub struct TriggerConsumer {
    member: Member,
    /// The topic name, shared by every record's origin rather than copied.
    topic: Arc<str>,
    flow: FlowLimits,
}

/// The consumer's librdkafka settings: the service's own, then the operator's properties.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("client.id", "webhook-dispatcher")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // The memory budget stops receiving before it pauses partitions (see `flow`), so
        // this queue is part of the process's memory: small, and refilled without the
        // default 1 s back-off once the loop takes from it again.
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.queue.backoff.ms", "20")
        .set("statistics.interval.ms", "5000");
    // Under the classic protocol a rebalance with the cooperative-sticky assignor moves only
    // the partitions that change owner; under KIP-848's the broker assigns (and librdkafka
    // refuses a client-side assignor).
    if matches!(
        group_protocol(&config.kafka.properties),
        Ok(GroupProtocol::Classic)
    ) {
        client.set("partition.assignment.strategy", "cooperative-sticky");
    }
    for property in config.kafka.properties.values() {
        client.set(&property.key, &property.value);
    }
    client
}

impl TriggerConsumer {
    /// A member of the trigger topic's group for one event loop, within `budget` (the
    /// loop's share); `leave_together`: shared by the trigger consumers of every loop.
    pub fn new(
        config: &Config,
        budget: Budget,
        pipeline: Arc<Pipeline>,
        health: Arc<Health>,
        leave_together: Arc<tokio::sync::Barrier>,
    ) -> Result<Self, KafkaError> {
        let topic = config.trigger_topic.as_str();
        let mut member = Member::join(
            Role::Trigger,
            &consumer_config(config),
            &[topic],
            config,
            budget,
            pipeline,
            Some(health),
        )?;
        member.leave_together(leave_together);
        Ok(TriggerConsumer {
            member,
            topic: topic.into(),
            flow: FlowLimits {
                window: config.partition_window,
                max_pending_bytes: budget.max_pending_bytes,
            },
        })
    }

    /// Consumes until `shutdown`, then drains in-flight records (up to the drain timeout),
    /// commits synchronously and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut work = Work::default();
        let mut waiting = self.member.backpressure.watch_waiting();
        info!(topic = %self.topic, "consuming trigger events");
        loop {
            let hold_ends = self.hold_ends();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // A budget still full when the hold ends pauses every partition.
                // (No timer is made while there is no hold.)
                Some(()) = OptionFuture::from(hold_ends.map(|at| tokio::time::sleep_until(at.into()))) => {
                    self.apply_flow(Vec::new());
                }
                // A revocation's records in flight did not all settle in time.
                Some(()) = OptionFuture::from(self.member.revocation_deadline().map(|at| tokio::time::sleep_until(at.into()))) => {
                    self.member.finish_revocation(false);
                }
                // Records now waiting for their destination free their processing slots.
                Ok(()) = waiting.changed() => {}
                Some(joined) = work.active.join_next_with_id(), if !work.active.is_empty() => {
                    let mut batch = vec![joined];
                    while let Some(more) = work.active.try_join_next_with_id() {
                        batch.push(more);
                    }
                    let moved = self.member.settle(batch);
                    self.apply_flow(moved);
                }
                received = self.member.consumer().recv(), if hold_ends.is_none() => {
                    // Take what librdkafka already holds in one go (bounded), then check flow.
                    let mut partitions = Vec::new();
                    let mut next = Some(received);
                    while let Some(received) = next.take() {
                        match received {
                            Ok(message) => partitions.push(self.received(&message, &mut work)),
                            Err(err) => crate::kafka::consumer_error(&err, "kafka consumer error"),
                        }
                        if partitions.len() < RECEIVE_BATCH {
                            next = self.member.consumer().recv().now_or_never();
                        }
                    }
                    self.apply_flow(partitions);
                }
            }
            self.start_ready(&mut work, &shutdown);
        }
        let not_started = work.backlog.len();
        self.member.drain(work.active, not_started).await;
    }

    /// Tracks a record and queues its bytes; it starts when a processing slot frees up.
    /// Returns the record's partition.
    fn received(&self, message: &impl Message, work: &mut Work) -> Key {
        let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let partition = message.partition();
        let ticket = self
            .member
            .book()
            .track(&self.topic, partition, message.offset(), payload.len());
        self.member.metrics().event_consumed(&self.topic);
        let campaign = campaign_of(&payload);
        work.backlog.push(campaign, (ticket, payload, trace_of(message)));
        (self.topic.clone(), partition)
    }

    /// Starts queued records while processing slots are free, campaigns taking turns, each
    /// campaign's oldest first ([`Backlog`]). Records of a partition revoked meanwhile are
    /// dropped: their new owner consumes them.
    fn start_ready(&self, work: &mut Work, shutdown: &CancellationToken) {
        let slots = self.member.slots();
        while work.active.len() < slots {
            let Some((ticket, payload, trace)) = work.backlog.pop() else {
                return;
            };
            if !self.member.book().keep(&self.topic, ticket, payload.len()) {
                continue;
            }
            let origin = Origin {
                topic: self.topic.clone(),
                partition: ticket.partition,
                offset: ticket.offset,
            };
            let record = Record {
                topic: self.topic.clone(),
                ticket,
                payload,
                origin,
                trace,
                kind: Kind::Trigger,
            };
            self.member.spawn(&mut work.active, record, shutdown);
        }
    }

    /// Until when the consumer holds off receiving: while the memory budget is full and
    /// has not paused the partitions yet.
    fn hold_ends(&self) -> Option<Instant> {
        let book = self.member.book();
        book.memory_full_since
            .filter(|_| !book.memory_pauses)
            .map(|since| since + HOLD_LIMIT)
    }

    /// Pauses or resumes partitions after a change. `changed` are the partitions whose
    /// window moved; every partition is re-evaluated when the memory budget starts or
    /// stops pausing them.
    fn apply_flow(&self, mut changed: Vec<Key>) {
        if self.member.draining() {
            return;
        }
        let mut changes = FetchChanges::default();
        {
            let mut book = self.member.book();
            let now = Instant::now();
            let pending = self.member.pending_bytes(&book);
            let since = memory_full_since(pending, self.flow, book.memory_full_since, now);
            if since.is_some() != book.memory_full_since.is_some() {
                debug!(
                    pending_bytes = pending,
                    full = since.is_some(),
                    "memory budget: receiving {}",
                    if since.is_some() { "held off" } else { "again" }
                );
            }
            book.memory_full_since = since;
            let pauses = memory_pauses(since, now);
            if pauses != book.memory_pauses {
                book.memory_pauses = pauses;
                changed = book.assigned();
            } else {
                changed.dedup();
            }
            for key in changed {
                let paused = book.is_paused(&key);
                let want = should_pause(book.unsettled(&key), pauses, self.flow, paused);
                book.want_paused(key, want, &mut changes);
            }
            self.report(&mut book, &changes);
        }
        self.member.set_fetch_state(&changes);
    }

    fn report(&self, book: &mut Book, changes: &FetchChanges) {
        for (_, partition) in &changes.pause {
            debug!(
                partition,
                unsettled = book.unsettled(&(self.topic.clone(), *partition)),
                pending_bytes = book.pending_bytes,
                "pausing partition (backpressure)"
            );
        }
        if !changes.resume.is_empty() {
            debug!(partitions = changes.resume.len(), "resuming partitions");
        }
        book.report_backpressure(self.member.metrics());
    }
}
