//! Templates as the admin edge handles them: saved only once their destination answered
//! a test request with 200 OK (unless the test is skipped), read, listed, searched and
//! deleted with credentials masked; a save or a delete reaches every replica's cache.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::{Admin, AdminError, Page, SaveMode, Saved, TestReport, invalid};
use crate::deliver::AttemptResult;
use crate::event::{KeyValues, Profile, TriggerEvent};
use crate::render::render;
use crate::template::{Prepared, StoreError, Template, TemplateError};

impl Admin {
    /// Validates `template`, sends it a test request unless `test` is false, and saves it
    /// only when the destination answered 200 OK.
    /// A credential given as `****` keeps the stored one.
    pub async fn save(
        &self,
        mut template: Template,
        test: bool,
        mode: SaveMode,
    ) -> Result<Saved, AdminError> {
        let stored = self.store.get(&template.id).await?;
        if mode == SaveMode::Create && stored.is_some() {
            return Err(AdminError::Exists(template.id));
        }
        if template.id == "preview" {
            return Err(AdminError::Invalid(vec![TemplateError {
                field: "id".into(),
                message:
                    "preview is the name of the preview route (POST /v1/templates/preview); pick another"
                        .into(),
            }]));
        }
        template.keep_masked_secrets(stored.as_ref()).map_err(invalid)?;
        let problems = template.problems();
        if !problems.is_empty() {
            return Err(AdminError::Invalid(problems));
        }
        template.updated_at = Some(Utc::now());
        template.effective_rate_per_sec = None;
        let prepared = template.prepare().map_err(invalid)?;
        if prepared.template.body.is_some() {
            // A body that does not render or parse for a full chunk is never saved, tested
            // or not (the test request sends two sample profiles).
            let full = sample_event_of(&prepared, prepared.template.batch_size as usize);
            render(&prepared, &full, self.config.max_rendered_bytes)
                .map_err(|err| AdminError::Unprocessable(format!("render_error: {err}")))?;
        }
        let report = if test {
            let report = self.test(&prepared).await;
            if !report.passed {
                return Err(AdminError::TestFailed(report));
            }
            Some(report)
        } else {
            None
        };
        let template = Arc::unwrap_or_clone(prepared.template);
        let created = stored.is_none();
        match mode {
            SaveMode::CreateOrReplace => self.store.put(&template).await?,
            // Another client may have taken the id while the test request ran.
            SaveMode::Create if !self.store.create(&template).await? => {
                return Err(AdminError::Exists(template.id));
            }
            SaveMode::Create => {}
        }
        self.changed(&template.id).await;
        info!(template_id = %template.id, tested = test, "template saved");
        Ok(Saved {
            template: template.masked(),
            created,
            test: report,
        })
    }

    /// One request with `"is_test": true` and sample profiles, with the template's auth and
    /// signature, through the same client, guard and limits as every delivery.
    pub async fn test(&self, prepared: &Prepared) -> TestReport {
        let started = Instant::now();
        let failed = |error: String| TestReport {
            passed: false,
            status: None,
            latency_ms: started.elapsed().as_millis() as u64,
            error: Some(error),
            hint: None,
            answer: None,
        };
        let event = sample_event(prepared);
        let deliveries = match render(prepared, &event, self.config.max_rendered_bytes) {
            Ok(deliveries) => deliveries,
            Err(err) => return failed(format!("render_error: {err}")),
        };
        let Some(delivery) = deliveries.first() else {
            return failed("the template renders no request".into());
        };
        // The test request starts a trace of its own, as an event without one would.
        let trace = crate::trace::Step::start(crate::trace::StepKind::Attempt, None);
        let Some(attempt) = self
            .sender
            .send(delivery, prepared, event.target_id, trace.at())
            .await
        else {
            return failed("shutting down".into());
        };
        let status = match attempt.result {
            AttemptResult::Status { code, .. } => Some(code),
            _ => None,
        };
        let error = match attempt.result {
            AttemptResult::Status { code: 200, .. } => None,
            AttemptResult::Status { .. } => {
                Some(format!("{}: only 200 OK saves a template", attempt.describe()))
            }
            _ => Some(attempt.describe()),
        };
        TestReport {
            passed: error.is_none(),
            status,
            latency_ms: attempt.latency.as_millis() as u64,
            hint: error
                .as_ref()
                .and_then(|_| crate::admin::hint::hint(&attempt, delivery, &prepared.template)),
            answer: match &attempt.result {
                AttemptResult::Status { code, said, .. } if *code != 200 => said.clone(),
                _ => None,
            },
            error,
        }
    }

    /// The template with its credentials masked.
    pub async fn get(&self, id: &str) -> Result<Template, AdminError> {
        match self.store.get(id).await? {
            Some(template) => Ok(Template {
                effective_rate_per_sec: self.sender.effective_rate(id),
                ..template.masked()
            }),
            None => Err(AdminError::NotFound(id.to_string())),
        }
    }

    /// Up to `limit` templates with ids after `after`, in id order, masked.
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Page, AdminError> {
        self.search(after, limit, None).await
    }

    /// [`Admin::list`] of the templates whose id, name or URL contains `query` (ignoring
    /// case); `None` matches every template.
    pub async fn search(
        &self,
        after: Option<&str>,
        limit: usize,
        query: Option<&str>,
    ) -> Result<Page, AdminError> {
        let query = query.map(str::to_lowercase).filter(|q| !q.is_empty());
        let ids = self.store.ids().await?;
        let ids = ids.iter().filter(|id| after.is_none_or(|a| id.as_str() > a));
        let mut templates = Vec::with_capacity(limit);
        let mut last_id = None;
        let mut more = false;
        // Templates are read in id order until the page is full; the next page starts after
        // the last id read.
        for id in ids {
            if templates.len() == limit {
                more = true;
                break;
            }
            last_id = Some(id);
            // A template deleted meanwhile is skipped; so is a corrupt one (logged; GET
            // /v1/templates/{id} says what is wrong with it).
            match self.store.get(id).await {
                Ok(Some(template)) if query.as_deref().is_none_or(|q| matches(&template, q)) => {
                    templates.push(template.masked())
                }
                Ok(_) => {}
                Err(StoreError::Corrupt { .. }) => {
                    warn!(template_id = %id, "stored template is not valid JSON")
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(Page {
            templates,
            next_after: more.then(|| last_id.map(String::to_string)).flatten(),
        })
    }

    /// `true` when a template was deleted.
    pub async fn delete(&self, id: &str) -> Result<bool, AdminError> {
        let deleted = self.store.delete(id).await?;
        if deleted {
            self.changed(id).await;
            info!(template_id = %id, "template deleted");
        }
        Ok(deleted)
    }
}

/// Whether the template's id, name or URL contains `query` (lower case).
fn matches(template: &Template, query: &str) -> bool {
    [&template.id, &template.name, &template.url]
        .iter()
        .any(|text| text.to_lowercase().contains(query))
}

/// A test event: sample profiles, and a sample value for every `key_values.NAME` and
/// `profile.FIELD` the URL, headers and body use, so templates with placeholders can be
/// tested.
pub(super) fn sample_event(prepared: &Prepared) -> TriggerEvent {
    sample_event_of(prepared, 2)
}

/// [`sample_event`] with `count` sample profiles.
fn sample_event_of(prepared: &Prepared, count: usize) -> TriggerEvent {
    let mut key_values = Map::new();
    let mut fields = Map::new();
    for (root, name) in prepared.placeholders() {
        let sample = Value::String(format!("sample-{name}"));
        match root.as_str() {
            "key_values" => key_values.insert(name, sample),
            "profile" => fields.insert(name, sample),
            _ => None,
        };
    }
    let profiles = (1..=count)
        .map(|n| {
            let mut profile = Map::new();
            profile.insert("Identity".into(), json!(format!("test-user-{n}")));
            profile.insert("Email".into(), json!(format!("test-user-{n}@example.com")));
            profile.insert("push_token".into(), json!(format!("test-token-{n}")));
            for (k, v) in &fields {
                profile.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Profile::from(&profile)
        })
        .collect();
    TriggerEvent {
        event_id: format!("test-{}", Utc::now().timestamp_millis()),
        template_id: prepared.template.id.clone(),
        target_id: 0,
        is_test: true,
        key_values: KeyValues::from(&key_values),
        profiles,
        created_at: Some(Utc::now()),
    }
}
