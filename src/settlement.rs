//! How a record's work ended: settled, so its offset may be committed, or abandoned at
//! shutdown, so it is consumed again. Parking a failure, attempting a delivery and processing
//! a whole record all answer with it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Settlement {
    /// Every delivery reached a final outcome (delivered, or acknowledged by Kafka where it
    /// was parked): the offset may be committed.
    Settled,
    /// Shutdown came before every delivery was attempted or parked: leave it uncommitted,
    /// it will be consumed again.
    Abandoned,
}

impl Settlement {
    /// Settled when both are.
    pub fn and(self, other: Settlement) -> Settlement {
        if self == Settlement::Settled {
            other
        } else {
            Settlement::Abandoned
        }
    }

    pub fn is_settled(self) -> bool {
        self == Settlement::Settled
    }
}
