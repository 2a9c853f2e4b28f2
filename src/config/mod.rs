//! Configuration: the documented defaults file, a file named by `WD_CONFIG`, then `WD_*`
//! environment variables, validated once into [`Config`]. Nothing after start-up re-checks
//! it, so every rule lives here and every error names the key (and its variable).

mod env;
mod fields;
mod kafka;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::crypto::SecretKeys;
use crate::secret::Secret;

pub use kafka::{GroupProtocol, KafkaProperty, group_protocol};

/// The defaults file, compiled in so the binary runs with no file beside it.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

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

/// `kafka.group_id` -> `WD_KAFKA_GROUP_ID`; every `kafka.properties.*` key is set by the one
/// `WD_KAFKA_PROPERTIES`.
pub fn env_name(key: &str) -> String {
    if key.starts_with("kafka.properties.") {
        return format!("{ENV_PREFIX}KAFKA_PROPERTIES");
    }
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

/// A PEM file (a client certificate or its key), read once at start. Its content is never
/// printed.
#[derive(Clone)]
pub struct PemFile {
    pub path: String,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A PEM file of CA certificates, read once at start.
#[derive(Debug, Clone)]
pub struct CaFile {
    pub path: String,
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The file as read, for clients that take PEM.
    pub pem: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
    /// Text on a terminal, JSON otherwise.
    Auto,
}

/// The validated configuration, read in one pass from the merged defaults, file and
/// variables: each field's `with` helper (in `fields`) says how its text is read and
/// refuses what the service cannot run with. Serialised, it is what `config` prints: the
/// defaults file's keys, secrets masked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "fields::topic")]
    pub trigger_topic: String,
    #[serde(deserialize_with = "fields::topic")]
    pub retry_topic_prefix: String,
    #[serde(
        deserialize_with = "fields::durations",
        serialize_with = "fields::write_durations"
    )]
    pub retry_delays: Vec<Duration>,
    #[serde(deserialize_with = "fields::topic")]
    pub dlq_topic: String,
    #[serde(deserialize_with = "fields::socket_addr")]
    pub http_addr: SocketAddr,
    #[serde(deserialize_with = "fields::socket_addr")]
    pub metrics_addr: SocketAddr,
    #[serde(
        deserialize_with = "fields::admin_token",
        serialize_with = "fields::write_masked"
    )]
    pub admin_token: Option<Secret>,
    #[serde(
        deserialize_with = "fields::networks",
        serialize_with = "fields::write_networks"
    )]
    pub allowed_networks: Vec<IpNet>,
    pub https_only: bool,
    /// CA certificates trusted for destinations and token endpoints besides the public roots.
    #[serde(
        deserialize_with = "fields::ca_file",
        serialize_with = "fields::write_ca_file"
    )]
    pub destination_ca_file: Option<CaFile>,
    /// Keys encrypting template credentials and tokens in Redis; the first encrypts.
    #[serde(
        rename = "secret_key",
        deserialize_with = "fields::secret_keys",
        serialize_with = "fields::write_masked"
    )]
    pub secret_keys: Option<Arc<SecretKeys>>,
    #[serde(deserialize_with = "fields::in_range::<1, 100_000, _>")]
    pub max_inflight: usize,
    #[serde(deserialize_with = "fields::in_range::<1, 100_000, _>")]
    pub max_per_host: usize,
    #[serde(deserialize_with = "fields::in_range::<1, 1_000_000, _>")]
    pub partition_window: usize,
    #[serde(deserialize_with = "fields::in_range::<{ 1 << 20 }, { 1 << 40 }, _>")]
    pub max_pending_bytes: usize,
    #[serde(deserialize_with = "fields::in_range::<1024, { 64 << 20 }, _>")]
    pub max_event_bytes: usize,
    #[serde(deserialize_with = "fields::in_range::<1, 1_000_000, _>")]
    pub max_profiles: usize,
    #[serde(deserialize_with = "fields::in_range::<{ 64 << 10 }, { 1 << 30 }, _>")]
    pub max_rendered_bytes: usize,
    #[serde(
        deserialize_with = "fields::duration",
        serialize_with = "fields::write_duration"
    )]
    pub template_cache_ttl: Duration,
    #[serde(
        deserialize_with = "fields::duration",
        serialize_with = "fields::write_duration"
    )]
    pub stats_ttl: Duration,
    #[serde(
        deserialize_with = "fields::duration",
        serialize_with = "fields::write_duration"
    )]
    pub drain_timeout: Duration,
    /// The longest a campaign stays paused: its held deliveries are then dead-lettered as
    /// `expired`.
    #[serde(
        deserialize_with = "fields::duration",
        serialize_with = "fields::write_duration"
    )]
    pub campaign_max_pause: Duration,
    /// Threads running the async work (`1`: one event loop, the default).
    #[serde(deserialize_with = "fields::in_range::<1, 256, _>")]
    pub worker_threads: usize,
    pub log_format: LogFormat,
    /// `WD_*` variables ignored because they are Kubernetes service links (logged at debug).
    #[serde(skip)]
    pub ignored_variables: Vec<String>,
    // Sections last: TOML writes tables after plain keys.
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub delivery_log: DeliveryLogConfig,
}

/// The record of attempts kept for "what happened to my webhook?" (docs/how-it-works.md,
/// "Delivery log").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryLogConfig {
    /// Keep the log at all.
    pub enabled: bool,
    /// How long an attempt is kept.
    #[serde(
        deserialize_with = "fields::duration",
        serialize_with = "fields::write_duration"
    )]
    pub max_age: Duration,
    /// Attempts kept per campaign, newest first.
    #[serde(deserialize_with = "fields::in_range::<100, 10_000_000, _>")]
    pub per_campaign: usize,
    /// Campaigns whose attempts are kept, the most recently written.
    #[serde(deserialize_with = "fields::in_range::<1, 100_000, _>")]
    pub campaigns: usize,
    /// A topic that receives every failed attempt and a sample of the delivered ones.
    #[serde(
        deserialize_with = "fields::optional_topic",
        serialize_with = "fields::write_optional"
    )]
    pub attempts_topic: Option<String>,
    /// The share of delivered attempts sent to `attempts_topic`.
    #[serde(deserialize_with = "fields::fraction")]
    pub success_sample: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    #[serde(deserialize_with = "fields::trimmed")]
    pub brokers: String,
    #[serde(deserialize_with = "fields::non_empty")]
    pub group_id: String,
    /// librdkafka properties, applied after the service's own.
    #[serde(
        deserialize_with = "fields::properties",
        serialize_with = "fields::write_properties"
    )]
    pub properties: BTreeMap<String, KafkaProperty>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// May carry a password, hence a secret; printed with only the password masked.
    #[serde(
        deserialize_with = "fields::redis_url",
        serialize_with = "fields::write_redis_url"
    )]
    pub url: Secret,
    #[serde(deserialize_with = "fields::no_whitespace")]
    pub prefix: String,
    /// CA certificates the server's certificate must chain to (instead of the public roots).
    #[serde(
        deserialize_with = "fields::ca_file",
        serialize_with = "fields::write_ca_file"
    )]
    pub ca_file: Option<CaFile>,
    /// A client certificate and its key, for a server that asks for one.
    #[serde(
        deserialize_with = "fields::cert_file",
        serialize_with = "fields::write_pem_file"
    )]
    pub client_cert_file: Option<PemFile>,
    #[serde(
        deserialize_with = "fields::key_file",
        serialize_with = "fields::write_pem_file"
    )]
    pub client_key_file: Option<PemFile>,
    /// A Redis Cluster: `url` lists seed nodes (comma-separated) and `prefix` holds the
    /// hash tag that keeps every key of the service in one slot.
    pub cluster: bool,
}

impl RedisConfig {
    /// The CA and client certificate for TLS, when any is set.
    pub fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca_file.is_none() && self.client_cert_file.is_none() {
            return None;
        }
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.pem.clone(),
                client_key: key.pem.clone(),
            }),
            _ => None,
        };
        Some(redis::TlsCertificates {
            client_tls,
            root_cert: self.ca_file.as_ref().map(|ca| ca.pem.clone()),
        })
    }

    /// A client for the configured Redis: over TLS with the configured CA and client
    /// certificate, when set.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let url = self.url.expose();
        match self.tls_certificates() {
            None => redis::Client::open(url),
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
        }
    }

    /// The URLs `url` lists: one, or a cluster's seed nodes.
    fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.expose().split(',').map(str::trim)
    }

    /// TLS files need a TLS URL, and a client certificate its key; several URLs need
    /// cluster mode, and cluster mode a hash tag in the prefix.
    fn check(&self) -> Result<(), ConfigError> {
        if self.urls().count() > 1 && !self.cluster {
            return Err(invalid(
                "redis.url",
                "lists several URLs: that is a cluster's seed nodes, which needs redis.cluster = true",
            ));
        }
        if self.cluster && hash_tag(&self.prefix).is_none() {
            return Err(invalid(
                "redis.prefix",
                "needs a hash tag with redis.cluster, e.g. {webhook}:, so that every key of the \
                 service lives in one slot",
            ));
        }
        let tls_files = [
            ("redis.ca_file", self.ca_file.is_some()),
            ("redis.client_cert_file", self.client_cert_file.is_some()),
            ("redis.client_key_file", self.client_key_file.is_some()),
        ];
        if let Some((key, _)) = tls_files.iter().find(|(_, set)| *set)
            && !self.urls().all(|url| url.starts_with("rediss://"))
        {
            return Err(invalid(key, "needs a rediss:// redis.url (TLS)"));
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => Err(invalid(
                "redis.client_key_file",
                "required with redis.client_cert_file",
            )),
            (None, Some(_)) => Err(invalid(
                "redis.client_cert_file",
                "required with redis.client_key_file",
            )),
            _ => Ok(()),
        }
    }
}

/// The hash tag of a Redis key: what is between its first `{` and the next `}`, when that
/// is not empty (Redis Cluster hashes only that part).
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    Some(&key[open + 1..open + 1 + close]).filter(|tag| !tag.is_empty())
}

impl Config {
    /// Loads defaults, `WD_CONFIG` and the process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Loads defaults, then `WD_CONFIG` and `WD_*` taken from `vars`.
    pub fn load_from(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let vars = env::read_files(
            vars.into_iter()
                .filter(|(k, _)| k.starts_with(ENV_PREFIX))
                .collect(),
        )?;
        let defaults = env::defaults();
        let mut merged = defaults.clone();
        if let Some(path) = vars.get("WD_CONFIG").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                path: path.clone(),
                source,
            })?;
            let file = toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::FileSyntax {
                path: path.clone(),
                message: e.message().to_string(),
            })?;
            env::merge(&mut merged, Value::Table(file), "")?;
        }
        let ignored_variables = env::apply_env(&mut merged, &defaults, &vars)?;
        let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            invalid(&key, e.into_inner().message().to_string())
        })?;
        kafka::refuse_reserved(&config.kafka.properties)?;
        config.redis.check()?;
        if config.max_inflight < config.worker_threads {
            return Err(invalid(
                "max_inflight",
                format!(
                    "{} is fewer than worker_threads ({}): each event loop sends its share of max_inflight",
                    config.max_inflight, config.worker_threads
                ),
            ));
        }
        Ok(Config {
            ignored_variables,
            ..config
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

    /// The limits on one trigger record (`max_event_bytes`, `max_profiles`).
    pub fn event_limits(&self) -> crate::event::EventLimits {
        crate::event::EventLimits {
            max_bytes: self.max_event_bytes,
            max_profiles: self.max_profiles,
        }
    }

    /// The topic where a paused campaign's deliveries wait: `<retry_topic_prefix>-held`.
    pub fn held_topic(&self) -> String {
        format!("{}-held", self.retry_topic_prefix)
    }
}
