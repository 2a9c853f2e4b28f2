//! Consuming trigger records from Kafka (§6): a consumer group member that hands records to
//! the pipeline, tracks their out-of-order completion per partition, commits only settled
//! offsets, pauses partitions when their window or the memory budget is full, and drains
//! on shutdown.

mod flow;
mod offsets;
mod triggers;

pub use flow::{FlowLimits, memory_full, should_pause};
pub use offsets::{OffsetTracker, Ticket};
pub use triggers::TriggerConsumer;
