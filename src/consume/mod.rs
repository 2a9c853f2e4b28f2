//! Consuming from Kafka (docs/how-it-works.md): the trigger topic, and the retry tiers
//! (records held until due). Both consumers are a consumer group [`member`]: it hands
//! records to the pipeline, tracks their out-of-order completion per partition
//! ([`offsets`]), commits only settled offsets, and drains on shutdown. [`triggers`] adds
//! the backlog and the pause rules ([`flow`]: the window and the memory budget);
//! [`retries`] holds records until they are due.

mod backlog;
mod book;
mod flow;
mod held;
mod member;
mod offsets;
mod retries;
mod topics;
mod triggers;

pub use flow::{FlowLimits, memory_full, should_pause};

/// What one group member may hold, its share of the process's limits: requests in flight
/// (its records in progress follow from it) and bytes of received records and of the
/// requests rendered from them (the memory budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_inflight: usize,
    pub max_pending_bytes: usize,
}
pub use offsets::{OffsetTracker, Ticket};
pub use retries::RetryConsumer;
pub use topics::{configured_topics, watch_topics};
pub use triggers::{TriggerConsumer, consumer_config};
