//! `[[trunks]]`: who may call (digest credentials, source addresses), which numbers each trunk
//! serves, and how its media goes (latching, SRTP).

use std::fmt;

use toml::Spanned;

use super::{numbers, raw, secret_from_env, Ctx};
use crate::sip::acl::AddressList;

#[derive(Clone, Debug)]
pub struct Trunk {
    pub name: String,
    /// Digest credentials; `None` for an address-only trunk (Twilio Elastic SIP Trunking).
    pub credentials: Option<Credentials>,
    pub allowed: AddressList,
    /// Called numbers this trunk serves, normalised; empty means any.
    pub numbers: Vec<String>,
    /// Send RTP back to where the caller's RTP comes from (latching), not to its SDP address:
    /// for callers behind NAT. Off for Twilio, whose media edge may send from another address
    /// than the one it receives on.
    pub symmetric_rtp: bool,
    /// Whether the media may or must be SRTP (SDES keys, RFC 4568).
    pub media_encryption: MediaEncryption,
}

/// A trunk's `media_encryption`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaEncryption {
    /// Plain RTP only: an SRTP offer gets 488.
    None,
    /// SRTP when the caller offers it (over TLS signalling), plain RTP otherwise.
    #[default]
    Allowed,
    /// SRTP only: a plain RTP offer gets 488.
    Required,
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    // The password must never reach a log line, even through `{:?}` of a whole config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub(super) fn resolve_trunk(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    i: usize,
    t: &Spanned<raw::Trunk>,
) -> Option<Trunk> {
    let r = t.get_ref();
    let key = |k: &str| format!("trunks[{i}].{k}");
    let name = r
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| format!("trunk{i}"));
    let password = match (&r.password, &r.password_env) {
        (Some(p), None) => Some(p.get_ref().clone()),
        (None, Some(e)) => secret_from_env(ctx, env, e, &key("password_env")),
        (Some(p), Some(_)) => {
            ctx.problem(
                p.span(),
                &key("password"),
                "set password or password_env, not both",
            );
            None
        }
        (None, None) => None,
    };
    let credentials = match (&r.username, password) {
        (Some(u), Some(p)) if !u.get_ref().is_empty() && !p.is_empty() => Some(Credentials {
            username: u.get_ref().clone(),
            password: p,
        }),
        (Some(u), _) if u.get_ref().is_empty() => {
            ctx.problem(u.span(), &key("username"), "must not be empty");
            None
        }
        (Some(u), _) => {
            if r.password.is_none() && r.password_env.is_none() {
                ctx.problem(
                    u.span(),
                    &key("username"),
                    "a username needs password or password_env",
                );
            }
            None
        }
        (None, _) => {
            if let Some(p) = r.password.as_ref().or(r.password_env.as_ref()) {
                ctx.problem(p.span(), &key("username"), "a password needs a username");
            }
            None
        }
    };
    let entries: Vec<String> = r
        .allowed_addresses
        .iter()
        .map(|a| a.get_ref().clone())
        .collect();
    let allowed = match AddressList::parse(&entries) {
        Ok(list) => list,
        Err(e) => {
            let span = r
                .allowed_addresses
                .iter()
                .find(|a| AddressList::parse(std::slice::from_ref(a.get_ref())).is_err())
                .map(|a| a.span())
                .unwrap_or(t.span());
            ctx.problem(span, &key("allowed_addresses"), e.to_string());
            return None;
        }
    };
    if r.username.is_none() && r.password.is_none() && r.password_env.is_none() && allowed.is_any()
    {
        // Without credentials and without an allowlist, anyone on the internet could call the
        // agent on the operator's bill.
        ctx.problem(
            t.span(),
            &format!("trunks[{i}]"),
            "a trunk without username/password needs allowed_addresses (e.g. [\"twilio\"])",
        );
        return None;
    }
    let media_encryption = match &r.media_encryption {
        None => MediaEncryption::default(),
        Some(v) => match v.get_ref().as_str() {
            "none" => MediaEncryption::None,
            "allowed" => MediaEncryption::Allowed,
            "required" => MediaEncryption::Required,
            _ => {
                ctx.problem(
                    v.span(),
                    &key("media_encryption"),
                    "expected \"none\", \"allowed\" or \"required\"",
                );
                MediaEncryption::default()
            }
        },
    };
    Some(Trunk {
        name,
        credentials,
        allowed,
        numbers: numbers(ctx, &r.numbers, &key("numbers")),
        symmetric_rtp: r.symmetric_rtp,
        media_encryption,
    })
}
