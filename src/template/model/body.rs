//! A template's own request body (docs/formats.md, "Body templates"): text with placeholders
//! in one of three content types, each with its rule for writing a value so that no event
//! value can break the body's syntax. Without one, the body is CleverTap's shape.

use minijinja::{AutoEscape, Output, State, Value};
use serde::{Deserialize, Serialize};

/// The body a template sends instead of CleverTap's. A template that reads `profile.`
/// (here, in the URL or in a header) sends one request per profile; otherwise one per chunk
/// of `batch_size` profiles, whose list the body reads as `profiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyTemplate {
    /// The body's text with placeholders (at most [`MAX_BODY_TEMPLATE_BYTES`]).
    pub template: String,
    /// What the body is, sent as its Content-Type: `application/json` (the default),
    /// `application/x-www-form-urlencoded` or `text/plain`.
    #[serde(default)]
    pub content_type: BodyType,
}

/// The content types a body template may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum BodyType {
    /// Each value is written as a whole JSON value (a string with its quotes, a number, a
    /// list, an object), and the rendered body must parse as JSON before it is sent.
    #[default]
    #[serde(rename = "application/json")]
    Json,
    /// Each value is form-encoded, so it can never add a field.
    #[serde(rename = "application/x-www-form-urlencoded")]
    Form,
    /// Values are written as they are.
    #[serde(rename = "text/plain")]
    Text,
}

/// The longest body template: a body is a few hundred bytes of text, not a document.
pub const MAX_BODY_TEMPLATE_BYTES: usize = 64 * 1024;

impl BodyType {
    /// The Content-Type header the body is sent with.
    pub fn mime(self) -> &'static str {
        match self {
            BodyType::Json => "application/json",
            BodyType::Form => "application/x-www-form-urlencoded",
            BodyType::Text => "text/plain; charset=utf-8",
        }
    }

    /// The name the body is compiled under; its auto-escape mode follows from it
    /// ([`escape_mode`]).
    pub(crate) fn template_name(self) -> &'static str {
        match self {
            BodyType::Json => BODY_JSON,
            BodyType::Form => BODY_FORM,
            BodyType::Text => BODY_TEXT,
        }
    }
}

const BODY_JSON: &str = "body:json";
const BODY_FORM: &str = "body:form";
const BODY_TEXT: &str = "body:text";

/// Auto-escape modes of the bodies (the formatter's cue).
const JSON_ESCAPE: &str = "json";
const FORM_ESCAPE: &str = "form";

/// The auto-escape mode of a body template, by its compiled name; `None` for anything else.
pub(super) fn escape_mode(name: &str) -> Option<AutoEscape> {
    match name {
        BODY_JSON => Some(AutoEscape::Custom(JSON_ESCAPE.into())),
        BODY_FORM => Some(AutoEscape::Custom(FORM_ESCAPE.into())),
        BODY_TEXT => Some(AutoEscape::None),
        _ => None,
    }
}

/// Writes `value` in a body's mode, `Ok(false)` when `state` is not a body's. `|safe`
/// changes nothing: event values are data, never syntax.
pub(super) fn write_value(out: &mut Output, state: &State, value: &Value) -> Result<bool, minijinja::Error> {
    let AutoEscape::Custom(mode) = state.auto_escape() else {
        return Ok(false);
    };
    let text = match mode.as_ref() {
        JSON_ESCAPE => serde_json::to_string(value)
            .map_err(|err| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, err.to_string()))?,
        FORM_ESCAPE => {
            let plain = match value.as_str() {
                Some(text) => std::borrow::Cow::Borrowed(text),
                None => std::borrow::Cow::Owned(value.to_string()),
            };
            url::form_urlencoded::byte_serialize(plain.as_bytes()).collect()
        }
        _ => return Ok(false),
    };
    out.write_str(&text).map_err(minijinja::Error::from)?;
    Ok(true)
}

/// Checks a rendered body against its declared type: JSON must parse.
pub(crate) fn check_rendered(kind: BodyType, body: &str) -> Result<(), String> {
    match kind {
        BodyType::Json => serde_json::from_str::<serde::de::IgnoredAny>(body)
            .map(drop)
            .map_err(|err| {
                format!(
                    "renders to invalid JSON ({err}); values are written as whole JSON values, \
                     so put a placeholder outside quotes and join text with ~: \
                     {{{{ \"Rating from \" ~ profile.name }}}}"
                )
            }),
        BodyType::Form | BodyType::Text => Ok(()),
    }
}

/// The fields a body template reads of the items of a loop over `profiles`
/// (`{% for p in profiles %}{{ p.Email }}`): the sample profiles of the test request and the
/// preview carry them. Read from the text: the engine's analysis does not report names
/// bound by a loop.
pub(super) fn fields_of_looped_profiles(source: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let word = |text: &str| -> String { text.chars().take_while(|c| ident(*c)).collect() };
    let mut fields = Vec::new();
    for (at, _) in source.match_indices("for ") {
        let mut words = source[at + 4..].split_whitespace();
        let (Some(var), Some("in"), Some(list)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let var = word(var);
        if var.is_empty() || word(list) != "profiles" {
            continue;
        }
        let reads = format!("{var}.");
        for (use_at, _) in source.match_indices(&reads) {
            let before = source[..use_at].chars().next_back();
            let field = word(&source[use_at + reads.len()..]);
            if !before.is_some_and(ident) && !field.is_empty() && !fields.contains(&field) {
                fields.push(field);
            }
        }
    }
    fields
}

/// Tags a body template may not use: `autoescape` would turn off how values are written,
/// and `include`, `import`, `extends` and `from` would bring in the URL or a header, which
/// are written by other rules.
const REFUSED_TAGS: [&str; 5] = ["autoescape", "include", "import", "extends", "from"];

/// The first refused tag `source` uses, if any.
pub(super) fn refused_tag(source: &str) -> Option<&'static str> {
    source.match_indices("{%").find_map(|(at, _)| {
        let inside = source[at + 2..].trim_start_matches(['-', '+', '~']).trim_start();
        let word: String = inside.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        REFUSED_TAGS.into_iter().find(|tag| *tag == word)
    })
}
