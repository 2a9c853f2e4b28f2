//! Deliveries whose body is the template's own ([`crate::template::BodyTemplate`]): a
//! chunk's context, and the body rendered and checked against its content type.

use bytes::Bytes;
use minijinja::Value as Ctx;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use url::Url;

use super::{Delivery, IDEMPOTENCY_KEY, RenderError, context, idempotency_key};
use crate::event::{Object, TriggerEvent};
use crate::template::{BodyTemplate, Prepared, check_rendered};

/// The context of a body template's chunk: [`context`] and the chunk's profiles as
/// `profiles`.
pub(super) fn chunk_context(
    event: &TriggerEvent,
    range: std::ops::Range<usize>,
    key_values: Option<&Object>,
) -> Result<Ctx, RenderError> {
    let profiles = event.profiles[range.clone()]
        .iter()
        .zip(range)
        .map(|(profile, index)| {
            profile.object().map_err(|err| RenderError::Profile {
                index,
                message: err.to_string(),
            })
        })
        .collect::<Result<Vec<Object>, _>>()?;
    let base = context(event, None, key_values)?;
    Ok(minijinja::context! {
        profiles => Ctx::from(minijinja::value::Serde(profiles)),
        ..base
    })
}

/// A delivery whose body is the template's own, rendered in `ctx` and checked against its
/// content type.
pub(super) fn templated(
    prepared: &Prepared,
    body: &BodyTemplate,
    event: &TriggerEvent,
    chunk: usize,
    (url, mut headers): (Url, HeaderMap),
    ctx: &Ctx,
    range: std::ops::Range<usize>,
) -> Result<Delivery, RenderError> {
    let text = prepared
        .env
        .get_template(body.content_type.template_name())
        .and_then(|t| t.render(ctx))
        .map_err(|source| RenderError::Placeholder {
            field: "body.template".into(),
            source,
        })?;
    check_rendered(body.content_type, &text).map_err(|message| RenderError::Body { message })?;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(body.content_type.mime()));
    headers.insert(IDEMPOTENCY_KEY, idempotency_key(event, chunk));
    Ok(Delivery {
        chunk,
        method: prepared.template.method,
        url,
        headers,
        body: Some(Bytes::from(text)),
        profiles: range,
    })
}
