//! `attempts event ID` and `attempts campaign ID`: the delivery log from a terminal.

use std::process::ExitCode;

use super::{failed, print};
use crate::admin::{Admin, AdminError};
use crate::delivery_log::{Filter, LoggedAttempt};

#[derive(Debug, clap::Subcommand)]
pub enum AttemptsAction {
    /// Every attempt of one event still in the log, oldest first.
    Event {
        /// The trigger event's event_id.
        event_id: String,
    },
    /// A campaign's attempts, newest first, a page at a time.
    Campaign {
        /// The campaign's targetId.
        #[arg(allow_negative_numbers = true)]
        target_id: i64,
        /// delivered, retrying, dead_lettered, or failed (every attempt not delivered).
        #[arg(long)]
        outcome: Option<String>,
        /// Go on from an earlier page's next cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Attempts per page (1-500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// One line per attempt: time, event, chunk, attempt, tier, host, status or error, latency,
/// outcome.
fn line(a: &LoggedAttempt) -> String {
    let at = chrono::DateTime::from_timestamp_millis(a.at_ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let result = match (a.status, &a.error) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "-".into(),
    };
    let next = a.next.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    format!(
        "{at}  {}  chunk {}  attempt {}  tier {}  {}  {result}  {} ms  {}{next}",
        a.event_id,
        a.chunk,
        a.attempt,
        a.tier,
        a.host,
        a.latency_ms,
        a.outcome.as_str()
    )
}

pub async fn attempts(admin: &Admin, action: AttemptsAction, json_output: bool) -> anyhow::Result<ExitCode> {
    match action {
        AttemptsAction::Event { event_id } => match admin.event_attempts(&event_id).await {
            Ok(found) => print(json_output, &found, || {
                found.attempts.iter().map(line).collect::<Vec<_>>().join("\n")
            }),
            Err(err) => return Ok(failed(json_output, &err)),
        },
        AttemptsAction::Campaign {
            target_id,
            outcome,
            cursor,
            limit,
        } => {
            let filter = match Filter::parse(outcome.as_deref()) {
                Ok(filter) => filter,
                Err(why) => return Ok(failed(json_output, &AdminError::invalid("outcome", why))),
            };
            match admin
                .campaign_attempts(target_id, filter, cursor.as_deref(), limit)
                .await
            {
                Ok(page) => print(json_output, &page, || {
                    let mut lines: Vec<String> = page.attempts.iter().map(line).collect();
                    if let Some(next) = &page.next_cursor {
                        lines.push(format!("more: --cursor {next}"));
                    }
                    lines.join("\n")
                }),
                Err(err) => return Ok(failed(json_output, &err)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
