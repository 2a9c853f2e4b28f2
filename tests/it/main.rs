//! Integration tests: the real service against a real Redis, a real Apache Kafka broker
//! (librdkafka's mock cluster for the faults only it can inject) and real HTTP receivers.
//! Run them with ./scripts/test (it starts a private Redis and the broker).

mod api;
mod auth;
mod backpressure;
mod bad_input;
mod bodies;
mod campaigns;
mod chaos;
mod cli;
mod console;
mod dead_letters;
mod delivery;
mod delivery_log;
mod event_schema;
mod helpers;
mod managed_redis;
mod ops;
mod production;
mod properties;
mod rates;
mod reliability;
mod replay;
mod restart;
mod security;
mod service;
mod tls;
mod token_paths;
mod traces;
