//! The one HTTP client every delivery goes through: pooled connections, rustls, no
//! redirects, a per-template timeout, and the answer's body read up to 64 KiB and dropped.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::redirect::Policy;

use super::limits::Limits;
use super::outcome::{AttemptResult, parse_retry_after, status_class};
use crate::metrics::Metrics;
use crate::render::Delivery;
use crate::template::{Auth, Template};

/// How much of an answer's body is read (then discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

pub const USER_AGENT: &str = concat!("webhook-dispatcher/", env!("CARGO_PKG_VERSION"));

/// One attempt: what happened, how long it took, and a human-readable detail for logs.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: AttemptResult,
    pub latency: Duration,
    pub detail: Option<String>,
}

pub struct Sender {
    client: reqwest::Client,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub fn new(
        max_inflight: usize,
        max_per_host: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Sender, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Sender {
            client,
            limits: Limits::new(max_inflight, max_per_host),
            metrics,
        })
    }

    /// Sends `delivery` once, waiting first for room under the concurrency limits. `None`
    /// when the sender was closed before the request could start.
    pub async fn send(&self, delivery: &Delivery, template: &Template) -> Option<Attempt> {
        let _permits = self
            .limits
            .acquire(delivery.host_key(), template.max_concurrency.map(|c| c as usize))
            .await?;
        let inflight = self.metrics.inflight();
        inflight.inc();
        let started = Instant::now();
        let (result, detail) = self.attempt(delivery, template).await;
        let latency = started.elapsed();
        inflight.dec();
        self.metrics.request(
            delivery.method.as_str(),
            status_class(&result),
            latency.as_secs_f64(),
        );
        Some(Attempt {
            result,
            latency,
            detail,
        })
    }

    /// Lets the requests in flight finish and starts no new ones (end of the drain).
    pub fn close(&self) {
        self.limits.close();
    }

    async fn attempt(&self, delivery: &Delivery, template: &Template) -> (AttemptResult, Option<String>) {
        let method =
            reqwest::Method::from_bytes(delivery.method.as_str().as_bytes()).expect("static method names");
        let mut request = self
            .client
            .request(method, delivery.url.clone())
            .headers(delivery.headers.clone())
            .timeout(Duration::from_millis(template.timeout_ms));
        if let Auth::Basic { username, password } = &template.auth {
            request = request.basic_auth(username, Some(password.expose()));
        }
        if let Some(body) = &delivery.body {
            request = request.body(body.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => return failure(err),
        };
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read (part of) the body so the connection can be reused; its content is not used.
        let mut read = 0;
        while read < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        (AttemptResult::Status { code, retry_after }, None)
    }
}

fn failure(err: reqwest::Error) -> (AttemptResult, Option<String>) {
    // The URL may carry rendered personal data; keep it out of the detail.
    let err = err.without_url();
    let result = if err.is_timeout() {
        AttemptResult::Timeout
    } else {
        AttemptResult::Connection
    };
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    (result, Some(detail))
}
