//! Encryption at rest of template credentials and OAuth 2.0 tokens in Redis
//! (docs/security.md, "Secrets"): AES-256-GCM with keys from `secret_key` (WD_SECRET_KEY).
//!
//! An encrypted value is the string `enc:v1:<key id>:<base64 of nonce ‖ ciphertext>`. The key
//! id (the first 8 hex digits of the key's SHA-256) lets keys rotate: `secret_key` holds one
//! or more base64 keys separated by commas; the first encrypts, every one decrypts. Values
//! without the prefix are plain and are read as they are, so templates saved before a key
//! was configured keep working.

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// The configured keys; the first one encrypts.
pub struct SecretKeys {
    keys: Vec<(String, Aes256Gcm)>,
}

/// Shows the key ids only.
impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("encrypted with key {0:?}, which is not in secret_key (WD_SECRET_KEY)")]
    UnknownKey(String),
    #[error("an encrypted value but no secret_key (WD_SECRET_KEY) is configured")]
    NoKey,
    #[error("encrypted value is damaged or was not encrypted with key {0:?}")]
    Damaged(String),
}

impl SecretKeys {
    /// Parses `secret_key`: comma-separated base64 keys of 32 bytes. `Ok(None)` when empty.
    pub fn parse(value: &str) -> Result<Option<SecretKeys>, String> {
        let mut keys = Vec::new();
        for (n, encoded) in value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| format!("key {} is not base64", n + 1))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| format!("key {} must be 32 bytes (openssl rand -base64 32)", n + 1))?;
            keys.push((key_id(&bytes), cipher));
        }
        Ok((!keys.is_empty()).then_some(SecretKeys { keys }))
    }

    /// Encrypts with the first key.
    pub fn encrypt(&self, plain: &str) -> String {
        let (kid, cipher) = &self.keys[0];
        let nonce = Nonce::generate();
        let ciphertext = cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("AES-GCM encrypts any message under 64 GiB");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{kid}:{}", STANDARD.encode(sealed))
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].0
    }

    fn decrypt_with(&self, kid: &str, sealed: &str) -> Result<String, CryptoError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let damaged = || CryptoError::Damaged(kid.to_string());
        let sealed = STANDARD.decode(sealed).map_err(|_| damaged())?;
        if sealed.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| damaged())?;
        let plain = cipher.decrypt(&nonce, ciphertext).map_err(|_| damaged())?;
        String::from_utf8(plain).map_err(|_| damaged())
    }
}

/// Whether `value` is an encrypted value.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Decrypts `value` when it is encrypted, returns it unchanged when it is plain.
pub fn open(keys: Option<&SecretKeys>, value: &str) -> Result<String, CryptoError> {
    let Some(rest) = value.strip_prefix(PREFIX) else {
        return Ok(value.to_string());
    };
    let (kid, sealed) = rest
        .split_once(':')
        .ok_or_else(|| CryptoError::Damaged(String::new()))?;
    keys.ok_or(CryptoError::NoKey)?.decrypt_with(kid, sealed)
}

fn key_id(key: &[u8]) -> String {
    short_digest(key, 4)
}

/// The first `bytes` bytes of `data`'s SHA-256, in hex: a name that reveals nothing of it.
pub(crate) fn short_digest(data: &[u8], bytes: usize) -> String {
    Sha256::digest(data)[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trips_and_never_repeats_a_ciphertext() {
        let keys = SecretKeys::parse(&key(1)).unwrap().unwrap();
        let a = keys.encrypt("hunter2");
        let b = keys.encrypt("hunter2");
        assert!(is_encrypted(&a) && !a.contains("hunter2"), "{a}");
        assert_ne!(a, b, "a fresh nonce per value");
        assert_eq!(open(Some(&keys), &a).unwrap(), "hunter2");
        assert_eq!(open(Some(&keys), "plain").unwrap(), "plain");
    }

    #[test]
    fn rotation_reads_old_values_and_writes_with_the_new_key() {
        let old = SecretKeys::parse(&key(1)).unwrap().unwrap();
        let sealed_old = old.encrypt("s3cret");
        let rotated = SecretKeys::parse(&format!("{}, {}", key(2), key(1)))
            .unwrap()
            .unwrap();
        assert_eq!(open(Some(&rotated), &sealed_old).unwrap(), "s3cret");
        let sealed_new = rotated.encrypt("s3cret");
        assert!(sealed_new.contains(rotated.current_key_id()));
        assert_eq!(
            open(Some(&old), &sealed_new),
            Err(CryptoError::UnknownKey(rotated.current_key_id().to_string()))
        );
        assert_eq!(open(None, &sealed_new), Err(CryptoError::NoKey));
    }

    #[test]
    fn tampering_is_detected() {
        let keys = SecretKeys::parse(&key(1)).unwrap().unwrap();
        let sealed = keys.encrypt("s3cret");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            open(Some(&keys), &tampered),
            Err(CryptoError::Damaged(_))
        ));
    }

    #[test]
    fn bad_keys_are_refused_with_their_position() {
        assert!(SecretKeys::parse("").unwrap().is_none());
        assert_eq!(SecretKeys::parse("%%%").err().unwrap(), "key 1 is not base64");
        assert!(
            SecretKeys::parse(&format!("{},{}", key(1), STANDARD.encode([0; 16])))
                .err()
                .unwrap()
                .starts_with("key 2 must be 32 bytes")
        );
    }
}
