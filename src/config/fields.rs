//! How each kind of key becomes its typed value, and how it is printed back: the serde
//! `with` helpers of [`Config`](super::Config). Reading rejects what the service cannot run
//! with, saying what was expected; printing writes what the defaults file would (durations
//! as `10s`), with every secret masked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use super::{CaFile, KafkaProperty, MIN_ADMIN_TOKEN_CHARS, PemFile};
use crate::crypto::SecretKeys;
use crate::secret::{MASK, Secret};

/// An integer within `MIN..=MAX`, e.g. `in_range::<1, 100_000>` for `max_inflight`.
pub(super) fn in_range<'de, const MIN: i64, const MAX: i64, D: Deserializer<'de>>(
    d: D,
) -> Result<usize, D::Error> {
    let value = i64::deserialize(d)?;
    if (MIN..=MAX).contains(&value) {
        Ok(value as usize)
    } else {
        Err(de::Error::custom(format!(
            "must be between {MIN} and {MAX}, got {value}"
        )))
    }
}

/// A duration like `250ms`, `10s` or `5m`.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(de::Error::custom)
}

pub(super) fn write_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(d))
}

/// The retry tiers' delays: at least one.
pub(super) fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let delays = Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_duration(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(de::Error::custom)?;
    if delays.is_empty() {
        return Err(de::Error::custom("at least one retry tier is needed"));
    }
    Ok(delays)
}

pub(super) fn write_durations<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ds.iter().map(format_duration))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("expected a duration like 10s, got {text:?}: {e}"))
}

/// As the defaults file writes it: whole seconds as `10s`, else milliseconds.
fn format_duration(d: &Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `host:port`, with an example in the error rather than serde's bare "invalid syntax".
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|_| de::Error::custom(format!("expected host:port like 0.0.0.0:8080, got {text:?}")))
}

/// A Kafka topic name: 1–249 of `[a-zA-Z0-9._-]`.
pub(super) fn topic<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let valid = !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(de::Error::custom(format!(
            "not a valid Kafka topic name: {name:?}"
        )));
    }
    Ok(name)
}

/// A topic name, or `""` for none.
pub(super) fn optional_topic<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() {
        return Ok(None);
    }
    topic(de::value::StringDeserializer::<D::Error>::new(name)).map(Some)
}

pub(super) fn write_optional<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_deref().unwrap_or_default())
}

/// A fraction, 0 to 1.
pub(super) fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(de::Error::custom(format!("must be between 0 and 1, got {value}")))
    }
}

pub(super) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(text)
}

pub(super) fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(String::deserialize(d)?.trim().to_string())
}

/// CIDR networks; a bare address stands for itself.
pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| de::Error::custom(format!("not a CIDR network: {n:?}")))
        })
        .collect()
}

pub(super) fn write_networks<S: Serializer>(ns: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ns.iter().map(IpNet::to_string))
}

/// `None` when unset (only `run` requires one); a set token has at least
/// [`MIN_ADMIN_TOKEN_CHARS`] characters.
pub(super) fn admin_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let token = String::deserialize(d)?;
    if token.is_empty() {
        return Ok(None);
    }
    if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return Err(de::Error::custom(format!(
            "must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(Some(Secret::new(token)))
}

/// Base64 AES-256 keys, comma-separated; the first encrypts, all decrypt.
pub(super) fn secret_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<SecretKeys>>, D::Error> {
    let text = String::deserialize(d)?;
    SecretKeys::parse(&text)
        .map(|keys| keys.map(Arc::new))
        .map_err(de::Error::custom)
}

/// Set secrets print as `****`, unset ones as an empty string (as in the defaults file).
pub(super) fn write_masked<S: Serializer, T>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if value.is_some() { MASK } else { "" })
}

/// A PEM file of CA certificates (empty: none): every certificate in it must parse.
pub(super) fn ca_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CaFile>, D::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let path = String::deserialize(d)?;
    if path.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(&path).map_err(|err| de::Error::custom(format!("cannot read {path}: {err}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| de::Error::custom(format!("cannot read {path}: {err}")))?;
    if certs.is_empty() {
        return Err(de::Error::custom(format!(
            "{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|err| {
            de::Error::custom(format!("{path}: certificate {} is not a usable CA: {err}", n + 1))
        })?;
    }
    Ok(Some(CaFile { path, certs, pem }))
}

/// A client certificate file (PEM), read at start.
pub(super) fn cert_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PemFile>, D::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    pem_file(d, "certificate", |pem| {
        CertificateDer::from_pem_slice(pem).is_ok()
    })
}

/// A private key file (PEM), read at start; an error never quotes what it holds.
pub(super) fn key_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PemFile>, D::Error> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    pem_file(d, "private key", |pem| PrivateKeyDer::from_pem_slice(pem).is_ok())
}

fn pem_file<'de, D: Deserializer<'de>>(
    d: D,
    kind: &str,
    holds: impl Fn(&[u8]) -> bool,
) -> Result<Option<PemFile>, D::Error> {
    let path = String::deserialize(d)?;
    if path.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(&path).map_err(|err| de::Error::custom(format!("cannot read {path}: {err}")))?;
    if !holds(&pem) {
        return Err(de::Error::custom(format!("{path} holds no PEM {kind}")));
    }
    Ok(Some(PemFile { path, pem }))
}

pub(super) fn write_pem_file<S: Serializer>(value: &Option<PemFile>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_ref().map_or("", |file| &file.path))
}

pub(super) fn write_ca_file<S: Serializer>(value: &Option<CaFile>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_ref().map_or("", |file| &file.path))
}

pub(super) fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let url = String::deserialize(d)?;
    let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
    // A cluster's seed nodes are a comma-separated list.
    if !url
        .split(',')
        .all(|one| schemes.iter().any(|scheme| one.trim().starts_with(scheme)))
    {
        return Err(de::Error::custom("expected a redis:// or rediss:// URL"));
    }
    Ok(Secret::new(url))
}

pub(super) fn write_redis_url<S: Serializer>(url: &Secret, s: S) -> Result<S::Ok, S::Error> {
    let masked: Vec<String> = url.expose().split(',').map(redis_url_masked).collect();
    s.serialize_str(&masked.join(","))
}

/// The Redis URL with only its password masked; all of it when it does not parse.
pub(super) fn redis_url_masked(url: &str) -> String {
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

pub(super) fn no_whitespace<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.chars().any(char::is_whitespace) {
        return Err(de::Error::custom("must not contain whitespace"));
    }
    Ok(text)
}

/// librdkafka properties: any key, a string, number or boolean value kept as text. Which
/// keys are reserved is checked after, where the error can name the whole key.
pub(super) fn properties<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, KafkaProperty>, D::Error> {
    let texts = BTreeMap::<String, PropertyText>::deserialize(d)?;
    Ok(texts
        .into_iter()
        .map(|(key, PropertyText(value))| (key.clone(), KafkaProperty { key, value }))
        .collect())
}

pub(super) fn write_properties<S: Serializer>(
    properties: &BTreeMap<String, KafkaProperty>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(properties.iter().map(|(key, property)| {
        let value = if property.is_secret() {
            MASK
        } else {
            property.value.as_str()
        };
        (key, value)
    }))
}

/// A property value as librdkafka takes it: text.
struct PropertyText(String);

impl<'de> Deserialize<'de> for PropertyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = PropertyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropertyText, E> {
                Ok(PropertyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PropertyText, E> {
                Ok(PropertyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PropertyText, E> {
                Ok(PropertyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PropertyText, E> {
                Ok(PropertyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PropertyText, E> {
                Ok(PropertyText(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}
