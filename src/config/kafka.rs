//! librdkafka properties passed through from `kafka.properties`: kept as text, masked in
//! `Debug` when secret, and refused when the delivery guarantee depends on the service's own value.

use std::collections::BTreeMap;

use super::{ConfigError, invalid};

/// A librdkafka property value; ones whose key looks secret are masked in `Debug`.
#[derive(Clone)]
pub struct KafkaProperty {
    pub key: String,
    pub value: String,
}

impl KafkaProperty {
    /// Whether the key looks like it holds a credential: its value is never printed.
    pub fn is_secret(&self) -> bool {
        ["password", "secret", "key", "token", "jaas"]
            .iter()
            .any(|word| self.key.contains(word))
    }
}

impl std::fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_secret() {
            f.write_str(crate::secret::MASK)
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// librdkafka properties the delivery guarantee depends on: an operator's value for
/// them would silently turn at-least-once into at-most-once, so they are refused, saying why.
fn reserved_property(key: &str) -> Option<&'static str> {
    Some(match key {
        "enable.auto.offset.store" | "enable.auto.commit" => {
            "the service stores and commits offsets itself (only settled records); it cannot be changed"
        }
        "acks" | "request.required.acks" | "enable.idempotence" => {
            "retry and dead-letter records are produced with acks=all and idempotence; it cannot be changed"
        }
        "group.id" => "set the consumer group with kafka.group_id (WD_KAFKA_GROUP_ID)",
        "bootstrap.servers" | "metadata.broker.list" => {
            "set the brokers with kafka.brokers (WD_KAFKA_BROKERS)"
        }
        _ => return None,
    })
}

/// Refuses the reserved keys, naming each as `kafka.properties.<key>`, and the keys the
/// chosen consumer group protocol does not take.
pub(super) fn refuse_reserved(properties: &BTreeMap<String, KafkaProperty>) -> Result<(), ConfigError> {
    let protocol = group_protocol(properties)?;
    let refused = |key: &str| match (protocol, key) {
        (
            GroupProtocol::Consumer,
            "partition.assignment.strategy" | "session.timeout.ms" | "heartbeat.interval.ms",
        ) => Some(
            "under group.protocol=consumer the broker owns the assignment, session and heartbeat \
             (its group.consumer.* settings); librdkafka refuses a consumer that sets this",
        ),
        _ => reserved_property(key),
    };
    match properties.keys().find_map(|key| Some((key, refused(key)?))) {
        Some((key, why)) => Err(invalid(&format!("kafka.properties.{key}"), why)),
        None => Ok(()),
    }
}

/// The consumer group protocol (`group.protocol`): `classic` (JoinGroup/SyncGroup; the
/// service uses the cooperative-sticky assignor) or `consumer` (KIP-848, Kafka 4.0 and
/// later: the broker assigns partitions and rebalances without stopping the group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    Classic,
    Consumer,
}

/// The protocol `kafka.properties` chooses; `classic` when it does not say.
pub fn group_protocol(properties: &BTreeMap<String, KafkaProperty>) -> Result<GroupProtocol, ConfigError> {
    match properties.get("group.protocol").map(|p| p.value.as_str()) {
        None | Some("classic") => Ok(GroupProtocol::Classic),
        Some("consumer") => Ok(GroupProtocol::Consumer),
        Some(_) => Err(invalid(
            "kafka.properties.group.protocol",
            "must be classic or consumer",
        )),
    }
}
