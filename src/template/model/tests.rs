use super::*;
use crate::auth::{ClientAuth, GrantType};

pub fn template(json: serde_json::Value) -> Template {
    serde_json::from_value(json).unwrap()
}

/// Each `(patch, field)`: `base` with `patch` applied is refused, naming `field`.
fn assert_fields_named(base: &serde_json::Value, cases: &[(serde_json::Value, &str)]) {
    for (patch, field) in cases {
        let mut json = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            json[k] = v.clone();
        }
        let err = template(json).prepare().unwrap_err();
        assert_eq!(err.field, *field, "{err}");
    }
}

#[test]
fn the_spec_example_parses_with_defaults() {
    let t = template(serde_json::json!({
        "id": "order-feedback", "url": "https://helpdesk.example.com/api/tickets"
    }));
    assert_eq!(t.method, Method::Post);
    assert_eq!((t.batch_size, t.timeout_ms, t.max_retries), (100, 5000, 2));
    assert_eq!(t.auth, Auth::None);
    t.prepare().unwrap();
}

#[test]
fn invalid_fields_are_named() {
    let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
    let cases = [
        (serde_json::json!({"batch_size": 0}), "batch_size"),
        (serde_json::json!({"batch_size": 1001}), "batch_size"),
        (serde_json::json!({"timeout_ms": 0}), "timeout_ms"),
        (serde_json::json!({"url": "ftp://x.test/"}), "url"),
        (serde_json::json!({"url": "not a url"}), "url"),
        (serde_json::json!({"url": "https://u:p@x.test/"}), "url"),
        // The URL parser takes it; no HTTP request could carry it.
        (serde_json::json!({"url": "https://x{y.test/"}), "url"),
        (serde_json::json!({"url": "https://x.test/{{ oops"}), "url"),
        (
            serde_json::json!({"headers": {"bad header": "v"}}),
            "headers.bad header",
        ),
        (
            serde_json::json!({"headers": {"X-A": "line\nbreak"}}),
            "headers.X-A",
        ),
        (serde_json::json!({"headers": {"Host": "evil"}}), "headers.Host"),
        (serde_json::json!({"max_concurrency": 0}), "max_concurrency"),
        (serde_json::json!({"id": "has space"}), "id"),
        (
            serde_json::json!({"auth": {"type": "basic", "username": "", "password": "p"}}),
            "auth.username",
        ),
    ];
    assert_fields_named(&base, &cases);
}

#[test]
fn profile_placeholders_in_url_or_headers_are_detected() {
    let batch = template(serde_json::json!({"id": "t", "url": "https://x.test/{{ targetId }}"}));
    assert!(!batch.prepare().unwrap().uses_profile);
    let per_url = template(serde_json::json!({"id": "t", "url": "https://x.test/{{ profile.Identity }}"}));
    assert!(per_url.prepare().unwrap().uses_profile);
    let per_header = template(serde_json::json!({
        "id": "t", "url": "https://x.test/", "headers": {"X-User": "{{ profile.Email }}"}
    }));
    assert!(per_header.prepare().unwrap().uses_profile);
}

#[test]
fn oauth2_parses_with_the_spec_defaults() {
    let t = template(serde_json::json!({
        "id": "t", "url": "https://x.test/",
        "auth": {"type": "oauth2", "token_url": "https://auth.x.test/token",
                 "client_id": "c", "client_secret": "s", "scopes": ["a", "b"]}
    }));
    let Auth::OAuth2(oauth) = &t.auth else {
        panic!("{:?}", t.auth)
    };
    assert_eq!(oauth.grant_type, GrantType::ClientCredentials);
    assert_eq!(oauth.client_auth, ClientAuth::BasicHeader);
    assert_eq!(
        (oauth.token_header.as_str(), oauth.token_prefix.as_str()),
        ("Authorization", "Bearer ")
    );
    t.prepare().unwrap();
}

#[test]
fn invalid_auth_and_signing_fields_are_named() {
    let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
    let oauth = |patch: serde_json::Value| {
        let mut auth = serde_json::json!({"type": "oauth2", "token_url": "https://a.test/token",
                                          "client_id": "c", "client_secret": "s"});
        for (k, v) in patch.as_object().unwrap() {
            auth[k] = v.clone();
        }
        serde_json::json!({"auth": auth})
    };
    let cases = [
        (
            oauth(serde_json::json!({"token_url": "not a url"})),
            "auth.token_url",
        ),
        (oauth(serde_json::json!({"client_id": ""})), "auth.client_id"),
        (
            oauth(serde_json::json!({"grant_type": "password"})),
            "auth.username",
        ),
        (
            oauth(serde_json::json!({"grant_type": "password", "username": "u"})),
            "auth.password",
        ),
        (oauth(serde_json::json!({"username": "u"})), "auth.username"),
        (
            oauth(serde_json::json!({"refresh_token_url": "https://a.test/r"})),
            "auth.refresh_token_url",
        ),
        (oauth(serde_json::json!({"scopes": ["two words"]})), "auth.scopes"),
        (
            oauth(serde_json::json!({"token_header": "Bad Header"})),
            "auth.token_header",
        ),
        (
            oauth(serde_json::json!({"expiry_seconds": 0})),
            "auth.expiry_seconds",
        ),
        (
            oauth(serde_json::json!({"expiry_seconds": 100_000_000_000u64})),
            "auth.expiry_seconds",
        ),
        (
            serde_json::json!({"rate_limit_per_sec": 1e-30}),
            "rate_limit_per_sec",
        ),
        (
            serde_json::json!({"rate_limit_per_sec": 1e300}),
            "rate_limit_per_sec",
        ),
        (
            serde_json::json!({"signing_secret": "no-prefix"}),
            "signing_secret",
        ),
        (
            serde_json::json!({"signing_secret": "whsec_%%%"}),
            "signing_secret",
        ),
    ];
    assert_fields_named(&base, &cases);
}

#[test]
fn masking_hides_every_credential() {
    let t = template(serde_json::json!({
        "id": "t", "url": "https://x.test/", "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "auth": {"type": "oauth2", "grant_type": "password", "token_url": "https://a.test/token",
                 "client_id": "c", "client_secret": "cs3cret", "username": "u", "password": "pa55"}
    }));
    let shown = serde_json::to_string(&t.masked()).unwrap();
    for secret in ["cs3cret", "pa55", "MfKQ9r8"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(shown.matches("****").count(), 3, "{shown}");
}

#[test]
fn masked_secrets_keep_the_stored_ones_by_field() {
    let stored = template(serde_json::json!({
        "id": "t", "url": "https://x.test/", "signing_secret": "whsec_abc",
        "auth": {"type": "basic", "username": "u", "password": "pa55"}
    }));
    let mut edited = template(serde_json::json!({
        "id": "t", "url": "https://x.test/", "signing_secret": "****",
        "auth": {"type": "basic", "username": "v", "password": "****"}
    }));
    edited.keep_masked_secrets(Some(&stored)).unwrap();
    assert_eq!(
        edited.signing_secret.as_ref().map(Secret::expose),
        Some("whsec_abc")
    );
    assert_eq!(
        edited.auth,
        Auth::Basic {
            username: "v".into(),
            password: Secret::new("pa55")
        }
    );

    // A new value replaces; **** where nothing is stored is refused, naming the field.
    let mut oauth = template(serde_json::json!({
        "id": "t", "url": "https://x.test/",
        "auth": {"type": "oauth2", "grant_type": "password", "token_url": "https://a.test/t",
                 "client_id": "c", "client_secret": "****", "username": "o", "password": "new"}
    }));
    let err = oauth.keep_masked_secrets(Some(&stored)).unwrap_err();
    assert_eq!(err.field, "auth.client_secret");
    let err = edited.clone().keep_masked_secrets(None);
    assert!(err.is_ok(), "nothing masked any more");
    let mut fresh = template(serde_json::json!({"id": "t", "url": "https://x.test/",
                                                "signing_secret": "****"}));
    assert_eq!(
        fresh.keep_masked_secrets(None).unwrap_err().field,
        "signing_secret"
    );
}

#[test]
fn masked_secrets_do_not_follow_a_new_host() {
    let stored = template(serde_json::json!({
        "id": "t", "url": "https://x.test/a", "signing_secret": "whsec_abc",
        "auth": {"type": "basic", "username": "u", "password": "pa55"}
    }));
    let edit = |url: &str| {
        template(serde_json::json!({
            "id": "t", "url": url, "signing_secret": "****",
            "auth": {"type": "basic", "username": "u", "password": "****"}
        }))
    };
    // The same host (another path, placeholders in it): the secrets stay.
    for url in [
        "https://x.test/b",
        "https://x.test:443/{{ event_id }}?q={{ targetId }}",
    ] {
        let mut same = edit(url);
        same.keep_masked_secrets(Some(&stored)).unwrap();
        assert_eq!(
            same.signing_secret.as_ref().map(Secret::expose),
            Some("whsec_abc")
        );
    }
    // Another host, port or scheme: refused, naming every secret to enter again.
    for url in ["https://evil.test/a", "https://x.test:8443/a", "http://x.test/a"] {
        let err = edit(url).keep_masked_secrets(Some(&stored)).unwrap_err();
        assert_eq!(err.field, "signing_secret", "{url}");
        assert!(err.message.contains("signing_secret, auth.password"), "{err}");
    }
    // A secret entered again goes; the one left masked is still refused.
    let mut partly = edit("https://evil.test/a");
    partly.auth = Auth::Basic {
        username: "u".into(),
        password: Secret::new("new-pa55"),
    };
    let err = partly.keep_masked_secrets(Some(&stored)).unwrap_err();
    assert_eq!(err.field, "signing_secret");

    // OAuth 2.0: the secrets go to the token endpoint and the token to the destination.
    let oauth = |url: &str, token_url: &str| {
        template(serde_json::json!({
            "id": "t", "url": url,
            "auth": {"type": "oauth2", "token_url": token_url, "client_id": "c", "client_secret": "****"}
        }))
    };
    let mut stored = oauth("https://x.test/a", "https://id.test/token");
    if let Auth::OAuth2(o) = &mut stored.auth {
        o.client_secret = Secret::new("cs");
    }
    oauth("https://x.test/b", "https://id.test/token2")
        .keep_masked_secrets(Some(&stored))
        .unwrap();
    for (url, token_url) in [
        ("https://x.test/a", "https://evil.test/token"),
        ("https://evil.test/a", "https://id.test/token"),
    ] {
        let err = oauth(url, token_url)
            .keep_masked_secrets(Some(&stored))
            .unwrap_err();
        assert_eq!(err.field, "auth.client_secret", "{url} {token_url}");
    }
}

#[test]
fn token_answer_paths_are_checked() {
    let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
    let with = |field: &str, path: &str| {
        let mut auth = serde_json::json!({"type": "oauth2", "token_url": "https://a.test/token",
                                          "client_id": "c"});
        auth[field] = serde_json::json!(path);
        serde_json::json!({"auth": auth})
    };
    let cases = [
        (with("access_token_path", ""), "auth.access_token_path"),
        (
            with("refresh_token_path", "data..token"),
            "auth.refresh_token_path",
        ),
        (with("expires_in_path", "expiresIn."), "auth.expires_in_path"),
    ];
    assert_fields_named(&base, &cases);
    let mut ok = base.clone();
    ok["auth"] = with("access_token_path", "data.access_token")["auth"].clone();
    template(ok).prepare().unwrap();
}

#[test]
fn secrets_do_not_print() {
    let t = template(serde_json::json!({
        "id": "t", "url": "https://x.test/", "signing_secret": "whsec_abc",
        "auth": {"type": "basic", "username": "u", "password": "pa55"}
    }));
    let printed = format!("{t:?}");
    assert!(
        !printed.contains("pa55") && !printed.contains("whsec_abc"),
        "{printed}"
    );
}
