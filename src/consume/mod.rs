//! Consuming from Kafka (§5, §6): the trigger topic, and the retry tiers (records held until
//! due). The trigger consumer is a consumer group member that hands records to
//! the pipeline, tracks their out-of-order completion per partition, commits only settled
//! offsets, pauses partitions when their window or the memory budget is full, and drains
//! on shutdown.

mod flow;
mod member;
mod offsets;
mod retries;
mod topics;
mod triggers;

pub use flow::{FlowLimits, memory_full, should_pause};
pub use offsets::{OffsetTracker, Ticket};
pub use retries::RetryConsumer;
pub use topics::{configured_topics, watch_topics};
pub use triggers::{TriggerConsumer, consumer_config};
