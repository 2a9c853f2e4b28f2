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

/// librdkafka properties the delivery guarantee depends on (§6): an operator's value for
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

/// Refuses the reserved keys, naming each as `kafka.properties.<key>`.
pub(super) fn refuse_reserved(properties: &BTreeMap<String, KafkaProperty>) -> Result<(), ConfigError> {
    match properties
        .keys()
        .find_map(|key| Some((key, reserved_property(key)?)))
    {
        Some((key, why)) => Err(invalid(&format!("kafka.properties.{key}"), why)),
        None => Ok(()),
    }
}
