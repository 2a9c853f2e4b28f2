use super::*;
use crate::event::EventLimits;
use crate::template::Template;
use deliveries::RENDER_AHEAD;
use serde_json::{Value, json};

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
    // The body's field order (is_test, targetId, key_values, profiles) and the profiles' own
    // field order are kept.
    let raw = std::str::from_utf8(ds[0].body.as_ref().unwrap()).unwrap();
    assert!(
        raw.starts_with(r#"{"is_test":false,"targetId":7,"key_values""#),
        "{raw}"
    );
    assert!(raw.contains(r#"{"Identity":"u0","Email":"u0@x.test"}"#), "{raw}");
}

#[test]
fn profiles_reach_the_body_exactly_as_the_event_wrote_them() {
    // Numbers past f64's precision, trailing zeros and escapes survive: profiles are
    // carried as the event's own JSON text, not parsed into maps and written again.
    let raw = r#"{"event_id":"e1","template_id":"t","targetId":7,"profiles":[{"Identity":"u1","balance":12345678901234567890123,"price":1.10,"name":"Ren\u00e9e"},{"Identity":"u2"}]}"#;
    let limits = EventLimits {
        max_bytes: 1 << 20,
        max_profiles: 10,
    };
    let e = TriggerEvent::parse(raw.as_bytes(), limits).unwrap();
    for t in [
        prepared(json!({"id": "t", "url": "https://x.test/hook"})),
        prepared(json!({"id": "t", "url": "https://x.test/{{ profile.Identity }}"})),
    ] {
        let ds = render(&t, &e, LIMIT).unwrap();
        let body = std::str::from_utf8(ds[0].body.as_ref().unwrap()).unwrap();
        assert!(
            body.contains(
                r#"{"Identity":"u1","balance":12345678901234567890123,"price":1.10,"name":"Ren\u00e9e"}"#
            ),
            "{body}"
        );
    }
    let per_profile = render(
        &prepared(json!({"id": "t", "url": "https://x.test/{{ profile.Identity }}"})),
        &e,
        LIMIT,
    )
    .unwrap();
    assert_eq!(per_profile[1].url.as_str(), "https://x.test/u2");
}

#[test]
fn a_profile_placeholders_cannot_read_is_a_render_error_not_a_panic() {
    // Valid JSON text that no map can hold: kept as is in batch bodies, refused (and the
    // event dead-lettered as render_error) where a placeholder has to read it.
    let limits = EventLimits {
        max_bytes: 1 << 20,
        max_profiles: 10,
    };
    for profile in [r#"{"Identity":"\ud800"}"#, r#"{"Identity":"u","n":1e400}"#] {
        let raw = format!(
            r#"{{"event_id":"e","template_id":"t","targetId":1,"profiles":[{{"Identity":"ok"}},{profile}]}}"#
        );
        let e = TriggerEvent::parse(raw.as_bytes(), limits).unwrap();
        let per_profile = prepared(json!({"id": "t", "url": "https://x.test/{{ profile.Identity }}"}));
        let err = render(&per_profile, &e, LIMIT).unwrap_err();
        assert!(matches!(err, RenderError::Profile { index: 1, .. }), "{err}");
        assert!(err.to_string().starts_with("profiles[1]: "), "{err}");
        let batch = render(
            &prepared(json!({"id": "t", "url": "https://x.test/hook"})),
            &e,
            LIMIT,
        )
        .unwrap();
        let body = std::str::from_utf8(batch[0].body.as_ref().unwrap()).unwrap();
        assert!(body.contains(profile), "{body}");
    }
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
fn headers_without_placeholders_are_sent_as_written() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/",
        "headers": {"X-Fixed": "campaigns; v=1 {x}", "X-Comment": "a{# a note #}b",
                    "X-Dynamic": "c-{{ targetId }}", "X-Raw": "{% raw %}{{ as is }}{% endraw %}"}}));
    let e = event(json!({"event_id": "e1", "template_id": "t", "targetId": 3}));
    let d = &render(&t, &e, LIMIT).unwrap()[0];
    assert_eq!(d.headers["x-fixed"], "campaigns; v=1 {x}");
    assert_eq!(d.headers["x-comment"], "ab", "a comment is the engine's to drop");
    assert_eq!(d.headers["x-dynamic"], "c-3");
    assert_eq!(d.headers["x-raw"], "{{ as is }}");
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
fn placeholders_cannot_reach_the_scheme_host_or_port() {
    for url in [
        "{{ key_values.u }}",
        "https://{{ key_values.host }}/hook",
        "https://x.test{{ key_values.path }}",
        "https://x.test:{{ targetId }}/hook",
        "https://x.test@{{ key_values.host }}/",
        "{% if true %}https://x.test/{% endif %}",
        "https://x.test#{{ event_id }}",
    ] {
        let err = serde_json::from_value::<Template>(json!({"id": "t", "url": url}))
            .unwrap()
            .prepare()
            .unwrap_err();
        assert_eq!(err.field, "url", "{url}");
        assert!(err.message.contains("path and query only"), "{url}: {err}");
    }
    // Written out up to the path or the query, the rest may be personalised.
    for url in [
        "https://x.test/{{ key_values.path }}",
        "https://x.test:8443/a/{{ targetId }}",
        "https://x.test?e={{ event_id }}",
    ] {
        prepared(json!({"id": "t", "url": url}));
    }
}

#[test]
fn hostile_values_stay_one_segment_or_one_query_value() {
    let fast = prepared(json!({"id": "t", "url": "https://x.test/ok/u/{{ event_id }}"}));
    let engine = prepared(json!({"id": "t",
        "url": "https://x.test/ok/u/{{ key_values.p }}?q={{ key_values.q }}&e={{ event_id|safe }}"}));
    assert!(fast.url_parts.is_some() && engine.url_parts.is_none());
    let hostile = "a/../../admin?x=1#y";
    let e = event(json!({"event_id": hostile, "template_id": "t", "targetId": 1,
                         "key_values": {"p": "../../admin", "q": "1&admin=true#frag"}}));
    let d = &render(&fast, &e, LIMIT).unwrap()[0];
    assert_eq!(
        d.url.as_str(),
        "https://x.test/ok/u/a%2F..%2F..%2Fadmin%3Fx%3D1%23y"
    );
    let d = &render(&engine, &e, LIMIT).unwrap()[0];
    assert_eq!(
        d.url.as_str(),
        "https://x.test/ok/u/..%2F..%2Fadmin?q=1%26admin%3Dtrue%23frag&e=a%2F..%2F..%2Fadmin%3Fx%3D1%23y"
    );
    assert_eq!(d.url.path(), "/ok/u/..%2F..%2Fadmin");
    assert_eq!(d.url.query_pairs().count(), 2);
    assert_eq!(d.url.fragment(), None);
    // A whole segment of `.` or `..` would step through the path, encoded or not.
    for (template, value) in [(&fast, ".."), (&engine, "."), (&engine, "..")] {
        let e = event(json!({"event_id": value, "template_id": "t", "targetId": 1,
                             "key_values": {"p": value, "q": "1"}}));
        let err = render(template, &e, LIMIT).unwrap_err();
        assert!(err.to_string().contains("change the URL's path"), "{err}");
    }
}

#[test]
fn rendered_urls_and_headers_are_checked() {
    let t = prepared(json!({"id": "t", "url": "https://x.test/", "headers": {"X-A": "{{ key_values.v }}"}}));
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
    let t = prepared(json!({"id": "t", "url": "https://x.test/{{ key_values.u }}?t={{ key_values.t }}"}));
    let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                         "key_values": {"u": "..", "t": "s3cret&email=a@b.test"}}));
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

#[test]
fn chunks_made_as_taken_weigh_what_was_counted_before() {
    // Every shape of shared chunk: a template Content-Type the renderer
    // replaces, a body-less method, chunk numbers of several digits, a retry's offset.
    let templates = [
        json!({"id": "t", "url": "https://x.test/a?q={{ targetId }}", "batch_size": 3,
               "headers": {"Content-Type": "text/plain", "X-A": "b"}}),
        json!({"id": "t", "url": "https://x.test/", "method": "GET", "batch_size": 2,
               "headers": {"Content-Type": "text/plain"}}),
        json!({"id": "t", "url": "https://x.test/", "batch_size": 1}),
    ];
    for template in templates {
        let t = prepared(template);
        let e = event(json!({"event_id": "é/1", "template_id": "t", "targetId": 7,
                             "key_values": {"k": "{{ 'v' * 40 }}"}, "profiles": profiles(23)}));
        let made: usize = deliveries(&t, &e, LIMIT)
            .unwrap()
            .map(|d| rendered_bytes(&d))
            .sum();
        // The cap is applied to the total counted before any chunk is made: exactly what
        // the chunks weigh, so one byte less is refused.
        assert!(matches!(
            deliveries(&t, &e, made - 1),
            Err(RenderError::TooLarge { .. })
        ));
        assert!(deliveries(&t, &e, made).is_ok());
        let retried: Vec<_> = retry_deliveries(&t, &e, 12, LIMIT).unwrap().collect();
        assert_eq!(retried.len(), 1, "a retry is one request");
        assert_eq!(retried[0].chunk, 12, "a retry keeps its chunk number");
        let key = retried[0].headers.get(IDEMPOTENCY_KEY).unwrap();
        assert_eq!(key, format!("{}:12", header_safe("é/1")).as_str());
    }
}

#[test]
fn many_profiles_of_a_per_profile_template_are_checked_first_then_made_as_taken() {
    let t = prepared(
        json!({"id": "t", "url": "https://x.test/users/{{ profile.Identity }}",
                            "headers": {"X-Mail": "{{ profile.Email }}"}}),
    );
    let many = RENDER_AHEAD * 2 + 1;
    let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1,
                         "profiles": profiles(many)}));
    let made: Vec<Delivery> = deliveries(&t, &e, LIMIT).unwrap().collect();
    assert_eq!(made.len(), many);
    assert_eq!(made[many - 1].url.path(), format!("/users/u{}", many - 1));
    assert_eq!(made[many - 1].chunk, many - 1);
    let weight: usize = made.iter().map(rendered_bytes).sum();
    assert!(matches!(
        deliveries(&t, &e, weight - 1),
        Err(RenderError::TooLarge { .. })
    ));
    // A bad profile far down the list fails the event before any request is made.
    let mut listed = profiles(many);
    listed[many - 2] = json!({"Identity": 1});
    let e = event(json!({"event_id": "e", "template_id": "t", "targetId": 1, "profiles": listed}));
    assert!(matches!(
        deliveries(&t, &e, LIMIT),
        Err(RenderError::Placeholder { .. })
    ));
}

#[test]
fn key_values_reach_every_placeholder_that_can_read_them() {
    // The context leaves key_values out when nothing reads them; these all do.
    let kv = json!({"path": "orders", "msg": "to {{ key_values.path }}"});
    let only_key_values = prepared(json!({"id": "t", "url": "https://x.test/{{ targetId }}"}));
    let e = event(json!({"event_id": "e1", "template_id": "t", "targetId": 3, "key_values": kv}));
    let d = &render(&only_key_values, &e, LIMIT).unwrap()[0];
    let body: Value = serde_json::from_slice(d.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["key_values"]["msg"], "to orders");

    let t = prepared(json!({"id": "t",
        "url": "https://x.test/{% if key_values is defined %}kv{% endif %}",
        "headers": {"X-Debug": "{% if 'orders' in debug() %}seen{% endif %}"}}));
    let plain = event(json!({"event_id": "e1", "template_id": "t", "targetId": 3,
                             "key_values": {"path": "orders"}}));
    let d = &render(&t, &plain, LIMIT).unwrap()[0];
    assert_eq!(d.url.as_str(), "https://x.test/kv");
    assert_eq!(d.headers["x-debug"], "seen");

    // Inside a tag the engine's own analysis does not look into.
    let t = prepared(json!({"id": "t",
        "url": "https://x.test/{% filter replace(\"R\", key_values.path) %}R{% endfilter %}"}));
    let d = &render(&t, &plain, LIMIT).unwrap()[0];
    assert_eq!(d.url.as_str(), "https://x.test/orders");
}

#[test]
fn only_tags_are_placeholders() {
    use crate::event::has_placeholder;
    for text in ["{{ x }}", "a{%", "{ {{"] {
        assert!(has_placeholder(text), "{text}");
    }
    for text in ["", "{", "{x}", "a { b }", "}}", "{#", "x{"] {
        assert!(!has_placeholder(text), "{text}");
    }
}

#[test]
fn urls_filled_in_by_hand_are_what_the_engine_renders() {
    use crate::template::model::{URL_TEMPLATE, UrlPart, url_parts};
    let by_hand = [
        "https://x.test/hooks/{{ targetId }}",
        "https://x.test/{{targetId}}/e/{{  event_id  }}?t={{ targetId }}",
        "https://x.test/{{ event_id }}",
        "https://x.test/plain}}/{ targetId }",
    ];
    let ids = ["e1", "ünï code/../x?y=1#z", "{{ targetId }}", " spaced ", "%41"];
    for url in by_hand {
        let t = prepared(json!({"id": "t", "url": url}));
        assert!(
            t.url_parts.is_some() && !t.engine_needed,
            "{url} is filled by hand"
        );
        for (i, id) in ids.iter().enumerate() {
            let e = event(json!({"event_id": id, "template_id": "t", "targetId": -7 - i as i64}));
            let engine = t
                .env
                .get_template(URL_TEMPLATE)
                .unwrap()
                .render(context(&e, None, None).unwrap())
                .unwrap();
            assert_eq!(
                fields::fill_url(t.url_parts.as_ref().unwrap(), &e).unwrap(),
                engine,
                "{url} {id}"
            );
            assert_eq!(
                render(&t, &e, LIMIT).unwrap()[0].url,
                Url::parse(&engine).unwrap()
            );
        }
    }
    // Everything else goes through the engine.
    let engine = [
        "https://x.test/{{ targetId + 1 }}",
        "https://x.test/{{ targetId|string }}",
        "https://x.test/{{ key_values.k }}",
        "https://x.test/{{- targetId }}",
        "https://x.test/{% if true %}{{ targetId }}{% endif %}",
        "https://x.test/{# note #}{{ targetId }}",
        "https://x.test/{{ targetId }}\n",
        "https://x.test/{{ targetId",
    ];
    for url in engine {
        assert_eq!(url_parts(url), None, "{url}");
    }
    assert_eq!(
        url_parts("a{{targetId}}b"),
        Some(vec![
            UrlPart::Text("a".into()),
            UrlPart::TargetId,
            UrlPart::Text("b".into())
        ])
    );
    // A header with a placeholder still needs the engine, URL filled by hand or not.
    let t = prepared(json!({"id": "t", "url": "https://x.test/{{ targetId }}",
                            "headers": {"X-Id": "{{ event_id }}"}}));
    assert!(t.engine_needed);
    let e = event(json!({"event_id": "e9", "template_id": "t", "targetId": 3}));
    let d = &render(&t, &e, LIMIT).unwrap()[0];
    assert_eq!(
        (d.url.as_str(), d.headers["x-id"].to_str().unwrap()),
        ("https://x.test/3", "e9")
    );
}

#[test]
fn key_values_reach_the_body_as_the_event_wrote_them_unless_they_have_placeholders() {
    let limits = EventLimits {
        max_bytes: 1 << 20,
        max_profiles: 10,
    };
    let parse = |key_values: &str| {
        let raw = format!(r#"{{"event_id":"e","template_id":"t","targetId":7,"key_values":{key_values}}}"#);
        TriggerEvent::parse(raw.as_bytes(), limits).unwrap()
    };
    let plain = prepared(json!({"id": "t", "url": "https://x.test/hook"}));
    let body = |t: &Prepared, e: &TriggerEvent| {
        let d = render(t, e, LIMIT).unwrap().remove(0);
        String::from_utf8(d.body.unwrap().to_vec()).unwrap()
    };
    // Numbers past f64's precision, trailing zeros, escapes: the event's own text.
    let exact = r#"{"big":12345678901234567890123,"price":1.10,"name":"Ren\u00e9e","n":{"x":[1,2]}}"#;
    assert!(body(&plain, &parse(exact)).contains(exact));
    // What no map can hold still goes as written when nothing reads it...
    let unreadable = r#"{"n":1e400,"s":"x"}"#;
    assert!(body(&plain, &parse(unreadable)).contains(unreadable));
    // ...and is a render error naming key_values when a placeholder must read it, or an
    // escape could hide one of their own (a lone surrogate here).
    let reads = prepared(json!({"id": "t", "url": "https://x.test/{{ key_values.s }}"}));
    for (t, key_values) in [(&reads, unreadable), (&plain, r#"{"s":"\ud800"}"#)] {
        let err = render(t, &parse(key_values), LIMIT).unwrap_err();
        assert!(err.to_string().starts_with("key_values: "), "{err}");
    }
    // Placeholders of their own are rendered, even behind an escape.
    for templated in [
        r#"{"m":"t={{ targetId }}","k":1.10}"#,
        r#"{"m":"t=\u007b{ targetId }}","k":1.10}"#,
    ] {
        let sent: Value = serde_json::from_str(&body(&plain, &parse(templated))).unwrap();
        assert_eq!(sent["key_values"]["m"], "t=7", "{templated}");
    }
}
