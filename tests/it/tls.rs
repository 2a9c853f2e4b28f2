//! HTTPS destinations: deliveries and token requests reach a receiver whose CA the operator
//! trusts (`destination_ca_file`), over HTTP/2 when the receiver offers it; a receiver whose
//! certificate nobody trusts gets nothing; a request an HTTP/2 receiver refused unprocessed
//! is sent again at once; connections are kept and reused over HTTP/2 and HTTP/1.1 alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio_rustls::TlsAcceptor;

use crate::helpers::{TestApp, World, event, eventually};

/// A private CA and the certificate it signed for `localhost`.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn private_ca() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "webhook-dispatcher test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server parameters")
        .signed_by(&key, &*ca)
        .expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// One request as the HTTPS receiver saw it.
#[derive(Clone)]
struct Seen {
    version: Version,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An HTTPS receiver on 127.0.0.1 offering HTTP/2 and HTTP/1.1; `/token` answers as an
/// OAuth 2.0 token endpoint, every other path 200.
struct TlsReceiver {
    addr: SocketAddr,
    log: Log,
    /// Connections accepted (TLS handshake done).
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// A TLS acceptor with `pki`'s certificate, offering `alpn`.
fn acceptor(pki: &Pki, alpn: &[&[u8]]) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .expect("server certificate and key");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

impl TlsReceiver {
    async fn start(pki: &Pki) -> TlsReceiver {
        TlsReceiver::offering(pki, &[b"h2", b"http/1.1"]).await
    }

    /// A receiver offering `alpn` only.
    async fn offering(pki: &Pki, alpn: &[&[u8]]) -> TlsReceiver {
        let acceptor = acceptor(pki, alpn);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound");
        let log = Log::default();
        let app = Router::new().fallback(answer).with_state(log.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app, accepted) = (acceptor.clone(), app.clone(), accepted.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        TlsReceiver {
            addr,
            log,
            connections,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let log = self.log.lock().expect("log");
        log.iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(log): State<Log>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let seen = Seen {
        version: parts.version,
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body: axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default(),
    };
    let token = seen.path == "/token";
    log.lock().expect("log").push(seen);
    if token {
        return axum::Json(json!({"access_token": "tls-token", "token_type": "Bearer", "expires_in": 3600}))
            .into_response();
    }
    "ok".into_response()
}

fn ca_file(pki: &Pki) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &pki.ca_pem).expect("write the CA");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_and_token_requests_reach_an_https_receiver_whose_ca_is_trusted() {
    let pki = private_ca();
    let receiver = TlsReceiver::start(&pki).await;
    let ca = ca_file(&pki);
    let world = World::new(1);
    world
        .put_template(json!({
            "id": "private-ca", "url": receiver.url("/hook"), "batch_size": 10,
            "auth": {"type": "oauth2", "grant_type": "client_credentials",
                     "token_url": receiver.url("/token"), "client_id": "dispatcher", "client_secret": "s3cret"},
        }))
        .await;
    let app = TestApp::spawn(
        &world,
        &[("WD_DESTINATION_CA_FILE", ca.path().to_str().expect("UTF-8 path"))],
    )
    .await;
    world
        .produce(&[
            (None, event("a", "private-ca", 3)),
            (None, event("b", "private-ca", 2)),
        ])
        .await;
    eventually(Duration::from_secs(30), "both events delivered", || async {
        app.metrics.deliveries("delivered") == 2
    })
    .await;
    app.stop().await;

    assert_eq!(
        receiver.seen("/token").len(),
        1,
        "one token serves both deliveries"
    );
    let hooks = receiver.seen("/hook");
    let mut profiles: Vec<usize> = hooks
        .iter()
        .map(|hook| {
            assert_eq!(hook.version, Version::HTTP_2, "HTTP/2, negotiated over ALPN");
            assert_eq!(hook.header("authorization"), Some("Bearer tls-token"));
            assert_eq!(
                hook.header("user-agent"),
                Some(concat!("webhook-dispatcher/", env!("CARGO_PKG_VERSION")))
            );
            let body: serde_json::Value = serde_json::from_slice(&hook.body).expect("a JSON body");
            body["profiles"].as_array().expect("profiles").len()
        })
        .collect();
    profiles.sort();
    assert_eq!(profiles, vec![2, 3]);
}

/// Deliveries one after another to an HTTPS receiver offering `alpn`, one at a time
/// (`max_concurrency: 1`): the versions they arrived over, and the connections they took.
async fn one_by_one_over(alpn: &[&[u8]]) -> (Vec<Version>, usize) {
    let pki = private_ca();
    let receiver = TlsReceiver::offering(&pki, alpn).await;
    let ca = ca_file(&pki);
    let world = World::new(1);
    world
        .put_template(json!({"id": "kept", "url": receiver.url("/hook"), "max_concurrency": 1}))
        .await;
    let app = TestApp::spawn(
        &world,
        &[("WD_DESTINATION_CA_FILE", ca.path().to_str().expect("UTF-8 path"))],
    )
    .await;
    let events: Vec<_> = (0..20)
        .map(|i| (None, event(&format!("e{i}"), "kept", 1)))
        .collect();
    world.produce(&events).await;
    eventually(Duration::from_secs(30), "every event delivered", || async {
        app.metrics.deliveries("delivered") == 20
    })
    .await;
    app.stop().await;
    let versions = receiver.seen("/hook").iter().map(|seen| seen.version).collect();
    (versions, receiver.connections.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_are_kept_and_reused_over_http2_and_http1() {
    let (versions, connections) = one_by_one_over(&[b"h2", b"http/1.1"]).await;
    assert_eq!(versions, vec![Version::HTTP_2; 20]);
    assert_eq!(connections, 1, "one HTTP/2 connection carries every request");
    let (versions, connections) = one_by_one_over(&[b"http/1.1"]).await;
    assert_eq!(versions, vec![Version::HTTP_11; 20]);
    assert_eq!(
        connections, 1,
        "one kept-alive HTTP/1.1 connection carries every request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_certificate_is_not_trusted_gets_nothing() {
    let pki = private_ca();
    let receiver = TlsReceiver::start(&pki).await;
    let world = World::new(1);
    world
        .put_template(json!({"id": "untrusted", "url": receiver.url("/hook"), "max_retries": 0}))
        .await;
    // No destination_ca_file: only the public roots are trusted.
    let app = TestApp::spawn(&world, &[]).await;
    world.produce(&[(None, event("a", "untrusted", 1))]).await;
    eventually(Duration::from_secs(30), "dead-lettered", || async {
        app.metrics.deliveries("dead_lettered") == 1
    })
    .await;
    app.stop().await;

    assert!(
        receiver.seen("/hook").is_empty(),
        "no request got past the handshake"
    );
    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason(), "retries_exhausted");
    let error = &letters[0].headers["wd-last-error"];
    assert!(
        error.starts_with("connection error") && error.contains("certificate"),
        "{error}"
    );
}

/// An HTTP/2-only receiver that resets the first `refuse` streams with REFUSED_STREAM (a
/// server shedding load: the request was not processed) and answers 200 to the rest.
/// Returns its port and the count of streams it saw.
async fn refusing_receiver(pki: &Pki, refuse: usize) -> (u16, Arc<AtomicUsize>) {
    let acceptor = acceptor(pki, &[b"h2"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut connection) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    if seen.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let answer = http::Response::builder()
                            .status(200)
                            .body(())
                            .expect("a response");
                        let _ = respond.send_response(answer, true);
                    });
                }
            });
        }
    });
    (port, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_unprocessed_over_http2_is_sent_again_at_once() {
    let pki = private_ca();
    let (port, streams) = refusing_receiver(&pki, 2).await;
    let ca = ca_file(&pki);
    let world = World::new(1);
    world
        .put_template(json!({"id": "shedding", "url": format!("https://localhost:{port}/hook")}))
        .await;
    let app = TestApp::spawn(
        &world,
        &[("WD_DESTINATION_CA_FILE", ca.path().to_str().expect("UTF-8 path"))],
    )
    .await;
    world.produce(&[(None, event("a", "shedding", 1))]).await;
    eventually(Duration::from_secs(30), "delivered", || async {
        app.metrics.deliveries("delivered") == 1
    })
    .await;
    let retried = app.metrics.deliveries("retried");
    app.stop().await;

    assert_eq!(streams.load(Ordering::SeqCst), 3, "refused twice, then answered");
    assert_eq!(retried, 0, "sent again at once, not parked on a retry tier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_stalling_the_handshake_is_a_timeout_after_ten_seconds() {
    // Accepts connections and never answers the TLS handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("bound").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            open.push(tcp);
        }
    });
    let world = World::new(1);
    // A template timeout longer than the connect limit: connecting is what times out.
    world
        .put_template(
            json!({"id": "stalling", "url": format!("https://localhost:{port}/hook"),
                             "timeout_ms": 60000, "max_retries": 0}),
        )
        .await;
    let app = TestApp::spawn(&world, &[]).await;
    world.produce(&[(None, event("a", "stalling", 1))]).await;
    eventually(Duration::from_secs(40), "dead-lettered", || async {
        app.metrics.deliveries("dead_lettered") == 1
    })
    .await;
    app.stop().await;
    held.abort();

    let letters = world.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].headers["wd-last-error"], "timeout");
}
