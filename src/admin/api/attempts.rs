//! The delivery log's routes: an event's attempts, and a campaign's a page at a time.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Json;
use serde::Deserialize;

use super::super::EventAttempts;
use super::super::problem::Problem;
use super::{ApiError, ApiState, admin, path, query};
use crate::delivery_log::{AttemptPage, Filter};

/// Every attempt of one event still in the delivery log, oldest first, and the dead-letter
/// reasons of its chunks that were dead-lettered.
#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "delivery log",
    params(("event_id" = String, Path, description = "the trigger event's event_id")),
    responses(
        (status = 200, description = "the event's attempts", body = EventAttempts),
        (status = 404, description = "no attempt of this event is in the log (none was made, or it aged out)", body = Problem),
    ))]
pub(super) async fn event_attempts(
    State(state): State<ApiState>,
    event_id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventAttempts>, ApiError> {
    let event_id = path(event_id)?;
    Ok(Json(admin(&state)?.event_attempts(&event_id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AttemptParams {
    /// `delivered`, `retrying`, `dead_lettered`, or `failed` (every attempt not delivered);
    /// all when left out.
    outcome: Option<String>,
    /// Where to go on from: the previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// A campaign's attempts, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/campaigns/{target_id}/attempts", tag = "delivery log",
    params(("target_id" = i64, Path, description = "the campaign's targetId"), AttemptParams),
    responses(
        (status = 200, description = "a page of attempts", body = AttemptPage),
        (status = 400, description = "targetId is not an integer, or an invalid query", body = Problem),
        (status = 422, description = "an unknown outcome, a limit out of range or an invalid cursor", body = Problem),
    ))]
pub(super) async fn campaign_attempts(
    State(state): State<ApiState>,
    target_id: Result<Path<i64>, PathRejection>,
    params: Result<Query<AttemptParams>, QueryRejection>,
) -> Result<Json<AttemptPage>, ApiError> {
    let target_id = path(target_id)?;
    let params = query(params)?;
    let filter = Filter::parse(params.outcome.as_deref()).map_err(|why| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("outcome: {why}"),
        )
        .with_field("outcome")
    })?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "limit: must be between 1 and 500",
        )
        .with_field("limit"));
    }
    Ok(Json(
        admin(&state)?
            .campaign_attempts(target_id, filter, params.cursor.as_deref(), limit)
            .await?,
    ))
}
