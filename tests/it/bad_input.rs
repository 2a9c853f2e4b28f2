//! Bad records are dead-lettered with their raw bytes and counted; they never stop the
//! partition.

use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_counted_and_the_partition_keeps_flowing() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/ok")}))
        .await;
    world
        .put_template(json!({"id": "broken", "url": receiver.url("/{{ key_values.missing }}")}))
        .await;
    let app = TestApp::spawn(
        &world,
        &[("WD_MAX_EVENT_BYTES", "2048"), ("WD_MAX_PROFILES", "5")],
    )
    .await;

    let oversize = format!(
        r#"{{"event_id":"big","template_id":"t","targetId":1,"x":"{}"}}"#,
        "a".repeat(4096)
    );
    let records: Vec<Vec<u8>> = vec![
        event("good-1", "t", 1),
        b"{not json".to_vec(),
        event("good-2", "t", 1),
        br#"{"event_id":"no-target","template_id":"t"}"#.to_vec(),
        br#"{"event_id":"","template_id":"t","targetId":1}"#.to_vec(),
        oversize.into_bytes(),
        event("too-many", "t", 6),
        event("unknown", "no-such-template", 1),
        event("render", "broken", 1),
        Vec::new(),
        event("good-3", "t", 1),
    ];
    let count = records.len() as i64;
    world
        .produce(&records.iter().cloned().map(|r| (Some(0), r)).collect::<Vec<_>>())
        .await;

    eventually(
        Duration::from_secs(20),
        "the good events behind the bad ones delivered",
        || async { app.metrics.deliveries("delivered") == 3 },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the partition committed to its end",
        || async { world.committed().await == vec![count] },
    )
    .await;
    let keys: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 3, "only the good events were sent: {keys:?}");
    for good in ["good-1:0", "good-2:0", "good-3:0"] {
        assert!(keys.contains(&good.to_string()));
    }
    let m = &app.metrics;
    assert_eq!(m.invalid_events("malformed"), 2, "bad JSON and the empty record");
    assert_eq!(
        m.invalid_events("schema"),
        2,
        "missing targetId and empty event_id"
    );
    assert_eq!(m.invalid_events("oversize"), 1);
    assert_eq!(m.invalid_events("too_many_profiles"), 1);
    assert_eq!(m.dead_letters("invalid_event"), 6);
    assert_eq!(m.dead_letters("template_not_found"), 1);
    assert_eq!(m.dead_letters("render_error"), 1);
    app.stop().await;

    // Every bad record is on the dead-letter topic, byte for byte, with its reason and origin.
    let letters = world.dead_letters().await;
    let expected: Vec<(usize, &str)> = vec![
        (1, "invalid_event"),
        (3, "invalid_event"),
        (4, "invalid_event"),
        (5, "invalid_event"),
        (6, "invalid_event"),
        (7, "template_not_found"),
        (8, "render_error"),
        (9, "invalid_event"),
    ];
    assert_eq!(letters.len(), expected.len(), "{letters:?}");
    for (offset, reason) in expected {
        let letter = letters
            .iter()
            .find(|l| l.headers["wd-original-offset"] == offset.to_string())
            .unwrap_or_else(|| panic!("no dead letter for offset {offset}"));
        assert_eq!(letter.reason(), reason, "offset {offset}");
        assert_eq!(letter.value, records[offset], "raw bytes of offset {offset}");
        assert_eq!(letter.headers["wd-original-topic"], world.topic);
        assert_eq!(letter.headers["wd-original-partition"], "0");
        assert!(!letter.headers["wd-last-error"].is_empty());
    }
}
