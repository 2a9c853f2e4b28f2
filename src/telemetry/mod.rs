//! Logs (docs/observability.md): JSON in production, human-readable on a terminal;
//! verbosity from `RUST_LOG`.
//!
//! A line is never written on the thread that logs it: an event loop hands it to a bounded
//! queue that one writer thread empties into standard error, so a log collector that reads
//! stderr slowly (or a pipe nobody reads) cannot stall deliveries. When the queue is full
//! the line is dropped and counted (`webhook_log_lines_dropped_total`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

mod fields;
mod trace_ids;

use fields::SpanFields;
use trace_ids::WithTraceIds;
pub use trace_ids::attach as attach_trace_ids;

/// Lines waiting for standard error at most: with lines of at most [`MAX_LOG_LINE`], 16 MiB
/// at the very worst, a few MiB with the usual lines.
const QUEUED_LINES: usize = 8_192;

/// The count of lines dropped because standard error was not read fast enough.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped since the start because the queue to standard error was full.
pub fn dropped_log_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Keeps the log writer's thread; dropped at the end of the process, it writes out the
/// lines still queued (for at most about a second, should stderr not be read).
#[must_use = "dropping it stops writing the logs"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber; later calls are ignored (tests start many apps).
pub fn init(format: LogFormat) -> LogGuard {
    init_with_default(format, "info")
}

/// As [`init`], with `default_filter` when `RUST_LOG` is not set.
///
/// A filter of targets and levels only (`info`, `webhook_dispatcher=debug,rdkafka=warn`), the
/// usual case, is a [`Targets`] filter: it decides per callsite, once. `EnvFilter`, needed
/// for span and field directives (`[delivery]=debug`), also looks up every span on every
/// enter and exit, and the pipeline enters a span per event and per delivery on each poll.
pub fn init_with_default(format: LogFormat, default_filter: &str) -> LogGuard {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let (queue, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = queue.error_counter();
    let stderr = Stderr { json, queue };
    let layer = if json {
        json_layer(stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(stderr).boxed()
    };
    let registry = tracing_subscriber::registry().with(layer);
    let installed = match filter(std::env::var("RUST_LOG").ok().as_deref(), default_filter) {
        Filter::Targets(targets) => registry.with(*targets).try_init(),
        Filter::Env(env) => registry.with(*env).try_init(),
    };
    match installed {
        Ok(()) => {
            let _ = DROPPED.set(dropped);
            LogGuard { _writer: Some(guard) }
        }
        Err(_) => LogGuard { _writer: None },
    }
}

/// The JSON lines' layer: one object per line, the event's fields at the top level, the
/// current span's under `span` (written by [`SpanFields`]), and a delivery's trace and span
/// ids at the top level ([`WithTraceIds`]).
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'lookup> tracing_subscriber::registry::LookupSpan<'lookup>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        // "main" or "event-loop-N": which event loop (worker_threads) wrote the line.
        .with_thread_names(true);
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .event_format(WithTraceIds(format))
        .fmt_fields(SpanFields)
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

/// The longest log line at INFO or above, in bytes (with its newline). Text from outside
/// (an event's field quoted in a parse error, a broker's message) can be any length; a log
/// pipeline should not have to carry a megabyte line because an event was odd.
pub const MAX_LOG_LINE: usize = 2048;

/// Standard error through the writer thread's queue, with lines at INFO and above kept
/// within [`MAX_LOG_LINE`].
struct Stderr {
    json: bool,
    queue: NonBlocking,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            json: self.json,
            capped: false,
            queue: self.queue.clone(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            json: self.json,
            // Levels compare by verbosity: INFO, WARN and ERROR are at most INFO.
            capped: *meta.level() <= Level::INFO,
            queue: self.queue.clone(),
        }
    }
}

/// One log line on its way to standard error (the formatter writes each line at once, and
/// the queue takes each write as one line).
struct Line {
    json: bool,
    capped: bool,
    queue: NonBlocking,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = if self.capped && buf.len() > MAX_LOG_LINE {
            Cow::Owned(shorten(buf, self.json, MAX_LOG_LINE))
        } else {
            Cow::Borrowed(buf)
        };
        self.queue.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `line` cut to at most `max` bytes. A JSON line stays JSON with the same fields: its long
/// strings are cut (each says how many bytes it lost) until the line fits, and if even that
/// is not enough, what is left is its timestamp, level, target and the start of its
/// message; other text is cut at the end.
fn shorten(line: &[u8], json: bool, max: usize) -> Vec<u8> {
    if json && let Ok(original) = serde_json::from_slice::<serde_json::Value>(line) {
        let fits = |value: &serde_json::Value| {
            let mut out = serde_json::to_vec(value).expect("a JSON value serialises");
            out.push(b'\n');
            (out.len() <= max).then_some(out)
        };
        let mut keep = max / 2;
        while keep >= 16 {
            // From the original each time, so each marker counts what its string lost.
            let mut value = original.clone();
            cut_strings(&mut value, keep);
            if let Some(out) = fits(&value) {
                return out;
            }
            keep /= 2;
        }
        let mut essentials = serde_json::Map::new();
        for key in ["timestamp", "level", "target", "message"] {
            if let Some(field) = original.get(key) {
                essentials.insert(key.to_string(), field.clone());
            }
        }
        essentials.insert("truncated_bytes".to_string(), line.len().into());
        let mut value = serde_json::Value::Object(essentials);
        cut_strings(&mut value, 64);
        if let Some(out) = fits(&value) {
            return out;
        }
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    // Room for the marker with as many digits as the whole line's length.
    let room = max.saturating_sub(format!("… ({} bytes cut)\n", text.len()).len());
    let kept = truncate(text, room);
    format!("{kept}… ({} bytes cut)\n", text.len() - kept.len()).into_bytes()
}

/// Cuts every string in `value` longer than `keep` bytes (and its marker) to its first
/// `keep` bytes and a marker saying how many bytes it lost.
fn cut_strings(value: &mut serde_json::Value, keep: usize) {
    const MARKER: usize = "… (00000000 bytes cut)".len();
    match value {
        serde_json::Value::String(text) if text.len() > keep + MARKER => {
            let kept = truncate(text, keep).len();
            let cut = text.len() - kept;
            text.truncate(kept);
            text.push_str(&format!("… ({cut} bytes cut)"));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| cut_strings(item, keep)),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(|field| cut_strings(field, keep)),
        _ => {}
    }
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

/// The longest prefix of `text` within `max` bytes, on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error and its causes, joined by `: ` (for details that travel as text: the last error
/// of a delivery, a token request's failure).
/// The first error of type `T` in `err`'s chain of sources (`err` included).
pub fn cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

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

    /// A writer into a shared buffer, for the layer under test.
    #[derive(Clone, Default)]
    pub(super) struct Buffer(pub(super) std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// The line a warning inside an event span writes, with `layer` as the only layer.
    fn line_in_a_span<L>(layer: impl FnOnce(Buffer) -> L) -> serde_json::Value
    where
        L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let id = "e-\"1\"\n\u{1}é";
            let span = tracing::info_span!("event", event_id = %id, template_id = "t\\1",
                                           target_id = -7i64, count = 3u64, test = true, ratio = 0.5,
                                           plain = "nothing to escape, é");
            let _entered = span.enter();
            tracing::warn!(reason = "x", "inside");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        serde_json::from_str(text.trim_end()).expect("one JSON line")
    }

    #[test]
    fn span_fields_read_as_the_json_layers_own() {
        let ours = line_in_a_span(json_layer);
        let theirs = line_in_a_span(|writer| {
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .json()
                .flatten_event(true)
                .with_current_span(true)
        });
        assert_eq!(
            ours["span"],
            serde_json::json!({"name": "event", "event_id": "e-\"1\"\n\u{1}é", "template_id": "t\\1",
                               "target_id": -7, "count": 3, "test": true, "ratio": 0.5,
                               "plain": "nothing to escape, é"})
        );
        assert_eq!(ours["span"], theirs["span"]);
        assert_eq!(ours["reason"], "x");
        assert_eq!(ours["message"], "inside");
    }

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
    fn a_long_json_line_stays_json_with_every_field_and_fits() {
        let huge = "é".repeat(100_000);
        let line = format!(
            "{}\n",
            serde_json::json!({"level": "WARN", "message": "invalid event", "error": huge, "topic": "t"})
        );
        let short = shorten(line.as_bytes(), true, MAX_LOG_LINE);
        assert!(short.len() <= MAX_LOG_LINE, "{} bytes", short.len());
        assert!(short.ends_with(b"\n"));
        let value: serde_json::Value = serde_json::from_slice(&short).expect("still JSON");
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["message"], "invalid event");
        assert_eq!(value["topic"], "t");
        let error = value["error"].as_str().unwrap();
        assert!(
            error.starts_with("éé") && error.ends_with("bytes cut)"),
            "{error:.80}"
        );
    }

    #[test]
    fn each_cut_string_says_what_it_lost_even_when_several_rounds_were_needed() {
        // Two long strings: the first round (1024 bytes each) does not fit, the second does.
        let (a, b) = ("a".repeat(100_000), "b".repeat(50_000));
        let line = format!(
            "{}\n",
            serde_json::json!({"level": "INFO", "span": a, "spans": b})
        );
        let short = shorten(line.as_bytes(), true, MAX_LOG_LINE);
        assert!(short.len() <= MAX_LOG_LINE);
        let value: serde_json::Value = serde_json::from_slice(&short).unwrap();
        let kept = |field: &str| value[field].as_str().unwrap().split('…').next().unwrap().len();
        assert!(
            value["span"]
                .as_str()
                .unwrap()
                .ends_with(&format!("({} bytes cut)", 100_000 - kept("span")))
        );
        assert!(
            value["spans"]
                .as_str()
                .unwrap()
                .ends_with(&format!("({} bytes cut)", 50_000 - kept("spans")))
        );
    }

    #[test]
    fn a_json_line_of_many_fields_is_still_json_when_cut() {
        let mut fields = serde_json::Map::new();
        fields.insert("level".into(), "WARN".into());
        fields.insert("message".into(), "many fields".into());
        for i in 0..500 {
            fields.insert(format!("field_{i}"), format!("value {i}").into());
        }
        let line = format!("{}\n", serde_json::Value::Object(fields));
        let short = shorten(line.as_bytes(), true, MAX_LOG_LINE);
        assert!(short.len() <= MAX_LOG_LINE);
        let value: serde_json::Value = serde_json::from_slice(&short).expect("still JSON");
        assert_eq!(value["message"], "many fields");
        assert_eq!(value["truncated_bytes"], line.len());
    }

    #[test]
    fn a_long_text_line_is_cut_at_a_character_and_says_so() {
        let line = format!("WARN invalid event: {}\n", "ü".repeat(5_000));
        let short = shorten(line.as_bytes(), false, MAX_LOG_LINE);
        assert!(short.len() <= MAX_LOG_LINE);
        let text = String::from_utf8(short).expect("cut on a character boundary");
        assert!(text.starts_with("WARN invalid event: üü"));
        let kept = text.split('…').next().unwrap().len();
        assert!(text.ends_with(&format!("… ({} bytes cut)\n", line.len() - 1 - kept)));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn a_repeating_fault_is_logged_once_per_interval() {
        assert_eq!(limited("test-kind"), Some(0));
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("test-kind"), None);
        assert_eq!(limited("other-kind"), Some(0));
    }
}
