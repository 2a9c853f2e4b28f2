//! The answer to one request, or why there is none: its status and `Retry-After`, the
//! start of an error answer's body, and failures to connect in words without the URL.

use std::time::SystemTime;

use http::header::RETRY_AFTER;
use http_body_util::BodyExt;

use super::outcome::{AttemptResult, parse_retry_after};
use crate::auth::TokenError;
use crate::guard::blocked_cause;
use crate::telemetry::{cause, chain};

/// The most of an error answer's body an attempt keeps (what the test report shows).
pub const ANSWER_EXCERPT: usize = 256;

/// How much of an answer's body is read (then discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How many times in a row a request refused unprocessed is sent again (reqwest's default).
pub(super) const MAX_REFUSALS: u32 = 2;

/// Whether the destination refused the request over HTTP/2 without processing it: a
/// graceful GOAWAY (NO_ERROR) or a REFUSED_STREAM reset, both safe to send again.
pub(super) fn refused_unprocessed(err: &(dyn std::error::Error + 'static)) -> bool {
    cause::<h2::Error>(err).is_some_and(|h2| {
        let reason = h2.reason();
        h2.is_remote()
            && ((h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
                || (h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)))
    })
}

/// The answer's status, and whether its body was read to the end (past 64 KiB, or the
/// deadline, it is not).
pub(super) async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
    deadline: tokio::time::Instant,
) -> (AttemptResult, bool) {
    let code = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Read (part of) the body so the connection can be reused; of an error answer the first
    // bytes are kept (what the destination said is often the best hint). The status stands
    // whatever happens to the body.
    let mut body = response.into_body();
    let keep = if (200..300).contains(&code) {
        0
    } else {
        ANSWER_EXCERPT
    };
    let mut excerpt = Vec::new();
    let drain = async {
        let mut read = 0;
        while read < MAX_RESPONSE_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let data = frame.data_ref().map_or(&[][..], |d| &d[..]);
                    let room = keep.saturating_sub(excerpt.len());
                    excerpt.extend_from_slice(&data[..data.len().min(room)]);
                    read += data.len();
                }
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        false
    };
    let read_to_end = tokio::time::timeout_at(deadline, drain).await.unwrap_or(false);
    let said = String::from_utf8_lossy(&excerpt)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    let said = (!said.is_empty()).then_some(said);
    (
        AttemptResult::Status {
            code,
            retry_after,
            said,
        },
        read_to_end,
    )
}

pub(super) fn token_failure(err: TokenError) -> AttemptResult {
    match err {
        TokenError::Blocked(blocked) => AttemptResult::Blocked {
            why: format!("token_url: {}", blocked.0),
        },
        other => AttemptResult::Auth {
            why: other.to_string(),
        },
    }
}

pub(super) fn failure(err: &(dyn std::error::Error + 'static)) -> AttemptResult {
    if let Some(blocked) = blocked_cause(err) {
        return AttemptResult::Blocked {
            why: blocked.0.clone(),
        };
    }
    // hyper's and hyper-util's errors never carry the URL (it may hold rendered personal data).
    let why = chain(err);
    if cause::<std::io::Error>(err).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
        // Connecting (DNS, TCP, TLS) took over its limit.
        return AttemptResult::Timeout { cause: Some(why) };
    }
    AttemptResult::Connection { cause: why }
}
