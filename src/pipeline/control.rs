//! A delivery that is not sent: its campaign is paused or cancelled, or it is too old.
//! A paused campaign's delivery is parked once on the hold topic, with no attempt made, due
//! when its wait ends (the campaign's longest pause, or its template's `max_age_seconds`):
//! the retry consumer holds it there until the campaign is resumed or that moment comes.
//! A cancelled campaign's delivery, and one past its wait, is dead-lettered unsent.

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::attempt::{Job, parked_record};
use super::logged::logged;
use super::next::Next;
use super::{Pipeline, Settlement};
use crate::campaigns::State;
use crate::park::{Reason, now_ms};
use crate::stats::Event as StatsEvent;
use crate::trace::{Step, StepKind};

impl Pipeline {
    /// What a delivery does instead of being sent while its campaign is in `state`
    /// (`attempts`: made before).
    pub(super) async fn controlled(
        &self,
        job: &Job<'_>,
        state: State,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Settlement {
        match state {
            State::Cancelled { .. } => {
                let why = "campaign cancelled".to_string();
                self.dead_letter_unsent(job, attempts, Reason::Cancelled, why, shutdown)
                    .await
            }
            // Active is not asked for (the caller sends); held as paused from now if it were.
            State::Paused { .. } | State::Active => {
                let since_ms = state.since_ms().unwrap_or_else(now_ms);
                self.hold(job, attempts, since_ms, shutdown).await
            }
        }
    }

    /// Parks a paused campaign's delivery on the hold topic, due when its wait ends; past
    /// the longest pause, dead-letters it as `expired`.
    async fn hold(
        &self,
        job: &Job<'_>,
        attempts: u32,
        paused_since_ms: u64,
        shutdown: &CancellationToken,
    ) -> Settlement {
        let now = now_ms();
        let longest = self.campaigns.max_pause;
        let pause_ends = paused_since_ms.saturating_add(longest.as_millis() as u64);
        if now >= pause_ends {
            let why = format!(
                "campaign paused for longer than campaign_max_pause ({})",
                humantime::format_duration(longest)
            );
            return self
                .dead_letter_unsent(job, attempts, Reason::Expired, why, shutdown)
                .await;
        }
        let max_age = job.template.template.max_age_seconds;
        let too_old_at = job.event.created_at.zip(max_age).map(|(created, secs)| {
            (created.timestamp_millis().max(0) as u64).saturating_add(secs.saturating_mul(1000))
        });
        let last_status = job.history.attempts.last().and_then(|a| a.status);
        let mut letter = parked_record(
            job,
            job.history.clone(),
            attempts,
            "campaign paused".into(),
            last_status,
            now,
        );
        letter.due_at_ms = too_old_at.map_or(pause_ends, |at| at.min(pause_ends));
        // All of a campaign's held deliveries in one partition of the hold topic.
        letter.key = Some(job.event.target_id.to_string());
        letter.first_failed_at_ms = job.first_failed_at_ms.unwrap_or(0);
        let mut parking = Step::start(StepKind::Park, Some(job.trace));
        parking.note("webhook.outcome", "held");
        letter.trace = Some(parking.at().clone());
        debug!(
            chunk = job.delivery.chunk,
            "campaign paused; holding the delivery"
        );
        let held = self.parking.hold(&letter, shutdown).await;
        if held.is_settled() {
            self.stats.record(job.event.target_id, StatsEvent::Held);
        }
        held
    }

    /// Dead-letters a delivery without sending it, for `reason` (`expired`, `cancelled`).
    pub(super) async fn dead_letter_unsent(
        &self,
        job: &Job<'_>,
        attempts: u32,
        reason: Reason,
        error: String,
        shutdown: &CancellationToken,
    ) -> Settlement {
        if reason == Reason::Cancelled {
            debug!(
                chunk = job.delivery.chunk,
                "campaign cancelled; dead-lettering the delivery unsent"
            );
        } else {
            warn!(reason = reason.as_str(), error = %error, chunk = job.delivery.chunk, attempt = attempts + 1,
                  "not sending a delivery that is too old");
        }
        let now = now_ms();
        let last_status = job.history.attempts.last().and_then(|a| a.status);
        let mut letter = parked_record(job, job.history.clone(), attempts, error, last_status, now);
        letter.reason = Some(reason);
        let mut parking = Step::start(StepKind::Park, Some(job.trace));
        parking.note("webhook.dead_letter_reason", reason.as_str());
        letter.trace = Some(parking.at().clone());
        let parked = self.parking.dead_letter(&letter, shutdown).await;
        if parked.is_settled() {
            if reason == Reason::Cancelled {
                // A campaign manager's decision, not a failure: not "Webhook Dispatch Failed".
                self.stats.record(job.event.target_id, StatsEvent::Cancelled);
            } else {
                self.counted_dead_letter(job);
                self.stats.error(job.event.target_id, &letter.last_error, now);
            }
            let next = Next::DeadLetter(reason);
            self.log
                .record(logged(job, Err(reason.as_str()), attempts + 1, next));
        }
        parked
    }
}
