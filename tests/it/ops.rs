//! What operators rely on: the /metrics exposition is valid for Prometheus
//! (promtool), and every metric an alert or the Grafana dashboard names is exported.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually, scrape};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `webhook_*` name in the alert rules and the dashboard.
fn metrics_used_by_operators() -> BTreeSet<String> {
    let mut text = std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/alerts.yaml")).unwrap();
    text.push_str(
        &std::fs::read_to_string(format!("{ROOT}/deploy/grafana/webhook-dispatcher.json")).unwrap(),
    );
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("webhook_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

fn promtool_check(exposition: &str) -> std::process::Output {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_passes_promtool_and_has_every_metric_alerts_and_dashboard_use() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, n| Reply::status(if n == 0 { 503 } else { 200 })).await;
    world
        .put_template(json!({"id": "crm", "url": receiver.url("/crm")}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world
        .produce(&[(Some(0), event("a", "crm", 1)), (Some(1), event("b", "crm", 1))])
        .await;
    let url = format!("http://{}/metrics", app.metrics_addr);
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    // Consumer lag comes from librdkafka's statistics, every 5 s.
    eventually(
        Duration::from_secs(30),
        "deliveries settled and lag reported",
        || async {
            app.metrics.deliveries("delivered") == 2 && scrape().await.contains("webhook_consumer_lag{")
        },
    )
    .await;
    let exposition = scrape().await;

    let checked = promtool_check(&exposition);
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "events_consumed_total",
        "events_invalid_total",
        "requests_total",
        "request_duration_seconds",
        "deliveries_total",
        "dead_letters_total",
        "inflight_requests",
        "consumer_lag",
        "oauth_token_requests_total",
        "template_cache_requests_total",
    ] {
        assert!(
            exported.contains(format!("webhook_{name}").as_str()),
            "metric webhook_{name} missing"
        );
    }
    for line in exposition.lines().filter(|l| l.starts_with("# HELP webhook_")) {
        assert!(
            line.split_whitespace().count() > 3,
            "a metric without HELP text: {line}"
        );
    }
    let used = metrics_used_by_operators();
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| exported.contains(base));
        assert!(
            exported.contains(name.as_str()) || base.is_some(),
            "{name} is used by an alert or the dashboard but not exported"
        );
    }
    app.stop().await;
}

/// `scripts/kafka groups`: the broker's own kafka-consumer-groups tool, its rows for `topic`
/// as (partition, committed offset, log end offset, lag).
fn group_as_kafka_sees_it(world: &World, topic: &str) -> Vec<(i32, i64, i64, i64)> {
    let output = std::process::Command::new(format!("{ROOT}/scripts/kafka"))
        .args(["groups", &world.bootstrap(), &world.group])
        .output()
        .expect("scripts/kafka runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows: Vec<_> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 6 && cols[1] == topic)
        .map(|cols| {
            let number = |i: usize| cols[i].parse::<i64>().unwrap_or(-1);
            (number(2) as i32, number(3), number(4), number(5))
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_lag_are_what_kafka_reports() {
    let world = World::on_broker(3);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let records: Vec<_> = (0..90)
        .map(|i| (Some(i % 3), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    let app = TestApp::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "every event delivered", || async {
        receiver.count() == 90
    })
    .await;
    // The lag gauge comes from librdkafka's statistics (every 5 s) and the commit from its
    // interval (1 s): both settle on 0.
    eventually(Duration::from_secs(30), "the broker reports lag 0", || async {
        let rows = group_as_kafka_sees_it(&world, &world.topic);
        rows.len() == 3 && rows.iter().all(|(_, _, _, lag)| *lag == 0)
    })
    .await;
    let rows = group_as_kafka_sees_it(&world, &world.topic);
    let ends = world.ends().await;
    for (partition, committed, end, _) in &rows {
        assert_eq!(*committed, ends[*partition as usize], "{rows:?}");
        assert_eq!(*end, ends[*partition as usize], "{rows:?}");
    }
    for partition in 0..3 {
        let series = format!(
            "webhook_consumer_lag{{partition=\"{partition}\",topic=\"{}\"}}",
            world.topic
        );
        eventually(Duration::from_secs(20), "webhook_consumer_lag agrees", || async {
            scrape(app.metrics_addr, &series).await == Some(0.0)
        })
        .await;
    }
    app.stop().await;
}
