//! Faults reproduced: nothing an input or a rebalance does may stall a partition, panic the
//! service or escape the memory budget; every record ends somewhere, with a reason.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use webhook_dispatcher::config::Config;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::template::{MemoryStore, StoreError, Template, TemplateStore};
use webhook_dispatcher::{App, Templates};

use crate::helpers::{TestApp, World, event, eventually};

/// A store whose `get` panics for one template id: a stand-in for any bug in the pipeline.
struct PanickingStore {
    inner: MemoryStore,
}

#[async_trait::async_trait]
impl TemplateStore for PanickingStore {
    async fn get(&self, id: &str) -> Result<Option<Template>, StoreError> {
        if id == "bug" {
            panic!("a bug in the pipeline");
        }
        self.inner.get(id).await
    }
    async fn put(&self, template: &Template) -> Result<(), StoreError> {
        self.inner.put(template).await
    }
    async fn create(&self, template: &Template) -> Result<bool, StoreError> {
        self.inner.create(template).await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.ids().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_dead_letters_its_record_as_internal_error_and_the_partition_flows_on() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let store = PanickingStore {
        inner: MemoryStore::default(),
    };
    let template: Template = serde_json::from_value(json!({"id": "ok", "url": receiver.url("/")})).unwrap();
    store.put(&template).await.unwrap();
    let config = Config::load_from(world.vars()).unwrap();
    let app = App::build(config, Templates::Store(Arc::new(store)))
        .await
        .unwrap();
    let metrics = app.metrics();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    world
        .produce(&[
            (Some(0), event("before", "ok", 1)),
            (Some(0), event("the-bug", "bug", 1)),
            (Some(0), event("after", "ok", 1)),
        ])
        .await;

    eventually(
        Duration::from_secs(20),
        "both healthy events delivered",
        || async { receiver.count() == 2 },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the offset committed past the panic",
        || async { world.committed().await == vec![3] },
    )
    .await;
    assert_eq!(metrics.dead_letters("internal_error"), 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.reason(), "internal_error");
    assert_eq!(letter.key.as_deref(), Some("the-bug"));
    assert_eq!(
        letter.value,
        event("the-bug", "bug", 1),
        "the raw record, for replay"
    );
    assert_eq!(letter.headers["wd-original-offset"], "1");
    assert!(
        letter.headers["wd-last-error"].contains("a bug in the pipeline"),
        "{:?}",
        letter.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_kafka_is_dead_lettered_as_a_stub_and_the_partition_flows_on() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "ok", "url": receiver.url("/")}))
        .await;
    // The service accepts 2 MiB events; the operator's producer limit (as a broker's would)
    // is 900,000 bytes: an invalid 990 kB record cannot be parked whole.
    let app = TestApp::spawn(
        &world,
        &[
            ("WD_MAX_EVENT_BYTES", "2097152"),
            ("WD_KAFKA_PROPERTIES", "message.max.bytes=900000"),
        ],
    )
    .await;
    let oversize = vec![b'x'; 990_000];
    world
        .produce(&[(Some(0), oversize.clone()), (Some(0), event("after", "ok", 1))])
        .await;

    eventually(
        Duration::from_secs(20),
        "the event after it delivered",
        || async { receiver.count() == 1 },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the offset committed past both",
        || async { world.committed().await == vec![2] },
    )
    .await;
    app.stop().await;

    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let stub = &letters[0];
    assert_eq!(stub.reason(), "invalid_event");
    assert_eq!(stub.headers["wd-original-topic"], world.topic);
    assert_eq!(stub.headers["wd-original-offset"], "0");
    assert_eq!(stub.value.len(), webhook_dispatcher::park::STUB_VALUE_BYTES);
    assert_eq!(stub.value, oversize[..stub.value.len()]);
    let why = &stub.headers["wd-last-error"];
    assert!(
        why.contains("990000-byte record") && why.contains("truncated"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_naming_the_trigger_record_through_every_tier() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    world
        .put_template(json!({"id": "down", "url": receiver.url("/"), "max_retries": 2}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world
        .produce(&[
            (Some(1), event("skip", "missing", 0)),
            (Some(1), event("e", "down", 1)),
        ])
        .await;
    eventually(Duration::from_secs(30), "retries exhausted", || async {
        app.metrics.dead_letters("retries_exhausted") == 1
    })
    .await;
    app.stop().await;

    assert_eq!(receiver.count(), 3, "attempt 1 and two retries");
    let letter = world
        .dead_letters()
        .await
        .into_iter()
        .find(|l| l.reason() == "retries_exhausted")
        .unwrap();
    assert_eq!(letter.headers["wd-original-topic"], world.topic);
    assert_eq!(letter.headers["wd-original-partition"], "1");
    assert_eq!(letter.headers["wd-original-offset"], "1");
    assert_eq!(letter.headers["wd-attempt"], "3");
    for tier in 1..=2 {
        for record in world.retry_records(tier).await {
            assert_eq!(record.headers["wd-original-topic"], world.topic, "tier {tier}");
            assert_eq!(record.headers["wd-original-offset"], "1", "tier {tier}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_tier_partition_paused_by_its_window_resumes_when_it_drains() {
    let world = World::new(1);
    // Every first attempt fails; every retry is slow, then succeeds: the tier partition's
    // window (3) fills with retries in flight and it pauses with nothing left to hold.
    let attempts = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<String, u32>::new(),
    ));
    let seen = attempts.clone();
    let flaky = Receiver::start(move |r, _| {
        let key = r.header("idempotency-key").unwrap_or_default().to_string();
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(key).or_default();
        *n += 1;
        if *n == 1 {
            Reply::status(503)
        } else {
            Reply::status(200).after(Duration::from_millis(300))
        }
    })
    .await;
    world
        .put_template(json!({"id": "flaky", "url": flaky.url("/"), "max_retries": 2,
                             // 30 first attempts fail in a row: keep the breaker out of it.
                             "circuit_breaker": {"failure_threshold": 1000}}))
        .await;
    let app = TestApp::spawn(&world, &[("WD_PARTITION_WINDOW", "3"), ("WD_MAX_INFLIGHT", "4")]).await;
    let records: Vec<_> = (0..30)
        .map(|i| (Some(0), event(&format!("e{i}"), "flaky", 1)))
        .collect();
    world.produce(&records).await;

    eventually(
        Duration::from_secs(60),
        "every event delivered on its retry",
        || async { app.metrics.deliveries("delivered") == 30 },
    )
    .await;
    app.stop().await;
    assert_eq!(flaky.count(), 60, "one failure and one retry per event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_when_revoked_flows_again_when_it_comes_back() {
    const PARTITIONS: i32 = 4;
    let world = World::new(PARTITIONS);
    // The first 8 requests hang (longer than the rebalances take, and within the template's
    // timeout), so every partition of the first replica fills its window (2) and is still
    // paused when the second replica joins and takes some of them. librdkafka keeps that
    // pause on the partitions that come back when the second leaves: unless the first sets
    // their fetch state on assignment, they never fetch again.
    let receiver = Receiver::start(|_, n| {
        let reply = Reply::status(200);
        if n < 8 {
            reply.after(Duration::from_secs(25))
        } else {
            reply
        }
    })
    .await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "timeout_ms": 60000}))
        .await;
    let settings = [
        ("WD_MAX_INFLIGHT", "8"),
        ("WD_PARTITION_WINDOW", "2"),
        ("WD_KAFKA_PROPERTIES", "max.poll.interval.ms=7000"),
    ];
    let first = TestApp::spawn(&world, &settings).await;
    let records: Vec<_> = (0..PARTITIONS * 5)
        .map(|i| (Some(i % PARTITIONS), event(&format!("old{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    eventually(Duration::from_secs(30), "the first requests hang", || async {
        receiver.count() >= 8
    })
    .await;

    let second = TestApp::spawn(&world, &settings).await;
    eventually(
        Duration::from_secs(60),
        "the second replica took partitions",
        || async { second.metrics.deliveries("delivered") > 0 },
    )
    .await;
    second.stop().await;

    // Every partition is the first replica's again: new events on each must flow.
    let fresh: Vec<_> = (0..PARTITIONS * 2)
        .map(|i| (Some(i % PARTITIONS), event(&format!("fresh{i}"), "t", 1)))
        .collect();
    world.produce(&fresh).await;
    eventually(Duration::from_secs(60), "every fresh event delivered", || async {
        let delivered: std::collections::HashSet<String> = receiver
            .requests()
            .iter()
            .filter_map(|r| r.header("idempotency-key"))
            .filter(|k| k.starts_with("fresh"))
            .map(str::to_string)
            .collect();
        delivered.len() == fresh.len()
    })
    .await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_only_slows_its_own_traffic() {
    let world = World::new(1);
    let hanging = Receiver::start(|_, _| Reply::status(200).after(Duration::from_secs(12))).await;
    let healthy = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(
            json!({"id": "hang", "url": hanging.url("/"), "max_concurrency": 2,
                             "timeout_ms": 30000}),
        )
        .await;
    world
        .put_template(json!({"id": "ok", "url": healthy.url("/")}))
        .await;
    // 10 requests in flight at most, so at most 20 records in progress: the 25 events to the
    // hanging destination come first and would take every slot.
    let app = TestApp::spawn(&world, &[("WD_MAX_INFLIGHT", "10")]).await;
    let mut records: Vec<_> = (0..25)
        .map(|i| (Some(0), event(&format!("slow{i}"), "hang", 1)))
        .collect();
    records.extend((0..5).map(|i| (Some(0), event(&format!("fast{i}"), "ok", 1))));
    world.produce(&records).await;
    eventually(
        Duration::from_secs(10),
        "the healthy destination's events delivered",
        || async { healthy.count() == 5 },
    )
    .await;
    assert_eq!(hanging.max_in_flight(), 2, "the hanging host keeps its own limit");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_opens_its_circuit_and_everything_is_delivered_after_recovery() {
    const EVENTS: usize = 100;
    let world = World::new(2);
    let first_request = std::sync::OnceLock::new();
    // Down (503) for 3 seconds from its first request, then healthy.
    let receiver = Receiver::start(move |_, _| {
        let started = first_request.get_or_init(std::time::Instant::now);
        if started.elapsed() < Duration::from_secs(3) {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    world
        .put_template(
            json!({"id": "t", "url": receiver.url("/"), "max_retries": 20, "max_concurrency": 4,
                             "circuit_breaker": {"failure_threshold": 5, "window_seconds": 10,
                                                 "cooldown_seconds": 1}}),
        )
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some((i % 2) as i32), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    eventually(
        Duration::from_secs(60),
        "every event delivered after recovery",
        || async { app.metrics.deliveries("delivered") == EVENTS as u64 },
    )
    .await;
    let opened = app.metrics.circuit_transitions("open");
    let closed = app.metrics.circuit_transitions("closed");
    let open_now = crate::helpers::scrape(app.metrics_addr, "webhook_circuit_open").await;
    app.stop().await;

    let failed_attempts = receiver.count() as usize - EVENTS;
    assert!(opened >= 1 && closed >= 1, "opened {opened}, closed {closed}");
    assert_eq!(open_now, Some(0.0));
    // Without the breaker every event fails its first attempt and the retries due within the
    // 3 s fail too: over EVENTS failed requests. With it: the threshold, the requests already
    // in flight (max_concurrency) and a probe per cool-down.
    assert!(
        failed_attempts < EVENTS / 4,
        "{failed_attempts} failed requests reached the failing destination for {EVENTS} deliveries"
    );
    let history = world.dead_letters().await;
    assert!(history.is_empty(), "nothing dead-lettered: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_behind_a_breaker_that_stays_open_end_and_their_records_stay_small() {
    const EVENTS: usize = 6;
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    // Down for good: one failure opens the breaker, a probe every 2 s, a minute's wait at
    // most (the shortest a template may set). A delivery that happens to be the probe is
    // attempted (and may use up its 30 retries); the others wait, and their wait ends.
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "max_retries": 30,
                             "circuit_breaker": {"failure_threshold": 1, "cooldown_seconds": 2,
                                                 "max_wait_seconds": 60}}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some(0), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    // About 90 s on a quiet machine: the waits end after the minute, and the deliveries left
    // then are probes at every half-open (there are fewer of them than probes), so they end
    // by their retries, a few seconds apart. A loaded machine stretches that tail.
    eventually(
        Duration::from_secs(240),
        "every delivery dead-lettered once its wait is over",
        || async { app.metrics.deliveries("dead_lettered") == EVENTS as u64 },
    )
    .await;
    app.stop().await;
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), EVENTS);
    let expired = letters
        .iter()
        .filter(|l| l.reason() == "circuit_open_expired")
        .count();
    let exhausted = letters
        .iter()
        .filter(|l| l.reason() == "retries_exhausted")
        .count();
    assert_eq!(expired + exhausted, EVENTS, "{letters:?}");
    assert!(expired >= EVENTS / 2, "{expired} of {EVENTS} ended by the wait");
    for letter in &letters {
        let value = letter.json();
        assert!(letter.value.len() < 8 * 1024, "{} bytes", letter.value.len());
        let kept = value["attempts"].as_array().unwrap().len();
        let total = value["attempts_total"].as_u64().unwrap();
        assert!(kept <= 8 && total as usize >= kept, "{value}");
    }
    // Parked while the breaker was open, on the tier that covers its cool-down: tier 2
    // (2 s) rather than tier 1 (1 s) every time, and no record larger than the last.
    let passes = world.retry_records(1).await.len() + world.retry_records(2).await.len();
    let tier_2 = world.retry_records(2).await.len();
    assert!(tier_2 * 2 > passes, "{tier_2} of {passes} passes on tier 2");
    let largest = world
        .retry_records(1)
        .await
        .into_iter()
        .chain(world.retry_records(2).await)
        .map(|r| r.value.len())
        .max()
        .unwrap_or(0);
    assert!(largest < 8 * 1024, "a retry record of {largest} bytes");
    // A minute of waiting at one pass per tier delay or more: linear, not quadratic.
    assert!(passes <= EVENTS * 70, "{passes} passes");
    eprintln!(
        "breaker open for a minute: {EVENTS} deliveries, {passes} passes ({tier_2} on tier 2), largest record {largest} bytes, {} requests reached the destination",
        receiver.count()
    );
}

/// A dispatcher dropped mid-run (its runtime shutting down after a test failed, say) with its
/// broker already gone lets the runtime go at once: closing a consumer with no broker takes
/// librdkafka minutes, and done inside the dropped task it would hold the runtime (and CI)
/// for all that time.
#[test]
fn a_dispatcher_dropped_mid_run_with_its_broker_gone_lets_its_runtime_go() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The mock cluster: the test drops its broker.
    let world = World::on_mock(2);
    let (receiver, app) = runtime.block_on(async {
        let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_secs(60))).await;
        world
            .put_template(json!({"id": "t", "url": receiver.url("/")}))
            .await;
        let app = TestApp::spawn(&world, &[]).await;
        world
            .produce(&[(Some(0), event("e0", "t", 1)), (Some(1), event("e1", "t", 1))])
            .await;
        eventually(Duration::from_secs(30), "both requests in flight", || async {
            receiver.count() >= 2
        })
        .await;
        (receiver, app)
    });
    // The broker goes first, as when a test body unwinds.
    drop(world);
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(app);
        drop(runtime);
        drop(receiver);
        let _ = done.send(());
    });
    assert!(
        dropped.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the runtime was still held 30 s after it was dropped"
    );
}
