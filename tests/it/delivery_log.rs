//! The delivery log: every attempt of a campaign's events can be looked up by event and by
//! campaign (API and CLI), nothing secret or from a request body is kept, and Redis holds
//! no more than the configured bound however much is written.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use webhook_dispatcher::config::DeliveryLogConfig;
use webhook_dispatcher::delivery_log::{DeliveryLog, Filter, LoggedAttempt, Outcome};
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::redis_link::RedisConn;

use crate::helpers::{TestApp, World, admin_call, cli, eventually, redis_url, scrape, unique};

const EVENTS: usize = 1_000;
const PASSWORD: &str = "log-s3cret-pw";

/// Event `i`'s fate: every 10th is refused (400, dead-lettered at once), every 7th fails
/// once (503, then delivered on retry tier 1), the rest are delivered.
fn fate(event: &str, seen: u64) -> Reply {
    let i: usize = event.trim_start_matches("ev-").parse().unwrap_or(1);
    if i.is_multiple_of(10) {
        Reply::status(400).saying("customer_id is missing")
    } else if i.is_multiple_of(7) && seen == 0 {
        Reply::status(503)
    } else {
        Reply::status(200)
    }
}

async fn redis() -> RedisConn {
    let client = redis::Client::open(redis_url()).unwrap();
    RedisConn::Server(client.get_connection_manager().await.unwrap())
}

/// Every attempt of campaign 42, paging through the API.
async fn all_attempts(app: &TestApp, outcome: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/campaigns/42/attempts?limit=500{outcome}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = admin_call(app, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["attempts"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_a_campaign_can_be_looked_up_by_event_and_by_campaign() {
    let world = World::new(2);
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(BTreeMap::<String, u64>::new()));
    let receiver = {
        let seen = seen.clone();
        Receiver::start(move |r, _| {
            let id = r.json()["profiles"][0]["Identity"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let event = id.split("-u").next().unwrap_or_default().to_string();
            let mut seen = seen.lock();
            let count = seen.entry(event.clone()).or_default();
            let reply = fate(&event, *count);
            *count += 1;
            reply
        })
        .await
    };
    world
        .put_template(
            json!({"id": "crm", "url": receiver.url("/hook"), "max_retries": 1,
                             "auth": {"type": "basic", "username": "u", "password": PASSWORD}}),
        )
        .await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (None, crate::helpers::event(&format!("ev-{i}"), "crm", 1)))
        .collect();
    world.produce(&records).await;
    let app = TestApp::spawn(&world, &[]).await;
    let dead = EVENTS / 10;
    let retried = (0..EVENTS).filter(|i| i % 7 == 0 && i % 10 != 0).count();
    eventually(Duration::from_secs(90), "every event settled", || async {
        app.metrics.deliveries("delivered") == (EVENTS - dead) as u64
            && app.metrics.deliveries("dead_lettered") == dead as u64
    })
    .await;
    let sent = receiver.count() as usize;
    assert_eq!(sent, EVENTS + retried);
    // Every attempt the receiver saw is in the campaign's log, once (the log is written a
    // quarter second after the attempts).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts = all_attempts(&app, "").await;
        if attempts.len() >= sent || std::time::Instant::now() > deadline {
            break attempts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(attempts.len(), sent, "every attempt is logged");
    // Every one written with its references, none dropped.
    let series = |result: &str| format!("webhook_delivery_log_attempts_total{{result=\"{result}\"}}");
    assert_eq!(
        scrape(app.metrics_addr, &series("written")).await,
        Some(sent as f64)
    );
    assert_eq!(scrape(app.metrics_addr, &series("unindexed")).await, None);
    assert_eq!(scrape(app.metrics_addr, &series("dropped")).await, None);
    let mut ids: Vec<(&str, u64)> = attempts
        .iter()
        .map(|a| (a["event_id"].as_str().unwrap(), a["attempt"].as_u64().unwrap()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent, "no attempt twice");
    let failed = all_attempts(&app, "&outcome=failed").await;
    assert_eq!(failed.len(), dead + retried);
    assert!(failed.iter().all(|a| a["outcome"] != "delivered"));
    let dead_lettered = all_attempts(&app, "&outcome=dead_lettered").await;
    assert_eq!(dead_lettered.len(), dead);

    // One event's story: a 503 on the trigger topic, parked on tier 1, delivered from it.
    let (status, story) = admin_call(&app, "GET", "/v1/events/ev-7", None).await;
    assert_eq!(status, 200, "{story}");
    let steps: Vec<(u64, Value, u64, &str)> = story["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].clone(),
                a["tier"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [(1, json!(503), 0, "retrying"), (2, json!(200), 1, "delivered")]
    );
    assert_eq!(story["attempts"][0]["next"], "1");
    assert_eq!(story["attempts"][0]["host"], receiver.addr().to_string());
    // A refused one: its answer's start and the dead-letter reason.
    let (_, refused) = admin_call(&app, "GET", "/v1/events/ev-10", None).await;
    assert_eq!(refused["attempts"][0]["answer"], "customer_id is missing");
    assert_eq!(refused["dead_lettered"], json!(["rejected"]));
    let (status, missing) = admin_call(&app, "GET", "/v1/events/no-such-event", None).await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = admin_call(&app, "GET", "/v1/campaigns/42/attempts?outcome=lost", None).await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("outcome")), "{bad}");

    // The same from the command line.
    let story = cli(&world, &["attempts", "event", "ev-7", "--json"]);
    assert_eq!(story.code, 0, "{}", story.stderr);
    assert_eq!(story.json()["attempts"].as_array().map(Vec::len), Some(2));
    let page = cli(
        &world,
        &[
            "attempts",
            "campaign",
            "42",
            "--outcome",
            "dead_lettered",
            "--limit",
            "500",
            "--json",
        ],
    );
    assert_eq!(page.code, 0, "{}", page.stderr);
    assert_eq!(page.json()["attempts"].as_array().map(Vec::len), Some(dead));
    let human = cli(&world, &["attempts", "event", "ev-10"]);
    assert!(
        human.stdout.contains("HTTP 400") && human.stdout.contains("rejected"),
        "{}",
        human.stdout
    );

    // Nothing secret and nothing of a request body, in the answers or in Redis.
    let answers = format!("{attempts:?}{failed:?}");
    let stored = redis_dump(&world.prefix).await;
    for place in [answers.as_str(), stored.as_str()] {
        assert!(!place.contains(PASSWORD));
        assert!(!place.contains("Basic "));
        assert!(!place.contains("@example.com"), "a profile's field");
    }
    app.stop().await;
}

/// Every delivery log key under `prefix` with what it holds, as text.
async fn redis_dump(prefix: &str) -> String {
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}log:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let read = match kind.as_str() {
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            _ => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
        };
        let value: redis::Value = read.query_async(&mut conn).await.unwrap();
        out.push_str(&format!(
            "{key} {}\n",
            String::from_utf8_lossy(&format!("{value:?}").into_bytes())
        ));
    }
    out
}

fn logged(event: String, target: i64, n: u32) -> LoggedAttempt {
    LoggedAttempt {
        id: String::new(),
        event_id: event,
        target_id: target,
        template_id: "order-feedback".into(),
        chunk: 0,
        attempt: n,
        at_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        host: "api.partner-crm.example:443".into(),
        status: Some(200),
        error: None,
        latency_ms: 87,
        tier: 0,
        outcome: Outcome::Delivered,
        next: None,
        answer: None,
        request_bytes: 1432,
    }
}

/// A UUID-shaped event id, as campaign platforms send them.
fn uuid_like(n: usize) -> String {
    let hex = format!(
        "{:032x}",
        (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Bytes Redis uses for the keys matching `pattern` under `prefix`, and how many keys.
async fn used(conn: &mut RedisConn, prefix: &str, pattern: &str) -> (u64, usize) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{pattern}"))
        .query_async(conn)
        .await
        .unwrap();
    let mut bytes = 0;
    for key in &keys {
        let usage: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(conn)
            .await
            .unwrap();
        bytes += usage.unwrap_or_default();
    }
    (bytes, keys.len())
}

/// Written past its bound (20 campaigns into room for 3, 5 times as many attempts as a
/// campaign keeps), the log keeps 3 campaigns of about `per_campaign` attempts each, and
/// what one attempt costs in Redis is what docs/how-it-works.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_more_than_the_bound_however_much_is_written() {
    let prefix = format!("{}:", unique("log-bound"));
    let settings = DeliveryLogConfig {
        enabled: true,
        max_age: Duration::from_secs(3600),
        per_campaign: 2_000,
        campaigns: 3,
        attempts_topic: None,
        success_sample: 0.0,
    };
    let log = DeliveryLog::redis(redis().await, &prefix, &settings);
    let mut n = 0;
    for campaign in 0..20 {
        for _ in 0..5 {
            for _ in 0..2_000 {
                n += 1;
                log.record(logged(uuid_like(n), 1000 + campaign, 1));
            }
            log.flush().await;
        }
    }
    let mut conn = redis().await;
    let campaigns: Vec<i64> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}log:campaigns"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(campaigns, [1017, 1018, 1019], "the 3 most recently written");
    let mut kept = 0;
    for campaign in 1000..1020 {
        let mut count = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = log
                .campaign(campaign, Filter::All, cursor.as_deref(), 500)
                .await
                .unwrap();
            count += page.attempts.len();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // Trimmed back to about 1,600 once over 2,000, by whole entries.
        assert!(count <= 2_100, "campaign {campaign} keeps {count}");
        kept += count;
    }
    assert!((4_000..=6_300).contains(&kept), "{kept} attempts kept");
    let (stream_bytes, streams) = used(&mut conn, &prefix, "log:c:*").await;
    let (reference_bytes, lists) = used(&mut conn, &prefix, "log:ev:*").await;
    let references: usize = {
        let mut total = 0;
        for bucket in 0..1_024 {
            let len: usize = redis::cmd("LLEN")
                .arg(format!("{prefix}log:ev:{bucket}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(len <= 832, "list {bucket} holds {len}");
            total += len;
        }
        total
    };
    assert_eq!(streams, 3);
    assert!(lists <= 1_024);
    let per_attempt = stream_bytes as f64 / kept as f64;
    let per_reference = reference_bytes as f64 / references as f64;
    // The defaults: 100 campaigns of 10,000 attempts, and every reference list full.
    let defaults = per_attempt * 1e6 + per_reference * 1_024.0 * 832.0;
    let mib = defaults / f64::from(1 << 20);
    println!(
        "delivery log: {per_attempt:.0} bytes per attempt in its campaign's stream, \
         {per_reference:.0} per reference; with the defaults at most {mib:.0} MiB"
    );
    // What docs/how-it-works.md states: at most 100 MiB for the default million.
    assert!(
        mib <= 100.0,
        "{per_attempt:.0} + {per_reference:.0} bytes: {mib:.0} MiB"
    );
    // The worst packing: a campaign whose every flush holds one attempt of it.
    let lone_prefix = format!("{}:", unique("log-lone"));
    let lone = DeliveryLog::redis(redis().await, &lone_prefix, &settings);
    for i in 0..2_000 {
        lone.record(logged(uuid_like(1_000_000 + i), 7, 1));
        lone.flush().await;
    }
    let (lone_bytes, _) = used(&mut conn, &lone_prefix, "log:c:*").await;
    let alone = lone_bytes as f64 / 2_000.0;
    let worst = (alone * 1e6 + per_reference * 1_024.0 * 832.0) / f64::from(1 << 20);
    println!(
        "delivery log: {alone:.0} bytes per attempt flushed alone; \
         the defaults so written: at most {worst:.0} MiB"
    );
    assert!(
        worst <= 100.0,
        "{alone:.0} bytes per lone attempt: {worst:.0} MiB"
    );
    delete_all(&mut conn, &lone_prefix).await;
    // An event of an evicted campaign is no longer found; one of a kept campaign is.
    assert!(log.event(&uuid_like(1)).await.unwrap().is_empty());
    let last = log.event(&uuid_like(n)).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].host, "api.partner-crm.example:443");
    delete_all(&mut conn, &prefix).await;
}

async fn delete_all(conn: &mut RedisConn, prefix: &str) {
    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
}

/// With an attempts topic, every failed attempt reaches it as JSON keyed by the event id,
/// and delivered ones only as sampled (none at a sample of 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_reach_the_attempts_topic() {
    let world = World::new(1);
    let attempts_topic = unique("attempts");
    world.kafka.create_topics(&[(attempts_topic.as_str(), 1)]);
    let receiver = Receiver::start(|r, _| {
        let refused = r.json()["profiles"][0]["Identity"]
            .as_str()
            .is_some_and(|id| id.starts_with("bad"));
        Reply::status(if refused { 422 } else { 200 }).saying("no such customer")
    })
    .await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/"), "max_retries": 0}))
        .await;
    let records: Vec<_> = ["good-1", "bad-1", "good-2", "bad-2"]
        .iter()
        .map(|id| (None, crate::helpers::event(id, "t", 1)))
        .collect();
    world.produce(&records).await;
    let app = TestApp::spawn(
        &world,
        &[
            ("WD_DELIVERY_LOG_ATTEMPTS_TOPIC", attempts_topic.as_str()),
            ("WD_DELIVERY_LOG_SUCCESS_SAMPLE", "0"),
        ],
    )
    .await;
    eventually(Duration::from_secs(30), "two failures on the topic", || async {
        world.records(&attempts_topic, 1).await.len() >= 2
    })
    .await;
    assert_eq!(app.metrics.deliveries("delivered"), 2);
    let mut seen: Vec<(String, Value)> = world
        .records(&attempts_topic, 1)
        .await
        .into_iter()
        .map(|r| {
            (
                r.key.unwrap_or_default(),
                serde_json::from_slice(&r.value).unwrap(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "bad-1");
    let first = &seen[0].1;
    assert_eq!(first["event_id"], "bad-1");
    assert_eq!(first["targetId"], 42);
    assert_eq!(first["status"], 422);
    assert_eq!(first["outcome"], "dead_lettered");
    assert_eq!(first["next"], "rejected");
    assert_eq!(first["answer"], "no such customer");
    app.stop().await;
}
