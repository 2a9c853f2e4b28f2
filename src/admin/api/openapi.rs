//! The OpenAPI document of the admin API, generated from the handlers' `#[utoipa::path]`
//! annotations, with what every route can answer (401, 413, 503, problem+json) added once.

use axum::response::Json;
use utoipa::OpenApi;

use super::super::problem::{self, Problem};
use super::super::{
    EventAttempts, Page, Preview, RenderedRequest, ReplayReport, Saved, TestReport, TokenReport,
};
use super::attempts::{__path_campaign_attempts, __path_event_attempts};
use super::campaigns::{__path_cancel_campaign, __path_pause_campaign, __path_resume_campaign};
use super::templates::{
    __path_delete_template, __path_generate_token, __path_get_template, __path_list_templates,
    __path_preview_template, __path_put_template, PreviewRequest,
};
use super::{
    __path_campaign_stats, __path_list_campaigns, __path_replay_dead_letters, CampaignList, ReplayRequest,
};
use crate::campaigns::CampaignState;
use crate::delivery_log::{AttemptPage, LoggedAttempt};
use crate::stats::CampaignStats;
use crate::template::Template;

#[derive(OpenApi)]
#[openapi(
    info(title = "webhook-dispatcher admin API", description = "Templates, OAuth 2.0 tokens, campaign stats and control (pause, resume, cancel), the delivery log and dead-letter replay. Every route needs `Authorization: Bearer <WD_ADMIN_TOKEN>`."),
    paths(put_template, get_template, delete_template, list_templates, preview_template, generate_token, list_campaigns, campaign_stats, pause_campaign, resume_campaign, cancel_campaign, campaign_attempts, event_attempts, replay_dead_letters, openapi),
    components(schemas(Template, Problem, Saved, TestReport, Page, Preview, RenderedRequest, PreviewRequest, EventAttempts, AttemptPage, LoggedAttempt, TokenReport, CampaignStats, CampaignState, CampaignList, ReplayReport, ReplayRequest)),
    modifiers(&BearerAuth, &CommonAnswers),
    security(("admin_token" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What every route can answer besides its own results, added to each operation once:
/// 401 (every route is behind the token), 413 (a body over 1 MiB, where there is a body),
/// 503 (Redis not reachable yet, where the route needs it); and every 4xx/5xx documented as
/// `application/problem+json`.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::Content;
        use utoipa::openapi::header::Header;
        use utoipa::openapi::{ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
        let problem = |description: &str| {
            ResponseBuilder::new().description(description).content(
                problem::CONTENT_TYPE,
                Content::new(Some(Ref::from_schema_name("Problem"))),
            )
        };
        let unauthorized = problem("no or wrong admin token (`Authorization: Bearer <WD_ADMIN_TOKEN>`)")
            .header(
                "WWW-Authenticate",
                Header::new(ObjectBuilder::new().schema_type(Type::String)),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    if let (true, RefOr::T(response)) = (status.starts_with(['4', '5']), response)
                        && let Some(json) = response.content.shift_remove("application/json")
                    {
                        response.content.insert(problem::CONTENT_TYPE.into(), json);
                    }
                }
                responses.insert("401".into(), unauthorized.clone().into());
                if operation.request_body.is_some() {
                    let too_large = problem("the body is over 1 MiB").build();
                    responses.insert("413".into(), too_large.into());
                }
                if path.as_str() != "/v1/openapi.json" {
                    let unavailable =
                        problem("Redis (or, for replay, Kafka) is not reachable; try again").build();
                    responses.insert("503".into(), unavailable.into());
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document as pretty JSON (`webhook-dispatcher openapi`).
pub fn document_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}
