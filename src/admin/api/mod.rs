//! The admin HTTP API (docs/api.md) under `/v1`, beside `/healthz` and `/readyz`: every route
//! behind `Authorization: Bearer <admin_token>` (compared in constant time), JSON in and out,
//! bodies limited to 1 MiB, unknown fields refused, and every error a [`Problem`]
//! (`application/problem+json`: `type`, `title`, `status`, `detail`, plus `error`, a stable
//! code, `message` and `field`) with a 4xx when the caller can fix it.
//! The OpenAPI document is generated from the route handlers' annotations ([`openapi`]:
//! `GET /v1/openapi.json`, `webhook-dispatcher openapi`). The template routes are in
//! `templates`; the campaign and dead-letter routes, and what every route shares, here.

mod attempts;
mod campaigns;
mod openapi;
mod templates;

pub use openapi::{ApiDoc, document_json};

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::problem::{self, Problem};
use super::replay::Filter;
use super::{Admin, AdminError, ReplayOptions, ReplayReport};
use crate::secret::Secret;
use crate::stats::CampaignStats;
use templates::{
    delete_template, generate_token, get_template, list_templates, preview_template, put_template,
};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The admin operations, set once Redis is reachable; until then `/v1` answers 503.
pub type AdminSlot = Arc<OnceLock<Arc<Admin>>>;

#[derive(Clone)]
struct ApiState {
    admin: AdminSlot,
    token: Option<Secret>,
}

/// `/v1/*`; `token` `None` leaves it open (the demo only: `run` requires a token).
pub fn router(admin: AdminSlot, token: Option<Secret>) -> Router {
    let state = ApiState { admin, token };
    Router::new()
        .route("/v1/templates", get(list_templates))
        .route(
            "/v1/templates/{id}",
            put(put_template).get(get_template).delete(delete_template),
        )
        .route("/v1/templates/preview", post(preview_template))
        .route("/v1/templates/{id}/token", post(generate_token))
        .route("/v1/campaigns", get(list_campaigns))
        .route("/v1/campaigns/{target_id}/stats", get(campaign_stats))
        .route("/v1/campaigns/{target_id}/pause", post(campaigns::pause_campaign))
        .route(
            "/v1/campaigns/{target_id}/resume",
            post(campaigns::resume_campaign),
        )
        .route(
            "/v1/campaigns/{target_id}/cancel",
            post(campaigns::cancel_campaign),
        )
        .route(
            "/v1/campaigns/{target_id}/attempts",
            get(attempts::campaign_attempts),
        )
        .route("/v1/events/{event_id}", get(attempts::event_attempts))
        .route("/v1/dead-letters/replay", post(replay_dead_letters))
        .route("/v1/openapi.json", get(openapi::openapi))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error answer: a [`Problem`] served as `application/problem+json` (boxed: results
/// stay small on the success path).
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(Problem::new(status, error, message)))
    }

    fn with_field(self, field: impl Into<String>) -> ApiError {
        ApiError(Box::new(self.0.with_field(field)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0.status_code(), Json(&self.0)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(problem::CONTENT_TYPE),
        );
        response
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> ApiError {
        ApiError(Box::new(Problem::from(&err)))
    }
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <admin token>",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn admin(state: &ApiState) -> Result<Arc<Admin>, ApiError> {
    state.admin.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "starting: Redis is not reachable yet",
        )
    })
}

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text()))
}

fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Query(value)| value)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text()))
}

/// Parses a JSON body, naming the field at fault.
fn body<T: serde::de::DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = bytes.map_err(|r| ApiError::new(r.status(), "invalid_body", r.body_text()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(refusal)?;
    deserializer
        .end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
    Ok(value)
}

/// Reads an already parsed JSON value, naming the field at fault.
fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(refusal)
}

/// Bad syntax is a 400; a wrong or unknown field a 422 naming it.
fn refusal(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let field = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_data() {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {inner}"),
        )
        .with_field(field)
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", inner.to_string())
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CampaignListParams {
    /// How many campaigns, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// The campaigns whose stats were written most recently.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct CampaignList {
    /// Those with "Webhook Dispatch Failed" first, then the most recent first (`last_at`).
    campaigns: Vec<CampaignStats>,
}

/// The campaigns with recent deliveries, those whose deliveries failed first: what the
/// console's campaign page lists.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    params(CampaignListParams),
    responses(
        (status = 200, description = "recent campaigns' stats, failed ones first", body = CampaignList),
        (status = 400, description = "an invalid query", body = Problem),
        (status = 422, description = "limit out of range", body = Problem),
    ))]
async fn list_campaigns(
    State(state): State<ApiState>,
    params: Result<Query<CampaignListParams>, QueryRejection>,
) -> Result<Json<CampaignList>, ApiError> {
    let params = query(params)?;
    let campaigns = admin(&state)?.campaigns(params.limit.unwrap_or(50)).await?;
    Ok(Json(CampaignList { campaigns }))
}

/// A campaign's delivery counts and last error: the "Webhook Dispatch Failed" view.
#[utoipa::path(get, path = "/v1/campaigns/{target_id}/stats", tag = "campaigns",
    params(("target_id" = i64, Path, description = "the campaign's targetId")),
    responses(
        (status = 200, description = "the campaign's stats (zeros when nothing was sent)", body = CampaignStats),
        (status = 400, description = "targetId is not an integer", body = Problem),
    ))]
async fn campaign_stats(
    State(state): State<ApiState>,
    target_id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CampaignStats>, ApiError> {
    let target_id = path(target_id)?;
    Ok(Json(admin(&state)?.stats(target_id).await?))
}

/// Which dead letters to replay; every field given must match.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// retries_exhausted, rejected, invalid_event, template_not_found, render_error, expired, ssrf_blocked, internal_error, circuit_open_expired, cancelled
    reason: Option<String>,
    template_id: Option<String>,
    #[serde(rename = "targetId")]
    target_id: Option<i64>,
    /// Only the dead letters of this event.
    event_id: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Dead-lettered before (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// List what would be replayed; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Dead letters per page (1-5,000, default 1,000): the answer's `next_cursor` goes on.
    #[schema(minimum = 1, maximum = 5000)]
    limit: Option<usize>,
    /// Where to go on from: a `next_cursor` of an earlier answer.
    cursor: Option<String>,
    /// Replay letters that were replayed before too (they are skipped otherwise).
    #[serde(default)]
    force: bool,
}

/// Replays dead letters: failed deliveries to retry tier 1 (attempts start afresh, same
/// Idempotency-Key), whole records to the trigger topic.
#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead-letters",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "what was (or would be) replayed", body = ReplayReport),
        (status = 400, description = "malformed JSON", body = Problem),
        (status = 422, description = "invalid field", body = Problem),
    ))]
async fn replay_dead_letters(
    State(state): State<ApiState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayReport>, ApiError> {
    let request: ReplayRequest = body(bytes)?;
    let filter = Filter {
        reason: request.reason,
        template: request.template_id,
        target_id: request.target_id,
        event_id: request.event_id,
        since: request.since,
        until: request.until,
    };
    let options = ReplayOptions {
        dry_run: request.dry_run,
        limit: request.limit,
        cursor: request.cursor,
        force: request.force,
    };
    Ok(Json(admin(&state)?.replay(filter, options).await?))
}
