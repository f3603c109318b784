//! What the fake knows of the client's session config: the field names of the SDK's models, so
//! that an unknown field gets `unknown_parameter` as the real servers answer it.

use serde_json::Value;

use super::Api;

/// The first key of a client config the API does not define, as `session.a.b` (arrays as
/// `[i]`); subtrees without a table (free-form or rarely used) are not checked.
pub(super) fn unknown_param(api: Api, v: &Value, pattern: &str, shown: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            let keys = known_keys(api, pattern, v)?;
            for (k, sub) in m {
                if !keys.contains(&k.as_str()) {
                    return Some(format!("{shown}.{k}"));
                }
                let found =
                    unknown_param(api, sub, &format!("{pattern}.{k}"), &format!("{shown}.{k}"));
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            unknown_param(api, x, &format!("{pattern}[]"), &format!("{shown}[{i}]"))
        }),
        _ => None,
    }
}

/// Field names from the SDK's models (realtime_session_create_request.py, live/session_config.py).
fn known_keys(api: Api, pattern: &str, v: &Value) -> Option<&'static [&'static str]> {
    let function = v["type"] == "function";
    Some(match (api, pattern) {
        (Api::Realtime, "session") => &[
            "type",
            "model",
            "instructions",
            "output_modalities",
            "audio",
            "include",
            "max_output_tokens",
            "prompt",
            "reasoning",
            "tool_choice",
            "tools",
            "tracing",
            "truncation",
            "parallel_tool_calls",
        ],
        (Api::Realtime, "session.audio") => &["input", "output"],
        (Api::Realtime, "session.audio.input") => &[
            "format",
            "noise_reduction",
            "transcription",
            "turn_detection",
        ],
        (Api::Realtime, "session.audio.output") => &["format", "speed", "voice"],
        (Api::Realtime, "session.audio.input.turn_detection") => &[
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "idle_timeout_ms",
            "create_response",
            "interrupt_response",
            "eagerness",
        ],
        (Api::Realtime, "session.audio.input.transcription") => &[
            "model",
            "language",
            "prompt",
            "delay",
            "keywords",
            "languages",
        ],
        (Api::Realtime, "session.audio.input.noise_reduction") => &["type", "strength"],
        (Api::Realtime, "session.tools[]") if function => {
            &["type", "name", "description", "parameters"]
        }
        (Api::Live, "session") => &[
            "model",
            "instructions",
            "audio",
            "client",
            "delegation",
            "input",
            "store",
            "triggers",
        ],
        (Api::Live, "session.audio") => &["format", "output"],
        (Api::Live, "session.audio.format") => &["type", "rate"],
        (Api::Live, "session.audio.output") => &["voice"],
        (Api::Live, "session.delegation") => {
            &["type", "acknowledgement_delay_ms", "responses", "decisions"]
        }
        (Api::Live, "session.delegation.responses") => &[
            "model",
            "instructions",
            "max_output_tokens",
            "parallel_tool_calls",
            "reasoning",
            "service_tier",
            "text",
            "tool_choice",
            "tools",
        ],
        (Api::Live, "session.delegation.responses.tools[]") if function => {
            &["type", "name", "description", "parameters", "strict"]
        }
        _ => return None,
    })
}
