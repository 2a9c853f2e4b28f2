//! How a span's fields are written: as the JSON object the JSON lines carry under `span`
//! (written once, as the span is created).

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// A span's fields as the JSON object the JSON layer puts under `span`, written as the span
/// is created. The layer's own (`JsonFields`) fills a map of `serde_json::Value`s and
/// serialises it, for every span, whether or not a line is ever written in it: with a span
/// per event, ~8,000 instructions per delivery (docs/performance.md). This writes the same
/// object straight into one buffer.
pub(super) struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        // Room for an event span's fields (ids, trace and span ids): grown from empty, the
        // buffer was copied 5 times.
        let mut object = JsonObject {
            json: Vec::with_capacity(288),
        };
        fields.record(&mut object);
        writer.write_str(object.finish())
    }

    /// Fields recorded later (`Span::record`, which the service does not use) merge as the
    /// JSON layer's own do.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> std::fmt::Result {
        let mut merged = FormattedFields::<JsonFields>::new(std::mem::take(&mut current.fields));
        JsonFields::new().add_fields(&mut merged, fields)?;
        current.fields = merged.fields;
        Ok(())
    }
}

/// A JSON object written field by field.
#[derive(Default)]
struct JsonObject {
    json: Vec<u8>,
}

impl JsonObject {
    fn entry<T: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        self.key(field);
        // Strings, numbers and booleans always serialise.
        let _ = serde_json::to_writer(&mut self.json, value);
    }

    fn key(&mut self, field: &Field) {
        self.json.push(if self.json.is_empty() { b'{' } else { b',' });
        self.string(field.name());
        self.json.push(b':');
    }

    /// A JSON string: copied as it is when nothing in it needs escaping (ids and names
    /// almost never do; serde_json looks at it byte by byte), else as serde_json writes it.
    fn string(&mut self, text: &str) {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.json.push(b'"');
            self.json.extend_from_slice(text.as_bytes());
            self.json.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut self.json, text);
        }
    }

    fn finish(&mut self) -> &str {
        if self.json.is_empty() {
            self.json.push(b'{');
        }
        self.json.push(b'}');
        std::str::from_utf8(&self.json).expect("serde_json writes UTF-8")
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.string(value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.entry(field, &format!("{value:?}"));
    }
}
