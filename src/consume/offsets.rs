//! Which offset may be committed, so that delivery is at least once: a pure tracker of
//! out-of-order completions.
//!
//! Records of a partition are handed out in offset order and settle in any order. The
//! committable offset of a partition is its lowest unsettled offset, or one past the highest
//! seen when everything is settled, so a commit never skips an unsettled record. Each
//! assignment of a partition gets a new generation; a completion carrying an old generation
//! (the partition was revoked meanwhile) is discarded.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: crate::FastMap<i32, PartitionState>,
    next_generation: u64,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    unsettled: BTreeSet<i64>,
    /// One past the highest offset handed out, once any was.
    next: Option<i64>,
    /// The last committable offset reported, so callers only store changes.
    reported: Option<i64>,
}

/// Identifies a tracked record; handed back to [`OffsetTracker::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a partition (idempotent while it stays assigned).
    pub fn assign(&mut self, partition: i32) {
        if !self.partitions.contains_key(&partition) {
            self.next_generation += 1;
            self.partitions.insert(
                partition,
                PartitionState {
                    generation: self.next_generation,
                    unsettled: BTreeSet::new(),
                    next: None,
                    reported: None,
                },
            );
        }
    }

    /// Stops tracking a partition; returns what may still be committed for it. Later
    /// completions for it are discarded.
    pub fn revoke(&mut self, partition: i32) -> Option<i64> {
        self.partitions.remove(&partition).and_then(|p| p.committable())
    }

    /// Records that `offset` was handed out and is not settled yet.
    pub fn track(&mut self, partition: i32, offset: i64) -> Ticket {
        self.assign(partition);
        let state = self.partitions.get_mut(&partition).expect("assigned above");
        state.unsettled.insert(offset);
        // The first record tells where consumption started: already committable.
        state.reported.get_or_insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |n| n.max(offset + 1)));
        Ticket {
            partition,
            offset,
            generation: state.generation,
        }
    }

    /// Marks a record settled. Returns the new committable offset when it moved, `None`
    /// when it did not or when the ticket is stale (revoked partition).
    pub fn settle(&mut self, ticket: Ticket) -> Option<i64> {
        let state = self.partitions.get_mut(&ticket.partition)?;
        if state.generation != ticket.generation || !state.unsettled.remove(&ticket.offset) {
            return None;
        }
        let committable = state.committable();
        if committable != state.reported {
            state.reported = committable;
            committable
        } else {
            None
        }
    }

    /// Whether `ticket` belongs to the current assignment of its partition.
    pub fn is_current(&self, ticket: Ticket) -> bool {
        self.partitions
            .get(&ticket.partition)
            .is_some_and(|p| p.generation == ticket.generation)
    }

    /// The offset a commit may carry now (next offset to consume), if any.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(PartitionState::committable)
    }

    /// Records of `partition` handed out and not settled.
    pub fn unsettled(&self, partition: i32) -> usize {
        self.partitions.get(&partition).map_or(0, |p| p.unsettled.len())
    }

    pub fn total_unsettled(&self) -> usize {
        self.partitions.values().map(|p| p.unsettled.len()).sum()
    }

    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }
}

impl PartitionState {
    fn committable(&self) -> Option<i64> {
        self.unsettled.first().copied().or(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_slow_first_record_holds_the_commit_back() {
        let mut t = OffsetTracker::new();
        let tickets: Vec<_> = (10..15).map(|o| t.track(0, o)).collect();
        for ticket in &tickets[1..] {
            assert_eq!(t.settle(*ticket), None, "10 is still unsettled");
        }
        assert_eq!(t.committable(0), Some(10));
        assert_eq!(t.settle(tickets[0]), Some(15));
        assert_eq!(t.unsettled(0), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_block() {
        let mut t = OffsetTracker::new();
        let a = t.track(0, 3);
        let b = t.track(0, 7); // 4..7 were compacted away
        assert_eq!(t.settle(a), Some(7));
        assert_eq!(t.settle(b), Some(8));
    }

    #[test]
    fn revocation_drops_late_completions() {
        let mut t = OffsetTracker::new();
        let a = t.track(1, 0);
        let b = t.track(1, 1);
        assert_eq!(t.settle(a), Some(1));
        assert_eq!(t.revoke(1), Some(1));
        assert!(!t.is_current(b));
        assert_eq!(t.settle(b), None, "late completion after revocation");
        // Reassigned: a new generation; the old ticket stays stale.
        t.assign(1);
        let c = t.track(1, 1);
        assert_eq!(t.settle(b), None);
        assert_eq!(t.unsettled(1), 1);
        assert_eq!(t.settle(c), Some(2));
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        let slow = t.track(0, 0);
        let fast = t.track(1, 0);
        assert_eq!(t.settle(fast), Some(1));
        assert_eq!(t.committable(0), Some(0));
        assert_eq!(t.total_unsettled(), 1);
        assert_eq!(t.settle(slow), Some(1));
        assert_eq!(t.settle(slow), None, "settling twice changes nothing");
    }

    /// The tickets in an arbitrary completion order chosen by `seed` (Fisher-Yates, xorshift).
    fn shuffled(mut tickets: Vec<Ticket>, seed: u64) -> Vec<Ticket> {
        let mut state = seed | 1;
        for i in (1..tickets.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            tickets.swap(i, (state % (i as u64 + 1)) as usize);
        }
        tickets
    }

    proptest! {
        /// Whatever the completion order, a committable offset never passes an unsettled
        /// record, and once everything settles the whole partition is committable.
        #[test]
        fn any_completion_order_is_safe(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::new();
            let mut o = 0;
            for g in gaps { o += g; offsets.push(o); }
            let mut t = OffsetTracker::new();
            let tickets = shuffled(offsets.iter().map(|&o| t.track(0, o)).collect(), seed);
            let mut settled = std::collections::BTreeSet::new();
            for ticket in tickets {
                settled.insert(ticket.offset);
                let reported = t.settle(ticket);
                let committable = t.committable(0).unwrap();
                let lowest_unsettled = offsets.iter().copied().find(|o| !settled.contains(o));
                if let Some(low) = lowest_unsettled {
                    prop_assert!(committable <= low, "{committable} passes unsettled {low}");
                    prop_assert_eq!(committable, low);
                }
                if let Some(r) = reported { prop_assert_eq!(r, committable); }
            }
            prop_assert_eq!(t.committable(0), Some(offsets.last().unwrap() + 1));
        }

        /// A revocation in the middle: nothing settled after it counts, and what was
        /// committable at revocation never passes an unsettled record.
        #[test]
        fn revocation_at_any_point_is_safe(n in 1usize..40, cut in 0usize..40, seed in any::<u64>()) {
            let mut t = OffsetTracker::new();
            let tickets = shuffled((0..n as i64).map(|o| t.track(0, o)).collect(), seed);
            let cut = cut.min(n);
            let mut settled = std::collections::BTreeSet::new();
            for ticket in &tickets[..cut] { t.settle(*ticket); settled.insert(ticket.offset); }
            let at_revoke = t.revoke(0).unwrap();
            let low = (0..n as i64).find(|o| !settled.contains(o)).unwrap_or(n as i64);
            prop_assert_eq!(at_revoke, low);
            for ticket in &tickets[cut..] { prop_assert_eq!(t.settle(*ticket), None); }
            prop_assert_eq!(t.committable(0), None);
        }
    }
}
