//! The template document (§3) and its validated, compiled form.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, GrantType, OAuth2};
use crate::secret::Secret;

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

    /// GET carries no body (§3).
    pub fn has_body(self) -> bool {
        self != Method::Get
    }
}

/// A webhook template (§3).
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
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<Secret>,
    /// When the destination's circuit breaker opens (defaults: 20 consecutive failures,
    /// 60 s apart at most, 30 s cool-down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<crate::deliver::circuit::BreakerSettings>,
    /// When the template was last saved through the service; set by the service, whatever
    /// the request says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub updated_at: Option<DateTime<Utc>>,
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
/// A rendering environment with the sandbox's rules and no templates: undefined values are
/// errors, every render has a fuel budget, nothing is escaped.
pub fn sandbox() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Bounds of `rate_limit_per_sec`: one request every 1,000 s at the slowest.
pub const MIN_RATE_PER_SEC: f64 = 0.001;
pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

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
        if let Some(Err((field, message))) = self.circuit_breaker.map(|c| c.validate()) {
            return Err(field_error(format!("circuit_breaker.{field}"), message));
        }
        if let Some(r) = self.rate_limit_per_sec
            && !(r.is_finite() && (MIN_RATE_PER_SEC..=MAX_RATE_PER_SEC).contains(&r))
        {
            return Err(field_error(
                "rate_limit_per_sec",
                format!("must be between {MIN_RATE_PER_SEC} and {MAX_RATE_PER_SEC} requests per second"),
            ));
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
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, .. } => {
                if username.is_empty() || username.contains(':') {
                    return Err(field_error("auth.username", "must be non-empty and without ':'"));
                }
            }
            Auth::OAuth2(oauth) => oauth.validate()?,
        }
        if let Some(secret) = &self.signing_secret {
            crate::deliver::sign::decode_secret(secret.expose())
                .map_err(|m| field_error("signing_secret", m))?;
        }
        Ok(())
    }

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
    /// same field, so a template read, edited and saved again keeps its secrets.
    pub fn keep_masked_secrets(&mut self, stored: Option<&Template>) -> Result<(), TemplateError> {
        let mut stored = stored.cloned();
        let kept: Vec<(&'static str, Secret)> = stored
            .as_mut()
            .map(|t| {
                t.secrets_by_path()
                    .into_iter()
                    .map(|(p, s)| (p, s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (path, secret) in self.secrets_by_path() {
            if secret.expose() != crate::secret::MASK {
                continue;
            }
            match kept.iter().find(|(p, _)| *p == path) {
                Some((_, value)) => *secret = value.clone(),
                None => {
                    return Err(field_error(
                        path,
                        "is **** (keep the stored secret) but no secret is stored there; enter it",
                    ));
                }
            }
        }
        Ok(())
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
        let signing_key = self
            .signing_secret
            .as_ref()
            .map(|s| crate::deliver::sign::decode_secret(s.expose()).map(Arc::from))
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
            url_or_headers_use_profile: uses_profile,
            header_names,
        })
    }
}

impl OAuth2 {
    fn validate(&self) -> Result<(), TemplateError> {
        for (field, url) in [
            ("auth.token_url", Some(&self.token_url)),
            ("auth.refresh_token_url", self.refresh_token_url.as_ref()),
        ] {
            if let Some(url) = url {
                let parsed = url::Url::parse(url).map_err(|e| field_error(field, e.to_string()))?;
                check_url(&parsed).map_err(|m| field_error(field, m))?;
            }
        }
        if self.client_id.is_empty() {
            return Err(field_error("auth.client_id", "must not be empty"));
        }
        let password_fields =
            self.username.is_some() || self.password.is_some() || self.refresh_token_url.is_some();
        match self.grant_type {
            GrantType::Password => {
                if self.username.as_deref().is_none_or(str::is_empty) {
                    return Err(field_error("auth.username", "required by the password grant"));
                }
                if self.password.is_none() {
                    return Err(field_error("auth.password", "required by the password grant"));
                }
            }
            GrantType::ClientCredentials if password_fields => {
                let field = if self.username.is_some() {
                    "auth.username"
                } else if self.password.is_some() {
                    "auth.password"
                } else {
                    "auth.refresh_token_url"
                };
                return Err(field_error(field, "applies to the password grant only"));
            }
            GrantType::ClientCredentials => {}
        }
        if let Some(scope) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(field_error(
                "auth.scopes",
                format!("{scope:?} is not a valid scope (RFC 6749 §3.3)"),
            ));
        }
        let header = HeaderName::from_bytes(self.token_header.as_bytes())
            .map_err(|_| field_error("auth.token_header", "not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(field_error("auth.token_header", "is set by the dispatcher"));
        }
        HeaderValue::from_str(&self.token_prefix)
            .map_err(|_| field_error("auth.token_prefix", "not a valid header value"))?;
        if self.expiry_seconds.is_some_and(|s| !(1..=86_400).contains(&s)) {
            return Err(field_error(
                "auth.expiry_seconds",
                "must be between 1 and 86400 (a day)",
            ));
        }
        for (field, path) in [
            ("auth.access_token_path", &self.access_token_path),
            ("auth.refresh_token_path", &self.refresh_token_path),
            ("auth.expires_in_path", &self.expires_in_path),
        ] {
            if let Some(path) = path
                && (path.is_empty() || path.len() > 200 || path.split('.').any(str::is_empty))
            {
                return Err(field_error(
                    field,
                    "must be a dotted path of 1-200 characters, such as data.access_token",
                ));
            }
        }
        Ok(())
    }
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
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
    /// The decoded `signing_secret` key.
    pub(crate) signing_key: Option<Arc<[u8]>>,
    /// The OAuth 2.0 token cache key of the credentials (a digest, made once here).
    pub(crate) token_key: Option<Arc<str>>,
}

impl Prepared {
    /// Every `root.name` placeholder the URL and headers use, as `(root, name)`.
    pub fn placeholders(&self) -> Vec<(String, String)> {
        let mut names = vec![URL_TEMPLATE.to_string()];
        names.extend(self.template.headers.keys().map(|h| header_template(h)));
        let mut found = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClientAuth;

    pub fn template(json: serde_json::Value) -> Template {
        serde_json::from_value(json).unwrap()
    }

    /// Each `(patch, field)`: `base` with `patch` applied is refused, naming `field`.
    fn assert_fields_named(base: &serde_json::Value, cases: &[(serde_json::Value, &str)]) {
        for (patch, field) in cases {
            let mut json = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            let err = template(json).prepare().unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
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
        assert_fields_named(&base, &cases);
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
    fn oauth2_parses_with_the_spec_defaults() {
        let t = template(serde_json::json!({
            "id": "t", "url": "https://x.test/",
            "auth": {"type": "oauth2", "token_url": "https://auth.x.test/token",
                     "client_id": "c", "client_secret": "s", "scopes": ["a", "b"]}
        }));
        let Auth::OAuth2(oauth) = &t.auth else {
            panic!("{:?}", t.auth)
        };
        assert_eq!(oauth.grant_type, GrantType::ClientCredentials);
        assert_eq!(oauth.client_auth, ClientAuth::BasicHeader);
        assert_eq!(
            (oauth.token_header.as_str(), oauth.token_prefix.as_str()),
            ("Authorization", "Bearer ")
        );
        t.prepare().unwrap();
    }

    #[test]
    fn invalid_auth_and_signing_fields_are_named() {
        let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
        let oauth = |patch: serde_json::Value| {
            let mut auth = serde_json::json!({"type": "oauth2", "token_url": "https://a.test/token",
                                              "client_id": "c", "client_secret": "s"});
            for (k, v) in patch.as_object().unwrap() {
                auth[k] = v.clone();
            }
            serde_json::json!({"auth": auth})
        };
        let cases = [
            (
                oauth(serde_json::json!({"token_url": "not a url"})),
                "auth.token_url",
            ),
            (oauth(serde_json::json!({"client_id": ""})), "auth.client_id"),
            (
                oauth(serde_json::json!({"grant_type": "password"})),
                "auth.username",
            ),
            (
                oauth(serde_json::json!({"grant_type": "password", "username": "u"})),
                "auth.password",
            ),
            (oauth(serde_json::json!({"username": "u"})), "auth.username"),
            (
                oauth(serde_json::json!({"refresh_token_url": "https://a.test/r"})),
                "auth.refresh_token_url",
            ),
            (oauth(serde_json::json!({"scopes": ["two words"]})), "auth.scopes"),
            (
                oauth(serde_json::json!({"token_header": "Bad Header"})),
                "auth.token_header",
            ),
            (
                oauth(serde_json::json!({"expiry_seconds": 0})),
                "auth.expiry_seconds",
            ),
            (
                oauth(serde_json::json!({"expiry_seconds": 100_000_000_000u64})),
                "auth.expiry_seconds",
            ),
            (
                serde_json::json!({"rate_limit_per_sec": 1e-30}),
                "rate_limit_per_sec",
            ),
            (
                serde_json::json!({"rate_limit_per_sec": 1e300}),
                "rate_limit_per_sec",
            ),
            (
                serde_json::json!({"signing_secret": "no-prefix"}),
                "signing_secret",
            ),
            (
                serde_json::json!({"signing_secret": "whsec_%%%"}),
                "signing_secret",
            ),
        ];
        assert_fields_named(&base, &cases);
    }

    #[test]
    fn masking_hides_every_credential() {
        let t = template(serde_json::json!({
            "id": "t", "url": "https://x.test/", "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "auth": {"type": "oauth2", "grant_type": "password", "token_url": "https://a.test/token",
                     "client_id": "c", "client_secret": "cs3cret", "username": "u", "password": "pa55"}
        }));
        let shown = serde_json::to_string(&t.masked()).unwrap();
        for secret in ["cs3cret", "pa55", "MfKQ9r8"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(shown.matches("****").count(), 3, "{shown}");
    }

    #[test]
    fn masked_secrets_keep_the_stored_ones_by_field() {
        let stored = template(serde_json::json!({
            "id": "t", "url": "https://x.test/", "signing_secret": "whsec_abc",
            "auth": {"type": "basic", "username": "u", "password": "pa55"}
        }));
        let mut edited = template(serde_json::json!({
            "id": "t", "url": "https://x.test/", "signing_secret": "****",
            "auth": {"type": "basic", "username": "v", "password": "****"}
        }));
        edited.keep_masked_secrets(Some(&stored)).unwrap();
        assert_eq!(
            edited.signing_secret.as_ref().map(Secret::expose),
            Some("whsec_abc")
        );
        assert_eq!(
            edited.auth,
            Auth::Basic {
                username: "v".into(),
                password: Secret::new("pa55")
            }
        );

        // A new value replaces; **** where nothing is stored is refused, naming the field.
        let mut oauth = template(serde_json::json!({
            "id": "t", "url": "https://x.test/",
            "auth": {"type": "oauth2", "grant_type": "password", "token_url": "https://a.test/t",
                     "client_id": "c", "client_secret": "****", "username": "o", "password": "new"}
        }));
        let err = oauth.keep_masked_secrets(Some(&stored)).unwrap_err();
        assert_eq!(err.field, "auth.client_secret");
        let err = edited.clone().keep_masked_secrets(None);
        assert!(err.is_ok(), "nothing masked any more");
        let mut fresh = template(serde_json::json!({"id": "t", "url": "https://x.test/",
                                                    "signing_secret": "****"}));
        assert_eq!(
            fresh.keep_masked_secrets(None).unwrap_err().field,
            "signing_secret"
        );
    }

    #[test]
    fn token_answer_paths_are_checked() {
        let base = serde_json::json!({"id": "t", "url": "https://x.test/"});
        let with = |field: &str, path: &str| {
            let mut auth = serde_json::json!({"type": "oauth2", "token_url": "https://a.test/token",
                                              "client_id": "c"});
            auth[field] = serde_json::json!(path);
            serde_json::json!({"auth": auth})
        };
        let cases = [
            (with("access_token_path", ""), "auth.access_token_path"),
            (
                with("refresh_token_path", "data..token"),
                "auth.refresh_token_path",
            ),
            (with("expires_in_path", "expiresIn."), "auth.expires_in_path"),
        ];
        assert_fields_named(&base, &cases);
        let mut ok = base.clone();
        ok["auth"] = with("access_token_path", "data.access_token")["auth"].clone();
        template(ok).prepare().unwrap();
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
