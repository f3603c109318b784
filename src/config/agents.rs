//! `[agents.NAME]` tables: one raw shape holding every kind's keys (so each keeps its span for
//! error messages), resolved per kind into an [`AgentSpec`]. A key that belongs to another kind
//! is named as such rather than silently ignored.

use serde::Deserialize;
use toml::Spanned;

use super::{secret_from_env, AgentSpec, Ctx, HumeSpec};

/// Every key any agent kind accepts. `deny_unknown_fields` names typos with their location.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub kind: Spanned<String>,
    // hume and livekit
    pub url: Option<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    // hume
    pub config_id: Option<Spanned<String>>,
    pub config_version: Option<Spanned<i64>>,
    pub resume: Option<Spanned<bool>>,
    pub verbose_transcription: Option<Spanned<bool>>,
    pub connect_timeout_secs: Option<Spanned<u64>>,
    pub session_limit_secs: Option<Spanned<u64>>,
    pub audio_batch_ms: Option<Spanned<u64>>,
    // livekit
    pub api_secret_env: Option<Spanned<String>>,
    pub room_prefix: Option<Spanned<String>>,
    pub agent_name: Option<Spanned<String>>,
}

impl RawAgent {
    /// The keys that are set, with their spans, for "not a key of this kind" problems.
    fn set_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys = Vec::new();
        let mut add = |name: &'static str, span: Option<std::ops::Range<usize>>| {
            if let Some(span) = span {
                keys.push((name, span));
            }
        };
        add("url", self.url.as_ref().map(Spanned::span));
        add("api_key_env", self.api_key_env.as_ref().map(Spanned::span));
        add("config_id", self.config_id.as_ref().map(Spanned::span));
        add(
            "config_version",
            self.config_version.as_ref().map(Spanned::span),
        );
        add("resume", self.resume.as_ref().map(Spanned::span));
        add(
            "verbose_transcription",
            self.verbose_transcription.as_ref().map(Spanned::span),
        );
        add(
            "connect_timeout_secs",
            self.connect_timeout_secs.as_ref().map(Spanned::span),
        );
        add(
            "session_limit_secs",
            self.session_limit_secs.as_ref().map(Spanned::span),
        );
        add(
            "audio_batch_ms",
            self.audio_batch_ms.as_ref().map(Spanned::span),
        );
        add(
            "api_secret_env",
            self.api_secret_env.as_ref().map(Spanned::span),
        );
        add("room_prefix", self.room_prefix.as_ref().map(Spanned::span));
        add("agent_name", self.agent_name.as_ref().map(Spanned::span));
        keys
    }

    /// Reports every set key that is not in `allowed` for this kind.
    fn refuse_others(&self, ctx: &mut Ctx<'_>, name: &str, kind: &str, allowed: &[&str]) {
        for (key, span) in self.set_keys() {
            if !allowed.contains(&key) {
                ctx.problem(
                    span,
                    &format!("agents.{name}.{key}"),
                    format!("not valid for kind = \"{kind}\""),
                );
            }
        }
    }
}

const KINDS: &str = "echo, hume";

/// Resolves one `[agents.NAME]` table, reporting problems to `ctx`.
pub(super) fn resolve(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    agent: &Spanned<RawAgent>,
) -> Option<AgentSpec> {
    let raw = agent.get_ref();
    let kind_key = format!("agents.{name}.kind");
    match raw.kind.get_ref().as_str() {
        "echo" => {
            raw.refuse_others(ctx, name, "echo", &[]);
            Some(AgentSpec::Echo)
        }
        "hume" => {
            raw.refuse_others(ctx, name, "hume", HUME_KEYS);
            resolve_hume(ctx, env, name, agent)
        }
        "livekit" => {
            ctx.problem(
                raw.kind.span(),
                &kind_key,
                format!(
                    "agent kind \"{}\" is not available in this build yet (available: {KINDS})",
                    raw.kind.get_ref()
                ),
            );
            None
        }
        other => {
            ctx.problem(
                raw.kind.span(),
                &kind_key,
                format!("unknown agent kind \"{other}\" (available: {KINDS})"),
            );
            None
        }
    }
}

const HUME_KEYS: &[&str] = &[
    "url",
    "api_key_env",
    "config_id",
    "config_version",
    "resume",
    "verbose_transcription",
    "connect_timeout_secs",
    "session_limit_secs",
    "audio_batch_ms",
];

fn resolve_hume(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    agent: &Spanned<RawAgent>,
) -> Option<AgentSpec> {
    let raw = agent.get_ref();
    let key = |k: &str| format!("agents.{name}.{k}");
    let problems_before = ctx.problems.len();
    let url = match &raw.url {
        Some(u) => {
            let s = u.get_ref().trim();
            let rest = s
                .strip_prefix("wss://")
                .or_else(|| s.strip_prefix("ws://"))
                .unwrap_or("");
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() || s.contains(char::is_whitespace) {
                ctx.problem(
                    u.span(),
                    &key("url"),
                    "expected a ws:// or wss:// URL, e.g. \"wss://api.hume.ai/v0/evi/chat\"",
                );
            }
            s.to_string()
        }
        None => HumeSpec::DEFAULT_URL.to_string(),
    };
    let api_key = match &raw.api_key_env {
        Some(v) => secret_from_env(ctx, env, v, &key("api_key_env")),
        None => {
            ctx.problem(
                agent.span(),
                &format!("agents.{name}"),
                "kind = \"hume\" needs api_key_env (the variable holding the Hume API key)",
            );
            None
        }
    };
    let config_version = raw.config_version.as_ref().and_then(|v| {
        let n = u32::try_from(*v.get_ref()).ok();
        if n.is_none() {
            ctx.problem(v.span(), &key("config_version"), "must be 0 or more");
        }
        n
    });
    let secs = |ctx: &mut Ctx<'_>, v: &Option<Spanned<u64>>, k: &str, range: (u64, u64), def| {
        let Some(v) = v else { return def };
        let n = *v.get_ref();
        if n < range.0 || n > range.1 {
            ctx.problem(
                v.span(),
                &key(k),
                format!("must be between {} and {}", range.0, range.1),
            );
        }
        n
    };
    let connect_timeout = secs(
        ctx,
        &raw.connect_timeout_secs,
        "connect_timeout_secs",
        (1, 120),
        10,
    );
    // EVI closes every socket at 30 minutes; a limit beyond that would never be reached.
    let session_limit = secs(
        ctx,
        &raw.session_limit_secs,
        "session_limit_secs",
        (2, HumeSpec::MAX_SESSION_SECS),
        HumeSpec::MAX_SESSION_SECS,
    );
    let audio_batch_ms = match &raw.audio_batch_ms {
        Some(v) => {
            let n = *v.get_ref();
            if !(20..=100).contains(&n) || n % 20 != 0 {
                ctx.problem(
                    v.span(),
                    &key("audio_batch_ms"),
                    "must be 20, 40, 60, 80 or 100 (whole 20 ms frames; more adds latency)",
                );
            }
            n
        }
        None => 20,
    };
    if ctx.problems.len() > problems_before {
        return None;
    }
    Some(AgentSpec::Hume(HumeSpec {
        url,
        api_key: api_key?,
        config_id: raw.config_id.as_ref().map(|v| v.get_ref().clone()),
        config_version,
        resume: raw.resume.as_ref().is_none_or(|v| *v.get_ref()),
        verbose_transcription: raw
            .verbose_transcription
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
        connect_timeout: std::time::Duration::from_secs(connect_timeout),
        session_limit: std::time::Duration::from_secs(session_limit),
        audio_batch_ms: audio_batch_ms as u32,
    }))
}
