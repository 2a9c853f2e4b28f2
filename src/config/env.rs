//! Environment layering: the compiled-in defaults, a `WD_CONFIG` file merged over them, then
//! one `WD_*` variable per key. The defaults decide which keys exist and how a variable's text
//! is read; anything else is refused, except the kubelet's service links.

use std::collections::BTreeMap;

use toml::Value;

use super::{ConfigError, DEFAULTS, env_name, invalid};

/// The compiled-in defaults file as a TOML value.
pub(super) fn defaults() -> Value {
    Value::Table(
        toml::from_str::<toml::Table>(DEFAULTS).expect("the compiled-in defaults file is valid TOML"),
    )
}

/// Deep-merges `over` into `base`; keys unknown to the defaults are refused here so a
/// typo in a file is reported with its path rather than ignored.
pub(super) fn merge(base: &mut Value, over: Value, path: &str) -> Result<(), ConfigError> {
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
pub(super) fn apply_env(
    merged: &mut Value,
    defaults: &Value,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, ConfigError> {
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
        let kind = lookup(defaults, &key);
        *lookup_mut(merged, &key) = parse_env_value(&key, kind, text)?;
    }
    Ok(ignored)
}

/// Keys whose value may instead come from a file named by their variable with `_FILE` added
/// (`WD_ADMIN_TOKEN_FILE=/run/secrets/admin-token`): the secrets, as mounted from a
/// Kubernetes secret volume or a Docker secret.
pub(super) const FROM_FILE: &[&str] = &["admin_token", "secret_key", "redis.url", "kafka.properties"];

/// `vars` with each `<VARIABLE>_FILE` of a [`FROM_FILE`] key replaced by `<VARIABLE>` set to
/// the file's text (without its final line break). Setting both, or naming a file that
/// cannot be read, stops the start; the file's text never appears in an error.
pub(super) fn read_files(
    mut vars: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for key in FROM_FILE {
        let variable = env_name(key);
        let from_file = format!("{variable}_FILE");
        let Some(path) = vars.remove(&from_file) else {
            continue;
        };
        let refuse = |message: String| ConfigError::Invalid {
            key: key.to_string(),
            env: from_file.clone(),
            message,
        };
        if vars.contains_key(&variable) {
            return Err(refuse(format!("set {variable} or {from_file}, not both")));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|err| refuse(format!("cannot read {path}: {err}")))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        vars.insert(variable, text.to_string());
    }
    Ok(vars)
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

fn lookup<'a>(value: &'a Value, key: &str) -> &'a Value {
    key.split('.').fold(value, |v, part| {
        v.get(part).expect("leaf_keys only yields existing keys")
    })
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
        Value::Float(_) => Value::Float(
            text.trim()
                .parse()
                .map_err(|_| invalid(key, format!("expected a number, got {text:?}")))?,
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
