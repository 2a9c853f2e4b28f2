//! The retry-tier consumer. It reads every tier topic in a consumer group of its own
//! (`<group>-retry`), so retries never block the trigger topic. A record is attempted only
//! once its `wd-due-at-ms` has passed: until then it is held, in order, with every record
//! behind it in its partition, and the partition is paused; one timer wakes the loop when the
//! earliest held record is due. Nothing polls in a loop and no task sleeps holding a permit.
//! The same member reads the hold topic, where paused campaigns' deliveries wait: those are
//! held by campaign, not in partition order, until their campaign is resumed ([`super::held`]).
//! The member (offsets, callbacks, record tasks, drain) is shared with the trigger consumer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::OptionFuture;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Budget;
use super::book::Book;
use super::flow::{FlowLimits, memory_full};
use super::held::{PausedHolds, Waiting};
use super::member::{Done, FetchChanges, Key, Kind, Member, Record, Role};
use super::offsets::Ticket;
use super::triggers::consumer_config;
use crate::campaigns::Campaigns;
use crate::config::Config;
use crate::park::{Origin, ParkedRecord, now_ms};
use crate::pipeline::Pipeline;
use crate::trace::TraceParent;

/// A record received and not yet started: waiting for its due time or for the ones ahead.
struct Held {
    ticket: Ticket,
    payload: Bytes,
    due_at_ms: u64,
    first_failed_at_ms: Option<u64>,
    /// The trigger record the delivery came from (`wd-original-*`), kept through every tier.
    origin: Origin,
    /// Where its trace goes on: the step that parked it.
    trace: Option<TraceParent>,
}

#[derive(Default)]
struct Work {
    active: JoinSet<Done>,
    held: HashMap<Key, VecDeque<Held>>,
    /// Hold-topic records of campaigns still paused.
    paused: PausedHolds<Held>,
}

impl Work {
    /// When the earliest held record is due.
    fn next_due_ms(&self) -> Option<u64> {
        let due = self.held.values().filter_map(|q| q.front()).map(|h| h.due_at_ms);
        due.chain(self.paused.next_due_ms()).min()
    }

    fn held_count(&self) -> usize {
        self.held.values().map(VecDeque::len).sum::<usize>() + self.paused.len()
    }
}

/// Queues a record to be processed as soon as a slot is free (its partition's queue keeps the
/// order it was read in).
fn queue_now(work: &mut Work, waiting: Waiting<Held>) {
    let mut held = waiting.record;
    held.due_at_ms = 0;
    work.held.entry(waiting.key).or_default().push_back(held);
}

/// Whether a tier partition stops fetching: it holds a record that is not due yet (what
/// follows it cannot be due earlier), or its window of unsettled records is full.
fn hold_partition(holds_records: bool, unsettled: usize, window: usize) -> bool {
    holds_records || unsettled >= window
}

pub struct RetryConsumer {
    member: Member,
    /// The window per partition and the memory budget, as on the trigger side.
    flow: FlowLimits,
    /// Each tier topic's delay in milliseconds: the longest a record of it can have to wait.
    tier_delays_ms: Vec<(Arc<str>, u64)>,
    /// Where paused campaigns' deliveries wait (see [`super::held`]).
    held_topic: Arc<str>,
    campaigns: Arc<Campaigns>,
}

/// What a due time may exceed a tier's delay by: clock skew between replicas.
const DUE_MARGIN_MS: u64 = 5_000;

/// When a record received at `now_ms` on a tier of `tier_delay_ms` is attempted: at its
/// `wd-due-at-ms`, but never later than the tier's delay plus [`DUE_MARGIN_MS`] from now.
/// A due time further away (a replica with a fast clock, a crafted record) would otherwise
/// hold the head of its tier partition, and everything behind it, for as long as it says.
fn due_within_tier(due_at_ms: u64, now_ms: u64, tier_delay_ms: u64) -> u64 {
    due_at_ms.min(now_ms.saturating_add(tier_delay_ms).saturating_add(DUE_MARGIN_MS))
}

impl RetryConsumer {
    /// The retry tiers' member, on the event loop of `pipeline`, within `budget`.
    pub fn new(config: &Config, budget: Budget, pipeline: Arc<Pipeline>) -> Result<Self, KafkaError> {
        let mut client = consumer_config(config);
        client.set("group.id", format!("{}-retry", config.kafka.group_id));
        let mut topics: Vec<String> = (1..=config.retry_delays.len())
            .map(|tier| config.retry_topic(tier))
            .collect();
        let tier_delays_ms = topics
            .iter()
            .zip(&config.retry_delays)
            .map(|(topic, delay)| (Arc::from(topic.as_str()), delay.as_millis() as u64))
            .collect();
        topics.push(config.held_topic());
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let campaigns = pipeline.campaigns().clone();
        let member = Member::join(Role::Retry, &client, &topics, config, budget, pipeline, None)?;
        Ok(RetryConsumer {
            tier_delays_ms,
            held_topic: Arc::from(config.held_topic()),
            campaigns,
            member,
            flow: FlowLimits {
                window: config.partition_window,
                max_pending_bytes: budget.max_pending_bytes,
            },
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut work = Work::default();
        let mut waiting = self.member.backpressure.watch_waiting();
        let mut campaign_changes = self.campaigns.watch();
        loop {
            let due_in = work
                .next_due_ms()
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // A revocation's records in flight did not all settle in time.
                Some(()) = OptionFuture::from(self.member.revocation_deadline().map(|at| tokio::time::sleep_until(at.into()))) => {
                    self.member.finish_revocation(false);
                }
                Ok(()) = waiting.changed() => {}
                Ok(()) = campaign_changes.changed() => work.paused.changed = true,
                Some(joined) = work.active.join_next_with_id(), if !work.active.is_empty() => {
                    self.member.settle(vec![joined]);
                }
                _ = tokio::time::sleep(due_in.unwrap_or_default()), if due_in.is_some() => {}
                received = self.member.consumer().recv() => match received {
                    Ok(message) => self.received(&message, &mut work),
                    Err(err) => crate::kafka::consumer_error(&err, "kafka retry consumer error"),
                },
            }
            self.release_due(&mut work, &shutdown);
        }
        let not_started = work.held_count();
        self.member.drain(work.active, not_started).await;
    }

    fn received(&self, message: &impl Message, work: &mut Work) {
        let topic: Arc<str> = message.topic().into();
        let partition = message.partition();
        let here = Origin {
            topic: topic.clone(),
            partition,
            offset: message.offset(),
        };
        let parked = ParkedRecord::decode(message, here);
        let bytes = parked.value.len();
        let ticket = self
            .member
            .book()
            .track(&topic, partition, message.offset(), bytes);
        let on_hold = topic == self.held_topic;
        let due_at_ms = if on_hold {
            parked.due_at_ms
        } else {
            due_within_tier(parked.due_at_ms, now_ms(), self.tier_delay_ms(&topic))
        };
        let held = Held {
            ticket,
            payload: Bytes::from(parked.value),
            due_at_ms,
            first_failed_at_ms: Some(parked.first_failed_at_ms).filter(|&at| at > 0),
            origin: parked.origin,
            trace: parked.trace,
        };
        let key = (topic, partition);
        if !on_hold {
            work.held.entry(key).or_default().push_back(held);
            return;
        }
        // A held delivery: kept while its campaign (its key) is paused, else processed now.
        let campaign = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse().ok());
        let waiting = Waiting {
            key,
            record: held,
            bytes,
            due_at_ms,
        };
        if let Some(now) = work.paused.hold(&self.campaigns, campaign, waiting) {
            queue_now(work, now);
        }
    }

    /// Gives back to their partitions' queues, due now, the held records whose campaign is
    /// no longer paused or whose wait ended.
    fn release_paused(&self, work: &mut Work) {
        if !work.paused.sweep_due() {
            return;
        }
        let released = {
            let mut book = self.member.book();
            let keep =
                |book: &mut Book, key: &Key, held: &Held, bytes: usize| book.keep(&key.0, held.ticket, bytes);
            work.paused.sweep(&self.campaigns, &mut book, keep)
        };
        for waiting in released {
            queue_now(work, waiting);
        }
    }

    /// The delay of tier `topic` (the longest tier's for a topic not known, which cannot be).
    fn tier_delay_ms(&self, topic: &str) -> u64 {
        let longest = self.tier_delays_ms.iter().map(|(_, d)| *d).max().unwrap_or(0);
        self.tier_delays_ms
            .iter()
            .find(|(t, _)| &**t == topic)
            .map_or(longest, |(_, d)| *d)
    }

    /// Starts every held record that is due, in partition order, then sets every assigned
    /// partition's fetch state from what it holds now.
    fn release_due(&self, work: &mut Work, shutdown: &CancellationToken) {
        if self.member.draining() {
            return;
        }
        self.release_paused(work);
        let now = now_ms();
        let slots = self.member.slots();
        for (key, queue) in work.held.iter_mut() {
            while let Some(head) = queue.front() {
                if work.active.len() >= slots {
                    break; // resumed when a task finishes: the loop comes back here
                }
                if !self.member.book().keep(&key.0, head.ticket, head.payload.len()) {
                    queue.pop_front(); // revoked: its new owner consumes it
                    continue;
                }
                if head.due_at_ms > now {
                    break;
                }
                let held = queue.pop_front().expect("front exists");
                let record = Record {
                    topic: key.0.clone(),
                    ticket: held.ticket,
                    payload: held.payload,
                    origin: held.origin,
                    trace: held.trace,
                    kind: Kind::Retry {
                        first_failed_at_ms: held.first_failed_at_ms,
                    },
                };
                self.member.spawn(&mut work.active, record, shutdown);
            }
        }
        work.held.retain(|_, queue| !queue.is_empty());
        self.apply_flow(work);
    }

    /// A partition pauses while it holds a record that is not due, while its window is full,
    /// or while the memory budget is; a paused partition whose queue emptied resumes.
    fn apply_flow(&self, work: &Work) {
        let mut changes = FetchChanges::default();
        {
            let mut book = self.member.book();
            // Held deliveries have a budget of their own: they never stop the tiers.
            let pending = self.member.pending_bytes(&book).saturating_sub(work.paused.bytes);
            let full = memory_full(pending, self.flow, book.memory_pauses);
            book.memory_pauses = full;
            let holds_full = work.paused.bytes >= self.flow.max_pending_bytes / 2;
            for key in book.assigned() {
                let holds = work.held.contains_key(&key) || (holds_full && key.0 == self.held_topic);
                let want = full || hold_partition(holds, book.unsettled(&key), self.flow.window);
                book.want_paused(key, want, &mut changes);
            }
        }
        self.member.set_fetch_state(&changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_time_waits_at_most_its_tiers_delay_plus_the_margin() {
        let now = 1_000_000;
        // As stamped: in the past, now, within the tier's delay, within the margin.
        for due in [0, now, now + 10_000, now + 10_000 + DUE_MARGIN_MS] {
            assert_eq!(due_within_tier(due, now, 10_000), due);
        }
        // A day ahead, or the largest value a header can hold: the tier's delay plus the margin.
        for due in [now + 86_400_000, u64::MAX] {
            assert_eq!(due_within_tier(due, now, 10_000), now + 10_000 + DUE_MARGIN_MS);
        }
        assert_eq!(due_within_tier(u64::MAX, u64::MAX - 1, 60_000), u64::MAX);
    }
}
