//! HTTP Basic authentication (RFC 7617): for destinations with `auth.type = "basic"` and for
//! OAuth 2.0 clients that authenticate to their token endpoint with a Basic header.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderValue;

/// `Basic base64(username:password)`, marked sensitive so it is never logged.
pub fn basic_header(username: &str, password: &str) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{username}:{password}"));
    let mut value =
        HeaderValue::try_from(format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}
