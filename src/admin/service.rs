//! What a campaign manager does in a dashboard and an operator in a terminal: save a
//! template once its destination answered a test request with 200 OK, read, list and delete
//! templates (credentials masked), generate an OAuth 2.0 token, read a campaign's stats and
//! replay dead letters. The HTTP API ([`super::api`]) and the command line ([`super::cli`]) both call this.
//!
//! Every change is published ([`cache::publish_change`]); every replica drops its cached
//! copy when it hears it ([`cache::watch_changes`]).
//!
//! The template operations are in `templates`; this module holds the rest and what they
//! share: the errors, the reports, and [`Admin`] itself.

mod attempts;
mod campaigns;
mod preview;
mod templates;

pub use attempts::EventAttempts;
pub use preview::{Preview, RenderedRequest};

use std::sync::Arc;
use std::time::Instant;

use crate::redis_link::RedisConn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::replay;
use crate::auth::Auth;
use crate::campaigns::Campaigns;
use crate::config::Config;
use crate::deliver::Sender;
use crate::delivery_log::DeliveryLog;
use crate::secret::MASK;
use crate::stats::{CampaignStats, Stats};
use crate::template::{StoreError, Template, TemplateCache, TemplateError, TemplateStore, cache};

/// Why an admin operation did not happen. Every variant but `Unavailable` is the caller's
/// to fix (a 4xx over HTTP).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Every wrong field (at least one), in the template's order.
    #[error("{}", invalid_fields(.0))]
    Invalid(Vec<TemplateError>),
    #[error("no template with id {0:?}")]
    NotFound(String),
    /// Something other than a template is not there; the message says what.
    #[error("{0}")]
    Missing(String),
    /// A create-only save found the id taken.
    #[error("a template with id {0:?} already exists")]
    Exists(String),
    #[error("the test request failed: {}", .0.summary())]
    TestFailed(TestReport),
    #[error("{0}")]
    Unprocessable(String),
    /// Redis or Kafka is not configured or not answering: the request may succeed later.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// Whether a save may replace a template with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    CreateOrReplace,
    /// Refused with [`AdminError::Exists`] when the id is taken: adding never replaces.
    Create,
}

/// What the admin service needed and could not have.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The feature needs a part the configuration leaves out.
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Store(StoreError),
    #[error("Redis: {0}")]
    Redis(redis::RedisError),
    /// Reading or producing dead letters failed (the message holds the cause chain).
    #[error("{0:#}")]
    Kafka(anyhow::Error),
}

impl AdminError {
    /// One wrong field.
    pub fn invalid(field: &str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid(vec![TemplateError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The stable `error` code of the API's and the CLI's JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Invalid(_) => "invalid_field",
            AdminError::NotFound(_) | AdminError::Missing(_) => "not_found",
            AdminError::Exists(_) => "already_exists",
            AdminError::TestFailed(_) => "test_failed",
            AdminError::Unprocessable(_) => "unprocessable",
            AdminError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::KeyMissing { .. } => {
                AdminError::Unavailable(Unavailable::Store(err))
            }
            StoreError::Corrupt { .. } => AdminError::Unprocessable(err.to_string()),
        }
    }
}

/// The result of the test request sent before a template is saved.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestReport {
    /// `true` when the destination answered 200 OK.
    pub passed: bool,
    /// The HTTP status, when the destination answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why it failed: `HTTP 500`, `timeout`, `connection error: …`, `auth: …`, `ssrf_blocked: …`.
    pub error: Option<String>,
    /// What the failure means and what to check, in plain words (what the console shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The start of the destination's answer when it was not 200 (at most 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl TestReport {
    fn summary(&self) -> String {
        self.error.clone().unwrap_or_else(|| "ok".into())
    }
}

/// A saved template (credentials masked) and its test.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Saved {
    pub template: Template,
    /// `false` when the template replaced one with the same id.
    pub created: bool,
    /// Absent when the test was skipped (`--no-test`).
    pub test: Option<TestReport>,
}

/// One page of templates, in id order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub templates: Vec<Template>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_after: Option<String>,
}

/// A token from the OAuth 2.0 "Generate" step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenReport {
    pub token_type: String,
    /// Scopes the endpoint granted (as it said), else the ones asked for.
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub expires_in: u64,
    /// `****` unless revealed.
    pub access_token: String,
    /// Whether the endpoint sent a refresh token with it (never shown).
    pub refresh_token: bool,
}

/// What a replay selected and did, one page of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub dry_run: bool,
    /// Dead letters this page selected.
    pub count: usize,
    /// How many of them were sent now (none on a dry run).
    pub replayed: usize,
    /// How many were left out: replayed before (`replayed_before` on each), unless forced.
    pub already_replayed: usize,
    #[schema(value_type = Vec<Object>)]
    pub letters: Vec<replay::Letter>,
    /// Where the next page starts (give it back as `cursor`); `null` once the scan is over.
    pub next_cursor: Option<String>,
}

/// How one page of a replay goes.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub dry_run: bool,
    /// Matches per page (1-5,000; 1,000 when not given).
    pub limit: Option<usize>,
    /// Where to go on from (a `next_cursor`).
    pub cursor: Option<String>,
    /// Replay letters replayed before too.
    pub force: bool,
}

pub struct Admin {
    store: Arc<dyn TemplateStore>,
    sender: Arc<Sender>,
    /// Publishes changes and reads stats; `None` without Redis (the demo).
    redis: Option<RedisConn>,
    /// This process's stats, read when they are kept in memory (the demo).
    stats: Option<Arc<Stats>>,
    prefix: String,
    /// This process's cache, dropped at once on a change (others hear the publication).
    cache: Option<TemplateCache>,
    /// Every attempt, by event and campaign.
    log: DeliveryLog,
    /// Which campaigns are paused or cancelled (`None`: campaign control is not offered).
    campaigns: Option<Arc<Campaigns>>,
    config: Config,
}

impl Admin {
    pub fn new(
        store: Arc<dyn TemplateStore>,
        sender: Arc<Sender>,
        redis: Option<RedisConn>,
        cache: Option<TemplateCache>,
        config: Config,
    ) -> Admin {
        let log = match &redis {
            Some(conn) => DeliveryLog::redis(conn.clone(), &config.redis.prefix, &config.delivery_log),
            None => DeliveryLog::off(),
        };
        Admin {
            store,
            sender,
            redis,
            stats: None,
            prefix: config.redis.prefix.clone(),
            cache,
            log,
            campaigns: None,
            config,
        }
    }

    /// Pauses, resumes and cancels campaigns through `campaigns`.
    pub fn with_campaigns(self, campaigns: Arc<Campaigns>) -> Admin {
        Admin {
            campaigns: Some(campaigns),
            ..self
        }
    }

    /// Reads attempts from `log` (this process's, when it keeps them in memory).
    pub fn with_log(self, log: DeliveryLog) -> Admin {
        Admin { log, ..self }
    }

    /// Reads campaign stats from `stats` when it keeps them in memory (the demo).
    pub fn with_stats(self, stats: Arc<Stats>) -> Admin {
        Admin {
            stats: Some(stats),
            ..self
        }
    }

    /// The OAuth 2.0 "Generate" step: a new token with the template's credentials.
    pub async fn generate_token(&self, id: &str, reveal: bool) -> Result<TokenReport, AdminError> {
        self.generate_token_for(id, None, reveal).await
    }

    /// [`Admin::generate_token`] with the credentials of `draft` (a template being edited,
    /// not saved yet; `****` keeps a stored secret) instead of the stored ones.
    pub async fn generate_token_for(
        &self,
        id: &str,
        draft: Option<Template>,
        reveal: bool,
    ) -> Result<TokenReport, AdminError> {
        let stored = self.store.get(id).await?;
        let template = match (draft, stored) {
            (Some(mut draft), stored) => {
                draft.keep_masked_secrets(stored.as_ref()).map_err(invalid)?;
                let problems = draft.problems();
                if !problems.is_empty() {
                    return Err(AdminError::Invalid(problems));
                }
                draft
            }
            (None, Some(stored)) => stored,
            (None, None) => return Err(AdminError::NotFound(id.to_string())),
        };
        let Auth::OAuth2(oauth) = &template.auth else {
            return Err(AdminError::Unprocessable(format!(
                "template {id:?} does not use OAuth 2.0 (auth.type is not \"oauth2\")"
            )));
        };
        let token = self
            .sender
            .tokens()
            .generate(oauth)
            .await
            .map_err(|e| AdminError::Unprocessable(format!("token request failed: {e}")))?;
        let expires_in = token.expires_at.saturating_duration_since(Instant::now());
        Ok(TokenReport {
            token_type: token.token_type.clone(),
            scopes: match &token.scope {
                Some(scope) => scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => oauth.scopes.clone(),
            },
            expires_at: Utc::now() + expires_in,
            expires_in: expires_in.as_secs(),
            access_token: if reveal {
                token.access_token.expose().to_string()
            } else {
                MASK.to_string()
            },
            refresh_token: token.refresh_token.is_some(),
        })
    }

    pub async fn stats(&self, target_id: i64) -> Result<CampaignStats, AdminError> {
        let mut stats = match self.stats.as_ref().and_then(|stats| stats.local(target_id)) {
            Some(local) => local,
            None => {
                let Some(conn) = &self.redis else {
                    return Err(Unavailable::NotConfigured("campaign stats need Redis").into());
                };
                crate::stats::read(conn, &self.prefix, target_id)
                    .await
                    .map_err(Unavailable::Redis)?
            }
        };
        self.with_state(&mut stats).await?;
        Ok(stats)
    }

    /// The `limit` campaigns with the most recent stats, those with a failure first.
    pub async fn campaigns(&self, limit: usize) -> Result<Vec<CampaignStats>, AdminError> {
        if !(1..=100).contains(&limit) {
            return Err(AdminError::invalid("limit", "must be between 1 and 100"));
        }
        let mut campaigns = match self.stats.as_ref().and_then(|stats| stats.local_list(limit)) {
            Some(local) => local,
            None => {
                let Some(conn) = &self.redis else {
                    return Err(Unavailable::NotConfigured("campaign stats need Redis").into());
                };
                crate::stats::recent(conn, &self.prefix, limit)
                    .await
                    .map_err(Unavailable::Redis)?
            }
        };
        for campaign in &mut campaigns {
            self.with_state(campaign).await?;
        }
        Ok(campaigns)
    }

    /// Replays one page of the dead letters `filter` selects (or only lists them, on a dry
    /// run), skipping those replayed before unless forced.
    pub async fn replay(
        &self,
        filter: replay::Filter,
        options: ReplayOptions,
    ) -> Result<ReplayReport, AdminError> {
        if self.config.kafka.brokers.is_empty() {
            return Err(Unavailable::NotConfigured("replay needs kafka.brokers").into());
        }
        let limit = options.limit.unwrap_or(1000);
        if !(1..=5000).contains(&limit) {
            return Err(AdminError::invalid("limit", "must be between 1 and 5000"));
        }
        let cursor = options
            .cursor
            .as_deref()
            .map(str::parse::<replay::Cursor>)
            .transpose()
            .map_err(|message| AdminError::invalid("cursor", message))?;
        let config = self.config.clone();
        let page = replay::Page { cursor, limit };
        let scan = tokio::task::spawn_blocking(move || replay::read(&config, &filter, &page))
            .await
            .map_err(|e| Unavailable::Kafka(anyhow::Error::new(e).context("the replay task failed")))?
            .map_err(Unavailable::Kafka)?;
        let mut letters = scan.letters;
        let dlq = &self.config.dlq_topic;
        let todo: Vec<usize> = match (&self.redis, options.dry_run) {
            (Some(redis), false) => replay::mark(redis, &self.prefix, dlq, &mut letters, options.force)
                .await
                .map_err(Unavailable::Redis)?,
            (Some(redis), true) => {
                replay::look_up(redis, &self.prefix, dlq, &mut letters)
                    .await
                    .map_err(Unavailable::Redis)?;
                (0..letters.len()).collect()
            }
            (None, _) => (0..letters.len()).collect(),
        };
        if !options.dry_run {
            let sending: Vec<&replay::Letter> = todo.iter().map(|&i| &letters[i]).collect();
            if let Err(err) = replay::replay(&self.config, &sending).await {
                if let Some(redis) = &self.redis {
                    replay::unmark(redis, &self.prefix, dlq, &sending).await;
                }
                return Err(Unavailable::Kafka(err).into());
            }
        }
        Ok(ReplayReport {
            dry_run: options.dry_run,
            count: letters.len(),
            replayed: if options.dry_run { 0 } else { todo.len() },
            already_replayed: letters.len() - todo.len(),
            next_cursor: scan.next.map(|c| c.to_string()),
            letters,
        })
    }

    /// Tells every replica (this one included) that `id` changed.
    async fn changed(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(id).await;
        }
        if let Some(conn) = &self.redis {
            cache::publish_change(conn, &self.prefix, id).await;
        }
    }
}

fn invalid(err: TemplateError) -> AdminError {
    AdminError::Invalid(vec![err])
}

/// `field: message`, one after the other.
fn invalid_fields(errors: &[TemplateError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
