//! `[agents.NAME]` tables: one raw shape holding every kind's keys (so each keeps its span for
//! error messages), resolved per kind into an [`AgentSpec`]. A key that belongs to another kind
//! is named as such rather than silently ignored.

use serde::Deserialize;
use toml::Spanned;

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    secret_from_env, AgentSpec, Ctx, HumeSpec, LivekitSpec, StreamSource, StreamSpec, TwimlFetch,
    TWIML_JSON_PLACEHOLDERS,
};

/// Every key any agent kind accepts. `deny_unknown_fields` names typos with their location.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub kind: Spanned<String>,
    // hume, livekit and stream
    pub url: Option<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    // hume and stream
    pub connect_timeout_secs: Option<Spanned<u64>>,
    // hume and stream
    pub audio_batch_ms: Option<Spanned<u64>>,
    // hume
    pub config_id: Option<Spanned<String>>,
    pub config_version: Option<Spanned<i64>>,
    pub resume: Option<Spanned<bool>>,
    pub verbose_transcription: Option<Spanned<bool>>,
    pub session_limit_secs: Option<Spanned<u64>>,
    // livekit
    pub api_secret_env: Option<Spanned<String>>,
    pub room_prefix: Option<Spanned<String>>,
    pub agent_name: Option<Spanned<String>>,
    pub ringing_timeout_secs: Option<Spanned<u64>>,
    // stream
    pub headers_env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub parameters: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub hangup_on_close: Option<Spanned<bool>>,
    pub twiml_url: Option<Spanned<String>>,
    pub twiml_headers_env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub twiml_json: Option<Spanned<String>>,
    pub twiml_auth_token_env: Option<Spanned<String>>,
    // openai
    pub api: Option<Spanned<String>>,
    pub model: Option<Spanned<String>>,
    pub voice: Option<Spanned<String>>,
    pub instructions: Option<Spanned<String>>,
    pub instructions_file: Option<Spanned<String>>,
    pub tools: Option<Spanned<Vec<Spanned<String>>>>,
    pub turn_detection: Option<Spanned<String>>,
    pub silence_duration_ms: Option<Spanned<u64>>,
    pub eagerness: Option<Spanned<String>>,
    pub transcription_model: Option<Spanned<String>>,
    pub delegation_model: Option<Spanned<String>>,
}

impl RawAgent {
    /// The keys that are set, with their spans, for "not a key of this kind" problems.
    pub(super) fn set_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        // Each field's name is its TOML key, so the name is taken from the field itself.
        macro_rules! set {
            ($($field:ident),*) => {
                [$((stringify!($field), self.$field.as_ref().map(Spanned::span))),*]
                    .into_iter()
                    .filter_map(|(key, span)| Some((key, span?)))
                    .collect()
            };
        }
        set!(
            url,
            api_key_env,
            config_id,
            config_version,
            resume,
            verbose_transcription,
            connect_timeout_secs,
            session_limit_secs,
            audio_batch_ms,
            api_secret_env,
            room_prefix,
            agent_name,
            ringing_timeout_secs,
            headers_env,
            parameters,
            hangup_on_close,
            twiml_url,
            twiml_headers_env,
            twiml_json,
            twiml_auth_token_env,
            api,
            model,
            voice,
            instructions,
            instructions_file,
            tools,
            turn_detection,
            silence_duration_ms,
            eagerness,
            transcription_model,
            delegation_model
        )
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

const KINDS: &str = "echo, hume, livekit, openai, stream";

const LIVEKIT_KEYS: &[&str] = &[
    "url",
    "api_key_env",
    "api_secret_env",
    "room_prefix",
    "agent_name",
    "ringing_timeout_secs",
];

/// A `ws://` or `wss://` URL with a host, without surrounding space or a trailing `/`; a problem
/// naming `key` with `example` otherwise.
pub(super) fn ws_url(
    ctx: &mut Ctx<'_>,
    u: &Spanned<String>,
    key: &str,
    example: &str,
) -> Option<String> {
    let text = url_with(
        ctx,
        u,
        key,
        ["ws://", "wss://"],
        "a ws:// or wss://",
        example,
    )?;
    Some(text.trim_end_matches('/').to_string())
}

/// `u` without surrounding space when it starts with one of `schemes` and names a host; a
/// problem naming `key` ("expected `what` URL, e.g. `example`") otherwise.
fn url_with<'u>(
    ctx: &mut Ctx<'_>,
    u: &'u Spanned<String>,
    key: &str,
    schemes: [&str; 2],
    what: &str,
    example: &str,
) -> Option<&'u str> {
    let text = u.get_ref().trim();
    let host = schemes
        .iter()
        .find_map(|scheme| text.strip_prefix(scheme))
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or("");
    if host.is_empty() || text.contains(char::is_whitespace) {
        ctx.problem(
            u.span(),
            key,
            format!("expected {what} URL, e.g. \"{example}\""),
        );
        return None;
    }
    Some(text)
}

/// A number of seconds within `range` (inclusive), `default` when not set; a problem naming
/// `key` otherwise.
pub(super) fn secs_in(
    ctx: &mut Ctx<'_>,
    v: &Option<Spanned<u64>>,
    key: &str,
    range: (u64, u64),
    default: u64,
) -> u64 {
    let Some(v) = v else { return default };
    let n = *v.get_ref();
    if n < range.0 || n > range.1 {
        ctx.problem(
            v.span(),
            key,
            format!("must be between {} and {}", range.0, range.1),
        );
    }
    n
}

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
            raw.refuse_others(ctx, name, "livekit", LIVEKIT_KEYS);
            resolve_livekit(ctx, env, name, agent).map(AgentSpec::Livekit)
        }
        "stream" => {
            raw.refuse_others(ctx, name, "stream", STREAM_KEYS);
            resolve_stream(ctx, env, name, agent).map(AgentSpec::Stream)
        }
        "openai" => {
            raw.refuse_others(ctx, name, "openai", super::openai::KEYS);
            super::openai::resolve(ctx, env, name, agent).map(AgentSpec::Openai)
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
        Some(u) => ws_url(ctx, u, &key("url"), HumeSpec::DEFAULT_URL).unwrap_or_default(),
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
    let connect_timeout = secs_in(
        ctx,
        &raw.connect_timeout_secs,
        &key("connect_timeout_secs"),
        (1, 120),
        10,
    );
    // EVI closes every socket at 30 minutes; a limit beyond that would never be reached.
    let session_limit = secs_in(
        ctx,
        &raw.session_limit_secs,
        &key("session_limit_secs"),
        (2, HumeSpec::MAX_SESSION_SECS),
        HumeSpec::MAX_SESSION_SECS,
    );
    let audio_batch_ms = audio_batch_ms(ctx, name, raw);
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
        audio_batch_ms,
    }))
}

/// Room names longer than this are refused by LiveKit's server.
const MAX_ROOM_PREFIX: usize = 64;

fn resolve_livekit(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    agent: &Spanned<RawAgent>,
) -> Option<LivekitSpec> {
    let raw = agent.get_ref();
    let key = |k: &str| format!("agents.{name}.{k}");
    let required = |v: &Option<Spanned<String>>, k: &str, ctx: &mut Ctx<'_>| {
        if v.is_none() {
            ctx.problem(agent.span(), &key(k), "required for kind = \"livekit\"");
        }
    };
    required(&raw.url, "url", ctx);
    required(&raw.api_key_env, "api_key_env", ctx);
    required(&raw.api_secret_env, "api_secret_env", ctx);

    let url = raw
        .url
        .as_ref()
        .and_then(|u| ws_url(ctx, u, &key("url"), "wss://example.livekit.cloud"));
    let api_key = raw
        .api_key_env
        .as_ref()
        .and_then(|v| secret_from_env(ctx, env, v, &key("api_key_env")));
    let api_secret = raw
        .api_secret_env
        .as_ref()
        .and_then(|v| secret_from_env(ctx, env, v, &key("api_secret_env")));
    let room_prefix = match &raw.room_prefix {
        Some(p) => {
            let ok = p.get_ref().len() <= MAX_ROOM_PREFIX
                && p.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                ctx.problem(
                    p.span(),
                    &key("room_prefix"),
                    format!("use at most {MAX_ROOM_PREFIX} of A-Z a-z 0-9 - _ ."),
                );
            }
            p.get_ref().clone()
        }
        None => "hume-call-".to_string(),
    };
    let agent_name = match &raw.agent_name {
        Some(n) if n.get_ref().trim().is_empty() => {
            ctx.problem(
                n.span(),
                &key("agent_name"),
                "empty; omit the key for automatic dispatch",
            );
            None
        }
        Some(n) => Some(n.get_ref().clone()),
        None => None,
    };
    // Twilio's <Dial> gives up after 30 s by default: ringing longer helps nobody.
    let ringing_timeout = ctx
        .positive_secs(&raw.ringing_timeout_secs, &key("ringing_timeout_secs"))
        .unwrap_or(Duration::from_secs(30));
    Some(LivekitSpec {
        url: url?,
        api_key: api_key?,
        api_secret: api_secret?,
        room_prefix,
        agent_name,
        ringing_timeout,
    })
}

const STREAM_KEYS: &[&str] = &[
    "url",
    "headers_env",
    "parameters",
    "connect_timeout_secs",
    "hangup_on_close",
    "audio_batch_ms",
    "twiml_url",
    "twiml_headers_env",
    "twiml_json",
    "twiml_auth_token_env",
];

/// Twilio's limit on one custom parameter, name and value together.
const MAX_PARAMETER: usize = 500;

fn resolve_stream(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    agent: &Spanned<RawAgent>,
) -> Option<StreamSpec> {
    let raw = agent.get_ref();
    let key = |k: &str| format!("agents.{name}.{k}");
    let problems_before = ctx.problems.len();
    let source = match (&raw.url, &raw.twiml_url) {
        (Some(u), None) => {
            ws_url(ctx, u, &key("url"), "wss://bot.example.com/ws").map(StreamSource::Url)
        }
        (None, Some(t)) => twiml_fetch(ctx, env, name, raw, t).map(StreamSource::Twiml),
        (Some(_), Some(t)) => {
            ctx.problem(
                t.span(),
                &key("twiml_url"),
                "give url (the bot's WebSocket) or twiml_url (where to ask for it), not both",
            );
            None
        }
        (None, None) => {
            ctx.problem(
                agent.span(),
                &key("url"),
                "required for kind = \"stream\" (the bot's ws:// or wss:// URL), or twiml_url",
            );
            None
        }
    };
    if raw.url.is_some() {
        for (k, span) in [
            (
                "twiml_headers_env",
                raw.twiml_headers_env.as_ref().map(Spanned::span),
            ),
            ("twiml_json", raw.twiml_json.as_ref().map(Spanned::span)),
            (
                "twiml_auth_token_env",
                raw.twiml_auth_token_env.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(span) = span {
                ctx.problem(span, &key(k), "only with twiml_url");
            }
        }
    }
    let headers = header_values(ctx, env, name, "headers_env", &raw.headers_env);
    let mut parameters = Vec::new();
    for (param, value) in raw
        .parameters
        .as_ref()
        .map(|m| m.get_ref().iter())
        .into_iter()
        .flatten()
    {
        if param.len() + value.get_ref().len() >= MAX_PARAMETER {
            ctx.problem(
                value.span(),
                &key(&format!("parameters.{param}")),
                format!("name and value must stay under {MAX_PARAMETER} bytes together (Twilio's limit)"),
            );
            continue;
        }
        parameters.push((param.clone(), value.get_ref().clone()));
    }
    let connect_timeout = secs_in(
        ctx,
        &raw.connect_timeout_secs,
        &key("connect_timeout_secs"),
        (1, 120),
        10,
    );
    if ctx.problems.len() > problems_before {
        return None;
    }
    Some(StreamSpec {
        source: source?,
        headers,
        parameters,
        connect_timeout: Duration::from_secs(connect_timeout),
        hangup_on_close: raw.hangup_on_close.as_ref().is_none_or(|v| *v.get_ref()),
        audio_batch_ms: audio_batch_ms(ctx, name, raw),
    })
}

/// `audio_batch_ms`: caller audio per message (hume, openai) or per write (stream); 20 by
/// default.
pub(super) fn audio_batch_ms(ctx: &mut Ctx<'_>, name: &str, raw: &RawAgent) -> u32 {
    let Some(v) = &raw.audio_batch_ms else {
        return 20;
    };
    let n = *v.get_ref();
    if !(20..=100).contains(&n) || n % 20 != 0 {
        ctx.problem(
            v.span(),
            &format!("agents.{name}.audio_batch_ms"),
            "must be 20, 40, 60, 80 or 100 (whole 20 ms frames; more adds latency)",
        );
        return 20;
    }
    n as u32
}

/// `[agents.NAME].KEY = { Header-Name = "ENV_VAR" }`: each header with the variable's value.
pub(super) fn header_values(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    key: &str,
    table: &Option<Spanned<BTreeMap<String, Spanned<String>>>>,
) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (header, var) in table
        .as_ref()
        .map(|m| m.get_ref().iter())
        .into_iter()
        .flatten()
    {
        let k = format!("agents.{name}.{key}.{header}");
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.is_empty() || !header.chars().all(token) {
            ctx.problem(var.span(), &k, "not an HTTP header name");
            continue;
        }
        let Some(value) = secret_from_env(ctx, env, var, &k) else {
            continue;
        };
        if value.chars().any(|c| c.is_control() && c != '\t') {
            ctx.problem(
                var.span(),
                &k,
                format!(
                    "environment variable {} holds a control character",
                    var.get_ref()
                ),
            );
            continue;
        }
        headers.push((header.clone(), value));
    }
    headers
}

fn twiml_fetch(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    raw: &RawAgent,
    url: &Spanned<String>,
) -> Option<TwimlFetch> {
    let key = |k: &str| format!("agents.{name}.{k}");
    let text = url_with(
        ctx,
        url,
        &key("twiml_url"),
        ["http://", "https://"],
        "an http:// or https://",
        "https://api.elevenlabs.io/v1/convai/twilio/register-call",
    )
    .unwrap_or_default();
    let headers = header_values(ctx, env, name, "twiml_headers_env", &raw.twiml_headers_env);
    let json = raw.twiml_json.as_ref().and_then(|t| {
        // With every placeholder filled, the template must be JSON.
        let mut sample = t.get_ref().clone();
        for field in TWIML_JSON_PLACEHOLDERS {
            sample = sample.replace(field, "x");
        }
        match serde_json::from_str::<serde_json::Value>(&sample) {
            Ok(_) => Some(t.get_ref().clone()),
            Err(e) => {
                ctx.problem(
                    t.span(),
                    &key("twiml_json"),
                    format!("not JSON once its placeholders are filled: {e}"),
                );
                None
            }
        }
    });
    let auth_token = raw
        .twiml_auth_token_env
        .as_ref()
        .and_then(|v| secret_from_env(ctx, env, v, &key("twiml_auth_token_env")));
    Some(TwimlFetch {
        url: text.to_string(),
        headers,
        json,
        auth_token,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, AgentSpec, Problem, StreamSource};
    use std::time::Duration;

    fn env(k: &str) -> Option<String> {
        match k {
            "LK_KEY" => Some("APIkey".into()),
            "LK_SECRET" => Some("s3cret".into()),
            "BOT_TOKEN" => Some("Bearer t0ken".into()),
            _ => None,
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text, "t.toml", &env) {
            Ok(_) => panic!("config unexpectedly valid"),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn livekit_agent_with_defaults() {
        let c = parse(
            "[agents.room]\nkind = \"livekit\"\nurl = \"wss://x.livekit.cloud/\"\n\
             api_key_env = \"LK_KEY\"\napi_secret_env = \"LK_SECRET\"\n",
            "t.toml",
            &env,
        )
        .unwrap();
        let Some(AgentSpec::Livekit(lk)) = c.agents.get("room") else {
            panic!("not a livekit agent: {:?}", c.agents);
        };
        assert_eq!(lk.url, "wss://x.livekit.cloud");
        assert_eq!(
            (lk.api_key.as_str(), lk.api_secret.as_str()),
            ("APIkey", "s3cret")
        );
        assert_eq!(lk.room_prefix, "hume-call-");
        assert_eq!(lk.agent_name, None);
        assert_eq!(lk.ringing_timeout, Duration::from_secs(30));
        assert!(!format!("{lk:?}").contains("s3cret"));
        // The only agent becomes the default route.
        assert_eq!(c.routes[0].agent, "room");
    }

    #[test]
    fn livekit_agent_with_every_key() {
        let c = parse(
            "[agents.room]\nkind = \"livekit\"\nurl = \"ws://127.0.0.1:7880\"\n\
             api_key_env = \"LK_KEY\"\napi_secret_env = \"LK_SECRET\"\nroom_prefix = \"call_\"\n\
             agent_name = \"hume-agent\"\nringing_timeout_secs = 12\n",
            "t.toml",
            &env,
        )
        .unwrap();
        let Some(AgentSpec::Livekit(lk)) = c.agents.get("room") else {
            panic!("not a livekit agent");
        };
        assert_eq!(lk.room_prefix, "call_");
        assert_eq!(lk.agent_name.as_deref(), Some("hume-agent"));
        assert_eq!(lk.ringing_timeout, Duration::from_secs(12));
    }

    #[test]
    fn livekit_problems_are_named_with_their_line() {
        let p = problems(
            "[agents.room]\nkind = \"livekit\"\nurl = \"https://x\"\napi_key_env = \"NOPE\"\n\
             api_secret_env = \"LK_SECRET\"\nroom_prefix = \"bad prefix!\"\nagent_name = \" \"\n\
             ringing_timeout_secs = 0\nconfig_id = \"x\"\n",
        );
        let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
        for (key, line) in [
            ("agents.room.url", 3),
            ("agents.room.api_key_env", 4),
            ("agents.room.room_prefix", 6),
            ("agents.room.agent_name", 7),
            ("agents.room.ringing_timeout_secs", 8),
            ("agents.room.config_id", 9),
        ] {
            assert!(
                keys.contains(&(key, line)),
                "{key} at {line} missing in {keys:?}"
            );
        }
        let p = problems("[agents.room]\nkind = \"livekit\"\n");
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "agents.room.url",
                "agents.room.api_key_env",
                "agents.room.api_secret_env"
            ]
        );
    }

    #[test]
    fn stream_agent_with_defaults_and_with_every_key() {
        let c = parse(
            "[agents.bot]\nkind = \"stream\"\nurl = \"wss://bot.example.com/ws\"\n",
            "t.toml",
            &env,
        )
        .unwrap();
        let Some(AgentSpec::Stream(s)) = c.agents.get("bot") else {
            panic!("not a stream agent: {:?}", c.agents);
        };
        assert_eq!(
            s.source,
            StreamSource::Url("wss://bot.example.com/ws".into())
        );
        assert!(s.headers.is_empty() && s.parameters.is_empty());
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert!(s.hangup_on_close);

        let c = parse(
            "[agents.bot]\nkind = \"stream\"\nurl = \"ws://127.0.0.1:8765/ws\"\n\
             headers_env = { Authorization = \"BOT_TOKEN\" }\n\
             parameters = { tenant = \"acme\", lang = \"en\" }\n\
             connect_timeout_secs = 3\nhangup_on_close = false\n",
            "t.toml",
            &env,
        )
        .unwrap();
        let Some(AgentSpec::Stream(s)) = c.agents.get("bot") else {
            panic!("not a stream agent");
        };
        assert_eq!(s.headers, [("Authorization".into(), "Bearer t0ken".into())]);
        assert_eq!(
            s.parameters,
            [
                ("lang".into(), "en".into()),
                ("tenant".into(), "acme".into())
            ]
        );
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert!(!s.hangup_on_close);
        assert!(
            !format!("{s:?}").contains("t0ken"),
            "header values are secrets"
        );
    }

    #[test]
    fn stream_agent_problems_name_their_key() {
        let p = problems("[agents.bot]\nkind = \"stream\"\n");
        assert_eq!(p[0].key, "agents.bot.url");
        let p = problems(
            "[agents.bot]\nkind = \"stream\"\nurl = \"https://bot/ws\"\n\
             headers_env = { \"Bad Header\" = \"BOT_TOKEN\", X-Key = \"NOT_SET\" }\n\
             connect_timeout_secs = 0\nresume = true\n",
        );
        let keys: Vec<(&str, usize)> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            keys,
            [
                ("agents.bot.resume", 6),
                ("agents.bot.url", 3),
                ("agents.bot.headers_env.Bad Header", 4),
                ("agents.bot.headers_env.X-Key", 4),
                ("agents.bot.connect_timeout_secs", 5),
            ],
            "{p:?}"
        );
        let long = "x".repeat(500);
        let p = problems(&format!(
            "[agents.bot]\nkind = \"stream\"\nurl = \"ws://b/ws\"\nparameters = {{ k = \"{long}\" }}\n"
        ));
        assert_eq!(p[0].key, "agents.bot.parameters.k");
        assert!(p[0].message.contains("500"), "{}", p[0].message);
    }

    #[test]
    fn stream_agent_asking_a_twiml_url() {
        let c = parse(
            "[agents.eleven]\nkind = \"stream\"\n\
             twiml_url = \"https://api.elevenlabs.io/v1/convai/twilio/register-call\"\n\
             twiml_headers_env = { xi-api-key = \"BOT_TOKEN\" }\n\
             twiml_json = '{\"agent_id\": \"a1\", \"from_number\": \"{from}\", \"to_number\": \"{to}\"}'\n",
            "t.toml",
            &env,
        )
        .unwrap();
        let Some(AgentSpec::Stream(s)) = c.agents.get("eleven") else {
            panic!("not a stream agent");
        };
        let StreamSource::Twiml(t) = &s.source else {
            panic!("{:?}", s.source)
        };
        assert_eq!(
            t.url,
            "https://api.elevenlabs.io/v1/convai/twilio/register-call"
        );
        assert_eq!(t.headers, [("xi-api-key".into(), "Bearer t0ken".into())]);
        assert!(t.json.as_deref().unwrap().contains("{from}"));
        assert!(!format!("{s:?}").contains("t0ken"));

        let p = problems(
            "[agents.b]\nkind = \"stream\"\nurl = \"ws://b/ws\"\ntwiml_url = \"https://x/t\"\n",
        );
        assert_eq!(p[0].key, "agents.b.twiml_url");
        assert!(p[0].message.contains("not both"), "{}", p[0].message);
        let p = problems(
            "[agents.b]\nkind = \"stream\"\ntwiml_url = \"ftp://x/t\"\ntwiml_json = '{\"a\": {from}}'\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["agents.b.twiml_url", "agents.b.twiml_json"], "{p:?}");
        let p = problems("[agents.b]\nkind = \"stream\"\nurl = \"ws://b/ws\"\ntwiml_json = '{}'\n");
        assert_eq!(p[0].key, "agents.b.twiml_json");
        assert_eq!(p[0].message, "only with twiml_url");
    }
}
