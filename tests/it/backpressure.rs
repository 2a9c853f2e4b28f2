//! A slow receiver and a large backlog: in-flight requests stay within the limits,
//! partitions pause, and memory stays bounded whatever the backlog.

use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{Process, World, scrape};

const EVENTS: usize = 100_000;
/// Each record carries ~2 KiB of key_values, so the backlog is ~200 MiB: far more than the
/// bound below, which only holds if the dispatcher does not buffer the backlog.
const PADDING: usize = 2048;
/// The stated bound on the dispatcher's peak resident memory with these settings.
const RSS_BOUND: u64 = 100 << 20;
/// Unsettled records per partition before it pauses.
const WINDOW: usize = 200;
/// Unsettled record bytes before every partition pauses: with 50 partitions x WINDOW x 2 KiB
/// (20 MiB) the memory budget, not the windows, is what binds.
const BUDGET: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_and_a_large_backlog_stay_within_limits() {
    // 50 partitions: librdkafka's mock cluster (without a broker for the run) keeps 5 MiB
    // per partition, so the whole backlog stays on it either way.
    let world = World::new(50);
    let receiver = Receiver::counting(|_, _| Reply::status(200).after(Duration::from_millis(20))).await;
    // Two destination hosts on one receiver: 127.0.0.1 and localhost. A long timeout, so
    // the dispatcher never abandons a request the receiver still counts as in flight.
    world
        .put_template(json!({"id": "a", "url": receiver.url("/a"), "timeout_ms": 120000}))
        .await;
    let localhost = receiver.url("/b").replace("127.0.0.1", "localhost");
    world
        .put_template(json!({"id": "b", "url": localhost, "timeout_ms": 120000}))
        .await;

    let padding = "x".repeat(PADDING);
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            let template = ["a", "b"][i % 2];
            let value = json!({"event_id": format!("e{i}"), "template_id": template, "targetId": 1,
                               "key_values": {"padding": padding}, "profiles": [{"Identity": i}]});
            (None, value.to_string().into_bytes())
        })
        .collect();
    world.produce(&records).await;
    assert_eq!(
        world.starts().await,
        vec![0; 50],
        "the whole backlog is on the broker"
    );
    assert_eq!(world.ends().await.iter().sum::<i64>(), EVENTS as i64);

    let process = Process::spawn(
        &world,
        &[
            ("WD_MAX_INFLIGHT", "12"),
            ("WD_MAX_PER_HOST", "8"),
            ("WD_PARTITION_WINDOW", &WINDOW.to_string()),
            ("WD_MAX_PENDING_BYTES", &BUDGET.to_string()),
        ],
    )
    .await;
    let mut peak_pending = 0.0f64;
    let mut saw_paused = false;
    let mut saw_full = false;
    // At least 8 s; then until the budget, full for longer than the consumer holds off
    // receiving, has paused the partitions (up to 30 s in all).
    for round in 0..300 {
        if round >= 80 && saw_paused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(pending) = scrape(process.metrics_addr, "webhook_pending_events").await {
            peak_pending = peak_pending.max(pending);
        }
        saw_paused |= scrape(process.metrics_addr, "webhook_partitions_paused")
            .await
            .unwrap_or(0.0)
            > 0.0;
        saw_full |= scrape(process.metrics_addr, "webhook_memory_budget_full")
            .await
            .unwrap_or(0.0)
            > 0.0;
    }
    let rss = process.peak_rss();
    let sent = receiver.count();
    eprintln!(
        "backlog {EVENTS} x {PADDING} B: sent {sent}, max in flight {}, peak pending {peak_pending}, peak RSS {} MiB",
        receiver.max_in_flight(),
        rss >> 20
    );
    let log = process.log_text();
    assert!(process.terminate().await.success(), "graceful exit; log:\n{log}");

    assert!(sent > 100, "deliveries flowed ({sent})");
    assert!(
        (sent as usize) < EVENTS,
        "the backlog was not drained in the window ({sent})"
    );
    assert!(
        receiver.max_in_flight() <= 12,
        "global limit: {} in flight",
        receiver.max_in_flight()
    );
    assert!(saw_paused, "partitions were paused by backpressure");
    assert!(saw_full, "the memory budget was full, and said so");
    // The budget is checked after each receive batch (at most 512 records), so it can be
    // overshot by one batch.
    let bound = (BUDGET / PADDING + 512) as f64;
    assert!(
        peak_pending <= bound,
        "pending events {peak_pending} exceed the memory budget ({bound})"
    );
    assert!(
        rss > 0 && rss < RSS_BOUND,
        "peak RSS {} MiB over the {} MiB bound",
        rss >> 20,
        RSS_BOUND >> 20
    );
}

/// A backlog far larger than the memory budget, into a receiver that keeps up: the budget
/// holds off receiving while it is full, and never pauses a partition (a pause would drop
/// what librdkafka prefetched, to fetch it again on resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_holds_off_receiving_without_pausing_while_the_backlog_drains() {
    const EVENTS: usize = 20_000;
    let world = World::new(16);
    let receiver = Receiver::counting(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "fast", "url": receiver.url("/fast")}))
        .await;
    // ~2 KiB per record: a 40 MiB backlog against a 2 MiB budget.
    let padding = "x".repeat(PADDING);
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            let value = json!({"event_id": format!("e{i}"), "template_id": "fast", "targetId": 1,
                               "key_values": {"padding": padding}, "profiles": [{"Identity": i}]});
            (None, value.to_string().into_bytes())
        })
        .collect();
    world.produce(&records).await;
    assert_eq!(
        world.starts().await,
        vec![0; 16],
        "the whole backlog is on the broker"
    );

    let process = Process::spawn(
        &world,
        &[
            ("WD_MAX_PENDING_BYTES", &(2 << 20).to_string()),
            ("RUST_LOG", "info,webhook_dispatcher::consume=debug"),
        ],
    )
    .await;
    crate::helpers::eventually(
        Duration::from_secs(180),
        "the whole backlog delivered",
        || async { receiver.count() as usize >= EVENTS },
    )
    .await;
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the memory budget no longer full",
        || async { scrape(process.metrics_addr, "webhook_memory_budget_full").await == Some(0.0) },
    )
    .await;
    let log = process.log_text();
    assert!(process.terminate().await.success(), "graceful exit; log:\n{log}");
    assert_eq!(receiver.count() as usize, EVENTS, "each event delivered once");
    let held = log.matches("memory budget: receiving held off").count();
    assert!(
        held > 0,
        "the budget was full at times, so receiving was held off"
    );
    assert!(
        !log.contains("pausing partition (backpressure)"),
        "no partition was paused: the budget drained each time within the hold ({held} holds)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_and_per_template_limits_hold() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(30))).await;
    let other = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(30))).await;
    world
        .put_template(json!({"id": "host", "url": receiver.url("/")}))
        .await;
    world
        .put_template(json!({"id": "narrow", "url": other.url("/"), "max_concurrency": 2}))
        .await;
    let records: Vec<_> = (0..300)
        .map(|i| {
            (
                None,
                crate::helpers::event(&format!("e{i}"), ["host", "narrow"][i % 2], 1),
            )
        })
        .collect();
    world.produce(&records).await;
    let app = crate::helpers::TestApp::spawn(&world, &[("WD_MAX_PER_HOST", "5")]).await;
    crate::helpers::eventually(Duration::from_secs(60), "all delivered", || async {
        app.metrics.deliveries("delivered") == 300
    })
    .await;
    assert!(
        receiver.max_in_flight() <= 5,
        "per-host limit: {}",
        receiver.max_in_flight()
    );
    assert!(
        other.max_in_flight() <= 2,
        "template max_concurrency: {}",
        other.max_in_flight()
    );
    assert!(receiver.max_in_flight() >= 2, "requests did run concurrently");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_rate_limit_spaces_its_requests_and_leaves_others_alone() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(
            json!({"id": "limited", "url": receiver.url("/limited"), "rate_limit_per_sec": 5,
                             "batch_size": 1}),
        )
        .await;
    world
        .put_template(json!({"id": "free", "url": receiver.url("/free"), "batch_size": 1}))
        .await;
    let app = crate::helpers::TestApp::spawn(&world, &[]).await;
    let records: Vec<_> = (0..4)
        .map(|i| (Some(i % 2), crate::helpers::event(&format!("l{i}"), "limited", 3)))
        .chain((0..20).map(|i| (Some(i % 2), crate::helpers::event(&format!("f{i}"), "free", 3))))
        .collect();
    world.produce(&records).await;
    crate::helpers::eventually(Duration::from_secs(30), "every request received", || async {
        receiver.count() == 12 + 60
    })
    .await;
    let requests = receiver.requests();
    let limited: Vec<_> = requests
        .iter()
        .filter(|r| r.uri == "/limited")
        .map(|r| r.at)
        .collect();
    assert_eq!(limited.len(), 12);
    // 12 requests at 5/s leave the dispatcher at least 200 ms apart. They are timed on
    // arrival, where one late request shortens the gap after it (and lengthens the one
    // before): the median gap is what a loaded machine cannot pull down.
    let mut gaps: Vec<Duration> = limited.windows(2).map(|p| p[1].duration_since(p[0])).collect();
    gaps.sort();
    assert!(
        gaps[gaps.len() / 2] >= Duration::from_millis(190),
        "gaps {gaps:?}"
    );
    // The free template did not queue behind the limited one: its 60 requests were all in
    // while the limited one was still being spaced out over more than 2 s.
    let last_free = requests
        .iter()
        .filter(|r| r.uri == "/free")
        .map(|r| r.at)
        .max()
        .unwrap();
    assert!(last_free < *limited.last().unwrap());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_renders_large_is_rendered_as_it_is_sent() {
    // 3 KB of event whose key_values render to 3 MB, one request per profile, 60 profiles:
    // 180 MB of requests in all, within a raised max_rendered_bytes. Rendered all at once
    // they would be resident together; rendered as they are sent, only those in flight are.
    let world = World::new(1);
    let receiver = Receiver::counting(|_, _| Reply::status(200).after(Duration::from_millis(50))).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "batch_size": 1}))
        .await;
    let bomb: serde_json::Map<String, serde_json::Value> = (0..10)
        .map(|i| (format!("k{i}"), json!("{{ 'x' * 300000 }}")))
        .collect();
    let profiles: Vec<_> = (0..60).map(|i| json!({"Identity": i})).collect();
    let event = json!({"event_id": "big", "template_id": "t", "targetId": 1,
                       "key_values": bomb, "profiles": profiles});
    world.produce(&[(Some(0), event.to_string().into_bytes())]).await;
    let process = Process::spawn(&world, &[("WD_MAX_RENDERED_BYTES", &(512u64 << 20).to_string())]).await;
    let delivered =
        crate::helpers::eventually_ok(Duration::from_secs(60), || async { receiver.count() >= 60 }).await;
    let rss = process.peak_rss();
    let log = process.log_text();
    assert!(process.terminate().await.success(), "graceful exit; log:\n{log}");
    assert!(
        delivered,
        "all 60 requests arrived ({}); log:\n{log}",
        receiver.count()
    );
    eprintln!("180 MB of rendered requests: peak RSS {} MiB", rss >> 20);
    assert!(
        rss > 0 && rss < 120 << 20,
        "peak RSS {} MiB: the event's requests were held all at once",
        rss >> 20
    );
}
