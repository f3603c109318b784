//! OpenAI's speech-to-speech events as the gateway sends and reads them: the Realtime API
//! (GA) and GPT-Live (reference/ai-legs.md §3-4; the shapes are the `openai` Python SDK's,
//! which tests/openai_sdk.rs checks every message against).

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::codec::g711::Law;
use crate::config::{OpenaiSpec, Tool, TurnDetection};

/// The session's audio format name for a G.711 law.
fn format(law: Law) -> &'static str {
    match law {
        Law::Mu => "audio/pcmu",
        Law::A => "audio/pcma",
    }
}

/// The tools' definitions, as both APIs take function tools.
fn tools(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| match t {
            Tool::EndCall => json!({
                "type": "function",
                "name": t.name(),
                "description": "End the phone call. Say goodbye first: the call ends once \
                    everything you said has been played to the caller.",
                "parameters": {"type": "object", "properties": {}},
            }),
            Tool::SendDtmf => json!({
                "type": "function",
                "name": t.name(),
                "description": "Press keys on the phone keypad, as the caller would (to \
                    navigate a menu, enter a code).",
                "parameters": {
                    "type": "object",
                    "properties": {"digits": {
                        "type": "string",
                        "description": "The keys in order: 0-9, * and #."
                    }},
                    "required": ["digits"],
                },
            }),
        })
        .collect()
}

/// Realtime `session.update`: G.711 both ways at 8 kHz in the caller's law, audio replies,
/// the turn detection, the caller's transcription and the gateway's tools.
pub fn session_update(spec: &OpenaiSpec, law: Law) -> String {
    let turn_detection = match &spec.turn_detection {
        TurnDetection::ServerVad {
            silence_duration_ms,
        } => {
            let mut t = json!({"type": "server_vad"});
            if let Some(ms) = silence_duration_ms {
                t["silence_duration_ms"] = json!(ms);
            }
            t
        }
        TurnDetection::SemanticVad { eagerness } => {
            let mut t = json!({"type": "semantic_vad"});
            if let Some(e) = eagerness {
                t["eagerness"] = json!(e);
            }
            t
        }
    };
    let mut input = json!({
        "format": {"type": format(law)},
        "turn_detection": turn_detection,
    });
    if let Some(model) = &spec.transcription_model {
        input["transcription"] = json!({"model": model});
    }
    let mut session = json!({
        "type": "realtime",
        "model": spec.model,
        "instructions": spec.instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": input,
            "output": {"format": {"type": format(law)}, "voice": spec.voice},
        },
    });
    if !spec.tools.is_empty() {
        session["tools"] = json!(tools(&spec.tools));
        session["tool_choice"] = json!("auto");
    }
    json!({"type": "session.update", "session": session}).to_string()
}

/// GPT-Live `session.start`: one G.711 format for both directions (its rate is required),
/// and the tools behind a Responses delegation when there are any.
pub fn session_start(spec: &OpenaiSpec, law: Law) -> String {
    let mut session = json!({
        "model": spec.model,
        "instructions": spec.instructions,
        "audio": {
            "format": {"type": format(law), "rate": 8000},
            "output": {"voice": spec.voice},
        },
    });
    if let Some(model) = &spec.delegation_model {
        session["delegation"] = json!({
            "type": "responses",
            "responses": {"model": model, "tools": tools(&spec.tools)},
        });
    }
    json!({"type": "session.start", "session": session}).to_string()
}

/// The caller's audio, written into `out` (cleared first) without a JSON tree: this goes up
/// every batch of 20 ms frames. Base64 needs no escaping.
pub fn append(out: &mut String, live: bool, g711: &[u8]) {
    out.clear();
    out.push_str(match live {
        false => "{\"type\":\"input_audio_buffer.append\",\"audio\":\"",
        true => "{\"type\":\"session.input_audio.append\",\"audio\":\"",
    });
    base64::engine::general_purpose::STANDARD.encode_string(g711, out);
    out.push_str("\"}");
}

/// Realtime: the caller heard `audio_end_ms` of this assistant item and no more.
pub fn truncate(item_id: &str, audio_end_ms: u64) -> String {
    json!({
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    })
    .to_string()
}

/// A tool's result: Realtime adds it to the conversation, GPT-Live to its delegation.
pub fn function_output(live: bool, call_id: &str, output: &str) -> String {
    let item = json!({"type": "function_call_output", "call_id": call_id, "output": output});
    let kind = match live {
        false => "conversation.item.create",
        true => "response.item.create",
    };
    json!({"type": kind, "item": item}).to_string()
}

/// Realtime: something the caller "said" in text (their key presses).
pub fn user_text(text: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    })
    .to_string()
}

/// GPT-Live: context for the model that is not speech (the caller's key presses).
pub fn instructions_append(text: &str) -> String {
    json!({"type": "session.instructions.append", "content": text, "delegation_id": null})
        .to_string()
}

pub fn response_create() -> String {
    json!({"type": "response.create"}).to_string()
}

/// What GPT-Live's answer to `session.close` contains.
pub const SESSION_CLOSED: &str = "\"session.closed\"";

pub fn session_close() -> String {
    json!({"type": "session.close"}).to_string()
}

/// Any server event of either API, with the fields the gateway reads; the rest are skipped
/// unparsed. Strings borrow from the message where they can (audio deltas are most of it).
#[derive(Debug, Default, Deserialize)]
pub struct ServerEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub delta: Option<Text<'a>>,
    #[serde(borrow)]
    pub item_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub response_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub call_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub arguments: Option<Text<'a>>,
    #[serde(borrow)]
    pub transcript: Option<Text<'a>>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub code: Option<Text<'a>>,
    #[serde(borrow)]
    pub message: Option<Text<'a>>,
    pub session: Option<Session>,
    pub response: Option<Response>,
    pub error: Option<ErrorBody>,
    /// GPT-Live `response.output_item.done` inside `response.event`.
    pub item: Option<Item>,
    /// GPT-Live `response.event`: a Responses stream event of the delegation.
    #[serde(borrow)]
    pub event: Option<Box<ServerEvent<'a>>>,
    pub rate_limits: Option<Value>,
    pub usage: Option<Value>,
}

/// A string field that borrows from the message (serde's own `Option<Cow<str>>` always
/// copies), unless escapes in it made a copy necessary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl<'a> ServerEvent<'a> {
    pub fn parse(text: &'a str) -> Result<ServerEvent<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Session {
    pub id: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Response {
    pub id: Option<String>,
    pub status: Option<String>,
    pub status_details: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Item {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub call_id: Option<String>,
    pub name: Option<String>,
    pub arguments: Option<String>,
}

/// What the gateway says the caller pressed.
pub fn dtmf_text(digit: char) -> String {
    format!("[The caller pressed the {digit} key on their phone keypad.]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audio_delta_borrows_its_payload() {
        let text = r#"{"type":"response.output_audio.delta","event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":"AAEC"}"#;
        let e = ServerEvent::parse(text).unwrap();
        assert_eq!(&*e.kind, "response.output_audio.delta");
        assert!(matches!(e.delta, Some(Text(Cow::Borrowed("AAEC")))));
        assert_eq!(e.item_id.as_deref(), Some("i1"));
        assert_eq!(e.response_id.as_deref(), Some("r1"));
    }

    #[test]
    fn a_delegated_function_call_is_read_from_inside_the_response_event() {
        let text = r#"{"type":"response.event","delegation_id":"d1","event":{"type":"response.output_item.done","output_index":0,"sequence_number":3,"item":{"type":"function_call","id":"fc1","call_id":"c1","name":"end_call","arguments":"{}","status":"completed"}}}"#;
        let e = ServerEvent::parse(text).unwrap();
        let inner = e.event.unwrap();
        assert_eq!(&*inner.kind, "response.output_item.done");
        let item = inner.item.unwrap();
        assert_eq!(item.kind.as_deref(), Some("function_call"));
        assert_eq!(item.name.as_deref(), Some("end_call"));
        assert_eq!(item.call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn append_is_the_json_a_serializer_would_write() {
        let mut out = String::new();
        append(&mut out, false, &[0xFF, 0x7F, 0x00]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"type": "input_audio_buffer.append", "audio": "/38A"})
        );
        append(&mut out, true, &[]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"type": "session.input_audio.append", "audio": ""})
        );
    }
}
