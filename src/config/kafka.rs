//! librdkafka properties passed through from `kafka.properties`: read as text, masked in
//! `Debug` when secret, and refused when the delivery guarantee depends on the service's own value.

use std::collections::BTreeMap;

use toml::Value;

use super::{ConfigError, invalid};

/// A librdkafka property value; ones whose key looks secret are masked in `Debug`.
#[derive(Clone)]
pub struct KafkaProperty {
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = ["password", "secret", "key", "token", "jaas"]
            .iter()
            .any(|word| self.key.contains(word));
        if secret {
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

/// Reads `kafka.properties` into text values, refusing tables and arrays and the reserved keys.
pub(super) fn properties(
    raw: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, KafkaProperty>, ConfigError> {
    raw.into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => s,
                Value::Integer(i) => i.to_string(),
                Value::Boolean(b) => b.to_string(),
                Value::Float(f) => f.to_string(),
                other => {
                    return Err(invalid(
                        &format!("kafka.properties.{key}"),
                        format!("expected a string, number or boolean, got {other}"),
                    ));
                }
            };
            if let Some(why) = reserved_property(&key) {
                return Err(invalid(&format!("kafka.properties.{key}"), why));
            }
            Ok((key.clone(), KafkaProperty { key, value }))
        })
        .collect()
}
