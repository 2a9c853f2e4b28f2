//! The template document (docs/formats.md, "Template") and its validated, compiled form.

mod body;
mod breaker;
mod method;
mod sandbox;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::Environment;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::secret::Secret;

pub(crate) use body::check_rendered;
pub use body::{BodyTemplate, BodyType, MAX_BODY_TEMPLATE_BYTES};
pub use breaker::BreakerSettings;
pub use method::Method;
pub use sandbox::sandbox;
pub use validate::{check_url, in_field_order, request_target, url_value};

/// A webhook template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A body of the template's own; without one, CleverTap's (docs/formats.md, "Request").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyTemplate>,
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
    /// This template's own limit on requests in flight (`max_concurrency` is its host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_concurrency: Option<u32>,
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<Secret>,
    /// When the destination's circuit breaker opens (defaults: 20 consecutive failures,
    /// 60 s apart at most, 30 s cool-down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerSettings>,
    /// When the template was last saved through the service; set by the service, whatever
    /// the request says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub updated_at: Option<DateTime<Utc>>,
    /// The rate this replica sends at after adapting to 429 answers, below
    /// `rate_limit_per_sec`; shown by `GET /v1/templates/{id}` while adapted, ignored on
    /// input, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub effective_rate_per_sec: Option<f64>,
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

impl Template {
    /// Every credential in the template, for encryption at rest.
    pub fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        self.secrets_by_path().into_iter().map(|(_, s)| s).collect()
    }

    /// Every credential with the JSON path of its field (`auth.password`, …).
    fn secrets_by_path(&mut self) -> Vec<(&'static str, &mut Secret)> {
        let mut secrets: Vec<(&'static str, &mut Secret)> = self
            .signing_secret
            .iter_mut()
            .map(|s| ("signing_secret", s))
            .collect();
        match &mut self.auth {
            Auth::None => {}
            Auth::Basic { password, .. } => secrets.push(("auth.password", password)),
            Auth::OAuth2(oauth) => {
                secrets.push(("auth.client_secret", &mut oauth.client_secret));
                secrets.extend(oauth.password.as_mut().map(|p| ("auth.password", p)));
            }
        }
        secrets
    }

    /// A credential sent back as `****` (as it was shown) keeps the value `stored` has in the
    /// same field, so a template read, edited and saved again keeps its secrets; but only
    /// while it would reach the same places ([`Template::secret_reaches`]): a stored secret
    /// never follows a changed destination or token endpoint to another host.
    pub fn keep_masked_secrets(&mut self, stored: Option<&Template>) -> Result<(), TemplateError> {
        let kept: Vec<(&'static str, Secret, Vec<String>)> = match stored {
            Some(stored) => {
                let mut copy = stored.clone();
                copy.secrets_by_path()
                    .into_iter()
                    .map(|(path, secret)| (path, secret.clone(), stored.secret_reaches(path)))
                    .collect()
            }
            None => Vec::new(),
        };
        let reaches: Vec<(&'static str, Vec<String>)> = {
            let mut copy = self.clone();
            let paths: Vec<_> = copy.secrets_by_path().into_iter().map(|(path, _)| path).collect();
            paths
                .into_iter()
                .map(|path| (path, self.secret_reaches(path)))
                .collect()
        };
        let mut moved = Vec::new();
        for (path, secret) in self.secrets_by_path() {
            if secret.expose() != crate::secret::MASK {
                continue;
            }
            let Some((_, value, was)) = kept.iter().find(|(p, ..)| *p == path) else {
                return Err(field_error(
                    path,
                    "is **** (keep the stored secret) but no secret is stored there; enter it",
                ));
            };
            let now = reaches.iter().find(|(p, _)| *p == path).map(|(_, r)| r);
            if now != Some(was) {
                moved.push(path);
                continue;
            }
            *secret = value.clone();
        }
        match moved.first() {
            None => Ok(()),
            Some(first) => Err(field_error(
                *first,
                format!(
                    "the destination or token endpoint moved to another host, so the stored secret \
                     is not sent there: enter {} again (**** keeps a stored secret only for the same hosts)",
                    moved.join(", ")
                ),
            )),
        }
    }

    /// Where the credential at `path` is sent, or what it obtains is sent: the origins
    /// (`scheme://host:port`) of those requests. A Basic password and the signing key go
    /// to the destination; OAuth 2.0 secrets to the token endpoints, and the token they
    /// buy to the destination.
    fn secret_reaches(&self, path: &str) -> Vec<String> {
        let mut urls = vec![self.url.as_str()];
        if let (Auth::OAuth2(oauth), "auth.client_secret" | "auth.password") = (&self.auth, path) {
            urls.push(&oauth.token_url);
            urls.extend(oauth.refresh_token_url.as_deref());
        }
        let mut origins: Vec<String> = urls.into_iter().map(origin).collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// The template as it may be shown: every credential replaced by `****`.
    pub fn masked(&self) -> Template {
        let mut masked = self.clone();
        for secret in masked.secrets_mut() {
            *secret = Secret::new(crate::secret::MASK);
        }
        masked
    }

    /// Validates and compiles the placeholders once, for the hot path.
    pub fn prepare(self) -> Result<Prepared, TemplateError> {
        self.validate()?;
        let mut env = sandbox();
        let mut uses_profile = false;
        let mut reads_key_values = false;
        let mut compile = |env: &mut Environment<'static>, name: String, source: &str, field: &str| {
            env.add_template_owned(name.clone(), source.to_string())
                .map_err(|e| field_error(field, format!("invalid placeholder: {e}")))?;
            let compiled = env
                .get_template(&name)
                .map_err(|e| field_error(field, e.to_string()))?;
            uses_profile |= compiled.undeclared_variables(false).contains("profile");
            // By the text, not the engine's analysis: it does not look inside every tag
            // (`{% filter %}` arguments, for one), and nothing reads a variable without
            // naming it. `debug()` prints the whole context. Any template counts for all:
            // one may include another.
            reads_key_values |= source.contains("key_values") || source.contains("debug");
            Ok::<_, TemplateError>(())
        };
        compile(&mut env, URL_TEMPLATE.into(), &self.url, "url")?;
        for (name, value) in &self.headers {
            compile(&mut env, header_template(name), value, &format!("headers.{name}"))?;
        }
        if let Some(body) = &self.body {
            compile(
                &mut env,
                body.content_type.template_name().into(),
                &body.template,
                "body.template",
            )?;
            // A body reads a whole chunk of profiles, not a value or two.
            env.set_fuel(Some(
                sandbox::RENDER_FUEL + sandbox::BODY_FUEL_PER_PROFILE * u64::from(self.batch_size),
            ));
        }
        let header_names: Vec<_> = self
            .headers
            .keys()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).expect("validated above"))
            .collect();
        let fixed_headers: Vec<_> = self.headers.values().map(|value| fixed_header(value)).collect();
        let url_parts = url_parts(&self.url);
        let engine_needed =
            url_parts.is_none() || fixed_headers.iter().any(Option::is_none) || self.body.is_some();
        let signing_key = self
            .signing_secret
            .as_ref()
            .map(|s| crate::auth::sign::decode_secret(s.expose()).map(Arc::from))
            .transpose()
            .map_err(|m| field_error("signing_secret", m))?;
        let token_key = match &self.auth {
            Auth::OAuth2(oauth) => Some(Arc::from(crate::auth::credential_key(oauth))),
            _ => None,
        };
        Ok(Prepared {
            signing_key,
            token_key,
            template: Arc::new(self),
            env: Arc::new(env),
            uses_profile,
            reads_key_values,
            url_parts: url_parts.map(Arc::from),
            engine_needed,
            header_names: Arc::from(header_names),
            fixed_headers: Arc::from(fixed_headers),
            accepted: Arc::default(),
        })
    }
}

pub(crate) const URL_TEMPLATE: &str = "url";

/// `scheme://host:port` of a URL (placeholders sit in its path and query only), or the
/// text itself when it is not a URL: then only the same text is the same place.
fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.to_string(),
    }
}

/// The value of a header with nothing for the template engine to do (no tag, no comment, no
/// trailing newline for it to strip): it renders to itself, so it is made once here.
fn fixed_header(source: &str) -> Option<HeaderValue> {
    let syntax = ["{{", "{%", "{#"];
    if syntax.iter().any(|s| source.contains(s)) || source.ends_with('\n') {
        return None;
    }
    HeaderValue::from_str(source).ok()
}

/// A piece of a URL filled in by hand ([`url_parts`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UrlPart {
    Text(String),
    TargetId,
    EventId,
}

/// The URL as text and `{{ targetId }}` / `{{ event_id }}` placeholders, when that is all it
/// has: then it is filled in by hand, which renders the same as the template engine for a
/// tenth of the work (most URLs look like this). Anything else (another variable, a
/// filter, a tag, a comment, whitespace control, the trailing newline the engine strips)
/// is left to the engine: `None`.
pub(crate) fn url_parts(source: &str) -> Option<Vec<UrlPart>> {
    if source.contains("{%") || source.contains("{#") || source.ends_with('\n') {
        return None;
    }
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(UrlPart::Text(rest[..open].to_string()));
        }
        let inside = &rest[open + 2..];
        let close = inside.find("}}")?;
        parts.push(match inside[..close].trim() {
            "targetId" => UrlPart::TargetId,
            "event_id" => UrlPart::EventId,
            _ => return None,
        });
        rest = &inside[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(UrlPart::Text(rest.to_string()));
    }
    Some(parts)
}

pub(crate) fn header_template(name: &str) -> String {
    format!("header:{name}")
}

/// A validated template with its placeholders compiled. Cheap to clone.
#[derive(Clone)]
pub struct Prepared {
    pub template: Arc<Template>,
    pub(crate) env: Arc<Environment<'static>>,
    /// When the URL, a header or the body uses `profile.`, every profile is its own request.
    pub(crate) uses_profile: bool,
    /// Whether the URL, a header or the body reads `key_values`: the placeholders' context
    /// holds them only then (or when key_values have placeholders of their own), as
    /// converting them for the engine is a measurable part of a delivery.
    pub(crate) reads_key_values: bool,
    /// The URL, when it can be filled in by hand ([`url_parts`]).
    pub(crate) url_parts: Option<Arc<[UrlPart]>>,
    /// Whether the URL, a header or the body needs the template engine (otherwise an event
    /// whose key_values have no placeholder is rendered without building a context for it).
    pub(crate) engine_needed: bool,
    pub(crate) header_names: Arc<[HeaderName]>,
    /// Per header: its value when it has no placeholder (rendered once, not per request).
    pub(crate) fixed_headers: Arc<[Option<HeaderValue>]>,
    /// The decoded `signing_secret` key.
    pub(crate) signing_key: Option<Arc<[u8]>>,
    /// The OAuth 2.0 token cache key of the credentials (a digest, made once here).
    pub(crate) token_key: Option<Arc<str>>,
    /// What its destination accepted lately: where a first 429 starts lowering its rate.
    pub(crate) accepted: Arc<crate::deliver::Accepted>,
}

impl Prepared {
    /// Every `root.name` placeholder the URL, headers and body use, as `(root, name)`; a
    /// field the body reads of a loop over `profiles` counts as `profile.name`.
    pub fn placeholders(&self) -> Vec<(String, String)> {
        let mut names = vec![URL_TEMPLATE.to_string()];
        names.extend(self.template.headers.keys().map(|h| header_template(h)));
        names.extend(
            self.template
                .body
                .as_ref()
                .map(|b| b.content_type.template_name().to_string()),
        );
        let mut found: Vec<(String, String)> = self
            .template
            .body
            .iter()
            .flat_map(|body| body::fields_of_looped_profiles(&body.template))
            .map(|field| ("profile".to_string(), field))
            .collect();
        for name in names {
            let Ok(compiled) = self.env.get_template(&name) else {
                continue;
            };
            for var in compiled.undeclared_variables(true) {
                if let Some((root, field)) = var.split_once('.') {
                    found.push((root.to_string(), field.to_string()));
                }
            }
        }
        found
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}
