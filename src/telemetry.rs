//! Logs (§7): JSON in production, human-readable on a terminal; verbosity from `RUST_LOG`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with `default_filter` when `RUST_LOG` is not set.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// How often a repeating fault (a dependency down) is logged again, with a count.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The log budget for faults that repeat while a dependency is down: `Some(suppressed)` when
/// a line of this `kind` may be written now (the first one at once, then one per
/// [`REPEAT_INTERVAL`], saying how many were suppressed meanwhile), `None` otherwise.
pub fn limited(kind: &str) -> Option<u64> {
    static BUDGET: OnceLock<Mutex<HashMap<String, (Instant, u64)>>> = OnceLock::new();
    let mut seen = BUDGET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    match seen.get_mut(kind) {
        Some((last, suppressed)) if now.duration_since(*last) < REPEAT_INTERVAL => {
            *suppressed += 1;
            None
        }
        Some((last, suppressed)) => {
            *last = now;
            Some(std::mem::take(suppressed))
        }
        None => {
            // Kinds are a small fixed set (facilities, error codes); bound it anyway.
            if seen.len() >= 1024 {
                seen.clear();
            }
            seen.insert(kind.to_string(), (now, 0));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_fault_is_logged_once_per_interval() {
        assert_eq!(limited("test-kind"), Some(0));
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("other-kind"), Some(0));
    }
}
