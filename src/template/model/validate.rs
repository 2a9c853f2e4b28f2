//! Template validation (§3): every field checked once, when a template is saved or loaded,
//! so rendering and delivery never meet a malformed one. The error names the first wrong field.

use reqwest::header::{HeaderName, HeaderValue};

use super::{Template, TemplateError, field_error};
use crate::auth::{Auth, GrantType, OAuth2};

/// Bounds of `rate_limit_per_sec`: one request every 1,000 s at the slowest.
pub const MIN_RATE_PER_SEC: f64 = 0.001;
pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

/// Headers the dispatcher sets itself; a template may not replace them.
const RESERVED_HEADERS: &[&str] = &["content-length", "host", "idempotency-key", "transfer-encoding"];

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
        check_url_template(&self.url).map_err(|m| field_error("url", m))?;
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
            crate::auth::sign::decode_secret(secret.expose())
                .map_err(|m| field_error("signing_secret", m))?;
        }
        Ok(())
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

/// The URL as an HTTP request's target: without its fragment, which is never sent.
pub fn request_target(url: &url::Url) -> Result<http::Uri, http::uri::InvalidUri> {
    http::Uri::try_from(&url[..url::Position::AfterQuery])
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
    // The HTTP client is stricter than the URL parser about a few characters (`{`, `"` in a
    // host): such a URL could never be sent, so it is refused here, not retried.
    if request_target(url).is_err() {
        return Err("is not a valid HTTP request target".into());
    }
    Ok(())
}

/// Where a template's URL may use placeholders: in the path and the query only. The
/// scheme, host and port are written out, so no event value can choose where a request
/// (with the template's credentials) goes; the text before the first placeholder must
/// reach the path (`/`) or the query (`?`).
fn check_url_template(source: &str) -> Result<(), String> {
    let Some(start) = ["{{", "{%", "{#"].iter().filter_map(|tag| source.find(tag)).min() else {
        let url = url::Url::parse(source).map_err(|e| e.to_string())?;
        return check_url(&url);
    };
    const FIXED_ORIGIN: &str = "placeholders may be used in the path and query only: write the scheme, host and port out, up to the first /";
    let fixed = &source[..start];
    let authority = fixed.find("://").map(|i| i + 3).ok_or(FIXED_ORIGIN)?;
    let origin_end = fixed[authority..]
        .find(['/', '?'])
        .map(|i| authority + i)
        .ok_or(FIXED_ORIGIN)?;
    let origin = url::Url::parse(&fixed[..origin_end]).map_err(|e| e.to_string())?;
    check_url(&origin)
}

/// Bytes a placeholder value keeps as they are in a URL: RFC 3986's unreserved
/// characters. Everything else is percent-encoded, so a value is one path segment or one
/// query value whatever it holds (`/`, `?`, `#`, `&`, `=`, `%`, `@`).
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A placeholder value as it is inserted into a URL: percent-encoded as one segment or
/// query value. `.` and `..` are refused: URL parsers read them (even encoded, `%2E`) as
/// a step in the path, which would send the request to another resource.
pub fn url_value(value: &str) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    if value == "." || value == ".." {
        return Err("a placeholder value of . or .. would change the URL's path");
    }
    Ok(percent_encoding::utf8_percent_encode(value, URL_VALUE).into())
}
