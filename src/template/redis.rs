//! Templates in Redis, as JSON under `{prefix}template:{id}` (§3).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{StoreError, Template, TemplateStore};

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisStore {
            conn,
            prefix: prefix.into(),
        }
    }

    pub fn key(&self, id: &str) -> String {
        format!("{}template:{id}", self.prefix)
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
        raw.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    async fn put(&self, template: &Template) -> Result<(), StoreError> {
        let json = serde_json::to_vec(template).expect("a template always serialises");
        self.conn
            .clone()
            .set::<_, _, ()>(self.key(&template.id), json)
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

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::Unavailable)
    }
}
