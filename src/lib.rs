//! webhook-dispatcher: Kafka campaign triggers in, authenticated webhooks out.
//!
//! The pipeline stages, in the order a record meets them:
//! [`consume`] (Kafka, offsets, backpressure) → [`event`] (parse, validate) →
//! [`template`] (store, cache) → [`render`] (requests) → [`deliver`] (HTTP, limits,
//! outcome) → [`park`] (failures to retry tiers or the dead-letter topic, whose records
//! [`consume`]'s retry consumer attempts again when due). [`pipeline`] strings the per-record
//! stages together; [`stats`] keeps per-campaign counts. Beside the pipeline: [`admin`] (the
//! admin service, its HTTP API, the command line, dead-letter replay), [`probes`] (health and
//! metrics endpoints) and [`demo`] (the demo and the local servers tests stand on). [`app`]
//! wires everything and owns the tasks. `main.rs` only parses the command line.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod campaigns;
pub mod config;
pub mod console;
pub mod consume;
pub mod crypto;
pub mod deliver;
pub mod delivery_log;
pub mod demo;
pub mod event;
pub mod event_loops;
pub mod guard;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod park;
pub mod pipeline;
pub mod probes;
pub mod redis_link;
pub mod render;
pub mod secret;
pub mod server;
pub mod settlement;
pub mod stats;
pub mod telemetry;
pub mod template;
pub mod trace;

/// A hash map with foldhash instead of SipHash, for maps read on every delivery (offsets,
/// per-host limits, breakers, stats): randomly seeded per map, several times cheaper for
/// short keys.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use app::{App, Templates, admin_for_cli, redis_store, run, sending};
