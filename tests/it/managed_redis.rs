//! The Redis that managed clouds sell: TLS with a CA of their own and, where asked, a client
//! certificate (ElastiCache, Memorystore, Azure Cache), against Debian's redis-server.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use webhook_dispatcher::demo::receiver::{Receiver, Reply};

use crate::helpers::{OwnRedis, TestApp, World, event, eventually, free_port};

/// Writes a private CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`) it signed into `dir`.
fn write_pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "managed Redis test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, names) in [
        ("server", vec!["127.0.0.1".to_string()]),
        ("client", vec!["webhook-dispatcher".to_string()]),
    ] {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("parameters")
            .signed_by(&key, &*ca)
            .expect("certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

async fn readiness(app: &TestApp) -> serde_json::Value {
    let answer = reqwest::get(format!("http://{}/readyz", app.api)).await.unwrap();
    serde_json::from_str(&answer.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_over_tls_with_a_private_ca_and_a_client_certificate_serves_templates() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let port = free_port();
    let _redis = OwnRedis::start_tls(port, dir.path());
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let url = format!("rediss://127.0.0.1:{port}");
    let world = World::new(1);
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let app = TestApp::spawn(
        &world,
        &[
            ("WD_REDIS_URL", &url),
            ("WD_REDIS_CA_FILE", &ca),
            ("WD_REDIS_CLIENT_CERT_FILE", &cert),
            ("WD_REDIS_CLIENT_KEY_FILE", &key),
        ],
    )
    .await;
    // Through the admin API, so the template lands in the TLS Redis.
    let client = reqwest::Client::new();
    let template = json!({"id": "t", "url": receiver.url("/hook")});
    eventually(Duration::from_secs(20), "the template saved over TLS", || async {
        client
            .put(format!("http://{}/v1/templates/t", app.api))
            .bearer_auth("test-admin-token")
            .header("content-type", "application/json")
            .body(template.to_string())
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
    })
    .await;
    world.produce(&[(None, event("e1", "t", 1))]).await;
    eventually(Duration::from_secs(20), "the event delivered", || async {
        receiver.requests().iter().any(|r| r.uri == "/hook")
    })
    .await;
    assert_eq!(readiness(&app).await["redis_up"], true);
    app.stop().await;

    // The same server refuses a client without a certificate: not ready, saying Redis.
    let without = TestApp::spawn(&world, &[("WD_REDIS_URL", &url), ("WD_REDIS_CA_FILE", &ca)]).await;
    // A negative: it stays so while the first app became ready in well under a second.
    for _ in 0..10 {
        let body = readiness(&without).await;
        assert_eq!(body["redis_up"], false, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    without.stop().await;
}
