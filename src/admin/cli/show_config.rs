//! `config`: the effective configuration printed in the shape of `config/default.toml`
//! (same keys, same sections), with every secret masked.

use crate::config::{Config, LogFormat};
use crate::secret::MASK;

/// The effective configuration, shaped like `config/default.toml` (same keys, same
/// sections), secrets masked: TOML, or JSON with `--json`.
pub fn print_config(config: &Config, json_output: bool) -> anyhow::Result<()> {
    let view = ConfigView::new(config);
    if json_output {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", toml::to_string(&view)?);
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct ConfigView {
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
    max_inflight: usize,
    max_per_host: usize,
    partition_window: usize,
    max_pending_bytes: usize,
    max_event_bytes: usize,
    max_profiles: usize,
    max_rendered_bytes: usize,
    template_cache_ttl: String,
    drain_timeout: String,
    log_format: &'static str,
    kafka: KafkaView,
    redis: RedisView,
}

#[derive(serde::Serialize)]
struct KafkaView {
    brokers: String,
    group_id: String,
    properties: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
struct RedisView {
    url: String,
    prefix: String,
}

impl ConfigView {
    fn new(config: &Config) -> ConfigView {
        let masked = |set: bool| if set { MASK.to_string() } else { String::new() };
        let properties = config
            .kafka
            .properties
            .iter()
            .map(|(key, property)| {
                // The property's Debug is where the rule for secret-looking keys lives.
                let value = if format!("{property:?}") == MASK {
                    MASK.to_string()
                } else {
                    property.value.clone()
                };
                (key.clone(), value)
            })
            .collect();
        ConfigView {
            trigger_topic: config.trigger_topic.clone(),
            retry_topic_prefix: config.retry_topic_prefix.clone(),
            retry_delays: config.retry_delays.iter().map(duration).collect(),
            dlq_topic: config.dlq_topic.clone(),
            http_addr: config.http_addr.to_string(),
            metrics_addr: config.metrics_addr.to_string(),
            admin_token: masked(config.admin_token.as_ref().is_some_and(|t| !t.is_empty())),
            allowed_networks: config.allowed_networks.iter().map(|n| n.to_string()).collect(),
            https_only: config.https_only,
            secret_key: masked(config.secret_keys.is_some()),
            max_inflight: config.max_inflight,
            max_per_host: config.max_per_host,
            partition_window: config.partition_window,
            max_pending_bytes: config.max_pending_bytes,
            max_event_bytes: config.max_event_bytes,
            max_profiles: config.max_profiles,
            max_rendered_bytes: config.max_rendered_bytes,
            template_cache_ttl: duration(&config.template_cache_ttl),
            drain_timeout: duration(&config.drain_timeout),
            log_format: match config.log_format {
                LogFormat::Json => "json",
                LogFormat::Text => "text",
                LogFormat::Auto => "auto",
            },
            kafka: KafkaView {
                brokers: config.kafka.brokers.clone(),
                group_id: config.kafka.group_id.clone(),
                properties,
            },
            redis: RedisView {
                url: redis_url_masked(config.redis.url.expose()),
                prefix: config.redis.prefix.clone(),
            },
        }
    }
}

/// A duration as the defaults file writes it: whole seconds as `10s`, else milliseconds.
fn duration(d: &std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The Redis URL with only its password masked; all of it when it does not parse.
fn redis_url_masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
                return MASK.to_string();
            }
            parsed.to_string()
        }
        Err(_) => MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_redis_password_is_masked() {
        assert_eq!(
            redis_url_masked("redis://app:hunter2@redis.internal:6380/2"),
            "redis://app:****@redis.internal:6380/2"
        );
        assert_eq!(
            redis_url_masked("rediss://:hunter2@r:6379"),
            "rediss://:****@r:6379"
        );
        assert_eq!(
            redis_url_masked("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_printed_configuration_has_the_keys_of_the_defaults_file() {
        fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    toml::Value::Table(inner) if key != "properties" => keys(inner, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let config = Config::load_from(Vec::new()).unwrap();
        let printed: toml::Table =
            toml::from_str(&toml::to_string(&ConfigView::new(&config)).unwrap()).unwrap();
        let defaults: toml::Table = toml::from_str(crate::config::DEFAULTS).unwrap();
        let (mut printed_keys, mut default_keys) = (Vec::new(), Vec::new());
        keys(&printed, "", &mut printed_keys);
        keys(&defaults, "", &mut default_keys);
        printed_keys.sort();
        default_keys.sort();
        assert_eq!(printed_keys, default_keys);
        assert_eq!(
            printed, defaults,
            "with nothing set, `config` prints the defaults"
        );
    }
}
