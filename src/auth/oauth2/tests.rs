use std::time::{Duration, Instant};

use crate::redis_link::RedisLink;
use redis::AsyncCommands;

use super::endpoint::{ExpiresIn, TokenAnswer, lifetime};
use super::shared::{LOCK_TTL, Lock, lock_owner};
use super::token::{DEFAULT_LIFETIME, MAX_LIFETIME};
use super::*;
use crate::auth::OAuth2;
use crate::secret::Secret;
fn answer(expires_in: &str) -> ExpiresIn {
    serde_json::from_str(expires_in).unwrap()
}

#[test]
fn a_token_lifetime_is_bounded_whatever_the_endpoint_says() {
    let now = Instant::now();
    for (expires_in, expected) in [
        ("3600", Duration::from_secs(3600)),
        ("\"120\"", Duration::from_secs(120)),
        ("1e20", MAX_LIFETIME),
        ("1.8446744073709552e19", MAX_LIFETIME),
        ("0", DEFAULT_LIFETIME),
        ("-5", DEFAULT_LIFETIME),
        ("\"soon\"", DEFAULT_LIFETIME),
    ] {
        let lifetime = lifetime(None, Some(&answer(expires_in)));
        assert_eq!(lifetime, expected, "{expires_in}");
        // Clamped, the lifetime always fits in an Instant: `now + lifetime` cannot panic.
        assert!(now.checked_add(lifetime).is_some());
    }
    assert_eq!(lifetime(None, None), DEFAULT_LIFETIME);
    assert_eq!(
        lifetime(Some(900), Some(&answer("3600"))),
        Duration::from_secs(900)
    );
    assert_eq!(lifetime(Some(u64::MAX), None), MAX_LIFETIME);
}

/// Shared tokens under a fresh prefix. Needs a Redis (scripts/test starts one; REDIS_URL).
async fn shared_tokens(name_key: &[u8]) -> SharedTokens {
    let client = crate::redis_link::test_client();
    SharedTokens {
        conn: crate::redis_link::test_conn().await,
        client: RedisLink::Server(client),
        prefix: format!("lock-test-{}:", lock_owner()),
        keys: None,
        name_key: name_key.to_vec(),
    }
}

#[tokio::test]
async fn a_replica_releases_only_its_own_fetch_lock() {
    let shared = shared_tokens(b"test").await;
    assert_ne!(shared.name("k"), "k");
    let other = SharedTokens {
        name_key: b"other".to_vec(),
        ..shared.clone()
    };
    assert_ne!(
        shared.name("k"),
        other.name("k"),
        "names depend on the server secret"
    );
    let Lock::Held(Some(first)) = shared.lock("k").await else {
        panic!("the first replica gets the lock")
    };
    assert_eq!(shared.lock("k").await, Lock::Busy);
    // The first fetch outlived the lock's TTL; another replica took the lock since.
    let _: () = shared.conn.clone().del(shared.lock_key("k")).await.unwrap();
    let Lock::Held(Some(second)) = shared.lock("k").await else {
        panic!("the lock is free again")
    };
    assert_ne!(first, second);
    shared.unlock("k", &first).await;
    assert_eq!(
        shared.lock("k").await,
        Lock::Busy,
        "the late unlock left the other lock alone"
    );
    shared.unlock("k", &second).await;
    assert!(matches!(shared.lock("k").await, Lock::Held(Some(_))));
    let _: () = shared.conn.clone().del(shared.lock_key("k")).await.unwrap();
}

fn token(lifetime: Duration) -> Token {
    Token {
        access_token: Secret::new("shared-token"),
        token_type: "Bearer".into(),
        scope: None,
        refresh_token: None,
        expires_at: Instant::now() + lifetime,
        lifetime,
    }
}

#[tokio::test]
async fn a_waiting_replica_is_woken_by_the_announcement_not_by_its_recheck() {
    let shared = shared_tokens(b"test").await;
    let clock = system_clock();
    let waiting = tokio::spawn({
        let (shared, clock) = (shared.clone(), clock.clone());
        // A recheck longer than the wait: only the announcement can end it in time.
        async move { shared.wait_for_token("k", &clock, LOCK_TTL * 2).await }
    });
    let channel = shared.ready_channel("k");
    let subscribed = async {
        loop {
            let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut shared.conn.clone())
                .await
                .unwrap();
            if listeners > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("the waiting replica subscribes");
    let started = Instant::now();
    shared
        .store("k", &token(Duration::from_secs(60)), Instant::now())
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken well before LOCK_TTL")
        .unwrap()
        .expect("the stored token");
    assert_eq!(got.access_token.expose(), "shared-token");
    assert!(started.elapsed() < Duration::from_secs(5));
    let _: () = shared.conn.clone().del(shared.token_key("k")).await.unwrap();
}

#[tokio::test]
async fn a_lost_announcement_costs_one_recheck() {
    let shared = shared_tokens(b"test").await;
    let clock = system_clock();
    let waiting = tokio::spawn({
        let (shared, clock) = (shared.clone(), clock.clone());
        async move {
            shared
                .wait_for_token("k", &clock, Duration::from_millis(100))
                .await
        }
    });
    // Stored without the announcement, as if it were lost.
    let _: () = shared
        .conn
        .clone()
        .pset_ex(
            shared.token_key("k"),
            r#"{"access_token":"quiet","token_type":"Bearer","lifetime_ms":60000}"#,
            60_000,
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("found by a recheck, long before LOCK_TTL")
        .unwrap()
        .expect("the stored token");
    assert_eq!(got.access_token.expose(), "quiet");
    let _: () = shared.conn.clone().del(shared.token_key("k")).await.unwrap();
}

fn oauth(paths: serde_json::Value) -> OAuth2 {
    let mut auth = serde_json::json!({"token_url": "https://a.test/token", "client_id": "c"});
    for (k, v) in paths.as_object().unwrap() {
        auth[k] = v.clone();
    }
    serde_json::from_value(auth).unwrap()
}

fn read(paths: serde_json::Value, answer: serde_json::Value) -> Result<TokenAnswer, TokenError> {
    TokenAnswer::read(&oauth(paths), answer.to_string().as_bytes())
}

#[test]
fn the_standard_answer_needs_no_mapping() {
    let answer = read(
        serde_json::json!({}),
        serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": 60,
                           "refresh_token": "r", "scope": "a b"}),
    )
    .unwrap();
    assert_eq!(answer.access_token, "t");
    assert_eq!(answer.refresh_token.as_deref(), Some("r"));
    assert_eq!(answer.expires_in.and_then(|e| e.seconds()), Some(60));
}

#[test]
fn mapped_fields_are_read_where_the_template_says() {
    let answer = read(
        serde_json::json!({"access_token_path": "data.access_token",
                           "refresh_token_path": "data.refresh",
                           "expires_in_path": "expiresIn"}),
        serde_json::json!({"data": {"access_token": "t", "refresh": "r", "token_type": "mac",
                                    "scope": "a"},
                           "expiresIn": "120"}),
    )
    .unwrap();
    assert_eq!(answer.access_token, "t");
    assert_eq!(answer.refresh_token.as_deref(), Some("r"));
    assert_eq!(answer.expires_in.and_then(|e| e.seconds()), Some(120));
    assert_eq!(
        answer.token_type.as_deref(),
        Some("mac"),
        "found beside the token"
    );
    assert_eq!(answer.scope.as_deref(), Some("a"));

    let top = read(
        serde_json::json!({"access_token_path": "token"}),
        serde_json::json!({"token": "t", "expires_in": 5, "items": [1]}),
    )
    .unwrap();
    assert_eq!(
        (
            top.access_token.as_str(),
            top.expires_in.and_then(|e| e.seconds())
        ),
        ("t", Some(5))
    );
    let indexed = read(
        serde_json::json!({"access_token_path": "tokens.1"}),
        serde_json::json!({"tokens": ["a", "b"]}),
    )
    .unwrap();
    assert_eq!(indexed.access_token, "b");
}

#[test]
fn a_missing_mapped_token_is_an_error_that_names_the_path_not_the_answer() {
    for answer in [
        serde_json::json!({"access_token": "s3cret-elsewhere"}),
        serde_json::json!({"data": {"access_token": 7}}),
        serde_json::json!({"data": "s3cret-elsewhere"}),
    ] {
        let err = read(
            serde_json::json!({"access_token_path": "data.access_token"}),
            answer,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("data.access_token"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn a_mapping_changes_the_credential_key_and_no_mapping_keeps_it() {
    let plain = oauth(serde_json::json!({}));
    let mapped = oauth(serde_json::json!({"access_token_path": "token"}));
    assert_ne!(credential_key(&plain), credential_key(&mapped));
    assert_eq!(credential_key(&plain), credential_key(&plain.clone()));
}
