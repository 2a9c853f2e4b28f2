//! Token endpoints that do not answer with RFC 6749's names (`token`, `data.access_token`,
//! `expiresIn`): the template says where the fields are, and the dispatcher, the "Generate"
//! step and the refresh all read them there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use webhook_dispatcher::auth::OAuth2;
use webhook_dispatcher::auth::{Tokens, credential_key};
use webhook_dispatcher::deliver::NetworkPolicy;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};
use webhook_dispatcher::demo::token_server::{AnswerPaths, TokenServer, TokenServerOptions};
use webhook_dispatcher::metrics::Metrics;

use crate::helpers::{TestApp, World, event, eventually};

fn renamed() -> TokenServerOptions {
    TokenServerOptions {
        expires_in: Some(120),
        answer_paths: AnswerPaths {
            access_token: "data.access_token".into(),
            refresh_token: "data.refresh".into(),
            expires_in: "expiresIn".into(),
        },
        ..TokenServerOptions::default()
    }
}

fn auth(server: &TokenServer, grant: &str, paths: bool) -> Value {
    let o = server.options();
    let mut auth = json!({"type": "oauth2", "grant_type": grant, "token_url": server.url(),
                          "client_id": o.client_id, "client_secret": o.client_secret});
    if grant == "password" {
        auth["username"] = json!(o.username);
        auth["password"] = json!(o.password);
    }
    if paths {
        auth["access_token_path"] = json!("data.access_token");
        auth["refresh_token_path"] = json!("data.refresh");
        auth["expires_in_path"] = json!("expiresIn");
    }
    auth
}

fn oauth(server: &TokenServer, grant: &str, paths: bool) -> OAuth2 {
    let mut auth = auth(server, grant, paths);
    auth.as_object_mut().unwrap().remove("type");
    serde_json::from_value(auth).unwrap()
}

#[tokio::test]
async fn mapped_fields_give_the_token_its_lifetime_and_its_refresh_token() {
    let server = TokenServer::start(renamed()).await;
    let start = Instant::now();
    let now = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let clock = {
        let now = now.clone();
        Arc::new(move || start + *now.lock().unwrap())
    };
    let policy = Arc::new(NetworkPolicy {
        allowed: vec!["127.0.0.1/32".parse().unwrap()],
        https_only: false,
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let tokens = Tokens::new(client, policy, None, Arc::new(Metrics::new()), clock);

    let auth = oauth(&server, "password", true);
    let key = credential_key(&auth);
    let first = tokens.get(&auth, &key).await.expect("a token");
    assert!(server.is_valid(first.access_token.expose()));
    assert_eq!(first.lifetime, Duration::from_secs(120), "read from expiresIn");
    assert!(first.refresh_token.is_some(), "read from data.refresh");
    // Near expiry the refresh token (found at data.refresh) is redeemed, not the password.
    *now.lock().unwrap() = Duration::from_secs(110);
    let second = tokens.get(&auth, &key).await.expect("a refreshed token");
    assert_ne!(second.access_token, first.access_token);
    assert_eq!((server.count("password"), server.count("refresh_token")), (1, 1));

    // Without the mapping the same answer is not a token response, and the error says where
    // the token was looked for without quoting the answer.
    let unmapped = oauth(&server, "client_credentials", false);
    let err = tokens
        .get(&unmapped, &credential_key(&unmapped))
        .await
        .expect_err("no access_token field");
    let text = err.to_string();
    assert!(text.contains("not a token response"), "{text}");
    assert!(!text.contains("at-"), "no token in the error: {text}");
}

async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("http://{}{path}", app.api))
            .bearer_auth("test-admin-token");
        if let Some(body) = &body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        // 503 while the dispatcher is still connecting to Redis.
        if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            return (status, value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_saves_generates_and_delivers_with_a_mapped_token_answer() {
    let world = World::new(1);
    let server = Arc::new(TokenServer::start(renamed()).await);
    let receiver = {
        let server = server.clone();
        Receiver::start(move |r, _| Reply::status(if server.authorizes(r) { 200 } else { 401 })).await
    };
    let app = TestApp::spawn(&world, &[]).await;

    // "Generate" on a draft (nothing saved yet) reads the mapped fields.
    let mut template = json!({"id": "mapped", "url": receiver.url("/hook"),
                              "auth": auth(&server, "client_credentials", true)});
    let (status, token) = call(&app, "POST", "/v1/templates/mapped/token", Some(template.clone())).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(
        token["expires_in"].as_u64().map(|s| s > 100 && s <= 120),
        Some(true),
        "{token}"
    );
    assert_eq!(token["access_token"], "****");
    assert_eq!(
        call(&app, "GET", "/v1/templates/mapped", None).await.0,
        StatusCode::NOT_FOUND
    );

    // The test request carries the token read from data.access_token, so the save succeeds.
    let (status, saved) = call(&app, "PUT", "/v1/templates/mapped", Some(template.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(
        saved["template"]["auth"]["access_token_path"],
        "data.access_token"
    );
    assert!(saved["template"]["updated_at"].is_string(), "{saved}");

    // Saved again as it was shown (client secret ****): the stored secret is kept.
    template["auth"]["client_secret"] = json!("****");
    template["name"] = json!("renamed");
    let (status, saved) = call(&app, "PUT", "/v1/templates/mapped", Some(template.clone())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, token) = call(&app, "POST", "/v1/templates/mapped/token", None).await;
    assert_eq!(status, StatusCode::OK, "the stored secret still works: {token}");

    // A masked secret with none stored is refused, naming the field.
    let mut other = template.clone();
    other["id"] = json!("other");
    let (status, refused) = call(&app, "PUT", "/v1/templates/other", Some(other)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["field"], "auth.client_secret");

    // A bad path is named too.
    let mut bad = template.clone();
    bad["auth"]["expires_in_path"] = json!("data..x");
    let (status, refused) = call(&app, "PUT", "/v1/templates/mapped", Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["field"], "auth.expires_in_path");

    world.produce(&[(None, event("mapped-1", "mapped", 2))]).await;
    eventually(Duration::from_secs(20), "the event delivered", || async {
        app.metrics.deliveries("delivered") == 1
    })
    .await;
    let delivered = receiver.requests();
    assert!(
        delivered.iter().all(|r| server.authorizes(r)),
        "bearer tokens from data.access_token"
    );

    let (_, doc) = call(&app, "GET", "/v1/openapi.json", None).await;
    let oauth2 = doc["components"]["schemas"]["OAuth2"]["properties"].clone();
    for field in ["access_token_path", "refresh_token_path", "expires_in_path"] {
        assert!(
            oauth2[field].is_object(),
            "{field} in the OpenAPI document: {oauth2}"
        );
    }
    app.stop().await;
}
