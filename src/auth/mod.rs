//! Credentials of deliveries (docs/security.md): the settings a template carries
//! ([`Auth`]), HTTP Basic, Standard Webhooks signatures ([`sign`]), and OAuth 2.0 access
//! tokens (the token endpoint client, and a cache shared by the replicas with one fetch at
//! a time per credential set). The template model and the delivery client both build on
//! this module; it depends on neither (token requests pass the same SSRF [`crate::guard`]
//! as deliveries).

mod basic;
mod oauth2;
mod settings;
pub mod sign;

pub use basic::basic_header;
pub use oauth2::{Clock, SharedTokens, Token, TokenError, Tokens, system_clock};
pub use settings::{Auth, ClientAuth, GrantType, OAuth2, credential_key};
