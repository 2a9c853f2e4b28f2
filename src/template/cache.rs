//! The in-process template cache: one store read per template per TTL, concurrent misses
//! for the same id coalesced into one read, compiled templates shared by every delivery.
//! A saved or deleted template is published on `{prefix}template-changed`, and every
//! replica drops its copy when it hears it.

use std::sync::Arc;
use std::time::Duration;

use crate::redis_link::{RedisConn, RedisLink};
use futures::StreamExt;
use moka::future::Cache;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Prepared, StoreError, TemplateError, TemplateStore};
use crate::backoff::Backoff;
use crate::metrics::Metrics;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Found(Prepared),
    /// No template with this id, or the stored one is invalid: the event's fault.
    Missing(String),
}

#[derive(Clone)]
pub struct TemplateCache {
    store: Arc<dyn TemplateStore>,
    cache: Cache<String, Prepared>,
    metrics: Arc<Metrics>,
}

/// The store could not answer: an infrastructure fault, so the event waits and retries.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Unavailable(Arc<LoadError>);

impl Unavailable {
    /// The template is there but encrypted with a key this replica lacks (not Redis).
    pub fn is_key_missing(&self) -> bool {
        matches!(&*self.0, LoadError::Store(StoreError::KeyMissing { .. }))
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("no template with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TemplateCache {
    pub fn new(store: Arc<dyn TemplateStore>, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        TemplateCache {
            store,
            cache: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<dyn TemplateStore> {
        &self.store
    }

    /// `Err` only when the store cannot answer (an infrastructure fault: the caller waits
    /// and tries again). Missing and invalid templates are not cached, so a template
    /// created after the first miss is used at once.
    pub async fn get(&self, id: &str) -> Result<Lookup, Unavailable> {
        if let Some(found) = self.cache.get(id).await {
            self.metrics.template_cache("hit");
            return Ok(Lookup::Found(found));
        }
        self.metrics.template_cache("miss");
        let store = self.store.clone();
        let loaded = self
            .cache
            .try_get_with_by_ref(id, async move {
                match store.get(id).await? {
                    Some(template) => Ok(template.prepare()?),
                    None => Err(LoadError::NotFound(id.to_string())),
                }
            })
            .await;
        match loaded {
            Ok(prepared) => Ok(Lookup::Found(prepared)),
            Err(err) => match &*err {
                LoadError::Store(StoreError::Unavailable(_) | StoreError::KeyMissing { .. }) => {
                    Err(Unavailable(err))
                }
                other => Ok(Lookup::Missing(other.to_string())),
            },
        }
    }

    /// Drops every cached template (changes may have been missed).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Drops a cached template (template changed).
    pub async fn invalidate(&self, id: &str) {
        self.cache.invalidate(id).await;
    }
}

/// Tells every replica that template `id` changed (each drops its copy, see
/// [`watch_changes`]); without the publication they use their copy until the TTL.
pub async fn publish_change(conn: &RedisConn, prefix: &str, id: &str) {
    let published: Result<i64, _> = conn.clone().publish(changes_channel(prefix), id).await;
    if let Err(err) = published {
        warn!(error = %err, template_id = %id,
              "could not publish the change; other replicas use their copy until the cache TTL");
    }
}

/// The Redis channel on which template changes are published (the template id).
pub fn changes_channel(prefix: &str) -> String {
    format!("{prefix}template-changed")
}

/// Between attempts to subscribe to template changes: doubling from 100 ms up to 5 s.
const CHANGES_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Drops cached templates when another replica (or the CLI) says they changed. Reconnects
/// after Redis restarts, and then drops the whole cache: changes may have been missed.
pub async fn watch_changes(client: RedisLink, prefix: String, cache: TemplateCache, stop: CancellationToken) {
    let channel = changes_channel(&prefix);
    let mut failures = 0;
    loop {
        let subscribed = client.subscribe(&channel);
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            pubsub = subscribed => pubsub,
        };
        match pubsub {
            Ok(mut messages) => {
                failures = 0;
                cache.invalidate_all();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(id) = message else { break };
                    cache.invalidate(&id).await;
                }
                if let Some(suppressed) = crate::telemetry::limited("template-changes-lost") {
                    warn!(suppressed, "template-changed subscription lost; reconnecting");
                }
            }
            Err(err) => {
                if let Some(suppressed) = crate::telemetry::limited("template-changes-subscribe") {
                    warn!(error = %err, suppressed, "cannot subscribe to template changes; retrying");
                }
            }
        }
        failures += 1;
        if !CHANGES_BACKOFF.wait(failures, &stop).await {
            return;
        }
    }
}
