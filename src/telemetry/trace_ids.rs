//! A delivery's trace and span ids on its JSON log lines, as top-level `trace_id` and
//! `span_id` (W3C hex, where the OpenTelemetry log data model puts them).
//!
//! The ids are kept on the event's log span as numbers ([`attach`], a span extension) and
//! written as hex only when a line is written in that span or below it ([`WithTraceIds`]).
//! As span fields they were formatted into every event span's JSON whether or not a line
//! was ever written in it: ~1,000 instructions per delivery (callgrind, `scripts/bench`
//! with 20,000 events, docs/performance.md "Traces").

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::trace::{TraceParent, hex_into};

/// The ids a log span carries.
#[derive(Debug, Clone, Copy)]
struct LogIds {
    trace_id: u128,
    span_id: u64,
}

/// Gives `span` (an event's log span) the trace and span ids of `at`, for the lines written
/// in it. Nothing happens when the span is disabled or the subscriber is not this module's.
pub fn attach(span: &tracing::Span, at: &TraceParent) {
    let ids = LogIds {
        trace_id: at.trace_id(),
        span_id: at.span_id(),
    };
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        if let Some(span) = registry.span(id) {
            span.extensions_mut().insert(ids);
        }
    });
}

/// A JSON event format whose lines gain `trace_id` and `span_id` when one of their spans
/// has them ([`attach`]); other lines are written as the inner format writes them.
pub(super) struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx
            .event_scope()
            .and_then(|mut scope| scope.find_map(|span| span.extensions().get::<LogIds>().copied()));
        let Some(ids) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(512);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let Some(object) = line.trim_end_matches('\n').strip_suffix('}') else {
            return writer.write_str(&line);
        };
        let mut trace_id = [0u8; 32];
        hex_into(&ids.trace_id.to_be_bytes(), &mut trace_id);
        let mut span_id = [0u8; 16];
        hex_into(&ids.span_id.to_be_bytes(), &mut span_id);
        fn hex(digits: &[u8]) -> &str {
            std::str::from_utf8(digits).unwrap_or_default()
        }
        let comma = if object.ends_with('{') { "" } else { "," };
        writeln!(
            writer,
            r#"{object}{comma}"trace_id":"{}","span_id":"{}"}}"#,
            hex(&trace_id[..]),
            hex(&span_id[..])
        )
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::super::tests::Buffer;
    use super::*;

    /// The JSON lines `log` writes: one in an event's span, one in a span below it, one
    /// outside both.
    fn lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(super::super::json_layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn lines_in_an_event_s_spans_carry_its_ids_in_hex_and_others_none() {
        let at = TraceParent::parse(
            Some("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"),
            None,
        )
        .unwrap();
        let written = lines(|| {
            let event = tracing::info_span!("event", target_id = 7u64);
            attach(&event, &at);
            event.in_scope(|| {
                tracing::warn!(reason = "x", "in the event");
                tracing::info_span!("delivery", chunk = 1u64).in_scope(|| tracing::warn!("below it"));
            });
            tracing::warn!("outside");
        });
        assert_eq!(written.len(), 3);
        for line in &written[..2] {
            assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{line}");
            assert_eq!(line["span_id"], "00f067aa0ba902b7", "{line}");
        }
        assert_eq!(written[0]["span"]["target_id"], 7, "{}", written[0]);
        assert_eq!(written[0]["reason"], "x");
        assert_eq!(written[1]["span"]["chunk"], 1, "{}", written[1]);
        assert!(written[2].get("trace_id").is_none(), "{}", written[2]);
        assert_eq!(written[2]["message"], "outside");
    }
}
