//! The template routes of the admin API: save after a test request (or create only, with
//! `If-None-Match: *`), read, delete, list a page at a time, and the OAuth 2.0 "Generate"
//! step. A template in a body is checked whole: every wrong field is named at once.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::json;

use super::super::problem::Problem;
use super::super::{AdminError, Page, Preview, SaveMode, Saved, TokenReport};
use super::{ApiError, ApiState, admin, body, from_value, path, query};
use crate::template::Template;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct PutParams {
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
pub(super) async fn put_template(
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
pub(super) async fn get_template(
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
pub(super) async fn delete_template(
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
pub(super) struct ListParams {
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
pub(super) async fn list_templates(
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
pub(super) struct TokenParams {
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
pub(super) async fn generate_token(
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

/// What a preview renders: a template, and the event to render it against.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewRequest {
    /// The template as it would be saved (`id` may be left out; credentials play no part).
    #[schema(value_type = Template)]
    template: serde_json::Value,
    /// A trigger event (docs/formats.md, "Trigger event"); without one, the sample event of
    /// the test request on save.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    event: Option<serde_json::Value>,
}

/// Renders a template against an event without sending anything: the requests it would
/// make, bodies included. The id `preview` is this route's, so no template can have it.
#[utoipa::path(post, path = "/v1/templates/preview", tag = "templates",
    request_body(content = PreviewRequest),
    responses(
        (status = 200, description = "the rendered requests", body = Preview),
        (status = 400, description = "malformed JSON", body = Problem),
        (status = 422, description = "an invalid field, an invalid event (`event: …`), or a template that does not render for it (`render_error: …`)", body = Problem),
    ))]
pub(super) async fn preview_template(
    State(state): State<ApiState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Preview>, ApiError> {
    let request: PreviewRequest = body(bytes)?;
    let id = match request.template.get("id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id.clone(),
        _ => "preview".to_string(),
    };
    let mut value = request.template;
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), json!(id));
    }
    let template = template_body(&id, value)?;
    Ok(Json(admin(&state)?.preview(template, request.event)?))
}
