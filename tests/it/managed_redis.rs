//! The Redis that managed clouds sell: TLS with a CA of their own and, where asked, a client
//! certificate (ElastiCache, Memorystore, Azure Cache), and Redis Cluster mode, against
//! Debian's redis-server.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{TokenServer, TokenServerOptions};

use crate::helpers::{OwnCluster, OwnRedis, TestApp, World, event, eventually, free_port};

/// Writes a private CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`) it signed into `dir`.
fn write_pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "managed Redis test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, names) in [
        ("server", vec!["127.0.0.1".to_string()]),
        ("client", vec!["webhook-dispatcher".to_string()]),
    ] {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("parameters")
            .signed_by(&key, &*ca)
            .expect("certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

async fn readiness(app: &TestApp) -> serde_json::Value {
    let answer = reqwest::get(format!("http://{}/readyz", app.api)).await.unwrap();
    serde_json::from_str(&answer.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_over_tls_with_a_private_ca_and_a_client_certificate_serves_templates() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let port = free_port();
    let _redis = OwnRedis::start_tls(port, dir.path());
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let url = format!("rediss://127.0.0.1:{port}");
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let app = TestApp::spawn(
        &world,
        &[
            ("WD_REDIS_URL", &url),
            ("WD_REDIS_CA_FILE", &ca),
            ("WD_REDIS_CLIENT_CERT_FILE", &cert),
            ("WD_REDIS_CLIENT_KEY_FILE", &key),
        ],
    )
    .await;
    // Through the admin API, so the template lands in the TLS Redis.
    let client = reqwest::Client::new();
    let template = json!({"id": "t", "url": receiver.url("/hook")});
    eventually(Duration::from_secs(20), "the template saved over TLS", || async {
        client
            .put(format!("http://{}/v1/templates/t", app.api))
            .bearer_auth("test-admin-token")
            .header("content-type", "application/json")
            .body(template.to_string())
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
    })
    .await;
    world.produce(&[(None, event("e1", "t", 1))]).await;
    eventually(Duration::from_secs(20), "the event delivered", || async {
        receiver.requests().iter().any(|r| r.uri == "/hook")
    })
    .await;
    assert_eq!(readiness(&app).await["redis_up"], true);
    app.stop().await;

    // The same server refuses a client without a certificate: not ready, saying Redis.
    let without = TestApp::spawn(&world, &[("WD_REDIS_URL", &url), ("WD_REDIS_CA_FILE", &ca)]).await;
    // A negative: it stays so while the first app became ready in well under a second.
    for _ in 0..10 {
        let body = readiness(&without).await;
        assert_eq!(body["redis_up"], false, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    without.stop().await;
}

/// One admin API call with the test token: status and JSON body; while the service is
/// still connecting to Redis (503), it waits.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = call_once(app, method, path, body.clone()).await;
        if status != 503 || std::time::Instant::now() > deadline {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call_once(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    crate::helpers::admin_call(app, method, path, body).await
}

/// Redis Cluster mode (cluster mode enabled, as ElastiCache and Memorystore Cluster sell it):
/// three primaries of Debian's redis-server, two of them given as seeds. Two dispatchers in
/// different groups save and list templates, share one OAuth 2.0 token, hear each other's
/// template changes (pub/sub across nodes), write campaign stats and replay marks, and every
/// key they write sits on one node (the prefix's hash tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_redis_cluster_serves_templates_tokens_changes_stats_and_replays() {
    let cluster = OwnCluster::start().await;
    let world = World::new(1);
    let prefix = format!("{{{}}}:", world.prefix.trim_end_matches(':'));
    let seeds = cluster.seeds();
    let other_group = format!("{}-other", world.group);
    let settings = |group: &str| {
        vec![
            ("WD_REDIS_URL", seeds.clone()),
            ("WD_REDIS_CLUSTER", "true".to_string()),
            ("WD_REDIS_PREFIX", prefix.clone()),
            ("WD_TEMPLATE_CACHE_TTL", "10m".to_string()),
            ("WD_KAFKA_GROUP_ID", group.to_string()),
        ]
    };
    let spawn = |group: String| {
        let settings = settings(&group);
        let world = &world;
        async move {
            let vars: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
            TestApp::spawn(world, &vars).await
        }
    };
    let old = Receiver::start(|_, _| Reply::status(200)).await;
    let new = Receiver::start(|_, _| Reply::status(200)).await;
    let refusing = Receiver::start(|_, _| Reply::status(400)).await;
    let tokens = std::sync::Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let sms = {
        let tokens = tokens.clone();
        Receiver::start(move |r, _| Reply::status(if tokens.authorizes(r) { 200 } else { 401 })).await
    };
    let first = spawn(world.group.clone()).await;
    let second = spawn(other_group).await;
    let deliveries = |r: &Receiver| {
        r.requests()
            .iter()
            .filter(|r| r.json()["is_test"] == false)
            .count()
    };

    let o = tokens.options().clone();
    for (id, template) in [
        ("moving", json!({"url": old.url("/old")})),
        ("refused", json!({"url": refusing.url("/refused")})),
        (
            "sms",
            json!({"url": sms.url("/send"), "auth": {"type": "oauth2", "grant_type": "client_credentials",
                   "token_url": tokens.url(), "client_id": o.client_id, "client_secret": o.client_secret}}),
        ),
    ] {
        let query = if id == "refused" { "?test=false" } else { "" };
        let (status, body) = call(
            &first,
            "PUT",
            &format!("/v1/templates/{id}{query}"),
            Some(template),
        )
        .await;
        assert_eq!(status, 201, "{id}: {body}");
    }
    let (_, listed) = call(&second, "GET", "/v1/templates", None).await;
    let ids: Vec<&str> = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["moving", "refused", "sms"], "{listed}");

    world
        .produce(&[
            (None, event("before", "moving", 1)),
            (None, event("text", "sms", 1)),
            (None, event("refusal", "refused", 1)),
        ])
        .await;
    eventually(Duration::from_secs(30), "both groups delivered", || async {
        deliveries(&old) == 2 && deliveries(&sms) == 2 && world.dead_letters().await.len() == 2
    })
    .await;
    assert_eq!(tokens.requests().len(), 1, "one token for every replica");

    // A change through one replica reaches the other through the cluster's pub/sub, long
    // before its 10-minute cache would let go.
    let (status, _) = call(
        &first,
        "PUT",
        "/v1/templates/moving",
        Some(json!({"url": new.url("/new")})),
    )
    .await;
    assert_eq!(status, 200);
    world.produce(&[(None, event("after", "moving", 1))]).await;
    eventually(Duration::from_secs(15), "both used the new URL", || async {
        deliveries(&new) == 2
    })
    .await;
    assert_eq!(deliveries(&old), 2);

    // Campaign stats are written and listed.
    eventually(Duration::from_secs(10), "the campaign's stats", || async {
        let (_, stats) = call(&second, "GET", "/v1/campaigns/42/stats", None).await;
        stats["delivered"] == 6 && stats["dead_lettered"] == 2
    })
    .await;
    let (_, campaigns) = call(&first, "GET", "/v1/campaigns", None).await;
    assert_eq!(campaigns["campaigns"][0]["targetId"], 42, "{campaigns}");

    // Replays are marked: a second replay skips what the first sent, and a dry run reads
    // each letter's mark and, once its delivery ended, its outcome.
    let (_, replayed) = call(
        &first,
        "POST",
        "/v1/dead-letters/replay",
        Some(json!({"limit": 2})),
    )
    .await;
    assert_eq!(replayed["replayed"], 2, "{replayed}");
    let (_, again) = call(
        &first,
        "POST",
        "/v1/dead-letters/replay",
        Some(json!({"limit": 2})),
    )
    .await;
    assert_eq!(again["already_replayed"], 2, "{again}");
    eventually(Duration::from_secs(20), "each replay's outcome", || async {
        let (_, listed) = call(
            &second,
            "POST",
            "/v1/dead-letters/replay",
            Some(json!({"dry_run": true, "limit": 2})),
        )
        .await;
        listed["letters"].as_array().is_some_and(|letters| {
            letters.len() == 2
                && letters
                    .iter()
                    .all(|l| l["replayed_before"] == true && l["replay_outcome"] == "dead_lettered")
        })
    })
    .await;

    let per_node = cluster.keys_per_node().await;
    assert_eq!(
        per_node.iter().filter(|&&keys| keys > 0).count(),
        1,
        "every key of the service on one node: {per_node:?}"
    );
    first.stop().await;
    second.stop().await;
}
