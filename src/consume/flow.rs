//! Backpressure: when the consumer stops taking records, as pure decisions.
//!
//! - A partition pauses when its window of unsettled records is full, and resumes once it
//!   has drained to half, so it does not flap around the limit.
//! - When the process holds more unsettled bytes than its budget, the consumer first stops
//!   receiving: librdkafka's own queue fills up to `queued.max.messages.kbytes` and its
//!   fetches stop there. Pausing instead would make librdkafka drop what it prefetched and
//!   fetch it again on resume, so a budget smaller than the backlog would refetch the same
//!   records over and over. Only when the budget stays full for [`HOLD_LIMIT`] (a stuck
//!   destination, not a backlog being drained) are all partitions paused, and receiving
//!   resumes, so rebalance callbacks are served. Both end once the budget has drained to
//!   half.

use std::time::{Duration, Instant};

/// How long a full memory budget only stops receiving before it pauses every partition:
/// a backlog drains the budget to half in well under a second; longer means the
/// destinations are slow, and a consumer that does not poll delays rebalances.
pub const HOLD_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Unsettled records per partition.
    pub window: usize,
    /// Unsettled record bytes in the whole process.
    pub max_pending_bytes: usize,
}

/// Whether the whole process is over its memory budget, with hysteresis.
pub fn memory_full(pending_bytes: usize, limits: FlowLimits, was_full: bool) -> bool {
    if was_full {
        pending_bytes > limits.max_pending_bytes / 2
    } else {
        pending_bytes >= limits.max_pending_bytes
    }
}

/// Since when the memory budget is full (`None`: there is room), given since when it was.
pub fn memory_full_since(
    pending_bytes: usize,
    limits: FlowLimits,
    was_full_since: Option<Instant>,
    now: Instant,
) -> Option<Instant> {
    memory_full(pending_bytes, limits, was_full_since.is_some()).then(|| was_full_since.unwrap_or(now))
}

/// Whether a budget full since `since` pauses every partition: once holding off
/// receiving has not drained it within [`HOLD_LIMIT`].
pub fn memory_pauses(since: Option<Instant>, now: Instant) -> bool {
    since.is_some_and(|since| now.saturating_duration_since(since) >= HOLD_LIMIT)
}

/// Whether a partition should be paused, with hysteresis on its window. `memory_pauses`:
/// the memory budget pauses every partition.
pub fn should_pause(unsettled: usize, memory_pauses: bool, limits: FlowLimits, paused: bool) -> bool {
    if memory_pauses {
        return true;
    }
    if paused {
        unsettled > limits.window / 2
    } else {
        unsettled >= limits.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FlowLimits = FlowLimits {
        window: 10,
        max_pending_bytes: 1000,
    };

    #[test]
    fn a_full_window_pauses_until_half_drained() {
        assert!(!should_pause(9, false, LIMITS, false));
        assert!(should_pause(10, false, LIMITS, false));
        assert!(should_pause(6, false, LIMITS, true), "still above half");
        assert!(!should_pause(5, false, LIMITS, true));
    }

    #[test]
    fn the_memory_budget_pauses_everything() {
        assert!(!memory_full(999, LIMITS, false));
        assert!(memory_full(1000, LIMITS, false));
        assert!(memory_full(501, LIMITS, true));
        assert!(!memory_full(500, LIMITS, true));
        assert!(should_pause(0, true, LIMITS, false));
    }

    #[test]
    fn a_full_budget_holds_off_receiving_before_it_pauses() {
        let start = Instant::now();
        let since = memory_full_since(1000, LIMITS, None, start);
        assert_eq!(since, Some(start), "full from now");
        assert!(!memory_pauses(since, start), "at first, only receiving stops");
        let later = start + HOLD_LIMIT / 2;
        let still = memory_full_since(800, LIMITS, since, later);
        assert_eq!(
            still,
            Some(start),
            "still full (above half), since the same moment"
        );
        assert!(!memory_pauses(still, later));
        assert!(memory_pauses(still, start + HOLD_LIMIT), "held too long: pause");
        assert_eq!(
            memory_full_since(500, LIMITS, still, later),
            None,
            "drained to half"
        );
        assert!(!memory_pauses(None, start + HOLD_LIMIT * 2));
    }
}
