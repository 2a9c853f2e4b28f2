//! Traces across the Kafka hop: a campaign engine's `traceparent` continues through the
//! dispatcher (a retry included) to the receiver, and the spans are exported over OTLP to a
//! local receiver that decodes them, as a collector would.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{Process, TestApp, World, event, eventually};

/// The campaign engine's span: trace 4bf9…4736, span 00f0…02b7, sampled.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PRODUCER_SPAN}-01")
}

/// `(trace id, parent span id)` of a `traceparent` header.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    (fields[1].to_string(), fields[2].to_string())
}

/// Every span the OTLP receiver got.
fn exported(otlp: &Receiver) -> Vec<Span> {
    otlp.requests()
        .iter()
        .filter(|r| r.uri.starts_with("/v1/traces"))
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.clone())
                .expect("an OTLP protobuf export")
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_trace_goes_through_a_retry_to_the_receiver_and_is_exported() {
    let world = World::new(1);
    // Fails the first attempt, accepts the retry.
    let crm = Receiver::start(|_, n| Reply::status(if n == 0 { 500 } else { 200 })).await;
    let helpdesk = Receiver::start(|_, _| Reply::status(400)).await;
    let otlp = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "crm", "url": crm.url("/hook"), "max_retries": 2}))
        .await;
    world
        .put_template(json!({"id": "helpdesk", "url": helpdesk.url("/tickets")}))
        .await;
    let app = Process::spawn(
        &world,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url("")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "dispatcher-under-test"),
        ],
    )
    .await;
    world
        .produce_with_headers(
            &event("traced", "crm", 1),
            &[("traceparent", &traceparent()), ("tracestate", "engine=run-7")],
        )
        .await;
    // And one that the helpdesk refuses, without a traceparent: a trace of its own.
    world.produce(&[(None, event("refused", "helpdesk", 1))]).await;
    eventually(Duration::from_secs(60), "the retry delivered", || async {
        crm.count() == 2
    })
    .await;

    // The receiver saw the producer's trace on both attempts, each from a span of its own,
    // with the vendors' state as it came.
    let sent: Vec<(String, String)> = crm
        .requests()
        .iter()
        .map(|r| parts(r.header("traceparent").expect("a traceparent on every attempt")))
        .collect();
    assert!(sent.iter().all(|(trace, _)| trace == TRACE), "{sent:?}");
    assert_ne!(sent[0].1, sent[1].1);
    assert!(
        crm.requests()
            .iter()
            .all(|r| r.header("tracestate") == Some("engine=run-7"))
    );

    // The exported spans make one trace: the producer's span → consume → attempt (500) →
    // park → consume of the retry → attempt (200), each the parent of the next; the
    // attempts' ids are the ones the receiver was given.
    let wanted = ["consume", "render", "attempt", "park"];
    let in_trace = || -> Vec<Span> {
        exported(&otlp)
            .into_iter()
            .filter(|s| hex(&s.trace_id) == TRACE)
            .collect()
    };
    eventually(Duration::from_secs(30), "the spans exported", || async {
        let spans = in_trace();
        spans.iter().filter(|s| s.name == "attempt").count() == 2
            && spans.iter().filter(|s| s.name == "consume").count() == 2
            && spans.iter().any(|s| s.name == "park")
    })
    .await;
    let spans = in_trace();
    for name in wanted {
        assert!(spans.iter().any(|s| s.name == name), "a {name} span");
    }
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let parent_of = |span: &Span| -> String { hex(&span.parent_span_id) };
    let named = |name: &str, parent: &str| -> &Span {
        spans
            .iter()
            .find(|s| s.name == name && parent_of(s) == parent)
            .unwrap_or_else(|| panic!("no {name} span under {parent}: {spans:#?}"))
    };
    let consume = named("consume", PRODUCER_SPAN);
    let first = named("attempt", &hex(&consume.span_id));
    let park = named("park", &hex(&first.span_id));
    let retried = named("consume", &hex(&park.span_id));
    let second = named("attempt", &hex(&retried.span_id));
    assert_eq!(
        hex(&first.span_id),
        sent[0].1,
        "the receiver's parent is the attempt"
    );
    assert_eq!(hex(&second.span_id), sent[1].1);
    assert_eq!(
        attribute(first, "http.response.status_code"),
        Some(AnyValue::IntValue(500))
    );
    assert_eq!(
        attribute(first, "webhook.retry_tier"),
        Some(AnyValue::IntValue(1))
    );
    assert_eq!(
        attribute(second, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(
        attribute(second, "webhook.outcome"),
        Some(AnyValue::StringValue("delivered".into()))
    );
    assert!(by_id.contains_key(&hex(&retried.span_id)));
    let service = otlp
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with("/v1/traces"))
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.clone())
                .unwrap()
                .resource_spans
        })
        .filter_map(|r| r.resource)
        .flat_map(|r| r.attributes)
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value?.value);
    assert_eq!(
        service,
        Some(AnyValue::StringValue("dispatcher-under-test".into()))
    );

    // The refused delivery: its warning carries its trace and consume step, its dead
    // letter the park step's context, and the exported park span says why.
    eventually(Duration::from_secs(30), "the refusal dead-lettered", || async {
        world.dead_letters().await.len() == 1
    })
    .await;
    let (refused_trace, refused_at) = parts(helpdesk.requests()[0].header("traceparent").unwrap());
    assert_ne!(refused_trace, TRACE);
    let log = app.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("dead-lettering the delivery"))
        .unwrap_or_else(|| panic!("the refusal's line in {log}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["trace_id"], refused_trace.as_str(), "{line}");
    let letter = &world.dead_letters().await[0];
    let (letter_trace, letter_parent) = parts(&letter.headers["traceparent"]);
    assert_eq!(letter_trace, refused_trace);
    eventually(
        Duration::from_secs(30),
        "the refusal's spans exported",
        || async { exported(&otlp).iter().any(|s| hex(&s.span_id) == letter_parent) },
    )
    .await;
    let spans = exported(&otlp);
    let park = spans.iter().find(|s| hex(&s.span_id) == letter_parent).unwrap();
    assert_eq!(park.name, "park");
    assert_eq!(
        hex(&park.parent_span_id),
        refused_at,
        "parked by the refused attempt"
    );
    let attempt = spans.iter().find(|s| hex(&s.span_id) == refused_at).unwrap();
    assert_eq!(
        attribute(attempt, "webhook.dead_letter_reason"),
        Some(AnyValue::StringValue("rejected".into()))
    );
    let consume = spans
        .iter()
        .find(|s| hex(&s.span_id) == hex(&attempt.parent_span_id))
        .unwrap();
    assert_eq!(line["span_id"], hex(&consume.span_id), "{line}");
    assert!(
        consume.parent_span_id.is_empty(),
        "a new trace starts at its consume step"
    );
    assert_eq!(app.terminate().await.code(), Some(0));
}

/// Without an exporter the context is still carried: a record's `traceparent` reaches the
/// receiver, and a record without one starts a trace of its own, one per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_export_the_trace_is_carried_and_each_event_without_one_starts_its_own() {
    let world = World::new(1);
    let crm = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "crm", "url": crm.url("/hook"), "batch_size": 1}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world
        .produce_with_headers(&event("traced", "crm", 1), &[("traceparent", &traceparent())])
        .await;
    // An invalid traceparent is ignored, as if there were none.
    world
        .produce_with_headers(&event("bad-parent", "crm", 1), &[("traceparent", "00-xyz")])
        .await;
    world.produce(&[(None, event("untraced", "crm", 2))]).await;
    eventually(Duration::from_secs(30), "every delivery", || async {
        crm.count() == 4
    })
    .await;
    let by_event = |id: &str| -> Vec<(String, String)> {
        crm.requests()
            .iter()
            .filter(|r| {
                r.header("idempotency-key")
                    .is_some_and(|k| k.starts_with(&format!("{id}:")))
            })
            .map(|r| parts(r.header("traceparent").expect("a traceparent")))
            .collect()
    };
    let traced = by_event("traced");
    assert_eq!(traced.len(), 1);
    assert_eq!(traced[0].0, TRACE);
    assert_ne!(traced[0].1, PRODUCER_SPAN, "sent from a span of the dispatcher's");
    let bad = by_event("bad-parent");
    assert_ne!(bad[0].0, TRACE);
    let untraced = by_event("untraced");
    assert_eq!(untraced.len(), 2, "two chunks");
    assert_eq!(
        untraced[0].0, untraced[1].0,
        "an event's requests share its trace"
    );
    assert_ne!(untraced[0].0, bad[0].0, "a new trace per event");
    assert_ne!(untraced[0].0, TRACE);
    app.stop().await;
}
