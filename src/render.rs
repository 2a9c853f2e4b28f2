//! Template + event → the requests to send (§3, §4). Profiles are split into chunks of
//! `batch_size`, each chunk one [`Delivery`]; a template whose URL, headers or key_values use
//! `profile.` sends one request per profile. Placeholders render in strict mode: an undefined
//! one is a [`RenderError`], never an empty string.

use bytes::Bytes;
use minijinja::Value as Ctx;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::event::{Object, TriggerEvent};
use crate::template::{Method, Prepared, model};

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
    let mut budget = max_bytes;
    let mut spend = |delivery: Delivery| -> Result<Delivery, RenderError> {
        budget = budget
            .checked_sub(rendered_bytes(&delivery))
            .ok_or(RenderError::TooLarge { limit: max_bytes })?;
        Ok(delivery)
    };
    let per_profile = prepared.url_or_headers_use_profile || key_values_use_profile(&event.key_values);
    let base = [
        ("targetId", Ctx::from(event.target_id)),
        ("event_id", Ctx::from(event.event_id.as_str())),
        (
            "key_values",
            Ctx::from(minijinja::value::Serde(&event.key_values)),
        ),
    ];

    if !per_profile {
        let ctx = Ctx::from_pairs(base.iter().cloned());
        let key_values = render_key_values(&event.key_values, &ctx)?;
        let (url, headers) = render_target(prepared, &ctx)?;
        let chunks = event.profiles.len().div_ceil(size).max(1);
        return (0..chunks)
            .map(|chunk| {
                let range = chunk * size..((chunk + 1) * size).min(event.profiles.len());
                spend(delivery(
                    prepared,
                    event,
                    first_chunk + chunk,
                    url.clone(),
                    headers.clone(),
                    &key_values,
                    range,
                ))
            })
            .collect();
    }

    if event.profiles.is_empty() {
        // No profile to fill `profile.` in: an undefined placeholder is an error naming its
        // field; a template that copes (`{% if profile is defined %}`) sends the one request
        // an empty profile list always sends.
        let ctx = Ctx::from_pairs(base.iter().cloned());
        let key_values = render_key_values(&event.key_values, &ctx)?;
        let (url, headers) = render_target(prepared, &ctx)?;
        return Ok(vec![spend(delivery(
            prepared,
            event,
            first_chunk,
            url,
            headers,
            &key_values,
            0..0,
        ))?]);
    }
    event
        .profiles
        .iter()
        .enumerate()
        .map(|(chunk, profile)| {
            let ctx = Ctx::from_pairs(
                base.iter()
                    .cloned()
                    .chain([("profile", Ctx::from(minijinja::value::Serde(profile)))]),
            );
            let key_values = render_key_values(&event.key_values, &ctx)?;
            let (url, headers) = render_target(prepared, &ctx)?;
            spend(delivery(
                prepared,
                event,
                first_chunk + chunk,
                url,
                headers,
                &key_values,
                chunk..chunk + 1,
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
        Bytes::from(serde_json::to_vec(&body).expect("JSON values always serialise"))
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

fn render_target(prepared: &Prepared, ctx: &Ctx) -> Result<(Url, HeaderMap), RenderError> {
    let env = &prepared.env;
    let run = |name: &str, field: String| -> Result<String, RenderError> {
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| RenderError::Placeholder { field, source })
    };
    let raw_url = run(model::URL_TEMPLATE, "url".into())?;
    let url = Url::parse(&raw_url).map_err(|e| RenderError::Url {
        message: e.to_string(),
    })?;
    model::check_url(&url).map_err(|message| RenderError::Url { message })?;
    let mut headers = HeaderMap::with_capacity(prepared.header_names.len() + 2);
    for (name, header) in prepared.template.headers.keys().zip(&prepared.header_names) {
        let value = run(&model::header_template(name), format!("headers.{name}"))?;
        let value = HeaderValue::from_str(&value).map_err(|_| RenderError::Header { name: name.clone() })?;
        headers.insert(header.clone(), value);
    }
    Ok((url, headers))
}

fn has_placeholder(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Where the event's own strings (key_values) render: the same sandbox rules as the
/// template's (strict, fuel-limited, no escaping) but none of its templates, so an event
/// cannot `{% include %}` a template header and copy its credential into the body.
fn event_env() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(model::sandbox)
}

fn key_values_use_profile(key_values: &Object) -> bool {
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
fn render_key_values(key_values: &Object, ctx: &Ctx) -> Result<Object, RenderError> {
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventLimits;
    use crate::template::Template;
    use serde_json::json;

    const LIMIT: usize = 16 << 20;

    fn prepared(t: Value) -> Prepared {
        serde_json::from_value::<Template>(t).unwrap().prepare().unwrap()
    }

    fn event(e: Value) -> TriggerEvent {
        let limits = EventLimits {
            max_bytes: 1 << 20,
            max_profiles: 10_000,
        };
        TriggerEvent::parse(e.to_string().as_bytes(), limits).unwrap()
    }

    fn profiles(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"Identity": format!("u{i}"), "Email": format!("u{i}@x.test")}))
            .collect()
    }

    #[test]
    fn profiles_split_into_chunks_with_the_spec_body() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/hook", "batch_size": 2,
                                "headers": {"X-Source": "campaigns"}}));
        let e = event(json!({"event_id": "e1", "template_id": "t", "targetId": 7,
                             "key_values": {"k": "v"}, "profiles": profiles(5)}));
        let ds = render(&t, &e, LIMIT).unwrap();
        assert_eq!(
            ds.iter().map(|d| d.profiles.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(ds[2].profiles, 4..5);
        assert_eq!(ds[2].headers[IDEMPOTENCY_KEY], "e1:2");
        assert_eq!(ds[0].headers["x-source"], "campaigns");
        assert_eq!(ds[0].headers[CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_slice(ds[1].body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"is_test": false, "targetId": 7, "key_values": {"k": "v"}, "profiles": profiles(4)[2..4]})
        );
        // Field order of the spec (and of the event's profiles) is kept.
        let raw = std::str::from_utf8(ds[0].body.as_ref().unwrap()).unwrap();
        assert!(
            raw.starts_with(r#"{"is_test":false,"targetId":7,"key_values""#),
            "{raw}"
        );
        assert!(raw.contains(r#"{"Identity":"u0","Email":"u0@x.test"}"#), "{raw}");
    }

    #[test]
    fn a_retried_chunk_is_one_request_with_its_original_index() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/", "batch_size": 2}));
        let e = event(json!({"event_id": "e1", "template_id": "t", "targetId": 7, "profiles": profiles(2)}));
        let ds = render_retry(&t, &e, 5, LIMIT).unwrap();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].headers[IDEMPOTENCY_KEY], "e1:5");
        assert_eq!(ds[0].chunk, 5);
        assert_eq!(ds[0].profiles, 0..2);
    }

    #[test]
    fn no_profiles_still_sends_one_request() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/"}));
        let ds = render(
            &t,
            &event(json!({"event_id": "e", "template_id": "t", "targetId": 1})),
            LIMIT,
        )
        .unwrap();
        assert_eq!(ds.len(), 1);
        let body: Value = serde_json::from_slice(ds[0].body.as_ref().unwrap()).unwrap();
        assert_eq!(body["profiles"], json!([]));
    }

    #[test]
    fn get_has_no_body() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/?c={{ targetId }}", "method": "GET"}));
        let ds = render(
            &t,
            &event(json!({"event_id": "e", "template_id": "t", "targetId": 9})),
            LIMIT,
        )
        .unwrap();
        assert!(ds[0].body.is_none() && !ds[0].headers.contains_key(CONTENT_TYPE));
        assert_eq!(ds[0].url.as_str(), "https://x.test/?c=9");
    }

    #[test]
    fn placeholders_render_everywhere() {
        let t = prepared(json!({"id": "t",
            "url": "https://x.test/{{ targetId }}/{{ key_values.path }}?e={{ event_id }}",
            "headers": {"X-Campaign": "c-{{ targetId }}"}}));
        let e = event(json!({"event_id": "e9", "template_id": "t", "targetId": 3,
            "key_values": {"path": "orders", "msg": "Hi {{ key_values.path }} #{{ targetId }}",
                           "nested": {"list": ["{{ event_id }}", 1]}}}));
        let d = &render(&t, &e, LIMIT).unwrap()[0];
        assert_eq!(d.url.as_str(), "https://x.test/3/orders?e=e9");
        assert_eq!(d.headers["x-campaign"], "c-3");
        let body: Value = serde_json::from_slice(d.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["key_values"]["msg"], "Hi orders #3");
        assert_eq!(body["key_values"]["nested"]["list"], json!(["e9", 1]));
    }

    #[test]
    fn profile_placeholders_send_one_request_per_profile() {
        let t = prepared(
            json!({"id": "t", "url": "https://x.test/users/{{ profile.Identity }}",
                                "headers": {"X-Mail": "{{ profile.Email }}"}, "batch_size": 100}),
        );
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1, "profiles": profiles(3)}));
        let ds = render(&t, &e, LIMIT).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[1].url.as_str(), "https://x.test/users/u1");
        assert_eq!(ds[1].headers["x-mail"], "u1@x.test");
        assert_eq!(ds[1].headers[IDEMPOTENCY_KEY], "e:1");
        assert_eq!(ds[1].profiles, 1..2);

        let kv = prepared(json!({"id": "t", "url": "https://x.test/"}));
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                             "key_values": {"greeting": "Hi {{ profile.Identity }}"}, "profiles": profiles(2)}));
        let ds = render(&kv, &e, LIMIT).unwrap();
        assert_eq!(ds.len(), 2);
        let body: Value = serde_json::from_slice(ds[1].body.as_ref().unwrap()).unwrap();
        assert_eq!(body["key_values"]["greeting"], "Hi u1");
    }

    #[test]
    fn undefined_placeholders_are_errors_naming_the_field() {
        let cases = [
            (
                json!({"id": "t", "url": "https://x.test/{{ key_values.missing }}"}),
                json!({}),
                "url",
            ),
            (
                json!({"id": "t", "url": "https://x.test/", "headers": {"X-A": "{{ nope }}"}}),
                json!({}),
                "headers.X-A",
            ),
            (
                json!({"id": "t", "url": "https://x.test/"}),
                json!({"m": "{{ key_values.zz }}"}),
                "key_values.m",
            ),
            (
                json!({"id": "t", "url": "https://x.test/{{ profile.Email }}"}),
                json!({}),
                "url",
            ),
            (
                json!({"id": "t", "url": "https://x.test/"}),
                json!({"m": "{{ profile.Nope }}"}),
                "key_values.m",
            ),
        ];
        for (t, kv, field) in cases {
            let e = event(
                json!({"event_id": "e", "template_id": "t", "targetId": 1, "key_values": kv,
                                 "profiles": if field == "key_values.m" && kv["m"].as_str().unwrap().contains("profile")
                                    { json!([{"Identity": "u"}]) } else { json!([]) }}),
            );
            match render(&prepared(t), &e, LIMIT) {
                Err(RenderError::Placeholder { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_profile_template_that_copes_without_profiles_sends_one_request() {
        let t = prepared(json!({"id": "t",
            "url": "https://x.test/{% if profile is defined %}{{ profile.Identity }}{% else %}all{% endif %}"}));
        let ds = render(
            &t,
            &event(json!({"event_id": "e", "template_id": "t", "targetId": 1})),
            LIMIT,
        )
        .unwrap();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].url.as_str(), "https://x.test/all");
        assert_eq!(ds[0].profiles, 0..0);
    }

    #[test]
    fn rendered_urls_and_headers_are_checked() {
        let t = prepared(json!({"id": "t", "url": "{{ key_values.u }}"}));
        let e = event(
            json!({"event_id": "e", "template_id": "t", "targetId": 1, "key_values": {"u": "file:///etc/passwd"}}),
        );
        assert!(matches!(render(&t, &e, LIMIT), Err(RenderError::Url { .. })));
        let t =
            prepared(json!({"id": "t", "url": "https://x.test/", "headers": {"X-A": "{{ key_values.v }}"}}));
        let e = event(
            json!({"event_id": "e", "template_id": "t", "targetId": 1, "key_values": {"v": "a\r\nInjected: 1"}}),
        );
        assert!(matches!(render(&t, &e, LIMIT), Err(RenderError::Header { .. })));
    }

    #[test]
    fn an_event_cannot_render_past_the_byte_cap() {
        // 2.4 KB of event, ten values of 300 kB each, one request per profile: 300 MB.
        let t = prepared(json!({"id": "t", "url": "https://x.test/", "batch_size": 1}));
        let bomb: serde_json::Map<String, Value> = (0..10)
            .map(|i| (format!("k{i}"), json!("{{ 'x' * 300000 }}")))
            .collect();
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                             "key_values": bomb, "profiles": profiles(100)}));
        match render(&t, &e, 4 << 20) {
            Err(RenderError::TooLarge { limit }) => assert_eq!(limit, 4 << 20),
            other => panic!("{other:?}"),
        }
        // Within the cap the same event renders.
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                             "key_values": {"k": "{{ 'x' * 1000 }}"}, "profiles": profiles(3)}));
        let ds = render(&t, &e, LIMIT).unwrap();
        assert_eq!(ds.len(), 3);
        assert!(ds.iter().map(rendered_bytes).all(|b| b > 1000 && b < 2000));
    }

    #[test]
    fn event_values_cannot_read_the_templates_headers() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/",
                                "headers": {"Authorization": "Bearer s3cret-token"}}));
        for sneaky in [
            "{% include 'header:Authorization' %}",
            "{% include 'header:authorization' %}",
            "{% include 'url' %}",
        ] {
            let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                                 "key_values": {"steal": sneaky}}));
            match render(&t, &e, LIMIT) {
                Err(err) => assert!(!err.to_string().contains("s3cret"), "{err}"),
                Ok(ds) => {
                    let body = std::str::from_utf8(ds[0].body.as_ref().unwrap()).unwrap();
                    assert!(!body.contains("s3cret"), "{body}");
                }
            }
        }
    }

    #[test]
    fn render_errors_do_not_repeat_the_rendered_url() {
        let t = prepared(json!({"id": "t", "url": "{{ key_values.u }}"}));
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                             "key_values": {"u": "ftp://x.test/?token=s3cret&email=a@b.test"}}));
        let err = render(&t, &e, LIMIT).unwrap_err().to_string();
        assert!(err.starts_with("url:"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("a@b.test"), "{err}");
    }

    #[test]
    fn any_event_id_makes_an_idempotency_key() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/"}));
        for (id, key) in [
            (
                "c0a8f7e2-5b1d-4c1e-9f3a-2d7e8b6a1f00",
                "c0a8f7e2-5b1d-4c1e-9f3a-2d7e8b6a1f00:0",
            ),
            ("événement 7", "%C3%A9v%C3%A9nement%207:0"),
            (r"a\nb\u0000c%", "a%0Ab%00c%25:0"),
        ] {
            let id: String = serde_json::from_str(&format!("\"{id}\"")).unwrap();
            let e = event(json!({"event_id": id, "template_id": "t", "targetId": 1}));
            assert_eq!(render(&t, &e, LIMIT).unwrap()[0].headers[IDEMPOTENCY_KEY], key);
        }
    }

    #[test]
    fn template_loops_cannot_burn_the_cpu() {
        let t = prepared(json!({"id": "t", "url": "https://x.test/"}));
        let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
            "key_values": {"bomb": "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"}}));
        assert!(matches!(
            render(&t, &e, LIMIT),
            Err(RenderError::Placeholder { .. })
        ));
    }
}
