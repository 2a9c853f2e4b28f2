//! The template document (§3) and its validated, compiled form.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    /// GET carries no body (§3).
    pub fn has_body(self) -> bool {
        self != Method::Get
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub url: String,
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub rate_limit_per_sec: Option<f64>,
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    #[serde(default)]
    pub signing_secret: Option<Secret>,
}

fn default_method() -> Method {
    Method::Post
}
fn default_batch_size() -> u32 {
    100
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_retries() -> u32 {
    2
}

/// A template field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> TemplateError {
    TemplateError {
        field: field.into(),
        message: message.into(),
    }
}

/// Headers the dispatcher sets itself; a template may not replace them.
const RESERVED_HEADERS: &[&str] = &["content-length", "host", "idempotency-key", "transfer-encoding"];

/// Fuel for one placeholder render: plenty for substitutions, too little for a loop bomb.
const RENDER_FUEL: u64 = 20_000;

impl Template {
    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.id.is_empty()
            || self.id.len() > 200
            || self.id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(field_error("id", "must be 1-200 characters without whitespace"));
        }
        if !(1..=1000).contains(&self.batch_size) {
            return Err(field_error("batch_size", "must be between 1 and 1000"));
        }
        if !(1..=300_000).contains(&self.timeout_ms) {
            return Err(field_error("timeout_ms", "must be between 1 and 300000"));
        }
        if self.max_retries > 100 {
            return Err(field_error("max_retries", "must be at most 100"));
        }
        if let Some(c) = self.max_concurrency
            && !(1..=10_000).contains(&c)
        {
            return Err(field_error("max_concurrency", "must be between 1 and 10000"));
        }
        if let Some(r) = self.rate_limit_per_sec
            && !(r.is_finite() && r > 0.0)
        {
            return Err(field_error("rate_limit_per_sec", "must be a positive number"));
        }
        if !self.url.contains("{{") {
            let url = url::Url::parse(&self.url).map_err(|e| field_error("url", e.to_string()))?;
            check_url(&url).map_err(|m| field_error("url", m))?;
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| field_error(&field, "not a valid header name"))?;
            if RESERVED_HEADERS.contains(&parsed.as_str()) {
                return Err(field_error(&field, "is set by the dispatcher"));
            }
            if !value.contains("{{") {
                HeaderValue::from_str(value).map_err(|_| field_error(&field, "not a valid header value"))?;
            }
        }
        if let Auth::Basic { username, .. } = &self.auth
            && (username.is_empty() || username.contains(':'))
        {
            return Err(field_error("auth.username", "must be non-empty and without ':'"));
        }
        Ok(())
    }

    /// Validates and compiles the placeholders once, for the hot path.
    pub fn prepare(self) -> Result<Prepared, TemplateError> {
        self.validate()?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut uses_profile = false;
        let mut compile = |env: &mut Environment<'static>, name: String, source: &str, field: &str| {
            env.add_template_owned(name.clone(), source.to_string())
                .map_err(|e| field_error(field, format!("invalid placeholder: {e}")))?;
            let compiled = env
                .get_template(&name)
                .map_err(|e| field_error(field, e.to_string()))?;
            uses_profile |= compiled.undeclared_variables(false).contains("profile");
            Ok::<_, TemplateError>(())
        };
        compile(&mut env, URL_TEMPLATE.into(), &self.url, "url")?;
        for (name, value) in &self.headers {
            compile(&mut env, header_template(name), value, &format!("headers.{name}"))?;
        }
        let header_names = self
            .headers
            .keys()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).expect("validated above"))
            .collect();
        Ok(Prepared {
            template: Arc::new(self),
            env: Arc::new(env),
            url_or_headers_use_profile: uses_profile,
            header_names,
        })
    }
}

/// Scheme and host rules every destination URL must meet.
pub fn check_url(url: &url::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, not {:?}", url.scheme()));
    }
    if url.host().is_none() {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; use auth".into());
    }
    Ok(())
}

pub(crate) const URL_TEMPLATE: &str = "url";

pub(crate) fn header_template(name: &str) -> String {
    format!("header:{name}")
}

/// A validated template with its placeholders compiled. Cheap to clone.
#[derive(Clone)]
pub struct Prepared {
    pub template: Arc<Template>,
    pub(crate) env: Arc<Environment<'static>>,
    /// When the URL or a header uses `profile.`, every profile is its own request (§3).
    pub(crate) url_or_headers_use_profile: bool,
    pub(crate) header_names: Vec<HeaderName>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn template(json: serde_json::Value) -> Template {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_spec_example_parses_with_defaults() {
        let t = template(serde_json::json!({
            "id": "order-feedback", "url": "https://helpdesk.example.com/api/tickets"
        }));
        assert_eq!(t.method, Method::Post);
        assert_eq!((t.batch_size, t.timeout_ms, t.max_retries), (100, 5000, 2));
        assert_eq!(t.auth, Auth::None);
        t.prepare().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
        let cases = [
            (serde_json::json!({"batch_size": 0}), "batch_size"),
            (serde_json::json!({"batch_size": 1001}), "batch_size"),
            (serde_json::json!({"timeout_ms": 0}), "timeout_ms"),
            (serde_json::json!({"url": "ftp://x.test/"}), "url"),
            (serde_json::json!({"url": "not a url"}), "url"),
            (serde_json::json!({"url": "https://u:p@x.test/"}), "url"),
            (serde_json::json!({"url": "https://x.test/{{ oops"}), "url"),
            (
                serde_json::json!({"headers": {"bad header": "v"}}),
                "headers.bad header",
            ),
            (
                serde_json::json!({"headers": {"X-A": "line\nbreak"}}),
                "headers.X-A",
            ),
            (serde_json::json!({"headers": {"Host": "evil"}}), "headers.Host"),
            (serde_json::json!({"max_concurrency": 0}), "max_concurrency"),
            (serde_json::json!({"id": "has space"}), "id"),
            (
                serde_json::json!({"auth": {"type": "basic", "username": "", "password": "p"}}),
                "auth.username",
            ),
        ];
        for (patch, field) in cases {
            let mut json = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            let err = template(json).prepare().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn profile_placeholders_in_url_or_headers_are_detected() {
        let batch = template(serde_json::json!({"id": "t", "url": "https://x.test/{{ targetId }}"}));
        assert!(!batch.prepare().unwrap().url_or_headers_use_profile);
        let per_url =
            template(serde_json::json!({"id": "t", "url": "https://x.test/{{ profile.Identity }}"}));
        assert!(per_url.prepare().unwrap().url_or_headers_use_profile);
        let per_header = template(serde_json::json!({
            "id": "t", "url": "https://x.test/", "headers": {"X-User": "{{ profile.Email }}"}
        }));
        assert!(per_header.prepare().unwrap().url_or_headers_use_profile);
    }

    #[test]
    fn secrets_do_not_print() {
        let t = template(serde_json::json!({
            "id": "t", "url": "https://x.test/", "signing_secret": "whsec_abc",
            "auth": {"type": "basic", "username": "u", "password": "pa55"}
        }));
        let printed = format!("{t:?}");
        assert!(
            !printed.contains("pa55") && !printed.contains("whsec_abc"),
            "{printed}"
        );
    }
}
