//! OAuth 2.0 access tokens for templates with `auth.type = "oauth2"` (§3), per RFC 6749:
//! the client credentials (§4.4) and password (§4.3) grants, client authentication by HTTP
//! Basic or form fields (§2.3.1), refresh tokens (§6).
//!
//! Tokens are cheap: one per credential set, kept in-process until shortly before expiry and
//! shared between replicas through Redis (TTL = the token's lifetime). One fetch at a time
//! per credential set: in this process a mutex, across replicas a short Redis lock whose
//! losers wait for the winner's token. While a token is being refreshed, the others keep
//! sending with the current one until it really expires.

mod endpoint;
mod shared;
#[cfg(test)]
mod tests;
mod token;

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;

use self::endpoint::Endpoint;
use self::shared::Lock;
pub use self::shared::SharedTokens;
pub use self::token::{Clock, Token, TokenError, system_clock};
use super::settings::{OAuth2, credential_key};
use crate::guard::NetworkPolicy;
use crate::metrics::Metrics;

/// While another replica fetches, the shared token is looked for at least this often: what
/// a lost notification costs at most.
const RECHECK: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<Token>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Arc<Token>> {
        self.current.read().clone()
    }

    fn set(&self, token: Option<Arc<Token>>) {
        *self.current.write() = token;
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
        let token = Arc::new(self.endpoint.request_grant(auth).await?);
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
