//! Integration tests: the real service against a real Redis, librdkafka's mock cluster and
//! real HTTP receivers. Run them with ./scripts/test (it starts a private Redis).

mod api;
mod auth;
mod backpressure;
mod bad_input;
mod chaos;
mod cli;
mod console;
mod dead_letters;
mod delivery;
mod event_schema;
mod helpers;
mod ops;
mod production;
mod properties;
mod reliability;
mod replay;
mod restart;
mod security;
mod service;
mod tls;
mod token_paths;
