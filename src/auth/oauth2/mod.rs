//! OAuth 2.0 access tokens for templates with `auth.type = "oauth2"`, per RFC 6749:
//! the client credentials (§4.4) and password (§4.3) grants, client authentication by HTTP
//! Basic or form fields (§2.3.1), refresh tokens (§6).
//!
//! Tokens are cheap: one per credential set, kept in-process until shortly before expiry and
//! shared between replicas through Redis (TTL = the token's lifetime). One fetch at a time
//! per credential set: in this process a mutex, across replicas a short Redis lock whose
//! losers wait for the winner's token. While a token is being refreshed, the others keep
//! sending with the current one until it really expires.
//!
//! A failed fetch is shared too: every caller that waited for it gets its error, and for a
//! backoff after it ([`backoff`]: 2 s, doubling with each failure in a row, at most 5
//! minutes) callers get the same error at once instead of asking again. So a token
//! endpoint that hangs costs one timeout (10 s) per backoff, not one per delivery, and a
//! wrong password is tried about a dozen times an hour, not once per delivery (identity
//! providers lock accounts for less). This is the token endpoint's circuit breaker: open
//! for the backoff, then one fetch probes it.

mod endpoint;
mod shared;
#[cfg(test)]
mod tests;
mod token;

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;

use self::endpoint::Endpoint;
use self::shared::Lock;
pub use self::shared::SharedTokens;
pub use self::token::{Clock, Token, TokenError, system_clock};
use super::settings::{OAuth2, credential_key};
use crate::backoff::Backoff;
use crate::guard::NetworkPolicy;
use crate::metrics::Metrics;

/// While another replica fetches, the shared token is looked for at least this often: what
/// a lost notification costs at most.
const RECHECK: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<Token>>>,
    /// The last fetch's failure while its backoff lasts.
    failure: Mutex<Option<Failure>>,
    fetching: tokio::sync::Mutex<()>,
}

/// Why the last fetches failed, how many failed in a row, and until when callers are
/// given this answer instead of a new fetch.
struct Failure {
    error: TokenError,
    streak: u32,
    until: Instant,
}

/// How long callers share a failure before the endpoint is asked again, after a streak of
/// failures in a row: 2 s, doubling, at most 5 minutes.
const FAILURE_SHARED: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));

impl Slot {
    fn current(&self) -> Option<Arc<Token>> {
        self.current.read().clone()
    }

    fn set(&self, token: Option<Arc<Token>>) {
        *self.current.write() = token;
    }

    /// Keeps what a fetch gave: a token clears the failures, an error starts a backoff.
    fn settle(&self, fetched: Result<Token, TokenError>, now: Instant) -> Result<Arc<Token>, TokenError> {
        let mut failure = self.failure.lock();
        match fetched {
            Ok(token) => {
                *failure = None;
                let token = Arc::new(token);
                self.set(Some(token.clone()));
                Ok(token)
            }
            Err(error) => {
                let streak = failure.as_ref().map_or(0, |f| f.streak).saturating_add(1);
                *failure = Some(Failure {
                    error: error.clone(),
                    streak,
                    until: now + FAILURE_SHARED.delay(streak),
                });
                Err(error)
            }
        }
    }

    /// What a caller gets without fetching, if anything: the token while it is fresh; during
    /// a failure's backoff, the current token while it is valid, else the failure.
    fn answer(&self, now: Instant) -> Option<Result<Arc<Token>, TokenError>> {
        let current = self.current();
        if let Some(token) = current.as_ref().filter(|t| now < t.refresh_at()) {
            return Some(Ok(token.clone()));
        }
        let error = {
            let failure = self.failure.lock();
            failure
                .as_ref()
                .filter(|f| now < f.until)
                .map(|f| f.error.clone())?
        };
        Some(match current.filter(|t| now < t.expires_at) {
            Some(token) => Ok(token),
            None => Err(error),
        })
    }
}

/// Every OAuth 2.0 token this process uses.
pub struct Tokens {
    endpoint: Endpoint,
    shared: Option<SharedTokens>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    clock: Clock,
}

impl Tokens {
    /// `client` must be the guarded delivery client: token endpoints are destinations too.
    pub fn new(
        client: Client,
        policy: Arc<NetworkPolicy>,
        shared: Option<SharedTokens>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Tokens {
        Tokens {
            endpoint: Endpoint {
                client,
                policy,
                metrics,
                clock: clock.clone(),
            },
            shared,
            slots: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        slots.entry(key.to_string()).or_default().clone()
    }

    /// The token for the credential set `key` when one is fresh: no wait, no fetch.
    pub fn cached(&self, key: &str) -> Option<Arc<Token>> {
        let now = (self.clock)();
        let slot = self.slots.lock().get(key).cloned()?;
        slot.current().filter(|t| now < t.refresh_at())
    }

    /// A token for `auth`, whose [`credential_key`] is `key` (computed once per template):
    /// the cached one while it is fresh, else a new one; or the failure of the last fetch
    /// while its backoff lasts.
    pub async fn get(&self, auth: &OAuth2, key: &str) -> Result<Arc<Token>, TokenError> {
        let slot = self.slot(key);
        if let Some(answer) = slot.answer((self.clock)()) {
            return answer;
        }
        let _fetching = match slot.fetching.try_lock() {
            Ok(guard) => guard,
            Err(_) => match slot.current() {
                // Someone is already refreshing: the current token is good until it expires.
                Some(token) if (self.clock)() < token.expires_at => return Ok(token),
                _ => slot.fetching.lock().await,
            },
        };
        // The fetch waited for may have ended either way: its answer is shared.
        if let Some(answer) = slot.answer((self.clock)()) {
            return answer;
        }
        let fetched = self.obtain(key, auth, slot.current().as_deref()).await;
        slot.settle(fetched, (self.clock)())
    }

    /// A new token whatever is cached or failed (the API's "Generate" step); it replaces
    /// the cached one.
    pub async fn generate(&self, auth: &OAuth2) -> Result<Arc<Token>, TokenError> {
        let key = credential_key(auth);
        let slot = self.slot(&key);
        let _fetching = slot.fetching.lock().await;
        let fetched = self.endpoint.request_grant(auth).await;
        if let (Ok(token), Some(shared)) = (&fetched, &self.shared) {
            shared.store(&key, token, (self.clock)()).await;
        }
        slot.settle(fetched, (self.clock)())
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
            return self.endpoint.fetch(auth, previous).await;
        };
        let stored = shared.load(key, (self.clock)()).await;
        if let Some(token) = stored.as_ref().filter(|t| (self.clock)() < t.refresh_at()) {
            return Ok(token.clone());
        }
        let previous = stored.as_ref().filter(|t| t.refresh_token.is_some()).or(previous);
        let lock = shared.lock(key).await;
        match &lock {
            Lock::Busy => {
                if let Some(token) = shared.wait_for_token(key, &self.clock, RECHECK).await {
                    return Ok(token);
                }
            }
            // The lock may have come free because a fetch just ended: its token is there.
            Lock::Held(owner) => {
                if let Some(token) = shared.load(key, (self.clock)()).await
                    && (self.clock)() < token.refresh_at()
                {
                    if let Some(owner) = owner {
                        shared.unlock(key, owner).await;
                    }
                    return Ok(token);
                }
            }
        }
        let fetched = self.endpoint.fetch(auth, previous).await;
        if let Ok(token) = &fetched {
            shared.store(key, token, (self.clock)()).await;
        }
        if let Lock::Held(Some(owner)) = &lock {
            shared.unlock(key, owner).await;
        }
        fetched
    }
}
