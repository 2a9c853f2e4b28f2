//! Property tests over what comes from outside the process: any bytes as a
//! trigger record and any strings as event values and template placeholders never panic,
//! and what rendering produces stays within its caps.

use proptest::prelude::*;
use serde_json::{Value, json};
use webhook_dispatcher::event::{EventLimits, TriggerEvent};
use webhook_dispatcher::render::{render, rendered_bytes};
use webhook_dispatcher::template::Template;

const LIMITS: EventLimits = EventLimits {
    max_bytes: 64 * 1024,
    max_profiles: 50,
};

/// Strings that look like what a campaign engine or an attacker might send: placeholders,
/// template tags, control characters, non-ASCII.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z{}%' *.()0-9\\n\\u{0}é-]{0,40}",
        Just("{{ 'x' * 100000 }}".to_string()),
        Just("{% for i in range(1000000) %}x{% endfor %}".to_string()),
        Just("{{ profile.Email }}".to_string()),
        Just("{{ key_values.missing }}".to_string()),
        Just("{% include 'url' %}".to_string()),
    ]
}

fn event_json() -> impl Strategy<Value = Value> {
    (
        nasty_string(),
        prop::collection::btree_map("[a-z]{1,5}", nasty_string(), 0..4),
        prop::collection::vec(
            prop::collection::btree_map("[A-Za-z]{1,6}", nasty_string(), 0..3),
            0..8,
        ),
        any::<i64>(),
    )
        .prop_map(|(id, key_values, profiles, target)| {
            json!({"event_id": if id.is_empty() { "e".to_string() } else { id },
                   "template_id": "t", "targetId": target, "key_values": key_values,
                   "profiles": profiles})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_bytes_parse_or_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = TriggerEvent::parse(&bytes, LIMITS);
    }

    #[test]
    fn any_event_renders_or_is_refused_within_the_cap(
        event in event_json(),
        url_tail in nasty_string(),
        header in nasty_string(),
        batch_size in 1u32..5,
        max_bytes in 1024usize..200_000,
    ) {
        let Ok(event) = TriggerEvent::parse(event.to_string().as_bytes(), LIMITS) else {
            return Ok(());
        };
        let template = json!({"id": "t", "url": format!("https://x.test/{url_tail}"),
                              "headers": {"X-Test": header}, "batch_size": batch_size});
        let Ok(template) = serde_json::from_value::<Template>(template) else {
            return Ok(());
        };
        let Ok(prepared) = template.prepare() else {
            return Ok(());
        };
        if let Ok(deliveries) = render(&prepared, &event, max_bytes) {
            let total: usize = deliveries.iter().map(rendered_bytes).sum();
            prop_assert!(total <= max_bytes, "{total} > {max_bytes}");
            prop_assert!(!deliveries.is_empty());
            for delivery in &deliveries {
                let key = delivery.headers.get("idempotency-key");
                prop_assert!(key.is_some_and(|k| k.to_str().is_ok()), "no usable Idempotency-Key");
            }
        }
    }
}
