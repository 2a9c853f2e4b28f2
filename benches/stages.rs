//! Per-stage CPU of one delivery (criterion): event parse, render (with its URL parse and
//! body serialisation), building the reqwest request (headers, URL), signing, the offset
//! tracker, the metrics calls, the template cache and the tracing spans of a delivery.
//! The event and template are `scripts/bench`'s: 5 profiles, one 609-byte request.
//! `cargo bench --bench stages`; allocation counts per stage: `cargo bench --bench allocations`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use webhook_dispatcher::auth::sign;
use webhook_dispatcher::config::LogFormat;
use webhook_dispatcher::consume::OffsetTracker;
use webhook_dispatcher::event::TriggerEvent;
use webhook_dispatcher::metrics::{MethodLabel, Metrics, StatusClass};
use webhook_dispatcher::render::{IDEMPOTENCY_KEY, render};
use webhook_dispatcher::template::{MemoryStore, TemplateCache, TemplateStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAX_RENDERED: usize = 16 << 20;

fn stages(c: &mut Criterion) {
    let bytes = common::event_bytes(42);
    let event = common::event(42);
    let prepared = common::template("http://127.0.0.1:9", "none");
    let delivery = render(&prepared, &event, MAX_RENDERED)
        .expect("renders")
        .remove(0);
    let body = delivery.body.clone().expect("POST has a body");

    c.bench_function("event_parse", |b| {
        b.iter(|| TriggerEvent::parse(black_box(&bytes), common::LIMITS).expect("valid"))
    });
    c.bench_function("render", |b| {
        b.iter(|| render(black_box(&prepared), black_box(&event), MAX_RENDERED).expect("renders"))
    });
    c.bench_function("render/url_parse", |b| {
        b.iter(|| url::Url::parse(black_box("http://127.0.0.1:9/hooks/1234")).expect("valid"))
    });
    c.bench_function("render/body_serialise", |b| {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            is_test: bool,
            #[serde(rename = "targetId")]
            target_id: i64,
            key_values: &'a webhook_dispatcher::event::KeyValues,
            profiles: &'a [webhook_dispatcher::event::Profile],
        }
        b.iter(|| {
            serde_json::to_vec(&Body {
                is_test: event.is_test,
                target_id: event.target_id,
                key_values: black_box(&event.key_values),
                profiles: black_box(&event.profiles),
            })
            .expect("serialises")
        })
    });
    let client = reqwest::Client::new();
    c.bench_function("request_build", |b| {
        b.iter(|| {
            client
                .request(reqwest::Method::POST, black_box(&delivery).url.clone())
                .headers(delivery.headers.clone())
                .timeout(Duration::from_millis(5000))
                .body(body.clone())
                .build()
                .expect("valid request")
        })
    });
    let key = sign::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
    c.bench_function("sign", |b| {
        b.iter(|| {
            let mut headers = delivery.headers.clone();
            let id = headers[IDEMPOTENCY_KEY].to_str().unwrap_or_default().to_string();
            sign::sign(&mut headers, &key, &id, 1_764_000_000, &body);
            headers
        })
    });
    c.bench_function("offsets/track_settle", |b| {
        // 16 partitions, settled 64 records behind the newest (out of order within them).
        let mut tracker = OffsetTracker::new();
        let mut tickets = std::collections::VecDeque::new();
        let mut offset = 0i64;
        b.iter(|| {
            let partition = (offset % 16) as i32;
            tickets.push_back(tracker.track(partition, offset / 16));
            offset += 1;
            if tickets.len() > 64 {
                let i = (offset as usize * 7) % tickets.len();
                let ticket = tickets.remove(i).expect("in range");
                black_box(tracker.settle(ticket));
            }
        })
    });
    let metrics = Metrics::new();
    c.bench_function("metrics/per_delivery", |b| {
        // What one event of one delivery records: consumed, cache hit, request, delivered,
        // settled, in-flight gauge.
        b.iter(|| {
            metrics.event_consumed("campaign-triggers");
            metrics.template_cache("hit");
            metrics.inflight().inc();
            metrics.request(MethodLabel::Post, StatusClass::Success, 0.0012);
            metrics.inflight().dec();
            metrics.delivered();
            metrics.event_settled("campaign-triggers", 0.0031);
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new());
    let template: webhook_dispatcher::template::Template = serde_json::from_value(serde_json::json!(
        {"id": "bench", "url": "http://127.0.0.1:9/hooks/{{ targetId }}", "headers": {"X-Source": "campaigns"}}
    ))
    .expect("valid template");
    runtime.block_on(store.put(&template)).expect("stored");
    let cache = TemplateCache::new(store, Duration::from_secs(30), Arc::new(Metrics::new()));
    c.bench_function("template_cache/hit", |b| {
        b.iter(|| runtime.block_on(cache.get(black_box("bench"))).expect("found"))
    });
    // The service's subscriber (JSON, info): spans are built even though nothing is logged.
    let _logs = webhook_dispatcher::telemetry::init_with_default(LogFormat::Json, "info");
    c.bench_function("tracing/event_and_delivery_spans", |b| {
        b.iter(|| {
            let span = tracing::info_span!("event", event_id = %event.event_id,
                                           template_id = %event.template_id, target_id = event.target_id);
            span.in_scope(|| {
                tracing::info_span!("delivery", chunk = 0, attempt = 1, profiles = 5)
                    .in_scope(|| tracing::debug!(latency_ms = 1u64, "delivered"))
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);
