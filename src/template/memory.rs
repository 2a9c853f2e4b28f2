//! In-memory template store: the demo's and the unit tests' store.

use parking_lot::RwLock;
use std::collections::HashMap;

use super::{StoreError, Template, TemplateStore};

#[derive(Default)]
pub struct MemoryStore {
    templates: RwLock<HashMap<String, Template>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl TemplateStore for MemoryStore {
    async fn get(&self, id: &str) -> Result<Option<Template>, StoreError> {
        Ok(self.templates.read().get(id).cloned())
    }

    async fn put(&self, template: &Template) -> Result<(), StoreError> {
        self.templates
            .write()
            .insert(template.id.clone(), template.clone());
        Ok(())
    }

    async fn create(&self, template: &Template) -> Result<bool, StoreError> {
        match self.templates.write().entry(template.id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(template.clone());
                Ok(true)
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.templates.write().remove(id).is_some())
    }

    async fn ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self.templates.read().keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
