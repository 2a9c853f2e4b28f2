//! What reaches the receivers, and which offsets get committed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, event, eventually, eventually_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_as_the_right_chunks_and_offsets_reach_the_end() {
    let world = World::new(3);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(
            json!({"id": "batched", "url": receiver.url("/hooks/{{ targetId }}"), "method": "PUT",
                             "batch_size": 3, "headers": {"X-Source": "campaigns"}}),
        )
        .await;
    world
        .put_template(json!({"id": "per-profile", "method": "GET",
                             "url": receiver.url("/users/{{ profile.Identity }}?e={{ event_id }}")}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;

    // 30 events of 7 profiles: 10 per partition, half batched, half per profile.
    let records: Vec<_> = (0..30)
        .map(|i| {
            let template = if i % 2 == 0 { "batched" } else { "per-profile" };
            (Some(i % 3), event(&format!("ev{i}"), template, 7))
        })
        .collect();
    world.produce(&records).await;

    // batched: 15 events x 3 chunks (3,3,1); per-profile: 15 events x 7 requests.
    let expected = 15 * 3 + 15 * 7;
    eventually(Duration::from_secs(30), "every request received", || async {
        receiver.count() >= expected
    })
    .await;
    let requests = receiver.requests();
    assert_eq!(requests.len() as u64, expected);

    let mut batched: BTreeMap<String, Value> = BTreeMap::new();
    for r in &requests {
        assert_eq!(
            r.header("user-agent"),
            Some(concat!("webhook-dispatcher/", env!("CARGO_PKG_VERSION")))
        );
        let key = r.header("idempotency-key").expect("Idempotency-Key").to_string();
        if r.method == "PUT" {
            assert_eq!(r.uri, "/hooks/42");
            assert_eq!(r.header("x-source"), Some("campaigns"));
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(batched.insert(key, r.json()).is_none(), "each chunk exactly once");
        } else {
            assert_eq!(r.method, "GET");
            assert!(r.body.is_empty(), "GET carries no body");
            let (event_id, chunk) = key.split_once(':').unwrap();
            assert_eq!(r.uri, format!("/users/{event_id}-u{chunk}?e={event_id}"));
        }
    }
    assert_eq!(batched.len(), 45);
    let body = &batched["ev4:2"];
    assert_eq!(
        body,
        &json!({"is_test": false, "targetId": 42, "key_values": {"key": "value"},
                "profiles": [{"Identity": "ev4-u6", "Email": "u6@example.com"}]})
    );
    assert_eq!(batched["ev4:0"]["profiles"].as_array().unwrap().len(), 3);

    eventually(
        Duration::from_secs(15),
        "offsets committed to the end",
        || async { world.committed().await == world.ends().await },
    )
    .await;
    assert_eq!(world.ends().await, vec![10, 10, 10]);
    assert_eq!(app.metrics.deliveries("delivered"), expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_event_holds_the_commit_below_it() {
    // Partition 0 holds the events under test; partition 1 takes markers whose commits show
    // that the dispatcher's auto-commit ran.
    let world = World::new(2);
    // The first event's request hangs for 4 s; the five behind it answer at once.
    let receiver = Receiver::start(|r, _| {
        if r.header("idempotency-key") == Some("slow:0") {
            Reply::status(200).after(Duration::from_secs(4))
        } else {
            Reply::status(200)
        }
    })
    .await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    let mut records = vec![(Some(0), event("slow", "t", 1))];
    records.extend((0..5).map(|i| (Some(0), event(&format!("fast{i}"), "t", 1))));
    world.produce(&records).await;

    eventually(Duration::from_secs(20), "the fast events delivered", || async {
        app.metrics.deliveries("delivered") == 5
    })
    .await;
    // Two auto-commits after the fast events settled, each seen as a marker's commit on
    // partition 1: two chances to (wrongly) move partition 0 past offset 0.
    for marker in 1..=2 {
        world
            .produce(&[(Some(1), event(&format!("marker{marker}"), "t", 1))])
            .await;
        eventually(Duration::from_secs(10), "the marker committed", || async {
            world.committed().await[1] == marker
        })
        .await;
    }
    assert!(
        app.metrics.deliveries("delivered") == 7,
        "the slow one is still in flight"
    );
    assert!(
        world.committed().await[0] <= 0,
        "committed {:?} past the unsettled offset 0",
        world.committed().await
    );

    eventually(
        Duration::from_secs(20),
        "everything committed once the slow one settles",
        || async { world.committed().await == vec![6, 2] },
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_joining_mid_run_loses_nothing() {
    const EVENTS: usize = 1000;
    let world = World::new(4);
    // ~15 s of work for one replica (2 in flight x 30 ms), so the rebalance lands mid-run.
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(30))).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some((i % 4) as i32), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;

    // Short timeouts (the helpers' session, this poll interval) keep the test quick on
    // librdkafka's mock cluster, which completes a rebalance only once a member's timeouts
    // pass (a broker does not wait). Default
    // assignor: cooperative-sticky, so the first replica keeps consuming the partitions it
    // keeps.
    let settings = [
        ("WD_MAX_INFLIGHT", "2"),
        ("WD_PARTITION_WINDOW", "20"),
        ("WD_KAFKA_PROPERTIES", "max.poll.interval.ms=7000"),
    ];
    let first = TestApp::spawn(&world, &settings).await;
    eventually(
        Duration::from_secs(30),
        "the first replica is under way",
        || async { receiver.count() >= 50 },
    )
    .await;
    let second = TestApp::spawn(&world, &settings).await;
    eventually(Duration::from_secs(90), "every event delivered", || async {
        let keys: std::collections::HashSet<_> = receiver
            .requests()
            .iter()
            .filter_map(|r| r.header("idempotency-key").map(str::to_string))
            .collect();
        keys.len() == EVENTS
    })
    .await;
    let settled = eventually_ok(Duration::from_secs(30), || async {
        world.committed().await == world.ends().await
    })
    .await;
    assert!(
        settled,
        "committed {:?}, ends {:?}",
        world.committed().await,
        world.ends().await
    );
    assert!(
        second.metrics.deliveries("delivered") > 0,
        "the second replica took partitions over mid-run"
    );
    assert!(first.metrics.deliveries("delivered") > 0);
    first.stop().await;
    second.stop().await;
}
