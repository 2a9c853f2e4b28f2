//! "What happened to my webhook?": an event's attempts, and a campaign's, from the
//! delivery log.

use serde::Serialize;

use super::{Admin, AdminError, Unavailable};
use crate::delivery_log::{AttemptPage, Filter, LogError, LoggedAttempt, Outcome};

/// Every attempt of one event still in the log, and how it ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventAttempts {
    pub event_id: String,
    /// Oldest first.
    pub attempts: Vec<LoggedAttempt>,
    /// The dead-letter reasons of the event's chunks that were dead-lettered (replay them
    /// with `event_id` in the replay request).
    pub dead_lettered: Vec<String>,
}

/// Most attempts a page shows.
pub const MAX_PAGE: usize = 500;

impl Admin {
    /// `event_id`'s attempts; 404 when the log has none (never made, or aged out).
    pub async fn event_attempts(&self, event_id: &str) -> Result<EventAttempts, AdminError> {
        let attempts = self.log.event(event_id).await.map_err(log_error)?;
        if attempts.is_empty() {
            return Err(AdminError::Missing(format!(
                "no attempt of event {event_id:?} is in the delivery log (none was made, or it aged out)"
            )));
        }
        let dead_lettered = attempts
            .iter()
            .filter(|a| a.outcome == Outcome::DeadLettered)
            .filter_map(|a| a.next.clone())
            .collect();
        Ok(EventAttempts {
            event_id: event_id.to_string(),
            attempts,
            dead_lettered,
        })
    }

    /// A page of campaign `target_id`'s attempts, newest first.
    pub async fn campaign_attempts(
        &self,
        target_id: i64,
        filter: Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, AdminError> {
        self.log
            .campaign(target_id, filter, cursor, limit.clamp(1, MAX_PAGE))
            .await
            .map_err(log_error)
    }
}

fn log_error(err: LogError) -> AdminError {
    match err {
        LogError::Off => AdminError::Unavailable(Unavailable::NotConfigured(
            "the delivery log is off (delivery_log.enabled = false)",
        )),
        LogError::Cursor(_) => AdminError::Unprocessable(err.to_string()),
        LogError::Redis(err) => AdminError::Unavailable(Unavailable::Redis(err)),
    }
}
