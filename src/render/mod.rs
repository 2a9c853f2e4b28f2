//! Template + event → the requests to send (docs/formats.md, "Request"). Profiles are split
//! into chunks of `batch_size`, each chunk one [`Delivery`]; a template whose URL, headers
//! or key_values use `profile.` sends one request per profile. Placeholders render in
//! strict mode: an undefined one is a [`RenderError`], never an empty string.

use bytes::Bytes;
use minijinja::Value as Ctx;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use url::Url;

mod deliveries;
mod fields;
mod templated;

pub use deliveries::Deliveries;
use deliveries::{Inner, OneByOne, SharedChunks, Unit};
pub use fields::header_safe;
use fields::{key_values_templated, key_values_use_profile, render_key_values, render_target};
use templated::{chunk_context, templated};

use crate::event::{KeyValues, Object, Profile, TriggerEvent};
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
        joined(
            self.url.host_str().unwrap_or_default(),
            self.url.port_or_known_default().unwrap_or_default(),
        )
    }
}

/// `text:number`, built by hand: `format!` was a measurable part of a delivery.
fn joined(text: &str, number: impl itoa::Integer) -> String {
    let mut key = String::with_capacity(text.len() + 8);
    key.push_str(text);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(number));
    key
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
    #[error("profiles[{index}]: its placeholders cannot read it: {message}")]
    Profile { index: usize, message: String },
    #[error("key_values: placeholders cannot read them: {message}")]
    KeyValues { message: String },
    #[error("url: rendered to an invalid URL: {message}")]
    Url { message: String },
    #[error("headers.{name}: rendered to an invalid header value")]
    Header { name: String },
    #[error("the event renders to more than {limit} bytes of requests (max_rendered_bytes)")]
    TooLarge { limit: usize },
    /// Says where, never what: the body carries the event's values.
    #[error("body.template: {message}")]
    Body { message: String },
}

thread_local! {
    /// Capacity for the next body buffer: the size of the last one, rounded up.
    static BODY_SIZE_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(1024) };
}

/// Headers [`delivery`] adds to the template's: `Idempotency-Key` and `Content-Type`.
const HEADERS_ADDED_PER_DELIVERY: usize = 2;

/// Room the sender needs in a delivery's header map for what it adds to each attempt: the
/// trace context (`traceparent`, `tracestate`), the credential, the signature's three
/// headers, `User-Agent` and `Accept`. The map is cloned per attempt and its index goes with
/// it, so adding them never rehashes it (that cost ~1,600 instructions per delivery,
/// callgrind). Its list of entries is cloned without room and grows once or twice (with
/// `Host`); an attempt's map made with room and filled from the delivery's instead cost as
/// much (docs/performance.md).
pub const HEADERS_ADDED_PER_ATTEMPT: usize = 8;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

#[derive(Serialize)]
struct Body<'a> {
    is_test: bool,
    #[serde(rename = "targetId")]
    target_id: i64,
    key_values: &'a BodyKeyValues<'a>,
    profiles: &'a [Profile],
}

/// The key_values a body carries: as the event wrote them, or rendered (they had
/// placeholders of their own).
#[derive(Serialize)]
#[serde(untagged)]
enum BodyKeyValues<'a> {
    AsWritten(&'a KeyValues),
    Rendered(Object),
}

/// What rendering one event needs of its key_values, decided once per event.
struct EventKeyValues<'a> {
    as_written: &'a KeyValues,
    /// Parsed only when something can read them: a placeholder of the template's (the
    /// context then holds them) or one of their own.
    map: Option<Object>,
    /// Whether they have placeholders of their own.
    templated: bool,
    /// Whether one of those reads `profile.`: then every profile is its own request.
    use_profile: bool,
}

impl<'a> EventKeyValues<'a> {
    fn new(prepared: &Prepared, event: &'a TriggerEvent) -> Result<EventKeyValues<'a>, RenderError> {
        let as_written = &event.key_values;
        let own = as_written.may_have_placeholders();
        let map = (own || prepared.reads_key_values)
            .then(|| as_written.object())
            .transpose()
            .map_err(|err| RenderError::KeyValues {
                message: err.to_string(),
            })?;
        let templated = own && map.as_ref().is_some_and(key_values_templated);
        let use_profile = templated && map.as_ref().is_some_and(key_values_use_profile);
        Ok(EventKeyValues {
            as_written,
            map,
            templated,
            use_profile,
        })
    }

    /// What the body carries, rendered in `ctx` when they have placeholders.
    fn body(&self, ctx: &Ctx) -> Result<BodyKeyValues<'a>, RenderError> {
        match &self.map {
            Some(map) if self.templated => render_key_values(map, ctx).map(BodyKeyValues::Rendered),
            _ => Ok(BodyKeyValues::AsWritten(self.as_written)),
        }
    }
}

/// Renders every delivery of `event`, refusing to produce more than `max_bytes` of
/// request bodies, URLs and headers in all (placeholders can multiply an event's size).
pub fn render(
    prepared: &Prepared,
    event: &TriggerEvent,
    max_bytes: usize,
) -> Result<Vec<Delivery>, RenderError> {
    Ok(deliveries(prepared, event, max_bytes)?.collect())
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
    Ok(retry_deliveries(prepared, event, chunk, max_bytes)?.collect())
}

/// Like [`render`], but each chunk's body is written only when the delivery is taken, so an
/// event of many chunks holds in memory only the ones being sent. Every error, and
/// `max_rendered_bytes`, is still found before the first delivery is taken.
pub fn deliveries<'a>(
    prepared: &'a Prepared,
    event: &'a TriggerEvent,
    max_bytes: usize,
) -> Result<Deliveries<'a>, RenderError> {
    let size = prepared.template.batch_size as usize;
    render_from(prepared, event, size, 0, max_bytes)
}

/// Like [`render_retry`], made as taken (see [`deliveries`]).
pub fn retry_deliveries<'a>(
    prepared: &'a Prepared,
    event: &'a TriggerEvent,
    chunk: usize,
    max_bytes: usize,
) -> Result<Deliveries<'a>, RenderError> {
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

fn render_from<'a>(
    prepared: &'a Prepared,
    event: &'a TriggerEvent,
    size: usize,
    first_chunk: usize,
    max_bytes: usize,
) -> Result<Deliveries<'a>, RenderError> {
    let mut budget = Budget {
        left: max_bytes,
        limit: max_bytes,
    };
    // Decided once per event, not per profile's context.
    let key_values = EventKeyValues::new(prepared, event)?;
    // A body template is the template's to shape: key_values' own placeholders do not make
    // it one request per profile (and are not rendered into it).
    let per_profile = prepared.uses_profile || (key_values.use_profile && prepared.template.body.is_none());
    if !per_profile && prepared.template.body.is_some() {
        // A body of the template's own reads its chunk's profiles: one render per chunk.
        let chunks = event.profiles.len().div_ceil(size).max(1);
        let each = OneByOne {
            prepared,
            event,
            first_chunk,
            key_values,
            unit: Unit::Chunk { size, chunks },
            next: 0,
            total: 0,
        };
        return each.render(&mut budget);
    }
    if !per_profile {
        // Nothing for the template engine to do (URL filled in by hand, fixed headers,
        // plain key_values): no context to build, nothing reads it.
        let ctx = if prepared.engine_needed || key_values.templated {
            context(event, None, key_values.map.as_ref())?
        } else {
            Ctx::UNDEFINED
        };
        return render_chunks(prepared, event, &key_values, &ctx, size, first_chunk, &mut budget);
    }
    if event.profiles.is_empty() {
        // No profile to fill `profile.` in: an undefined placeholder is an error naming its
        // field; a template that copes (`{% if profile is defined %}`) sends the one request
        // an empty profile list always sends.
        let ctx = context(event, None, key_values.map.as_ref())?;
        let only = budget.spend(render_one(prepared, event, &key_values, &ctx, first_chunk, 0..0)?)?;
        return Ok(Deliveries(Inner::Ready(vec![only].into_iter())));
    }
    let each = OneByOne {
        prepared,
        event,
        first_chunk,
        key_values,
        unit: Unit::Profile,
        next: 0,
        total: 0,
    };
    each.render(&mut budget)
}

/// What the rendered deliveries of one event may still weigh (`max_rendered_bytes`).
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn spend(&mut self, delivery: Delivery) -> Result<Delivery, RenderError> {
        self.spend_bytes(rendered_bytes(&delivery))?;
        Ok(delivery)
    }

    fn spend_bytes(&mut self, bytes: usize) -> Result<(), RenderError> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(RenderError::TooLarge { limit: self.limit })?;
        Ok(())
    }
}

/// The placeholders' context: the event's fields, and a profile for per-profile templates
/// (the `index`th of the event's). `key_values` only when something can read them
/// ([`EventKeyValues`]): parsing and converting them is a measurable part of a delivery,
/// and most templates never read them.
fn context(
    event: &TriggerEvent,
    profile: Option<(usize, &Profile)>,
    key_values: Option<&Object>,
) -> Result<Ctx, RenderError> {
    let mut pairs = Vec::with_capacity(5);
    pairs.push(("targetId", Ctx::from(event.target_id)));
    pairs.push(("event_id", Ctx::from(event.event_id.as_str())));
    pairs.push(("is_test", Ctx::from(event.is_test)));
    if let Some(key_values) = key_values {
        pairs.push(("key_values", Ctx::from(minijinja::value::Serde(key_values))));
    }
    if let Some((index, profile)) = profile {
        let profile = profile.object().map_err(|err| RenderError::Profile {
            index,
            message: err.to_string(),
        })?;
        pairs.push(("profile", Ctx::from(minijinja::value::Serde(profile))));
    }
    Ok(Ctx::from_pairs(pairs))
}

/// One delivery carrying `profiles`, rendered in `ctx`.
fn render_one(
    prepared: &Prepared,
    event: &TriggerEvent,
    key_values: &EventKeyValues<'_>,
    ctx: &Ctx,
    chunk: usize,
    profiles: std::ops::Range<usize>,
) -> Result<Delivery, RenderError> {
    let (url, headers) = render_target(prepared, event, ctx)?;
    if let Some(body) = &prepared.template.body {
        return templated(prepared, body, event, chunk, (url, headers), ctx, profiles);
    }
    let key_values = key_values.body(ctx)?;
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

/// `event_id:chunk`, made header-safe.
fn idempotency_key(event: &TriggerEvent, chunk: usize) -> HeaderValue {
    let key = joined(&header_safe(&event.event_id), chunk);
    HeaderValue::try_from(key).expect("header_safe leaves visible ASCII only")
}

/// Chunks of `size` profiles that share one rendered URL, headers and key_values (nothing
/// uses `profile.`): rendered once, copied per chunk as it is taken. What all the chunks
/// will weigh is counted first, without writing them.
fn render_chunks<'a>(
    prepared: &'a Prepared,
    event: &'a TriggerEvent,
    key_values: &EventKeyValues<'a>,
    ctx: &Ctx,
    size: usize,
    first_chunk: usize,
    budget: &mut Budget,
) -> Result<Deliveries<'a>, RenderError> {
    let key_values = key_values.body(ctx)?;
    let (url, headers) = render_target(prepared, event, ctx)?;
    let chunks = event.profiles.len().div_ceil(size).max(1);
    let mut shared = SharedChunks {
        prepared,
        event,
        target: Some((url, headers)),
        key_values,
        size,
        first_chunk,
        next: 0,
        chunks,
        total: 0,
        kept: 0,
    };
    if chunks == 1 {
        let only = shared.next().expect("one chunk");
        return Ok(Deliveries(Inner::Ready(vec![budget.spend(only)?].into_iter())));
    }
    shared.weigh();
    budget.spend_bytes(shared.total)?;
    Ok(Deliveries(Inner::Shared(Box::new(shared))))
}

pub(super) const JSON: &str = "application/json";

fn delivery(
    prepared: &Prepared,
    event: &TriggerEvent,
    chunk: usize,
    url: Url,
    mut headers: HeaderMap,
    key_values: &BodyKeyValues<'_>,
    range: std::ops::Range<usize>,
) -> Delivery {
    let profiles = &event.profiles[range.clone()];
    let method = prepared.template.method;
    headers.insert(IDEMPOTENCY_KEY, idempotency_key(event, chunk));
    let body = method.has_body().then(|| {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
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
mod body_tests;
#[cfg(test)]
mod tests;
