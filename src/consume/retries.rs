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
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::offsets::{OffsetTracker, Ticket};
use super::triggers::consumer_config;
use crate::config::Config;
use crate::park::{Origin, now_ms};
use crate::pipeline::{Pipeline, Settlement};

type Key = (Arc<str>, i32);

#[derive(Default)]
struct Book {
    trackers: HashMap<Arc<str>, OffsetTracker>,
}

impl Book {
    fn tracker(&mut self, topic: &Arc<str>) -> &mut OffsetTracker {
        self.trackers.entry(topic.clone()).or_default()
    }
}

struct RetryContext {
    book: Arc<Mutex<Book>>,
}

impl ClientContext for RetryContext {}

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
            }
        }
        if commit.count() > 0
            && let Err(err) = consumer.commit(&commit, CommitMode::Sync)
        {
            warn!(error = %err, "retry commit on revocation failed; those retries may run again");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut book = self.book.lock().expect("lock poisoned");
            for element in assigned.elements() {
                book.tracker(&element.topic().into()).assign(element.partition());
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
}

struct Done {
    topic: Arc<str>,
    ticket: Ticket,
    settlement: Option<Settlement>,
}

#[derive(Default)]
struct Work {
    active: JoinSet<Done>,
    held: HashMap<Key, VecDeque<Held>>,
    paused: HashSet<Key>,
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

pub struct RetryConsumer {
    consumer: StreamConsumer<RetryContext>,
    book: Arc<Mutex<Book>>,
    pipeline: Arc<Pipeline>,
    window: usize,
    drain_timeout: Duration,
    draining: AtomicBool,
}

fn header_u64(message: &impl Message, name: &str) -> Option<u64> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

impl RetryConsumer {
    pub fn new(config: &Config, pipeline: Arc<Pipeline>) -> Result<Self, KafkaError> {
        let book = Arc::new(Mutex::new(Book::default()));
        let mut client = consumer_config(config);
        client.set("group.id", format!("{}-retry", config.kafka.group_id));
        let consumer: StreamConsumer<RetryContext> =
            client.create_with_context(RetryContext { book: book.clone() })?;
        let topics = pipeline.parking.tier_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(RetryConsumer {
            consumer,
            book,
            pipeline,
            window: config.partition_window,
            drain_timeout: config.drain_timeout,
            draining: AtomicBool::new(false),
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut work = Work::default();
        loop {
            let due_in = work
                .next_due_ms()
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
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
        work.held.entry((topic, partition)).or_default().push_back(Held {
            ticket,
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            due_at_ms: header_u64(message, "wd-due-at-ms").unwrap_or(0),
            first_failed_at_ms: header_u64(message, "wd-first-failed-at-ms"),
        });
    }

    /// Starts every held record that is due, in partition order; pauses a partition whose
    /// head is not due yet (or whose window is full) and resumes it once it can go on.
    fn release_due(&self, work: &mut Work, shutdown: &CancellationToken) {
        if self.draining.load(Ordering::Relaxed) {
            return;
        }
        let now = now_ms();
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        let mut book = self.book.lock().expect("lock poisoned");
        for (key, queue) in work.held.iter_mut() {
            let tracker = book.tracker(&key.0);
            while let Some(head) = queue.front() {
                if !tracker.is_current(head.ticket) {
                    queue.pop_front(); // revoked: its new owner consumes it
                    continue;
                }
                if head.due_at_ms > now {
                    break;
                }
                let held = queue.pop_front().expect("front exists");
                let origin = Origin {
                    topic: key.0.clone(),
                    partition: key.1,
                    offset: held.ticket.offset,
                };
                let (pipeline, shutdown, topic) = (self.pipeline.clone(), shutdown.clone(), key.0.clone());
                work.active.spawn(async move {
                    let process =
                        pipeline.process_retry(&held.payload, held.first_failed_at_ms, origin, &shutdown);
                    let settlement = AssertUnwindSafe(process).catch_unwind().await.ok();
                    Done {
                        topic,
                        ticket: held.ticket,
                        settlement,
                    }
                });
            }
            let full = tracker.unsettled(key.1) >= self.window;
            let waiting = !queue.is_empty();
            let paused = work.paused.contains(key);
            if (waiting || full) && !paused {
                pause.push(key.clone());
            } else if !waiting && !full && paused {
                resume.push(key.clone());
            }
        }
        drop(book);
        work.held.retain(|_, queue| !queue.is_empty());
        for (keys, pausing) in [(pause, true), (resume, false)] {
            if keys.is_empty() {
                continue;
            }
            let mut list = TopicPartitionList::new();
            for key in &keys {
                list.add_partition(&key.0, key.1);
                if pausing {
                    work.paused.insert(key.clone());
                } else {
                    work.paused.remove(key);
                }
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
            Some(Settlement::Settled) => self
                .book
                .lock()
                .expect("lock poisoned")
                .tracker(&done.topic)
                .settle(done.ticket),
            Some(Settlement::Abandoned) => None,
            None => {
                error!(topic = %done.topic, partition = done.ticket.partition, offset = done.ticket.offset,
                       "retry task panicked; the partition's commit stops at this record until restart");
                None
            }
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
    }
}
