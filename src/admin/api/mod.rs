//! The admin HTTP API (docs/api.md) under `/v1`, beside `/healthz` and `/readyz`: every route
//! behind `Authorization: Bearer <admin_token>` (compared in constant time), JSON in and out,
//! bodies limited to 1 MiB, unknown fields refused, and every error a [`Problem`]
//! (`application/problem+json`: `type`, `title`, `status`, `detail`, plus `error`, a stable
//! code, `message` and `field`) with a 4xx when the caller can fix it.
//! The OpenAPI document is generated from the route handlers' annotations ([`openapi`]:
//! `GET /v1/openapi.json`, `webhook-dispatcher openapi`).

mod openapi;

pub use openapi::{ApiDoc, document_json};

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::problem::{self, Problem};
use super::replay::Filter;
use super::{Admin, AdminError, Page, ReplayOptions, ReplayReport, SaveMode, Saved, TokenReport};
use crate::secret::Secret;
use crate::stats::CampaignStats;
use crate::template::Template;

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
        .route("/v1/templates/{id}/token", post(generate_token))
        .route("/v1/campaigns", get(list_campaigns))
        .route("/v1/campaigns/{target_id}/stats", get(campaign_stats))
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
struct PutParams {
    /// `false` saves without the test request (GitOps pipelines whose destinations are not
    /// reachable from where they run). Default `true`.
    #[serde(default = "yes")]
    test: bool,
}

fn yes() -> bool {
    true
}

/// Validate a template, send its destination a test request, save it if that answered 200 OK.
/// With `If-None-Match: *` it only creates: an existing id is answered 412 and kept as it is.
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "template id"), PutParams,
        ("If-None-Match" = Option<String>, Header,
         description = "`*`: create only; a template with this id is never replaced (412 instead)")),
    request_body(content = Template, description = "the template (docs/formats.md#template); `id` may be left out"),
    responses(
        (status = 201, description = "created", body = Saved),
        (status = 200, description = "replaced", body = Saved),
        (status = 400, description = "malformed JSON, or an invalid path, query or header", body = Problem),
        (status = 412, description = "`If-None-Match: *` and a template with this id exists (`already_exists`, `field`: `id`)", body = Problem),
        (status = 422, description = "invalid field, or the test request did not get 200 OK", body = Problem),
    ))]
async fn put_template(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PutParams>, QueryRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let params = query(params)?;
    let mode = save_mode(&headers)?;
    let template = template_body(&id, body(bytes)?)?;
    let saved = admin(&state)?.save(template, params.test, mode).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved)).into_response())
}

/// `If-None-Match: *` creates only; templates have no entity tags, so any other value is
/// refused rather than ignored.
fn save_mode(headers: &HeaderMap) -> Result<SaveMode, ApiError> {
    match headers.get(header::IF_NONE_MATCH).map(HeaderValue::as_bytes) {
        None => Ok(SaveMode::CreateOrReplace),
        Some(b"*") => Ok(SaveMode::Create),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "If-None-Match: only * is supported (create only)",
        )),
    }
}

/// A template from a request body whose `id`, if given, must be the path's.
fn template_body(id: &str, mut value: serde_json::Value) -> Result<Template, ApiError> {
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "the body must be a JSON object (a template)",
        ));
    };
    match object.get("id") {
        None => {
            object.insert("id".into(), json!(id));
        }
        Some(given) if given == &json!(id) => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "id: differs from the id in the path",
            )
            .with_field("id"));
        }
    }
    let mut problems = Template::shape_problems(&value);
    if problems.is_empty() {
        return from_value(value);
    }
    // Every wrong field at once: the well-formed rest is read and checked too.
    if let Some(object) = value.as_object_mut() {
        for problem in &problems {
            let top = problem.field.split('.').next().unwrap_or_default();
            object.remove(top);
        }
    }
    if let Ok(rest) = serde_json::from_value::<Template>(value) {
        let more: Vec<_> = rest
            .problems()
            .into_iter()
            .filter(|p| !problems.iter().any(|known| known.field == p.field))
            .collect();
        problems.extend(more);
    }
    crate::template::in_field_order(&mut problems);
    Err(AdminError::Invalid(problems).into())
}

/// A template, credentials masked as `****`.
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "template id")),
    responses(
        (status = 200, description = "the template, credentials as ****", body = Template),
        (status = 400, description = "invalid path", body = Problem),
        (status = 404, description = "no such template", body = Problem),
    ))]
async fn get_template(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Template>, ApiError> {
    let id = path(id)?;
    Ok(Json(admin(&state)?.get(&id).await?))
}

/// Deletes a template.
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "template id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid path", body = Problem),
        (status = 404, description = "no such template", body = Problem),
    ))]
async fn delete_template(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    if admin(&state)?.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::NotFound(id).into())
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Return templates whose id sorts after this one (the previous page's `next_after`).
    after: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only templates whose id, name or URL contains this text (ignoring case).
    q: Option<String>,
}

/// Templates in id order, a page at a time, credentials masked.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(ListParams),
    responses(
        (status = 200, description = "a page of templates", body = Page),
        (status = 400, description = "invalid query", body = Problem),
    ))]
async fn list_templates(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    Ok(Json(
        admin(&state)?
            .search(params.after.as_deref(), limit, params.q.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TokenParams {
    /// Show the access token itself instead of `****`.
    #[serde(default)]
    reveal: bool,
}

/// The OAuth 2.0 "Generate" step: fetch a token with the template's credentials, or with
/// those of the template in the body (being edited, not saved yet; `****` keeps a stored
/// secret).
#[utoipa::path(post, path = "/v1/templates/{id}/token", tag = "templates",
    params(("id" = String, Path, description = "template id"), TokenParams),
    request_body(content = Template, description = "optional: a template to take the credentials from instead of the stored one"),
    responses(
        (status = 200, description = "a new token", body = TokenReport),
        (status = 400, description = "invalid path, query or body", body = Problem),
        (status = 404, description = "no such template (and none in the body)", body = Problem),
        (status = 422, description = "invalid field, not an OAuth 2.0 template, or the token endpoint refused", body = Problem),
    ))]
async fn generate_token(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<TokenParams>, QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenReport>, ApiError> {
    let id = path(id)?;
    let params = query(params)?;
    let draft = match bytes {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => None,
        bytes => Some(template_body(&id, body(bytes)?)?),
    };
    Ok(Json(
        admin(&state)?
            .generate_token_for(&id, draft, params.reveal)
            .await?,
    ))
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
    /// retries_exhausted, rejected, invalid_event, template_not_found, render_error, expired, ssrf_blocked
    reason: Option<String>,
    template_id: Option<String>,
    #[serde(rename = "targetId")]
    target_id: Option<i64>,
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
