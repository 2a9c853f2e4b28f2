//! The chaos suite: under continuous load with healthy, flaky, slow and rejecting
//! destinations and retries in flight, the real binary is killed with SIGKILL at pseudo-random
//! moments and restarted; at the end every event is accounted for: delivered at least once,
//! or a dead letter with a reason. It runs on the real broker under both consumer group
//! protocols. `CHAOS_KILLS` sets the number of kills (default 10; more for a longer run by
//! hand). Every other process runs two event loops (`WD_WORKER_THREADS=2`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{OwnBroker, Process, World, event, eventually, eventually_ok, test_broker};

/// Keys each receiver answered with 2xx, and how often.
type Answered = Arc<Mutex<HashMap<String, usize>>>;

fn key(r: &webhook_dispatcher::demo::receiver::Received) -> String {
    r.header("idempotency-key").unwrap_or_default().to_string()
}

/// A receiver that answers `reply(first_time)` and counts the keys it answered with 2xx.
async fn receiver(
    answered: &Answered,
    reply: impl Fn(&str, bool) -> Reply + Send + Sync + 'static,
) -> Receiver {
    let answered = answered.clone();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    Receiver::counting(move |r, _| {
        let key = key(r);
        let first = seen.lock().unwrap().insert(key.clone());
        let reply = reply(&key, first);
        if (200..300).contains(&reply.status) {
            *answered.lock().unwrap().entry(key).or_default() += 1;
        }
        reply
    })
    .await
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The classic group protocol with the cooperative-sticky assignor; the test helpers' short
/// session (`QUICK_GROUP`) moves a killed member's partitions within seconds.
const SETTINGS: &[(&str, &str)] = &[("WD_MAX_INFLIGHT", "16"), ("WD_PARTITION_WINDOW", "200")];

/// KIP-848's protocol: the session is the broker's (`group.consumer.session.timeout.ms`,
/// 6 s on the test broker).
const CONSUMER_PROTOCOL: &[(&str, &str)] = &[
    ("WD_MAX_INFLIGHT", "16"),
    ("WD_PARTITION_WINDOW", "200"),
    ("WD_KAFKA_PROPERTIES", "group.protocol=consumer"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_under_mixed_load_loses_nothing() {
    kill_9_at_random_moments(World::new(4), SETTINGS, Hosts::OnePerKind, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_under_the_consumer_group_protocol_loses_nothing() {
    kill_9_at_random_moments(World::on_broker(4), CONSUMER_PROTOCOL, Hosts::OnePerKind, 10).await;
}

/// One destination host serving the four kinds of traffic, mostly healthy: its failures
/// (a first attempt in twenty) never open its breaker, and every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_on_one_host_keeps_its_breaker_closed() {
    kill_9_at_random_moments(World::new(4), SETTINGS, Hosts::One, 5).await;
}

/// Where the four kinds of traffic go.
#[derive(Clone, Copy, PartialEq)]
enum Hosts {
    OnePerKind,
    One,
}

async fn kill_9_at_random_moments(
    world: World,
    settings: &'static [(&str, &str)],
    hosts: Hosts,
    kills: usize,
) {
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(kills);
    const PER_ROUND: usize = 300;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("chaos seed {seed}");
    let mut random = Lcg(seed);
    let answered: Answered = Arc::default();
    let kinds = ["healthy", "flaky", "slow", "reject"];
    let receivers = match hosts {
        Hosts::OnePerKind => {
            let mut receivers = Vec::new();
            for kind in kinds {
                receivers.push(receiver(&answered, move |key, first| reply(kind, key, first)).await);
            }
            receivers
        }
        Hosts::One => vec![
            receiver(&answered, |key, first| {
                reply(key.split('-').next().unwrap_or_default(), key, first)
            })
            .await,
        ],
    };
    for (i, kind) in kinds.iter().enumerate() {
        let url = receivers[i % receivers.len()].url(&format!("/{kind}"));
        world
            .put_template(json!({"id": kind, "url": url, "max_retries": 5}))
            .await;
    }
    let mut events: Vec<(String, &str)> = Vec::new();
    let mut produce = |round: usize| {
        let batch: Vec<(String, &str)> = (0..PER_ROUND)
            .map(|i| {
                let kind = kinds[i % kinds.len()];
                (format!("{kind}-{}-{round}", i / kinds.len()), kind)
            })
            .collect();
        events.extend(batch.iter().cloned());
        batch
            .into_iter()
            .map(|(id, kind)| (None, event(&id, kind, 1)))
            .collect::<Vec<_>>()
    };

    let mut per_kill = Vec::new();
    let mut breaker_opened = 0.0;
    for round in 0..kills {
        world.produce(&produce(round)).await;
        // Every other process runs two event loops (two group members in one process).
        let two_loops = [settings, &[("WD_WORKER_THREADS", "2")]].concat();
        let process = Process::spawn(&world, if round % 2 == 1 { &two_loops } else { settings }).await;
        let before = answered.lock().unwrap().len();
        // Some progress first, then a pseudo-random moment within the next ~1.5 s.
        eventually(Duration::from_secs(60), "the dispatcher is under way", || async {
            answered.lock().unwrap().len() > before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100 + random.below(1400))).await;
        breaker_opened += opened(&process).await;
        process.kill9();
        per_kill.push(answered.lock().unwrap().len() - before);
    }
    world.produce(&produce(kills)).await;
    let last = Process::spawn(&world, settings).await;

    let accounted = || async {
        let dead: HashSet<String> = world
            .dead_letters()
            .await
            .into_iter()
            .filter(|l| !l.reason().is_empty())
            .filter_map(|l| l.key)
            .collect();
        let answered = answered.lock().unwrap();
        events
            .iter()
            .filter(|(id, _)| answered.contains_key(&format!("{id}:0")) || dead.contains(id))
            .count()
    };
    let all = eventually_ok(Duration::from_secs(120), || async {
        accounted().await == events.len()
    })
    .await;
    let settled = eventually_ok(Duration::from_secs(30), || async {
        world.committed().await == world.ends().await
    })
    .await;
    let lost = events.len() - accounted().await;
    let duplicates: usize = answered.lock().unwrap().values().map(|n| n - 1).sum();
    let protocol = if settings
        .iter()
        .any(|(_, v)| v.contains("group.protocol=consumer"))
    {
        "consumer"
    } else {
        "classic"
    };
    eprintln!(
        "chaos ({protocol} protocol): {} events, {kills} kills (deliveries between start and kill: \
         {per_kill:?}), lost {lost}, duplicate deliveries {duplicates}",
        events.len()
    );
    assert!(
        all && lost == 0,
        "{lost} events neither delivered nor dead-lettered (seed {seed})"
    );
    assert!(
        settled,
        "committed {:?}, ends {:?}",
        world.committed().await,
        world.ends().await
    );
    // Every rejecting event is a dead letter saying why; nothing else is.
    let letters = world.dead_letters().await;
    assert!(letters.iter().all(|l| l.reason() == "rejected"), "{letters:?}");
    let rejected: HashSet<_> = letters.iter().filter_map(|l| l.key.clone()).collect();
    assert_eq!(
        rejected.len(),
        events.iter().filter(|(_, k)| *k == "reject").count()
    );
    breaker_opened += opened(&last).await;
    if hosts == Hosts::One {
        assert_eq!(breaker_opened, 0.0, "the mostly healthy host's breaker opened");
    }
    assert!(last.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_going_down_mid_run_loses_nothing() {
    const EVENTS: usize = 600;
    let world = World::on_mock(2);
    let answered: Answered = Arc::default();
    let slow = receiver(&answered, |_, _| {
        Reply::status(200).after(Duration::from_millis(20))
    })
    .await;
    world.put_template(json!({"id": "t", "url": slow.url("/")})).await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some((i % 2) as i32), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    let process = Process::spawn(&world, SETTINGS).await;
    eventually(Duration::from_secs(60), "under way", || async {
        answered.lock().unwrap().len() >= 50
    })
    .await;
    // The broker is gone for 8 s: connections dropped, commits and fetches fail meanwhile.
    // The sleep is the fault's length, not a wait for the dispatcher: the assertions come
    // after the broker is back and wait on deliveries and commits.
    world.kafka.mock().set_broker_up(false).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    world.kafka.mock().set_broker_up(true).unwrap();
    let duplicates = all_delivered_once_settled(&world, &answered, EVENTS, Duration::from_secs(90)).await;
    eprintln!("broker outage: {EVENTS} events, lost 0, duplicate deliveries {duplicates}");
    assert!(process.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_process_restarted_mid_run_loses_nothing() {
    const EVENTS: usize = 1500;
    assert!(
        test_broker().is_some(),
        "this test starts a real broker of its own: run it from scripts/test"
    );
    let broker = OwnBroker::start();
    let world = World::on(&broker, 2);
    let answered: Answered = Arc::default();
    // ~4 s of work at 16 in flight: the stop lands mid-run.
    let slow = receiver(&answered, |_, _| {
        Reply::status(200).after(Duration::from_millis(40))
    })
    .await;
    world.put_template(json!({"id": "t", "url": slow.url("/")})).await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| (Some((i % 2) as i32), event(&format!("e{i}"), "t", 1)))
        .collect();
    world.produce(&records).await;
    let process = Process::spawn(&world, SETTINGS).await;
    // Under way, and some of it committed: what was not is sent again after the outage.
    eventually(Duration::from_secs(60), "under way and committing", || async {
        let under_way = answered.lock().unwrap().len() >= 50;
        under_way && world.committed().await.iter().sum::<i64>() > 0
    })
    .await;
    // The broker process stops (SIGTERM) and starts again 5 s later on the same port. The
    // sleep is the outage's length, not a wait for the dispatcher.
    broker.stop();
    let at_stop = answered.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.start_again();
    let duplicates = all_delivered_once_settled(&world, &answered, EVENTS, Duration::from_secs(120)).await;
    let log = process.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .count();
    eprintln!(
        "broker restart: {EVENTS} events ({at_stop} answered before the stop), lost 0, \
         duplicate deliveries {duplicates}, {warnings} warning lines"
    );
    assert!(warnings >= 1, "the outage is said in the log");
    assert!(warnings <= 40, "{warnings} warning lines for one restart:\n{log}");
    assert!(process.terminate().await.success());
}

/// What a destination's answer is for `kind` of traffic: healthy, flaky (every fifth event
/// fails its first attempt, so retries are in flight at every kill), slow (30 ms) or
/// rejecting (400).
fn reply(kind: &str, key: &str, first: bool) -> Reply {
    let n: u64 = key
        .split(['-', ':'])
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match kind {
        "flaky" if first && n.is_multiple_of(5) => Reply::status(503),
        "slow" => Reply::status(200).after(Duration::from_millis(30)),
        "reject" => Reply::status(400),
        _ => Reply::status(200),
    }
}

/// How often a process's breakers opened, from its metrics (0 when it cannot be asked).
async fn opened(process: &Process) -> f64 {
    crate::helpers::scrape(
        process.metrics_addr,
        "webhook_circuit_transitions_total{to=\"open\"}",
    )
    .await
    .unwrap_or(0.0)
}

/// Waits (up to `within`) until events `e0`..`e{events}` were all answered, then for the
/// group's commits to reach the end; asserts nothing was dead-lettered. The duplicate
/// deliveries.
async fn all_delivered_once_settled(
    world: &World,
    answered: &Answered,
    events: usize,
    within: Duration,
) -> usize {
    eventually(within, "every event delivered", || async {
        (0..events).all(|i| answered.lock().unwrap().contains_key(&format!("e{i}:0")))
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
    assert!(world.dead_letters().await.is_empty());
    answered.lock().unwrap().values().map(|n| n - 1).sum()
}
