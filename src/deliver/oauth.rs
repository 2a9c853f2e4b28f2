//! OAuth 2.0 access tokens for templates with `auth.type = "oauth2"` (§3), per RFC 6749:
//! the client credentials (§4.4) and password (§4.3) grants, client authentication by HTTP
//! Basic or form fields (§2.3.1), refresh tokens (§6).
//!
//! Tokens are cheap: one per credential set, kept in-process until shortly before expiry and
//! shared between replicas through Redis (TTL = the token's lifetime). One fetch at a time
//! per credential set: in this process a mutex, across replicas a short Redis lock whose
//! losers wait for the winner's token. While a token is being refreshed, the others keep
//! sending with the current one until it really expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::guard::{Blocked, NetworkPolicy, blocked_cause};
use crate::crypto::{self, SecretKeys};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::template::{ClientAuth, GrantType, OAuth2};

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime assumed when the endpoint sends no `expires_in` and the template sets no
/// `expiry_seconds`; a 401 from the destination replaces the token earlier.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// How long another replica's fetch may hold the lock; the wait for its token is as long.
const LOCK_TTL: Duration = Duration::from_secs(15);
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where "now" comes from; tests move it by hand.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

/// An access token and what the endpoint said about it.
#[derive(Clone, Debug)]
pub struct Token {
    pub access_token: Secret,
    pub token_type: String,
    /// The scopes granted, when the endpoint said (RFC 6749 §5.1).
    pub scope: Option<String>,
    pub refresh_token: Option<Secret>,
    pub expires_at: Instant,
    pub lifetime: Duration,
}

impl Token {
    /// When a replacement is fetched: a tenth of the lifetime (at most a minute) early.
    pub fn refresh_at(&self) -> Instant {
        self.expires_at - (self.lifetime / 10).min(Duration::from_secs(60))
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint is an address the SSRF guard refuses.
    #[error("token_url refused: {0}")]
    Blocked(Blocked),
    /// The endpoint is down, refused the credentials or answered nonsense: retryable.
    #[error("{0}")]
    Failed(String),
}

/// The Redis side: tokens shared by every replica, encrypted when keys are configured.
#[derive(Clone)]
pub struct SharedTokens {
    pub conn: ConnectionManager,
    pub prefix: String,
    pub keys: Option<Arc<SecretKeys>>,
    /// A secret every replica shares (the admin token): Redis key names are an HMAC of the
    /// credential digest under it, so someone who can list Redis keys cannot test guessed
    /// credentials against them.
    pub name_key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    token_type: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    lifetime_ms: u64,
}

impl SharedTokens {
    fn token_key(&self, key: &str) -> String {
        format!("{}oauth-token:{}", self.prefix, self.name(key))
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}oauth-token-lock:{}", self.prefix, self.name(key))
    }

    /// The Redis name of a credential set: HMAC-SHA256 of its digest under `name_key`.
    fn name(&self, key: &str) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.name_key).expect("HMAC takes keys of any length");
        mac.update(key.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The token another replica stored, with the time it has left.
    async fn load(&self, key: &str, now: Instant) -> Option<Token> {
        let (raw, ttl_ms): (Option<String>, i64) = redis::pipe()
            .get(self.token_key(key))
            .pttl(self.token_key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| debug!(error = %e, "shared token cache unavailable"))
            .ok()?;
        let raw = raw.filter(|_| ttl_ms > 0)?;
        let json = crypto::open(self.keys.as_deref(), &raw)
            .map_err(|e| warn!(error = %e, "cannot read the shared OAuth 2.0 token"))
            .ok()?;
        let stored: Stored = serde_json::from_str(&json).ok()?;
        Some(Token {
            access_token: Secret::new(stored.access_token),
            token_type: stored.token_type,
            scope: stored.scope,
            refresh_token: stored.refresh_token.map(Secret::new),
            expires_at: now + Duration::from_millis(ttl_ms as u64).min(MAX_LIFETIME),
            lifetime: Duration::from_millis(stored.lifetime_ms).min(MAX_LIFETIME),
        })
    }

    async fn store(&self, key: &str, token: &Token, now: Instant) {
        let left = token.expires_at.saturating_duration_since(now).as_millis() as u64;
        if left == 0 {
            return;
        }
        let json = serde_json::to_string(&Stored {
            access_token: token.access_token.expose().to_string(),
            token_type: token.token_type.clone(),
            scope: token.scope.clone(),
            refresh_token: token.refresh_token.as_ref().map(|s| s.expose().to_string()),
            lifetime_ms: token.lifetime.as_millis() as u64,
        })
        .expect("strings always serialise");
        let value = match &self.keys {
            Some(keys) => keys.encrypt(&json),
            None => json,
        };
        let stored: Result<(), _> = self.conn.clone().pset_ex(self.token_key(key), value, left).await;
        if let Err(e) = stored {
            debug!(error = %e, "cannot share the OAuth 2.0 token");
        }
    }

    /// Forgets the shared token if it is still `token` (the destination refused it).
    async fn forget(&self, key: &str, token: &Token) {
        if let Some(shared) = self.load(key, Instant::now()).await
            && shared.access_token == token.access_token
        {
            let _: Result<(), _> = self.conn.clone().del(self.token_key(key)).await;
        }
    }

    /// `Lock::Held(owner)` when this replica may fetch, `Lock::Busy` when another one is
    /// fetching. A Redis error counts as held (by nobody): a token is worth more than the
    /// de-duplication.
    async fn lock(&self, key: &str) -> Lock {
        let owner = lock_owner();
        let acquired: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.lock_key(key))
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await;
        match acquired {
            Ok(Some(_)) => Lock::Held(Some(owner)),
            Ok(None) => Lock::Busy,
            Err(_) => Lock::Held(None),
        }
    }

    /// Releases the lock only if it is still ours: after a fetch slower than the lock's TTL
    /// another replica may hold it now, and its lock must stand.
    async fn unlock(&self, key: &str, owner: &str) {
        let script = redis::Script::new(
            r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#,
        );
        let _: Result<i64, _> = script
            .key(self.lock_key(key))
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await;
    }
}

/// The cross-replica fetch lock, as [`SharedTokens::lock`] found it.
#[derive(Debug, PartialEq, Eq)]
enum Lock {
    /// Ours, with the value that proves it (none when Redis could not be asked).
    Held(Option<String>),
    Busy,
}

/// A value no other lock holder has: a process-random 64 bits, the time and a counter.
fn lock_owner() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{random:x}-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<Token>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Arc<Token>> {
        self.current.read().expect("lock poisoned").clone()
    }

    fn set(&self, token: Option<Arc<Token>>) {
        *self.current.write().expect("lock poisoned") = token;
    }
}

/// Every OAuth 2.0 token this process uses.
pub struct Tokens {
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    shared: Option<SharedTokens>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl Tokens {
    /// `client` must be the guarded delivery client: token endpoints are destinations too.
    pub fn new(
        client: reqwest::Client,
        policy: Arc<NetworkPolicy>,
        shared: Option<SharedTokens>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Tokens {
        Tokens {
            client,
            policy,
            shared,
            slots: Mutex::new(HashMap::new()),
            metrics,
            clock,
        }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("lock poisoned");
        slots.entry(key.to_string()).or_default().clone()
    }

    /// A token for `auth`, whose [`credential_key`] is `key` (computed once per template):
    /// the cached one while it is fresh, else a new one.
    pub async fn get(&self, auth: &OAuth2, key: &str) -> Result<Arc<Token>, TokenError> {
        let slot = self.slot(key);
        let now = (self.clock)();
        let current = slot.current();
        if let Some(token) = &current
            && now < token.refresh_at()
        {
            return Ok(token.clone());
        }
        let _fetching = match slot.fetching.try_lock() {
            Ok(guard) => guard,
            Err(_) => match current {
                // Someone is already refreshing: the current token is good until it expires.
                Some(token) if now < token.expires_at => return Ok(token),
                _ => slot.fetching.lock().await,
            },
        };
        let now = (self.clock)();
        let current = slot.current();
        if let Some(token) = &current
            && now < token.refresh_at()
        {
            return Ok(token.clone());
        }
        let token = Arc::new(self.obtain(key, auth, current.as_deref()).await?);
        slot.set(Some(token.clone()));
        Ok(token)
    }

    /// A new token whatever is cached (the API's "Generate" step); it replaces the cached one.
    pub async fn generate(&self, auth: &OAuth2) -> Result<Arc<Token>, TokenError> {
        let key = credential_key(auth);
        let slot = self.slot(&key);
        let _fetching = slot.fetching.lock().await;
        let token = Arc::new(self.request_grant(auth).await?);
        if let Some(shared) = &self.shared {
            shared.store(&key, &token, (self.clock)()).await;
        }
        slot.set(Some(token.clone()));
        Ok(token)
    }

    /// The destination refused `token` (401): forget it here and in Redis.
    pub async fn reject(&self, key: &str, token: &Token) {
        let slot = self.slot(key);
        if slot
            .current()
            .is_some_and(|c| c.access_token == token.access_token)
        {
            slot.set(None);
        }
        if let Some(shared) = &self.shared {
            shared.forget(key, token).await;
        }
    }

    /// A token from another replica, or fetched here under the cross-replica lock.
    async fn obtain(&self, key: &str, auth: &OAuth2, previous: Option<&Token>) -> Result<Token, TokenError> {
        let Some(shared) = &self.shared else {
            return self.fetch(auth, previous).await;
        };
        let stored = shared.load(key, (self.clock)()).await;
        if let Some(token) = stored.as_ref().filter(|t| (self.clock)() < t.refresh_at()) {
            return Ok(token.clone());
        }
        let previous = stored.as_ref().filter(|t| t.refresh_token.is_some()).or(previous);
        let lock = shared.lock(key).await;
        if lock == Lock::Busy {
            let waited = Instant::now();
            while waited.elapsed() < LOCK_TTL {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(token) = shared.load(key, (self.clock)()).await
                    && (self.clock)() < token.refresh_at()
                {
                    return Ok(token);
                }
            }
        }
        let fetched = self.fetch(auth, previous).await;
        if let Ok(token) = &fetched {
            shared.store(key, token, (self.clock)()).await;
        }
        if let Lock::Held(Some(owner)) = &lock {
            shared.unlock(key, owner).await;
        }
        fetched
    }

    /// The refresh token when there is one (RFC 6749 §6), else the template's grant.
    async fn fetch(&self, auth: &OAuth2, previous: Option<&Token>) -> Result<Token, TokenError> {
        if let Some(refresh) = previous.and_then(|t| t.refresh_token.as_ref()) {
            let url = auth.refresh_token_url.as_deref().unwrap_or(&auth.token_url);
            let form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
            ];
            match self.request(auth, url, form).await {
                Ok(mut token) => {
                    // The endpoint may keep the refresh token and not send it again.
                    token.refresh_token.get_or_insert_with(|| refresh.clone());
                    return Ok(token);
                }
                Err(TokenError::Blocked(blocked)) => return Err(TokenError::Blocked(blocked)),
                Err(err) => debug!(error = %err, "refresh token refused; asking for a new token"),
            }
        }
        self.request_grant(auth).await
    }

    async fn request_grant(&self, auth: &OAuth2) -> Result<Token, TokenError> {
        let form = match auth.grant_type {
            GrantType::ClientCredentials => vec![("grant_type", "client_credentials")],
            GrantType::Password => vec![
                ("grant_type", "password"),
                ("username", auth.username.as_deref().unwrap_or_default()),
                ("password", auth.password.as_ref().map_or("", Secret::expose)),
            ],
        };
        self.request(auth, &auth.token_url, form).await
    }

    async fn request(&self, auth: &OAuth2, url: &str, form: Vec<(&str, &str)>) -> Result<Token, TokenError> {
        let result = self.exchange(auth, url, form).await;
        self.metrics
            .oauth_token_request(if result.is_ok() { "success" } else { "error" });
        if let Err(err) = &result {
            warn!(error = %err, client_id = %auth.client_id, "OAuth 2.0 token request failed");
        }
        result
    }

    async fn exchange(
        &self,
        auth: &OAuth2,
        url: &str,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Token, TokenError> {
        let url = url::Url::parse(url).map_err(|e| TokenError::Failed(format!("token URL: {e}")))?;
        self.policy.check_url(&url).map_err(TokenError::Blocked)?;
        let scope = auth.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let mut request = self
            .client
            .post(url)
            .header(ACCEPT, "application/json")
            .timeout(TOKEN_TIMEOUT);
        match auth.client_auth {
            ClientAuth::BasicHeader => {
                let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = format!(
                    "{}:{}",
                    encode(&auth.client_id),
                    encode(auth.client_secret.expose())
                );
                let mut value =
                    reqwest::header::HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
                        .expect("base64 is a valid header value");
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            ClientAuth::RequestBody => {
                form.push(("client_id", &auth.client_id));
                form.push(("client_secret", auth.client_secret.expose()));
            }
        }
        let response = request.form(&form).send().await.map_err(|err| {
            let err = err.without_url();
            match blocked_cause(&err) {
                Some(blocked) => TokenError::Blocked(blocked.clone()),
                None => TokenError::Failed(format!(
                    "token endpoint unreachable: {}",
                    super::client::chain(&err)
                )),
            }
        })?;
        let status = response.status();
        let body = read_limited(response).await;
        if !status.is_success() {
            // RFC 6749 §5.2: {"error": "...", "error_description": "..."}
            let detail = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|e| match e.error_description {
                    Some(description) => format!(": {} ({description})", e.error),
                    None => format!(": {}", e.error),
                })
                .unwrap_or_default();
            return Err(TokenError::Failed(format!(
                "token endpoint answered HTTP {}{detail}",
                status.as_u16()
            )));
        }
        let answer = TokenAnswer::read(auth, &body)?;
        let lifetime = lifetime(auth.expiry_seconds, answer.expires_in.as_ref());
        debug!(client_id = %auth.client_id, lifetime_s = lifetime.as_secs(), "OAuth 2.0 token fetched");
        Ok(Token {
            access_token: Secret::new(answer.access_token),
            token_type: answer.token_type.unwrap_or_else(|| "Bearer".into()),
            scope: answer.scope,
            refresh_token: answer.refresh_token.map(Secret::new),
            expires_at: (self.clock)() + lifetime,
            lifetime,
        })
    }
}

/// How long a token is used: the template's `expiry_seconds`, else the answer's
/// `expires_in`, else an hour; numbers from the endpoint are hostile, so bounded to
/// [1 s, [`MAX_LIFETIME`]] before they reach an `Instant`.
fn lifetime(expiry_seconds: Option<u64>, expires_in: Option<&ExpiresIn>) -> Duration {
    expiry_seconds
        .or(expires_in.and_then(ExpiresIn::seconds))
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_LIFETIME)
}

/// The longest a token is kept, whatever the endpoint says (`"expires_in": 1e20`): a day.
/// A token that lives longer is simply fetched again daily.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl TokenAnswer {
    /// The token endpoint's JSON answer, read where the template's `*_path` fields say
    /// (RFC 6749 §5.1 names otherwise). Errors name fields, never values.
    fn read(auth: &OAuth2, body: &[u8]) -> Result<TokenAnswer, TokenError> {
        let not_json = |e: serde_json::Error| {
            TokenError::Failed(format!(
                "token endpoint answer is not a token response (line {}, column {})",
                e.line(),
                e.column()
            ))
        };
        let mapped = auth.access_token_path.is_some()
            || auth.refresh_token_path.is_some()
            || auth.expires_in_path.is_some();
        if !mapped {
            // serde's message could quote a value; only the position is reported.
            return serde_json::from_slice(body).map_err(not_json);
        }
        let answer: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
        let access_path = auth.access_token_path.as_deref().unwrap_or("access_token");
        let access_token = lookup(&answer, access_path)
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenError::Failed(format!(
                    "token endpoint answer has no access token at {access_path:?}"
                ))
            })?
            .to_string();
        // Unmapped fields are looked for at the top, then beside the access token
        // (`data.token_type` when the token is `data.access_token`).
        let parent = access_path.rsplit_once('.').and_then(|(p, _)| lookup(&answer, p));
        let standard = |name: &str| answer.get(name).or_else(|| parent.and_then(|p| p.get(name)));
        let text = |value: Option<&serde_json::Value>| value.and_then(|v| v.as_str()).map(str::to_string);
        let expires_in = match &auth.expires_in_path {
            Some(path) => lookup(&answer, path),
            None => standard("expires_in"),
        };
        Ok(TokenAnswer {
            access_token,
            token_type: text(standard("token_type")),
            expires_in: expires_in.and_then(|v| serde_json::from_value(v.clone()).ok()),
            refresh_token: text(match &auth.refresh_token_path {
                Some(path) => lookup(&answer, path),
                None => standard("refresh_token"),
            }),
            scope: text(standard("scope")),
        })
    }
}

/// The value at a dotted `path` (`data.access_token`; a number indexes an array).
fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(value, |value, segment| match value {
        serde_json::Value::Object(map) => map.get(segment),
        serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// `expires_in` is a number, but some endpoints send it as a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(f64),
    Text(String),
}

impl ExpiresIn {
    fn seconds(&self) -> Option<u64> {
        let seconds = match self {
            ExpiresIn::Number(n) => *n,
            ExpiresIn::Text(s) => s.trim().parse().ok()?,
        };
        (seconds.is_finite() && seconds >= 1.0).then_some(seconds as u64)
    }
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// The cache key of a credential set: a digest, so Redis keys reveal no credential.
pub fn credential_key(auth: &OAuth2) -> String {
    let identity = serde_json::json!([
        auth.token_url,
        auth.refresh_token_url,
        auth.grant_type,
        auth.client_auth,
        auth.client_id,
        auth.client_secret.expose(),
        auth.username,
        auth.password.as_ref().map(Secret::expose),
        auth.scopes,
    ]);
    let mut identity = identity.to_string();
    // Where the answer's fields are changes which token is read; keys of templates without
    // a mapping stay as they were.
    let paths = [
        &auth.access_token_path,
        &auth.refresh_token_path,
        &auth.expires_in_path,
    ];
    if paths.iter().any(|p| p.is_some()) {
        identity.push_str(&serde_json::json!(paths).to_string());
    }
    crypto::short_digest(identity.as_bytes(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // What used to panic: an Instant that far ahead.
            assert!(now.checked_add(lifetime).is_some());
        }
        assert_eq!(lifetime(None, None), DEFAULT_LIFETIME);
        assert_eq!(
            lifetime(Some(900), Some(&answer("3600"))),
            Duration::from_secs(900)
        );
        assert_eq!(lifetime(Some(u64::MAX), None), MAX_LIFETIME);
    }

    /// Needs a Redis (scripts/test starts one; REDIS_URL).
    #[tokio::test]
    async fn a_replica_releases_only_its_own_fetch_lock() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).unwrap();
        let conn = client
            .get_connection_manager()
            .await
            .expect("a Redis for this test");
        let prefix = format!("lock-test-{}:", lock_owner());
        let shared = SharedTokens {
            conn,
            prefix,
            keys: None,
            name_key: b"test".to_vec(),
        };
        assert_ne!(shared.name("k"), "k");
        let other = SharedTokens {
            name_key: b"other".to_vec(),
            ..SharedTokens {
                conn: shared.conn.clone(),
                prefix: shared.prefix.clone(),
                keys: None,
                name_key: Vec::new(),
            }
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
}
