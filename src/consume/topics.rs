//! Topics are the operators' (docs/operations.md, "Topics"): the service never creates
//! them, and it is not ready while a configured one (trigger, retry tiers, hold, dead letters)
//! does not exist. Cluster metadata is read with a consumer client, whose requests never
//! auto-create a topic; the partition counts of the consumed topics it reads become
//! `webhook_topic_partitions`, which an alert compares with the partitions the replicas
//! own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::health::Health;
use crate::kafka::QuietContext;
use crate::metrics::Metrics;

/// How often topics are looked for while one is missing, and once all exist.
const WHILE_MISSING: Duration = Duration::from_secs(5);
const WHILE_PRESENT: Duration = Duration::from_secs(60);

/// Every topic the configuration names.
pub fn configured_topics(config: &Config) -> Vec<String> {
    let mut topics = consumed_topics(config);
    topics.insert(1, config.dlq_topic.clone());
    topics
}

/// The topics the service consumes: the trigger topic, the retry tiers and the hold topic.
fn consumed_topics(config: &Config) -> Vec<String> {
    let mut topics = vec![config.trigger_topic.clone()];
    topics.extend((1..=config.retry_delays.len()).map(|tier| config.retry_topic(tier)));
    topics.push(config.held_topic());
    topics
}

/// The configured topics absent from `existing`, in configuration order.
pub fn missing<V>(configured: &[String], existing: &BTreeMap<String, V>) -> Vec<String> {
    configured
        .iter()
        .filter(|t| !existing.contains_key(*t))
        .cloned()
        .collect()
}

/// Keeps `health`'s missing-topic list and the consumed topics' partition counts current
/// until `stop`.
pub async fn watch_topics(
    config: &Config,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // No statistics: this client is never polled for messages, so they would pile up.
    let client: BaseConsumer<QuietContext> = match super::consumer_config(config)
        .set("allow.auto.create.topics", "false")
        .set("statistics.interval.ms", "0")
        .create_with_context(QuietContext)
    {
        Ok(client) => client,
        Err(err) => {
            warn!(error = %err, "cannot create the Kafka client that checks topics");
            return;
        }
    };
    let client = Arc::new(client);
    let configured = configured_topics(config);
    let consumed = consumed_topics(config);
    let mut reported: Vec<String> = Vec::new();
    loop {
        let lister = client.clone();
        let listed = tokio::task::spawn_blocking(move || list_topics(&lister)).await;
        match listed {
            Ok(Ok(existing)) => {
                let now_missing = missing(&configured, &existing);
                if now_missing != reported {
                    say_missing(&configured, &now_missing);
                    reported = now_missing.clone();
                }
                health.set_missing_topics(now_missing);
                for topic in &consumed {
                    if let Some(partitions) = existing.get(topic) {
                        metrics.topic_partitions(topic, *partitions);
                    }
                }
            }
            Ok(Err(err)) => {
                if let Some(suppressed) = crate::telemetry::limited("topic-metadata") {
                    warn!(error = %err, suppressed, "cannot read Kafka metadata to check the topics");
                }
            }
            Err(_) => return,
        }
        let wait = if reported.is_empty() {
            WHILE_PRESENT
        } else {
            WHILE_MISSING
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Every topic of the cluster with its partition count (blocking: a metadata request).
fn list_topics(client: &BaseConsumer<QuietContext>) -> KafkaResult<BTreeMap<String, usize>> {
    // Serve the client's queued events (errors, logs) so none accumulate.
    while client.poll(Duration::ZERO).is_some() {}
    client.fetch_metadata(None, Duration::from_secs(10)).map(|m| {
        m.topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    })
}

/// Logs that every configured topic exists, or which do not (not ready until they do).
fn say_missing(configured: &[String], missing: &[String]) {
    if missing.is_empty() {
        info!(topics = ?configured, "every configured topic exists");
    } else {
        error!(missing = ?missing,
               "configured Kafka topics do not exist; create them (the service never does): not ready until then");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_topic_is_looked_for() {
        let config = Config::load_from([("WD_RETRY_DELAYS".to_string(), "1s,2s,3s".to_string())]).unwrap();
        assert_eq!(
            configured_topics(&config),
            [
                "campaign-triggers",
                "webhook-dlq",
                "webhook-retry-1",
                "webhook-retry-2",
                "webhook-retry-3",
                "webhook-retry-held"
            ]
        );
        assert_eq!(
            consumed_topics(&config),
            [
                "campaign-triggers",
                "webhook-retry-1",
                "webhook-retry-2",
                "webhook-retry-3",
                "webhook-retry-held"
            ]
        );
        let existing: BTreeMap<String, usize> = [
            "campaign-triggers",
            "webhook-retry-1",
            "webhook-retry-2",
            "webhook-retry-held",
            "other",
        ]
        .map(|t| (t.to_string(), 3))
        .into();
        assert_eq!(
            missing(&configured_topics(&config), &existing),
            ["webhook-dlq", "webhook-retry-3"]
        );
    }
}
