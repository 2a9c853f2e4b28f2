//! The token endpoint client (RFC 6749): grants, refresh tokens, client authentication,
//! and answers read where the template says, with every number from outside bounded.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;
use tracing::{debug, warn};

use super::token::{Clock, DEFAULT_LIFETIME, MAX_LIFETIME, Token, TokenError};
use crate::auth::basic::basic_header;
use crate::auth::settings::{ClientAuth, GrantType, OAuth2};
use crate::guard::{NetworkPolicy, blocked_cause};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where tokens are requested: the guarded delivery client (token endpoints are
/// destinations too), its network policy, and the clock tokens expire by.
pub(super) struct Endpoint {
    pub(super) client: reqwest::Client,
    pub(super) policy: Arc<NetworkPolicy>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: Clock,
}

impl Endpoint {
    /// The refresh token when there is one (RFC 6749 §6), else the template's grant.
    pub(super) async fn fetch(&self, auth: &OAuth2, previous: Option<&Token>) -> Result<Token, TokenError> {
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

    pub(super) async fn request_grant(&self, auth: &OAuth2) -> Result<Token, TokenError> {
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

    /// Posts `form` to the token endpoint at `url` (checked against the network policy
    /// first), with the template's scopes and client authentication, and reads the token
    /// from its answer.
    async fn exchange(
        &self,
        auth: &OAuth2,
        url: &str,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Token, TokenError> {
        let url = url::Url::parse(url).map_err(TokenError::BadUrl)?;
        self.policy.check_url(&url).map_err(TokenError::Blocked)?;
        let scope = auth.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let request = self
            .client
            .post(url)
            .header(ACCEPT, "application/json")
            .timeout(TOKEN_TIMEOUT);
        let request = authenticate(auth, request, &mut form);
        let response = request.form(&form).send().await.map_err(unanswered)?;
        let status = response.status();
        let body = read_limited(response).await;
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        let answer = TokenAnswer::read(auth, &body)?;
        Ok(self.token(auth, answer))
    }

    /// The token an answer gives, used for its bounded [`lifetime`] from now.
    fn token(&self, auth: &OAuth2, answer: TokenAnswer) -> Token {
        let lifetime = lifetime(auth.expiry_seconds, answer.expires_in.as_ref());
        debug!(client_id = %auth.client_id, lifetime_s = lifetime.as_secs(), "OAuth 2.0 token fetched");
        Token {
            access_token: Secret::new(answer.access_token),
            token_type: answer.token_type.unwrap_or_else(|| "Bearer".into()),
            scope: answer.scope,
            refresh_token: answer.refresh_token.map(Secret::new),
            expires_at: (self.clock)() + lifetime,
            lifetime,
        }
    }
}

/// Adds the client's credentials to a token request where the template says: an
/// `Authorization: Basic` header, or `client_id` and `client_secret` in the form.
fn authenticate<'a>(
    auth: &'a OAuth2,
    request: reqwest::RequestBuilder,
    form: &mut Vec<(&'a str, &'a str)>,
) -> reqwest::RequestBuilder {
    match auth.client_auth {
        ClientAuth::BasicHeader => {
            // RFC 6749 §2.3.1: both form-urlencoded before they are joined.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let value = basic_header(&encode(&auth.client_id), &encode(auth.client_secret.expose()));
            request.header(AUTHORIZATION, value)
        }
        ClientAuth::RequestBody => {
            form.push(("client_id", &auth.client_id));
            form.push(("client_secret", auth.client_secret.expose()));
            request
        }
    }
}

/// Why a token request got no answer: the network policy refused the address it
/// resolved to, or the endpoint could not be reached (the error without its URL).
fn unanswered(err: reqwest::Error) -> TokenError {
    let err = err.without_url();
    match blocked_cause(&err) {
        Some(blocked) => TokenError::Blocked(blocked.clone()),
        None => TokenError::Unreachable(Arc::new(err)),
    }
}

/// A token endpoint's refusal, with its error and description when the body has them
/// (RFC 6749 §5.2: `{"error": "...", "error_description": "..."}`).
fn refused(status: reqwest::StatusCode, body: &[u8]) -> TokenError {
    let detail = serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .map(|e| match e.error_description {
            Some(description) => format!("{} ({description})", e.error),
            None => e.error,
        });
    TokenError::Refused {
        status: status.as_u16(),
        detail,
    }
}

/// How long a token is used: the template's `expiry_seconds`, else the answer's
/// `expires_in`, else an hour; numbers from the endpoint are hostile, so bounded to
/// [1 s, [`MAX_LIFETIME`]] before they reach an `Instant`.
pub(super) fn lifetime(expiry_seconds: Option<u64>, expires_in: Option<&ExpiresIn>) -> Duration {
    expiry_seconds
        .or(expires_in.and_then(ExpiresIn::seconds))
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_LIFETIME)
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) token_type: Option<String>,
    #[serde(default)]
    pub(super) expires_in: Option<ExpiresIn>,
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    pub(super) scope: Option<String>,
}

impl TokenAnswer {
    /// The token endpoint's JSON answer, read where the template's `*_path` fields say
    /// (RFC 6749 §5.1 names otherwise). Errors name fields, never values.
    pub(super) fn read(auth: &OAuth2, body: &[u8]) -> Result<TokenAnswer, TokenError> {
        let not_json = |e: serde_json::Error| TokenError::NotAToken {
            line: e.line(),
            column: e.column(),
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
            .ok_or_else(|| TokenError::NoAccessToken {
                path: access_path.to_string(),
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
pub(super) enum ExpiresIn {
    Number(f64),
    Text(String),
}

impl ExpiresIn {
    pub(super) fn seconds(&self) -> Option<u64> {
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
