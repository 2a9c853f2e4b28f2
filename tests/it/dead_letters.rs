//! Failed deliveries are parked (retry tier, then dead-letter topic) before their offset is
//! committed.

use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_failing_deliveries_are_dead_lettered_with_their_chunk_and_history() {
    let world = World::new(1);
    // /bad answers 400; /down 503; /slow times out.
    let receiver = Receiver::start(|r, _| match r.uri.as_str() {
        "/bad" => Reply::status(400),
        "/down" => Reply::status(503),
        "/slow" => Reply::status(200).after(Duration::from_secs(5)),
        _ => Reply::status(200),
    })
    .await;
    world
        .put_template(json!({"id": "bad", "url": receiver.url("/bad"), "batch_size": 2,
                             "headers": {"Authorization": "Bearer header-secret"}}))
        .await;
    world
        .put_template(json!({"id": "down", "url": receiver.url("/down")}))
        .await;
    world
        .put_template(json!({"id": "slow", "url": receiver.url("/slow"), "timeout_ms": 200}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world
        .produce(&[
            (Some(0), event("rejected", "bad", 3)),
            (Some(0), event("unavailable", "down", 1)),
            (Some(0), event("timeout", "slow", 1)),
        ])
        .await;

    eventually(
        Duration::from_secs(20),
        "four deliveries dead-lettered",
        || async { app.metrics.deliveries("dead_lettered") == 4 },
    )
    .await;
    eventually(Duration::from_secs(15), "offsets committed past them", || async {
        world.committed().await == vec![3]
    })
    .await;
    app.stop().await;

    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 4);
    // The 400: both chunks (2 + 1 profiles), one attempt each, rejected at once.
    let mut rejected: Vec<_> = letters.iter().filter(|l| l.reason() == "rejected").collect();
    rejected.sort_by_key(|l| l.json()["chunk"].as_u64());
    assert_eq!(rejected.len(), 2);
    for (chunk, letter) in rejected.iter().enumerate() {
        let value = letter.json();
        assert_eq!(letter.key.as_deref(), Some("rejected"));
        assert_eq!(value["chunk"], chunk);
        assert_eq!(value["event_id"], "rejected");
        assert_eq!(value["template_id"], "bad");
        assert_eq!(value["targetId"], 42);
        assert_eq!(value["key_values"], json!({"key": "value"}));
        assert_eq!(value["attempts"][0]["status"], 400);
        assert_eq!(letter.headers["wd-last-status"], "400");
        assert_eq!(letter.headers["wd-attempt"], "1");
        assert_eq!(letter.headers["wd-original-offset"], "0");
        // The template's headers (credentials among them) never reach Kafka.
        assert!(!String::from_utf8_lossy(&letter.value).contains("header-secret"));
    }
    assert_eq!(rejected[0].json()["profiles"].as_array().unwrap().len(), 2);
    assert_eq!(rejected[1].json()["profiles"][0]["Identity"], "rejected-u2");

    let exhausted: Vec<_> = letters
        .iter()
        .filter(|l| l.reason() == "retries_exhausted")
        .collect();
    assert_eq!(exhausted.len(), 2);
    let down = exhausted
        .iter()
        .find(|l| l.key.as_deref() == Some("unavailable"))
        .unwrap();
    assert_eq!(down.headers["wd-last-status"], "503");
    let slow = exhausted
        .iter()
        .find(|l| l.key.as_deref() == Some("timeout"))
        .unwrap();
    assert_eq!(slow.headers["wd-last-error"], "timeout");
    assert_eq!(slow.headers["wd-last-status"], "");
    assert_eq!(slow.json()["attempts"][0]["error"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offset_waits_until_kafka_acknowledges_the_dead_letter() {
    let world = World::on_mock(1);
    let receiver = Receiver::start(|_, _| Reply::status(400)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    world.produce(&[(Some(0), event("e1", "t", 1))]).await;
    // The broker refuses the next produce requests: parking must wait, not give up.
    world.kafka.mock().fail_next_produce_requests(4).unwrap();
    let app = TestApp::spawn(&world, &[]).await;

    eventually(Duration::from_secs(30), "the delivery attempted", || async {
        receiver.count() == 1
    })
    .await;
    eventually(
        Duration::from_secs(60),
        "dead-lettered once Kafka accepts",
        || async { app.metrics.dead_letters("rejected") == 1 },
    )
    .await;
    assert!(
        scrape_waits(&app).await >= 1.0,
        "the produce was refused at least once and the record waited"
    );
    eventually(Duration::from_secs(15), "then committed", || async {
        world.committed().await == vec![1]
    })
    .await;
    app.stop().await;
    assert_eq!(world.dead_letters().await.len(), 1, "parked exactly once");
    assert_eq!(receiver.count(), 1, "not sent again while parking waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_offset_waits_until_the_retry_tier_accepts_the_delivery() {
    let world = World::on_mock(1);
    let receiver = Receiver::start(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    world.produce(&[(Some(0), event("e1", "t", 1))]).await;
    // Six refusals: the park waits ~6 s (backoff 0.2 s doubling) before Kafka accepts it.
    world.kafka.mock().fail_next_produce_requests(6).unwrap();
    let app = TestApp::spawn(&world, &[]).await;

    eventually(
        Duration::from_secs(30),
        "the park refused at least once",
        || async { receiver.count() == 1 && scrape_waits(&app).await >= 1.0 },
    )
    .await;
    // Read the commit first, then confirm the park still had not succeeded at that time.
    let committed = world.committed().await;
    if app.metrics.deliveries("retried") == 0 {
        assert!(
            committed[0] < 1,
            "committed {committed:?} before the retry record was accepted"
        );
    }
    eventually(
        Duration::from_secs(60),
        "parked, retried and delivered",
        || async { app.metrics.deliveries("delivered") == 1 },
    )
    .await;
    assert_eq!(
        app.metrics.deliveries("retried"),
        1,
        "parked on the tier exactly once"
    );
    eventually(Duration::from_secs(15), "then committed", || async {
        world.committed().await == vec![1]
    })
    .await;
    app.stop().await;
    assert_eq!(receiver.count(), 2, "one attempt, one retry");
    assert!(world.dead_letters().await.is_empty());
}

async fn scrape_waits(app: &TestApp) -> f64 {
    crate::helpers::scrape(
        app.metrics_addr,
        "webhook_dependency_waits_total{dependency=\"kafka_producer\"}",
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_503_is_tried_one_plus_max_retries_times_spaced_by_the_tiers_then_dead_lettered() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "max_retries": 3}))
        .await;
    world.produce(&[(Some(0), event("e1", "t", 2))]).await;
    let app = TestApp::spawn(&world, &[]).await;

    eventually(
        Duration::from_secs(60),
        "dead-lettered after its retries",
        || async { app.metrics.dead_letters("retries_exhausted") == 1 },
    )
    .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4, "1 + max_retries attempts");
    // Tiers 1s, 2s, and the last repeats: never earlier than the tier's delay.
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, tier) in gaps.iter().zip([1, 2, 2]) {
        assert!(
            *gap >= Duration::from_millis(tier * 1000 - 50),
            "gap {gap:?} shorter than tier {tier}s"
        );
    }
    for r in &requests {
        assert_eq!(
            r.header("idempotency-key"),
            Some("e1:0"),
            "the same key on every attempt"
        );
    }
    assert_eq!(
        requests[3].body, requests[0].body,
        "the retried request is the same request"
    );

    eventually(Duration::from_secs(15), "trigger and tiers committed", || async {
        world.committed().await == vec![1]
    })
    .await;
    app.stop().await;
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    for header in webhook_dispatcher::park::header::ALL {
        assert!(letter.headers.contains_key(header), "{header} missing");
    }
    assert_eq!(letter.headers["wd-attempt"], "4");
    assert_eq!(letter.headers["wd-last-status"], "503");
    // The trigger record, not the retry tier it was last read from (through every tier).
    assert_eq!(letter.headers["wd-original-topic"], world.topic);
    let history = letter.json()["attempts"].as_array().unwrap().clone();
    assert_eq!(history.len(), 4);
    assert!(history.iter().all(|a| a["status"] == 503));
    assert_eq!(letter.json()["profiles"].as_array().unwrap().len(), 2);
    let first_failed: u64 = letter.headers["wd-first-failed-at-ms"].parse().unwrap();
    assert!(first_failed <= history[1]["at_ms"].as_u64().unwrap());
}

/// One event against a receiver whose first answer is `first` and later ones 200; returns
/// once it is delivered.
async fn delivered_after_first(first: Reply) -> (World, Receiver, TestApp) {
    let world = World::new(1);
    let receiver = Receiver::start(move |_, n| if n == 0 { first } else { Reply::status(200) }).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    world.produce(&[(Some(0), event("e1", "t", 1))]).await;
    let app = TestApp::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "delivered on a retry", || async {
        app.metrics.deliveries("delivered") == 1
    })
    .await;
    (world, receiver, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_gets_the_delivery_on_the_first_retry() {
    let (world, receiver, app) = delivered_after_first(Reply::status(500)).await;
    assert_eq!(receiver.count(), 2);
    assert_eq!(app.metrics.deliveries("retried"), 1);
    app.stop().await;
    assert!(world.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    // 429 asking for 2 s, longer than the 1 s tier 1: the retry goes to tier 2 (2 s).
    let (world, receiver, app) = delivered_after_first(Reply::status(429).retry_after(2)).await;
    let requests = receiver.requests();
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(1950),
        "retried after {gap:?}, before Retry-After"
    );
    app.stop().await;
    assert_eq!(
        world.retry_records(2).await.len(),
        1,
        "routed to the tier that covers the wait"
    );
    assert!(world.retry_records(1).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_longest_tier_is_capped_at_it() {
    // An hour asked for: capped at the last tier's delay (2 s here), so a tier partition
    // never holds a record due an hour later ahead of the ones behind it.
    let (_world, receiver, app) = delivered_after_first(Reply::status(429).retry_after(3600)).await;
    let requests = receiver.requests();
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(1950), "retried after {gap:?}");
    app.stop().await;
}

fn event_created(id: &str, template: &str, created_at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    json!({"event_id": id, "template_id": template, "targetId": 42, "profiles": [{"Identity": id}],
           "created_at": created_at.to_rfc3339()})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_older_than_max_age_are_dead_lettered_not_sent_late() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(503)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "max_age_seconds": 2, "max_retries": 5}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    eventually(Duration::from_secs(20), "ready", || async {
        reqwest::get(format!("http://{}/readyz", app.api))
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    world
        .produce(&[
            (Some(0), event_created("stale", "t", an_hour_ago)),
            (Some(0), event_created("fresh", "t", chrono::Utc::now())),
        ])
        .await;
    eventually(Duration::from_secs(30), "both expired", || async {
        app.metrics.dead_letters("expired") == 2
    })
    .await;
    app.stop().await;
    let letters = world.dead_letters().await;
    assert!(letters.iter().all(|l| l.reason() == "expired"), "{letters:?}");
    let keys: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert!(
        !keys.contains(&"stale:0".to_string()),
        "an expired delivery is never sent"
    );
    // The fresh one failed (503), waited in the tiers (1 s, 2 s) and aged past 2 s there: it
    // was tried at least once, never after its max age, and dead-lettered with its history.
    let fresh = letters
        .iter()
        .find(|l| l.key.as_deref() == Some("fresh"))
        .unwrap();
    let tried = keys.iter().filter(|k| *k == "fresh:0").count();
    assert!((1..=2).contains(&tried), "tried {tried} times");
    assert_eq!(fresh.headers["wd-attempt"], tried.to_string());
    assert_eq!(fresh.json()["attempts"].as_array().unwrap().len(), tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_stats_count_requests_deliveries_retries_and_dead_letters() {
    let world = World::new(1);
    let flaky = Receiver::start(|_, n| Reply::status(if n == 0 { 500 } else { 200 })).await;
    let bad = Receiver::start(|_, _| Reply::status(400)).await;
    world
        .put_template(json!({"id": "flaky", "url": flaky.url("/")}))
        .await;
    world
        .put_template(json!({"id": "bad", "url": bad.url("/")}))
        .await;
    let rejected = json!({"event_id": "r1", "template_id": "bad", "targetId": 7}).to_string();
    world
        .produce(&[
            (Some(0), event("f1", "flaky", 1)),
            (Some(0), rejected.into_bytes()),
        ])
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let stats = |target: i64| {
        let key = format!("{}stats:{target}", world.prefix);
        async move {
            let mut conn = redis::Client::open(crate::helpers::redis_url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let hash: std::collections::HashMap<String, String> =
                redis::AsyncCommands::hgetall(&mut conn, key).await.unwrap();
            hash
        }
    };
    eventually(Duration::from_secs(30), "stats written", || async {
        stats(42).await.get("delivered").map(String::as_str) == Some("1")
            && stats(7).await.get("dead_lettered").map(String::as_str) == Some("1")
    })
    .await;
    app.stop().await;

    let flaky = stats(42).await;
    assert_eq!(flaky["requests"], "2");
    assert_eq!(flaky["retried"], "1");
    assert_eq!(flaky["delivered"], "1");
    assert!(!flaky.contains_key("dead_lettered"));
    assert_eq!(flaky["last_error"], "HTTP 500");
    let bad = stats(7).await;
    assert_eq!(bad["requests"], "1");
    assert_eq!(bad["last_error"], "HTTP 400");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&bad["last_error_at"]).is_ok(),
        "{bad:?}"
    );
}
