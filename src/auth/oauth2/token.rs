//! An access token, why there is none, and the clock tokens expire by.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::guard::Blocked;
use crate::secret::Secret;

/// Lifetime assumed when the endpoint sends no `expires_in` and the template sets no
/// `expiry_seconds`; a 401 from the destination replaces the token earlier.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest a token is kept, whatever the endpoint says (`"expires_in": 1e20`): a day.
/// A token that lives longer is simply fetched again daily.
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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

/// Why no token could be had. Deliveries treat every kind but `Blocked` as an auth failure
/// and retry them: the endpoint may come back, or the template be corrected meanwhile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint is an address the SSRF guard refuses.
    #[error("token_url refused: {0}")]
    Blocked(Blocked),
    #[error("token URL: {0}")]
    BadUrl(url::ParseError),
    /// No answer: connection refused, TLS, timeout. Shared, since every waiter gets it.
    #[error("token endpoint unreachable: {}", crate::telemetry::chain(.0.as_ref()))]
    Unreachable(Arc<reqwest::Error>),
    /// RFC 6749 §5.2: an error status, with its `error` and `error_description` when given.
    #[error("token endpoint answered HTTP {status}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused { status: u16, detail: Option<String> },
    /// The answer is not JSON of a token response; only the position is kept, since serde's
    /// message could quote a secret.
    #[error("token endpoint answer is not a token response (line {line}, column {column})")]
    NotAToken { line: usize, column: usize },
    #[error("token endpoint answer has no access token at {path:?}")]
    NoAccessToken { path: String },
}
