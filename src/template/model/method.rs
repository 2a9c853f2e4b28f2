//! A template's HTTP method, and the forms the metrics and the HTTP client take it in.

use serde::{Deserialize, Serialize};

/// The HTTP method of a template's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Post,
    Get,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// GET carries no body.
    pub fn has_body(self) -> bool {
        self != Method::Get
    }
}

impl From<Method> for crate::metrics::MethodLabel {
    fn from(method: Method) -> crate::metrics::MethodLabel {
        use crate::metrics::MethodLabel;
        match method {
            Method::Post => MethodLabel::Post,
            Method::Get => MethodLabel::Get,
            Method::Put => MethodLabel::Put,
            Method::Delete => MethodLabel::Delete,
        }
    }
}

impl From<Method> for http::Method {
    fn from(method: Method) -> http::Method {
        match method {
            Method::Post => http::Method::POST,
            Method::Get => http::Method::GET,
            Method::Put => http::Method::PUT,
            Method::Delete => http::Method::DELETE,
        }
    }
}
