//! First contact with production: compressed triggers from managed Kafka, a broker or
//! Redis that is down for a while (a log budget, not a flood), records deleted by
//! retention, metrics an operator expects.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{
    ClosedPort, OwnRedis, Process, TestApp, World, cli, event, eventually, free_port, scrape,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_compressed_with_every_codec_are_delivered() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", world.bootstrap())
            .set("compression.type", codec)
            .set("linger.ms", "50")
            .create()
            .unwrap_or_else(|e| panic!("a {codec} producer: {e}"));
        let sends = (0..25).map(|i| {
            let value = event(&format!("{codec}-{i}"), "t", 3);
            let key = format!("{codec}-{i}");
            let (producer, topic) = (&producer, &world.topic);
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
            }
        });
        for result in futures::future::join_all(sends).await {
            result.unwrap_or_else(|(e, _)| panic!("{codec}: {e}"));
        }
    }
    eventually(
        Duration::from_secs(30),
        "100 compressed triggers delivered",
        || async { receiver.count() == 100 },
    )
    .await;
    app.stop().await;
    for codec in codecs {
        let delivered = receiver
            .requests()
            .iter()
            .filter(|r| r.header("idempotency-key").is_some_and(|k| k.starts_with(codec)))
            .count();
        assert_eq!(delivered, 25, "{codec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_retry_and_dead_letter_records_are_read_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};
    let world = World::new(1);
    let status = Arc::new(AtomicU16::new(503));
    let receiver = {
        let status = status.clone();
        Receiver::start(move |_, _| Reply::status(status.load(Ordering::SeqCst))).await
    };
    world
        .put_template(json!({"id": "down", "url": receiver.url("/"), "max_retries": 1}))
        .await;
    let app = TestApp::spawn(&world, &[("WD_KAFKA_PROPERTIES", "compression.type=zstd")]).await;
    world.produce(&[(Some(0), event("e1", "down", 2))]).await;
    eventually(
        Duration::from_secs(20),
        "the retry ran and was dead-lettered",
        || async { app.metrics.dead_letters("retries_exhausted") == 1 },
    )
    .await;
    app.stop().await;
    assert_eq!(
        receiver.count(),
        2,
        "the zstd retry record was read and attempted"
    );
    let inspect = cli(&world, &["dlq", "inspect", "--json"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let letter: serde_json::Value = serde_json::from_str(inspect.stdout.trim()).unwrap();
    assert_eq!(letter["reason"], "retries_exhausted");
    assert_eq!(letter["event_id"], "e1");

    // The destination is back: replay reads the compressed dead letter and it is delivered.
    status.store(200, Ordering::SeqCst);
    let replay = cli(&world, &["dlq", "replay", "--json"]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert_eq!(replay.stdout.lines().count(), 1, "{}", replay.stdout);
    let app = TestApp::spawn(&world, &[("WD_KAFKA_PROPERTIES", "compression.type=zstd")]).await;
    // The restarted consumers join their groups first. On a broker the stopped ones left an
    // Empty group; librdkafka's mock cluster (without a broker for the run) keeps it for
    // session.timeout.ms - 1 s (~5 s with the helpers' session) before the next join
    // completes.
    eventually(
        Duration::from_secs(30),
        "the replayed delivery arrives",
        || async { app.metrics.deliveries("delivered") == 1 },
    )
    .await;
    app.stop().await;
}

/// Log lines of `process` so far, each checked against the 2 KB line budget at INFO+.
fn log_lines(process: &Process) -> Vec<serde_json::Value> {
    let text = process.log_text();
    // The last line may be half written while the process runs.
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .map(|line| {
            let parsed: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if parsed["level"] != "DEBUG" && parsed["level"] != "TRACE" {
                assert!(line.len() <= 2048, "a {}-byte log line: {line:.300}", line.len());
            }
            parsed
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_and_a_dead_redis_cost_a_handful_of_log_lines() {
    let world = World::new(1);
    // Nothing listens on these ports: Kafka and Redis are down from the start.
    let (no_broker, no_redis) = (ClosedPort::new(), ClosedPort::new());
    let broker = format!("127.0.0.1:{}", no_broker.port);
    let redis = format!("redis://127.0.0.1:{}", no_redis.port);
    let process = Process::spawn(
        &world,
        &[
            ("WD_KAFKA_BROKERS", broker.as_str()),
            ("WD_REDIS_URL", redis.as_str()),
        ],
    )
    .await;
    // The claim is a number of lines per stretch of time, so the stretch is fixed: long
    // enough for librdkafka to retry its connections dozens of times (its back-off climbs to
    // 10 s) and for the start's Redis wait to retry too. No count of those retries is
    // exposed to wait for instead.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let lines = log_lines(&process);
    drop(process);
    let text = |l: &serde_json::Value| l["message"].as_str().unwrap_or_default().to_string();
    let messages: Vec<String> = lines.iter().map(text).collect();
    assert!(
        lines.len() <= 12,
        "{} lines in 15 s:\n{}",
        lines.len(),
        messages.join("\n")
    );
    let redis_lines = messages
        .iter()
        .filter(|m| m.contains("redis unavailable"))
        .count();
    assert!((1..=2).contains(&redis_lines), "{messages:#?}");
    // The consumers wait for Redis; the topic watcher already talks to Kafka.
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Kafka") || m.contains("Connect to")),
        "the broker being down is said at least once: {messages:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_metrics_not_log_lines() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    world
        .put_template(json!({"id": "down", "url": receiver.url("/"), "max_retries": 5}))
        .await;
    let process = Process::spawn(&world, &[]).await;
    world.produce(&[(Some(0), event("e1", "down", 1))]).await;
    let tier = format!("topic=\"{}-1\"", world.retry_prefix);
    eventually(Duration::from_secs(30), "retry tier lag is reported", || async {
        let text = reqwest::get(format!("http://{}/metrics", process.metrics_addr))
            .await
            .ok()
            .map(|r| r.text());
        match text {
            Some(text) => text
                .await
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("webhook_consumer_lag{") && l.contains(&tier)),
            None => false,
        }
    })
    .await;
    assert_eq!(
        scrape(
            process.metrics_addr,
            &format!("webhook_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        )
        .await,
        Some(1.0)
    );
    assert!(
        scrape(process.metrics_addr, "process_resident_memory_bytes")
            .await
            .unwrap()
            > 0.0
    );
    // Several statistics intervals (5 s) have passed: none became a log line.
    let lines = log_lines(&process);
    assert!(
        !process.log_text().contains("Client stats"),
        "statistics logged: {:.300}",
        process.log_text()
    );
    assert!(!lines.is_empty());
}

/// Waits (up to 90 s) until a summary line (one with `suppressed` > 0) was written after
/// line `from`, then returns those lines, checking that no fault was said more than three
/// times (at once, then one summary per 30 s) and that the lines are few.
async fn budgeted_lines(process: &Process, from: usize, at_most: usize) -> Vec<serde_json::Value> {
    eventually(
        Duration::from_secs(90),
        "a summary of what was suppressed",
        || async {
            log_lines(process)[from..]
                .iter()
                .any(|l| l["suppressed"].as_u64() > Some(0))
        },
    )
    .await;
    let lines = log_lines(process).split_off(from);
    let shown: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut said = std::collections::HashMap::<String, usize>::new();
    for line in &lines {
        let fault = format!("{} {}", line["message"], line["error"]);
        *said.entry(fault).or_default() += 1;
    }
    for (fault, times) in &said {
        assert!(*times <= 3, "{fault} said {times} times:\n{}", shown.join("\n"));
    }
    assert!(
        lines.len() <= at_most,
        "{} lines:\n{}",
        lines.len(),
        shown.join("\n")
    );
    lines
}

/// A broker that is down for longer than the log budget's interval: the faults are said
/// once, then summed up once per interval, while Redis is up and every consumer, the
/// producer and the topic watcher keep trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_a_while_is_said_once_then_summed_up() {
    let world = World::new(1);
    let no_broker = ClosedPort::new();
    let broker = format!("127.0.0.1:{}", no_broker.port);
    let process = Process::spawn(&world, &[("WD_KAFKA_BROKERS", broker.as_str())]).await;
    // Without the budget the consumers alone write ~20 lines a second here.
    let lines = budgeted_lines(&process, 0, 30).await;
    assert!(
        lines.iter().any(|l| l["message"] == "kafka consumer error"),
        "the trigger consumer says the broker is down"
    );
}

/// Redis lost while running: the template-change subscription and readiness say so, once
/// per interval, not once per reconnection attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_while_running_is_said_once_then_summed_up() {
    let world = World::new(1);
    let port = free_port();
    let redis = OwnRedis::start(port);
    redis.wait_ready().await;
    let url = redis.url();
    let process = Process::spawn(&world, &[("WD_REDIS_URL", url.as_str())]).await;
    eventually(Duration::from_secs(30), "the dispatcher is ready", || async {
        reqwest::get(format!("http://{}/readyz", process.api))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let before = log_lines(&process).len();
    // Only the redis-server this test started.
    drop(redis);
    let after = budgeted_lines(&process, before, 12).await;
    assert!(
        after
            .iter()
            .any(|l| l["message"].as_str().unwrap_or_default().contains("template")),
        "losing the template-change subscription is said"
    );
}

/// Odd events carry text of any length into log lines (a parse error would quote the
/// field, the event span carries the id): at INFO and above each line stays within 2 KB,
/// and the events are still dead-lettered with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_fields_in_events_do_not_make_huge_log_lines() {
    let world = World::new(1);
    let process = Process::spawn(&world, &[]).await;
    let long = "x".repeat(300_000);
    let quoted = json!({"event_id": "e-quoted", "template_id": "t", "targetId": long}).to_string();
    let long_id = json!({"event_id": "y".repeat(100_000), "template_id": "missing", "targetId": 1});
    world
        .produce(&[
            (Some(0), quoted.into_bytes()),
            (Some(0), long_id.to_string().into_bytes()),
        ])
        .await;
    eventually(
        Duration::from_secs(30),
        "both events are dead-lettered",
        || async { world.dead_letters().await.len() == 2 },
    )
    .await;
    let mut reasons: Vec<String> = world
        .dead_letters()
        .await
        .iter()
        .map(|l| l.reason().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_event", "template_not_found"]);
    // log_lines checks every INFO+ line against 2 KB. The parse error quotes four
    // characters of the value; the event id in the span is cut.
    let lines = log_lines(&process);
    let invalid = lines
        .iter()
        .find(|l| l["message"] == "invalid trigger event")
        .expect("the invalid event is said");
    assert!(invalid.to_string().contains(r#"string \"xxxx…\""#), "{invalid}");
    let cut: Vec<_> = lines
        .iter()
        .filter(|l| l.to_string().contains("bytes cut)"))
        .collect();
    assert!(!cut.is_empty(), "{lines:#?}");
}

/// Managed Kafka with SASL OAUTHBEARER and OIDC (Confluent Cloud and others): librdkafka is
/// built with what it needs, so the service starts and fetches its broker token from the
/// identity provider's token endpoint with the client credentials it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_oauthbearer_oidc_fetches_the_broker_token_from_the_token_endpoint() {
    let world = World::new(1);
    // The identity provider: records the token requests (its empty answer is no token).
    let idp = Receiver::start(|_, _| Reply::status(200)).await;
    let properties = format!(
        "security.protocol=SASL_PLAINTEXT,sasl.mechanism=OAUTHBEARER,sasl.oauthbearer.method=oidc,\
         sasl.oauthbearer.client.id=wd-client,sasl.oauthbearer.client.secret=s3cret,\
         sasl.oauthbearer.token.endpoint.url={}",
        idp.url("/oauth2/token")
    );
    let process = Process::spawn(&world, &[("WD_KAFKA_PROPERTIES", properties.as_str())]).await;
    eventually(
        Duration::from_secs(30),
        "librdkafka asks the token endpoint",
        || async { idp.count() > 0 },
    )
    .await;
    let request = &idp.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/oauth2/token");
    let body = String::from_utf8_lossy(&request.body);
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode("wd-client:s3cret");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {credentials}").as_str())
    );
    assert!(
        !process.log_text().contains("s3cret"),
        "the client secret is never logged"
    );
    drop(process);
}

/// A trigger topic whose retention deleted records before they were consumed: the
/// dispatcher resets to the earliest record there is (`auto.offset.reset=earliest`), goes on,
/// and says how many it skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_by_retention_are_skipped_and_counted() {
    let world = World::on_broker(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let batch = |prefix: &str, n: usize| -> Vec<(Option<i32>, Vec<u8>)> {
        (0..n)
            .map(|i| (Some(0), event(&format!("{prefix}{i}"), "t", 1)))
            .collect()
    };
    // Ten consumed and committed, then the dispatcher stops.
    world.produce(&batch("e", 10)).await;
    let first = Process::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "the first ten committed", || async {
        receiver.count() == 10 && world.committed().await == vec![10]
    })
    .await;
    assert!(first.terminate().await.success());
    // Twenty more, deleted by a one-second retention before anyone consumes them.
    crate::helpers::set_topic_config(
        &world.bootstrap(),
        &world.topic,
        &[("retention.ms", "1000"), ("segment.ms", "200")],
    )
    .await;
    world.produce(&batch("lost", 20)).await;
    // Retention deletes only closed segments, and a record appended once the active segment
    // is older than segment.ms closes it: one now and then, until the deletion is seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        world.produce(&batch(&format!("kept{n}-"), 1)).await;
        if world.starts().await[0] >= 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not delete them"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    crate::helpers::set_topic_config(&world.bootstrap(), &world.topic, &[("retention.ms", "3600000")]).await;
    let low = world.starts().await[0];
    world.produce(&batch("after", 5)).await;
    let second = Process::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "what is left delivered", || async {
        receiver.count() as i64 == 10 + (world.ends().await[0] - low)
    })
    .await;
    let log = second.log_text();
    assert!(second.terminate().await.success());
    assert!(
        !receiver
            .requests()
            .iter()
            .any(|r| r.header("idempotency-key").is_some_and(|k| k.starts_with("lost"))),
        "a deleted record was delivered"
    );
    let said = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("were skipped")))
        .unwrap_or_else(|| panic!("the skip is not said:\n{log}"));
    assert_eq!(said["skipped"].as_i64(), Some(low - 10), "{said}");
    assert_eq!(
        (said["from"].as_i64(), said["to"].as_i64()),
        (Some(10), Some(low))
    );
}
