//! Campaign control routes: pause, resume and cancel a campaign by its `targetId`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Json;

use super::super::problem::Problem;
use super::{ApiError, ApiState, admin, path};
use crate::campaigns::{CampaignState, Command};

/// Pauses a campaign: its deliveries are held, unsent, until it is resumed (or until
/// `campaign_max_pause` or their template's `max_age_seconds`, then dead-lettered as
/// `expired`). Other campaigns keep flowing. Every replica follows within a second.
#[utoipa::path(post, path = "/v1/campaigns/{target_id}/pause", tag = "campaigns",
    params(("target_id" = i64, Path, description = "the campaign's targetId")),
    responses(
        (status = 200, description = "the campaign's state now (pausing a paused campaign keeps when it began)", body = CampaignState),
        (status = 400, description = "targetId is not an integer", body = Problem),
        (status = 422, description = "too many campaigns are paused or cancelled already", body = Problem),
    ))]
pub(super) async fn pause_campaign(
    State(state): State<ApiState>,
    target_id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CampaignState>, ApiError> {
    control(state, target_id, Command::Pause).await
}

/// Resumes a paused or cancelled campaign: held deliveries go at once, new ones are sent,
/// and dead letters `cancelled` can be replayed.
#[utoipa::path(post, path = "/v1/campaigns/{target_id}/resume", tag = "campaigns",
    params(("target_id" = i64, Path, description = "the campaign's targetId")),
    responses(
        (status = 200, description = "the campaign's state now: active", body = CampaignState),
        (status = 400, description = "targetId is not an integer", body = Problem),
    ))]
pub(super) async fn resume_campaign(
    State(state): State<ApiState>,
    target_id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CampaignState>, ApiError> {
    control(state, target_id, Command::Resume).await
}

/// Cancels a campaign: what it has held, and every delivery of it that arrives until it is
/// resumed, is dead-lettered unsent as `cancelled`.
#[utoipa::path(post, path = "/v1/campaigns/{target_id}/cancel", tag = "campaigns",
    params(("target_id" = i64, Path, description = "the campaign's targetId")),
    responses(
        (status = 200, description = "the campaign's state now: cancelled", body = CampaignState),
        (status = 400, description = "targetId is not an integer", body = Problem),
        (status = 422, description = "too many campaigns are paused or cancelled already", body = Problem),
    ))]
pub(super) async fn cancel_campaign(
    State(state): State<ApiState>,
    target_id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CampaignState>, ApiError> {
    control(state, target_id, Command::Cancel).await
}

async fn control(
    state: ApiState,
    target_id: Result<Path<i64>, PathRejection>,
    command: Command,
) -> Result<Json<CampaignState>, ApiError> {
    let target_id = path(target_id)?;
    Ok(Json(admin(&state)?.control_campaign(target_id, command).await?))
}
