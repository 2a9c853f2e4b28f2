//! The template engine's sandbox: strict undefined values, a fuel budget per render, and how
//! each kind of template writes a value (percent-encoded in the URL, by content type in a
//! body, as it is elsewhere).

use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior, Value};

use super::{URL_TEMPLATE, body, url_value};

/// A rendering environment with the sandbox's rules and no templates: undefined values are
/// errors, every render has a fuel budget, and nothing is escaped except in the URL
/// template, where every value is percent-encoded ([`url_value`]), and in a body template,
/// by its content type ([`BodyType`]).
pub fn sandbox() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| match name {
        URL_TEMPLATE => AutoEscape::Custom(URL_ESCAPE.into()),
        _ => body::escape_mode(name).unwrap_or(AutoEscape::None),
    });
    env.set_formatter(formatter);
    env
}

/// The auto-escape mode of the URL template.
const URL_ESCAPE: &str = "url";

/// Writes a value the engine emits: percent-encoded in the URL template (marked `safe` or
/// not: event values are data, never URL syntax), by the content type in a body template,
/// as it is elsewhere.
fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), minijinja::Error> {
    if body::write_value(out, state, value)? {
        return Ok(());
    }
    if !matches!(state.auto_escape(), AutoEscape::Custom(mode) if mode == URL_ESCAPE) {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = match value.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(value.to_string()),
    };
    let encoded = url_value(&text)
        .map_err(|message| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))?;
    out.write_str(&encoded).map_err(minijinja::Error::from)
}

/// Fuel for one placeholder render: plenty for substitutions, too little for a loop bomb.
pub(super) const RENDER_FUEL: u64 = 20_000;

/// Fuel per profile a body template gets on top: a loop over a chunk's profiles costs
/// about 15 instructions and the bytes it writes per profile.
pub(super) const BODY_FUEL_PER_PROFILE: u64 = 100;
