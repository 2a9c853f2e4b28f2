//! An embedded Kafka cluster for the demo, the tests and the benchmark: librdkafka's mock
//! cluster (real Kafka protocol over TCP, consumer groups, offset commits). Its handle is
//! not `Send`, so it lives on a thread of its own until this value is dropped.
//!
//! Like a broker with retention, the mock keeps at most [`PARTITION_RETENTION_BYTES`] (or
//! 100,000 message sets) per partition and deletes the oldest records beyond that: spread a
//! large backlog over enough partitions.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// What one mock partition holds before its oldest records are deleted (librdkafka's mock).
pub const PARTITION_RETENTION_BYTES: usize = 5 << 20;

/// Partitions needed to hold `bytes` of records without the mock deleting any (at least `min`).
pub fn partitions_for(bytes: usize, min: i32) -> i32 {
    // Keep a margin below the retention limit for record overhead.
    let per_partition = PARTITION_RETENTION_BYTES * 3 / 5;
    min.max(bytes.div_ceil(per_partition) as i32)
}

pub struct EmbeddedKafka {
    bootstrap: String,
    stop: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

enum Command {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    FailProduce(usize, mpsc::Sender<()>),
    BrokerUp(bool, mpsc::Sender<Result<(), String>>),
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster with `topics` (name, partitions) created.
    pub fn start(topics: &[(&str, i32)]) -> anyhow::Result<EmbeddedKafka> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (command_tx, command_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve commands until every sender is gone (the handle was dropped).
                for command in command_rx {
                    match command {
                        Command::CreateTopic(name, partitions, reply) => {
                            let _ = reply.send(
                                cluster
                                    .create_topic(&name, partitions, 1)
                                    .map_err(|e| e.to_string()),
                            );
                        }
                        Command::BrokerUp(up, reply) => {
                            let result = if up {
                                cluster.broker_up(1)
                            } else {
                                cluster.broker_down(1)
                            };
                            let _ = reply.send(result.map_err(|e| e.to_string()));
                        }
                        Command::FailProduce(count, reply) => {
                            // Not retriable by the client, so each one fails a produce request.
                            let errors =
                                vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; count];
                            cluster.request_errors(RDKafkaApiKey::Produce, &errors);
                            let _ = reply.send(());
                        }
                    }
                }
            })?;
        let bootstrap = ready_rx
            .recv()?
            .map_err(|e| anyhow::anyhow!("cannot start the embedded Kafka cluster: {e}"))?;
        let kafka = EmbeddedKafka {
            bootstrap,
            stop: Some(command_tx),
            thread: Some(thread),
        };
        for (topic, partitions) in topics {
            kafka.create_topic(topic, *partitions)?;
        }
        Ok(kafka)
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.stop.as_ref().expect("running").send(Command::CreateTopic(
            name.to_string(),
            partitions,
            reply_tx,
        ))?;
        reply_rx
            .recv()?
            .map_err(|e| anyhow::anyhow!("cannot create topic {name}: {e}"))
    }

    /// Makes the next `count` produce requests fail (topic authorization failed), as a broker
    /// refusing writes would: for tests of what waits on a produce.
    pub fn fail_next_produce_requests(&self, count: usize) -> anyhow::Result<()> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.stop
            .as_ref()
            .expect("running")
            .send(Command::FailProduce(count, reply_tx))?;
        Ok(reply_rx.recv()?)
    }

    /// Takes the broker down (every connection dropped, new ones refused) or back up, its
    /// records kept: a broker outage for chaos tests.
    pub fn set_broker_up(&self, up: bool) -> anyhow::Result<()> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.stop
            .as_ref()
            .expect("running")
            .send(Command::BrokerUp(up, reply_tx))?;
        reply_rx
            .recv()?
            .map_err(|e| anyhow::anyhow!("cannot set the broker up={up}: {e}"))
    }

    /// `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `webhook-dispatcher mock-kafka`: a cluster with `topics` (`name:partitions` each) whose
/// bootstrap servers are printed, up until `shutdown`.
pub async fn serve(topics: &[String], shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let mut parsed = Vec::with_capacity(topics.len());
    for topic in topics {
        let (name, partitions) = topic
            .rsplit_once(':')
            .and_then(|(name, n)| Some((name, n.parse::<i32>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--topics: `{topic}` is not name:partitions"))?;
        parsed.push((name, partitions));
    }
    let kafka = EmbeddedKafka::start(&parsed)?;
    println!("{}", kafka.bootstrap_servers());
    shutdown.cancelled().await;
    Ok(())
}
