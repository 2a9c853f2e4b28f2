//! The admin edge (docs/api.md): what a campaign manager does in a dashboard and an
//! operator in a terminal. [`service`] holds the operations (templates saved after a test
//! request, read, listed and deleted with credentials masked; OAuth 2.0 tokens; campaign
//! stats; dead-letter replay); [`api`] serves them over HTTP under `/v1`, [`cli`] from the
//! command line, and [`replay`] reads and replays the dead-letter topic. Nothing here is on
//! the delivery path.

pub mod api;
pub mod cli;
mod hint;
pub mod problem;
pub mod replay;
pub mod service;

pub use service::{
    Admin, AdminError, EventAttempts, Page, Preview, RenderedRequest, ReplayOptions, ReplayReport, SaveMode,
    Saved, TestReport, TokenReport,
};
