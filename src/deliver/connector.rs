//! How outgoing requests connect (deliveries through [`super::pool`], token requests through
//! reqwest): the SSRF guard as the resolver, TLS with the public roots plus the operator's
//! CAs, HTTP/2 over ALPN, one limit on connecting (DNS, TCP and TLS together), TCP
//! keepalive on pooled connections, no redirects and no proxy (a proxy would connect on our
//! behalf, past the guard).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::redirect::Policy;
use rustls::pki_types::CertificateDer;

use super::headers::USER_AGENT;
use crate::guard::{GuardedResolver, NetworkPolicy};

/// Resolving, connecting and the TLS handshake together: a destination that takes longer
/// is a timeout, whatever the template's own `timeout_ms`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are closed after this.
pub(super) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keepalive, as reqwest sets it: a pooled connection a NAT or load balancer dropped
/// silently is noticed while idle instead of on the next request.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged data older than this ends the connection (Linux `TCP_USER_TIMEOUT`).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS settings of deliveries and token requests: TLS 1.2 and 1.3, the public web roots
/// (Mozilla's, as webpki-roots ships them) and the operator's own CAs.
pub(super) fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// TCP connections to destinations: resolved through the SSRF guard, no Nagle, keepalive.
fn tcp_connector(policy: &Arc<NetworkPolicy>) -> HttpConnector<GuardedResolver> {
    let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
        policy: policy.clone(),
    });
    // The TLS connector above it takes https.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(KEEPALIVE));
    tcp.set_keepalive_interval(Some(KEEPALIVE));
    tcp.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    #[cfg(target_os = "linux")]
    tcp.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    tcp
}

/// How plain `http://` destinations are connected to: TCP only.
pub(super) type PlainConnector = ConnectTimeout<HttpConnector<GuardedResolver>>;

pub(super) fn plain_connector(policy: &Arc<NetworkPolicy>) -> PlainConnector {
    ConnectTimeout {
        inner: tcp_connector(policy),
        limit: CONNECT_TIMEOUT,
    }
}

/// How `https://` destinations are connected to: TCP, then TLS offering HTTP/2 and
/// HTTP/1.1 in ALPN (the pool speaks what the destination picks).
pub(super) type TlsConnector = ConnectTimeout<HttpsConnector<HttpConnector<GuardedResolver>>>;

pub(super) fn tls_connector(policy: &Arc<NetworkPolicy>, tls: &rustls::ClientConfig) -> TlsConnector {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp_connector(policy));
    ConnectTimeout {
        inner: https,
        limit: CONNECT_TIMEOUT,
    }
}

/// The client of OAuth 2.0 token requests: token endpoints are destinations too, so the same
/// guard, TLS settings (HTTP/2 offered), limits and no redirects or proxy.
pub(super) fn token_client(
    policy: &Arc<NetworkPolicy>,
    tls: &rustls::ClientConfig,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(USER_AGENT)
        .redirect(Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector whose connections must be ready (resolved, connected, TLS done) within
/// `limit`; past it the attempt fails with an `io::ErrorKind::TimedOut` error.
#[derive(Clone)]
pub(super) struct ConnectTimeout<C> {
    inner: C,
    limit: Duration,
}

impl<C> tower_service::Service<Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took over {} s", limit.as_secs()),
                )) as BoxError),
            }
        })
    }
}
