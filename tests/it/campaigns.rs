//! Campaign control: pause, resume and cancel a campaign while others keep flowing, across
//! two replicas, on the real broker.

use std::time::Duration;

use serde_json::{Value, json};
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{TestApp, World, admin_call, eventually};

/// A trigger event of campaign `target` with one profile.
fn campaign_event(id: &str, template: &str, target: i64) -> Vec<u8> {
    json!({"event_id": id, "template_id": template, "targetId": target,
           "profiles": [{"Identity": format!("{id}-u0")}]})
    .to_string()
    .into_bytes()
}

/// Requests the receiver got for campaign `path` (`/a` or `/b`).
fn received(receiver: &Receiver, path: &str) -> usize {
    receiver.requests().iter().filter(|r| r.uri == path).count()
}

async fn produce(world: &World, template: &str, target: i64, ids: std::ops::Range<usize>) {
    let records: Vec<_> = ids
        .map(|n| (None, campaign_event(&format!("{template}{n}"), template, target)))
        .collect();
    world.produce(&records).await;
}

async fn control(app: &TestApp, target: i64, action: &str) -> Value {
    let (status, state) = admin_call(app, "POST", &format!("/v1/campaigns/{target}/{action}"), None).await;
    assert_eq!(status, 200, "{action}: {state}");
    state
}

async fn stats(app: &TestApp, target: i64) -> Value {
    admin_call(app, "GET", &format!("/v1/campaigns/{target}/stats"), None)
        .await
        .1
}

/// Records on every partition of `topic` (two partitions each in a test's world).
async fn records_on(world: &World, topic: &str) -> i64 {
    world.topic_ends(topic, 2).await.iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_campaign_is_held_once_while_others_flow_then_resume_and_cancel_decide_its_deliveries() {
    let world = World::new(4);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    for id in ["a", "b"] {
        world
            .put_template(json!({"id": id, "url": receiver.url(&format!("/{id}"))}))
            .await;
    }
    // Two replicas share the partitions: a pause asked of one holds on both.
    let (one, two) = (
        TestApp::spawn(&world, &[]).await,
        TestApp::spawn(&world, &[]).await,
    );
    produce(&world, "a", 1, 0..10).await;
    produce(&world, "b", 2, 0..10).await;
    eventually(Duration::from_secs(30), "both campaigns delivered", || async {
        received(&receiver, "/a") == 10 && received(&receiver, "/b") == 10
    })
    .await;

    let paused = control(&one, 1, "pause").await;
    assert_eq!(
        (paused["targetId"].as_i64(), paused["state"].as_str()),
        (Some(1), Some("paused"))
    );
    assert!(paused["since"].is_string(), "{paused}");
    // The other replica hears it through Redis; give it the second it is allowed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hold = format!("{}-held", world.retry_prefix);
    let tiers = [
        format!("{}-1", world.retry_prefix),
        format!("{}-2", world.retry_prefix),
    ];
    let tier_records = || async { records_on(&world, &tiers[0]).await + records_on(&world, &tiers[1]).await };
    let tiers_before = tier_records().await;

    // A minute of load on the same partitions: campaign 1 is held, campaign 2 flows.
    let mut sent = 0;
    for wave in 0..30 {
        produce(&world, "a", 1, 10 + wave * 5..15 + wave * 5).await;
        produce(&world, "b", 2, 10 + wave * 5..15 + wave * 5).await;
        sent += 5;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eventually(
        Duration::from_secs(30),
        "campaign 2's deliveries all arrive",
        || async { received(&receiver, "/b") == 10 + sent },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "every held delivery parked once",
        || async { records_on(&world, &hold).await == sent as i64 },
    )
    .await;
    assert_eq!(
        received(&receiver, "/a"),
        10,
        "nothing of the paused campaign was sent"
    );
    assert_eq!(
        tier_records().await,
        tiers_before,
        "no retry traffic for a paused campaign"
    );
    eventually(Duration::from_secs(10), "the stats show what is held", || async {
        let stats = stats(&two, 1).await;
        stats["state"] == "paused" && stats["held"] == sent
    })
    .await;
    // Held, however long: the hold topic does not grow with time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        records_on(&world, &hold).await,
        sent as i64,
        "held deliveries are not parked again"
    );
    assert_eq!(received(&receiver, "/a"), 10);

    control(&two, 1, "resume").await;
    eventually(
        Duration::from_secs(15),
        "resume delivers every held one",
        || async { received(&receiver, "/a") == 10 + sent },
    )
    .await;
    eventually(Duration::from_secs(10), "nothing is held any more", || async {
        let stats = stats(&one, 1).await;
        stats["state"] == "active" && stats["held"] == 0
    })
    .await;

    // Cancel: what is held and what comes later is dead-lettered unsent, as `cancelled`.
    control(&one, 1, "pause").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    produce(&world, "a", 1, 1000..1010).await;
    eventually(Duration::from_secs(30), "ten more held", || async {
        records_on(&world, &hold).await == sent as i64 + 10
    })
    .await;
    let cancelled = control(&one, 1, "cancel").await;
    assert_eq!(cancelled["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    produce(&world, "a", 1, 2000..2005).await;
    let dead_letters = || async {
        let letters = world.dead_letters().await;
        letters.iter().filter(|l| l.reason() == "cancelled").count()
    };
    eventually(
        Duration::from_secs(30),
        "held and new deliveries cancelled",
        || async { dead_letters().await == 15 },
    )
    .await;
    assert_eq!(received(&receiver, "/a"), 10 + sent, "nothing cancelled was sent");
    eventually(
        Duration::from_secs(10),
        "the stats count the cancelled",
        || async {
            let stats = stats(&two, 1).await;
            stats["state"] == "cancelled" && stats["cancelled"] == 15 && stats["held"] == 0
        },
    )
    .await;
    assert_eq!(
        stats(&two, 1).await["dispatch_failed"],
        false,
        "a cancel is not a failure"
    );

    // Resumed, the cancelled letters can be replayed, and are delivered.
    control(&two, 1, "resume").await;
    let (status, report) = admin_call(
        &one,
        "POST",
        "/v1/dead-letters/replay",
        Some(json!({"reason": "cancelled"})),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    eventually(Duration::from_secs(30), "the replayed ones delivered", || async {
        received(&receiver, "/a") == 25 + sent
    })
    .await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_control_refuses_what_is_not_a_campaign() {
    let world = World::new(1);
    let app = TestApp::spawn(&world, &[]).await;
    let (status, problem) = admin_call(&app, "POST", "/v1/campaigns/not-a-number/pause", None).await;
    assert_eq!(status, 400, "{problem}");
    let (status, _) = admin_call(&app, "GET", "/v1/campaigns/7/pause", None).await;
    assert_eq!(status, 405);
    // Resuming a campaign that was never paused is no error: it is active.
    let state = control(&app, 7, "resume").await;
    assert_eq!(state, json!({"targetId": 7, "state": "active"}));
    assert_eq!(stats(&app, 7).await["state"], "active");
    // The command line does the same, and the service hears it.
    let paused = crate::helpers::cli(&world, &["campaign", "pause", "7", "--json"]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    assert_eq!(paused.json()["state"], "paused");
    eventually(Duration::from_secs(5), "the service hears the pause", || async {
        stats(&app, 7).await["state"] == "paused"
    })
    .await;
    let printed = crate::helpers::cli(&world, &["campaign", "resume", "7"]);
    assert_eq!((printed.code, printed.stdout.trim()), (0, "campaign 7 is active"));
    app.stop().await;
}

/// A pause ends like any wait: past `campaign_max_pause`, held deliveries are dead-lettered
/// as `expired`, unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_longer_than_the_longest_expires_what_it_holds() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "a", "url": receiver.url("/a")}))
        .await;
    let app = TestApp::spawn(&world, &[("WD_CAMPAIGN_MAX_PAUSE", "3s")]).await;
    control(&app, 1, "pause").await;
    produce(&world, "a", 1, 0..2).await;
    eventually(Duration::from_secs(30), "both expired", || async {
        let letters = world.dead_letters().await;
        letters.iter().filter(|l| l.reason() == "expired").count() == 2
    })
    .await;
    let letter = &world.dead_letters().await[0];
    assert!(letter.headers["wd-last-error"].contains("campaign_max_pause"));
    assert_eq!(receiver.count(), 0, "nothing was sent");
    app.stop().await;
}

/// A blast of campaign 1 to a busy host does not hold back a small campaign 2 produced after
/// it on the same partitions: records start, and wait at the host, campaign by campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_campaign_behind_a_blast_to_the_same_host_takes_at_most_twice_as_long() {
    let world = World::new(2);
    let receiver = Receiver::start(|_, _| Reply::status(200).after(Duration::from_millis(10))).await;
    world
        .put_template(json!({"id": "busy", "url": receiver.url("/"), "max_concurrency": 4}))
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    // Warm: connections open, partitions assigned.
    produce(&world, "busy", 9, 0..4).await;
    eventually(Duration::from_secs(30), "warmed up", || async {
        receiver.count() == 4
    })
    .await;
    let last_of = |prefix: &'static str| {
        let requests = receiver.requests();
        let of: Vec<_> = requests
            .iter()
            .filter(|r| r.header("idempotency-key").is_some_and(|k| k.starts_with(prefix)))
            .map(|r| r.at)
            .collect();
        (of.len(), of.into_iter().max())
    };

    // Campaign 2 alone: 50 deliveries.
    let started = std::time::Instant::now();
    world.produce(&small("alone")).await;
    eventually(Duration::from_secs(60), "campaign 2 alone", || async {
        last_of("alone").0 == 50
    })
    .await;
    let alone = last_of("alone").1.unwrap() - started;

    // 5,000 of campaign 1, then the same 50 of campaign 2 behind them.
    let blast: Vec<_> = (0..5000)
        .map(|n| (Some(n % 2), campaign_event(&format!("blast{n}"), "busy", 1)))
        .collect();
    world.produce(&blast).await;
    let started = std::time::Instant::now();
    world.produce(&small("behind")).await;
    eventually(
        Duration::from_secs(120),
        "campaign 2 behind the blast",
        || async { last_of("behind").0 == 50 },
    )
    .await;
    let behind = last_of("behind").1.unwrap() - started;
    let blast_done = receiver.count() - 4 - 100;
    eprintln!(
        "campaign 2: {alone:?} alone, {behind:?} behind a blast ({blast_done} of its 5,000 sent meanwhile)"
    );
    assert!(
        behind <= alone * 2,
        "{behind:?} behind the blast, {alone:?} alone"
    );
    assert!(blast_done < 5000, "the blast was still being sent");
    app.stop().await;
}

/// 50 one-profile events of campaign 2, alternating between the two partitions.
fn small(prefix: &str) -> Vec<(Option<i32>, Vec<u8>)> {
    (0..50)
        .map(|n| (Some(n % 2), campaign_event(&format!("{prefix}{n}"), "busy", 2)))
        .collect()
}
