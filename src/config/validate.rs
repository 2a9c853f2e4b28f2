//! Validation: the merged files and variables, deserialised into [`RawConfig`], become a
//! [`Config`] one section at a time. Every error names the key it is about; the first one
//! found is returned.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Value;

use super::{
    Config, ConfigError, KafkaConfig, LogFormat, MIN_ADMIN_TOKEN_CHARS, RedisConfig, invalid, kafka,
};
use crate::crypto::SecretKeys;
use crate::secret::Secret;

/// The shape of the files, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    trigger_topic: String,
    retry_topic_prefix: String,
    retry_delays: Vec<String>,
    dlq_topic: String,
    http_addr: String,
    metrics_addr: String,
    admin_token: String,
    allowed_networks: Vec<String>,
    https_only: bool,
    secret_key: String,
    max_inflight: i64,
    max_per_host: i64,
    partition_window: i64,
    max_pending_bytes: i64,
    max_event_bytes: i64,
    max_profiles: i64,
    max_rendered_bytes: i64,
    template_cache_ttl: String,
    drain_timeout: String,
    log_format: String,
    kafka: RawKafka,
    redis: RawRedis,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: String,
    group_id: String,
    properties: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
    prefix: String,
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let retry_delays = retry_delays(&self.retry_delays)?;
        let allowed_networks = allowed_networks(&self.allowed_networks)?;
        let log_format = log_format(&self.log_format)?;
        let redis = redis(self.redis)?;
        let kafka = kafka_section(self.kafka)?;
        let trigger_topic = topic("trigger_topic", self.trigger_topic)?;
        let dlq_topic = topic("dlq_topic", self.dlq_topic)?;
        let retry_topic_prefix = topic("retry_topic_prefix", self.retry_topic_prefix)?;
        Ok(Config {
            kafka,
            trigger_topic,
            retry_topic_prefix,
            retry_delays,
            dlq_topic,
            redis,
            http_addr: addr("http_addr", &self.http_addr)?,
            metrics_addr: addr("metrics_addr", &self.metrics_addr)?,
            admin_token: admin_token(self.admin_token)?,
            allowed_networks,
            https_only: self.https_only,
            secret_keys: SecretKeys::parse(&self.secret_key)
                .map_err(|m| invalid("secret_key", m))?
                .map(Arc::new),
            max_inflight: ranged("max_inflight", self.max_inflight, 1, 100_000)?,
            max_per_host: ranged("max_per_host", self.max_per_host, 1, 100_000)?,
            partition_window: ranged("partition_window", self.partition_window, 1, 1_000_000)?,
            max_pending_bytes: ranged("max_pending_bytes", self.max_pending_bytes, 1 << 20, 1 << 40)?,
            max_event_bytes: ranged("max_event_bytes", self.max_event_bytes, 1024, 64 << 20)?,
            max_profiles: ranged("max_profiles", self.max_profiles, 1, 1_000_000)?,
            max_rendered_bytes: ranged("max_rendered_bytes", self.max_rendered_bytes, 64 << 10, 1 << 30)?,
            template_cache_ttl: duration("template_cache_ttl", &self.template_cache_ttl)?,
            drain_timeout: duration("drain_timeout", &self.drain_timeout)?,
            log_format,
            ignored_variables: Vec::new(),
        })
    }
}

fn retry_delays(raw: &[String]) -> Result<Vec<Duration>, ConfigError> {
    let delays = raw
        .iter()
        .map(|d| duration("retry_delays", d))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() {
        return Err(invalid("retry_delays", "at least one retry tier is needed"));
    }
    Ok(delays)
}

/// CIDR networks; a bare address stands for itself.
fn allowed_networks(raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid("allowed_networks", format!("not a CIDR network: {n:?}")))
        })
        .collect()
}

fn log_format(raw: &str) -> Result<LogFormat, ConfigError> {
    match raw {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        "auto" => Ok(LogFormat::Auto),
        other => Err(invalid(
            "log_format",
            format!("expected json, text or auto, got {other:?}"),
        )),
    }
}

fn redis(raw: RawRedis) -> Result<RedisConfig, ConfigError> {
    let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if !schemes.iter().any(|scheme| raw.url.starts_with(scheme)) {
        return Err(invalid("redis.url", "expected a redis:// or rediss:// URL"));
    }
    if raw.prefix.chars().any(char::is_whitespace) {
        return Err(invalid("redis.prefix", "must not contain whitespace"));
    }
    Ok(RedisConfig {
        url: Secret::new(raw.url),
        prefix: raw.prefix,
    })
}

fn kafka_section(raw: RawKafka) -> Result<KafkaConfig, ConfigError> {
    if raw.group_id.is_empty() {
        return Err(invalid("kafka.group_id", "must not be empty"));
    }
    Ok(KafkaConfig {
        properties: kafka::properties(raw.properties)?,
        brokers: raw.brokers.trim().to_string(),
        group_id: raw.group_id,
    })
}

/// `None` when unset (only `run` requires one); a set token has at least
/// [`MIN_ADMIN_TOKEN_CHARS`] characters.
fn admin_token(raw: String) -> Result<Option<Secret>, ConfigError> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return Err(invalid(
            "admin_token",
            format!("must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"),
        ));
    }
    Ok(Some(Secret::new(raw)))
}
fn topic(key: &str, value: String) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 249
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(value)
    } else {
        Err(invalid(key, format!("not a valid Kafka topic name: {value:?}")))
    }
}

fn addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("expected host:port like 0.0.0.0:8080, got {value:?}"),
        )
    })
}

fn ranged(key: &str, value: i64, min: i64, max: i64) -> Result<usize, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value as usize)
    } else {
        Err(invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|e| invalid(key, format!("expected a duration like 10s, got {value:?}: {e}")))
}
