//! The headers of one attempt: the delivery's rendered ones, plus what each attempt adds
//! (its trace context, the template's credential and signature, `User-Agent`, `Accept`).

use http::HeaderMap;
use http::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue, USER_AGENT as USER_AGENT_HEADER};

use super::outcome::AttemptResult;
use crate::auth::{Auth, OAuth2, Token, basic_header, sign};
use crate::render::{Delivery, IDEMPOTENCY_KEY};
use crate::template::Prepared;
use crate::trace::TraceParent;

/// The `User-Agent` of deliveries and token requests.
pub const USER_AGENT: &str = concat!("webhook-dispatcher/", env!("CARGO_PKG_VERSION"));

/// The attempt's W3C trace context, sent to the destination.
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(crate::trace::TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(crate::trace::TRACESTATE);

/// The request's headers: the rendered ones, the template's credentials, the signature,
/// the attempt's W3C trace context (`traceparent` in place of any the template set, and
/// `tracestate` when the record came with one), and User-Agent and
/// Accept unless the template set them.
pub(super) fn request_headers(
    delivery: &Delivery,
    template: &Prepared,
    token: Option<(&OAuth2, &Token)>,
    trace: &TraceParent,
) -> Result<HeaderMap, AttemptResult> {
    let mut headers = delivery.headers.clone();
    if let Ok(value) = HeaderValue::from_str(trace.text().as_str()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    if let Some(Ok(value)) = trace.tracestate().map(HeaderValue::try_from) {
        headers.insert(TRACESTATE_HEADER, value);
    }
    match (&template.template.auth, token) {
        (Auth::Basic { username, password }, _) => {
            headers.insert(AUTHORIZATION, basic_header(username, password.expose()));
        }
        (_, Some((oauth, token))) => {
            let value =
                HeaderValue::try_from(format!("{}{}", oauth.token_prefix, token.access_token.expose()));
            let Ok(mut value) = value else {
                return Err(AttemptResult::Auth {
                    why: "the token endpoint's access_token is not a valid header value".into(),
                });
            };
            value.set_sensitive(true);
            let name = HeaderName::try_from(oauth.token_header.as_str()).expect("validated by prepare");
            headers.insert(name, value);
        }
        _ => {}
    }
    if let Some(key) = &template.signing_key {
        let id = headers
            .get(IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = delivery.body.as_deref().unwrap_or_default();
        sign::sign(&mut headers, key, &id, chrono::Utc::now().timestamp(), body);
    }
    headers
        .entry(USER_AGENT_HEADER)
        .or_insert(HeaderValue::from_static(USER_AGENT));
    headers.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{EventLimits, TriggerEvent};
    use crate::template::Template;

    fn delivery(template: &Prepared) -> Delivery {
        let limits = EventLimits {
            max_bytes: 1 << 20,
            max_profiles: 100,
        };
        let event = json!({"event_id": "e1", "template_id": "t", "targetId": 7,
                           "profiles": [{"Identity": "u1"}]});
        let event = TriggerEvent::parse(event.to_string().as_bytes(), limits).unwrap();
        crate::render::render(template, &event, 1 << 20)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn every_header_an_attempt_adds_fits_in_the_rendered_map_without_regrowing_it() {
        // The most an attempt adds: a trace with vendors' state, Basic credentials, a
        // signature; the template's own headers are all kept.
        let template = serde_json::from_value::<Template>(json!({
            "id": "t", "url": "https://crm.example/hook",
            "headers": {"X-Source": "campaigns", "X-Team": "growth"},
            "auth": {"type": "basic", "username": "u", "password": "p"},
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        }))
        .unwrap()
        .prepare()
        .unwrap();
        let delivery = delivery(&template);
        let trace = TraceParent::parse(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("engine=run-7"),
        )
        .unwrap();
        let headers = request_headers(&delivery, &template, None, &trace).unwrap();
        let added = headers.len() - delivery.headers.len();
        assert_eq!(added, crate::render::HEADERS_ADDED_PER_ATTEMPT, "{headers:?}");
        assert_eq!(
            headers.capacity(),
            delivery.headers.capacity(),
            "the map did not regrow"
        );
        assert_eq!(headers["x-source"], "campaigns");
        assert_eq!(headers["x-team"], "growth");
        assert_eq!(headers["tracestate"], "engine=run-7");
        let traceparent = headers["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{traceparent}"
        );
        assert!(headers.contains_key("webhook-signature"));
        assert_eq!(headers[USER_AGENT_HEADER], USER_AGENT);
    }

    #[test]
    fn the_templates_own_user_agent_and_accept_are_kept() {
        let template = serde_json::from_value::<Template>(json!({
            "id": "t", "url": "https://crm.example/hook",
            "headers": {"User-Agent": "campaigns/2", "Accept": "application/json"}
        }))
        .unwrap()
        .prepare()
        .unwrap();
        let delivery = delivery(&template);
        let trace = crate::trace::Step::start(crate::trace::StepKind::Attempt, None);
        let headers = request_headers(&delivery, &template, None, trace.at()).unwrap();
        assert_eq!(headers[USER_AGENT_HEADER], "campaigns/2");
        assert_eq!(headers[ACCEPT], "application/json");
        assert!(!headers.contains_key("tracestate"));
    }
}
