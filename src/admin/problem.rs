//! One error shape for the admin API and the command line's `--json` failures: RFC 9457
//! problem details (`type`, `title`, `status`, `detail`, served as `application/problem+json`)
//! with the service's own members beside them (`error`, a stable code; `message`; `field` for
//! an invalid field; `test` for a failed test request). `type` is always `about:blank`, so
//! `title` is the HTTP reason phrase and `error` is what a client matches on.

use axum::http::StatusCode;
use serde::Serialize;

use super::{AdminError, TestReport};

/// The media type of every error answer.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error answer (RFC 9457 problem details plus the service's members).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the problem is the HTTP status, refined by `error`.
    #[serde(rename = "type")]
    #[schema(rename = "type", example = "about:blank")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status code (over HTTP, the answer's own; from the command line, the one the
    /// API would have answered).
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong, for people (same text as `message`).
    pub detail: String,
    /// A stable code: `unauthorized`, `malformed_json`, `invalid_field`, `invalid_query`,
    /// `invalid_path`, `invalid_body`, `invalid_header`, `not_found`, `already_exists`,
    /// `method_not_allowed`, `test_failed`, `unprocessable`, `unavailable`; from the command
    /// line also `invalid_config`, `failed`.
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The template field at fault (`invalid_field`: the first of `errors`; `id` for
    /// `already_exists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every wrong field at once (`invalid_field`), in the template's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// The test request's result (`test_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<TestReport>,
}

/// One wrong field of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field's JSON path in the template, e.g. `timeout_ms`, `auth.client_id`,
    /// `headers.X-Source`.
    #[schema(example = "timeout_ms")]
    pub path: String,
    /// What is wrong with it, in plain words.
    #[schema(example = "must be between 1 and 300,000 ms")]
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: message.clone(),
            error: error.into(),
            message,
            field: None,
            errors: None,
            test: None,
        }
    }

    /// One wrong field: `field`, and `errors` with it and the message.
    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        let field = field.into();
        let detail = self
            .message
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&self.message)
            .to_string();
        self.errors = Some(vec![FieldProblem {
            path: field.clone(),
            detail,
        }]);
        self.field = Some(field);
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"error\":{:?}}}", self.error))
    }
}

impl From<&AdminError> for Problem {
    fn from(err: &AdminError) -> Problem {
        let status = match err {
            AdminError::NotFound(_) | AdminError::Missing(_) => StatusCode::NOT_FOUND,
            AdminError::Exists(_) => StatusCode::PRECONDITION_FAILED,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Invalid(_) | AdminError::TestFailed(_) | AdminError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        let mut problem = Problem::new(status, err.code(), err.to_string());
        match err {
            AdminError::Invalid(errors) => {
                problem.field = errors.first().map(|e| e.field.clone());
                problem.errors = Some(
                    errors
                        .iter()
                        .map(|e| FieldProblem {
                            path: e.field.clone(),
                            detail: e.message.clone(),
                        })
                        .collect(),
                );
            }
            AdminError::TestFailed(report) => problem.test = Some(report.clone()),
            AdminError::Exists(_) => problem.field = Some("id".into()),
            _ => {}
        }
        problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_carries_the_rfc_9457_members_and_the_service_ones() {
        let err = AdminError::invalid("batch_size", "must be 1-1000");
        let value = serde_json::to_value(Problem::from(&err)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
                "detail": "batch_size: must be 1-1000", "error": "invalid_field",
                "message": "batch_size: must be 1-1000", "field": "batch_size",
                "errors": [{"path": "batch_size", "detail": "must be 1-1000"}]
            })
        );
        let missing = Problem::from(&AdminError::NotFound("x".into()));
        assert_eq!((missing.status, missing.title.as_str()), (404, "Not Found"));
    }
}
