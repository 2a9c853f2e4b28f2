//! A real, local OAuth 2.0 token endpoint (RFC 6749 §4.3, §4.4, §6): the demo's
//! authorization server and the tests' witness of every token request. It checks the client
//! credentials the way it was told to expect them, issues opaque bearer tokens (and refresh
//! tokens when asked to), remembers which are valid, and can be made to fail.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::receiver::Received;
use crate::auth::ClientAuth;

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct TokenServerOptions {
    pub client_id: String,
    pub client_secret: String,
    /// How the client must authenticate; the other way is refused with `invalid_client`.
    pub client_auth: ClientAuth,
    /// The resource owner of the password grant.
    pub username: String,
    pub password: String,
    /// `expires_in` of every token; `None` leaves it out of the answer.
    pub expires_in: Option<u64>,
    /// Issue a refresh token with password-grant tokens.
    pub refresh_tokens: bool,
    /// Where the answer puts its fields (RFC 6749 §5.1 names by default).
    pub answer_paths: AnswerPaths,
}

/// Dotted paths of the answer's fields, for endpoints that do not use RFC 6749's names
/// (`token`, `data.access_token`, `expiresIn`).
#[derive(Debug, Clone)]
pub struct AnswerPaths {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: String,
}

impl Default for AnswerPaths {
    fn default() -> Self {
        AnswerPaths {
            access_token: "access_token".into(),
            refresh_token: "refresh_token".into(),
            expires_in: "expires_in".into(),
        }
    }
}

/// Sets `value` at the dotted `path` of `answer`, making the objects on the way.
fn put(answer: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut node = answer;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !node.is_object() {
            *node = json!({});
        }
        let Some(object) = node.as_object_mut() else {
            return;
        };
        if segments.peek().is_none() {
            object.insert(segment.to_string(), value);
            return;
        }
        node = object.entry(segment.to_string()).or_insert_with(|| json!({}));
    }
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        TokenServerOptions {
            client_id: "dispatcher".into(),
            client_secret: "client-s3cret".into(),
            client_auth: ClientAuth::BasicHeader,
            username: "campaigns".into(),
            password: "owner-pa55word".into(),
            expires_in: Some(3600),
            refresh_tokens: true,
            answer_paths: AnswerPaths::default(),
        }
    }
}

/// One token request as the server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant_type: String,
    pub scope: Option<String>,
    pub client_auth: Option<ClientAuth>,
    /// `true` when a token was issued.
    pub granted: bool,
}

struct Shared {
    options: TokenServerOptions,
    requests: Mutex<Vec<TokenRequest>>,
    access_tokens: Mutex<HashSet<String>>,
    refresh_tokens: Mutex<HashSet<String>>,
    issued: AtomicU64,
    issued_tokens: Mutex<Vec<String>>,
    fail_with: AtomicU16,
}

pub struct TokenServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl TokenServer {
    /// Starts the endpoint on 127.0.0.1 (a free port), at `/token`.
    pub async fn start(options: TokenServerOptions) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared {
            options,
            requests: Mutex::new(Vec::new()),
            access_tokens: Mutex::new(HashSet::new()),
            refresh_tokens: Mutex::new(HashSet::new()),
            issued: AtomicU64::new(0),
            issued_tokens: Mutex::new(Vec::new()),
            fail_with: AtomicU16::new(0),
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        TokenServer { addr, shared, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn options(&self) -> &TokenServerOptions {
        &self.shared.options
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().clone()
    }

    /// Token requests of one grant type (`client_credentials`, `password`, `refresh_token`).
    pub fn count(&self, grant_type: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.grant_type == grant_type)
            .count()
    }

    /// Whether `token` was issued here and not revoked.
    pub fn is_valid(&self, token: &str) -> bool {
        self.shared.access_tokens.lock().contains(token)
    }

    /// Whether `request` carries `Authorization: Bearer <a valid token>`.
    pub fn authorizes(&self, request: &Received) -> bool {
        request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| self.is_valid(token))
    }

    /// Every access token issued so far stops being valid (as if they had expired early).
    pub fn revoke_all(&self) {
        self.shared.access_tokens.lock().clear();
    }

    /// Every access and refresh token this server has issued (valid or not).
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued_tokens.lock().clone()
    }

    /// Every refresh token issued so far stops being valid.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.refresh_tokens.lock().clear();
    }

    /// Answers every token request with `status` (0 = back to normal).
    pub fn fail_with(&self, status: u16) {
        self.shared.fail_with.store(status, Ordering::Relaxed);
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": format!("{code} (test token server)")})),
    )
        .into_response()
}

/// The client credentials the request carries, and how.
fn client_of(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(ClientAuth, String, String)> {
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((ClientAuth::BasicHeader, decode(id)?, decode(secret)?));
    }
    Some((
        ClientAuth::RequestBody,
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let client = client_of(&headers, &form);
    let mut request = TokenRequest {
        grant_type: grant_type.clone(),
        scope: form.get("scope").cloned(),
        client_auth: client.as_ref().map(|(how, ..)| *how),
        granted: false,
    };
    let answer = decide(&shared, &form, client);
    request.granted = answer.is_ok();
    shared.requests.lock().push(request);
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err((status, code)) => error(status, code),
    }
}

fn decide(
    shared: &Shared,
    form: &HashMap<String, String>,
    client: Option<(ClientAuth, String, String)>,
) -> Result<serde_json::Value, (StatusCode, &'static str)> {
    let options = &shared.options;
    match shared.fail_with.load(Ordering::Relaxed) {
        0 => {}
        status => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err((status, "temporarily_unavailable"));
        }
    }
    match client {
        Some((how, id, secret))
            if how == options.client_auth && id == options.client_id && secret == options.client_secret => {}
        _ => return Err((StatusCode::UNAUTHORIZED, "invalid_client")),
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let refresh = match field("grant_type") {
        "client_credentials" => false,
        "password" if field("username") == options.username && field("password") == options.password => {
            options.refresh_tokens
        }
        "password" => return Err((StatusCode::BAD_REQUEST, "invalid_grant")),
        "refresh_token" => {
            let known = shared.refresh_tokens.lock().contains(field("refresh_token"));
            if !known {
                return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
            }
            false
        }
        _ => return Err((StatusCode::BAD_REQUEST, "unsupported_grant_type")),
    };
    let n = shared.issued.fetch_add(1, Ordering::Relaxed) + 1;
    let access_token = format!("at-{n}-{:x}", rand_suffix());
    shared.access_tokens.lock().insert(access_token.clone());
    shared.issued_tokens.lock().push(access_token.clone());
    let paths = &options.answer_paths;
    let mut answer = json!({"token_type": "Bearer"});
    put(&mut answer, &paths.access_token, json!(access_token));
    if let Some(expires_in) = options.expires_in {
        put(&mut answer, &paths.expires_in, json!(expires_in));
    }
    if let Some(scope) = form.get("scope") {
        answer["scope"] = json!(scope);
    }
    if refresh {
        let refresh_token = format!("rt-{n}-{:x}", rand_suffix());
        shared.refresh_tokens.lock().insert(refresh_token.clone());
        shared.issued_tokens.lock().push(refresh_token.clone());
        put(&mut answer, &paths.refresh_token, json!(refresh_token));
    }
    Ok(answer)
}

/// Enough to make tokens of separate runs differ; not a security feature.
fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
