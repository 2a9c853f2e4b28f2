//! Template + event → the requests to send (§3, §4). Profiles are split into chunks of
//! `batch_size`, each chunk one [`Delivery`]; a template whose URL, headers or key_values use
//! `profile.` sends one request per profile. Placeholders render in strict mode: an undefined
//! one is a [`RenderError`], never an empty string.

use bytes::Bytes;
use minijinja::Value as Ctx;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use url::Url;

mod fields;

pub use fields::header_safe;
use fields::{key_values_use_profile, render_key_values, render_target};

use crate::event::{Object, TriggerEvent};
use crate::template::{Method, Prepared};

/// One request's worth of an event: delivered, retried and dead-lettered on its own.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Index of this chunk within the event; part of the Idempotency-Key.
    pub chunk: usize,
    pub method: Method,
    pub url: Url,
    /// Template headers, Content-Type and Idempotency-Key (auth is added when sending).
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    /// The event's profiles this delivery carries (indices into `TriggerEvent::profiles`).
    pub profiles: std::ops::Range<usize>,
}

impl Delivery {
    /// `host:port` of the destination: the key of the per-host concurrency limit.
    pub fn host_key(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or_default(),
            self.url.port_or_known_default().unwrap_or_default()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{field}: {source}")]
    Placeholder {
        field: String,
        #[source]
        source: minijinja::Error,
    },
    /// The rendered URL is not in the message: its query may carry tokens or personal data.
    #[error("url: rendered to an invalid URL: {message}")]
    Url { message: String },
    #[error("headers.{name}: rendered to an invalid header value")]
    Header { name: String },
    #[error("the event renders to more than {limit} bytes of requests (max_rendered_bytes)")]
    TooLarge { limit: usize },
}

thread_local! {
    /// Capacity for the next body buffer: the size of the last one, rounded up.
    static BODY_SIZE_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(1024) };
}

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

#[derive(Serialize)]
struct Body<'a> {
    is_test: bool,
    #[serde(rename = "targetId")]
    target_id: i64,
    key_values: &'a Object,
    profiles: &'a [Object],
}

/// Renders every delivery of `event`, refusing to produce more than `max_bytes` of
/// request bodies, URLs and headers in all (placeholders can multiply an event's size).
pub fn render(
    prepared: &Prepared,
    event: &TriggerEvent,
    max_bytes: usize,
) -> Result<Vec<Delivery>, RenderError> {
    let deliveries = render_from(
        prepared,
        event,
        prepared.template.batch_size as usize,
        0,
        max_bytes,
    )?;
    Ok(deliveries)
}

/// Renders a retried delivery: `event` carries exactly the chunk's profiles, sent as one
/// request (or one per profile, for per-profile templates) whose Idempotency-Key keeps the
/// original chunk index.
pub fn render_retry(
    prepared: &Prepared,
    event: &TriggerEvent,
    chunk: usize,
    max_bytes: usize,
) -> Result<Vec<Delivery>, RenderError> {
    render_from(prepared, event, event.profiles.len().max(1), chunk, max_bytes)
}

/// What a rendered delivery weighs in memory, roughly: body, URL and header values.
pub fn rendered_bytes(delivery: &Delivery) -> usize {
    delivery.body.as_ref().map_or(0, Bytes::len)
        + delivery.url.as_str().len()
        + delivery
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum::<usize>()
}

fn render_from(
    prepared: &Prepared,
    event: &TriggerEvent,
    size: usize,
    first_chunk: usize,
    max_bytes: usize,
) -> Result<Vec<Delivery>, RenderError> {
    let mut budget = Budget {
        left: max_bytes,
        limit: max_bytes,
    };
    let per_profile = prepared.url_or_headers_use_profile || key_values_use_profile(&event.key_values);
    if !per_profile {
        return render_chunks(prepared, event, size, first_chunk, &mut budget);
    }
    if event.profiles.is_empty() {
        // No profile to fill `profile.` in: an undefined placeholder is an error naming its
        // field; a template that copes (`{% if profile is defined %}`) sends the one request
        // an empty profile list always sends.
        let ctx = context(event, None);
        return Ok(vec![budget.spend(render_one(
            prepared,
            event,
            &ctx,
            first_chunk,
            0..0,
        )?)?]);
    }
    (0..event.profiles.len())
        .map(|i| {
            let ctx = context(event, Some(&event.profiles[i]));
            budget.spend(render_one(prepared, event, &ctx, first_chunk + i, i..i + 1)?)
        })
        .collect()
}

/// What the rendered deliveries of one event may still weigh (`max_rendered_bytes`).
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn spend(&mut self, delivery: Delivery) -> Result<Delivery, RenderError> {
        self.left = self
            .left
            .checked_sub(rendered_bytes(&delivery))
            .ok_or(RenderError::TooLarge { limit: self.limit })?;
        Ok(delivery)
    }
}

/// The placeholders' context: the event's fields, and a profile for per-profile templates.
fn context(event: &TriggerEvent, profile: Option<&Object>) -> Ctx {
    let base = [
        ("targetId", Ctx::from(event.target_id)),
        ("event_id", Ctx::from(event.event_id.as_str())),
        (
            "key_values",
            Ctx::from(minijinja::value::Serde(&event.key_values)),
        ),
    ];
    match profile {
        None => Ctx::from_pairs(base),
        Some(profile) => Ctx::from_pairs(
            base.into_iter()
                .chain([("profile", Ctx::from(minijinja::value::Serde(profile)))]),
        ),
    }
}

/// One delivery carrying `profiles`, rendered in `ctx`.
fn render_one(
    prepared: &Prepared,
    event: &TriggerEvent,
    ctx: &Ctx,
    chunk: usize,
    profiles: std::ops::Range<usize>,
) -> Result<Delivery, RenderError> {
    let key_values = render_key_values(&event.key_values, ctx)?;
    let (url, headers) = render_target(prepared, ctx)?;
    Ok(delivery(
        prepared,
        event,
        chunk,
        url,
        headers,
        &key_values,
        profiles,
    ))
}

/// Chunks of `size` profiles that share one rendered URL, headers and key_values (nothing
/// uses `profile.`): rendered once, copied per chunk.
fn render_chunks(
    prepared: &Prepared,
    event: &TriggerEvent,
    size: usize,
    first_chunk: usize,
    budget: &mut Budget,
) -> Result<Vec<Delivery>, RenderError> {
    let ctx = context(event, None);
    let key_values = render_key_values(&event.key_values, &ctx)?;
    let (url, headers) = render_target(prepared, &ctx)?;
    let chunks = event.profiles.len().div_ceil(size).max(1);
    let mut target = Some((url, headers));
    (0..chunks)
        .map(|chunk| {
            let range = chunk * size..((chunk + 1) * size).min(event.profiles.len());
            // The last chunk takes the rendered URL and headers; the others copy them.
            let (url, headers) = if chunk + 1 == chunks {
                target.take().expect("taken by the last chunk only")
            } else {
                target.clone().expect("kept until the last chunk")
            };
            let key_values: &Object = &key_values;
            budget.spend(delivery(
                prepared,
                event,
                first_chunk + chunk,
                url,
                headers,
                key_values,
                range,
            ))
        })
        .collect()
}

fn delivery(
    prepared: &Prepared,
    event: &TriggerEvent,
    chunk: usize,
    url: Url,
    mut headers: HeaderMap,
    key_values: &Object,
    range: std::ops::Range<usize>,
) -> Delivery {
    let profiles = &event.profiles[range.clone()];
    let method = prepared.template.method;
    let key = format!("{}:{chunk}", header_safe(&event.event_id));
    headers.insert(
        IDEMPOTENCY_KEY,
        HeaderValue::try_from(key).expect("header_safe leaves visible ASCII only"),
    );
    let body = method.has_body().then(|| {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = Body {
            is_test: event.is_test,
            target_id: event.target_id,
            key_values,
            profiles,
        };
        // Sized like the last body this thread wrote, so the buffer rarely grows.
        let mut out = Vec::with_capacity(BODY_SIZE_HINT.get());
        serde_json::to_writer(&mut out, &body).expect("JSON values always serialise");
        BODY_SIZE_HINT.set(out.len().next_power_of_two().clamp(256, 64 * 1024));
        Bytes::from(out)
    });
    Delivery {
        chunk,
        method,
        url,
        headers,
        body,
        profiles: range,
    }
}

#[cfg(test)]
mod tests;
