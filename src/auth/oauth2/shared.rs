//! The Redis side of the token cache: tokens shared by every replica (TTL = the token's
//! lifetime, encrypted when keys are configured), a short lock so that one replica fetches
//! while the others wait, and a notification on `{token key}:ready` that wakes them when the
//! token is there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_link::{RedisConn, RedisLink, Subscription};
use futures::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::token::{Clock, MAX_LIFETIME, Token};
use crate::crypto::{self, SecretKeys};
use crate::secret::Secret;

/// How long another replica's fetch may hold the lock; the wait for its token is as long.
pub(super) const LOCK_TTL: Duration = Duration::from_secs(15);

/// The Redis side: tokens shared by every replica, encrypted when keys are configured.
#[derive(Clone)]
pub struct SharedTokens {
    pub conn: RedisConn,
    /// Where waiting replicas subscribe to hear that a token is ready (pub/sub needs a
    /// connection of its own).
    pub client: RedisLink,
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
    pub(super) fn token_key(&self, key: &str) -> String {
        format!("{}oauth-token:{}", self.prefix, self.name(key))
    }

    /// Where the replica that fetched a token says it is there.
    pub(super) fn ready_channel(&self, key: &str) -> String {
        format!("{}:ready", self.token_key(key))
    }

    pub(super) fn lock_key(&self, key: &str) -> String {
        format!("{}oauth-token-lock:{}", self.prefix, self.name(key))
    }

    /// The Redis name of a credential set: HMAC-SHA256 of its digest under `name_key`.
    pub(super) fn name(&self, key: &str) -> String {
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
    pub(super) async fn load(&self, key: &str, now: Instant) -> Option<Token> {
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

    pub(super) async fn store(&self, key: &str, token: &Token, now: Instant) {
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
        // Stored, then announced: a replica woken by the announcement finds the token.
        let stored: Result<(), _> = redis::pipe()
            .pset_ex(self.token_key(key), value, left)
            .ignore()
            .publish(self.ready_channel(key), 1)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = stored {
            debug!(error = %e, "cannot share the OAuth 2.0 token");
        }
    }

    /// Forgets the shared token if it is still `token` (the destination refused it).
    pub(super) async fn forget(&self, key: &str, token: &Token) {
        if let Some(shared) = self.load(key, Instant::now()).await
            && shared.access_token == token.access_token
        {
            let _: Result<(), _> = self.conn.clone().del(self.token_key(key)).await;
        }
    }

    /// `Lock::Held(owner)` when this replica may fetch, `Lock::Busy` when another one is
    /// fetching. A Redis error counts as held (by nobody): a token is worth more than the
    /// de-duplication.
    pub(super) async fn lock(&self, key: &str) -> Lock {
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

    /// The token the replica holding the fetch lock is getting, once it is fresh in Redis;
    /// `None` when none came within [`LOCK_TTL`] (that fetch failed or its replica died).
    /// Woken by the fetcher's announcement; Redis is looked at again every `recheck` as
    /// well, so a lost announcement (or no pub/sub at all) costs at most that long.
    pub(super) async fn wait_for_token(&self, key: &str, clock: &Clock, recheck: Duration) -> Option<Token> {
        let wait = async {
            // Subscribed before looking: a token stored in between is seen by the look.
            let mut announcements = tokio::time::timeout(recheck, self.subscribe(key))
                .await
                .ok()
                .flatten();
            loop {
                if let Some(token) = self.load(key, clock()).await
                    && clock() < token.refresh_at()
                {
                    return token;
                }
                match announcements.as_mut() {
                    Some(stream) => {
                        if let Ok(None) = tokio::time::timeout(recheck, stream.next()).await {
                            announcements = None;
                        }
                    }
                    None => tokio::time::sleep(recheck).await,
                }
            }
        };
        tokio::time::timeout(LOCK_TTL, wait).await.ok()
    }

    async fn subscribe(&self, key: &str) -> Option<Subscription> {
        self.client
            .subscribe(&self.ready_channel(key))
            .await
            .map_err(|e| debug!(error = %e, "cannot subscribe to token announcements; polling"))
            .ok()
    }

    /// Releases the lock only if it is still ours: after a fetch slower than the lock's TTL
    /// another replica may hold it now, and its lock must stand.
    pub(super) async fn unlock(&self, key: &str, owner: &str) {
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
pub(super) enum Lock {
    /// Ours, with the value that proves it (none when Redis could not be asked).
    Held(Option<String>),
    Busy,
}

/// A value no other lock holder has: a process-random 64 bits, the time and a counter.
pub(super) fn lock_owner() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{random:x}-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}
