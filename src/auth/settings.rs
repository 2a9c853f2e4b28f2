//! What a template says about its destination's credentials: none, HTTP Basic, or
//! OAuth 2.0 (grant, token endpoint, client authentication, where the answer's fields are),
//! and the digest that names an OAuth 2.0 credential set in caches. The template validates
//! them with its other fields ([`crate::template::Template::validate`]).

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::secret::Secret;

/// The `auth` of a template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        #[schema(value_type = String)]
        password: Secret,
    },
    #[serde(rename = "oauth2")]
    OAuth2(Box<OAuth2>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    #[default]
    ClientCredentials,
    Password,
}

/// How the client id and secret reach the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic: `Authorization: Basic base64(client_id:client_secret)`.
    #[default]
    BasicHeader,
    /// `client_id` and `client_secret` as form fields.
    RequestBody,
}

/// OAuth 2.0 credentials of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    #[serde(default)]
    pub grant_type: GrantType,
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    #[schema(value_type = String)]
    pub client_secret: Secret,
    /// Password grant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password grant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Password grant only: where refresh tokens are redeemed; `token_url` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_url: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default = "default_token_header")]
    pub token_header: String,
    #[serde(default = "default_token_prefix")]
    pub token_prefix: String,
    /// Overrides the token endpoint's `expires_in`.
    #[serde(default)]
    pub expiry_seconds: Option<u64>,
    /// Where the access token is in the token endpoint's answer when it is not
    /// `access_token`: a dotted path such as `token` or `data.access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_path: Option<String>,
    /// Where the refresh token is in the answer when it is not `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_path: Option<String>,
    /// Where the lifetime in seconds is in the answer when it is not `expires_in`
    /// (e.g. `expiresIn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_path: Option<String>,
}

fn default_token_header() -> String {
    "Authorization".into()
}
fn default_token_prefix() -> String {
    "Bearer ".into()
}

/// The cache key of a credential set: a digest, so Redis keys reveal no credential.
pub fn credential_key(auth: &OAuth2) -> String {
    let identity = serde_json::json!([
        auth.token_url,
        auth.refresh_token_url,
        auth.grant_type,
        auth.client_auth,
        auth.client_id,
        auth.client_secret.expose(),
        auth.username,
        auth.password.as_ref().map(Secret::expose),
        auth.scopes,
    ]);
    let mut identity = identity.to_string();
    // Where the answer's fields are changes which token is read; keys of templates without
    // a mapping stay as they were.
    let paths = [
        &auth.access_token_path,
        &auth.refresh_token_path,
        &auth.expires_in_path,
    ];
    if paths.iter().any(|p| p.is_some()) {
        identity.push_str(&serde_json::json!(paths).to_string());
    }
    crypto::short_digest(identity.as_bytes(), 16)
}
