//! `[agents.NAME]` tables: one raw shape holding every kind's keys (so each keeps its span for
//! error messages), resolved per kind into an [`AgentSpec`]. A key that belongs to another kind
//! is named as such rather than silently ignored.

use serde::Deserialize;
use toml::Spanned;

use super::{AgentSpec, Ctx};

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

const KINDS: &str = "echo";

/// Resolves one `[agents.NAME]` table, reporting problems to `ctx`.
pub(super) fn resolve(
    ctx: &mut Ctx<'_>,
    _env: &dyn Fn(&str) -> Option<String>,
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
        "hume" | "livekit" => {
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
