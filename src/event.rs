//! The campaign-trigger event (docs/formats.md, "Trigger event"): parsed and validated from
//! a record's raw bytes. Anything wrong with a record is an [`InvalidEvent`] with a
//! low-cardinality reason; it is never retried and never stops the partition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub type Object = Map<String, Value>;

/// One profile of an event: a JSON object, kept as the text it came in. Request bodies
/// carry it as is (no parse into maps and back: most of a delivery's JSON work); it is
/// parsed only when a template's URL or headers read `profile.*`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Profile(Box<RawValue>);

impl Profile {
    /// The profile's JSON text, exactly as the event carried it.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The profile as a map, for placeholders. Reading an event checks only the JSON's
    /// shape, so this can still refuse what a map cannot hold: a number out of range
    /// (`1e400`), a lone surrogate escape (`"\ud800"`).
    pub fn object(&self) -> Result<Object, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl From<&Object> for Profile {
    fn from(object: &Object) -> Profile {
        Profile(object_text(object))
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Profile) -> bool {
        self.json() == other.json()
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Profile, D::Error> {
        read_object_text(deserializer, "a profile is").map(Profile)
    }
}

/// A map as JSON text.
fn object_text(object: &Object) -> Box<RawValue> {
    serde_json::value::to_raw_value(object).expect("maps always serialise")
}

/// A JSON value kept as its text, refused unless it is an object (`what` names it).
fn read_object_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> Result<Box<RawValue>, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    if !raw.get().starts_with('{') {
        return Err(serde::de::Error::custom(format!(
            "{what} a JSON object, not `{}`",
            raw.get().chars().take(40).collect::<String>()
        )));
    }
    Ok(raw)
}

/// An event's key_values: a JSON object, kept as the text it came in, like profiles. Bodies
/// carry it as is; it is parsed into a map only when a placeholder can read it or it has
/// placeholders of its own (most events: neither).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct KeyValues(Box<RawValue>);

impl KeyValues {
    /// The JSON text, exactly as the event carried it.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// As a map, for placeholders. Reading an event checks only the JSON's shape, so this
    /// can still refuse what a map cannot hold: a number out of range (`1e400`), a lone
    /// surrogate escape (`"\ud800"`).
    pub fn object(&self) -> Result<Object, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Whether a value may hold a placeholder (`{{`, `{%`), from the text: `false` is
    /// certain; `true` is checked on the map. An escape (`\u007b`) could hide a brace.
    pub fn may_have_placeholders(&self) -> bool {
        has_placeholder(self.json()) || self.json().contains("\\u")
    }
}

/// Whether `s` has a tag (`{{` or `{%`): one scan for `{`, as event strings are often long
/// and rarely templated.
pub fn has_placeholder(s: &str) -> bool {
    s.match_indices('{')
        .any(|(i, _)| matches!(s.as_bytes().get(i + 1), Some(b'{' | b'%')))
}

impl Default for KeyValues {
    fn default() -> KeyValues {
        KeyValues(RawValue::from_string("{}".into()).expect("an empty object is JSON"))
    }
}

impl From<&Object> for KeyValues {
    fn from(object: &Object) -> KeyValues {
        KeyValues(object_text(object))
    }
}

impl PartialEq for KeyValues {
    fn eq(&self, other: &KeyValues) -> bool {
        self.json() == other.json()
    }
}

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<KeyValues, D::Error> {
        read_object_text(deserializer, "key_values is").map(KeyValues)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    pub event_id: String,
    pub template_id: String,
    pub target_id: i64,
    pub is_test: bool,
    pub key_values: KeyValues,
    pub profiles: Vec<Profile>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Limits on one record (configured as `max_event_bytes` and `max_profiles`).
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    pub max_bytes: usize,
    pub max_profiles: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidEvent {
    #[error("record is {size} bytes, over the {limit}-byte limit")]
    Oversize { size: usize, limit: usize },
    #[error("record has no value")]
    Empty,
    #[error("record is not valid JSON: {0}")]
    Malformed(String),
    #[error("event does not match the schema: {0}")]
    Schema(String),
    #[error("event has {count} profiles, over the limit of {limit}")]
    TooManyProfiles { count: usize, limit: usize },
}

impl InvalidEvent {
    /// The `reason` label of `webhook_events_invalid_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidEvent::Oversize { .. } => "oversize",
            InvalidEvent::Empty | InvalidEvent::Malformed(_) => "malformed",
            InvalidEvent::Schema(_) => "schema",
            InvalidEvent::TooManyProfiles { .. } => "too_many_profiles",
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    event_id: String,
    template_id: String,
    #[serde(rename = "targetId")]
    target_id: i64,
    #[serde(default)]
    is_test: Option<bool>,
    #[serde(default)]
    key_values: Option<KeyValues>,
    #[serde(default)]
    profiles: Option<Vec<Profile>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

impl TriggerEvent {
    pub fn parse(bytes: &[u8], limits: EventLimits) -> Result<TriggerEvent, InvalidEvent> {
        if bytes.is_empty() {
            return Err(InvalidEvent::Empty);
        }
        if bytes.len() > limits.max_bytes {
            return Err(InvalidEvent::Oversize {
                size: bytes.len(),
                limit: limits.max_bytes,
            });
        }
        // serde would read a struct from a JSON array too (`["e","t",1]`): an event is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => InvalidEvent::Schema("an event is a JSON object".into()),
                Err(e) => InvalidEvent::Malformed(without_values(&e)),
            });
        }
        // UTF-8 checked once for the whole record: parsed as text, serde_json does not check
        // each string and profile again (a measurable part of a delivery). JSON is UTF-8.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| InvalidEvent::Malformed(format!("the record is not UTF-8: {e}")))?;
        let wire: Wire = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => InvalidEvent::Schema(without_values(&e)),
            _ => InvalidEvent::Malformed(without_values(&e)),
        })?;
        if wire.event_id.trim().is_empty() {
            return Err(InvalidEvent::Schema("event_id must not be empty".into()));
        }
        if wire.template_id.trim().is_empty() {
            return Err(InvalidEvent::Schema("template_id must not be empty".into()));
        }
        let profiles = wire.profiles.unwrap_or_default();
        if profiles.len() > limits.max_profiles {
            return Err(InvalidEvent::TooManyProfiles {
                count: profiles.len(),
                limit: limits.max_profiles,
            });
        }
        Ok(TriggerEvent {
            event_id: wire.event_id,
            template_id: wire.template_id,
            target_id: wire.target_id,
            is_test: wire.is_test.unwrap_or(false),
            key_values: wire.key_values.unwrap_or_default(),
            profiles,
            created_at: wire.created_at,
        })
    }
}

/// serde's message for `err` with the event's values cut to a few characters: it quotes
/// them (`invalid type: string "jane@example.com", expected i64`), and the message goes to
/// logs and to `wd-last-error`.
fn without_values(err: &serde_json::Error) -> String {
    const KEEP: usize = 4;
    let message = err.to_string();
    let mut out = String::with_capacity(message.len().min(256));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        // A quoted value (serde writes it escaped): keep its first characters.
        let mut kept = 0;
        let mut cut = false;
        let mut escaped = false;
        for c in chars.by_ref() {
            if c == '"' && !escaped {
                break;
            }
            escaped = c == '\\' && !escaped;
            if kept < KEEP {
                out.push(c);
                kept += 1;
            } else {
                cut = true;
            }
        }
        if cut {
            out.push('…');
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_no_more_than_a_few_characters_of_a_value() {
        for event in [
            r#"{"event_id":"e","template_id":"t","targetId":"jane@example.com token=s3cret"}"#,
            r#"{"event_id":"e","template_id":"t","targetId":1,"profiles":"jane@example.com"}"#,
            r#"{"event_id":"e","template_id":"t","targetId":1,"is_test":"jane@example.com"}"#,
            r#"{"event_id":["jane@example.com"],"template_id":"t","targetId":1}"#,
        ] {
            let err = parse(event).unwrap_err().to_string();
            assert!(!err.contains("example.com") && !err.contains("s3cret"), "{err}");
            assert!(err.contains("invalid type"), "{err}");
        }
        let err = parse(r#"{"event_id":"e","template_id":"t","targetId":"a\"b\"cdefgh"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"string "a\"b…""#), "{err}");
    }

    const LIMITS: EventLimits = EventLimits {
        max_bytes: 1024,
        max_profiles: 2,
    };

    fn parse(s: &str) -> Result<TriggerEvent, InvalidEvent> {
        TriggerEvent::parse(s.as_bytes(), LIMITS)
    }

    #[test]
    fn the_spec_example_parses() {
        let e = parse(
            r#"{"event_id":"e1","template_id":"t","targetId":1234,"is_test":true,
                "key_values":{"key":"value"},"profiles":[{"Identity":"U"}],
                "created_at":"2026-11-26T10:00:00+01:00","extra":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.target_id, 1234);
        assert!(e.is_test);
        assert_eq!(e.key_values.object().unwrap()["key"], "value");
        assert_eq!(e.profiles.len(), 1);
        assert_eq!(e.created_at.unwrap().to_rfc3339(), "2026-11-26T09:00:00+00:00");
    }

    #[test]
    fn optional_fields_default() {
        let e = parse(r#"{"event_id":"e","template_id":"t","targetId":1,"key_values":null}"#).unwrap();
        assert!(!e.is_test && e.key_values.object().unwrap().is_empty() && e.profiles.is_empty());
        assert_eq!(e.created_at, None);
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let cases = [
            ("", "malformed"),
            ("{not json", "malformed"),
            ("\u{0}\u{1}", "malformed"),
            ("[1, 2", "malformed"),
            (r#"["e","t",1]"#, "schema"),
            ("null", "schema"),
            (r#"{"template_id":"t","targetId":1}"#, "schema"),
            (r#"{"event_id":"e","targetId":1}"#, "schema"),
            (r#"{"event_id":"e","template_id":"t"}"#, "schema"),
            (r#"{"event_id":"","template_id":"t","targetId":1}"#, "schema"),
            (r#"{"event_id":"e","template_id":" ","targetId":1}"#, "schema"),
            (r#"{"event_id":"e","template_id":"t","targetId":"1"}"#, "schema"),
            (r#"{"event_id":"e","template_id":"t","targetId":1.5}"#, "schema"),
            (
                r#"{"event_id":"e","template_id":"t","targetId":1,"profiles":[1]}"#,
                "schema",
            ),
            (
                r#"{"event_id":"e","template_id":"t","targetId":1,"key_values":[]}"#,
                "schema",
            ),
            (
                r#"{"event_id":"e","template_id":"t","targetId":1,"created_at":"yesterday"}"#,
                "schema",
            ),
            (
                r#"{"event_id":"e","template_id":"t","targetId":1,"profiles":[{},{},{}]}"#,
                "too_many_profiles",
            ),
        ];
        for (input, reason) in cases {
            assert_eq!(parse(input).unwrap_err().reason(), reason, "{input}");
        }
        // JSON is UTF-8: a byte that is not, even in a field the dispatcher ignores.
        let mut bytes = br#"{"event_id":"e","template_id":"t","targetId":1,"note":"#.to_vec();
        bytes.extend_from_slice(b"\"\xff\"}");
        let err = TriggerEvent::parse(&bytes, LIMITS).unwrap_err();
        assert_eq!(err.reason(), "malformed");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let big = format!(
            r#"{{"event_id":"{}","template_id":"t","targetId":1}}"#,
            "x".repeat(2000)
        );
        assert_eq!(parse(&big).unwrap_err().reason(), "oversize");
    }
}
