//! What the stage benchmarks share: the event and template of `scripts/bench` (5 profiles,
//! one 609-byte request per event) and a minimal HTTP/1.1 sink on loopback.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{Value, json};
use webhook_dispatcher::event::{EventLimits, TriggerEvent};
use webhook_dispatcher::template::{Prepared, Template};

pub const LIMITS: EventLimits = EventLimits {
    max_bytes: 1 << 20,
    max_profiles: 10_000,
};

/// The trigger record `scripts/bench` produces, as bytes.
pub fn event_bytes(i: usize) -> Vec<u8> {
    let profiles: Vec<Value> = (0..5)
        .map(|p| {
            json!({"Identity": format!("user-{i:07}-{p}"), "Email": format!("user.{i:07}.{p}@example.com"),
                   "push_token": format!("tok-{i:07}-{p}")})
        })
        .collect();
    json!({"event_id": format!("bench-{i:07}"), "template_id": "bench", "targetId": 1234,
           "key_values": {"campaign": "spring-sale", "channel": "push", "note": "x".repeat(16)},
           "profiles": profiles})
    .to_string()
    .into_bytes()
}

pub fn event(i: usize) -> TriggerEvent {
    TriggerEvent::parse(&event_bytes(i), LIMITS).expect("valid event")
}

/// `scripts/bench`'s template (`auth`: none, basic or signed) sending to `base`.
pub fn template(base: &str, auth: &str) -> Prepared {
    let mut t = json!({"id": "bench", "url": format!("{base}/hooks/{{{{ targetId }}}}"), "method": "POST",
                       "headers": {"X-Source": "campaigns"}, "batch_size": 100, "timeout_ms": 5000});
    match auth {
        "basic" => {
            t["auth"] = json!({"type": "basic", "username": "campaigns", "password": "bench-password"})
        }
        "signed" => t["signing_secret"] = json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        _ => {}
    }
    serde_json::from_value::<Template>(t)
        .expect("valid template")
        .prepare()
        .expect("template prepares")
}

/// An HTTP/1.1 sink on 127.0.0.1 answering every request `200` with an empty body, one
/// thread per connection and no allocation per request (its cost stays out of the client's
/// thread). Returns `http://127.0.0.1:PORT`.
pub fn sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    base
}

fn serve(mut stream: std::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        // One request: headers, then Content-Length bytes of body.
        let (head_end, length) = loop {
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                break (end + 4, content_length(&buf[..end]));
            }
            match stream.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        };
        while filled < head_end + length {
            match stream.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
        buf.copy_within(head_end + length..filled, 0);
        filled -= head_end + length;
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?.trim();
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .next()
        .unwrap_or(0)
}
