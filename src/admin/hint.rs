//! What a failed test request means for the person who set the webhook up, in plain words
//! with what to check: the report's `error` stays exact (`connection error: … (os error
//! 111)`), and the console shows this instead.

use crate::auth::Auth;
use crate::deliver::{Attempt, AttemptResult};
use crate::render::Delivery;
use crate::template::Template;

/// The plain-words reading of a failed `attempt` of `delivery`; `None` when it passed.
pub fn hint(attempt: &Attempt, delivery: &Delivery, template: &Template) -> Option<String> {
    let host = delivery.host_key();
    Some(match &attempt.result {
        AttemptResult::Status { code: 200, .. } => return None,
        AttemptResult::Status { code, .. } => status_hint(*code, template, &host),
        AttemptResult::Timeout { .. } => format!(
            "{host} did not answer within {} ms: check the URL, or raise the timeout.",
            template.timeout_ms
        ),
        AttemptResult::Connection { cause } => connection_hint(cause, &host),
        AttemptResult::Auth { why } => token_hint(why),
        AttemptResult::Blocked { .. } => format!(
            "{host} is a private or local address, which webhooks may not reach; an operator can \
             allow its network with WD_ALLOWED_NETWORKS."
        ),
        AttemptResult::CircuitOpen { .. } => {
            format!("{host} keeps failing, so requests to it are paused for a while; try again later.")
        }
    })
}

fn status_hint(code: u16, template: &Template, host: &str) -> String {
    match code {
        401 | 403 => match &template.auth {
            Auth::None => {
                format!("{host} wants credentials (HTTP {code}): set Authentication to Basic or OAuth 2.0.")
            }
            Auth::Basic { .. } => {
                format!("{host} refused the credentials (HTTP {code}): check the username and password.")
            }
            Auth::OAuth2(_) => format!(
                "{host} refused the token (HTTP {code}): check the client, its scopes and the token header."
            ),
        },
        404 => format!("{host} has nothing at this path (HTTP 404): check the URL's path."),
        405 => format!(
            "{host} does not take {} here (HTTP 405): check the method.",
            template.method.as_str()
        ),
        300..=399 => format!("{host} redirects (HTTP {code}): use the URL it redirects to."),
        400..=499 => {
            format!("{host} refused the request (HTTP {code}): check the headers and what it expects.")
        }
        500..=599 => format!("{host} failed (HTTP {code}): the destination has a problem; try again later."),
        _ => format!("{host} answered HTTP {code}; only 200 OK saves a webhook."),
    }
}

fn connection_hint(detail: &str, host: &str) -> String {
    let has = |needle: &str| detail.to_ascii_lowercase().contains(needle);
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if has("connection refused") {
        format!("Nothing answers at {host}: check the host and port, and that the destination is running.")
    } else if has("lookup") || has("name or service") || has("dns") || has("resolve") {
        format!("The host name {name} cannot be found: check it for typos.")
    } else if has("certificate") || has("unknownissuer") || has("tls") || has("handshake") {
        format!(
            "{host}'s HTTPS certificate is not trusted: a private CA needs WD_DESTINATION_CA_FILE, \
             or the certificate does not name {name}."
        )
    } else if has("reset") || has("closed") || has("broken pipe") {
        format!("{host} closed the connection before answering.")
    } else {
        format!("Could not connect to {host}.")
    }
}

fn token_hint(detail: &str) -> String {
    let has = |needle: &str| detail.contains(needle);
    if has("invalid_client") {
        "The token endpoint refused the client: check the client ID and secret, and how they are sent.".into()
    } else if has("invalid_grant") {
        "The token endpoint refused the grant: check the username and password.".into()
    } else if has("invalid_scope") {
        "The token endpoint refused the scopes: check them.".into()
    } else if has("unauthorized_client") {
        "The token endpoint does not allow this client that grant type.".into()
    } else {
        "No token could be had from the token endpoint: press Generate to see its answer.".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(result: AttemptResult, template: serde_json::Value) -> String {
        let template: Template = serde_json::from_value(template).unwrap();
        let delivery = Delivery {
            chunk: 0,
            method: template.method,
            url: "http://hooks.example:8081/in".parse().unwrap(),
            headers: Default::default(),
            body: None,
            profiles: 0..1,
        };
        let attempt = Attempt {
            result,
            latency: std::time::Duration::ZERO,
        };
        hint(&attempt, &delivery, &template).expect("a failure has a hint")
    }

    #[test]
    fn failures_read_in_plain_words_with_what_to_check() {
        let basic = serde_json::json!({"id": "t", "url": "http://hooks.example:8081/in",
                                       "auth": {"type": "basic", "username": "u", "password": "p"}});
        let status = |code| AttemptResult::Status {
            code,
            retry_after: None,
            said: None,
        };
        assert!(case(status(401), basic.clone()).contains("check the username and password"));
        let refused = case(
            AttemptResult::Connection {
                cause: "client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
            },
            basic.clone(),
        );
        assert_eq!(
            refused,
            "Nothing answers at hooks.example:8081: check the host and port, and that the destination is running."
        );
        assert!(!refused.contains("os error"));
        let grant = case(
            AttemptResult::Auth {
                why: "token endpoint answered 400: invalid_grant".into(),
            },
            basic.clone(),
        );
        assert!(grant.contains("refused the grant"), "{grant}");
        assert!(case(status(404), basic.clone()).contains("check the URL's path"));
        assert!(case(AttemptResult::Timeout { cause: None }, basic).contains("within 5000 ms"));
    }
}
