//! What the retry consumer holds for paused campaigns: the records it reads from the hold
//! topic while their campaign is still paused. They wait here, in memory, with no task and no
//! request slot, until the campaign is resumed or cancelled (a change of
//! [`Campaigns`](crate::campaigns::Campaigns) says so) or their wait ends (their due time:
//! the campaign's longest pause, or the template's `max_age_seconds`); then they go to the
//! pipeline, which sends them, dead-letters them, or parks them on the hold topic again.
//!
//! Their offsets stay uncommitted while they wait, so a restart reads them again from Kafka.
//! Their bytes count against a budget of their own (half the retry consumer's memory
//! budget): when it is full, the hold topic's partitions stop fetching and the rest wait in
//! Kafka, while the retry tiers keep theirs. One campaign's held deliveries share a key and
//! so a partition: a campaign resumed behind a long-paused one on the same partition waits
//! for it only once the budget is full.

use std::time::Duration;

use super::book::{Book, Key};
use crate::campaigns::{Campaigns, State};
use crate::park::now_ms;

/// A record read from the hold topic, waiting: its partition, and what the retry consumer
/// keeps of any record.
pub struct Waiting<H> {
    pub key: Key,
    pub record: H,
    pub bytes: usize,
    pub due_at_ms: u64,
}

/// How often held records are looked over even when nothing changed: records of a partition
/// the group moved elsewhere are dropped then (their new owner reads them).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The records held for paused campaigns, by campaign.
pub struct PausedHolds<H> {
    by_campaign: crate::FastMap<i64, Vec<Waiting<H>>>,
    /// Bytes of every record held here.
    pub bytes: usize,
    count: usize,
    /// When the next look-over is due: the earliest due time, or the periodic sweep.
    next_sweep_ms: Option<u64>,
    /// A campaign's state changed: look over everything at the next pass.
    pub changed: bool,
}

impl<H> Default for PausedHolds<H> {
    fn default() -> Self {
        PausedHolds {
            by_campaign: crate::FastMap::default(),
            bytes: 0,
            count: 0,
            next_sweep_ms: None,
            changed: false,
        }
    }
}

impl<H> PausedHolds<H> {
    pub fn len(&self) -> usize {
        self.count
    }

    /// When the next look-over is due (ms since the epoch).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.next_sweep_ms
    }

    /// Keeps `waiting` if its campaign is paused and its wait has not ended; gives it back
    /// (to be processed now) otherwise.
    pub fn hold(
        &mut self,
        campaigns: &Campaigns,
        campaign: Option<i64>,
        waiting: Waiting<H>,
    ) -> Option<Waiting<H>> {
        let now = now_ms();
        let Some(id) = campaign.filter(|&id| matches!(campaigns.state(id), State::Paused { .. })) else {
            return Some(waiting);
        };
        if waiting.due_at_ms <= now {
            return Some(waiting);
        }
        let sweep_at = waiting.due_at_ms.min(now + SWEEP_EVERY.as_millis() as u64);
        self.next_sweep_ms = Some(self.next_sweep_ms.map_or(sweep_at, |at| at.min(sweep_at)));
        self.bytes += waiting.bytes;
        self.count += 1;
        self.by_campaign.entry(id).or_default().push(waiting);
        None
    }

    /// Whether a look-over is due now.
    pub fn sweep_due(&self) -> bool {
        self.changed || self.next_sweep_ms.is_some_and(|at| at <= now_ms())
    }

    /// Takes out every record whose campaign is no longer paused or whose wait ended, and
    /// drops those whose partition is no longer this member's (`book` uncounts their bytes).
    pub fn sweep(
        &mut self,
        campaigns: &Campaigns,
        book: &mut Book,
        keep: impl Fn(&mut Book, &Key, &H, usize) -> bool,
    ) -> Vec<Waiting<H>> {
        let now = now_ms();
        let mut released = Vec::new();
        let mut next: Option<u64> = None;
        self.by_campaign.retain(|&id, records| {
            let paused = matches!(campaigns.state(id), State::Paused { .. });
            let mut kept = Vec::with_capacity(records.len());
            for waiting in records.drain(..) {
                if !keep(book, &waiting.key, &waiting.record, waiting.bytes) {
                    self.bytes = self.bytes.saturating_sub(waiting.bytes);
                    self.count -= 1;
                } else if !paused || waiting.due_at_ms <= now {
                    self.bytes = self.bytes.saturating_sub(waiting.bytes);
                    self.count -= 1;
                    released.push(waiting);
                } else {
                    next = Some(next.map_or(waiting.due_at_ms, |at| at.min(waiting.due_at_ms)));
                    kept.push(waiting);
                }
            }
            *records = kept;
            !records.is_empty()
        });
        self.changed = false;
        self.next_sweep_ms = next.map(|due| due.min(now + SWEEP_EVERY.as_millis() as u64));
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::Command;
    use std::sync::Arc;

    fn waiting(due_in_ms: u64, partition: i32) -> Waiting<u32> {
        Waiting {
            key: (Arc::from("held"), partition),
            record: 0,
            bytes: 10,
            due_at_ms: now_ms() + due_in_ms,
        }
    }

    #[tokio::test]
    async fn records_wait_while_their_campaign_is_paused_and_go_when_it_is_resumed() {
        let campaigns = Campaigns::in_memory(Duration::from_secs(3600));
        campaigns.control(1, Command::Pause).await.unwrap();
        let mut holds = PausedHolds::default();
        assert!(
            holds.hold(&campaigns, Some(1), waiting(60_000, 0)).is_none(),
            "paused: held"
        );
        assert!(holds.hold(&campaigns, Some(1), waiting(60_000, 1)).is_none());
        assert!(
            holds.hold(&campaigns, Some(2), waiting(60_000, 0)).is_some(),
            "an active campaign's goes on"
        );
        assert!(
            holds.hold(&campaigns, None, waiting(60_000, 0)).is_some(),
            "no campaign: goes on"
        );
        assert!(
            holds.hold(&campaigns, Some(1), waiting(0, 0)).is_some(),
            "its wait is over: goes on"
        );
        assert_eq!((holds.len(), holds.bytes), (2, 20));
        let mut book = Book::default();
        let kept = |_: &mut Book, _: &Key, _: &u32, _: usize| true;
        assert!(
            holds.sweep(&campaigns, &mut book, kept).is_empty(),
            "still paused"
        );
        campaigns.control(1, Command::Resume).await.unwrap();
        assert_eq!(
            holds.sweep(&campaigns, &mut book, kept).len(),
            2,
            "resumed: every one goes"
        );
        assert_eq!((holds.len(), holds.bytes), (0, 0));
    }

    #[tokio::test]
    async fn records_of_a_partition_given_up_are_dropped_and_ended_waits_released() {
        let campaigns = Campaigns::in_memory(Duration::from_secs(3600));
        campaigns.control(1, Command::Pause).await.unwrap();
        let mut holds = PausedHolds::default();
        assert!(holds.hold(&campaigns, Some(1), waiting(60_000, 0)).is_none());
        assert!(holds.hold(&campaigns, Some(1), waiting(60_000, 1)).is_none());
        assert!(holds.hold(&campaigns, Some(1), waiting(30, 2)).is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(holds.sweep_due(), "a wait ended");
        let mut book = Book::default();
        let not_partition_1 = |_: &mut Book, key: &Key, _: &u32, _: usize| key.1 != 1;
        let released = holds.sweep(&campaigns, &mut book, not_partition_1);
        assert_eq!(released.len(), 1, "the one whose wait ended");
        assert_eq!(released[0].key.1, 2);
        assert_eq!(holds.len(), 1, "partition 1's was dropped");
        assert!(!holds.sweep_due());
    }
}
