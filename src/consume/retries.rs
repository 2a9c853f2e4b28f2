//! The retry-tier consumer (§5). It reads every tier topic in a consumer group of its own
//! (`<group>-retry`), so retries never block the trigger topic. A record is attempted only
//! once its `wd-due-at-ms` has passed: until then it is held, in order, with every record
//! behind it in its partition, and the partition is paused; one timer wakes the loop when the
//! earliest held record is due. Nothing polls in a loop and no task sleeps holding a permit.
//! Offsets are committed as in the trigger consumer: only below the oldest unsettled record.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::flow::{FlowLimits, memory_full};
use super::member::{CLOSE_TIMEOUT, Closing, Member};
use super::offsets::{OffsetTracker, Ticket};
use super::triggers::consumer_config;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::park::{Origin, ParkedRecord, now_ms};
use crate::pipeline::{Pipeline, Settlement, panic_message};

type Key = (Arc<str>, i32);

#[derive(Default)]
struct Book {
    trackers: HashMap<Arc<str>, OffsetTracker>,
    /// Partitions this consumer paused (librdkafka keeps a pause across revoke/assign).
    paused: HashSet<Key>,
}

impl Book {
    fn tracker(&mut self, topic: &Arc<str>) -> &mut OffsetTracker {
        self.trackers.entry(topic.clone()).or_default()
    }
}

struct RetryContext {
    /// Set after the final commit (see the trigger consumer's context).
    closed: AtomicBool,
    book: Arc<Mutex<Book>>,
    metrics: Arc<Metrics>,
}

impl ClientContext for RetryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }

    /// The tiers' lag, as the trigger consumer reports the trigger topic's (§7).
    fn stats(&self, statistics: Statistics) {
        let book = self.book.lock().expect("lock poisoned");
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

impl Closing for RetryContext {
    fn set_closing(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl ConsumerContext for RetryContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        {
            let mut book = self.book.lock().expect("lock poisoned");
            for element in revoked.elements() {
                let topic: Arc<str> = element.topic().into();
                if let Some(offset) = book.tracker(&topic).revoke(element.partition()) {
                    let _ = commit.add_partition_offset(&topic, element.partition(), Offset::Offset(offset));
                }
                self.metrics.forget_partition(&topic, element.partition());
            }
        }
        let mode = if self.closed.load(Ordering::Relaxed) {
            CommitMode::Async
        } else {
            CommitMode::Sync
        };
        if commit.count() > 0
            && let Err(err) = consumer.commit(&commit, mode)
        {
            warn!(error = %err, "retry commit on revocation failed; those retries may run again");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut book = self.book.lock().expect("lock poisoned");
            for element in assigned.elements() {
                let topic: Arc<str> = element.topic().into();
                book.tracker(&topic).assign(element.partition());
                book.paused.remove(&(topic, element.partition()));
            }
            drop(book);
            // A partition that comes back may still carry librdkafka's pause from before its
            // revocation: nothing of it is held now, so it fetches; the loop pauses it again
            // once a record it holds is not due.
            if let Err(err) = consumer.resume(assigned) {
                warn!(error = %err, "cannot resume assigned retry partitions");
            }
            info!(partitions = assigned.count(), "retry tier partitions assigned");
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => warn!(error = %err, "retry offset commit failed; it is retried with the next commit"),
        }
    }
}

/// A record received and not yet started: waiting for its due time or for the ones ahead.
struct Held {
    ticket: Ticket,
    payload: Bytes,
    due_at_ms: u64,
    first_failed_at_ms: Option<u64>,
    /// The trigger record the delivery came from (`wd-original-*`), kept through every tier.
    origin: Origin,
}

struct Done {
    topic: Arc<str>,
    ticket: Ticket,
    settlement: Settlement,
}

#[derive(Default)]
struct Work {
    active: JoinSet<Done>,
    held: HashMap<Key, VecDeque<Held>>,
    /// Bytes of the held records, counted against the memory budget.
    held_bytes: usize,
    memory_full: bool,
}

impl Work {
    /// When the earliest held record is due.
    fn next_due_ms(&self) -> Option<u64> {
        self.held
            .values()
            .filter_map(|q| q.front())
            .map(|h| h.due_at_ms)
            .min()
    }
}

/// Whether a tier partition stops fetching: it holds a record that is not due yet (what
/// follows it cannot be due earlier), or its window of unsettled records is full.
fn hold_partition(holds_records: bool, unsettled: usize, window: usize) -> bool {
    holds_records || unsettled >= window
}

pub struct RetryConsumer {
    consumer: Member<RetryContext>,
    book: Arc<Mutex<Book>>,
    pipeline: Arc<Pipeline>,
    window: usize,
    /// The memory budget (`max_pending_bytes`), as on the trigger side.
    flow: FlowLimits,
    /// Retry records processed at once, as on the trigger side.
    max_active: usize,
    drain_timeout: Duration,
    draining: AtomicBool,
}

impl RetryConsumer {
    pub fn new(config: &Config, pipeline: Arc<Pipeline>) -> Result<Self, KafkaError> {
        let book = Arc::new(Mutex::new(Book::default()));
        let mut client = consumer_config(config);
        client.set("group.id", format!("{}-retry", config.kafka.group_id));
        let consumer: StreamConsumer<RetryContext> = client.create_with_context(RetryContext {
            closed: AtomicBool::new(false),
            book: book.clone(),
            metrics: pipeline.metrics.clone(),
        })?;
        let topics = pipeline.parking.tier_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(RetryConsumer {
            consumer: Member::new(consumer),
            book,
            pipeline,
            window: config.partition_window,
            flow: FlowLimits {
                window: config.partition_window,
                max_pending_bytes: config.max_pending_bytes,
            },
            max_active: config.max_inflight * 2,
            drain_timeout: config.drain_timeout,
            draining: AtomicBool::new(false),
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut work = Work::default();
        let mut waiting = self.pipeline.sender.watch_waiting();
        loop {
            let due_in = work
                .next_due_ms()
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Ok(()) = waiting.changed() => {}
                Some(joined) = work.active.join_next(), if !work.active.is_empty() => self.finished(joined),
                _ = tokio::time::sleep(due_in.unwrap_or_default()), if due_in.is_some() => {}
                received = self.consumer.recv() => match received {
                    Ok(message) => self.received(&message, &mut work),
                    Err(err) => warn!(error = %err, "kafka retry consumer error"),
                },
            }
            self.release_due(&mut work, &shutdown);
        }
        self.drain(work).await;
    }

    fn received(&self, message: &impl Message, work: &mut Work) {
        let topic: Arc<str> = message.topic().into();
        let partition = message.partition();
        let ticket = self
            .book
            .lock()
            .expect("lock poisoned")
            .tracker(&topic)
            .track(partition, message.offset());
        let here = Origin {
            topic: topic.clone(),
            partition,
            offset: message.offset(),
        };
        let parked = ParkedRecord::decode(message, here);
        work.held_bytes += parked.value.len();
        work.held.entry((topic, partition)).or_default().push_back(Held {
            ticket,
            payload: Bytes::from(parked.value),
            due_at_ms: parked.due_at_ms,
            first_failed_at_ms: Some(parked.first_failed_at_ms).filter(|&at| at > 0),
            origin: parked.origin,
        });
    }

    /// Starts every held record that is due, in partition order; pauses a partition whose
    /// head is not due yet (or whose window is full) and resumes it once it can go on.
    fn release_due(&self, work: &mut Work, shutdown: &CancellationToken) {
        if self.draining.load(Ordering::Relaxed) {
            return;
        }
        let now = now_ms();
        let mut book = self.book.lock().expect("lock poisoned");
        for (key, queue) in work.held.iter_mut() {
            let tracker = book.tracker(&key.0);
            while let Some(head) = queue.front() {
                if work.active.len() >= self.max_active + self.pipeline.sender.waiting().min(self.max_active)
                {
                    break; // resumed when a task finishes: the loop comes back here
                }
                if !tracker.is_current(head.ticket) {
                    queue.pop_front(); // revoked: its new owner consumes it
                    continue;
                }
                if head.due_at_ms > now {
                    break;
                }
                let held = queue.pop_front().expect("front exists");
                work.held_bytes = work.held_bytes.saturating_sub(held.payload.len());
                let origin = held.origin.clone();
                let (pipeline, shutdown, topic) = (self.pipeline.clone(), shutdown.clone(), key.0.clone());
                work.active.spawn(async move {
                    let process = pipeline.process_retry(
                        &held.payload,
                        held.first_failed_at_ms,
                        origin.clone(),
                        &shutdown,
                    );
                    let settlement = match AssertUnwindSafe(process).catch_unwind().await {
                        Ok(settlement) => settlement,
                        Err(panic) => {
                            let panic = panic_message(&*panic);
                            pipeline
                                .dead_letter_panic(&held.payload, origin, &panic, &shutdown)
                                .await
                        }
                    };
                    Done {
                        topic,
                        ticket: held.ticket,
                        settlement,
                    }
                });
            }
        }
        work.held.retain(|_, queue| !queue.is_empty());
        let pending = work.held_bytes + self.pipeline.rendered.get();
        work.memory_full = memory_full(pending, self.flow, work.memory_full);
        // Every assigned partition's fetch state follows from what it holds now (a paused
        // partition whose queue emptied is resumed too); revoked ones are forgotten.
        let Book { trackers, paused } = &mut *book;
        paused.retain(|(topic, partition)| {
            trackers
                .get(topic)
                .is_some_and(|t| t.partitions().any(|p| p == *partition))
        });
        let assigned: Vec<Key> = book
            .trackers
            .iter()
            .flat_map(|(topic, tracker)| tracker.partitions().map(|p| (topic.clone(), p)))
            .collect();
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        for key in assigned {
            let unsettled = book.tracker(&key.0).unsettled(key.1);
            let waiting = work.held.contains_key(&key);
            let want = work.memory_full || hold_partition(waiting, unsettled, self.window);
            let paused = book.paused.contains(&key);
            if want && !paused {
                book.paused.insert(key.clone());
                pause.push(key);
            } else if !want && paused {
                book.paused.remove(&key);
                resume.push(key);
            }
        }
        drop(book);
        for (keys, pausing) in [(pause, true), (resume, false)] {
            if keys.is_empty() {
                continue;
            }
            let mut list = TopicPartitionList::new();
            for key in &keys {
                list.add_partition(&key.0, key.1);
            }
            let result = if pausing {
                self.consumer.pause(&list)
            } else {
                self.consumer.resume(&list)
            };
            match result {
                Ok(()) => debug!(
                    partitions = list.count(),
                    pausing, "retry partitions paused/resumed"
                ),
                Err(err) => warn!(error = %err, pausing, "cannot pause/resume retry partitions"),
            }
        }
    }

    fn finished(&self, joined: Result<Done, tokio::task::JoinError>) {
        let done = match joined {
            Ok(done) => done,
            Err(err) => {
                error!(error = %err, "retry task failed");
                return;
            }
        };
        let stored = match done.settlement {
            Settlement::Settled => self
                .book
                .lock()
                .expect("lock poisoned")
                .tracker(&done.topic)
                .settle(done.ticket),
            Settlement::Abandoned => None,
        };
        if let Some(offset) = stored {
            let mut list = TopicPartitionList::new();
            let _ = list.add_partition_offset(&done.topic, done.ticket.partition, Offset::Offset(offset));
            if let Err(err) = self.consumer.store_offsets(&list) {
                debug!(error = %err, "retry offset not stored");
            }
        }
    }

    async fn drain(self, work: Work) {
        let Work { mut active, .. } = work;
        self.draining.store(true, Ordering::Relaxed);
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    // Start nothing new, then stop; unfinished retries run again after restart.
                    self.pipeline.sender.close();
                    active.abort_all();
                    break;
                }
                joined = active.join_next() => match joined {
                    Some(joined) => self.finished(joined),
                    None => break,
                },
                _ = self.consumer.recv() => {}
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => error!(error = %err, "final retry commit failed; some retries may run again"),
        }
        // Leave the group now, so the partitions move to the others at once.
        if !self.consumer.close(CLOSE_TIMEOUT).await {
            warn!(timeout = ?CLOSE_TIMEOUT, "the retry consumer is still closing; stopping anyway (its partitions move after the session timeout)");
        }
    }
}
