//! The service as an operator meets it: probes, metrics, configuration errors.

use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{OwnRedis, Process, TestApp, World, event, eventually, scrape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_are_served() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "max_retries": 0}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let get = |url: String| async move { reqwest::get(url).await.expect("answer") };

    assert_eq!(get(format!("http://{}/healthz", app.api)).await.status(), 200);
    eventually(
        Duration::from_secs(20),
        "ready once partitions are assigned",
        || async { get(format!("http://{}/readyz", app.api)).await.status() == 200 },
    )
    .await;

    world.produce(&[(Some(0), event("e1", "t", 2))]).await;
    eventually(Duration::from_secs(20), "the failure counted", || async {
        app.metrics.dead_letters("retries_exhausted") == 1
    })
    .await;
    let text = get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .text()
        .await
        .unwrap();
    for line in [
        &format!("webhook_events_consumed_total{{topic=\"{}\"}} 1", world.topic),
        "webhook_requests_total{method=\"POST\",status_class=\"5xx\"} 1",
        "webhook_deliveries_total{outcome=\"dead_lettered\"} 1",
        "webhook_deliveries_total{outcome=\"delivered\"} 0",
        "webhook_dead_letters_total{reason=\"retries_exhausted\"} 1",
        "webhook_dead_letters_total{reason=\"rejected\"} 0",
        "webhook_template_cache_requests_total{result=\"miss\"} 1",
        "webhook_inflight_requests 0",
        "webhook_request_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis() {
    let world = World::new(1);
    // A Redis URL nobody answers on: the service starts, is alive, and is not ready.
    let no_redis = crate::helpers::ClosedPort::new();
    let dead = format!("redis://127.0.0.1:{}", no_redis.port);
    let app = TestApp::spawn(&world, &[("WD_REDIS_URL", &dead)]).await;
    let api = app.api;
    assert_eq!(
        reqwest::get(format!("http://{api}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = reqwest::get(format!("http://{api}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
    assert_eq!(body["redis_up"], false);
    app.stop().await;
}

#[test]
fn invalid_configuration_stops_the_start_naming_the_key() {
    let bin = env!("CARGO_BIN_EXE_webhook-dispatcher");
    for (vars, named) in [
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "a-test-admin-token"),
                ("WD_MAX_INFLIGHT", "lots"),
            ],
            "WD_MAX_INFLIGHT",
        ),
        (vec![("WD_ADMIN_TOKEN", "a-test-admin-token")], "WD_KAFKA_BROKERS"),
        (vec![("WD_KAFKA_BROKERS", "k:9092")], "WD_ADMIN_TOKEN"),
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "a-test-admin-token"),
                ("WD_RETRY_DELAYS", "soon"),
            ],
            "WD_RETRY_DELAYS",
        ),
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "a-test-admin-token"),
                ("WD_LOG_FROMAT", "json"),
            ],
            "WD_LOG_FROMAT",
        ),
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "a-test-admin-token"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ] {
        let mut command = std::process::Command::new(bin);
        command.arg("run");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WD_")) {
            command.env_remove(key);
        }
        let output = command.envs(vars.clone()).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{vars:?}: {stderr}");
        assert!(stderr.contains(named), "{vars:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_makes_events_wait_not_fail() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let template = json!({"id": "t", "url": receiver.url("/")});
    let put = |url: String| {
        let template: webhook_dispatcher::template::Template =
            serde_json::from_value(template.clone()).unwrap();
        let prefix = world.prefix.clone();
        async move {
            let conn = redis::Client::open(url)
                .unwrap()
                .get_connection_manager()
                .await
                .unwrap();
            use webhook_dispatcher::template::TemplateStore;
            webhook_dispatcher::template::RedisStore::new(conn, prefix)
                .put(&template)
                .await
                .unwrap();
        }
    };
    let port = crate::helpers::free_port();
    let data = tempfile::tempdir().unwrap();
    let redis = OwnRedis::start_persistent(port, data.path());
    redis.wait_ready().await;
    put(redis.url()).await;
    // A short cache TTL so every event needs Redis.
    let app = TestApp::spawn(
        &world,
        &[("WD_REDIS_URL", &redis.url()), ("WD_TEMPLATE_CACHE_TTL", "50ms")],
    )
    .await;
    world.produce(&[(Some(0), event("before", "t", 1))]).await;
    eventually(Duration::from_secs(20), "the first event delivered", || async {
        receiver.count() == 1
    })
    .await;

    drop(redis); // killed (SIGKILL); its data is on disk
    // Once the service has noticed (and the cached template is long stale), the events come.
    eventually(
        Duration::from_secs(20),
        "not ready while Redis is down",
        || async {
            reqwest::get(format!("http://{}/readyz", app.api))
                .await
                .unwrap()
                .status()
                == 503
        },
    )
    .await;
    let waits = "webhook_dependency_waits_total{dependency=\"redis\"}";
    let consumed = format!("webhook_events_consumed_total{{topic=\"{}\"}}", world.topic);
    let waited_before = scrape(app.metrics_addr, waits).await.unwrap_or(0.0);
    let during: Vec<_> = (0..5)
        .map(|i| (Some(0), event(&format!("during{i}"), "t", 1)))
        .collect();
    world.produce(&during).await;
    // The events had time to fail, and must not: all of them consumed, and the store asked
    // (and waited for) three times as often as there are events.
    eventually(
        Duration::from_secs(20),
        "the events consumed and waiting for Redis",
        || async {
            scrape(app.metrics_addr, &consumed).await == Some(6.0)
                && scrape(app.metrics_addr, waits).await.unwrap_or(0.0) >= waited_before + 15.0
        },
    )
    .await;
    assert_eq!(receiver.count(), 1, "nothing sent without a template");
    assert_eq!(app.metrics.dead_letters("template_not_found"), 0);

    // Back with its data, as a Redis with persistence restarts. Not an empty one with the
    // template written again once it answers: the waiting events poll it, and one that
    // reads the empty store before the write is dead-lettered as `template_not_found`, rightly
    // (a missing template is the event's fault), which made this test fail 4 runs in 5.
    let redis = OwnRedis::start_persistent(port, data.path());
    redis.wait_ready().await;
    eventually(
        Duration::from_secs(30),
        "everything delivered once Redis is back",
        || async { receiver.count() == 6 },
    )
    .await;
    eventually(Duration::from_secs(20), "ready again and committed", || async {
        reqwest::get(format!("http://{}/readyz", app.api))
            .await
            .unwrap()
            .status()
            == 200
            && world.committed().await == vec![6]
    })
    .await;
    app.stop().await;
    assert!(
        world.dead_letters().await.is_empty(),
        "nothing dead-lettered for an infrastructure fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_changes_are_heard_again_after_redis_restarts() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let port = crate::helpers::free_port();
    let mut redis = OwnRedis::start(port);
    redis.wait_ready().await;
    let store = |url: String| {
        let prefix = world.prefix.clone();
        async move {
            let conn = redis::Client::open(url)
                .unwrap()
                .get_connection_manager()
                .await
                .unwrap();
            webhook_dispatcher::template::RedisStore::new(conn, prefix)
        }
    };
    let version = |path: &str| -> webhook_dispatcher::template::Template {
        serde_json::from_value(json!({"id": "t", "url": receiver.url(path)})).unwrap()
    };
    let channel = format!("{}template-changed", world.prefix);
    let subscribers = |url: String| {
        let channel = channel.clone();
        async move {
            let Ok(mut conn) = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
            else {
                return 0;
            };
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            counts.first().map_or(0, |(_, n)| *n)
        }
    };
    use webhook_dispatcher::template::TemplateStore;
    store(redis.url()).await.put(&version("/v1")).await.unwrap();
    let app = TestApp::spawn(
        &world,
        &[("WD_REDIS_URL", &redis.url()), ("WD_TEMPLATE_CACHE_TTL", "10m")],
    )
    .await;
    eventually(Duration::from_secs(10), "subscribed", || async {
        subscribers(redis.url()).await == 1
    })
    .await;
    world.produce(&[(None, crate::helpers::event("a", "t", 1))]).await;
    eventually(Duration::from_secs(20), "v1 used", || async {
        receiver.requests().len() == 1
    })
    .await;

    // Redis restarts empty; the subscription comes back by itself.
    drop(redis);
    redis = OwnRedis::start(port);
    redis.wait_ready().await;
    eventually(Duration::from_secs(20), "subscribed again", || async {
        subscribers(redis.url()).await == 1
    })
    .await;
    store(redis.url()).await.put(&version("/v2")).await.unwrap();
    world.produce(&[(None, crate::helpers::event("b", "t", 1))]).await;
    eventually(
        Duration::from_secs(20),
        "v2 used (the cache was dropped on reconnect)",
        || async { receiver.requests().iter().any(|r| r.uri == "/v2") },
    )
    .await;

    // A change published by another replica is heard on the new subscription.
    store(redis.url()).await.put(&version("/v3")).await.unwrap();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg("t")
        .query_async(&mut conn)
        .await
        .unwrap();
    world.produce(&[(None, crate::helpers::event("c", "t", 1))]).await;
    eventually(
        Duration::from_secs(10),
        "v3 used well before the 10 min TTL",
        || async { receiver.requests().iter().any(|r| r.uri == "/v3") },
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_a_configured_topic_does_not_exist() {
    let world = World::new(1);
    let missing = crate::helpers::unique("dlq-not-created");
    let app = TestApp::spawn(&world, &[("WD_DLQ_TOPIC", &missing)]).await;
    let readiness = || async {
        let answer = reqwest::get(format!("http://{}/readyz", app.api)).await.unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        (status, body)
    };
    eventually(
        Duration::from_secs(20),
        "assigned, but the missing topic named",
        || async {
            let (status, body) = readiness().await;
            status == 503 && body["kafka_joined"] == true && body["missing_topics"] == json!([missing])
        },
    )
    .await;
    world.kafka.create_topics(&[(&missing, 1)]);
    eventually(
        Duration::from_secs(20),
        "ready once the operator created it",
        || async { readiness().await.0 == 200 },
    )
    .await;
    let (_, body) = readiness().await;
    assert_eq!(body["missing_topics"], json!([]));
    app.stop().await;
}

/// Ready means able to work, not owning partitions: with more members than partitions, the
/// member left without one (the pod a rolling update adds, an idle replica) still answers
/// ready, and the gauges say who owns what.
async fn a_member_without_partitions_is_ready(settings: &[(&str, &str)]) {
    let world = World::on_broker(1);
    let owned = format!("webhook_partitions_assigned{{topic=\"{}\"}}", world.topic);
    let size = format!("webhook_topic_partitions{{topic=\"{}\"}}", world.topic);
    let first = Process::spawn(&world, settings).await;
    eventually(
        Duration::from_secs(30),
        "the first member owns the partition",
        || async { scrape(first.metrics_addr, &owned).await == Some(1.0) },
    )
    .await;
    let second = Process::spawn(&world, settings).await;
    let readyz = format!("http://{}/readyz", second.api);
    eventually(Duration::from_secs(30), "the second member is ready", || async {
        let Ok(answer) = reqwest::get(&readyz).await else {
            return false;
        };
        let ok = answer.status() == 200;
        let body: serde_json::Value =
            serde_json::from_str(&answer.text().await.unwrap_or_default()).unwrap_or_default();
        ok && body["kafka_joined"] == true
    })
    .await;
    eventually(Duration::from_secs(30), "one partition, owned once", || async {
        let mut owners = Vec::new();
        for process in [&first, &second] {
            owners.push(scrape(process.metrics_addr, &owned).await);
            if scrape(process.metrics_addr, &size).await != Some(1.0) {
                return false;
            }
        }
        owners.iter().flatten().sum::<f64>() == 1.0 && owners.contains(&Some(0.0))
    })
    .await;
    assert_eq!(
        reqwest::get(&readyz).await.unwrap().status(),
        200,
        "still ready without a partition"
    );
    assert!(first.terminate().await.success());
    assert!(second.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_partitions_is_ready_under_the_classic_protocol() {
    a_member_without_partitions_is_ready(&[("WD_KAFKA_PROPERTIES", "group.protocol=classic")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_partitions_is_ready_under_the_consumer_protocol() {
    a_member_without_partitions_is_ready(&[("WD_KAFKA_PROPERTIES", "group.protocol=consumer")]).await;
}

/// A log collector that stops reading standard error does not stop deliveries: lines that
/// do not fit the queue to stderr are dropped and counted, and the process still stops
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_error_nobody_reads_stalls_no_delivery() {
    // At debug level about a line per event: more than the queue to stderr holds.
    const EVENTS: u64 = 12_000;
    let world = World::new(2);
    let receiver = Receiver::counting(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    // A pipe whose reading end stays open and unread: it fills after 64 KiB.
    let unread = std::process::Stdio::piped();
    let process = Process::spawn_with_stderr(
        &world,
        &[("RUST_LOG", "debug")],
        unread,
        std::path::PathBuf::from("/dev/null"),
    );
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (None, event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    eventually(Duration::from_secs(90), "every event delivered", || async {
        receiver.count() >= EVENTS
    })
    .await;
    let dropped = scrape(process.metrics_addr, "webhook_log_lines_dropped_total")
        .await
        .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the lines that did not fit were counted as dropped"
    );
    assert!(process.terminate().await.success());
}
