//! Sending a delivery (§4, §6): one shared HTTP client, concurrency limits (global and per
//! destination host), and the pure classification of what an attempt's result means.

mod client;
mod limits;
mod outcome;

pub use client::{Attempt, Sender};
pub use limits::{Limits, Permits};
pub use outcome::{AttemptResult, Verdict, classify, parse_retry_after, status_class};
