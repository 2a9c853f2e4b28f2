//! Templates in Redis, as JSON under `{prefix}template:{id}`. With `secret_key`
//! configured, credentials are stored encrypted (see [`crate::crypto`]); plain ones are read
//! as they are.

use std::sync::Arc;

use crate::redis_link::RedisConn;
use redis::AsyncCommands;

use super::{StoreError, Template, TemplateStore};
use crate::crypto::{self, SecretKeys};
use crate::secret::Secret;

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    keys: Option<Arc<SecretKeys>>,
}

impl RedisStore {
    pub fn new(conn: impl Into<RedisConn>, prefix: impl Into<String>) -> Self {
        RedisStore {
            conn: conn.into(),
            prefix: prefix.into(),
            keys: None,
        }
    }

    /// Encrypts credentials on write with the first key; every key decrypts.
    pub fn with_keys(self, keys: Option<Arc<SecretKeys>>) -> Self {
        RedisStore { keys, ..self }
    }

    pub fn key(&self, id: &str) -> String {
        format!("{}template:{id}", self.prefix)
    }

    /// The JSON kept in Redis: credentials encrypted when a secret key is configured.
    fn stored_form(&self, template: &Template) -> Vec<u8> {
        match &self.keys {
            None => serde_json::to_vec(template),
            Some(keys) => {
                let mut sealed = template.clone();
                for secret in sealed.secrets_mut() {
                    *secret = Secret::new(keys.encrypt(secret.expose()));
                }
                serde_json::to_vec(&sealed)
            }
        }
        .expect("a template always serialises")
    }
}

#[async_trait::async_trait]
impl TemplateStore for RedisStore {
    async fn get(&self, id: &str) -> Result<Option<Template>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .conn
            .clone()
            .get(self.key(id))
            .await
            .map_err(StoreError::Unavailable)?;
        let corrupt = |message: String| StoreError::Corrupt {
            id: id.to_string(),
            message,
        };
        let Some(bytes) = raw else {
            return Ok(None);
        };
        let mut template: Template = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        for secret in template.secrets_mut() {
            if crypto::is_encrypted(secret.expose()) {
                let plain = crypto::open(self.keys.as_deref(), secret.expose()).map_err(|e| match e {
                    crypto::CryptoError::UnknownKey(_) | crypto::CryptoError::NoKey => {
                        StoreError::KeyMissing {
                            id: id.to_string(),
                            source: e,
                        }
                    }
                    crypto::CryptoError::Damaged(_) => corrupt(e.to_string()),
                })?;
                *secret = Secret::new(plain);
            }
        }
        Ok(Some(template))
    }

    async fn put(&self, template: &Template) -> Result<(), StoreError> {
        self.conn
            .clone()
            .set::<_, _, ()>(self.key(&template.id), self.stored_form(template))
            .await
            .map_err(StoreError::Unavailable)
    }

    async fn create(&self, template: &Template) -> Result<bool, StoreError> {
        self.conn
            .clone()
            .set_nx(self.key(&template.id), self.stored_form(template))
            .await
            .map_err(StoreError::Unavailable)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let removed: i64 = self
            .conn
            .clone()
            .del(self.key(id))
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(removed > 0)
    }

    async fn ids(&self) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", self.key(""));
        let keys = self
            .conn
            .keys_matching(&pattern)
            .await
            .map_err(StoreError::Unavailable)?;
        let strip = self.key("").len();
        let mut ids: Vec<String> = keys.iter().map(|key| key[strip..].to_string()).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::Unavailable)
    }
}
