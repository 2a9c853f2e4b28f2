//! Template rates: one rate held by every replica together (also while Redis is down),
//! adapted to a destination that answers 429 above its quota, and a template's own
//! concurrency limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{OwnRedis, Process, TestApp, World, admin_call, event, eventually, free_port, scrape};

/// Requests `receiver` got per second between `from` and `to`.
fn rate_between(receiver: &Receiver, from: Instant, to: Instant) -> f64 {
    let got = receiver
        .requests()
        .iter()
        .filter(|r| r.at >= from && r.at < to)
        .count();
    got as f64 / (to - from).as_secs_f64()
}

/// `n` one-profile events of template `template`, spread over `partitions` partitions.
async fn backlog(world: &World, template: &str, n: usize, partitions: i32) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let records: Vec<_> = chunk
            .iter()
            .map(|i| {
                (
                    Some(*i as i32 % partitions),
                    event(&format!("{template}-{i}"), template, 1),
                )
            })
            .collect();
        world.produce(&records).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_one_rate_together_and_while_redis_is_down() {
    let world = World::new(6);
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = OwnRedis::start_persistent(port, data.path());
    redis.wait_ready().await;
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let template = json!({"id": "rated", "url": receiver.url("/"), "rate_limit_per_sec": 100});
    let conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    use webhook_dispatcher::template::TemplateStore;
    webhook_dispatcher::template::RedisStore::new(conn, world.prefix.clone())
        .put(&serde_json::from_value(template).unwrap())
        .await
        .unwrap();
    // Enough for the whole test at 100/s, on every replica's partitions.
    backlog(&world, "rated", 8000, 6).await;
    let url = redis.url();
    let vars = [("WD_REDIS_URL", url.as_str()), ("WD_TEMPLATE_CACHE_TTL", "10m")];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Process::spawn(&world, &vars).await);
    }
    // Every replica sending (its partitions assigned, the template in its cache) and
    // counted by the others (heartbeats every 5 s).
    let delivered = "webhook_deliveries_total{outcome=\"delivered\"}";
    eventually(Duration::from_secs(60), "every replica is sending", || async {
        let mut all = true;
        for replica in &replicas {
            all &= scrape(replica.metrics_addr, delivered).await.unwrap_or(0.0) >= 50.0;
        }
        all
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(redis); // only the redis-server this test started
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restarted = Instant::now();
    let redis = OwnRedis::start_persistent(port, data.path());
    redis.wait_ready().await;
    let end = start + Duration::from_secs(20);
    tokio::time::sleep_until(end.into()).await;

    let whole = rate_between(&receiver, start, end);
    let without_redis = rate_between(&receiver, stopped, restarted);
    eprintln!(
        "three replicas at rate_limit_per_sec 100: {whole:.1}/s over 20 s, {without_redis:.1}/s without Redis"
    );
    assert!(
        (90.0..=110.0).contains(&whole),
        "{whole:.1}/s over the 20 s window"
    );
    assert!(
        (90.0..=110.0).contains(&without_redis),
        "{without_redis:.1}/s while Redis was stopped"
    );
    let said = replicas
        .iter()
        .any(|p| p.log_text().contains("shared rate limits unavailable"));
    assert!(said, "the fallback is said in the log");
    for replica in replicas {
        replica.terminate().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_a_quota_gets_its_rate_and_no_delivery_runs_out_of_retries() {
    let world = World::new(4);
    // 200 OK for the first 50 requests of any second, 429 for the rest.
    let accepted: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let receiver = Receiver::start({
        let accepted = accepted.clone();
        move |_, _| {
            let mut accepted = accepted.lock().unwrap();
            let now = Instant::now();
            while accepted
                .front()
                .is_some_and(|at| now - *at >= Duration::from_secs(1))
            {
                accepted.pop_front();
            }
            if accepted.len() >= 50 {
                return Reply::status(429);
            }
            accepted.push_back(now);
            Reply::status(200)
        }
    })
    .await;
    world
        .put_template(json!({"id": "quota", "url": receiver.url("/"), "max_retries": 2}))
        .await;
    backlog(&world, "quota", 2500, 4).await;
    let app = TestApp::spawn(&world, &[]).await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let settled = rate_between(
        &receiver,
        start + Duration::from_secs(15),
        start + Duration::from_secs(30),
    );
    eprintln!("a destination taking 50/s: {settled:.1} requests/s between 15 s and 30 s");
    assert!((40.0..=60.0).contains(&settled), "{settled:.1}/s");
    let (status, shown) = admin_call(&app, "GET", "/v1/templates/quota", None).await;
    assert_eq!(status, 200);
    let effective = shown["effective_rate_per_sec"]
        .as_f64()
        .expect("the adapted rate is shown");
    assert!((35.0..=65.0).contains(&effective), "{effective}");
    assert!(
        app.metrics
            .render()
            .contains("webhook_rate_adaptations_total{direction=\"down\"}")
    );
    eventually(Duration::from_secs(90), "every delivery accepted", || async {
        app.metrics.deliveries("delivered") == 2500
    })
    .await;
    assert_eq!(app.metrics.dead_letters("retries_exhausted"), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_s_own_concurrency_limit_holds_beside_its_host_s() {
    let world = World::new(2);
    let slow = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(150))).await;
    world
        .put_template(json!({"id": "two", "url": slow.url("/"), "template_concurrency": 2}))
        .await;
    backlog(&world, "two", 20, 2).await;
    let app = TestApp::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "all delivered", || async {
        slow.count() == 20
    })
    .await;
    assert_eq!(
        slow.max_in_flight(),
        2,
        "two at a time, never more, and both used"
    );
    let (status, problem) = admin_call(
        &app,
        "PUT",
        "/v1/templates/bad?test=false",
        Some(json!({"url": slow.url("/"), "template_concurrency": 0})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "template_concurrency");
    app.stop().await;
}
