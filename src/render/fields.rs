//! Rendering a template's fields in an event's context: the URL and headers (checked as a
//! URL and as header values), and the key_values (event values render in an environment that
//! sees only the event, never the template's headers).

use bytes::Bytes;
use minijinja::Value as Ctx;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use url::Url;

use super::RenderError;
use crate::event::{Object, TriggerEvent, has_placeholder};
use crate::template::model::UrlPart;
use crate::template::{Prepared, model};

/// `text` as visible ASCII: `%`, spaces, control and non-ASCII characters percent-encoded
/// (UTF-8 bytes), so any event_id makes a stable Idempotency-Key (and `webhook-id`); ids made
/// of visible ASCII, UUIDs among them, are unchanged.
pub fn header_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && b != b'%';
    if text.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if plain(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The URL and headers. `ctx` is read only when `prepared.engine_needed`.
pub(super) fn render_target(
    prepared: &Prepared,
    event: &TriggerEvent,
    ctx: &Ctx,
) -> Result<(Url, HeaderMap), RenderError> {
    let env = &prepared.env;
    let run = |name: &str, field: &dyn Fn() -> String| -> Result<String, RenderError> {
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| RenderError::Placeholder {
                field: field(),
                source,
            })
    };
    let raw_url = match &prepared.url_parts {
        Some(parts) => fill_url(parts, event)?,
        None => run(model::URL_TEMPLATE, &|| "url".to_string())?,
    };
    let url = parse_url(&raw_url)?;
    let mut headers = HeaderMap::with_capacity(
        prepared.header_names.len() + super::HEADERS_ADDED_PER_DELIVERY + super::HEADERS_ADDED_PER_ATTEMPT,
    );
    let names = prepared.template.headers.keys().zip(prepared.header_names.iter());
    for ((name, header), fixed) in names.zip(prepared.fixed_headers.iter()) {
        let value = match fixed {
            Some(value) => value.clone(),
            None => {
                let value = run(&model::header_template(name), &|| format!("headers.{name}"))?;
                HeaderValue::from_maybe_shared(Bytes::from(value))
                    .map_err(|_| RenderError::Header { name: name.clone() })?
            }
        };
        headers.insert(header.clone(), value);
    }
    Ok((url, headers))
}

/// A URL of text, `{{ targetId }}` and `{{ event_id }}` filled in for `event`, as the
/// template engine would (the event id percent-encoded, [`model::url_value`]).
pub(super) fn fill_url(parts: &[UrlPart], event: &TriggerEvent) -> Result<String, RenderError> {
    let mut url = String::with_capacity(128);
    for part in parts {
        match part {
            UrlPart::Text(text) => url.push_str(text),
            UrlPart::TargetId => url.push_str(itoa::Buffer::new().format(event.target_id)),
            UrlPart::EventId => {
                let id = model::url_value(&event.event_id).map_err(|message| RenderError::Url {
                    message: message.to_string(),
                })?;
                url.push_str(&id);
            }
        }
    }
    Ok(url)
}

thread_local! {
    /// The last URL this thread parsed and checked: most templates render the same URL for
    /// every event, and parsing it (with IDNA) is a measurable part of a delivery.
    static LAST_URL: std::cell::RefCell<Option<(String, Url)>> = const { std::cell::RefCell::new(None) };
}

/// `raw` parsed and checked (http(s), no credentials), from [`LAST_URL`] when it is the same.
pub(super) fn parse_url(raw: &str) -> Result<Url, RenderError> {
    if let Some(url) =
        LAST_URL.with_borrow(|last| last.as_ref().filter(|(s, _)| s == raw).map(|(_, u)| u.clone()))
    {
        return Ok(url);
    }
    let url = Url::parse(raw).map_err(|e| RenderError::Url {
        message: e.to_string(),
    })?;
    model::check_url(&url).map_err(|message| RenderError::Url { message })?;
    LAST_URL.set(Some((raw.to_string(), url.clone())));
    Ok(url)
}

/// Whether any string in `key_values` (nested ones too) has a placeholder.
pub(super) fn key_values_templated(key_values: &Object) -> bool {
    fn any_placeholder(value: &Value) -> bool {
        match value {
            Value::String(s) => has_placeholder(s),
            Value::Array(items) => items.iter().any(any_placeholder),
            Value::Object(map) => map.values().any(any_placeholder),
            _ => false,
        }
    }
    key_values.values().any(any_placeholder)
}

/// Where the event's own strings (key_values) render: the same sandbox rules as the
/// template's (strict, fuel-limited, no escaping) but none of its templates, so an event
/// cannot `{% include %}` a template header and copy its credential into the body.
pub(super) fn event_env() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(model::sandbox)
}

pub(super) fn key_values_use_profile(key_values: &Object) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::String(s) if has_placeholder(s) => event_env()
                .template_from_str(s)
                .map(|t| t.undeclared_variables(false).contains("profile"))
                .unwrap_or(false),
            Value::Array(items) => items.iter().any(walk),
            Value::Object(map) => map.values().any(walk),
            _ => false,
        }
    }
    key_values.values().any(walk)
}

/// Renders placeholders inside the string values of key_values (recursively).
pub(super) fn render_key_values(key_values: &Object, ctx: &Ctx) -> Result<Object, RenderError> {
    fn walk(value: &Value, ctx: &Ctx, path: &str) -> Result<Value, RenderError> {
        Ok(match value {
            Value::String(s) if has_placeholder(s) => Value::String(event_env().render_str(s, ctx).map_err(
                |source| RenderError::Placeholder {
                    field: path.to_string(),
                    source,
                },
            )?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| walk(v, ctx, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), walk(v, ctx, &format!("{path}.{k}"))?)))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }
    key_values
        .iter()
        .map(|(k, v)| Ok((k.clone(), walk(v, ctx, &format!("key_values.{k}"))?)))
        .collect::<Result<_, _>>()
}
