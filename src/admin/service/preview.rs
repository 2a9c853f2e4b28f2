//! A template rendered against an event without sending anything: what the console shows
//! beside the body editor, and what `POST /v1/templates/preview` answers.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::templates::sample_event;
use super::{Admin, AdminError, invalid};
use crate::auth::Auth;
use crate::event::{EventLimits, TriggerEvent};
use crate::render::{Delivery, render};
use crate::template::Template;

/// At most this many of the rendered requests are shown (the count says how many there are).
const SHOWN: usize = 5;

/// What a template makes of an event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// How many requests the event makes (per chunk, or per profile).
    pub requests_total: usize,
    /// The first of them (at most 5), without the credential and signature headers, which
    /// are added when sending.
    pub requests: Vec<RenderedRequest>,
    /// The event rendered: the one given, or the sample the test request on save uses.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// One rendered request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RenderedRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// The body as text (`null` for GET).
    pub body: Option<String>,
}

impl Admin {
    /// Renders `template` against `event` (a trigger event's JSON), or against the sample
    /// event of the test request when there is none. Its credentials play no part: a
    /// template being edited may still show them as `****`.
    pub fn preview(&self, mut template: Template, event: Option<Value>) -> Result<Preview, AdminError> {
        template.auth = Auth::None;
        template.signing_secret = None;
        let prepared = template.prepare().map_err(invalid)?;
        let event = match event {
            Some(given) => TriggerEvent::parse(given.to_string().as_bytes(), self.event_limits())
                .map_err(|err| AdminError::Unprocessable(format!("event: {err}")))?,
            None => sample_event(&prepared),
        };
        let deliveries = render(&prepared, &event, self.config.max_rendered_bytes)
            .map_err(|err| AdminError::Unprocessable(format!("render_error: {err}")))?;
        Ok(Preview {
            requests_total: deliveries.len(),
            requests: deliveries.iter().take(SHOWN).map(shown).collect(),
            event: event_json(&event),
        })
    }

    fn event_limits(&self) -> EventLimits {
        self.config.event_limits()
    }
}

/// The event as a trigger record carries it.
fn event_json(event: &TriggerEvent) -> Value {
    serde_json::json!({
        "event_id": event.event_id,
        "template_id": event.template_id,
        "targetId": event.target_id,
        "is_test": event.is_test,
        "key_values": event.key_values,
        "profiles": event.profiles,
    })
}

fn shown(delivery: &Delivery) -> RenderedRequest {
    RenderedRequest {
        method: delivery.method.as_str().to_string(),
        url: delivery.url.to_string(),
        headers: delivery
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: delivery
            .body
            .as_ref()
            .map(|body| String::from_utf8_lossy(body).into_owned()),
    }
}
