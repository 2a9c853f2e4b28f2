//! Configuration: the documented defaults file, a file named by `WD_CONFIG`, then `WD_*`
//! environment variables, validated once into [`Config`]. Nothing after start-up re-checks
//! it, so every rule lives here and every error names the key (and its variable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Value;

use crate::crypto::SecretKeys;
use crate::secret::Secret;

/// The defaults file, compiled in so the binary runs with no file beside it.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

const ENV_PREFIX: &str = "WD_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {key} ({env}): {message}")]
    Invalid {
        key: String,
        env: String,
        message: String,
    },
    #[error("cannot read configuration file {path} (WD_CONFIG): {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path} (WD_CONFIG) is not valid TOML: {message}")]
    FileSyntax { path: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        env: env_name(key),
        message: message.into(),
    }
}

/// The shortest admin token accepted: it guards every template and credential, so it must
/// not be guessable (`openssl rand -hex 32` makes a good one).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

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

/// `kafka.group_id` -> `WD_KAFKA_GROUP_ID`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
    /// Text on a terminal, JSON otherwise.
    Auto,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub trigger_topic: String,
    pub retry_topic_prefix: String,
    pub retry_delays: Vec<Duration>,
    pub dlq_topic: String,
    pub redis: RedisConfig,
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub admin_token: Option<Secret>,
    pub allowed_networks: Vec<IpNet>,
    pub https_only: bool,
    /// Keys encrypting template credentials and tokens in Redis; the first encrypts.
    pub secret_keys: Option<Arc<SecretKeys>>,
    pub max_inflight: usize,
    pub max_per_host: usize,
    pub partition_window: usize,
    pub max_pending_bytes: usize,
    pub max_event_bytes: usize,
    pub max_profiles: usize,
    pub max_rendered_bytes: usize,
    pub template_cache_ttl: Duration,
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    /// `WD_*` variables ignored because they are Kubernetes service links (logged at debug).
    pub ignored_variables: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    /// librdkafka properties, applied after the service's own.
    pub properties: BTreeMap<String, KafkaProperty>,
}

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

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May carry a password, hence a secret.
    pub url: Secret,
    pub prefix: String,
}

/// The shape of the files, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
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

impl Config {
    /// Loads defaults, `WD_CONFIG` and the process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Loads defaults, then `WD_CONFIG` and `WD_*` taken from `vars`.
    pub fn load_from(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let mut merged = defaults();
        if let Some(path) = vars.get("WD_CONFIG").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                path: path.clone(),
                source,
            })?;
            let file = toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::FileSyntax {
                path: path.clone(),
                message: e.message().to_string(),
            })?;
            merge(&mut merged, Value::Table(file), "")?;
        }
        let ignored_variables = apply_env(&mut merged, &vars)?;
        let raw: RawConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            invalid(&key, e.into_inner().message().to_string())
        })?;
        Ok(Config {
            ignored_variables,
            ..raw.validate()?
        })
    }

    /// Commands that talk to Kafka (`dlq ...`) need a broker list.
    pub fn require_brokers(&self) -> Result<(), ConfigError> {
        if self.kafka.brokers.is_empty() {
            return Err(invalid("kafka.brokers", "required"));
        }
        Ok(())
    }

    /// `run` needs a broker list and an admin token; the demo brings its own.
    pub fn require_for_run(&self) -> Result<(), ConfigError> {
        if self.kafka.brokers.is_empty() {
            return Err(invalid("kafka.brokers", "required by `run`"));
        }
        if self.admin_token.is_none() {
            return Err(invalid("admin_token", "required by `run`"));
        }
        Ok(())
    }

    /// Name of retry tier `n` (1-based).
    pub fn retry_topic(&self, tier: usize) -> String {
        format!("{}-{}", self.retry_topic_prefix, tier)
    }
}

/// The compiled-in defaults file as a TOML value.
fn defaults() -> Value {
    Value::Table(
        toml::from_str::<toml::Table>(DEFAULTS).expect("the compiled-in defaults file is valid TOML"),
    )
}

/// Deep-merges `over` into `base`; keys unknown to the defaults are refused here so a
/// typo in a file is reported with its path rather than ignored.
fn merge(base: &mut Value, over: Value, path: &str) -> Result<(), ConfigError> {
    let (Value::Table(base), Value::Table(over)) = (base, over) else {
        unreachable!("merge is only called on tables")
    };
    for (key, value) in over {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        // kafka.properties is an open table: any librdkafka key.
        let open = key_path.starts_with("kafka.properties");
        match base.get_mut(&key) {
            Some(existing @ Value::Table(_)) if value.is_table() && !open => {
                merge(existing, value, &key_path)?
            }
            Some(existing) => *existing = value,
            None if open || path == "kafka.properties" => {
                base.insert(key, value);
            }
            None => return Err(invalid(&key_path, "unknown key")),
        }
    }
    Ok(())
}

/// Overrides every key of the defaults with its `WD_*` variable when set. The type of the
/// default decides how the text is read.
/// Returns the variables ignored as Kubernetes service links.
fn apply_env(merged: &mut Value, vars: &BTreeMap<String, String>) -> Result<Vec<String>, ConfigError> {
    let known = leaf_keys(merged, "");
    let mut ignored = Vec::new();
    for (name, value) in vars.iter().filter(|(k, _)| *k != "WD_CONFIG") {
        if !known.iter().any(|key| env_name(key) == *name) {
            if is_service_link(name, value) {
                ignored.push(name.clone());
                continue;
            }
            return Err(ConfigError::Invalid {
                key: name.clone(),
                env: name.clone(),
                message: "unknown variable (no such configuration key)".into(),
            });
        }
    }
    for key in known {
        let Some(text) = vars.get(&env_name(&key)) else {
            continue;
        };
        // The compiled-in default says how to read the text (a file may have changed the type).
        let mut defaults = defaults();
        let kind = lookup_mut(&mut defaults, &key).clone();
        *lookup_mut(merged, &key) = parse_env_value(&key, &kind, text)?;
    }
    Ok(ignored)
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

/// Whether `name=value` is one of the variables the kubelet injects for every Service in
/// the namespace (`enableServiceLinks`): a Service called `wd-webhook-dispatcher` yields
/// `WD_WEBHOOK_DISPATCHER_PORT=tcp://10.0.0.1:8080` and friends. Both the name's shape and
/// the value's must match, so a misspelt key (`WD_KAFKA_BROKER=…`) is still refused.
fn is_service_link(name: &str, value: &str) -> bool {
    let is_port = |v: &str| v.parse::<u16>().is_ok();
    let is_ip = |v: &str| v.parse::<std::net::IpAddr>().is_ok();
    let is_proto = |v: &str| matches!(v, "TCP" | "UDP" | "SCTP");
    let is_url = |v: &str| {
        ["tcp://", "udp://", "sctp://"].iter().any(|scheme| {
            v.strip_prefix(scheme)
                .and_then(|rest| rest.parse::<std::net::SocketAddr>().ok())
                .is_some()
        })
    };
    if name.ends_with("_SERVICE_HOST") {
        return is_ip(value);
    }
    if name.ends_with("_SERVICE_PORT") || name.contains("_SERVICE_PORT_") {
        return is_port(value);
    }
    // <NAME>_PORT=tcp://ip:port, then <NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
    if name.ends_with("_PORT") && is_url(value) {
        return true;
    }
    let parts: Vec<&str> = name.rsplitn(4, '_').collect();
    let port_proto = |port: &str, proto: &str| is_port(port) && is_proto(proto);
    match parts.as_slice() {
        [proto, port, "PORT", _] if port_proto(port, proto) => is_url(value),
        [field, proto, port, rest] if rest.ends_with("_PORT") && port_proto(port, proto) => match *field {
            "PROTO" => matches!(value, "tcp" | "udp" | "sctp"),
            "PORT" => is_port(value),
            "ADDR" => is_ip(value),
            _ => false,
        },
        _ => false,
    }
}

fn leaf_keys(value: &Value, path: &str) -> Vec<String> {
    let Value::Table(table) = value else {
        return vec![path.to_string()];
    };
    let mut keys = Vec::new();
    for (key, value) in table {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if value.is_table() && key_path != "kafka.properties" {
            keys.extend(leaf_keys(value, &key_path));
        } else {
            keys.push(key_path);
        }
    }
    keys
}

fn lookup_mut<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    key.split('.').fold(value, |v, part| {
        v.get_mut(part).expect("leaf_keys only yields existing keys")
    })
}

fn parse_env_value(key: &str, default: &Value, text: &str) -> Result<Value, ConfigError> {
    let list = || {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect::<Vec<_>>()
    };
    Ok(match default {
        Value::String(_) => Value::String(text.to_string()),
        Value::Integer(_) => Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| invalid(key, format!("expected an integer, got {text:?}")))?,
        ),
        Value::Boolean(_) => Value::Boolean(match text.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(invalid(key, format!("expected true or false, got {text:?}"))),
        }),
        Value::Array(_) => Value::Array(list()),
        Value::Table(_) => {
            // A piece without '=' continues the previous value, so values may hold commas:
            // "debug=fetch,consumer,security.protocol=SSL" is two properties.
            let mut table = toml::map::Map::new();
            let mut last: Option<String> = None;
            for piece in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match (piece.split_once('='), &last) {
                    (Some((k, v)), _) => {
                        table.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
                        last = Some(k.trim().to_string());
                    }
                    (None, Some(previous)) => {
                        if let Some(Value::String(value)) = table.get_mut(previous) {
                            value.push(',');
                            value.push_str(piece);
                        }
                    }
                    (None, None) => return Err(invalid(key, format!("expected key=value, got {piece:?}"))),
                }
            }
            Value::Table(table)
        }
        other => unreachable!("the defaults file has no {other:?} values"),
    })
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let topic = |key: &str, value: String| -> Result<String, ConfigError> {
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
        };
        let addr = |key: &str, value: &str| -> Result<SocketAddr, ConfigError> {
            value.parse().map_err(|_| {
                invalid(
                    key,
                    format!("expected host:port like 0.0.0.0:8080, got {value:?}"),
                )
            })
        };
        let ranged = |key: &str, value: i64, min: i64, max: i64| -> Result<usize, ConfigError> {
            if (min..=max).contains(&value) {
                Ok(value as usize)
            } else {
                Err(invalid(
                    key,
                    format!("must be between {min} and {max}, got {value}"),
                ))
            }
        };
        let duration = |key: &str, value: &str| -> Result<Duration, ConfigError> {
            humantime::parse_duration(value)
                .map_err(|e| invalid(key, format!("expected a duration like 10s, got {value:?}: {e}")))
        };

        let retry_delays = self
            .retry_delays
            .iter()
            .map(|d| duration("retry_delays", d))
            .collect::<Result<Vec<_>, _>>()?;
        if retry_delays.is_empty() {
            return Err(invalid("retry_delays", "at least one retry tier is needed"));
        }
        let allowed_networks = self
            .allowed_networks
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| invalid("allowed_networks", format!("not a CIDR network: {n:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_format = match self.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            "auto" => LogFormat::Auto,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("expected json, text or auto, got {other:?}"),
                ));
            }
        };
        if !self.redis.url.starts_with("redis://")
            && !self.redis.url.starts_with("rediss://")
            && !self.redis.url.starts_with("redis+unix://")
            && !self.redis.url.starts_with("unix://")
        {
            return Err(invalid("redis.url", "expected a redis:// or rediss:// URL"));
        }
        if self.redis.prefix.chars().any(char::is_whitespace) {
            return Err(invalid("redis.prefix", "must not contain whitespace"));
        }
        if self.kafka.group_id.is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        let properties = self
            .kafka
            .properties
            .into_iter()
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
            .collect::<Result<BTreeMap<_, _>, _>>()?;

        let trigger_topic = topic("trigger_topic", self.trigger_topic)?;
        let dlq_topic = topic("dlq_topic", self.dlq_topic)?;
        let retry_topic_prefix = topic("retry_topic_prefix", self.retry_topic_prefix)?;
        Ok(Config {
            kafka: KafkaConfig {
                brokers: self.kafka.brokers.trim().to_string(),
                group_id: self.kafka.group_id,
                properties,
            },
            trigger_topic,
            retry_topic_prefix,
            retry_delays,
            dlq_topic,
            redis: RedisConfig {
                url: Secret::new(self.redis.url),
                prefix: self.redis.prefix,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn error_of(vars: &[(&str, &str)]) -> String {
        load(vars).expect_err("should be refused").to_string()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = load(&[]).unwrap();
        assert_eq!(c.trigger_topic, "campaign-triggers");
        assert_eq!(c.retry_topic(1), "webhook-retry-1");
        assert_eq!(
            c.retry_delays,
            vec![Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(c.dlq_topic, "webhook-dlq");
        assert_eq!(c.kafka.group_id, "webhook-dispatcher");
        assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.redis.prefix, "webhook:");
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(c.max_inflight, 512);
        assert_eq!(c.max_per_host, 64);
        assert_eq!(c.drain_timeout, Duration::from_secs(25));
        assert_eq!(c.log_format, LogFormat::Auto);
        assert!(c.admin_token.is_none() && c.allowed_networks.is_empty());
    }

    #[test]
    fn every_spec_variable_takes_effect() {
        let c = load(&[
            ("WD_KAFKA_BROKERS", "k1:9092,k2:9092"),
            ("WD_KAFKA_GROUP_ID", "g"),
            ("WD_TRIGGER_TOPIC", "t"),
            ("WD_RETRY_TOPIC_PREFIX", "r"),
            ("WD_RETRY_DELAYS", "1s, 2m,3h"),
            ("WD_DLQ_TOPIC", "d"),
            ("WD_REDIS_URL", "rediss://:pw@cache:6380/2"),
            ("WD_REDIS_PREFIX", "p:"),
            ("WD_HTTP_ADDR", "127.0.0.1:1"),
            ("WD_METRICS_ADDR", "[::1]:2"),
            ("WD_ADMIN_TOKEN", "tok-of-16-chars!"),
            ("WD_ALLOWED_NETWORKS", "127.0.0.1/32,::1"),
            ("WD_MAX_INFLIGHT", "7"),
            ("WD_LOG_FORMAT", "json"),
            (
                "WD_KAFKA_PROPERTIES",
                "security.protocol=SASL_SSL,debug=fetch,consumer,sasl.password=pw",
            ),
        ])
        .unwrap();
        assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.trigger_topic, "t");
        assert_eq!(c.retry_topic(2), "r-2");
        assert_eq!(
            c.retry_delays,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3 * 3600)
            ]
        );
        assert_eq!(c.dlq_topic, "d");
        assert_eq!(c.redis.url.expose(), "rediss://:pw@cache:6380/2");
        assert_eq!(c.redis.prefix, "p:");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:1");
        assert_eq!(c.metrics_addr.to_string(), "[::1]:2");
        assert_eq!(
            c.admin_token.as_ref().map(Secret::expose),
            Some("tok-of-16-chars!")
        );
        assert_eq!(c.allowed_networks.len(), 2);
        assert_eq!(c.max_inflight, 7);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.kafka.properties["security.protocol"].value, "SASL_SSL");
        assert_eq!(
            c.kafka.properties["debug"].value, "fetch,consumer",
            "values may hold commas"
        );
        assert_eq!(c.kafka.properties["sasl.password"].value, "pw");
        c.require_for_run().unwrap();
        // Secrets never print.
        let printed = format!("{c:?}");
        assert!(!printed.contains("pw") && !printed.contains("tok\""), "{printed}");
    }

    #[test]
    fn a_short_admin_token_is_refused_naming_the_key_and_never_shown() {
        let err = Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), "change-me".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_token (WD_ADMIN_TOKEN)"), "{err}");
        assert!(err.contains("at least 16 characters"), "{err}");
        assert!(!err.contains("change-me"), "{err}");
        let fifteen = "x".repeat(MIN_ADMIN_TOKEN_CHARS - 1);
        assert!(Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), fifteen)]).is_err());
        let sixteen = "x".repeat(MIN_ADMIN_TOKEN_CHARS);
        let config = Config::load_from(vec![("WD_ADMIN_TOKEN".to_string(), sixteen.clone())]).unwrap();
        assert_eq!(
            config.admin_token.as_ref().map(Secret::expose),
            Some(sixteen.as_str())
        );
        let unset = Config::load_from(Vec::<(String, String)>::new()).unwrap();
        assert!(
            unset.admin_token.is_none(),
            "unset stays allowed until `run` requires it"
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_variable() {
        for (vars, key) in [
            (
                vec![("WD_MAX_INFLIGHT", "zero")],
                "max_inflight (WD_MAX_INFLIGHT)",
            ),
            (vec![("WD_MAX_INFLIGHT", "0")], "max_inflight (WD_MAX_INFLIGHT)"),
            (
                vec![("WD_RETRY_DELAYS", "10 parsecs")],
                "retry_delays (WD_RETRY_DELAYS)",
            ),
            (vec![("WD_RETRY_DELAYS", "")], "retry_delays (WD_RETRY_DELAYS)"),
            (vec![("WD_HTTP_ADDR", "localhost")], "http_addr (WD_HTTP_ADDR)"),
            (vec![("WD_METRICS_ADDR", ":90")], "metrics_addr (WD_METRICS_ADDR)"),
            (vec![("WD_ALLOWED_NETWORKS", "10.0.0.0/99")], "allowed_networks"),
            (vec![("WD_LOG_FORMAT", "xml")], "log_format (WD_LOG_FORMAT)"),
            (
                vec![("WD_TRIGGER_TOPIC", "bad topic")],
                "trigger_topic (WD_TRIGGER_TOPIC)",
            ),
            (vec![("WD_REDIS_URL", "http://x")], "redis.url (WD_REDIS_URL)"),
            (
                vec![("WD_KAFKA_PROPERTIES", "novalue")],
                "kafka.properties (WD_KAFKA_PROPERTIES)",
            ),
            (vec![("WD_HTTPS_ONLY", "maybe")], "https_only (WD_HTTPS_ONLY)"),
            (vec![("WD_MAX_INFLIGT", "5")], "WD_MAX_INFLIGT"),
            (
                vec![("WD_KAFKA_PROPERTIES", "enable.auto.offset.store=true")],
                "kafka.properties.enable.auto.offset.store",
            ),
            (vec![("WD_KAFKA_PROPERTIES", "acks=1")], "kafka.properties.acks"),
            (
                vec![("WD_KAFKA_PROPERTIES", "enable.idempotence=false")],
                "kafka.properties.enable.idempotence",
            ),
        ] {
            let err = error_of(&vars);
            assert!(err.contains(key), "{vars:?}: {err}");
        }
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        // What the kubelet injects for Services `wd`, `wd-webhook-dispatcher` and `wd-redis`.
        let links = [
            ("WD_SERVICE_HOST", "10.0.0.7"),
            ("WD_SERVICE_PORT", "8080"),
            ("WD_SERVICE_PORT_HTTP", "8080"),
            ("WD_PORT", "tcp://10.0.0.7:8080"),
            ("WD_PORT_8080_TCP", "tcp://10.0.0.7:8080"),
            ("WD_PORT_8080_TCP_PROTO", "tcp"),
            ("WD_PORT_8080_TCP_PORT", "8080"),
            ("WD_PORT_8080_TCP_ADDR", "10.0.0.7"),
            ("WD_WEBHOOK_DISPATCHER_SERVICE_HOST", "10.0.0.1"),
            ("WD_WEBHOOK_DISPATCHER_SERVICE_PORT_METRICS", "9090"),
            ("WD_WEBHOOK_DISPATCHER_PORT", "tcp://10.0.0.1:8080"),
            ("WD_WEBHOOK_DISPATCHER_PORT_9090_TCP", "tcp://10.0.0.1:9090"),
            ("WD_WEBHOOK_DISPATCHER_PORT_9090_TCP_ADDR", "10.0.0.1"),
            ("WD_REDIS_SERVICE_HOST", "fd00::1"),
            ("WD_REDIS_PORT", "tcp://[fd00::1]:6379"),
            ("WD_REDIS_PORT_6379_UDP_PROTO", "udp"),
        ];
        let c = load(&links).unwrap();
        assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
        // Shaped like a link but not valued like one, or a plain typo: refused, named.
        for typo in [
            ("WD_KAFKA_BROKER", "k:9092"),
            ("WD_REDIS_PORT", "6379"),
            ("WD_ADMIN_SERVICE_HOST", "not-an-ip"),
            ("WD_X_PORT_8080_TCP_ADDR", "tcp://10.0.0.1:1"),
        ] {
            let err = error_of(&[typo]);
            assert!(err.contains(typo.0), "{err}");
        }
    }

    #[test]
    fn run_requires_brokers_and_token() {
        let c = load(&[("WD_ADMIN_TOKEN", "an-admin-token-16")]).unwrap();
        assert!(
            c.require_for_run()
                .unwrap_err()
                .to_string()
                .contains("WD_KAFKA_BROKERS")
        );
        let c = load(&[("WD_KAFKA_BROKERS", "k:1")]).unwrap();
        assert!(
            c.require_for_run()
                .unwrap_err()
                .to_string()
                .contains("WD_ADMIN_TOKEN")
        );
    }

    #[test]
    fn a_config_file_layers_under_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd.toml");
        std::fs::write(
            &path,
            "max_inflight = 9\ntrigger_topic = \"from-file\"\n[kafka]\nbrokers = \"f:1\"\n\
             [kafka.properties]\n\"fetch.min.bytes\" = 10\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let c = load(&[("WD_CONFIG", path), ("WD_TRIGGER_TOPIC", "from-env")]).unwrap();
        assert_eq!(c.max_inflight, 9);
        assert_eq!(c.trigger_topic, "from-env");
        assert_eq!(c.kafka.brokers, "f:1");
        assert_eq!(c.kafka.properties["fetch.min.bytes"].value, "10");

        std::fs::write(dir.path().join("typo.toml"), "max_inflite = 9\n").unwrap();
        let typo = dir.path().join("typo.toml");
        let err = error_of(&[("WD_CONFIG", typo.to_str().unwrap())]);
        assert!(err.contains("max_inflite"), "{err}");

        std::fs::write(dir.path().join("float.toml"), "max_inflight = 1.5\n").unwrap();
        let float = dir.path().join("float.toml");
        // The environment wins, read as the default's type whatever the file put there.
        let c = load(&[("WD_CONFIG", float.to_str().unwrap()), ("WD_MAX_INFLIGHT", "7")]).unwrap();
        assert_eq!(c.max_inflight, 7);
        let err = error_of(&[("WD_CONFIG", float.to_str().unwrap())]);
        assert!(err.contains("max_inflight (WD_MAX_INFLIGHT)"), "{err}");

        std::fs::write(dir.path().join("type.toml"), "max_inflight = \"many\"\n").unwrap();
        let wrong = dir.path().join("type.toml");
        let err = error_of(&[("WD_CONFIG", wrong.to_str().unwrap())]);
        assert!(err.contains("max_inflight (WD_MAX_INFLIGHT)"), "{err}");
    }
}
