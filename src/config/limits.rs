//! `[limits]`: the SIP port's per-source budget and bans (`sip::guard`), with defaults close to
//! fail2ban's SIP jails.

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;
use crate::sip::guard::Limits;
use crate::sip::transport::stream::StreamLimits;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests per second a source outside every trunk's allowlist may send on average.
    pub source_rate: Option<Spanned<f64>>,
    /// How many such requests may come at once.
    pub source_burst: Option<Spanned<u64>>,
    pub ban_secs: Option<Spanned<u64>>,
    /// Wrong digest answers within `auth_window_secs` that ban a source; 0 never bans.
    pub auth_failures: Option<Spanned<u64>>,
    pub auth_window_secs: Option<Spanned<u64>>,
    pub max_sources: Option<Spanned<u64>>,
    /// Calls admitted but not yet answered, at most (503 with Retry-After beyond).
    pub max_calls_in_setup: Option<Spanned<u64>>,
    /// SIP TCP and TLS connections open at once, and from one IP address.
    pub tcp_connections: Option<Spanned<u64>>,
    pub tcp_connections_per_source: Option<Spanned<u64>>,
    /// A connection with nothing on it (no message, no keep-alive, no call) is closed.
    pub tcp_idle_secs: Option<Spanned<u64>>,
    /// A TLS handshake, and a message once begun, must complete within this.
    pub tcp_message_secs: Option<Spanned<u64>>,
}

pub fn resolve(ctx: &mut Ctx<'_>, raw: &RawLimits) -> Limits {
    let mut l = Limits::default();
    if let Some(v) = &raw.source_rate {
        let r = *v.get_ref();
        if r.is_finite() && r > 0.0 {
            l.rate = r;
        } else {
            ctx.problem(v.span(), "limits.source_rate", "must be a positive number");
        }
    }
    if let Some(v) = &raw.source_burst {
        match *v.get_ref() {
            0 => ctx.problem(v.span(), "limits.source_burst", "must be at least 1"),
            n => l.burst = n as f64,
        }
    }
    if let Some(t) = ctx.positive_secs(&raw.ban_secs, "limits.ban_secs") {
        l.ban = t;
    }
    if let Some(v) = &raw.auth_failures {
        match u32::try_from(*v.get_ref()) {
            Ok(n) => l.auth_failures = n,
            Err(_) => ctx.problem(v.span(), "limits.auth_failures", "too large"),
        }
    }
    if let Some(t) = ctx.positive_secs(&raw.auth_window_secs, "limits.auth_window_secs") {
        l.auth_window = t;
    }
    if let Some(v) = &raw.max_sources {
        match usize::try_from(*v.get_ref()) {
            Ok(n) if (16..=10_000_000).contains(&n) => l.max_sources = n,
            _ => ctx.problem(v.span(), "limits.max_sources", "must be 16 to 10,000,000"),
        }
    }
    if let Some(v) = &raw.max_calls_in_setup {
        match usize::try_from(*v.get_ref()) {
            Ok(n) if (1..=1_000_000).contains(&n) => l.max_setup = n,
            _ => ctx.problem(
                v.span(),
                "limits.max_calls_in_setup",
                "must be 1 to 1,000,000",
            ),
        }
    }
    l
}

pub fn resolve_streams(ctx: &mut Ctx<'_>, raw: &RawLimits) -> StreamLimits {
    let mut l = StreamLimits::default();
    let mut count = |v: &Option<Spanned<u64>>, key: &str, out: &mut usize| {
        if let Some(v) = v {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=1_000_000).contains(&n) => *out = n,
                _ => ctx.problem(v.span(), key, "must be 1 to 1,000,000"),
            }
        }
    };
    count(
        &raw.tcp_connections,
        "limits.tcp_connections",
        &mut l.max_connections,
    );
    count(
        &raw.tcp_connections_per_source,
        "limits.tcp_connections_per_source",
        &mut l.per_source,
    );
    if let Some(t) = ctx.positive_secs(&raw.tcp_idle_secs, "limits.tcp_idle_secs") {
        l.idle = t;
    }
    if let Some(t) = ctx.positive_secs(&raw.tcp_message_secs, "limits.tcp_message_secs") {
        l.message = t;
    }
    l
}
