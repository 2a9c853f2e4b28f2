//! The service as an operator meets it: probes, metrics, configuration errors.

use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually};

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
    let dead = format!("redis://127.0.0.1:{}", crate::helpers::free_port());
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
                ("WD_ADMIN_TOKEN", "t"),
                ("WD_MAX_INFLIGHT", "lots"),
            ],
            "WD_MAX_INFLIGHT",
        ),
        (vec![("WD_ADMIN_TOKEN", "t")], "WD_KAFKA_BROKERS"),
        (vec![("WD_KAFKA_BROKERS", "k:9092")], "WD_ADMIN_TOKEN"),
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "t"),
                ("WD_RETRY_DELAYS", "soon"),
            ],
            "WD_RETRY_DELAYS",
        ),
        (
            vec![
                ("WD_KAFKA_BROKERS", "k:9092"),
                ("WD_ADMIN_TOKEN", "t"),
                ("WD_LOG_FROMAT", "json"),
            ],
            "WD_LOG_FROMAT",
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

#[test]
fn the_config_command_prints_the_effective_configuration_with_secrets_masked() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"))
        .arg("config")
        .env("WD_ADMIN_TOKEN", "s3cret-token")
        .env("WD_MAX_INFLIGHT", "77")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("max_inflight: 77"), "{stdout}");
    assert!(!stdout.contains("s3cret-token"), "{stdout}");
}
