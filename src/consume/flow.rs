//! Backpressure (§6): when a partition is paused, as a pure decision. A partition pauses
//! when its window of unsettled records is full or the process holds more unsettled bytes
//! than its budget, and resumes only once both have drained to half, so it does not
//! flap around the limit.

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

/// Whether a partition should be paused, with hysteresis on its window.
pub fn should_pause(unsettled: usize, memory_full: bool, limits: FlowLimits, paused: bool) -> bool {
    if memory_full {
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
}
