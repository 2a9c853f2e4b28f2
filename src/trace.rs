//! Traces (W3C trace context and OpenTelemetry): a trigger record's `traceparent` (and
//! `tracestate`) Kafka headers continue into its delivery; each attempt sends the receiver
//! a `traceparent` of its own in that trace, and a parked delivery carries the failed
//! attempt's, so a retry (and a replayed dead letter) joins the same trace. A record
//! without one starts a new trace.
//!
//! Spans (`consume` per record, `render`, `attempt` per request, `park`) are exported over
//! OTLP/HTTP (protobuf) only when the standard variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and
//! `OTEL_TRACES_EXPORTER` not `none`; the exporter and batch processor read the other
//! `OTEL_*` variables themselves). Without export no span is made: the ids are drawn as the
//! SDK would and only carried (about 1,560 instructions per delivery, +2.6 % on the event
//! loop: docs/performance.md, "Traces with export off"). The
//! spans are made with the OpenTelemetry API directly rather than from the `tracing` spans:
//! a bridge layer would build span data for every log span whether or not anything is
//! exported.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider, Tracer};

/// The header (Kafka and HTTP) with the trace and the calling span.
pub const TRACEPARENT: &str = "traceparent";
/// Vendors' trace data, carried as it came.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` carried: W3C lets vendors cut at 512 characters.
const TRACESTATE_MAX: usize = 512;

/// The exporting tracer, when export is on.
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Where a span sits: the trace, its own id, the sampled flag and vendors' state.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceParent(SpanContext);

impl TraceParent {
    /// The context in `traceparent` / `tracestate` values (from a Kafka record's headers);
    /// `None` when there is none or it is not valid W3C trace context.
    pub fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<TraceParent> {
        let traceparent = traceparent?;
        let tracestate = tracestate.filter(|s| s.len() <= TRACESTATE_MAX);
        let carrier = Carrier(traceparent, tracestate);
        let context = TraceContextPropagator::new().extract(&carrier);
        let span = context.span().span_context().clone();
        span.is_valid().then_some(TraceParent(span))
    }

    /// The `traceparent` header's value.
    pub fn traceparent(&self) -> String {
        self.text().as_str().to_string()
    }

    /// The `traceparent` header's value on the stack.
    pub fn text(&self) -> TraceparentText {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.0.trace_id().to_bytes(), &mut text[3..35]);
        hex_into(&self.0.span_id().to_bytes(), &mut text[36..52]);
        hex_into(&[self.0.trace_flags().to_u8()], &mut text[53..55]);
        TraceparentText(text)
    }

    /// The trace id as a number: how the log span carries it.
    pub fn trace_id(&self) -> u128 {
        u128::from_be_bytes(self.0.trace_id().to_bytes())
    }

    /// The span id as a number: how the log span carries it.
    pub fn span_id(&self) -> u64 {
        u64::from_be_bytes(self.0.span_id().to_bytes())
    }

    /// The `tracestate` header's value, when there is one.
    pub fn tracestate(&self) -> Option<String> {
        let state = self.0.trace_state().header();
        (!state.is_empty()).then_some(state)
    }

    /// The context as record headers: `traceparent`, and `tracestate` when there is one.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> {
        let state = self.tracestate().map(|state| (TRACESTATE, state));
        std::iter::once((TRACEPARENT, self.traceparent())).chain(state)
    }
}

/// Lower-case hex of `bytes` into `out`, which is twice as long. The `hex` crate's encoder
/// took ~19 instructions a byte here; this loop takes ~6, on every attempt's `traceparent`.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A `traceparent` value made without `format!`: written per attempt, the formatting
/// machinery cost ~3,300 instructions per delivery more than hex encoding into a stack buffer
/// (callgrind, `scripts/bench` with 20,000 events).
pub struct TraceparentText([u8; 55]);

impl TraceparentText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII hex and dashes")
    }
}

/// `traceparent` and `tracestate` as the propagator reads them.
struct Carrier<'a>(&'a str, Option<&'a str>);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.0),
            TRACESTATE => self.1,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// One step of a delivery's trace: `consume`, `render`, `attempt` or `park`. Exported
/// when it ends (dropped) if export is on; otherwise only its ids exist.
pub struct Step {
    at: TraceParent,
    /// Boxed: a step lives in every delivery's future, which is moved whole.
    span: Option<Box<opentelemetry_sdk::trace::Span>>,
}

/// What a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A record taken from Kafka (trigger or retry tier).
    Consume,
    /// The requests made from the template.
    Render,
    /// One HTTP request to the destination.
    Attempt,
    /// A failed delivery written to a retry tier or the dead-letter topic.
    Park,
}

impl StepKind {
    fn name(self) -> &'static str {
        match self {
            StepKind::Consume => "consume",
            StepKind::Render => "render",
            StepKind::Attempt => "attempt",
            StepKind::Park => "park",
        }
    }

    fn span_kind(self) -> SpanKind {
        match self {
            StepKind::Consume => SpanKind::Consumer,
            StepKind::Render => SpanKind::Internal,
            StepKind::Attempt => SpanKind::Client,
            StepKind::Park => SpanKind::Producer,
        }
    }
}

impl Step {
    /// A step under `parent` (a record's `traceparent`, or another step), or the first of
    /// a new trace.
    pub fn start(kind: StepKind, parent: Option<&TraceParent>) -> Step {
        match TRACER.get() {
            Some(tracer) => {
                let parent = parent.map_or_else(Context::new, |p| {
                    Context::new().with_remote_span_context(p.0.clone())
                });
                let span = tracer
                    .span_builder(kind.name())
                    .with_kind(kind.span_kind())
                    .start_with_context(tracer, &parent);
                Step {
                    at: TraceParent(span.span_context().clone()),
                    span: Some(Box::new(span)),
                }
            }
            None => {
                let ids = RandomIdGenerator::default();
                let context = match parent {
                    Some(p) => SpanContext::new(
                        p.0.trace_id(),
                        ids.new_span_id(),
                        p.0.trace_flags(),
                        false,
                        p.0.trace_state().clone(),
                    ),
                    // Sampled: nothing is recorded here, but a receiver that samples by
                    // its caller's choice records its part.
                    None => SpanContext::new(
                        ids.new_trace_id(),
                        ids.new_span_id(),
                        TraceFlags::SAMPLED,
                        false,
                        TraceState::NONE,
                    ),
                };
                Step {
                    at: TraceParent(context),
                    span: None,
                }
            }
        }
    }

    /// A step whose id nothing outside the process sees unless spans are exported (`render`:
    /// nothing it calls takes it as parent): made only when they are.
    pub fn start_exported(kind: StepKind, parent: &TraceParent) -> Option<Step> {
        TRACER.get().map(|_| Step::start(kind, Some(parent)))
    }

    /// Where this step is: the parent of what it calls.
    pub fn at(&self) -> &TraceParent {
        &self.at
    }

    /// Whether the step is exported: what is noted on it is kept.
    pub fn recording(&self) -> bool {
        self.span.is_some()
    }

    /// Notes `key` = `value` on the exported span (nothing without export).
    pub fn note(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the exported span failed, with `why`.
    pub fn failed(&mut self, why: impl Into<std::borrow::Cow<'static, str>>) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(why));
        }
    }
}

/// Keeps the exporter; dropped at the end of the process, it sends what is still batched.
#[must_use = "dropping it stops the export"]
pub struct TraceGuard(Option<SdkTracerProvider>);

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Whether the environment asks for export, or an error naming the variable that is wrong.
fn export_asked(var: impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(exporter) = set("OTEL_TRACES_EXPORTER") {
        match exporter.trim() {
            "none" => return Ok(false),
            "otlp" => {}
            other => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER: {other:?} is not supported (otlp or none)"
                ));
            }
        }
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = set(name)
            && protocol.trim() != "http/protobuf"
        {
            return Err(format!(
                "{name}: {protocol:?} is not supported; the dispatcher exports OTLP over HTTP \
                 (http/protobuf)"
            ));
        }
    }
    Ok(set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some())
}

/// Starts exporting spans when the environment asks for it (see the module); an error
/// names the variable that is wrong. Later calls keep the first exporter.
pub fn init() -> Result<TraceGuard, String> {
    if !export_asked(|name| std::env::var(name).ok())? {
        return Ok(TraceGuard(None));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: cannot export spans: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("webhook-dispatcher");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("webhook-dispatcher")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    if TRACER.set(tracer).is_err() {
        return Ok(TraceGuard(None));
    }
    Ok(TraceGuard(Some(provider)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_as_it_came() {
        let parent = TraceParent::parse(Some(PARENT), Some("vendor=opaque")).unwrap();
        assert_eq!(parent.traceparent(), PARENT);
        assert_eq!(parent.tracestate().as_deref(), Some("vendor=opaque"));
        assert_eq!(parent.text().as_str(), PARENT);
        assert_eq!(parent.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id(), 0x00f067aa0ba902b7);
    }

    #[test]
    fn an_invalid_traceparent_is_none() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "not a traceparent",
        ] {
            assert_eq!(TraceParent::parse(Some(bad), None), None, "{bad:?}");
        }
        assert_eq!(TraceParent::parse(None, Some("vendor=x")), None);
    }

    #[test]
    fn without_export_a_step_continues_its_parents_trace_with_an_id_of_its_own() {
        let parent = TraceParent::parse(Some(PARENT), Some("vendor=opaque")).unwrap();
        let step = Step::start(StepKind::Attempt, Some(&parent));
        let (at, from) = (step.at(), &parent);
        assert_eq!(at.trace_id(), from.trace_id());
        assert_ne!(at.span_id(), from.span_id());
        assert_eq!(step.at().tracestate().as_deref(), Some("vendor=opaque"));
        assert!(step.at().traceparent().ends_with("-01"));
        let root = Step::start(StepKind::Consume, None);
        let other = Step::start(StepKind::Consume, None);
        assert_ne!(root.at().trace_id(), other.at().trace_id(), "a new trace each");
        assert!(TraceParent::parse(Some(&root.at().traceparent()), None).is_some());
    }

    #[test]
    fn the_environment_decides_export_and_a_wrong_value_is_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(export_asked(env(&[])), Ok(false));
        assert_eq!(
            export_asked(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])),
            Ok(true)
        );
        assert_eq!(
            export_asked(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4318/v1/traces"
            )])),
            Ok(true)
        );
        assert_eq!(
            export_asked(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_TRACES_EXPORTER", "none")
            ])),
            Ok(false)
        );
        let grpc = export_asked(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]));
        assert!(grpc.unwrap_err().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let zipkin = export_asked(env(&[("OTEL_TRACES_EXPORTER", "zipkin")]));
        assert!(zipkin.unwrap_err().starts_with("OTEL_TRACES_EXPORTER"));
    }
}
