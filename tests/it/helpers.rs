//! Starting the real service against real parts: a private Redis (REDIS_URL, set by
//! scripts/test), a real Apache Kafka broker (TEST_KAFKA, started by scripts/test with
//! scripts/kafka), local HTTP receivers. Every test gets its own topics, consumer group and
//! Redis key prefix. A test that needs what only librdkafka's mock cluster can do (a broker
//! that stops answering, produce requests refused on command) asks for it with
//! [`World::on_mock`]; without TEST_KAFKA every test runs on the mock.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use webhook_dispatcher::config::Config;
use webhook_dispatcher::demo::embedded_kafka::EmbeddedKafka;
use webhook_dispatcher::metrics::Metrics;
use webhook_dispatcher::template::{RedisStore, Template, TemplateStore};
use webhook_dispatcher::{App, Templates};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(kind: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{kind}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Where a test's topics are.
pub enum Kafka {
    /// The shared real broker of the run, at this address.
    Broker(String),
    Mock(EmbeddedKafka),
}

impl Kafka {
    /// The mock cluster, for the faults only it can inject.
    pub fn mock(&self) -> &EmbeddedKafka {
        match self {
            Kafka::Mock(mock) => mock,
            Kafka::Broker(_) => panic!("this test needs the mock cluster: World::on_mock"),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Kafka::Broker(address) => address.clone(),
            Kafka::Mock(mock) => mock.bootstrap_servers().to_string(),
        }
    }

    /// Creates topics as an operator would: on the broker through the admin API.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        match self {
            Kafka::Mock(mock) => {
                for (name, partitions) in topics {
                    mock.create_topic(name, *partitions).expect("mock topic created");
                }
            }
            Kafka::Broker(address) => create_broker_topics(address, topics),
        }
    }
}

/// Sets configuration of `topic` on the broker at `address` (retention, segment size).
pub async fn set_topic_config(address: &str, topic: &str, entries: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client");
    let mut config = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in entries {
        config = config.set(key, value);
    }
    let altered = admin
        .alter_configs([&config], &AdminOptions::new())
        .await
        .expect("alter configs");
    for result in altered {
        result.expect("topic configuration set");
    }
}

/// The real broker's address when the run has one (scripts/test sets TEST_KAFKA).
pub fn test_broker() -> Option<String> {
    std::env::var("TEST_KAFKA").ok().filter(|a| !a.is_empty())
}

/// Creates `topics` on the broker at `address` and waits until its metadata shows them.
fn create_broker_topics(address: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client");
    let new: Vec<_> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = futures::executor::block_on(admin.create_topics(&new, &options)).expect("create topics");
    for result in created {
        if let Err((name, code)) = result {
            panic!("topic {name} not created: {code}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, partitions) in topics {
        loop {
            let seen = admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .first()
                        .map(|t| t.error().is_none() && t.partitions().len() as i32 == *partitions)
                })
                .unwrap_or(false);
            if seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} not in the broker's metadata"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Notes which Kafka a test ran on in TEST_KAFKA_LOG, when set: scripts/test counts
/// the tests run on each in its closing lines.
fn note_kafka(kind: &str) {
    let Some(path) = std::env::var_os("TEST_KAFKA_LOG") else {
        return;
    };
    // scripts/run-tests runs each test alone and names it; libtest names its thread.
    let test = std::env::var("TEST_NAME")
        .unwrap_or_else(|_| std::thread::current().name().unwrap_or("unnamed").to_string());
    let line = format!("{kind}\t{test}\n");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// One test's world: Kafka with a trigger topic, and names for the group and the Redis
/// prefix.
pub struct World {
    pub kafka: Kafka,
    pub topic: String,
    pub dlq: String,
    pub retry_prefix: String,
    pub partitions: i32,
    pub group: String,
    pub prefix: String,
}

impl World {
    /// A world on the run's real broker (the mock cluster when the run has none).
    pub fn new(partitions: i32) -> World {
        World::with(partitions, test_broker())
    }

    /// A world on the run's real broker, for a test of what the mock cannot do (KIP-848's
    /// group protocol, a broker process restarted); it fails without one.
    pub fn on_broker(partitions: i32) -> World {
        let broker =
            test_broker().expect("this test needs a real Kafka broker: TEST_KAFKA (scripts/test starts one)");
        World::with(partitions, Some(broker))
    }

    /// A world on a broker of the test's own (`OwnBroker`), for a test that stops it.
    pub fn on(broker: &OwnBroker, partitions: i32) -> World {
        World::with(partitions, Some(broker.address.clone()))
    }

    /// A world on librdkafka's mock cluster, for a test that injects what only the mock
    /// can (docs/development.md lists them).
    pub fn on_mock(partitions: i32) -> World {
        World::with(partitions, None)
    }

    fn with(partitions: i32, broker: Option<String>) -> World {
        let topic = unique("triggers");
        let dlq = unique("dlq");
        let retry_prefix = unique("retry");
        let tiers = [
            format!("{retry_prefix}-1"),
            format!("{retry_prefix}-2"),
            format!("{retry_prefix}-held"),
        ];
        let topics = [
            (topic.as_str(), partitions),
            (&dlq, 1),
            (&tiers[0], 2),
            (&tiers[1], 2),
            (&tiers[2], 2),
        ];
        let kafka = match broker {
            Some(address) => {
                let kafka = Kafka::Broker(address);
                kafka.create_topics(&topics);
                note_kafka("broker");
                kafka
            }
            None => {
                note_kafka("mock");
                Kafka::Mock(EmbeddedKafka::start(&topics).expect("embedded kafka"))
            }
        };
        World {
            kafka,
            topic,
            dlq,
            retry_prefix,
            partitions,
            group: unique("group"),
            prefix: format!("{}:", unique("wd")),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.kafka.bootstrap()
    }

    /// The WD_* settings that point a dispatcher at this world.
    pub fn vars(&self) -> Vec<(String, String)> {
        [
            ("WD_KAFKA_BROKERS", self.bootstrap()),
            ("WD_KAFKA_GROUP_ID", self.group.clone()),
            ("WD_TRIGGER_TOPIC", self.topic.clone()),
            ("WD_DLQ_TOPIC", self.dlq.clone()),
            ("WD_RETRY_TOPIC_PREFIX", self.retry_prefix.clone()),
            // Short tiers keep the tests quick; the rules are the same as with 10s,60s.
            ("WD_RETRY_DELAYS", "1s,2s".to_string()),
            ("WD_REDIS_URL", redis_url()),
            ("WD_REDIS_PREFIX", self.prefix.clone()),
            ("WD_HTTP_ADDR", "127.0.0.1:0".into()),
            ("WD_METRICS_ADDR", "127.0.0.1:0".into()),
            ("WD_ADMIN_TOKEN", "test-admin-token".into()),
            ("WD_DRAIN_TIMEOUT", "10s".into()),
            // Receivers listen on 127.0.0.1; the rest of loopback stays refused (SSRF tests).
            ("WD_ALLOWED_NETWORKS", "127.0.0.1/32".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// [`World::vars`] with a test's own settings on top. `WD_KAFKA_PROPERTIES` is merged,
    /// not replaced: every dispatcher under test gets [`QUICK_GROUP`] (a killed or stopped
    /// member's partitions move within seconds, not the default 45 s), a test's own keys win,
    /// and under `group.protocol=consumer` the session is the broker's, so those keys go.
    pub fn vars_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let own = extra
            .iter()
            .rev()
            .find(|(key, _)| *key == "WD_KAFKA_PROPERTIES")
            .map_or("", |(_, value)| *value);
        let mut vars = self.vars();
        vars.extend(
            extra
                .iter()
                .filter(|(key, _)| *key != "WD_KAFKA_PROPERTIES")
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        vars.push(("WD_KAFKA_PROPERTIES".into(), kafka_properties(own)));
        vars
    }

    pub async fn store(&self) -> RedisStore {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let conn = client.get_connection_manager().await.expect("redis reachable");
        RedisStore::new(conn, self.prefix.clone())
    }

    pub async fn put_template(&self, template: Value) {
        let template: Template = serde_json::from_value(template).expect("valid template");
        self.store().await.put(&template).await.expect("template saved");
    }

    /// Produces `(key, value)` records; `partition` pins them when set.
    pub async fn produce(&self, records: &[(Option<i32>, Vec<u8>)]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "2097151")
            .create()
            .expect("producer");
        let keys: Vec<String> = (0..records.len()).map(|i| i.to_string()).collect();
        for (batch, keys) in records.chunks(10_000).zip(keys.chunks(10_000)) {
            let sends = batch.iter().zip(keys).map(|((partition, value), key)| {
                let mut record = FutureRecord::to(&self.topic).payload(value).key(key);
                if let Some(p) = partition {
                    record = record.partition(*p);
                }
                producer.send(record, Duration::from_secs(30))
            });
            for result in futures::future::join_all(sends).await {
                result.expect("record produced");
            }
        }
    }

    /// One trigger record with `headers` (a campaign engine's `traceparent`, say).
    pub async fn produce_with_headers(&self, value: &[u8], headers: &[(&str, &str)]) {
        use rdkafka::message::{Header, OwnedHeaders};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("producer");
        let headers = headers.iter().fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        });
        producer
            .send(
                FutureRecord::to(&self.topic)
                    .payload(value)
                    .key("0")
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("record produced");
    }

    /// Committed offset of every partition of the trigger topic (-1 when none).
    pub async fn committed(&self) -> Vec<i64> {
        let (bootstrap, group) = (self.bootstrap(), self.group.clone());
        let (topic, partitions) = (self.topic.clone(), self.partitions);
        off_runtime(move || committed_offsets(&bootstrap, &group, &topic, partitions)).await
    }

    /// Every record on the dead-letter topic, oldest first.
    pub async fn dead_letters(&self) -> Vec<Letter> {
        self.records(&self.dlq, 1).await
    }

    /// Every record on retry tier `n` (two partitions each).
    pub async fn retry_records(&self, n: usize) -> Vec<Letter> {
        self.records(&format!("{}-{n}", self.retry_prefix), 2).await
    }

    /// Every record of `topic`'s `partitions`, partition by partition.
    pub async fn records(&self, topic: &str, partitions: i32) -> Vec<Letter> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_string());
        off_runtime(move || read_records(&bootstrap, &topic, partitions)).await
    }

    /// High watermark of every partition: where a fully committed group stands.
    pub async fn ends(&self) -> Vec<i64> {
        self.topic_ends(&self.topic, self.partitions).await
    }

    /// Low watermark of every partition: 0 unless the mock's retention deleted records.
    pub async fn starts(&self) -> Vec<i64> {
        let watermarks = self.topic_watermarks(&self.topic, self.partitions).await;
        watermarks.into_iter().map(|(low, _)| low).collect()
    }

    /// High watermark of every partition of `topic` (`partitions` of them).
    pub async fn topic_ends(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let watermarks = self.topic_watermarks(topic, partitions).await;
        watermarks.into_iter().map(|(_, high)| high).collect()
    }

    async fn topic_watermarks(&self, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_string());
        off_runtime(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create()
                .expect("consumer");
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .expect("watermarks")
                })
                .collect()
        })
        .await
    }
}

/// Runs `work` (librdkafka's blocking calls, their retries) on tokio's blocking pool, so
/// the runtime that hosts the dispatcher under test and the receivers keeps its threads.
/// A panic in `work` is the caller's.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
}

/// Committed offset of `group` on each of `topic`'s `partitions` (-1 when none).
fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    // Right after several members left, the group may still be rebalancing and the
    // broker answer an error per partition for a moment: read again until it has none.
    let deadline = Instant::now() + Duration::from_secs(20);
    let committed = loop {
        let committed = consumer
            .committed_offsets(list.clone(), Duration::from_secs(10))
            .expect("committed offsets");
        let settled = committed.elements().iter().all(|e| e.error().is_ok());
        if settled || Instant::now() > deadline {
            break committed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Every record of `topic`'s `partitions`, partition by partition.
fn read_records(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Letter> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    let mut expected = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        expected += high - low;
        list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).expect("assign");
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (letters.len() as i64) < expected {
        assert!(Instant::now() < deadline, "could not read {topic}");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_string(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push(Letter {
                key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    letters
}

/// A record read back from the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Letter {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: std::collections::HashMap<String, String>,
}

impl Letter {
    pub fn reason(&self) -> &str {
        &self.headers["wd-reason"]
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or(Value::Null)
    }
}

/// A trigger event as the campaign engine would publish it.
pub fn event(id: &str, template: &str, profiles: usize) -> Vec<u8> {
    let profiles: Vec<Value> = (0..profiles)
        .map(|p| json!({"Identity": format!("{id}-u{p}"), "Email": format!("u{p}@example.com")}))
        .collect();
    json!({"event_id": id, "template_id": template, "targetId": 42, "key_values": {"key": "value"},
           "profiles": profiles})
    .to_string()
    .into_bytes()
}

/// A dispatcher running in this process.
pub struct TestApp {
    pub metrics: std::sync::Arc<Metrics>,
    pub api: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn spawn(world: &World, extra: &[(&str, &str)]) -> TestApp {
        if std::env::var_os("RUST_LOG").is_some() {
            // Written for as long as the test process runs (its last lines may be cut).
            std::mem::forget(webhook_dispatcher::telemetry::init(
                webhook_dispatcher::config::LogFormat::Text,
            ));
        }
        let config = Config::load_from(world.vars_with(extra)).expect("valid test config");
        let app = App::build(config, Templates::Redis).await.expect("app builds");
        let shutdown = CancellationToken::new();
        TestApp {
            metrics: app.metrics(),
            api: app.api_addr(),
            metrics_addr: app.metrics_addr(),
            shutdown: shutdown.clone(),
            task: tokio::spawn(app.run(shutdown)),
        }
    }

    /// Graceful shutdown: drain, commit, return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops within the drain timeout")
            .expect("task joins")
            .expect("run returns Ok");
    }
}

/// The consumer group settings every dispatcher under test starts with (classic protocol).
pub const QUICK_GROUP: &[(&str, &str)] = &[("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")];

/// [`QUICK_GROUP`] merged with a test's own `key=value,…` Kafka properties: its keys win, and
/// under `group.protocol=consumer` (where librdkafka refuses them) the group keys are left out.
fn kafka_properties(own: &str) -> String {
    let own: Vec<(&str, &str)> = own
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .expect("a test's Kafka property is key=value")
        })
        .collect();
    let consumer_protocol = own.contains(&("group.protocol", "consumer"));
    QUICK_GROUP
        .iter()
        .filter(|(key, _)| !consumer_protocol && !own.iter().any(|(k, _)| k == key))
        .chain(own.iter())
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` every 50 ms until it holds (`true`) or `within` passes (`false`).
pub async fn eventually_ok<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The dispatcher binary as an operator runs it, in its own process (for kill -9 and RSS).
pub struct Process {
    child: std::process::Child,
    /// The admin API's and probes' address.
    pub api: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

/// A port where nothing answers, for as long as this value lives: the socket is bound and
/// never listens, so a connection to it is refused and no test running beside this one can
/// bind the same port (a port that was merely free a moment ago can be taken by a receiver
/// of another test).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind a loopback port");
        let port = socket.local_addr().expect("its address").port();
        ClosedPort {
            _socket: socket,
            port,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    /// The binary's `run`, its standard error written to [`Process::log`]. It binds port 0
    /// for both listeners and says where in its `listening` log line: no port is picked
    /// here that another process could take first.
    pub async fn spawn(world: &World, extra: &[(&str, &str)]) -> Process {
        let log = std::env::temp_dir().join(format!("{}.log", unique("dispatcher")));
        let stderr = std::fs::File::create(&log).expect("log file");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut process = Self::start(world, extra, (any, any), stderr.into(), log);
        (process.api, process.metrics_addr) = process.listening().await;
        process
    }

    /// The binary's `run` with `stderr` as its standard error (`log`: where that goes, if
    /// anywhere). Its addresses are free ports picked here: with no log to read, port 0
    /// would leave them unknown.
    pub fn spawn_with_stderr(world: &World, extra: &[(&str, &str)], stderr: Stdio, log: PathBuf) -> Process {
        let free = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        Self::start(world, extra, (free(), free()), stderr, log)
    }

    fn start(
        world: &World,
        extra: &[(&str, &str)],
        (api, metrics_addr): (SocketAddr, SocketAddr),
        stderr: Stdio,
        log: PathBuf,
    ) -> Process {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"));
        command.arg("run");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WD_")) {
            command.env_remove(key);
        }
        command
            .env("WD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(world.vars_with(extra))
            .env("WD_METRICS_ADDR", metrics_addr.to_string())
            .env("WD_HTTP_ADDR", api.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        Process {
            child: command.spawn().expect("dispatcher binary starts"),
            api,
            metrics_addr,
            log,
        }
    }

    /// The API's and the metrics' addresses, from the `listening` line the binary logs once
    /// its listeners are bound.
    async fn listening(&mut self) -> (SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.log_text();
            let line = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["message"] == "listening");
            if let Some(line) = line {
                let addr = |field: &str| -> SocketAddr {
                    line[field]
                        .as_str()
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("no {field} address in {line}"))
                };
                return (addr("api"), addr("metrics"));
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("the dispatcher exited ({status}) before listening; log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the dispatcher did not say where it listens; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scrapes a `/metrics` endpoint and returns the value of one series (exact line prefix).
pub async fn scrape(addr: SocketAddr, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What one run of the command line printed, and its exit code.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|_| panic!("not JSON: {}", self.stdout))
    }
}

/// Runs the binary with `args` and `world`'s configuration (and no other WD_* variable).
pub fn cli(world: &World, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WD_")) {
        command.env_remove(key);
    }
    let output = command
        .args(args)
        .envs(world.vars_with(&[]))
        .output()
        .expect("runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A redis-server of the test's own, to stop and start; stopped by its pid when dropped.
pub struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    /// A redis-server that keeps nothing.
    pub fn start(port: u16) -> OwnRedis {
        OwnRedis::spawn(port, &["--appendonly", "no"])
    }

    /// A redis-server answering only TLS on `port` with `dir`'s `server.pem` and
    /// `server.key`, asking every client for a certificate signed by `dir`'s `ca.pem`.
    pub fn start_tls(port: u16, dir: &std::path::Path) -> OwnRedis {
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &file("server.pem"),
                "--tls-key-file",
                &file("server.key"),
            ])
            .args(["--tls-ca-cert-file", &file("ca.pem"), "--tls-auth-clients", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        OwnRedis { port, child }
    }

    /// A redis-server that keeps its data in `dir` (an append-only file synced on every
    /// write), so one killed and started again on the same `dir` comes back with it, as a
    /// Redis with persistence restarts.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> OwnRedis {
        let dir = dir.to_string_lossy();
        OwnRedis::spawn(
            port,
            &["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir],
        )
    }

    fn spawn(port: u16, persistence: &[&str]) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            // Not the test's own output: a leftover server would hold the suite's pipe open.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        OwnRedis { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(10),
            "the test's redis-server answers",
            || async {
                redis::Client::open(self.url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .is_ok()
            },
        )
        .await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real broker of a test's own, started with scripts/kafka in a temp dir, for a test that
/// stops and starts it; stopped (by its pid) when dropped.
pub struct OwnBroker {
    dir: tempfile::TempDir,
    pub address: String,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = kafka_script(&["start", &dir.path().to_string_lossy()]);
        let address = out
            .lines()
            .last()
            .expect("scripts/kafka start prints the address")
            .to_string();
        OwnBroker { dir, address }
    }

    /// Stops the broker process (SIGTERM, as an operator's restart would).
    pub fn stop(&self) {
        kafka_script(&["stop", &self.dir.path().to_string_lossy()]);
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&self) {
        kafka_script(&["restart", &self.dir.path().to_string_lossy()]);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new(kafka_script_path())
            .args(["stop", &self.dir.path().to_string_lossy()])
            .output();
    }
}

fn kafka_script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// Runs scripts/kafka; its stdout, or a panic with its stderr.
fn kafka_script(args: &[&str]) -> String {
    let output = std::process::Command::new(kafka_script_path())
        .args(args)
        .output()
        .expect("scripts/kafka runs");
    assert!(
        output.status.success(),
        "scripts/kafka {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `demo --keep-running` as the README's walkthrough runs it, and what it printed about
/// itself: the helpdesk receiver's URL and Basic credentials, the console's address and the
/// admin token. Ended by its pid when dropped.
pub struct Demo {
    child: std::process::Child,
    pub helpdesk: String,
    pub username: String,
    pub password: String,
    /// The admin API's base URL (`http://…`, no trailing slash).
    pub api: String,
    pub admin_token: String,
    /// Everything the demo printed before it said it stays up.
    pub printed: String,
}

impl Demo {
    pub fn start() -> Demo {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-dispatcher"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WD_")) {
            command.env_remove(key);
        }
        let mut child = command
            .args([
                "demo",
                "--events",
                "30",
                "--timeout",
                "90s",
                "--keep-running",
                "--json",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo starts");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut printed = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let up = line.contains("stay up");
            printed.push(line);
            if up {
                break;
            }
        }
        // Keep reading what the demo writes, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let printed = printed.join("\n");
        let after = |marker: &str| -> String {
            let at = printed
                .find(marker)
                .unwrap_or_else(|| panic!("{marker:?} in {printed}"));
            let rest = &printed[at + marker.len()..];
            rest.split([' ', ',', ';', ')']).next().unwrap().to_string()
        };
        Demo {
            helpdesk: after("helpdesk "),
            username: after("username "),
            password: after("password "),
            api: after("console    ").trim_end_matches("/console/").to_string(),
            admin_token: after("(admin token "),
            printed,
            child,
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(stopped.success());
        self.child.wait().expect("the demo ends")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three primaries (no replicas), each a redis-server of the test's own
/// in cluster mode, its slots assigned by `redis-cli --cluster create`; stopped by their
/// pids when dropped.
pub struct OwnCluster {
    nodes: Vec<OwnRedis>,
    _dir: tempfile::TempDir,
}

impl OwnCluster {
    pub async fn start() -> OwnCluster {
        let dir = tempfile::tempdir().expect("a directory for the nodes' files");
        let nodes: Vec<OwnRedis> = (0..3)
            .map(|_| {
                let port = free_port();
                let config = dir.path().join(format!("nodes-{port}.conf"));
                let child = std::process::Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "no", "--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", &config.to_string_lossy()])
                    .args(["--cluster-node-timeout", "5000"])
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server runs (scripts/test installs it)");
                OwnRedis { port, child }
            })
            .collect();
        for node in &nodes {
            node.wait_ready().await;
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = OwnCluster { nodes, _dir: dir };
        eventually(Duration::from_secs(20), "the cluster's state is ok", || async {
            let mut ok = true;
            for node in &cluster.nodes {
                ok &= node
                    .command(&["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok");
            }
            ok
        })
        .await;
        cluster
    }

    /// Seed nodes for `WD_REDIS_URL`: two of the three, as an operator would list some.
    pub fn seeds(&self) -> String {
        self.nodes[..2]
            .iter()
            .map(OwnRedis::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many keys each node holds.
    pub async fn keys_per_node(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            counts.push(node.command(&["DBSIZE"]).await.trim().parse().unwrap_or(0));
        }
        counts
    }
}

impl OwnRedis {
    /// One command to this server alone, its answer as text.
    pub async fn command(&self, args: &[&str]) -> String {
        let Ok(client) = redis::Client::open(self.url()) else {
            return String::new();
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return String::new();
        };
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(redis::Value::Int(n)) => n.to_string(),
            Ok(value) => redis::from_redis_value::<String>(value).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// One admin API call to `app` with the test token: the status and the JSON body (null when
/// there is none).
/// While the dispatcher is still connecting to Redis (503 "starting"), waits up to 10 s.
pub async fn admin_call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, value) = admin_call_once(app, method, path, body.as_ref()).await;
        let starting = status == 503
            && value["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("starting"));
        if !starting || Instant::now() > deadline {
            return (status, value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_call_once(app: &TestApp, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("http://{}{path}", app.api))
        .bearer_auth("test-admin-token");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
