//! `[agents.NAME] kind = "openai"`: OpenAI's speech-to-speech models over WebSocket, the
//! Realtime API (GA) or GPT-Live (reference/ai-legs.md §3-4).

use std::fmt;
use std::time::Duration;

use toml::Spanned;

use super::agents::{audio_batch_ms, header_values, secs_in, ws_url, RawAgent};
use super::{secret_from_env, Ctx};

/// Which of OpenAI's speech-to-speech APIs a call talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenaiApi {
    /// `wss://…/v1/realtime?model=…`: sessions configured by `session.update`, server-side
    /// voice activity detection, truncation on barge-in.
    Realtime,
    /// `wss://…/v1/live/sessions`: `session.start`, tools through a Responses delegation.
    Live,
}

/// A tool the gateway gives the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// The model ends the call after its goodbye has played.
    EndCall,
    /// The model sends DTMF keys to the caller (RFC 4733).
    SendDtmf,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::EndCall, Tool::SendDtmf];

    pub fn name(self) -> &'static str {
        match self {
            Tool::EndCall => "end_call",
            Tool::SendDtmf => "send_dtmf",
        }
    }
}

/// When the model takes its turn (Realtime only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnDetection {
    /// Silence-based; `silence_duration_ms` of quiet ends the caller's turn.
    ServerVad { silence_duration_ms: Option<u32> },
    /// A model judges whether the caller has finished.
    SemanticVad { eagerness: Option<String> },
}

#[derive(Clone, PartialEq, Eq)]
pub struct OpenaiSpec {
    pub api: OpenaiApi,
    /// The WebSocket endpoint without query (`?model=` is added for Realtime).
    pub url: String,
    /// Read from `api_key_env` at load; sent as `Authorization: Bearer`.
    pub api_key: String,
    /// More headers for the upgrade (`OpenAI-Project`, Azure's `api-key`), from `headers_env`.
    pub headers: Vec<(String, String)>,
    pub model: String,
    pub voice: String,
    pub instructions: String,
    pub tools: Vec<Tool>,
    pub turn_detection: TurnDetection,
    /// Transcribes the caller (Realtime); `None` turns it off.
    pub transcription_model: Option<String>,
    /// The Responses model GPT-Live delegates tool calls to.
    pub delegation_model: Option<String>,
    pub connect_timeout: Duration,
    /// Caller audio per `append` (20..=100 ms, in 20 ms steps).
    pub audio_batch_ms: u32,
}

impl OpenaiSpec {
    pub const REALTIME_URL: &'static str = "wss://api.openai.com/v1/realtime";
    pub const LIVE_URL: &'static str = "wss://api.openai.com/v1/live/sessions";
    pub const REALTIME_MODEL: &'static str = "gpt-realtime-2";
    pub const LIVE_MODEL: &'static str = "gpt-live-1";
    pub const VOICE: &'static str = "marin";
    pub const TRANSCRIPTION_MODEL: &'static str = "gpt-4o-transcribe";
    /// What the model is told when the config says nothing.
    pub const INSTRUCTIONS: &'static str = "You are a helpful voice assistant answering a \
        phone call. Keep answers short. When the caller is done, say goodbye and use the \
        end_call tool.";
}

impl fmt::Debug for OpenaiSpec {
    // The key and header values are credentials: never in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OpenaiSpec")
            .field("api", &self.api)
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("headers", &headers)
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("instructions", &self.instructions.len())
            .field("tools", &self.tools)
            .field("turn_detection", &self.turn_detection)
            .field("transcription_model", &self.transcription_model)
            .field("delegation_model", &self.delegation_model)
            .field("connect_timeout", &self.connect_timeout)
            .field("audio_batch_ms", &self.audio_batch_ms)
            .finish()
    }
}

pub(super) const KEYS: &[&str] = &[
    "api",
    "url",
    "api_key_env",
    "headers_env",
    "model",
    "voice",
    "instructions",
    "instructions_file",
    "tools",
    "turn_detection",
    "silence_duration_ms",
    "eagerness",
    "transcription_model",
    "delegation_model",
    "connect_timeout_secs",
    "audio_batch_ms",
];

/// Keys that only one of the two APIs has.
const REALTIME_ONLY: &[&str] = &[
    "turn_detection",
    "silence_duration_ms",
    "eagerness",
    "transcription_model",
];
const LIVE_ONLY: &[&str] = &["delegation_model"];

/// GPT-Live's instructions are at most 16,384 tokens; a file far beyond that is a mistake.
const MAX_INSTRUCTIONS: usize = 256 * 1024;

pub(super) fn resolve(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    agent: &Spanned<RawAgent>,
) -> Option<OpenaiSpec> {
    let raw = agent.get_ref();
    let key = |k: &str| format!("agents.{name}.{k}");
    let problems_before = ctx.problems.len();
    let string = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.get_ref().trim().to_string());

    let api = match raw.api.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("realtime", _)) => OpenaiApi::Realtime,
        Some(("live", _)) => OpenaiApi::Live,
        Some((other, span)) => {
            ctx.problem(
                span,
                &key("api"),
                format!("unknown api \"{other}\" (expected \"realtime\" or \"live\")"),
            );
            OpenaiApi::Realtime
        }
    };
    let other_api = match api {
        OpenaiApi::Realtime => (LIVE_ONLY, "live"),
        OpenaiApi::Live => (REALTIME_ONLY, "realtime"),
    };
    for (k, span) in raw.set_keys() {
        if other_api.0.contains(&k) {
            ctx.problem(
                span,
                &key(k),
                format!("only with api = \"{}\"", other_api.1),
            );
        }
    }

    let default_url = match api {
        OpenaiApi::Realtime => OpenaiSpec::REALTIME_URL,
        OpenaiApi::Live => OpenaiSpec::LIVE_URL,
    };
    let url = match &raw.url {
        Some(u) => {
            let url = ws_url(ctx, u, &key("url"), default_url);
            if url.as_deref().is_some_and(|u| u.contains('?')) {
                ctx.problem(u.span(), &key("url"), "no query: the model goes in `model`");
            }
            url.unwrap_or_default()
        }
        None => default_url.to_string(),
    };
    // The variable the OpenAI SDKs read, unless told otherwise.
    let default_var = Spanned::new(agent.span(), "OPENAI_API_KEY".to_string());
    let var = raw.api_key_env.as_ref().unwrap_or(&default_var);
    let api_key = secret_from_env(ctx, env, var, &key("api_key_env"));
    let headers = header_values(ctx, env, name, "headers_env", &raw.headers_env);

    let model = string(&raw.model).unwrap_or_else(|| match api {
        OpenaiApi::Realtime => OpenaiSpec::REALTIME_MODEL.into(),
        OpenaiApi::Live => OpenaiSpec::LIVE_MODEL.into(),
    });
    let voice = string(&raw.voice).unwrap_or_else(|| OpenaiSpec::VOICE.into());
    // The defaults are words; a configured value is checked where it is written.
    for (v, k) in [(&raw.model, "model"), (&raw.voice, "voice")] {
        let Some(v) = v else { continue };
        let text = v.get_ref().trim();
        if text.is_empty() || text.contains(char::is_whitespace) {
            ctx.problem(
                v.span(),
                &key(k),
                "must be one word, e.g. its name at OpenAI",
            );
        }
    }
    let instructions = instructions(ctx, name, raw);

    let delegation_model = string(&raw.delegation_model).filter(|m| !m.is_empty());
    let tools = match &raw.tools {
        Some(list) => {
            let mut tools = Vec::new();
            for t in list.get_ref() {
                match Tool::ALL
                    .into_iter()
                    .find(|tool| tool.name() == t.get_ref())
                {
                    Some(tool) if !tools.contains(&tool) => tools.push(tool),
                    Some(_) => {}
                    None => ctx.problem(
                        t.span(),
                        &key("tools"),
                        format!(
                            "unknown tool \"{}\" (the gateway has end_call and send_dtmf)",
                            t.get_ref()
                        ),
                    ),
                }
            }
            if api == OpenaiApi::Live && !tools.is_empty() && delegation_model.is_none() {
                ctx.problem(
                    list.span(),
                    &key("tools"),
                    "GPT-Live calls tools through a Responses delegation: set delegation_model",
                );
            }
            tools
        }
        // GPT-Live without a delegation model cannot call tools.
        None if api == OpenaiApi::Live && delegation_model.is_none() => Vec::new(),
        None => Tool::ALL.to_vec(),
    };

    let turn_detection = turn_detection(ctx, name, raw);
    let transcription_model = match string(&raw.transcription_model) {
        Some(m) if m.is_empty() => None,
        Some(m) => Some(m),
        None => Some(OpenaiSpec::TRANSCRIPTION_MODEL.into()),
    };
    let connect_timeout = secs_in(
        ctx,
        &raw.connect_timeout_secs,
        &key("connect_timeout_secs"),
        (1, 120),
        10,
    );
    let audio_batch_ms = audio_batch_ms(ctx, name, raw);
    if ctx.problems.len() > problems_before {
        return None;
    }
    Some(OpenaiSpec {
        api,
        url,
        api_key: api_key?,
        headers,
        model,
        voice,
        instructions,
        tools,
        turn_detection,
        transcription_model,
        delegation_model,
        connect_timeout: Duration::from_secs(connect_timeout),
        audio_batch_ms,
    })
}

/// `instructions`, or the text of `instructions_file` (relative to the config file).
fn instructions(ctx: &mut Ctx<'_>, name: &str, raw: &RawAgent) -> String {
    let key = |k: &str| format!("agents.{name}.{k}");
    match (&raw.instructions, &raw.instructions_file) {
        (Some(_), Some(f)) => {
            ctx.problem(
                f.span(),
                &key("instructions_file"),
                "give instructions or instructions_file, not both",
            );
            String::new()
        }
        (Some(text), None) => text.get_ref().clone(),
        (None, Some(f)) => {
            let path = ctx.base_dir.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) if text.len() <= MAX_INSTRUCTIONS => text,
                Ok(_) => {
                    ctx.problem(
                        f.span(),
                        &key("instructions_file"),
                        format!("{} is over {} KiB", path.display(), MAX_INSTRUCTIONS / 1024),
                    );
                    String::new()
                }
                Err(e) => {
                    ctx.problem(
                        f.span(),
                        &key("instructions_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    String::new()
                }
            }
        }
        (None, None) => OpenaiSpec::INSTRUCTIONS.to_string(),
    }
}

fn turn_detection(ctx: &mut Ctx<'_>, name: &str, raw: &RawAgent) -> TurnDetection {
    let key = |k: &str| format!("agents.{name}.{k}");
    let kind = raw.turn_detection.as_ref();
    match kind.map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("server_vad", _)) => {
            if let Some(e) = &raw.eagerness {
                ctx.problem(
                    e.span(),
                    &key("eagerness"),
                    "only with turn_detection = \"semantic_vad\"",
                );
            }
            let silence = raw.silence_duration_ms.as_ref().map(|v| {
                let ms = *v.get_ref();
                if !(100..=10_000).contains(&ms) {
                    ctx.problem(
                        v.span(),
                        &key("silence_duration_ms"),
                        "must be between 100 and 10000",
                    );
                }
                ms as u32
            });
            TurnDetection::ServerVad {
                silence_duration_ms: silence,
            }
        }
        Some(("semantic_vad", _)) => {
            if let Some(s) = &raw.silence_duration_ms {
                ctx.problem(
                    s.span(),
                    &key("silence_duration_ms"),
                    "only with turn_detection = \"server_vad\"",
                );
            }
            let eagerness = raw.eagerness.as_ref().map(|v| {
                let e = v.get_ref().as_str();
                if !["low", "medium", "high", "auto"].contains(&e) {
                    ctx.problem(
                        v.span(),
                        &key("eagerness"),
                        "expected low, medium, high or auto",
                    );
                }
                e.to_string()
            });
            TurnDetection::SemanticVad { eagerness }
        }
        Some((other, span)) => {
            ctx.problem(
                span,
                &key("turn_detection"),
                format!("unknown \"{other}\" (expected server_vad or semantic_vad)"),
            );
            TurnDetection::ServerVad {
                silence_duration_ms: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, AgentSpec, Problem};
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "OPENAI_API_KEY" => Some("sk-default".into()),
            "AZ_KEY" => Some("az-key".into()),
            _ => None,
        }
    }

    fn spec(table: &str) -> OpenaiSpec {
        let text = format!("[agents.ai]\nkind = \"openai\"\n{table}");
        match parse(&text, "t.toml", &env).unwrap().agents.remove("ai") {
            Some(AgentSpec::Openai(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn problems(table: &str) -> Vec<(usize, String, String)> {
        let text = format!("[agents.ai]\nkind = \"openai\"\n{table}");
        let err = parse(&text, "t.toml", &env).unwrap_err();
        err.problems
            .into_iter()
            .map(
                |Problem {
                     line, key, message, ..
                 }| (line, key, message),
            )
            .collect()
    }

    #[test]
    fn realtime_by_default_with_openais_endpoint_key_and_both_tools() {
        let s = spec("");
        assert_eq!(s.api, OpenaiApi::Realtime);
        assert_eq!(s.url, OpenaiSpec::REALTIME_URL);
        assert_eq!(s.api_key, "sk-default");
        assert_eq!(s.model, "gpt-realtime-2");
        assert_eq!(s.voice, "marin");
        assert_eq!(s.tools, Tool::ALL);
        assert_eq!(s.transcription_model.as_deref(), Some("gpt-4o-transcribe"));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert!(
            !format!("{s:?}").contains("sk-default"),
            "the key is never logged"
        );
    }

    #[test]
    fn live_needs_a_delegation_model_for_tools() {
        let s = spec("api = \"live\"\n");
        assert_eq!(
            (s.url.as_str(), s.model.as_str()),
            (OpenaiSpec::LIVE_URL, "gpt-live-1")
        );
        assert!(s.tools.is_empty(), "no delegation, no tools");
        let s = spec("api = \"live\"\ndelegation_model = \"gpt-5.2\"\n");
        assert_eq!(s.tools, Tool::ALL);
        let p = problems("api = \"live\"\ntools = [\"end_call\"]\n");
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].0, p[0].1.as_str()), (4, "agents.ai.tools"));
        assert!(p[0].2.contains("delegation_model"));
    }

    #[test]
    fn bad_keys_are_named_with_their_line() {
        let p = problems(
            "api = \"beta\"\nurl = \"https://api.openai.com\"\ntools = [\"transfer\"]\n\
             turn_detection = \"semantic_vad\"\nsilence_duration_ms = 300\napi_key_env = \"NOPE\"\n\
             twiml_url = \"https://x\"\n",
        );
        let keys: Vec<(usize, &str)> = p.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            keys,
            [
                (9, "agents.ai.twiml_url"),
                (3, "agents.ai.api"),
                (4, "agents.ai.url"),
                (8, "agents.ai.api_key_env"),
                (5, "agents.ai.tools"),
                (7, "agents.ai.silence_duration_ms"),
            ],
            "{p:?}"
        );
        let p = problems("api = \"live\"\nturn_detection = \"server_vad\"\n");
        assert_eq!(p[0].1, "agents.ai.turn_detection");
        assert!(p[0].2.contains("only with api = \"realtime\""));
    }

    #[test]
    fn a_missing_default_key_names_the_variable_and_the_table() {
        let text = "[sip]\nlisten = \"127.0.0.1:5060\"\n\n[agents.ai]\nkind = \"openai\"\n";
        let err = parse(text, "t.toml", &|_| None).unwrap_err();
        assert_eq!(err.problems[0].key, "agents.ai.api_key_env");
        assert_eq!(err.problems[0].line, 4);
        assert!(err.problems[0].message.contains("OPENAI_API_KEY"));
    }

    #[test]
    fn instructions_come_from_a_file_beside_the_config() {
        let dir = std::env::temp_dir().join(format!("sipbridge-oai-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prompt.txt"), "Answer for Acme.").unwrap();
        let text = "[agents.ai]\nkind = \"openai\"\ninstructions_file = \"prompt.txt\"\n\
                    api_key_env = \"AZ_KEY\"\n";
        let file = dir.join("gw.toml").display().to_string();
        let c = parse(text, &file, &env).unwrap();
        let Some(AgentSpec::Openai(s)) = c.agents.get("ai") else {
            panic!()
        };
        assert_eq!(s.instructions, "Answer for Acme.");
        assert_eq!(s.api_key, "az-key");
        let err = parse(&text.replace("prompt.txt", "missing.txt"), &file, &env).unwrap_err();
        assert!(err.problems[0].message.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
