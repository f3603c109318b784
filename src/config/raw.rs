//! The file as serde reads it: every value keeps its byte span, so a problem found while
//! resolving it into [`super::Config`] can still name its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub shutdown_grace_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub sip: Sip,
    #[serde(default)]
    pub media: Media,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub twilio: Twilio,
    #[serde(default)]
    pub limits: super::limits::RawLimits,
    #[serde(default)]
    pub trunks: Vec<Spanned<Trunk>>,
    #[serde(default)]
    pub routes: Vec<Spanned<Route>>,
    #[serde(default)]
    pub agents: BTreeMap<Spanned<String>, Spanned<Agent>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    pub listen: Option<Spanned<String>>,
    pub public_addr: Option<Spanned<String>>,
    pub realm: Option<Spanned<String>>,
    pub max_calls: Option<Spanned<i64>>,
    /// `"proxy"` (407, the default) or `"www"` (401).
    pub auth_challenge: Option<Spanned<String>>,
    pub nonce_secret_env: Option<Spanned<String>>,
    pub listen_tcp: Option<Spanned<String>>,
    pub listen_tls: Option<Spanned<String>>,
    /// PEM certificate chain (e.g. Let's Encrypt's fullchain.pem), relative to the config.
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    /// PEM CAs: clients must present a certificate they signed (mutual TLS).
    pub tls_client_ca: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub rtp_ports: Option<Spanned<String>>,
    pub public_ip: Option<Spanned<String>>,
    pub media_timeout_secs: Option<Spanned<u64>>,
    pub initial_media_timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub sdes_without_tls: bool,
    pub reactors: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub listen: Option<Spanned<String>>,
    pub auth_token_env: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Twilio {
    pub auth_token_env: Option<Spanned<String>>,
    pub public_url: Option<Spanned<String>>,
    pub edge: Option<Spanned<String>>,
    pub sip_host: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    #[serde(default)]
    pub allowed_addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub numbers: Vec<Spanned<String>>,
    #[serde(default)]
    pub symmetric_rtp: bool,
    /// "none", "allowed" (the default) or "required".
    pub media_encryption: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub numbers: Vec<Spanned<String>>,
    pub agent: Spanned<String>,
}

pub use super::agents::RawAgent as Agent;
