//! The trigger records received and not started yet, by campaign (docs/how-it-works.md,
//! "Fair share between campaigns"): the next record started is the oldest of the campaign
//! with the least work, records started since its records began waiting here plus records
//! still waiting (in turn on ties). Two blasts take equal turns; a small campaign read behind
//! a blast starts first, as the shortest job would. A campaign's count is forgotten once its
//! records are all started. Its records then wait at a busy host in their own campaign's queue,
//! served the same way ([`crate::deliver`]'s fair host permits).
//!
//! How far the consumer reads ahead, and so how many campaigns it can choose between, is
//! what bounds any record it holds: `partition_window` unsettled records per partition and
//! `max_pending_bytes` of them in all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Records by campaign, with how many each had started; the campaigns with records, least
/// work first.
pub struct Backlog<T> {
    queues: crate::FastMap<i64, (VecDeque<T>, u64)>,
    /// (work when queued, order of arrival, campaign) of every campaign with records. A
    /// campaign's work grows as records arrive without moving it: it is put right when it
    /// is next served.
    turns: BinaryHeap<Reverse<(u64, u64, i64)>>,
    arrivals: u64,
    len: usize,
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog {
            queues: crate::FastMap::default(),
            turns: BinaryHeap::new(),
            arrivals: 0,
            len: 0,
        }
    }
}

impl<T> Backlog<T> {
    pub fn push(&mut self, campaign: i64, record: T) {
        let (queue, _) = self.queues.entry(campaign).or_default();
        if queue.is_empty() {
            self.arrivals += 1;
            self.turns.push(Reverse((1, self.arrivals, campaign)));
        }
        queue.push_back(record);
        self.len += 1;
    }

    /// The oldest record of the campaign with the least work.
    pub fn pop(&mut self) -> Option<T> {
        let Reverse((_, _, campaign)) = self.turns.pop()?;
        let (queue, started) = self.queues.get_mut(&campaign)?;
        let record = queue.pop_front();
        *started += 1;
        if queue.is_empty() {
            self.queues.remove(&campaign);
        } else {
            self.arrivals += 1;
            let work = *started + queue.len() as u64;
            self.turns.push(Reverse((work, self.arrivals, campaign)));
        }
        self.len -= usize::from(record.is_some());
        record
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// The campaign (`targetId`) a trigger record names, read without parsing it (0 when it
/// cannot be found): only the order records start in depends on it; the record is parsed,
/// and refused if it must be, by the pipeline.
pub fn campaign_of(payload: &[u8]) -> i64 {
    const KEY: &[u8] = b"\"targetId\"";
    let Some(at) = memchr::memmem::find(payload, KEY) else {
        return 0;
    };
    let rest = &payload[at + KEY.len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")
        .unwrap_or(rest)
        .trim_ascii_start();
    let (negative, digits) = match rest.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, rest),
    };
    let mut value: i64 = 0;
    for &byte in digits.iter().take_while(|b| b.is_ascii_digit()).take(18) {
        value = value * 10 + i64::from(byte - b'0');
    }
    if negative { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_behind_a_started_blast_goes_first_then_they_take_turns() {
        let mut backlog = Backlog::default();
        for n in 0..5 {
            backlog.push(1, (1, n));
        }
        assert_eq!(backlog.pop(), Some((1, 0)));
        assert_eq!(backlog.pop(), Some((1, 1)));
        backlog.push(2, (2, 0));
        backlog.push(2, (2, 1));
        backlog.push(2, (2, 2));
        let order: Vec<_> = std::iter::from_fn(|| backlog.pop()).collect();
        assert_eq!(order, [(2, 0), (2, 1), (2, 2), (1, 2), (1, 3), (1, 4)]);
    }

    #[test]
    fn the_smaller_campaign_goes_first_and_each_keeps_its_order() {
        let mut backlog = Backlog::default();
        for n in 0..4 {
            backlog.push(1, (1, n));
        }
        backlog.push(2, (2, 0));
        backlog.push(2, (2, 1));
        assert_eq!(backlog.len(), 6);
        let order: Vec<_> = std::iter::from_fn(|| backlog.pop()).collect();
        assert_eq!(order, [(1, 0), (2, 0), (2, 1), (1, 1), (1, 2), (1, 3)]);
        assert_eq!(backlog.len(), 0);
        assert!(backlog.pop().is_none());
    }

    #[test]
    fn the_campaign_is_read_from_the_raw_record() {
        assert_eq!(
            campaign_of(br#"{"event_id":"e","targetId":1234,"profiles":[]}"#),
            1234
        );
        assert_eq!(campaign_of(br#"{"targetId" :  -7}"#), -7);
        assert_eq!(campaign_of(br#"{"targetId":"x"}"#), 0);
        assert_eq!(campaign_of(b"not json"), 0);
        assert_eq!(
            campaign_of(br#"{"targetId":99999999999999999999999}"#),
            999_999_999_999_999_999
        );
    }

    #[test]
    fn two_blasts_take_equal_turns() {
        let mut backlog = Backlog::default();
        for n in 0..3 {
            backlog.push(1, (1, n));
            backlog.push(2, (2, n));
        }
        let order: Vec<_> = std::iter::from_fn(|| backlog.pop()).map(|(c, _)| c).collect();
        assert_eq!(order, [1, 2, 1, 2, 1, 2]);
    }
}
