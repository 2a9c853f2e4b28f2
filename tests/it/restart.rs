//! Crashes and restarts of the real binary: kill -9 loses nothing; a graceful stop
//! re-sends nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{Process, World, event, eventually, scrape};

const EVENTS: usize = 400;

/// Settings that make a stop land mid-backlog: few requests in flight and a small window
/// of records per partition (a graceful stop finishes what is in flight, nothing more).
/// The test helpers' short session (`QUICK_GROUP`) lets the group notice a killed member
/// quickly.
const SETTINGS: &[(&str, &str)] = &[("WD_MAX_INFLIGHT", "8"), ("WD_PARTITION_WINDOW", "20")];

/// A first dispatcher process that is mid-way through the records of `setup`.
async fn first_process_mid_way(world: &World, receiver: &Receiver, settings: &[(&str, &str)]) -> Process {
    let first = Process::spawn(world, settings).await;
    eventually(
        Duration::from_secs(30),
        "the first process is mid-way",
        || async { receiver.count() >= 100 },
    )
    .await;
    // A stop while the group still forms (a loop's member not yet assigned) is another
    // case: wait until every loop holds trigger partitions.
    let loops = settings
        .iter()
        .find(|(key, _)| *key == "WD_WORKER_THREADS")
        .map_or(1, |(_, n)| n.parse().unwrap());
    eventually(
        Duration::from_secs(30),
        "every event loop holds partitions",
        || async { assigned_loops(&first.log_text()).len() == loops },
    )
    .await;
    first
}

/// The threads (event loops) that logged an assignment of trigger partitions.
fn assigned_loops(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["message"] == "partitions assigned"
                && l["role"] == "trigger"
                && l["partitions"].as_u64() > Some(0)
        })
        .filter_map(|l| l["threadName"].as_str().map(str::to_string))
        .collect()
}

/// EVENTS records waiting on `partitions` partitions, and a receiver taking ~40 ms each.
async fn setup(partitions: i32) -> (World, Receiver) {
    let world = World::new(partitions);
    let receiver = template_and_events(&world).await;
    (world, receiver)
}

/// The template, its receiver taking ~40 ms a request (~2 s of work at 8 in flight, so a
/// stop lands mid-run even on a loaded machine), and EVENTS records over the partitions.
async fn template_and_events(world: &World) -> Receiver {
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(40))).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some(i as i32 % world.partitions), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    receiver
}

fn arrivals(receiver: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in receiver.requests() {
        *seen
            .entry(r.header("idempotency-key").unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_then_restart_delivers_everything_at_least_once() {
    let (world, receiver) = setup(2).await;
    let first = first_process_mid_way(&world, &receiver, SETTINGS).await;
    first.kill9();
    let at_kill = receiver.count();
    assert!((at_kill as usize) < EVENTS, "killed before the end ({at_kill})");

    let second = Process::spawn(&world, SETTINGS).await;
    eventually(
        Duration::from_secs(60),
        "every event delivered after the restart",
        || async { arrivals(&receiver).len() == EVENTS },
    )
    .await;
    let seen = arrivals(&receiver);
    for i in 0..EVENTS {
        assert!(seen.contains_key(&format!("e{i}:0")), "e{i} lost");
    }
    eventually(
        Duration::from_secs(20),
        "offsets committed to the end",
        || async { world.committed().await == world.ends().await },
    )
    .await;
    assert!(second.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_in_the_middle_then_restart_sends_nothing_twice() {
    let (world, receiver) = setup(2).await;
    graceful_stop_then_restart(&world, &receiver, SETTINGS).await;
}

/// KIP-848's consumer group protocol: the assignment, session and heartbeat are the
/// broker's (the test broker's session is 6 s).
const CONSUMER_PROTOCOL: &[(&str, &str)] = &[
    ("WD_MAX_INFLIGHT", "8"),
    ("WD_PARTITION_WINDOW", "20"),
    ("WD_KAFKA_PROPERTIES", "group.protocol=consumer"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_consumer_group_protocol_two_loops_stop_without_sending_twice() {
    let world = World::on_broker(4);
    let receiver = template_and_events(&world).await;
    let two_loops = [CONSUMER_PROTOCOL, &[("WD_WORKER_THREADS", "2")]].concat();
    graceful_stop_then_restart(&world, &receiver, &two_loops).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_consumer_group_protocol_kill_9_loses_nothing() {
    let world = World::on_broker(2);
    let receiver = template_and_events(&world).await;
    let first = first_process_mid_way(&world, &receiver, CONSUMER_PROTOCOL).await;
    first.kill9();
    let second = Process::spawn(&world, CONSUMER_PROTOCOL).await;
    eventually(
        Duration::from_secs(60),
        "every event delivered after the kill",
        || async { arrivals(&receiver).len() == EVENTS },
    )
    .await;
    assert!(second.terminate().await.success());
    assert_eq!(world.committed().await, world.ends().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_event_loops_share_the_partitions_and_stop_without_sending_twice() {
    let (world, receiver) = setup(4).await;
    let two_loops = [SETTINGS, &[("WD_WORKER_THREADS", "2")]].concat();
    // Before the members left together, one loop's final commit was refused by the
    // rebalance the other's leaving started, and half of what was sent went again.
    let messages = graceful_stop_then_restart(&world, &receiver, &two_loops).await;
    // Each loop is a group member of its own: both held trigger partitions and both
    // committed their share at the stop.
    let assigned: Vec<&str> = messages
        .iter()
        .filter(|l| l["message"] == "partitions assigned" && l["role"] == "trigger")
        .filter(|l| l["partitions"].as_u64() > Some(0))
        .filter_map(|l| l["threadName"].as_str())
        .collect();
    let committed: std::collections::BTreeSet<&str> = messages
        .iter()
        .filter(|l| l["message"] == "final offsets committed" && l["role"] == "trigger")
        .filter_map(|l| l["threadName"].as_str())
        .collect();
    for event_loop in ["main", "event-loop-1"] {
        assert!(assigned.contains(&event_loop), "{event_loop}: {messages:?}");
        assert!(committed.contains(event_loop), "{event_loop}: {messages:?}");
    }
}

/// Stops a first process mid-way with SIGTERM, checks what it committed, then lets a
/// second one finish: every event delivered once. Returns the first one's log lines.
async fn graceful_stop_then_restart(
    world: &World,
    receiver: &Receiver,
    settings: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let first = first_process_mid_way(world, receiver, settings).await;
    let log = first.log.clone();
    let status = first.terminate().await;
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; log: {log}");
    // WD_LOG_FORMAT=json: one JSON object per line, and the drain says what it did.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("shutting down")),
        "{messages:?}"
    );
    assert!(messages.contains(&"final offsets committed"), "{messages:?}");
    let at_stop = receiver.count() as usize;
    assert!(at_stop < EVENTS, "stopped before the end ({at_stop})");
    // -1: nothing committed on that partition (none of its records was sent).
    let committed = world.committed().await.iter().map(|o| o.max(&0)).sum::<i64>() as usize;
    assert_eq!(committed, at_stop, "everything sent before the stop is committed");

    let second = Process::spawn(world, settings).await;
    eventually(
        Duration::from_secs(60),
        "every event delivered after the restart",
        || async { receiver.count() as usize >= EVENTS },
    )
    .await;
    assert!(second.terminate().await.success());
    let seen = arrivals(receiver);
    assert_eq!(seen.len(), EVENTS);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(world.committed().await, world.ends().await);
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_deliveries_wait_in_a_retry_tier_loses_none() {
    const WAITING: usize = 20;
    let world = World::new(1);
    // The first WAITING requests fail: every event goes to retry tier 1 (1 s).
    let receiver = Receiver::start(|_, n| {
        if (n as usize) < WAITING {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let records: Vec<_> = (0..WAITING)
        .map(|i| (Some(0), event(&format!("r{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;

    let first = Process::spawn(&world, SETTINGS).await;
    let metrics = first.metrics_addr;
    eventually(
        Duration::from_secs(30),
        "every delivery parked in tier 1",
        || async {
            scrape(metrics, "webhook_retries_scheduled_total{tier=\"1\"}").await == Some(WAITING as f64)
        },
    )
    .await;
    first.kill9();

    let second = Process::spawn(&world, SETTINGS).await;
    eventually(
        Duration::from_secs(60),
        "every parked delivery delivered after the restart",
        || async {
            let delivered: std::collections::HashSet<String> = receiver.requests()
                [WAITING.min(receiver.requests().len())..]
                .iter()
                .map(|r| r.header("idempotency-key").unwrap().to_string())
                .collect();
            delivered.len() == WAITING
        },
    )
    .await;
    assert!(second.terminate().await.success());
    assert!(world.dead_letters().await.is_empty());
}

/// Produces `per_tick` events every 100 ms, spread over the partitions, until `stop`;
/// returns every event id it produced. Ids are `p{partition}-{n}`.
fn steady_stream(
    world: &World,
    per_tick: usize,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", world.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let (topic, partitions) = (world.topic.clone(), world.partitions);
    tokio::spawn(async move {
        let mut produced = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !stop.is_cancelled() {
            tick.tick().await;
            for _ in 0..per_tick {
                let partition = (produced.len() % partitions as usize) as i32;
                let id = format!("p{partition}-{}", produced.len());
                let value = event(&id, "t", 1);
                let record = FutureRecord::to(&topic)
                    .payload(&value)
                    .key(&id)
                    .partition(partition);
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .expect("produced");
                produced.push(id);
            }
        }
        produced
    })
}

/// Three members share six partitions under a steady stream of events and are replaced
/// one by one, each stopped with SIGTERM (a rolling update). Nothing is lost, nothing is
/// sent twice, and the longest pause a leave caused (from the SIGTERM until every partition
/// delivers again) is printed.
async fn rolling_restart_of_three_members(world: World, settings: &[(&str, &str)], protocol: &str) {
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(5))).await;
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let stream = steady_stream(&world, 12, stop.clone());
    let mut members: Vec<Process> =
        futures::future::join_all((0..3).map(|_| Process::spawn(&world, settings))).await;
    eventually(
        Duration::from_secs(60),
        "every member holds partitions",
        || async { members.iter().all(|m| !assigned_loops(&m.log_text()).is_empty()) },
    )
    .await;
    let mut pauses = Vec::new();
    for _ in 0..3 {
        let leaving = members.remove(0);
        let left_at = std::time::Instant::now();
        assert!(leaving.terminate().await.success());
        members.push(Process::spawn(&world, settings).await);
        // Every partition delivers an event again after the leave.
        let mut resumed = Vec::new();
        for partition in 0..world.partitions {
            let prefix = format!("p{partition}-");
            eventually(
                Duration::from_secs(60),
                "the partition delivers again",
                || async {
                    receiver.requests().iter().any(|r| {
                        r.at > left_at
                            && r.header("idempotency-key")
                                .is_some_and(|k| k.starts_with(&prefix))
                    })
                },
            )
            .await;
            let first = receiver
                .requests()
                .iter()
                .filter(|r| r.at > left_at)
                .filter(|r| {
                    r.header("idempotency-key")
                        .is_some_and(|k| k.starts_with(&prefix))
                })
                .map(|r| r.at)
                .min()
                .expect("seen above");
            resumed.push(first - left_at);
        }
        pauses.push(resumed.into_iter().max().unwrap_or_default());
        // Every member of the new set holds partitions before the next one leaves.
        eventually(
            Duration::from_secs(60),
            "the new member holds partitions",
            || async { members.iter().all(|m| !assigned_loops(&m.log_text()).is_empty()) },
        )
        .await;
    }
    stop.cancel();
    let produced = stream.await.expect("the stream ends");
    eventually(Duration::from_secs(60), "every event delivered", || async {
        arrivals(&receiver).len() == produced.len()
    })
    .await;
    for member in members {
        assert!(member.terminate().await.success());
    }
    let seen = arrivals(&receiver);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "rolling restart ({protocol} protocol): {} events, lost 0, duplicates {}, pause per leave {pauses:?}",
        produced.len(),
        twice.len()
    );
    assert!(twice.is_empty(), "delivered twice after clean leaves: {twice:?}");
    assert_eq!(world.committed().await, world.ends().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_members_loses_nothing_and_sends_nothing_twice() {
    let settings = [("WD_MAX_INFLIGHT", "8")];
    rolling_restart_of_three_members(World::new(6), &settings, "classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_consumer_group_protocol_a_rolling_restart_loses_nothing_and_sends_nothing_twice() {
    let settings = [
        ("WD_MAX_INFLIGHT", "8"),
        ("WD_KAFKA_PROPERTIES", "group.protocol=consumer"),
    ];
    rolling_restart_of_three_members(World::on_broker(6), &settings, "consumer").await;
}

/// A member joins while the first one's memory budget has paused its partitions: the
/// partitions that move are handed over with nothing lost and nothing sent twice, and the
/// joiner gets its partitions resumed.
async fn a_member_joins_while_the_memory_budget_pauses(world: World, settings: &[(&str, &str)]) {
    const EVENTS: usize = 800;
    // Slow (32 requests a second with 8 in flight) until the joiner owns partitions, so the
    // backlog outlasts however long joining takes, while the records in flight on a revoked
    // partition still settle well within the revocation's wait; fast afterwards.
    let joined = Arc::new(AtomicBool::new(false));
    let receiver = {
        let joined = joined.clone();
        Receiver::start(move |_, _| {
            let delay = if joined.load(Ordering::SeqCst) { 20 } else { 250 };
            Reply::status(200).after(Duration::from_millis(delay))
        })
        .await
    };
    world
        .put_template(json!({"id": "t", "url": receiver.url("/")}))
        .await;
    // 8 KiB of key_values each: a 1 MiB budget holds about a hundred.
    let padding = "x".repeat(8 * 1024);
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            let value = json!({"event_id": format!("e{i}"), "template_id": "t", "targetId": 42,
                               "key_values": {"padding": padding}, "profiles": [{"Identity": i}]});
            (Some(i as i32 % world.partitions), value.to_string().into_bytes())
        })
        .collect();
    world.produce(&records).await;
    let budget = [settings, &[("WD_MAX_PENDING_BYTES", "1048576")]].concat();
    let first = Process::spawn(&world, &budget).await;
    eventually(
        Duration::from_secs(30),
        "the budget pauses the partitions",
        || async {
            scrape(first.metrics_addr, "webhook_partitions_paused")
                .await
                .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    let second = Process::spawn(&world, &budget).await;
    eventually(Duration::from_secs(40), "the joiner gets partitions", || async {
        !assigned_loops(&second.log_text()).is_empty()
    })
    .await;
    assert!(
        arrivals(&receiver).len() < EVENTS,
        "the partitions moved mid-backlog"
    );
    joined.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(60), "every event delivered", || async {
        arrivals(&receiver).len() == EVENTS
    })
    .await;
    assert!(first.terminate().await.success());
    assert!(second.terminate().await.success());
    let twice: Vec<_> = arrivals(&receiver).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(world.committed().await, world.ends().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_while_the_memory_budget_pauses_loses_nothing_and_sends_nothing_twice() {
    a_member_joins_while_the_memory_budget_pauses(World::new(4), SETTINGS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_consumer_group_protocol_a_member_joining_while_paused_sends_nothing_twice() {
    a_member_joins_while_the_memory_budget_pauses(World::on_broker(4), CONSUMER_PROTOCOL).await;
}
