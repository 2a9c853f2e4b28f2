//! Outbound security (docs/security.md): the SSRF guard, and secrets that never leave the
//! places they belong.
//!
//! Every address used here is on loopback: what counts as "refused" is decided by the allow
//! list (127.0.0.1/32 in the test world), never by reaching a private or public network.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redis::AsyncCommands;
use serde_json::json;
use webhook_dispatcher::crypto::SecretKeys;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{TokenServer, TokenServerOptions};
use webhook_dispatcher::template::TemplateStore;

use crate::helpers::{Process, TestApp, World, event, eventually, redis_url, scrape};

/// A real listener that must never see a connection.
fn trap(ip: &str) -> TcpListener {
    let listener = TcpListener::bind((ip, 0)).expect("loopback address");
    listener.set_nonblocking(true).unwrap();
    listener
}

fn assert_untouched(trap: &TcpListener) {
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the guard let a connection through: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_outside_the_allow_list_are_refused_before_any_connection() {
    let world = World::new(1);
    let trap = trap("127.0.0.2");
    let port = trap.local_addr().unwrap().port();
    let allowed = Receiver::start(|_, _| Reply::status(200)).await;
    let templates = [
        json!({"id": "literal", "url": format!("http://127.0.0.2:{port}/hook")}),
        json!({"id": "mapped", "url": format!("http://[::ffff:127.0.0.2]:{port}/hook")}),
        json!({"id": "token-url", "url": allowed.url("/t"),
               "auth": {"type": "oauth2", "token_url": format!("http://127.0.0.2:{port}/token"),
                        "client_id": "c", "client_secret": "s"}}),
        json!({"id": "allowed", "url": allowed.url("/ok")}),
    ];
    for template in templates {
        world.put_template(template).await;
    }
    let app = TestApp::spawn(&world, &[]).await;
    world
        .produce(&[
            (None, event("a", "literal", 1)),
            (None, event("b", "mapped", 1)),
            (None, event("c", "token-url", 1)),
            (None, event("d", "allowed", 1)),
        ])
        .await;
    eventually(
        Duration::from_secs(20),
        "three refused, one delivered",
        || async {
            app.metrics.dead_letters("ssrf_blocked") == 3 && app.metrics.deliveries("delivered") == 1
        },
    )
    .await;
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        assert_eq!(letter.reason(), "ssrf_blocked");
        assert_eq!(letter.headers["wd-attempt"], "1", "not retried");
        let error = &letter.headers["wd-last-error"];
        assert!(
            error.contains("127.0.0.2") && error.contains("loopback"),
            "{error}"
        );
    }
    assert_eq!(
        allowed.requests().len(),
        1,
        "only the allowed template reached its receiver"
    );
    assert_untouched(&trap);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_resolving_to_a_refused_address_is_refused_at_connect_time() {
    if tokio::net::lookup_host("localhost:80").await.is_err() {
        panic!("this test needs `localhost` to resolve (see /etc/hosts)");
    }
    let world = World::new(1);
    let trap = trap("127.0.0.1");
    let port = trap.local_addr().unwrap().port();
    world
        .put_template(json!({"id": "by-name", "url": format!("http://localhost:{port}/hook")}))
        .await;
    // Only 127.0.0.3 is allowed here: localhost (127.0.0.1 and ::1) is refused.
    let app = TestApp::spawn(&world, &[("WD_ALLOWED_NETWORKS", "127.0.0.3/32")]).await;
    world.produce(&[(None, event("n", "by-name", 1))]).await;
    eventually(Duration::from_secs(20), "refused", || async {
        app.metrics.dead_letters("ssrf_blocked") == 1
    })
    .await;
    let letter = &world.dead_letters().await[0];
    let error = &letter.headers["wd-last-error"];
    assert!(
        error.contains("localhost") && error.contains("loopback"),
        "{error}"
    );
    assert_untouched(&trap);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_refuses_plain_http_destinations() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "plain", "url": receiver.url("/p")}))
        .await;
    let app = TestApp::spawn(&world, &[("WD_HTTPS_ONLY", "true")]).await;
    world.produce(&[(None, event("p", "plain", 1))]).await;
    eventually(Duration::from_secs(20), "refused", || async {
        app.metrics.dead_letters("ssrf_blocked") == 1
    })
    .await;
    assert!(receiver.requests().is_empty());
    assert!(world.dead_letters().await[0].headers["wd-last-error"].contains("https_only"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_the_retry_records_or_the_dead_letters() {
    let world = World::new(1);
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let options = server.options().clone();
    // Fails each delivery's first attempt, so every one also passes through a retry tier;
    // "doomed" always fails and ends on the dead-letter topic.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let receiver = {
        let seen = seen.clone();
        Receiver::start(move |r, _| {
            let key = r.header("idempotency-key").unwrap_or_default().to_string();
            let first = seen.lock().unwrap().insert(key.clone());
            Reply::status(if first || key.starts_with("doomed") {
                503
            } else {
                200
            })
        })
        .await
    };
    let signing_secret = format!("whsec_{}", STANDARD.encode([3u8; 32]));
    let oauth = json!({"type": "oauth2", "grant_type": "password", "token_url": server.url(),
                       "client_id": options.client_id, "client_secret": options.client_secret,
                       "username": options.username, "password": options.password});
    let templates = [
        json!({"id": "none", "url": receiver.url("/none")}),
        json!({"id": "basic", "url": receiver.url("/basic"),
               "auth": {"type": "basic", "username": "campaigns", "password": "b4sic-pa55"}}),
        json!({"id": "oauth", "url": receiver.url("/oauth"), "auth": oauth}),
        json!({"id": "signed", "url": receiver.url("/signed"), "signing_secret": signing_secret}),
        json!({"id": "doomed", "url": receiver.url("/doomed"), "auth": oauth, "max_retries": 1,
               "signing_secret": signing_secret}),
    ];
    for template in templates {
        world.put_template(template).await;
    }
    let dispatcher = Process::spawn(&world, &[("RUST_LOG", "debug")]).await;
    let records: Vec<_> = ["none", "basic", "oauth", "signed", "doomed"]
        .iter()
        .map(|t| (None, event(&format!("{t}-ev"), t, 2)))
        .collect();
    world.produce(&records).await;
    let delivered = "webhook_deliveries_total{outcome=\"delivered\"}";
    let dead = "webhook_deliveries_total{outcome=\"dead_lettered\"}";
    eventually(
        Duration::from_secs(40),
        "four delivered after a retry, one dead-lettered",
        || async {
            scrape(dispatcher.metrics_addr, delivered).await == Some(4.0)
                && scrape(dispatcher.metrics_addr, dead).await == Some(1.0)
        },
    )
    .await;
    let log_file = dispatcher.log.clone();
    assert!(dispatcher.terminate().await.success());

    let mut secrets = vec![
        "b4sic-pa55".to_string(),
        STANDARD.encode("campaigns:b4sic-pa55"),
        options.client_secret.clone(),
        options.password.clone(),
        signing_secret.clone(),
        signing_secret["whsec_".len()..].to_string(),
    ];
    let issued = server.issued();
    assert!(issued.len() >= 2, "an access and a refresh token: {issued:?}");
    secrets.extend(issued);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("\"level\":\"DEBUG\""), "the log is at debug level");
    let mut places = vec![("the log".to_string(), log)];
    for (n, letter) in world
        .retry_records(1)
        .await
        .into_iter()
        .chain(world.dead_letters().await)
        .enumerate()
    {
        places.push((
            format!("record {n}"),
            String::from_utf8_lossy(&letter.value).into_owned(),
        ));
        places.push((format!("record {n} headers"), format!("{:?}", letter.headers)));
    }
    assert!(
        places.len() >= 10,
        "retry records and a dead letter were read: {}",
        places.len()
    );
    for (place, text) in &places {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{place} contains a secret: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tokens_are_encrypted_at_rest_and_plain_templates_keep_working() {
    let world = World::new(1);
    let key = STANDARD.encode([9u8; 32]);
    let keys = SecretKeys::parse(&key).unwrap().map(Arc::new);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let o = server.options().clone();
    let sealed_store = world.store().await.with_keys(keys);
    let sealed: webhook_dispatcher::template::Template = serde_json::from_value(json!({
        "id": "sealed", "url": receiver.url("/sealed"),
        "auth": {"type": "basic", "username": "u", "password": "at-rest-pa55"}}))
    .unwrap();
    sealed_store.put(&sealed).await.unwrap();
    let token: webhook_dispatcher::template::Template = serde_json::from_value(json!({
        "id": "token", "url": receiver.url("/token"),
        "auth": {"type": "oauth2", "token_url": server.url(), "client_id": o.client_id,
                 "client_secret": o.client_secret}}))
    .unwrap();
    sealed_store.put(&token).await.unwrap();
    world
        .put_template(json!({"id": "plain", "url": receiver.url("/plain"),
                             "auth": {"type": "basic", "username": "u", "password": "plain-pa55"}}))
        .await;

    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: String = redis
        .get(format!("{}template:sealed", world.prefix))
        .await
        .unwrap();
    assert!(raw.contains("enc:v1:") && !raw.contains("at-rest-pa55"), "{raw}");
    let raw: String = redis
        .get(format!("{}template:token", world.prefix))
        .await
        .unwrap();
    assert!(!raw.contains(&o.client_secret), "{raw}");

    let app = TestApp::spawn(&world, &[("WD_SECRET_KEY", &key)]).await;
    world
        .produce(&[
            (None, event("s", "sealed", 1)),
            (None, event("p", "plain", 1)),
            (None, event("t", "token", 1)),
        ])
        .await;
    eventually(Duration::from_secs(20), "all three delivered", || async {
        app.metrics.deliveries("delivered") == 3
    })
    .await;
    let header = |path: &str| {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.uri == path)
            .and_then(|r| r.header("authorization").map(str::to_string))
    };
    assert_eq!(
        header("/sealed"),
        Some(format!("Basic {}", STANDARD.encode("u:at-rest-pa55")))
    );
    assert_eq!(
        header("/plain"),
        Some(format!("Basic {}", STANDARD.encode("u:plain-pa55")))
    );
    let token_keys: Vec<String> = redis
        .keys(format!("{}oauth-token:*", world.prefix))
        .await
        .unwrap();
    assert_eq!(token_keys.len(), 1);
    let shared: String = redis.get(&token_keys[0]).await.unwrap();
    let access_token = &server.issued()[0];
    assert!(
        shared.starts_with("enc:v1:") && !shared.contains(access_token.as_str()),
        "{shared}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_the_new_secret_key_waits_instead_of_dead_lettering() {
    let world = World::new(1);
    let (old, new) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 32]));
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    // A pod already on the new key saved the template, encrypted with it.
    let new_keys = SecretKeys::parse(&new).unwrap().map(Arc::new);
    let template: webhook_dispatcher::template::Template = serde_json::from_value(json!({
        "id": "sealed", "url": receiver.url("/"),
        "auth": {"type": "basic", "username": "u", "password": "rotated-pa55"}}))
    .unwrap();
    world
        .store()
        .await
        .with_keys(new_keys)
        .put(&template)
        .await
        .unwrap();

    // An old pod, mid rolling deploy, has only the old key: the event waits, not ready.
    let stale = TestApp::spawn(&world, &[("WD_SECRET_KEY", &old)]).await;
    world.produce(&[(Some(0), event("e1", "sealed", 1))]).await;
    let readyz = format!("http://{}/readyz", stale.api);
    eventually(
        Duration::from_secs(20),
        "not ready: secret_key_ok false",
        || async {
            let Ok(answer) = reqwest::get(&readyz).await else {
                return false;
            };
            let text = answer.text().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            body["secret_key_ok"] == false && body["ready"] == false
        },
    )
    .await;
    assert!(
        scrape(
            stale.metrics_addr,
            "webhook_dependency_waits_total{dependency=\"secret_key\"}"
        )
        .await
        .unwrap_or(0.0)
            > 0.0
    );
    stale.stop().await;
    assert_eq!(receiver.count(), 0);
    assert!(
        world.dead_letters().await.is_empty(),
        "not the event's fault: nothing dead-lettered"
    );

    // With both keys (phase one of a rotation) the same event is delivered.
    let both = format!("{old},{new}");
    let app = TestApp::spawn(&world, &[("WD_SECRET_KEY", &both)]).await;
    eventually(
        Duration::from_secs(60),
        "delivered once the key is there",
        || async { receiver.count() == 1 },
    )
    .await;
    app.stop().await;
    assert!(world.dead_letters().await.is_empty());
}
