//! Standard Webhooks signatures (a template's `signing_secret`): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed with the base64 key after the secret's `whsec_` prefix.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The key inside a `whsec_…` secret; `Err` says what is wrong with it.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("must start with {PREFIX:?}"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| format!("must be {PREFIX} followed by base64"))?;
    if key.len() < 16 {
        return Err("key must be at least 16 bytes".into());
    }
    Ok(key)
}

/// `v1,<signature>` for one message.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    // An i64 is at most 20 characters: formatted on the stack.
    let mut digits = [0u8; 20];
    let written = {
        let mut cursor = &mut digits[..];
        write!(cursor, "{timestamp}").expect("an i64 fits in 20 bytes");
        20 - cursor.len()
    };
    mac.update(&digits[..written]);
    mac.update(b".");
    mac.update(body);
    let mut out = String::with_capacity(3 + 44);
    out.push_str("v1,");
    STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
    out
}

/// Adds the three signature headers to `headers`.
pub fn sign(headers: &mut HeaderMap, key: &[u8], id: &str, timestamp: i64, body: &[u8]) {
    let value = |s: String| HeaderValue::try_from(s).expect("ids and base64 are valid header values");
    headers.insert(WEBHOOK_ID.clone(), value(id.to_string()));
    headers.insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(timestamp));
    headers.insert(
        WEBHOOK_SIGNATURE.clone(),
        value(signature(key, id, timestamp, body)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
    }
}
