//! Logs (§7): JSON in production, human-readable on a terminal; verbosity from `RUST_LOG`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with `default_filter` when `RUST_LOG` is not set.
///
/// A filter of targets and levels only (`info`, `webhook_dispatcher=debug,rdkafka=warn`), the
/// usual case, is a [`Targets`] filter: it decides per callsite, once. `EnvFilter`, needed
/// for span and field directives (`[delivery]=debug`), also looks up every span on every
/// enter and exit, and the pipeline enters a span per event and per delivery on each poll.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if json {
        layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // "main" or "event-loop-N": which event loop (worker_threads) wrote the line.
            .with_thread_names(true)
            .boxed()
    } else {
        layer.boxed()
    };
    let registry = tracing_subscriber::registry().with(layer);
    let _ = match filter(std::env::var("RUST_LOG").ok().as_deref(), default_filter) {
        Filter::Targets(targets) => registry.with(*targets).try_init(),
        Filter::Env(env) => registry.with(*env).try_init(),
    };
}

enum Filter {
    Targets(Box<Targets>),
    Env(Box<EnvFilter>),
}

/// The filter of `rust_log`, or of `default_filter` when it is unset or invalid (as
/// `EnvFilter::try_from_default_env` falls back).
fn filter(rust_log: Option<&str>, default_filter: &str) -> Filter {
    let spec = match rust_log {
        Some(spec) if EnvFilter::try_new(spec).is_ok() => spec,
        _ => default_filter,
    };
    // Span (`[name]`) and field (`{field}`) directives need EnvFilter; Targets reads the rest
    // (an empty filter too means something else to each: EnvFilter keeps it).
    if !spec.contains(['[', '{'])
        && !spec.trim().is_empty()
        && let Ok(targets) = spec.parse::<Targets>()
    {
        return Filter::Targets(Box::new(targets));
    }
    Filter::Env(Box::new(EnvFilter::new(spec)))
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

/// An error and its causes, joined by `: ` (for details that travel as text: the last error
/// of a delivery, a token request's failure).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut detail = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_filters_are_targets_and_span_filters_stay_env_filters() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        let targets = |rust_log, default| match filter(rust_log, default) {
            Filter::Targets(targets) => Some(targets),
            Filter::Env(_) => None,
        };
        let t = targets(None, "info").expect("a level is a Targets filter");
        assert!(t.would_enable("webhook_dispatcher::pipeline", &Level::INFO));
        assert!(!t.would_enable("webhook_dispatcher::pipeline", &Level::DEBUG));
        let t = targets(Some("warn,webhook_dispatcher=debug"), "info").expect("targets");
        assert!(t.would_enable("webhook_dispatcher::render", &Level::DEBUG));
        assert!(!t.would_enable("librdkafka", &Level::INFO));
        assert_eq!(
            targets(Some("off"), "info").map(|t| t.default_level()),
            Some(Some(LevelFilter::OFF))
        );
        // Invalid: the default, as before.
        let t = targets(Some("webhook_dispatcher=loud"), "error").expect("the default");
        assert!(!t.would_enable("webhook_dispatcher", &Level::WARN));
        assert!(targets(Some("[delivery]=debug"), "info").is_none());
        assert!(targets(Some(""), "info").is_none());
        assert!(targets(Some("webhook_dispatcher[event{event_id=e1}]=trace"), "info").is_none());
    }

    #[test]
    fn a_repeating_fault_is_logged_once_per_interval() {
        assert_eq!(limited("test-kind"), Some(0));
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("other-kind"), Some(0));
    }
}
