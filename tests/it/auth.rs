//! Credentials on the wire: Basic, OAuth 2.0 against a real token
//! endpoint, Standard Webhooks signatures checked by a verifier written here from the spec.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use webhook_dispatcher::auth::{ClientAuth, OAuth2};
use webhook_dispatcher::auth::{Clock, Token, TokenError, Tokens, credential_key};
use webhook_dispatcher::deliver::NetworkPolicy;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{TokenServer, TokenServerOptions};
use webhook_dispatcher::metrics::Metrics;

use crate::helpers::{TestApp, World, event, eventually, scrape};

/// A receiver that answers 200 to requests bearing a token `server` issued and 401 otherwise.
async fn protected_by(server: &Arc<TokenServer>) -> Receiver {
    let server = server.clone();
    Receiver::start(move |r, _| Reply::status(if server.authorizes(r) { 200 } else { 401 })).await
}

fn oauth_template(id: &str, url: &str, server: &TokenServer, grant: &str, extra: Value) -> Value {
    let o = server.options();
    let mut auth = json!({
        "type": "oauth2", "grant_type": grant, "token_url": server.url(),
        "client_id": o.client_id, "client_secret": o.client_secret,
        "client_auth": match o.client_auth { ClientAuth::BasicHeader => "basic_header", ClientAuth::RequestBody => "request_body" },
        "scopes": ["campaigns.write", "profiles.read"],
    });
    if grant == "password" {
        auth["username"] = json!(o.username);
        auth["password"] = json!(o.password);
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        auth[k] = v.clone();
    }
    json!({"id": id, "url": url, "auth": auth, "batch_size": 10})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_grants_with_both_client_auths_and_basic_reach_the_destination_authenticated() {
    let world = World::new(1);
    let mut cases = Vec::new();
    for grant in ["client_credentials", "password"] {
        for client_auth in [ClientAuth::BasicHeader, ClientAuth::RequestBody] {
            let server = Arc::new(
                TokenServer::start(TokenServerOptions {
                    client_auth,
                    ..TokenServerOptions::default()
                })
                .await,
            );
            let receiver = protected_by(&server).await;
            let id = format!("{grant}-{client_auth:?}");
            world
                .put_template(oauth_template(
                    &id,
                    &receiver.url("/hook"),
                    &server,
                    grant,
                    json!({}),
                ))
                .await;
            cases.push((id, grant, client_auth, server, receiver));
        }
    }
    // Basic, and an OAuth 2.0 token in a header of the destination's choosing.
    let basic = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "basic", "url": basic.url("/b"),
                             "auth": {"type": "basic", "username": "campaigns", "password": "b4sic-pa55"}}))
        .await;
    let custom = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let custom_receiver = {
        let server = custom.clone();
        Receiver::start(move |r, _| {
            let ok = r.header("x-api-token").is_some_and(|t| server.is_valid(t))
                && r.header("authorization").is_none();
            Reply::status(if ok { 200 } else { 401 })
        })
        .await
    };
    world
        .put_template(oauth_template(
            "custom-header",
            &custom_receiver.url("/c"),
            &custom,
            "client_credentials",
            json!({"token_header": "X-Api-Token", "token_prefix": ""}),
        ))
        .await;

    let app = TestApp::spawn(&world, &[]).await;
    let mut records: Vec<_> = cases
        .iter()
        .map(|(id, ..)| (None, event(&format!("ev-{id}"), id, 3)))
        .collect();
    records.push((None, event("ev-basic", "basic", 3)));
    records.push((None, event("ev-custom", "custom-header", 3)));
    world.produce(&records).await;

    eventually(Duration::from_secs(30), "every delivery delivered", || async {
        app.metrics.deliveries("delivered") == records.len() as u64
    })
    .await;
    for (id, grant, client_auth, server, receiver) in &cases {
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{id}: one token request");
        assert_eq!(requests[0].grant_type, *grant, "{id}");
        assert_eq!(requests[0].client_auth, Some(*client_auth), "{id}");
        assert_eq!(
            requests[0].scope.as_deref(),
            Some("campaigns.write profiles.read"),
            "{id}"
        );
        assert!(requests[0].granted, "{id}");
        let received = receiver.requests();
        assert_eq!(received.len(), 1, "{id}");
        assert!(server.authorizes(&received[0]), "{id}: a valid bearer token");
    }
    let expected = format!("Basic {}", STANDARD.encode("campaigns:b4sic-pa55"));
    assert_eq!(
        basic.requests()[0].header("authorization"),
        Some(expected.as_str())
    );
    assert_eq!(custom_receiver.requests().len(), 1);
    assert_eq!(app.metrics.deliveries("dead_lettered"), 0);
    let tokens = scrape(
        app.metrics_addr,
        "webhook_oauth_token_requests_total{result=\"success\"}",
    )
    .await;
    assert_eq!(tokens, Some(5.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_make_one_token_request() {
    let world = World::new(2);
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let receiver = {
        let server = server.clone();
        Receiver::counting(move |r, _| Reply::status(if server.authorizes(r) { 200 } else { 401 })).await
    };
    let mut template = oauth_template(
        "bulk",
        &receiver.url("/bulk"),
        &server,
        "client_credentials",
        json!({}),
    );
    template["batch_size"] = json!(1);
    world.put_template(template).await;
    let app = TestApp::spawn(&world, &[]).await;
    let records: Vec<_> = (0..100)
        .map(|i| (None, event(&format!("ev{i}"), "bulk", 10)))
        .collect();
    world.produce(&records).await;

    eventually(Duration::from_secs(60), "1,000 deliveries delivered", || async {
        app.metrics.deliveries("delivered") == 1000
    })
    .await;
    assert_eq!(receiver.count(), 1000, "no 401 and no resend");
    assert_eq!(server.requests().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_drops_the_token_and_the_delivery_is_resent_once_with_a_new_one() {
    let world = World::new(1);
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let receiver = protected_by(&server).await;
    world
        .put_template(oauth_template(
            "revoked",
            &receiver.url("/r"),
            &server,
            "client_credentials",
            json!({}),
        ))
        .await;
    // A destination that refuses every token: one re-fetch, then it is the receiver's "no".
    let refusing_server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let refusing = Receiver::start(|_, _| Reply::status(401)).await;
    world
        .put_template(oauth_template(
            "refusing",
            &refusing.url("/x"),
            &refusing_server,
            "client_credentials",
            json!({}),
        ))
        .await;
    let app = TestApp::spawn(&world, &[]).await;

    world.produce(&[(None, event("first", "revoked", 1))]).await;
    eventually(Duration::from_secs(20), "first delivered", || async {
        app.metrics.deliveries("delivered") == 1
    })
    .await;
    server.revoke_all();
    world.produce(&[(None, event("second", "revoked", 1))]).await;
    eventually(Duration::from_secs(20), "second delivered", || async {
        app.metrics.deliveries("delivered") == 2
    })
    .await;
    // first, second with the now revoked token, second again with a new, valid one.
    let tokens: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    assert!(server.authorizes(&receiver.requests()[2]));
    assert_eq!(server.requests().len(), 2, "exactly one re-fetch");
    assert_eq!(
        app.metrics.deliveries("retried"),
        0,
        "resent at once, not through a tier"
    );

    world.produce(&[(None, event("refused", "refusing", 1))]).await;
    eventually(Duration::from_secs(20), "refused dead-lettered", || async {
        app.metrics.deliveries("dead_lettered") == 1
    })
    .await;
    assert_eq!(refusing.requests().len(), 2, "the request and its one resend");
    assert_eq!(refusing_server.requests().len(), 2);
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason(), "rejected");
    assert_eq!(letters[0].headers["wd-last-status"], "401");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_sharing_redis_make_one_token_request_between_them() {
    let world = World::new(2);
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let receiver = protected_by(&server).await;
    world
        .put_template(oauth_template(
            "shared",
            &receiver.url("/s"),
            &server,
            "password",
            json!({}),
        ))
        .await;
    // Two groups: each dispatcher delivers every event, so both need the token at once.
    let first = TestApp::spawn(&world, &[]).await;
    let second = TestApp::spawn(
        &world,
        &[("WD_KAFKA_GROUP_ID", &format!("{}-other", world.group))],
    )
    .await;
    let records: Vec<_> = (0..50)
        .map(|i| (Some(i % 2), event(&format!("ev{i}"), "shared", 1)))
        .collect();
    world.produce(&records).await;

    eventually(Duration::from_secs(30), "both delivered every event", || async {
        first.metrics.deliveries("delivered") == 50 && second.metrics.deliveries("delivered") == 50
    })
    .await;
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    assert_eq!(receiver.requests().len(), 100);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_is_down_sends_deliveries_down_the_retry_path() {
    let world = World::new(1);
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    let receiver = protected_by(&server).await;
    world
        .put_template(oauth_template(
            "recovers",
            &receiver.url("/r"),
            &server,
            "client_credentials",
            json!({}),
        ))
        .await;
    let down = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    down.fail_with(503);
    let never = protected_by(&down).await;
    let mut template = oauth_template(
        "stays-down",
        &never.url("/n"),
        &down,
        "client_credentials",
        json!({}),
    );
    template["max_retries"] = json!(1);
    world.put_template(template).await;
    server.fail_with(503);
    let app = TestApp::spawn(&world, &[]).await;

    world
        .produce(&[
            (None, event("a", "recovers", 1)),
            (None, event("b", "stays-down", 1)),
        ])
        .await;
    eventually(
        Duration::from_secs(20),
        "both parked on the first tier",
        || async { app.metrics.deliveries("retried") >= 2 },
    )
    .await;
    server.fail_with(0);
    eventually(
        Duration::from_secs(20),
        "delivered once the endpoint is back",
        || async { app.metrics.deliveries("delivered") == 1 && app.metrics.deliveries("dead_lettered") == 1 },
    )
    .await;
    assert_eq!(receiver.requests().len(), 1);
    assert!(never.requests().is_empty(), "nothing is sent without a token");
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason(), "retries_exhausted");
    assert_eq!(letters[0].headers["wd-attempt"], "2");
    let error = &letters[0].headers["wd-last-error"];
    assert!(
        error.starts_with("auth: token endpoint answered HTTP 503"),
        "{error}"
    );
    let failures = scrape(
        app.metrics_addr,
        "webhook_oauth_token_requests_total{result=\"error\"}",
    )
    .await;
    // Each endpoint was asked again after its failure's backoff, not by every delivery.
    assert!(failures.unwrap_or(0.0) >= 2.0, "{failures:?}");
    app.stop().await;
}

/// A token endpoint that accepts connections and never answers.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_hangs_slows_only_its_own_template() {
    let world = World::new(1);
    let (token_url, silent) = silent_endpoint().await;
    let stuck = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "hangs", "url": stuck.url("/h"),
            "auth": {"type": "oauth2", "token_url": token_url, "client_id": "c", "client_secret": "s"}}))
        .await;
    let healthy = Receiver::start(|_, _| Reply::status(200)).await;
    world
        .put_template(json!({"id": "healthy", "url": healthy.url("/ok")}))
        .await;
    // Behind 200 events whose token never comes, on the same partition and event loop.
    let mut records: Vec<_> = (0..200)
        .map(|i| (Some(0), event(&format!("h{i}"), "hangs", 1)))
        .collect();
    records.extend((0..40).map(|i| (Some(0), event(&format!("ok{i}"), "healthy", 1))));
    world.produce(&records).await;
    let started = Instant::now();
    let app = TestApp::spawn(&world, &[("WD_MAX_INFLIGHT", "16")]).await;
    eventually(
        Duration::from_secs(30),
        "the healthy template's 40 events delivered",
        || async { healthy.count() == 40 },
    )
    .await;
    eprintln!("40 healthy deliveries in {:?}", started.elapsed());
    assert_eq!(stuck.count(), 0, "nothing is sent without a token");
    app.stop().await;
    silent.abort();
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_every_waiter_and_not_repeated_during_its_backoff() {
    let server = Arc::new(TokenServer::start(TokenServerOptions::default()).await);
    server.fail_with(401);
    let (clock, now) = manual_clock();
    let tokens = Arc::new(tokens(clock));
    let auth = oauth(&server, "client_credentials", json!({}));
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let (tokens, auth) = (tokens.clone(), auth.clone());
            tokio::spawn(async move { token(&tokens, &auth).await })
        })
        .collect();
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("HTTP 401"), "{err}");
    }
    assert_eq!(server.requests().len(), 1, "one request for fifty callers");
    // Within the backoff the failure is the answer; after it, the endpoint is asked again,
    // and each failure in a row doubles the wait (2 s, 4 s, …).
    *now.lock().unwrap() = Duration::from_millis(1900);
    assert!(token(&tokens, &auth).await.is_err());
    assert_eq!(server.requests().len(), 1);
    *now.lock().unwrap() = Duration::from_millis(2100);
    assert!(token(&tokens, &auth).await.is_err());
    assert_eq!(server.requests().len(), 2);
    *now.lock().unwrap() = Duration::from_millis(2100 + 3900);
    assert!(token(&tokens, &auth).await.is_err());
    assert_eq!(server.requests().len(), 2);
    // Back: the next fetch after the backoff gets a token, and the failures are forgotten.
    server.fail_with(0);
    *now.lock().unwrap() = Duration::from_millis(2100 + 4100);
    assert!(token(&tokens, &auth).await.is_ok());
    assert_eq!(server.requests().len(), 3);
    // The Generate step always asks.
    server.fail_with(401);
    assert!(tokens.generate(&auth).await.is_err());
    assert!(tokens.generate(&auth).await.is_err());
    assert_eq!(server.requests().len(), 5);
}

/// A clock the test moves by hand.
fn manual_clock() -> (Clock, Arc<Mutex<Duration>>) {
    let start = Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let read = offset.clone();
    (Arc::new(move || start + *read.lock().unwrap()), offset)
}

fn tokens(clock: Clock) -> Tokens {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let policy = Arc::new(NetworkPolicy {
        allowed: vec!["127.0.0.1/32".parse().unwrap()],
        https_only: false,
    });
    Tokens::new(client, policy, None, Arc::new(Metrics::new()), clock)
}

/// The cached or a new token for `auth`.
async fn token(tokens: &Tokens, auth: &OAuth2) -> Result<Arc<Token>, TokenError> {
    tokens.get(auth, &credential_key(auth)).await
}

fn oauth(server: &TokenServer, grant: &str, extra: Value) -> OAuth2 {
    let mut auth = oauth_template("t", "http://127.0.0.1:1/", server, grant, extra)["auth"].take();
    auth.as_object_mut().unwrap().remove("type");
    serde_json::from_value(auth).unwrap()
}

#[tokio::test]
async fn tokens_are_refreshed_shortly_before_they_expire() {
    let server = TokenServer::start(TokenServerOptions {
        expires_in: Some(100),
        ..TokenServerOptions::default()
    })
    .await;
    let (clock, now) = manual_clock();
    let tokens = tokens(clock);
    let auth = oauth(&server, "client_credentials", json!({}));

    let first = token(&tokens, &auth).await.unwrap();
    *now.lock().unwrap() = Duration::from_secs(85);
    assert_eq!(
        token(&tokens, &auth).await.unwrap().access_token,
        first.access_token
    );
    assert_eq!(server.count("client_credentials"), 1);
    // A tenth of the lifetime before expiry: replaced.
    *now.lock().unwrap() = Duration::from_secs(91);
    let second = token(&tokens, &auth).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(server.count("client_credentials"), 2);

    // expiry_seconds wins over the endpoint's expires_in.
    let short = oauth(
        &server,
        "client_credentials",
        json!({"expiry_seconds": 20, "scopes": ["other"]}),
    );
    let short_token = token(&tokens, &short).await.unwrap();
    *now.lock().unwrap() = Duration::from_secs(91 + 17);
    assert_eq!(
        token(&tokens, &short).await.unwrap().access_token,
        short_token.access_token
    );
    *now.lock().unwrap() = Duration::from_secs(91 + 19);
    assert_ne!(
        token(&tokens, &short).await.unwrap().access_token,
        short_token.access_token
    );
}

#[tokio::test]
async fn the_password_grant_refreshes_with_its_refresh_token_then_falls_back() {
    let server = TokenServer::start(TokenServerOptions {
        expires_in: Some(600),
        ..TokenServerOptions::default()
    })
    .await;
    let refresh_endpoint = TokenServer::start(TokenServerOptions::default()).await;
    let (clock, now) = manual_clock();
    let tokens = tokens(clock);
    let auth = oauth(&server, "password", json!({}));

    token(&tokens, &auth).await.unwrap();
    assert_eq!(server.count("password"), 1);
    *now.lock().unwrap() = Duration::from_secs(560);
    token(&tokens, &auth).await.unwrap();
    assert_eq!(
        server.count("refresh_token"),
        1,
        "refreshed, no new password grant"
    );
    assert_eq!(server.count("password"), 1);

    server.revoke_refresh_tokens();
    *now.lock().unwrap() = Duration::from_secs(1120);
    token(&tokens, &auth).await.unwrap();
    assert_eq!(server.count("refresh_token"), 2, "the refresh was tried");
    assert_eq!(server.count("password"), 2, "then a new password grant");

    // refresh_token_url, when set, is where refresh tokens go.
    let elsewhere = oauth(
        &server,
        "password",
        json!({"refresh_token_url": refresh_endpoint.url()}),
    );
    token(&tokens, &elsewhere).await.unwrap();
    *now.lock().unwrap() = Duration::from_secs(1700);
    token(&tokens, &elsewhere).await.unwrap();
    assert_eq!(refresh_endpoint.count("refresh_token"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_the_standard_webhooks_algorithm() {
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let key = [7u8; 32];
    let secret = format!("whsec_{}", STANDARD.encode(key));
    world
        .put_template(
            json!({"id": "signed", "url": receiver.url("/signed"), "signing_secret": secret,
                             "batch_size": 2}),
        )
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world.produce(&[(None, event("sig", "signed", 3))]).await;
    eventually(Duration::from_secs(20), "both chunks received", || async {
        receiver.count() == 2
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    for request in receiver.requests() {
        let id = request.header("webhook-id").expect("webhook-id");
        assert_eq!(Some(id), request.header("idempotency-key"));
        let timestamp = request.header("webhook-timestamp").expect("webhook-timestamp");
        assert!((now - timestamp.parse::<i64>().unwrap()).abs() < 300);
        // Standard Webhooks: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64, "v1," prefix;
        // the header may list several space-separated signatures.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&request.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let signatures = request.header("webhook-signature").expect("webhook-signature");
        assert!(
            signatures.split(' ').any(|s| s == expected),
            "{signatures} != {expected}"
        );
    }
    app.stop().await;
}
