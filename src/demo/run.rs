//! `webhook-dispatcher demo`: the whole service on one machine with nothing installed.
//! An embedded Kafka cluster, three local receivers (healthy; Basic-auth protected and
//! flaky; OAuth 2.0 protected and slow, one request per profile) and a local OAuth 2.0
//! token endpoint, in-memory templates, a few thousand sample
//! triggers plus some bad ones, a progress bar and a closing summary. This module sets it
//! all up; [`summary`] watches the deliveries and tells what happened.

mod summary;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::embedded_kafka::{EmbeddedKafka, partitions_for};
use super::receiver::{Received, Receiver, Reply};
use super::token_server::{TokenServer, TokenServerOptions};
use crate::config::{Config, LogFormat};
use crate::template::{MemoryStore, Template, TemplateStore};
use crate::{App, Templates};
use summary::{report, summary, thousands, watch};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Trigger events to publish.
    #[arg(long, default_value_t = 3000)]
    pub events: usize,
    /// Partitions of the trigger topic (more when the events need them: the embedded
    /// cluster keeps 5 MiB per partition).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Give up waiting for the deliveries after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Keep the service (and its web console) up after the deliveries settle, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

const TOPIC: &str = "campaign-triggers";
const DLQ_TOPIC: &str = "webhook-dlq";
const HELPDESK_USER: &str = "campaigns";
const HELPDESK_PASSWORD: &str = "demo-password";

/// The demo ended before every delivery settled; its summary (`"finished": false` with
/// `--json`) says so, and the command exits with code 1.
#[derive(Debug, thiserror::Error)]
#[error("the demo did not finish in time")]
pub struct Unfinished;

/// A line for people: on stdout, or on stderr when stdout carries the JSON summary (`--json`).
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json { eprintln!($($arg)*) } else { println!($($arg)*) }
    };
}

/// Runs the demo; with `json` the closing summary is one JSON object on stdout (the rest
/// goes to stderr).
pub async fn run(options: DemoOptions, json: bool, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The summary tells the story; failures the demo provokes on purpose are not news.
    let _logs = crate::telemetry::init_with_default(LogFormat::Text, "error");
    let (events, expected) = sample_events(options.events);
    let Demo {
        kafka,
        receivers,
        app,
        console,
    } = Demo::start(&events, options.partitions, json).await?;
    let metrics = app.metrics();
    let stop = CancellationToken::new();
    let service = tokio::spawn(app.run(stop.clone()));

    say!(
        json,
        "  publishing {} trigger events and 3 bad records ({} deliveries expected)",
        thousands(events.len() as u64 - 3),
        thousands(expected)
    );
    publish(kafka.bootstrap_servers(), &events).await?;
    let progress = watch(&metrics, expected, options.timeout, &shutdown).await;
    if options.keep_running && !shutdown.is_cancelled() {
        say!(
            json,
            "  the service and its console stay up at {console}; Ctrl-C ends the demo"
        );
        shutdown.cancelled().await;
    }
    stop.cancel();
    service.await.context("dispatcher task")??;

    if json {
        println!("{}", summary(&metrics, &receivers, &progress));
    } else {
        report(&metrics, &receivers, &progress);
    }
    drop(kafka);
    if progress.finished {
        Ok(())
    } else {
        if !json {
            eprintln!("error: the demo did not finish within {:?}", options.timeout);
        }
        Err(Unfinished.into())
    }
}

/// What the demo stands on: the embedded cluster, the receivers and the service, built
/// (not yet running) with in-memory templates.
struct Demo {
    kafka: EmbeddedKafka,
    receivers: Receivers,
    app: App,
    /// The web console's address, printed with the admin token.
    console: String,
}

impl Demo {
    /// Starts Kafka with topics sized for `events`, the receivers and the token endpoint,
    /// builds the service, and prints where everything is.
    async fn start(events: &[(String, Vec<u8>)], min_partitions: i32, json: bool) -> anyhow::Result<Demo> {
        let bytes = events.iter().map(|(_, e)| e.len()).sum();
        let partitions = partitions_for(bytes, min_partitions);
        let kafka = EmbeddedKafka::start(&[
            (TOPIC, partitions),
            (DLQ_TOPIC, 1),
            ("webhook-retry-1", partitions),
            ("webhook-retry-2", partitions),
            ("webhook-retry-held", partitions),
        ])?;
        let receivers = Receivers::start().await;
        let store = Arc::new(MemoryStore::new());
        for template in receivers.templates() {
            store.put(&template).await?;
        }
        let admin_token = fresh_token();
        let config = demo_config(kafka.bootstrap_servers(), &admin_token)?;
        let app = App::build(config, Templates::Store(store)).await?;
        let console = format!("http://{}/console/", app.api_addr());
        say!(json, "webhook-dispatcher demo");
        say!(
            json,
            "  kafka      embedded mock cluster {}, topic {TOPIC} ({} partitions)",
            kafka.bootstrap_servers(),
            partitions
        );
        receivers.print(json);
        say!(
            json,
            "  endpoints  http://{}/metrics  http://{}/readyz",
            app.metrics_addr(),
            app.api_addr()
        );
        say!(json, "  console    {console}  (admin token {admin_token})");
        Ok(Demo {
            kafka,
            receivers,
            app,
            console,
        })
    }
}

fn demo_config(brokers: &str, admin_token: &str) -> anyhow::Result<Config> {
    Ok(Config::load_from(
        [
            ("WD_KAFKA_BROKERS", brokers),
            // The console signs in with it; printed below.
            ("WD_ADMIN_TOKEN", admin_token),
            ("WD_KAFKA_GROUP_ID", "webhook-dispatcher-demo"),
            ("WD_HTTP_ADDR", "127.0.0.1:0"),
            ("WD_METRICS_ADDR", "127.0.0.1:0"),
            ("WD_DRAIN_TIMEOUT", "5s"),
            // The demo's receivers listen on loopback, which the SSRF guard refuses by default.
            ("WD_ALLOWED_NETWORKS", "127.0.0.1/32"),
            // Short retry tiers so the demo's retries happen while you watch.
            ("WD_RETRY_DELAYS", "1s,2s"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )?)
}

struct Receivers {
    crm: Receiver,
    helpdesk: Receiver,
    sms: Receiver,
    tokens: Arc<TokenServer>,
}

impl Receivers {
    async fn start() -> Receivers {
        let expected = format!(
            "Basic {}",
            base64_encode(format!("{HELPDESK_USER}:{HELPDESK_PASSWORD}").as_bytes())
        );
        let tokens = Arc::new(
            TokenServer::start(TokenServerOptions {
                expires_in: Some(5),
                ..TokenServerOptions::default()
            })
            .await,
        );
        let issuer = tokens.clone();
        Receivers {
            crm: Receiver::counting(|_, _| Reply::status(200)).await,
            helpdesk: Receiver::counting(move |request, n| {
                if request.header("authorization") != Some(expected.as_str()) {
                    Reply::status(401)
                } else if n % 12 == 11 && !is_test(request) {
                    // A failing destination for the deliveries; never for the console's
                    // Test & Save, so the walkthrough of the README always saves.
                    Reply::status(503)
                } else {
                    // 200, as the console's Test & Save wants of a destination.
                    Reply::status(200)
                }
            })
            .await,
            sms: Receiver::counting(move |request, _| {
                let status = if issuer.authorizes(request) { 200 } else { 401 };
                Reply::status(status).after(Duration::from_millis(15))
            })
            .await,
            tokens,
        }
    }

    /// Each receiver with what a webhook for it needs, so one can be added in the console.
    fn print(&self, json: bool) {
        let o = self.tokens.options();
        say!(json, "  receivers  crm {}  (no auth)", self.crm.url("/"));
        say!(
            json,
            "             helpdesk {}  (Basic auth, username {HELPDESK_USER}, password {HELPDESK_PASSWORD}; 1 in 12 answers 503, retried after 1 s)",
            self.helpdesk.url("/")
        );
        say!(
            json,
            "             sms {}  (OAuth 2.0 bearer tokens, 5 s lifetime; 15 ms; one request per profile)",
            self.sms.url("/")
        );
        say!(
            json,
            "             token URL {}  client id {}, client secret {} (Basic auth header); password grant: username {}, password {}",
            self.tokens.url(),
            o.client_id,
            o.client_secret,
            o.username,
            o.password
        );
    }

    fn templates(&self) -> Vec<Template> {
        [
            json!({"id": "crm-sync", "name": "Sync audiences to the CRM",
                   "url": self.crm.url("/audiences/{{ targetId }}"), "method": "POST",
                   "headers": {"X-Source": "campaigns"}, "batch_size": 50}),
            json!({"id": "order-feedback", "name": "Negative feedback to helpdesk",
                   "url": self.helpdesk.url("/api/tickets"), "method": "POST", "batch_size": 100,
                   "auth": {"type": "basic", "username": HELPDESK_USER, "password": HELPDESK_PASSWORD}}),
            json!({"id": "sms-gateway", "name": "One SMS per profile",
                   "url": self.sms.url("/sms/{{ profile.Identity }}"), "method": "PUT",
                   "headers": {"X-Campaign": "{{ targetId }}"},
                   "auth": {"type": "oauth2", "grant_type": "client_credentials",
                            "token_url": self.tokens.url(), "client_id": self.tokens.options().client_id,
                            "client_secret": self.tokens.options().client_secret,
                            "scopes": ["sms.send"]}}),
        ]
        .into_iter()
        .map(|t| serde_json::from_value(t).expect("demo templates are valid"))
        .collect()
    }
}

/// Whether a request is a template's test request (its body starts `{"is_test":true`).
fn is_test(request: &Received) -> bool {
    request.body.starts_with(br#"{"is_test":true"#)
}

/// Sample triggers, then three bad records; returns them with the deliveries they make.
fn sample_events(count: usize) -> (Vec<(String, Vec<u8>)>, u64) {
    let mut events = Vec::with_capacity(count + 3);
    let mut expected = 0u64;
    for i in 0..count {
        let (template, profiles, per_request) = match i % 3 {
            0 => ("crm-sync", 1 + (i * 37) % 120, 50),
            1 => ("order-feedback", 1 + (i * 17) % 40, 100),
            _ => ("sms-gateway", 1 + i % 3, 1),
        };
        expected += profiles.div_ceil(per_request) as u64;
        let id = format!("demo-{i:06}");
        let profiles: Vec<_> = (0..profiles)
            .map(|p| json!({"Identity": format!("user-{i}-{p}"), "Email": format!("user{p}@example.com")}))
            .collect();
        let event = json!({"event_id": id, "template_id": template, "targetId": 1000 + (i % 7),
                           "key_values": {"campaign": "black-friday", "message": "Hi from campaign {{ targetId }}"},
                           "profiles": profiles, "created_at": chrono::Utc::now().to_rfc3339()});
        events.push((id, event.to_string().into_bytes()));
    }
    events.push(("bad-1".into(), b"{this is not json".to_vec()));
    events.push((
        "bad-2".into(),
        br#"{"event_id":"x","template_id":"crm-sync"}"#.to_vec(),
    ));
    events.push((
        "bad-3".into(),
        br#"{"event_id":"unknown-template","template_id":"no-such-template","targetId":1}"#.to_vec(),
    ));
    expected += 1; // the unknown template settles as one failed delivery
    (events, expected)
}

async fn publish(bootstrap: &str, events: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let sends = events.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(TOPIC).key(key).payload(payload),
            Duration::from_secs(10),
        )
    });
    for result in futures::future::join_all(sends).await {
        result
            .map_err(|(err, _)| err)
            .context("publishing a sample trigger")?;
    }
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A random admin token for one demo run (128 bits, hex).
fn fresh_token() -> String {
    use aes_gcm::aead::Generate;
    let random = aes_gcm::Key::<aes_gcm::Aes256Gcm>::generate();
    random.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_events_count_their_deliveries() {
        let (events, expected) = sample_events(3);
        assert_eq!(events.len(), 6);
        // crm: 1 profile -> 1; helpdesk: 18 profiles -> 1; sms: 3 profiles -> 3; unknown -> 1.
        assert_eq!(expected, 6);
    }
}
