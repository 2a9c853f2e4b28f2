//! Sending a delivery: one shared HTTP client, concurrency limits (global and
//! per destination host), credentials and Standard Webhooks signatures (from [`crate::auth`]),
//! the SSRF guard, a circuit breaker per host, and the pure classification of what an
//! attempt's result means.

mod answer;
pub mod circuit;
mod client;
mod connector;
mod fair;
mod headers;
mod limits;
mod outcome;
mod pool;
mod rates;

pub use crate::guard::NetworkPolicy;
pub use client::{Attempt, Sender, SenderOptions, Sending};
pub use limits::{Hosts, Limits, Permits};
pub use outcome::{AttemptResult, Verdict, classify, parse_retry_after, status_class};
pub use rates::{Accepted, SharedLimits};
