//! A template's `circuit_breaker` settings: when a destination's breaker opens and for
//! how long. The breaker itself is [`crate::deliver::circuit`].

use serde::{Deserialize, Serialize};

/// When a destination's breaker opens and for how long (a template's `circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Failures within the window that open the breaker, if they are also at least
    /// `failure_rate_percent` of its requests (1–10,000).
    #[serde(default = "default_failures")]
    pub failure_threshold: u32,
    /// The share of the window's requests that must have failed to open it (1–100).
    #[serde(default = "default_failure_rate")]
    pub failure_rate_percent: u32,
    /// The sliding window over which requests and failures are counted (1–3,600 s).
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// How long the breaker stays open before one probe request is let through (1–3,600 s).
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    /// How long a delivery may wait behind the open breaker (counted from its first
    /// failure) before it is dead-lettered as `circuit_open_expired` (60 s – 30 days).
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: u64,
}

fn default_failures() -> u32 {
    20
}
fn default_failure_rate() -> u32 {
    50
}
fn default_window() -> u64 {
    60
}
fn default_cooldown() -> u64 {
    30
}
fn default_max_wait() -> u64 {
    24 * 3600
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: default_failures(),
            failure_rate_percent: default_failure_rate(),
            window_seconds: default_window(),
            cooldown_seconds: default_cooldown(),
            max_wait_seconds: default_max_wait(),
        }
    }
}

impl BreakerSettings {
    /// `Err((field, message))` for a value out of bounds.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=10_000).contains(&self.failure_threshold) {
            return Err(("failure_threshold", "must be between 1 and 10000"));
        }
        if !(1..=100).contains(&self.failure_rate_percent) {
            return Err(("failure_rate_percent", "must be between 1 and 100"));
        }
        if !(1..=3600).contains(&self.window_seconds) {
            return Err(("window_seconds", "must be between 1 and 3600"));
        }
        if !(1..=3600).contains(&self.cooldown_seconds) {
            return Err(("cooldown_seconds", "must be between 1 and 3600"));
        }
        if !(60..=30 * 86_400).contains(&self.max_wait_seconds) {
            return Err(("max_wait_seconds", "must be between 60 and 2592000 (30 days)"));
        }
        Ok(())
    }
}
