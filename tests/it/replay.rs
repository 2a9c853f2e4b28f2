//! `dlq inspect` and `dlq replay`: the real binary against the dead-letter topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually};

/// Exit code, one JSON value per stdout line, stderr.
fn cli(world: &World, args: &[&str]) -> (i32, Vec<Value>, String) {
    let output = crate::helpers::cli(world, args);
    let lines = output
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    (output.code, lines, output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_inspected_dry_run_then_replayed_with_their_idempotency_keys() {
    let world = World::new(1);
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start({
        let healthy = healthy.clone();
        move |_, _| {
            if healthy.load(Ordering::SeqCst) {
                Reply::status(200)
            } else {
                Reply::status(400)
            }
        }
    })
    .await;
    world
        .put_template(json!({"id": "a", "url": receiver.url("/a")}))
        .await;
    world
        .put_template(json!({"id": "b", "url": receiver.url("/b")}))
        .await;
    world
        .produce(&[
            (Some(0), event("e1", "a", 1)),
            (Some(0), event("e2", "a", 1)),
            (Some(0), event("e3", "b", 1)),
            (Some(0), event("e4", "not-yet", 1)),
        ])
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    eventually(Duration::from_secs(30), "four dead letters", || async {
        app.metrics.dead_letters("rejected") == 3 && app.metrics.dead_letters("template_not_found") == 1
    })
    .await;

    let (code, letters, _) = cli(&world, &["dlq", "inspect", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(letters.len(), 4);
    let e1 = letters.iter().find(|l| l["event_id"] == "e1").unwrap();
    assert_eq!(e1["reason"], "rejected");
    assert_eq!(e1["template_id"], "a");
    assert_eq!(e1["target_id"], 42);
    assert_eq!(e1["last_status"], 400);
    assert_eq!(e1["replay_to"], "retry");
    let e4 = letters.iter().find(|l| l["event_id"] == "e4").unwrap();
    assert_eq!(
        (e4["reason"].as_str(), e4["replay_to"].as_str()),
        (Some("template_not_found"), Some("trigger"))
    );

    // A dry run lists what it would do and sends nothing: the topics a replay writes to
    // (retry tier 1, the trigger topic) end where they ended before it.
    let tier = format!("{}-1", world.retry_prefix);
    let ends = || async { (world.topic_ends(&tier, 2).await, world.ends().await) };
    let before = ends().await;
    let (code, selected, stderr) = cli(
        &world,
        &["dlq", "replay", "--template", "a", "--dry-run", "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(selected.len(), 2, "{stderr}");
    assert!(stderr.contains("dry run"), "{stderr}");
    assert_eq!(ends().await, before, "the dry run wrote no record");
    assert_eq!(receiver.count(), 3, "nothing was sent by the dry run");

    // The receiver is fixed and the missing template created: replay for real.
    healthy.store(true, Ordering::SeqCst);
    world
        .put_template(json!({"id": "not-yet", "url": receiver.url("/c")}))
        .await;
    let (code, replayed, stderr) = cli(&world, &["dlq", "replay", "--template", "a", "--json"]);
    assert_eq!((code, replayed.len()), (0, 2), "{stderr}");
    let (code, replayed, stderr) = cli(
        &world,
        &["dlq", "replay", "--reason", "template_not_found", "--json"],
    );
    assert_eq!((code, replayed.len()), (0, 1), "{stderr}");
    eventually(Duration::from_secs(30), "the replayed ones delivered", || async {
        app.metrics.deliveries("delivered") == 3
    })
    .await;
    let delivered: Vec<String> = receiver.requests()[3..]
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    let mut delivered = delivered;
    delivered.sort();
    assert_eq!(
        delivered,
        vec!["e1:0", "e2:0", "e4:0"],
        "same keys as the first attempts"
    );
    app.stop().await;
    assert_eq!(
        world.dead_letters().await.len(),
        4,
        "replay removes nothing from the dead-letter topic"
    );
}

#[test]
fn dlq_commands_need_the_brokers() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"))
        .args(["dlq", "inspect"])
        .env_remove("WD_KAFKA_BROKERS")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("WD_KAFKA_BROKERS"));
}
