//! The self-contained demo and the local servers it stands on, which the integration tests
//! and the benchmarks use too: an embedded Kafka cluster, a scripted webhook receiver and a
//! real OAuth 2.0 token endpoint. None of it is on the delivery path of `run`.

pub mod embedded_kafka;
pub mod receiver;
mod run;
pub mod token_server;

pub use run::{DemoOptions, Unfinished, run};
