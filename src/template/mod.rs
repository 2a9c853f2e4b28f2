//! Webhook templates (docs/formats.md, "Template"): the model, where they are stored, and
//! the in-process cache the hot path reads through. The pipeline only ever sees a
//! [`Prepared`] template: parsed, validated and with its placeholders compiled once.

pub mod cache;
mod memory;
pub(crate) mod model;
mod redis;

pub use cache::{Lookup, TemplateCache, Unavailable};
pub use memory::MemoryStore;
pub(crate) use model::check_rendered;
pub use model::{
    BodyTemplate, BodyType, BreakerSettings, Method, Prepared, Template, TemplateError, in_field_order,
    request_target,
};
pub use redis::RedisStore;

/// Where templates live. Redis in production; memory in the demo and unit tests.
#[async_trait::async_trait]
pub trait TemplateStore: Send + Sync + 'static {
    /// `Ok(None)` when no template has this id; `Err` only when the store cannot answer.
    async fn get(&self, id: &str) -> Result<Option<Template>, StoreError>;
    async fn put(&self, template: &Template) -> Result<(), StoreError>;
    /// Saves `template` only when no template has its id, in one step (two creators of the
    /// same id: one wins, the other gets `Ok(false)` and changes nothing).
    async fn create(&self, template: &Template) -> Result<bool, StoreError>;
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Every template id, sorted.
    async fn ids(&self) -> Result<Vec<String>, StoreError>;
    /// Answers only when the store is reachable (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is down or slow: an infrastructure fault, so the event waits.
    #[error("template store unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),
    /// A credential encrypted with a key this replica does not have (`WD_SECRET_KEY`): a
    /// rolling key rotation or a missing key, an infrastructure fault, so the event waits.
    #[error("stored template {id:?} cannot be decrypted: {source}")]
    KeyMissing {
        id: String,
        #[source]
        source: crate::crypto::CryptoError,
    },
    /// A stored value that is not a valid template: the event's fault, not the store's.
    #[error("stored template {id:?} is invalid: {message}")]
    Corrupt { id: String, message: String },
}
