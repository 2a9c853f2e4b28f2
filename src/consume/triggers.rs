//! The trigger-topic consumer. One task owns the consumer: it receives records, spawns one
//! pipeline task per record, and as tasks finish settles their offsets in the tracker and
//! stores the committable offset (`enable.auto.offset.store=false`; librdkafka's
//! auto-commit then commits only stored, settled offsets). Rebalance callbacks run inside
//! `recv()` on the same task, so the tracker's lock is never contended for long.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::flow::{FlowLimits, memory_full, should_pause};
use super::member::{CLOSE_TIMEOUT, Closing, Member};
use super::offsets::{OffsetTracker, Ticket};
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::park::Origin;
use crate::pipeline::{Pipeline, Settlement, panic_message};

/// Most records taken from librdkafka's queue in one turn of the loop.
const RECEIVE_BATCH: usize = 512;

/// Partition bookkeeping shared by the consume loop and the rebalance callbacks.
#[derive(Default)]
struct Book {
    tracker: OffsetTracker,
    paused: HashSet<i32>,
    pending_bytes: usize,
    memory_full: bool,
}

struct TriggerContext {
    /// Set after the final commit: closing the consumer revokes every partition, and a
    /// synchronous commit inside that revocation can wait forever (nothing serves its
    /// reply while librdkafka closes), so that one is asynchronous.
    closed: AtomicBool,
    topic: String,
    book: Arc<Mutex<Book>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ClientContext for TriggerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let book = self.book.lock().expect("lock poisoned");
        for (&partition, stats) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; lag -1 means unknown.
            if partition >= 0 && stats.consumer_lag >= 0 && book.tracker.partitions().any(|p| p == partition)
            {
                self.metrics
                    .consumer_lag(&self.topic, partition, stats.consumer_lag);
            }
        }
    }
}

impl Closing for TriggerContext {
    fn set_closing(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl ConsumerContext for TriggerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Commit what is settled before the partitions go; later completions are dropped.
        let mut commit = TopicPartitionList::new();
        {
            let mut book = self.book.lock().expect("lock poisoned");
            for element in revoked.elements_for_topic(&self.topic) {
                let partition = element.partition();
                if let Some(offset) = book.tracker.revoke(partition) {
                    let _ = commit.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
                }
                book.paused.remove(&partition);
                self.metrics.forget_partition(&self.topic, partition);
            }
        }
        info!(partitions = ?partition_numbers(revoked), "partitions revoked");
        // While closing, a synchronous commit here can wait forever; librdkafka's close
        // waits for an asynchronous one.
        let mode = if self.closed.load(Ordering::Relaxed) {
            CommitMode::Async
        } else {
            CommitMode::Sync
        };
        if commit.count() > 0
            && let Err(err) = consumer.commit(&commit, mode)
        {
            warn!(error = %err, "commit on revocation failed; those records may be delivered again");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let mut book = self.book.lock().expect("lock poisoned");
                for element in assigned.elements_for_topic(&self.topic) {
                    book.tracker.assign(element.partition());
                }
                // librdkafka keeps an application pause across revoke and assign, so a
                // partition that comes back may still be paused: set every assigned
                // partition's fetch state from the flow rules (nothing of it is unsettled
                // yet, so only the memory budget can hold it).
                let (pause, resume): (Vec<i32>, Vec<i32>) = assigned
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .partition(|_| book.memory_full);
                for &p in &pause {
                    book.paused.insert(p);
                }
                for p in &resume {
                    book.paused.remove(p);
                }
                self.metrics
                    .set_backpressure(book.paused.len(), book.tracker.total_unsettled());
                drop(book);
                for (partitions, pausing) in [(pause, true), (resume, false)] {
                    if partitions.is_empty() {
                        continue;
                    }
                    let mut list = TopicPartitionList::new();
                    for p in partitions {
                        list.add_partition(&self.topic, p);
                    }
                    let result = if pausing {
                        consumer.pause(&list)
                    } else {
                        consumer.resume(&list)
                    };
                    if let Err(err) = result {
                        warn!(error = %err, pausing, "cannot set the fetch state of assigned partitions");
                    }
                }
                info!(partitions = ?partition_numbers(assigned), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => warn!(error = %err, "rebalance error"),
        }
        let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
        self.health.set_kafka_assigned(assigned);
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => warn!(error = %err, "offset commit failed; it is retried with the next commit"),
        }
    }
}

fn partition_numbers(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// Records consumed and not settled: a bounded set being processed, and the rest waiting
/// as raw bytes (cheap, so partition windows can be large without pausing often: every
/// pause makes librdkafka drop its prefetched records and refetch on resume).
#[derive(Default)]
struct Work {
    active: JoinSet<Done>,
    backlog: std::collections::VecDeque<(Ticket, bytes::Bytes)>,
}

/// What a finished record task reports back.
struct Done {
    ticket: Ticket,
    bytes: usize,
    started: Instant,
    settlement: Settlement,
}

pub struct TriggerConsumer {
    consumer: Member<TriggerContext>,
    topic: String,
    book: Arc<Mutex<Book>>,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    flow: FlowLimits,
    drain_timeout: std::time::Duration,
    /// Set once the drain starts: nothing is resumed after that.
    draining: AtomicBool,
    /// Records processed at once (the rest wait in the backlog).
    max_active: usize,
    /// The topic name as dead letters carry it (shared, not copied per record).
    origin_topic: Arc<str>,
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
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("queued.max.messages.kbytes", "16384")
        .set("statistics.interval.ms", "5000");
    for property in config.kafka.properties.values() {
        client.set(&property.key, &property.value);
    }
    client
}

impl TriggerConsumer {
    pub fn new(
        config: &Config,
        pipeline: Arc<Pipeline>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, KafkaError> {
        let book = Arc::new(Mutex::new(Book::default()));
        let context = TriggerContext {
            closed: AtomicBool::new(false),
            topic: config.trigger_topic.clone(),
            book: book.clone(),
            metrics: metrics.clone(),
            health,
        };
        let consumer: StreamConsumer<TriggerContext> =
            consumer_config(config).create_with_context(context)?;
        consumer.subscribe(&[&config.trigger_topic])?;
        Ok(TriggerConsumer {
            consumer: Member::new(consumer),
            topic: config.trigger_topic.clone(),
            book,
            pipeline,
            metrics,
            flow: FlowLimits {
                window: config.partition_window,
                max_pending_bytes: config.max_pending_bytes,
            },
            drain_timeout: config.drain_timeout,
            draining: AtomicBool::new(false),
            // Enough records to keep every request slot busy and the next ones rendered.
            max_active: config.max_inflight * 2,
            origin_topic: config.trigger_topic.as_str().into(),
        })
    }

    /// Consumes until `shutdown`, then drains in-flight records (up to the drain timeout),
    /// commits synchronously and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut work = Work::default();
        let mut waiting = self.pipeline.sender.watch_waiting();
        info!(topic = %self.topic, "consuming trigger events");
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Records now waiting for their destination free their processing slots.
                Ok(()) = waiting.changed() => {}
                Some(joined) = work.active.join_next(), if !work.active.is_empty() => {
                    let mut batch = vec![joined];
                    while let Some(more) = work.active.try_join_next() {
                        batch.push(more);
                    }
                    self.finished(batch);
                }
                received = self.consumer.recv() => {
                    // Take what librdkafka already holds in one go (bounded), then check flow.
                    let mut partitions = Vec::new();
                    let mut next = Some(received);
                    while let Some(received) = next.take() {
                        match received {
                            Ok(message) => partitions.push(self.received(&message, &mut work)),
                            Err(err) => warn!(error = %err, "kafka consumer error"),
                        }
                        if partitions.len() < RECEIVE_BATCH {
                            next = self.consumer.recv().now_or_never();
                        }
                    }
                    self.apply_flow(partitions);
                }
            }
            self.start_ready(&mut work, &shutdown);
        }
        self.drain(work).await;
    }

    /// Tracks a record and queues its bytes; it starts when a processing slot frees up.
    /// Returns the record's partition.
    fn received(&self, message: &impl Message, work: &mut Work) -> i32 {
        let payload = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let partition = message.partition();
        let ticket = {
            let mut book = self.book.lock().expect("lock poisoned");
            book.pending_bytes += payload.len();
            book.tracker.track(partition, message.offset())
        };
        self.metrics.event_consumed(&self.topic);
        work.backlog.push_back((ticket, payload));
        partition
    }

    /// Starts queued records while processing slots are free, oldest first. Records of a
    /// partition revoked meanwhile are dropped: their new owner consumes them.
    fn start_ready(&self, work: &mut Work, shutdown: &CancellationToken) {
        // Records waiting for a saturated or rate-limited destination do not hold a slot (up
        // to as many again), so such a destination only slows its own traffic; each record
        // in progress also holds its rendered requests, hence the bound.
        let waiting = self.pipeline.sender.waiting().min(self.max_active);
        while work.active.len() < self.max_active + waiting {
            let Some((ticket, payload)) = work.backlog.pop_front() else {
                return;
            };
            {
                let mut book = self.book.lock().expect("lock poisoned");
                if !book.tracker.is_current(ticket) {
                    book.pending_bytes = book.pending_bytes.saturating_sub(payload.len());
                    continue;
                }
            }
            let pipeline = self.pipeline.clone();
            let shutdown = shutdown.clone();
            let origin = Origin {
                topic: self.origin_topic.clone(),
                partition: ticket.partition,
                offset: ticket.offset,
            };
            work.active.spawn(async move {
                let started = Instant::now();
                let process = pipeline.process(&payload, origin.clone(), &shutdown);
                // A panic is a bug: the record is dead-lettered (internal_error), never left
                // unsettled, which would stop the partition's commits for good.
                let settlement = match AssertUnwindSafe(process).catch_unwind().await {
                    Ok(settlement) => settlement,
                    Err(panic) => {
                        let panic = panic_message(&*panic);
                        pipeline
                            .dead_letter_panic(&payload, origin, &panic, &shutdown)
                            .await
                    }
                };
                Done {
                    ticket,
                    bytes: payload.len(),
                    started,
                    settlement,
                }
            });
        }
    }

    /// Settles a batch of finished records: one lock, one offset store, one flow check.
    fn finished(&self, batch: Vec<Result<Done, tokio::task::JoinError>>) {
        let mut stored: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut book = self.book.lock().expect("lock poisoned");
            for joined in batch {
                let done = match joined {
                    Ok(done) => done,
                    Err(err) => {
                        error!(error = %err, "record task failed");
                        continue;
                    }
                };
                book.pending_bytes = book.pending_bytes.saturating_sub(done.bytes);
                match done.settlement {
                    Settlement::Settled => {
                        self.metrics
                            .event_settled(&self.topic, done.started.elapsed().as_secs_f64());
                        if let Some(offset) = book.tracker.settle(done.ticket) {
                            stored.insert(done.ticket.partition, offset);
                        } else {
                            stored.entry(done.ticket.partition).or_insert(-1);
                        }
                    }
                    Settlement::Abandoned => {}
                }
            }
        }
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in stored.iter().filter(|(_, o)| **o >= 0) {
            let _ = list.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
        }
        if list.count() > 0
            && let Err(err) = self.consumer.store_offsets(&list)
        {
            // A partition was revoked in between: its new owner re-consumes from the commit.
            debug!(error = %err, "offsets not stored");
        }
        self.apply_flow(stored.keys().copied());
    }

    /// Pauses or resumes partitions after a change. `changed` are the partitions whose
    /// window moved; every partition is re-evaluated when the memory budget flips.
    fn apply_flow(&self, changed: impl IntoIterator<Item = i32>) {
        if self.draining.load(Ordering::Relaxed) {
            return;
        }
        let (to_pause, to_resume) = {
            let mut guard = self.book.lock().expect("lock poisoned");
            let book = &mut *guard;
            // The records' bytes, and what the ones in progress rendered.
            let pending = book.pending_bytes + self.pipeline.rendered.get();
            let full = memory_full(pending, self.flow, book.memory_full);
            let flipped = full != book.memory_full;
            book.memory_full = full;
            let candidates: Vec<i32> = if flipped {
                book.tracker.partitions().collect()
            } else {
                let mut changed: Vec<i32> = changed.into_iter().collect();
                changed.dedup();
                changed
            };
            let (mut pause, mut resume) = (Vec::new(), Vec::new());
            for partition in candidates {
                let paused = book.paused.contains(&partition);
                let want = should_pause(book.tracker.unsettled(partition), full, self.flow, paused);
                if want && !paused {
                    book.paused.insert(partition);
                    pause.push(partition);
                } else if !want && paused {
                    book.paused.remove(&partition);
                    resume.push(partition);
                }
            }
            self.metrics
                .set_backpressure(book.paused.len(), book.tracker.total_unsettled());
            (pause, resume)
        };
        let list = |partitions: &[i32]| {
            let mut list = TopicPartitionList::new();
            for &p in partitions {
                list.add_partition(&self.topic, p);
            }
            list
        };
        if !to_pause.is_empty() {
            {
                let book = self.book.lock().expect("lock poisoned");
                for p in &to_pause {
                    debug!(
                        partition = p,
                        unsettled = book.tracker.unsettled(*p),
                        pending_bytes = book.pending_bytes,
                        "pausing partition (backpressure)"
                    );
                }
            }
            if let Err(err) = self.consumer.pause(&list(&to_pause)) {
                warn!(error = %err, "cannot pause partitions");
            }
        }
        if !to_resume.is_empty() {
            debug!(partitions = ?to_resume, "resuming partitions");
            if let Err(err) = self.consumer.resume(&list(&to_resume)) {
                warn!(error = %err, "cannot resume partitions");
            }
        }
    }

    async fn drain(self, work: Work) {
        let Work {
            active: mut tasks,
            backlog,
        } = work;
        info!(in_flight = tasks.len(), not_started = backlog.len(), timeout = ?self.drain_timeout,
              "shutting down: finishing events in flight; the ones not started are consumed again after restart");
        self.draining.store(true, Ordering::Relaxed);
        // Stop fetching. Records still in the backlog, or fetched but not received, stay
        // uncommitted: they are consumed again after restart and were never sent.

        if let Ok(assignment) = self.consumer.assignment()
            && let Err(err) = self.consumer.pause(&assignment)
        {
            warn!(error = %err, "cannot pause partitions for the drain");
        }
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    warn!(abandoned = tasks.len(), "drain timeout reached; unfinished events will be consumed again");
                    // Close first: aborting thousands of tasks is not atomic, and permits
                    // freed by aborted requests must not start new ones meanwhile.
                    self.pipeline.sender.close();
                    tasks.abort_all();
                    break;
                }
                joined = tasks.join_next() => match joined {
                    Some(joined) => self.finished(vec![joined]),
                    None => break,
                },
                // Keep serving the consumer's callbacks (rebalances) while draining.
                _ = self.consumer.recv() => {}
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                info!("final offsets committed")
            }
            Err(err) => error!(error = %err, "final commit failed; settled events may be delivered again"),
        }
        // Leave the group now, so the partitions move to the others at once.
        if !self.consumer.close(CLOSE_TIMEOUT).await {
            warn!(timeout = ?CLOSE_TIMEOUT, "the trigger consumer is still closing; stopping anyway (its partitions move after the session timeout)");
        }
    }
}
