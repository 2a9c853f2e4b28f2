//! `config`: the effective configuration printed in the shape of `config/default.toml`
//! (same keys, same sections), with every secret masked.

use crate::config::Config;

/// The effective configuration, shaped like `config/default.toml` (same keys, same
/// sections), secrets masked: TOML, or JSON with `--json`.
pub fn print_config(config: &Config, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        println!("{}", serde_json::to_string_pretty(config)?);
    } else {
        print!("{}", toml::to_string(config)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let printed: toml::Table = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
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

    #[test]
    fn no_secret_is_printed_in_either_format() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let vars = [
            ("WD_ADMIN_TOKEN", "admin-token-in-clear-1234"),
            ("WD_SECRET_KEY", key),
            ("WD_REDIS_URL", "redis://app:redis-pass-in-clear@r:6379/0"),
            (
                "WD_KAFKA_PROPERTIES",
                "sasl.password=kafka-pass-in-clear,ssl.key.password=key-pass-in-clear,sasl.oauthbearer.client.secret=oidc-in-clear",
            ),
        ];
        let config = Config::load_from(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        for printed in [
            toml::to_string(&config).unwrap(),
            serde_json::to_string(&config).unwrap(),
        ] {
            for clear in ["in-clear", key] {
                assert!(!printed.contains(clear), "{clear} printed:\n{printed}");
            }
            assert!(printed.contains("****"), "{printed}");
        }
    }
}
