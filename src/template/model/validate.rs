//! Template validation: every field checked once, when a template is saved or loaded,
//! so rendering and delivery never meet a malformed one. Every wrong field is named, in
//! plain words (what a person fixing it reads beside the field).

use reqwest::header::{HeaderName, HeaderValue};

use super::{MAX_BODY_TEMPLATE_BYTES, Template, TemplateError, field_error};
use crate::auth::{Auth, GrantType, OAuth2};

/// Bounds of `rate_limit_per_sec`: one request every 1,000 s at the slowest.
pub const MIN_RATE_PER_SEC: f64 = 0.001;
pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

/// Headers the dispatcher sets itself; a template may not replace them.
const RESERVED_HEADERS: &[&str] = &["content-length", "host", "idempotency-key", "transfer-encoding"];

impl Template {
    /// Checks every field; the error names the first wrong one ([`Template::problems`] has
    /// them all).
    pub fn validate(&self) -> Result<(), TemplateError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every wrong field, in the order of the template's fields.
    pub fn problems(&self) -> Vec<TemplateError> {
        let mut found = Problems::default();
        if self.id.is_empty()
            || self.id.len() > 200
            || self.id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            found.add("id", "must be 1-200 characters without spaces");
        }
        found.check(check_url_template(&self.url), "url");
        self.check_headers(&mut found);
        self.check_body(&mut found);
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, .. } => {
                if username.is_empty() || username.contains(':') {
                    found.add("auth.username", "must not be empty, and must not contain ':'");
                }
            }
            Auth::OAuth2(oauth) => oauth.check(&mut found),
        }
        self.check_limits(&mut found);
        if let Some(secret) = &self.signing_secret {
            found.check(
                crate::auth::sign::decode_secret(secret.expose()),
                "signing_secret",
            );
        }
        if let Some(Err((field, message))) = self.circuit_breaker.map(|c| c.validate()) {
            found.add(&format!("circuit_breaker.{field}"), message);
        }
        found.0
    }

    /// Header names that are valid and not the dispatcher's own, values without line breaks.
    fn check_headers(&self, found: &mut Problems) {
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => found.add(&field, "is not a valid header name (letters, digits and - only)"),
                Ok(parsed) if RESERVED_HEADERS.contains(&parsed.as_str()) => {
                    found.add(&field, "is set by the dispatcher")
                }
                Ok(_) if !value.contains("{{") && HeaderValue::from_str(value).is_err() => {
                    found.add(&field, "is not a valid header value (no line breaks)")
                }
                Ok(_) => {}
            }
        }
    }

    /// A body only where the method sends one, within its size, the Content-Type its own.
    fn check_body(&self, found: &mut Problems) {
        let Some(body) = &self.body else {
            return;
        };
        if !self.method.has_body() {
            found.add(
                "body",
                format!(
                    "{} sends no body: remove it or pick another method",
                    self.method.as_str()
                ),
            );
        }
        if body.template.trim().is_empty() {
            found.add(
                "body.template",
                "must not be empty (remove the body to send CleverTap's)",
            );
        }
        if body.template.len() > MAX_BODY_TEMPLATE_BYTES {
            found.add(
                "body.template",
                format!("must be at most {} KiB", MAX_BODY_TEMPLATE_BYTES / 1024),
            );
        }
        for name in self.headers.keys() {
            if name.eq_ignore_ascii_case("content-type") {
                found.add(&format!("headers.{name}"), "is set by body.content_type");
            }
        }
        if let Some(tag) = super::body::refused_tag(&body.template) {
            found.add(
                "body.template",
                format!("{{% {tag} %}} is not allowed in a body: it could turn off how values are written"),
            );
        }
    }

    /// The numbers' bounds.
    fn check_limits(&self, found: &mut Problems) {
        if !(1..=1000).contains(&self.batch_size) {
            found.add("batch_size", "must be between 1 and 1,000 profiles");
        }
        if !(1..=300_000).contains(&self.timeout_ms) {
            found.add("timeout_ms", "must be between 1 and 300,000 ms");
        }
        if self.max_retries > 100 {
            found.add("max_retries", "must be at most 100");
        }
        if let Some(c) = self.max_concurrency
            && !(1..=10_000).contains(&c)
        {
            found.add("max_concurrency", "must be between 1 and 10,000 requests");
        }
        if let Some(c) = self.template_concurrency
            && !(1..=10_000).contains(&c)
        {
            found.add("template_concurrency", "must be between 1 and 10,000 requests");
        }
        if let Some(r) = self.rate_limit_per_sec
            && !(r.is_finite() && (MIN_RATE_PER_SEC..=MAX_RATE_PER_SEC).contains(&r))
        {
            found.add(
                "rate_limit_per_sec",
                format!("must be between {MIN_RATE_PER_SEC} and {MAX_RATE_PER_SEC} requests per second"),
            );
        }
    }
}

/// What a field of a template's JSON must be, for [`Template::shape_problems`].
enum Shape {
    Text,
    OptionalText,
    /// A whole number, 0 or more (`null` when optional).
    Count {
        optional: bool,
    },
    Number,
    Method,
    TextMap,
    /// Objects read by their own rules (auth, circuit_breaker) and the service's own
    /// `updated_at`: left to the reader.
    Other,
}

fn shape(field: &str) -> Option<Shape> {
    Some(match field {
        "id" | "name" | "url" => Shape::Text,
        "signing_secret" => Shape::OptionalText,
        "batch_size" | "timeout_ms" | "max_retries" => Shape::Count { optional: false },
        "max_concurrency" | "template_concurrency" | "max_age_seconds" => Shape::Count { optional: true },
        "rate_limit_per_sec" => Shape::Number,
        "method" => Shape::Method,
        "headers" => Shape::TextMap,
        "auth" | "body" | "circuit_breaker" | "updated_at" | "effective_rate_per_sec" => Shape::Other,
        _ => return None,
    })
}

impl Template {
    /// The fields of a template's JSON that have the wrong type or are unknown, each in
    /// plain words. Reading a template stops at its first such field and says so in the
    /// reader's words (`invalid value: integer -1, expected u64`); this names them all.
    pub fn shape_problems(value: &serde_json::Value) -> Vec<TemplateError> {
        use serde_json::Value;
        let Some(object) = value.as_object() else {
            return vec![field_error("", "must be a JSON object (a template)")];
        };
        let mut found = Problems::default();
        for (field, value) in object {
            let Some(expected) = shape(field) else {
                found.add(field, "is not a template field");
                continue;
            };
            let problem = match (expected, value) {
                (Shape::Text, Value::String(_)) | (Shape::OptionalText, Value::String(_) | Value::Null) => {
                    None
                }
                (Shape::Text | Shape::OptionalText, _) => Some("must be text"),
                (Shape::Count { .. }, Value::Number(n)) if n.is_u64() => None,
                (Shape::Count { optional: true }, Value::Null) => None,
                (Shape::Count { .. }, _) => Some("must be a whole number, 0 or more"),
                (Shape::Number, Value::Number(_) | Value::Null) => None,
                (Shape::Number, _) => Some("must be a number"),
                (Shape::Method, Value::String(m))
                    if ["POST", "GET", "PUT", "DELETE"].contains(&m.as_str()) =>
                {
                    None
                }
                (Shape::Method, _) => Some("must be POST, GET, PUT or DELETE"),
                (Shape::TextMap, Value::Object(map)) => match map.iter().find(|(_, v)| !v.is_string()) {
                    Some((name, _)) => {
                        found.add(&format!("headers.{name}"), "must be text");
                        None
                    }
                    None => None,
                },
                (Shape::TextMap, _) => Some("must be an object of header names and values"),
                (Shape::Other, _) => None,
            };
            if let Some(problem) = problem {
                found.add(field, problem);
            }
        }
        found.0
    }
}

/// The top-level fields in the order a template (and the console's form) has them.
const FIELD_ORDER: &[&str] = &[
    "id",
    "name",
    "url",
    "method",
    "headers",
    "auth",
    "batch_size",
    "timeout_ms",
    "max_retries",
    "max_concurrency",
    "rate_limit_per_sec",
    "template_concurrency",
    "max_age_seconds",
    "signing_secret",
    "circuit_breaker",
];

/// Puts `problems` in the template's field order (unknown fields last), keeping the order
/// of those of one field.
pub fn in_field_order(problems: &mut [TemplateError]) {
    let rank = |field: &str| {
        let top = field.split('.').next().unwrap_or_default();
        FIELD_ORDER
            .iter()
            .position(|f| *f == top)
            .unwrap_or(FIELD_ORDER.len())
    };
    problems.sort_by_key(|p| rank(&p.field));
}

/// Wrong fields, as they are found.
#[derive(Default)]
struct Problems(Vec<TemplateError>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(field_error(field, message));
    }

    fn check<T, E: Into<String>>(&mut self, result: Result<T, E>, field: &str) {
        if let Err(message) = result {
            self.add(field, message);
        }
    }
}

impl OAuth2 {
    fn check(&self, found: &mut Problems) {
        for (field, url) in [
            ("auth.token_url", Some(&self.token_url)),
            ("auth.refresh_token_url", self.refresh_token_url.as_ref()),
        ] {
            if let Some(url) = url {
                found.check(parse_url(url).and_then(|parsed| check_url(&parsed)), field);
            }
        }
        if self.client_id.is_empty() {
            found.add("auth.client_id", "must not be empty");
        }
        self.check_grant(found);
        if let Some(scope) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            found.add(
                "auth.scopes",
                format!("{scope:?} is not a valid scope (RFC 6749 §3.3)"),
            );
        }
        match HeaderName::from_bytes(self.token_header.as_bytes()) {
            Err(_) => found.add("auth.token_header", "is not a valid header name"),
            Ok(header) if RESERVED_HEADERS.contains(&header.as_str()) => {
                found.add("auth.token_header", "is set by the dispatcher")
            }
            Ok(_) => {}
        }
        if HeaderValue::from_str(&self.token_prefix).is_err() {
            found.add("auth.token_prefix", "is not a valid header value");
        }
        if self.expiry_seconds.is_some_and(|s| !(1..=86_400).contains(&s)) {
            found.add(
                "auth.expiry_seconds",
                "must be between 1 and 86,400 seconds (a day)",
            );
        }
        for (field, path) in [
            ("auth.access_token_path", &self.access_token_path),
            ("auth.refresh_token_path", &self.refresh_token_path),
            ("auth.expires_in_path", &self.expires_in_path),
        ] {
            if let Some(path) = path
                && (path.is_empty() || path.len() > 200 || path.split('.').any(str::is_empty))
            {
                found.add(
                    field,
                    "must be a dotted path of 1-200 characters, such as data.access_token",
                );
            }
        }
    }

    /// The password grant's fields are there, and only with it.
    fn check_grant(&self, found: &mut Problems) {
        match self.grant_type {
            GrantType::Password => {
                if self.username.as_deref().is_none_or(str::is_empty) {
                    found.add("auth.username", "is required by the password grant");
                }
                if self.password.is_none() {
                    found.add("auth.password", "is required by the password grant");
                }
            }
            GrantType::ClientCredentials => {
                for (field, set) in [
                    ("auth.username", self.username.is_some()),
                    ("auth.password", self.password.is_some()),
                    ("auth.refresh_token_url", self.refresh_token_url.is_some()),
                ] {
                    if set {
                        found.add(field, "applies to the password grant only");
                    }
                }
            }
        }
    }
}

/// A URL as the URL parser reads it, its errors in plain words.
fn parse_url(text: &str) -> Result<url::Url, String> {
    url::Url::parse(text).map_err(|err| match err {
        url::ParseError::RelativeUrlWithoutBase => {
            "must be a full URL starting with https:// or http://".into()
        }
        url::ParseError::EmptyHost => "has no host: write https://host/path".into(),
        url::ParseError::InvalidPort => "has a port that is not a number from 1 to 65535".into(),
        other => format!("is not a valid URL ({other})"),
    })
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
        return Err(format!(
            "must start with https:// or http://, not {}:",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("has no host: write https://host/path".into());
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
        return check_url(&parse_url(source)?);
    };
    const FIXED_ORIGIN: &str = "placeholders may be used in the path and query only: write the scheme, host and port out, up to the first /";
    let fixed = &source[..start];
    let authority = fixed.find("://").map(|i| i + 3).ok_or(FIXED_ORIGIN)?;
    let origin_end = fixed[authority..]
        .find(['/', '?'])
        .map(|i| authority + i)
        .ok_or(FIXED_ORIGIN)?;
    check_url(&parse_url(&fixed[..origin_end])?)
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
