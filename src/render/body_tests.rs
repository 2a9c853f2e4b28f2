//! Body templates: what each content type makes of event values, hostile ones included.

use serde_json::{Value, json};

use super::deliveries::RENDER_AHEAD;
use super::*;
use crate::event::EventLimits;
use crate::template::Template;

const LIMIT: usize = 16 << 20;

fn prepared(t: Value) -> Prepared {
    serde_json::from_value::<Template>(t).unwrap().prepare().unwrap()
}

fn event(profiles: Vec<Value>) -> TriggerEvent {
    let e = json!({"event_id": "e1", "template_id": "t", "targetId": 42,
                   "key_values": {"campaign": "Spring \"sale\""}, "profiles": profiles});
    let limits = EventLimits {
        max_bytes: 4 << 20,
        max_profiles: 10_000,
    };
    TriggerEvent::parse(e.to_string().as_bytes(), limits).unwrap()
}

fn body_text(delivery: &Delivery) -> &str {
    std::str::from_utf8(delivery.body.as_ref().unwrap()).unwrap()
}

fn json_body(template: &str) -> Prepared {
    prepared(json!({"id": "t", "url": "https://x.test/hook", "batch_size": 2,
                    "body": {"template": template}}))
}

#[test]
fn a_json_body_per_profile_writes_every_value_as_a_whole_json_value() {
    let t = json_body(
        r#"{"subject": {{ "Low rating from " ~ profile.name }}, "rating": {{ profile.rating }},
            "tags": {{ profile.tags }}, "campaign": {{ key_values.campaign }}, "test": {{ is_test }}}"#,
    );
    let hostile = "Jane \"J\" O'Neil\n}, \"admin\": true, {{ targetId }}\\";
    let e = event(vec![
        json!({"name": hostile, "rating": 1, "tags": ["a", "b"]}),
        json!({"name": "Bob", "rating": 2.5, "tags": []}),
    ]);
    let ds = render(&t, &e, LIMIT).unwrap();
    assert_eq!(ds.len(), 2, "one request per profile");
    assert_eq!(ds[0].headers[CONTENT_TYPE], "application/json");
    assert_eq!(ds[1].headers[IDEMPOTENCY_KEY], "e1:1");
    let first: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(
        first,
        json!({"subject": format!("Low rating from {hostile}"), "rating": 1, "tags": ["a", "b"],
               "campaign": "Spring \"sale\"", "test": false})
    );
    assert_eq!(ds[0].profiles, 0..1);
}

#[test]
fn a_json_body_per_chunk_reads_the_chunks_profiles() {
    let t = json_body(
        r#"{"text": {{ "Campaign " ~ targetId ~ " reached " ~ profiles|length ~ " people" }},
            "emails": [{% for p in profiles %}{{ p.Email }}{% if not loop.last %},{% endif %}{% endfor %}]}"#,
    );
    let e = event(vec![
        json!({"Email": "a@x.test"}),
        json!({"Email": "b\"@x.test"}),
        json!({"Email": "c@x.test"}),
    ]);
    let ds = render(&t, &e, LIMIT).unwrap();
    assert_eq!(ds.len(), 2, "chunks of batch_size");
    assert_eq!(ds[1].profiles, 2..3);
    let first: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(
        first,
        json!({"text": "Campaign 42 reached 2 people", "emails": ["a@x.test", "b\"@x.test"]})
    );
    let second: Value = serde_json::from_str(body_text(&ds[1])).unwrap();
    assert_eq!(second["emails"], json!(["c@x.test"]));
}

#[test]
fn a_retried_chunk_renders_the_same_body_with_its_own_key() {
    let t = json_body(r#"{"n": {{ profiles|length }}}"#);
    let e = event(vec![json!({"Email": "c@x.test"})]);
    let ds = render_retry(&t, &e, 7, LIMIT).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].headers[IDEMPOTENCY_KEY], "e1:7");
    assert_eq!(body_text(&ds[0]), r#"{"n": 1}"#);
}

#[test]
fn a_value_inside_json_quotes_is_a_render_error_not_a_malformed_request() {
    let t = json_body(r#"{"subject": "Low rating from {{ profile.name }}"}"#);
    let err = render(&t, &event(vec![json!({"name": "Jane"})]), LIMIT).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("body.template: renders to invalid JSON"),
        "{message}"
    );
    assert!(message.contains(r#""Rating from " ~ profile.name"#), "{message}");
    assert!(
        !message.contains("Jane"),
        "the error never carries event values: {message}"
    );
}

#[test]
fn safe_does_not_let_an_event_value_write_json_syntax() {
    let t = json_body(r#"{"name": {{ profile.name|safe }}}"#);
    let ds = render(
        &t,
        &event(vec![json!({"name": "x\", \"admin\": true, \"y\": \""})]),
        LIMIT,
    )
    .unwrap();
    let body: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[test]
fn a_form_body_encodes_every_value_so_none_adds_a_field() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/sms",
        "body": {"content_type": "application/x-www-form-urlencoded",
                 "template": "To={{ profile.phone }}&Body=Hi {{ profile.name }}, your code is {{ key_values.campaign }}"}}));
    let ds = render(
        &t,
        &event(vec![json!({"phone": "+15550100", "name": "Ann&To=+1999 é"})]),
        LIMIT,
    )
    .unwrap();
    assert_eq!(ds[0].headers[CONTENT_TYPE], "application/x-www-form-urlencoded");
    let text = body_text(&ds[0]);
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        fields,
        vec![
            ("To".to_string(), "+15550100".to_string()),
            (
                "Body".to_string(),
                "Hi Ann&To=+1999 é, your code is Spring \"sale\"".to_string()
            ),
        ],
        "{text}"
    );
}

#[test]
fn a_text_body_writes_values_as_they_are() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/notes",
        "body": {"content_type": "text/plain", "template": "{{ profile.name }} rated {{ profile.rating }}"}}));
    let ds = render(&t, &event(vec![json!({"name": "<Ann>", "rating": 2})]), LIMIT).unwrap();
    assert_eq!(ds[0].headers[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(body_text(&ds[0]), "<Ann> rated 2");
}

#[test]
fn a_large_value_is_written_whole_or_refused_with_a_clear_error() {
    let t = json_body(r#"{"note": {{ profile.note }}}"#);
    // 100 KB of quotes, braces and newlines: written whole, as one JSON string.
    let large = "\"{{x}}\n".repeat(15_000);
    let ds = render(&t, &event(vec![json!({"note": large})]), LIMIT).unwrap();
    let body: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(body["note"], large);
    // Past the byte cap: refused whole.
    let err = render(&t, &event(vec![json!({"note": large})]), 64 * 1024).unwrap_err();
    assert!(matches!(err, RenderError::TooLarge { .. }), "{err}");
    // 1 MB of them: past what one render may write (its fuel, 1.25 MB of output), said as
    // the body's error.
    let huge = "\"{{x}}\n".repeat(150_000);
    let Err(err) = render(&t, &event(vec![json!({"note": huge})]), LIMIT) else {
        panic!("a 1 MB value rendered past the fuel");
    };
    assert!(err.to_string().starts_with("body.template:"), "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
}

#[test]
fn a_missing_field_is_an_error_naming_the_body() {
    let t = json_body(r#"{"n": {{ profile.nickname }}}"#);
    let err = render(&t, &event(vec![json!({"name": "Ann"})]), LIMIT).unwrap_err();
    assert!(err.to_string().starts_with("body.template:"), "{err}");
}

#[test]
fn many_chunks_of_a_body_template_are_made_as_taken_and_weigh_what_was_counted() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/hook", "batch_size": 1,
                            "body": {"template": "{\"e\": {{ profiles[0].Email }}}"}}));
    let many = RENDER_AHEAD * 2 + 1;
    let e = event(
        (0..many)
            .map(|i| json!({"Email": format!("u{i}@x.test")}))
            .collect(),
    );
    let ds = deliveries(&t, &e, LIMIT).unwrap();
    assert!(ds.made_as_taken());
    let made: Vec<Delivery> = ds.collect();
    assert_eq!(made.len(), many);
    assert_eq!(
        body_text(&made[many - 1]),
        format!("{{\"e\": \"u{}@x.test\"}}", many - 1)
    );
}

#[test]
fn a_body_on_a_get_and_a_content_type_header_beside_a_body_are_refused() {
    let get: Template = serde_json::from_value(json!({"id": "t", "url": "https://x.test/", "method": "GET",
        "body": {"template": "{}"}}))
    .unwrap();
    assert_eq!(get.validate().unwrap_err().field, "body");
    let header: Template = serde_json::from_value(json!({"id": "t", "url": "https://x.test/",
        "headers": {"Content-Type": "text/xml"}, "body": {"template": "{}"}}))
    .unwrap();
    assert_eq!(header.validate().unwrap_err().field, "headers.Content-Type");
    let odd: Result<Template, _> = serde_json::from_value(json!({"id": "t", "url": "https://x.test/",
        "body": {"template": "{}", "content_type": "application/xml"}}));
    assert!(odd.is_err());
}

#[test]
fn the_sample_profiles_carry_the_fields_a_loop_over_profiles_reads() {
    let t = json_body(
        r#"[{% for p in profiles %}{{ p.phone }}{{ p.name }}{% endfor %}{% for q in items %}{{ q.no }}{% endfor %}]"#,
    );
    let mut fields: Vec<_> = t
        .placeholders()
        .into_iter()
        .filter(|(root, _)| root == "profile")
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("profile".into(), "name".into()),
            ("profile".into(), "phone".into())
        ]
    );
}

#[test]
fn a_body_may_not_turn_off_how_values_are_written() {
    for source in [
        r#"{"t": "{% autoescape false %}{{ profile.name }}{% endautoescape %}"}"#,
        r#"{"t": {%- include "header:X" %}}"#,
        r#"{% from "url" import x %}{}"#,
    ] {
        let template: Template = serde_json::from_value(json!({"id": "t", "url": "https://x.test/",
            "body": {"template": source}}))
        .unwrap();
        let err = template.validate().unwrap_err();
        assert_eq!(err.field, "body.template", "{source}");
        assert!(err.message.contains("not allowed"), "{err}");
    }
}

#[test]
fn key_values_with_profile_placeholders_leave_a_body_per_chunk() {
    let t = json_body(r#"{"n": {{ profiles|length }}, "kv": {{ key_values.greeting }}}"#);
    let e = TriggerEvent::parse(
        json!({"event_id": "e1", "template_id": "t", "targetId": 1,
               "key_values": {"greeting": "Hi {{ profile.name }}"},
               "profiles": [{"name": "a"}, {"name": "b"}]})
        .to_string()
        .as_bytes(),
        EventLimits {
            max_bytes: 1 << 20,
            max_profiles: 100,
        },
    )
    .unwrap();
    let ds = render(&t, &e, LIMIT).unwrap();
    assert_eq!(ds.len(), 1, "one request for the chunk");
    let body: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(body, json!({"n": 2, "kv": "Hi {{ profile.name }}"}));
}

#[test]
fn a_full_chunk_of_large_profiles_renders_within_the_fuel() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/", "batch_size": 1000,
        "body": {"template": r#"{"users": {{ profiles }}, "names": [{% for p in profiles %}{{ p.name }}{% if not loop.last %},{% endif %}{% endfor %}]}"#}}));
    let profile = |i: usize| json!({"name": format!("user {i}"), "bio": "x".repeat(200), "n": i});
    let ds = render(&t, &event((0..1000).map(profile).collect()), LIMIT).unwrap();
    let body: Value = serde_json::from_str(body_text(&ds[0])).unwrap();
    assert_eq!(body["users"].as_array().map(Vec::len), Some(1000));
    assert_eq!(body["names"][999], "user 999");
}
