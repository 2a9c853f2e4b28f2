//! What every Kafka client of the service shares: librdkafka's log lines and errors go
//! through the log budget (a broker that is down for a minute is a handful of lines, not one
//! per connection attempt), no line is longer than [`MAX_LINE`], and statistics are never
//! logged: the consumers turn them into `webhook_consumer_lag`, other clients ask for none.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use tracing::{debug, error, info, warn};

use crate::telemetry::{self, truncate};

/// Longest librdkafka message kept in a log line (librdkafka's own are short; this keeps a
/// pathological one from flooding the log pipeline).
pub const MAX_LINE: usize = 1024;

/// A librdkafka log line, through the budget when it is a warning or worse.
pub fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let message = truncate(message, MAX_LINE);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            if let Some(suppressed) = telemetry::limited(&format!("librdkafka:{facility}")) {
                error!(target: "librdkafka", facility, suppressed, "{message}");
            }
        }
        RDKafkaLogLevel::Warning => {
            if let Some(suppressed) = telemetry::limited(&format!("librdkafka:{facility}")) {
                warn!(target: "librdkafka", facility, suppressed, "{message}");
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// A client-level error (broker down, authentication failed), through the budget: the first
/// of a kind is logged at once, then one line per interval saying how many followed.
pub fn client_error(error: &KafkaError, reason: &str) {
    if let Some(suppressed) = telemetry::limited(&fault("kafka-error", error)) {
        warn!(error = %error, reason = truncate(reason, MAX_LINE), suppressed, "Kafka client error");
    }
}

/// An error a consumer's `recv` returned (brokers down, a fetch failed), through the budget
/// per kind of error: `what` says which consumer ("kafka consumer error").
pub fn consumer_error(error: &KafkaError, what: &'static str) {
    if let Some(suppressed) = telemetry::limited(&fault(what, error)) {
        warn!(error = %error, suppressed, "{what}");
    }
}

/// The log budget's kind of a Kafka error: `what` and the error's code, so a new cause is
/// said at once even while another one is being held back.
pub fn fault(what: &str, error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{what}:{code:?}"),
        None => what.to_string(),
    }
}

/// The context of clients that need nothing else (the producer, the topic watcher, the
/// dead-letter reader): logs through the budget, statistics ignored.
#[derive(Default, Clone, Copy)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn stats(&self, _statistics: Statistics) {}

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}
