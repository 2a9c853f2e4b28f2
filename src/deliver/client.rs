//! The one client every delivery goes through: one pool of connections for both schemes
//! ([`super::pool`]: HTTP/1.1, and HTTP/2 where a TLS destination offers it, over rustls);
//! no redirects, no proxy, the SSRF guard as
//! the DNS resolver, a per-template timeout, the template's credentials and signature, and
//! the answer's body read up to 64 KiB and dropped. OAuth 2.0 token requests go through reqwest
//! with the same resolver and TLS settings (they are rare; its form and JSON helpers are not).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use tracing::{debug, info, warn};

use super::answer::{MAX_REFUSALS, failure, read_answer, refused_unprocessed, token_failure};
use super::circuit::{Admit, Breakers, ProbeGuard, Transition};
use super::connector::{tls_config, token_client};
use super::headers::request_headers;
use super::limits::{Hosts, Limits, Rate};
use super::outcome::{AttemptResult, status_class};
use super::pool::Pool;
use super::rates::{Answer, Rates, SharedLimits};
use crate::auth::{self, Auth, OAuth2, SharedTokens, Token, TokenError, Tokens};
use crate::guard::NetworkPolicy;
use crate::metrics::Metrics;
use crate::render::Delivery;
use crate::telemetry::chain;
use crate::template::Prepared;
use crate::trace::TraceParent;

/// One attempt: what happened, how long it took, and a human-readable detail: for a
/// failure to connect its cause, for an answer other than 2xx the start of its body.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: AttemptResult,
    pub latency: Duration,
}

impl Attempt {
    /// An attempt that ended before a request was sent (guard, token, open breaker).
    fn without_request(result: AttemptResult) -> Attempt {
        Attempt {
            result,
            latency: Duration::ZERO,
        }
    }

    /// What happened, for people and for `wd-last-error` ([`AttemptResult::describe`]).
    pub fn describe(&self) -> String {
        self.result.describe()
    }
}

/// Counts one request in `webhook_inflight_requests` while it lives, so a request aborted
/// mid-flight (the end of a drain) leaves the gauge right.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The delivery client. Each event loop (`worker_threads`) has its own, with its own
/// connection pool and share of `max_inflight`; the per-host limits, breakers and tokens are
/// the process's ([`Sending`]).
#[derive(Clone)]
pub struct Sender {
    pool: Arc<Pool>,
    limits: Arc<Limits>,
    breakers: Arc<Breakers>,
    metrics: Arc<Metrics>,
    policy: Arc<NetworkPolicy>,
    tokens: Arc<Tokens>,
}

/// What the sender is built from.
pub struct SenderOptions {
    /// Requests in flight: the process's, shared out between the event loops.
    pub max_inflight: usize,
    pub max_per_host: usize,
    pub policy: NetworkPolicy,
    /// CA certificates trusted besides the public roots (`destination_ca_file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Where OAuth 2.0 tokens are shared between replicas (none in the demo).
    pub shared_tokens: Option<SharedTokens>,
    /// Where templates' rates are shared between replicas (none in the demo).
    pub shared_limits: Option<SharedLimits>,
}

/// What every event loop's sender shares: per-host limits and rates, circuit breakers,
/// OAuth 2.0 tokens, the SSRF guard's policy and the TLS settings.
pub struct Sending {
    hosts: Arc<Hosts>,
    max_per_host: usize,
    breakers: Arc<Breakers>,
    metrics: Arc<Metrics>,
    policy: Arc<NetworkPolicy>,
    tls: Arc<rustls::ClientConfig>,
    tokens: Arc<Tokens>,
}

impl Sending {
    pub fn new(options: SenderOptions, metrics: Arc<Metrics>) -> anyhow::Result<Sending> {
        let policy = Arc::new(options.policy);
        let tls = Arc::new(tls_config(&options.extra_roots)?);
        let tokens = Tokens::new(
            token_client(&policy, &tls)?,
            policy.clone(),
            options.shared_tokens,
            metrics.clone(),
            auth::system_clock(),
        );
        Ok(Sending {
            max_per_host: options.max_per_host,
            hosts: Hosts::with_rates(
                options.max_per_host,
                Rates::new(options.shared_limits, Some(metrics.clone())),
            ),
            breakers: Arc::default(),
            metrics,
            policy,
            tls,
            tokens: Arc::new(tokens),
        })
    }

    /// Writes this replica's heartbeat, which the shared rate limits' fallback counts
    /// replicas by, until `stop`.
    pub fn heartbeat(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let hosts = self.hosts.clone();
        async move { hosts.rates.heartbeat(stop).await }
    }

    /// An event loop's sender: its own connections (a pooled connection is served by the
    /// loop that opened it) and `max_inflight` requests in flight, its share.
    ///
    /// Its idle connections are capped per host at what it can have in flight to one host
    /// (`max_per_host`, or its `max_inflight` when fewer): more could never all be in use at
    /// once. After a burst, the connections beyond that are closed, not kept for a minute.
    pub fn sender(&self, max_inflight: usize) -> Sender {
        let max_idle = self.max_per_host.min(max_inflight);
        Sender {
            pool: Arc::new(Pool::new(&self.policy, &self.tls, max_idle)),
            limits: Arc::new(Limits::of_loop(self.hosts.clone(), max_inflight)),
            breakers: self.breakers.clone(),
            metrics: self.metrics.clone(),
            policy: self.policy.clone(),
            tokens: self.tokens.clone(),
        }
    }
}

impl Sender {
    /// The sender of a process with one event loop.
    pub fn new(options: SenderOptions, metrics: Arc<Metrics>) -> anyhow::Result<Sender> {
        let max_inflight = options.max_inflight;
        Ok(Sending::new(options, metrics)?.sender(max_inflight))
    }

    /// A template's rate after adapting to its destination's 429s (`None`: not adapted).
    pub fn effective_rate(&self, template_id: &str) -> Option<f64> {
        self.limits.effective_rate(template_id)
    }

    /// Requests waiting for their destination (rate or host permit): not processing slots.
    pub fn waiting(&self) -> usize {
        self.limits.waiting()
    }

    /// Changes when more requests wait for their destination (see `Limits::watch_waiting`).
    pub fn watch_waiting(&self) -> tokio::sync::watch::Receiver<usize> {
        self.limits.watch_waiting()
    }

    /// The OAuth 2.0 tokens of every template.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Sends `delivery` once: an OAuth 2.0 token first (waiting for it holds no permit, so
    /// a token endpoint that hangs slows only its own template), then room under the
    /// concurrency limits. A 401 drops the token, lets the permits go, and sends once more
    /// with a new one. `None` when the sender was closed before the request could start.
    pub async fn send(
        &self,
        delivery: &Delivery,
        template: &Prepared,
        campaign: i64,
        trace: &TraceParent,
    ) -> Option<Attempt> {
        if let Err(blocked) = self.policy.check_url(&delivery.url) {
            return Some(Attempt::without_request(AttemptResult::Blocked {
                why: blocked.0,
            }));
        }
        let credentials = match (&template.template.auth, &template.token_key) {
            (Auth::OAuth2(oauth), Some(key)) => Some((oauth.as_ref(), key.as_ref())),
            _ => None,
        };
        let mut renewed = false;
        loop {
            let token = match credentials {
                Some((oauth, key)) => match self.token(oauth, key).await {
                    Ok(token) => Some((oauth, token)),
                    Err(err) => return Some(Attempt::without_request(token_failure(err))),
                },
                None => None,
            };
            let attempt = self
                .send_with(delivery, template, campaign, token.as_ref(), trace)
                .await?;
            let refused = matches!(attempt.result, AttemptResult::Status { code: 401, .. });
            match (credentials, token) {
                (Some((_, key)), Some((_, token))) if refused && !renewed => {
                    debug!("destination answered 401; fetching a new token and sending again");
                    self.tokens.reject(key, &token).await;
                    renewed = true;
                }
                _ => return Some(attempt),
            }
        }
    }

    /// The token of a credential set: the cached one, or a wait for one counted as waiting
    /// for the destination (no permit, no processing slot).
    async fn token(&self, oauth: &OAuth2, key: &str) -> Result<Arc<Token>, TokenError> {
        match self.tokens.cached(key) {
            Some(token) => Ok(token),
            None => self.limits.waiting_for(self.tokens.get(oauth, key)).await,
        }
    }

    /// One request under the limits and the destination's breaker.
    async fn send_with(
        &self,
        delivery: &Delivery,
        template: &Prepared,
        campaign: i64,
        token: Option<&(&OAuth2, Arc<Token>)>,
        trace: &TraceParent,
    ) -> Option<Attempt> {
        let host = delivery.host_key();
        let _permits = self
            .limits
            .acquire(
                host.clone(),
                template.template.max_concurrency.map(|c| c as usize),
                Some(Rate {
                    template_id: &template.template.id,
                    per_second: template.template.rate_limit_per_sec,
                    concurrency: template.template.template_concurrency.map(|c| c as usize),
                    campaign,
                }),
            )
            .await?;
        // Asked with the permits in hand: requests that queued for a host while its breaker
        // was closed are refused too once it opens.
        let (admit, moved) = self.breakers.admit(&host, Instant::now());
        self.circuit_moved(moved, &host);
        if let Admit::Refuse { reopens_in } = admit {
            return Some(Attempt::without_request(AttemptResult::CircuitOpen {
                reopens_in,
            }));
        }
        let probe = (admit == Admit::Probe).then(|| ProbeGuard::new(&self.breakers, &host));
        let inflight = InFlight::new(self.metrics.inflight());
        let started = Instant::now();
        let token = token.map(|(oauth, token)| (*oauth, token.as_ref()));
        let result = self.exchange(delivery, template, token, trace).await;
        let latency = started.elapsed();
        self.learn(template, &result, started);
        drop(inflight);
        let settings = template.template.circuit_breaker.unwrap_or_default();
        let moved = self.breakers.record(
            &host,
            result.destination_failed(),
            probe.is_some(),
            Instant::now(),
            settings,
        );
        if let Some(probe) = probe {
            probe.answered();
        }
        self.circuit_moved(moved, &host);
        Some(Attempt { result, latency })
    }

    /// What the template's rate learns from an answer to a request `sent` then: what its
    /// destination accepts, and whether it asks to slow down.
    fn learn(&self, template: &Prepared, result: &AttemptResult, sent: Instant) {
        if matches!(result, AttemptResult::Status { code: 200..=299, .. }) {
            template.accepted.record(crate::park::now_ms() / 1000);
        }
        let answer = Answer {
            result,
            sent,
            accepted: &template.accepted,
        };
        let configured = template.template.rate_limit_per_sec;
        self.limits.observe(&template.template.id, configured, answer);
    }

    /// Counts and logs a breaker's move.
    fn circuit_moved(&self, moved: Option<Transition>, host: &str) {
        let Some(to) = moved else { return };
        self.metrics
            .circuit_transition(to.as_str(), self.breakers.open_count());
        match to {
            Transition::Opened => {
                warn!(
                    destination = host,
                    "circuit breaker open: the destination keeps failing; its deliveries are parked without an attempt until a probe succeeds"
                )
            }
            Transition::HalfOpened => {
                info!(destination = host, "circuit breaker half-open: sending one probe")
            }
            Transition::Closed => info!(
                destination = host,
                "circuit breaker closed: the destination answers again"
            ),
        }
    }

    /// Lets the requests in flight finish and starts no new ones (end of the drain).
    pub fn close(&self) {
        self.limits.close();
    }

    /// One HTTP request and its answer, counted in `webhook_requests_total`.
    async fn exchange(
        &self,
        delivery: &Delivery,
        template: &Prepared,
        token: Option<(&OAuth2, &Token)>,
        trace: &TraceParent,
    ) -> AttemptResult {
        let started = Instant::now();
        let result = self.request(delivery, template, token, trace).await;
        if !matches!(result, AttemptResult::Blocked { .. }) {
            self.metrics.request(
                delivery.method.into(),
                status_class(&result),
                started.elapsed().as_secs_f64(),
            );
        }
        result
    }

    /// Sends the request within the template's timeout, which covers the answer's headers
    /// and the part of its body read. A request the destination refused over HTTP/2 before
    /// processing it (GOAWAY without error, REFUSED_STREAM) is sent again at once, twice at
    /// most: it never reached the receiver's application, so this cannot duplicate it.
    async fn request(
        &self,
        delivery: &Delivery,
        template: &Prepared,
        token: Option<(&OAuth2, &Token)>,
        trace: &TraceParent,
    ) -> AttemptResult {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(template.template.timeout_ms);
        let mut refusals = 0;
        loop {
            let headers = match request_headers(delivery, template, token, trace) {
                Ok(headers) => headers,
                Err(failed) => return failed,
            };
            let mut request = http::Request::new(Full::new(delivery.body.clone().unwrap_or_default()));
            *request.method_mut() = http::Method::from(delivery.method);
            *request.headers_mut() = headers;
            match tokio::time::timeout_at(deadline, self.pool.send(request, &delivery.url)).await {
                Ok(Ok((response, connection))) => {
                    // The connection is kept for the next request only when the answer was
                    // read to the end within the timeout.
                    let (answer, read_to_end) = read_answer(response, deadline).await;
                    if read_to_end {
                        connection.release();
                    }
                    return answer;
                }
                Ok(Err(err)) if refusals < MAX_REFUSALS && refused_unprocessed(&*err) => {
                    refusals += 1;
                    debug!(error = %chain(&*err), "the destination refused the request unprocessed; sending it again");
                }
                Ok(Err(err)) => return failure(&*err),
                Err(_) => return AttemptResult::Timeout { cause: None },
            }
        }
    }
}
