//! The EVI chat WebSocket's JSON messages (reference/hume-evi.md sections 2 and 3), as serde
//! types that match the models of Hume's official Python SDK field for field: the client's
//! `PublishEvent` union ([`ClientMessage`]) and the server's `SubscribeEvent` union
//! ([`ServerMessage`]).
//!
//! Absent optional fields are omitted on the wire, never sent as `null`. Both enums serialise
//! and deserialise, so the fake EVI server in the tests speaks the same types; the gateway's
//! recordings are checked against the SDK itself (scripts/hume-sdk-check).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Client -> server (`PublishEvent`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    AudioInput(AudioInput),
    SessionSettings(SessionSettings),
    UserInput(TextInput),
    AssistantInput(TextInput),
    PauseAssistantMessage(Bare),
    ResumeAssistantMessage(Bare),
    ToolResponse(ToolResponse),
    ToolError(ToolError),
}

/// Server -> client (`SubscribeEvent`). A `type` this build does not know becomes
/// [`ServerMessage::Unknown`] instead of an error: EVI adding an event must never end a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    ChatMetadata(ChatMetadata),
    UserMessage(UserMessage),
    AssistantMessage(AssistantMessage),
    AssistantProsody(AssistantProsody),
    AudioOutput(AudioOutput),
    AssistantEnd(Bare),
    UserInterruption(UserInterruption),
    ToolCall(ToolCall),
    ToolResponse(ToolResponse),
    ToolError(ToolError),
    Error(EviError),
    SessionSettings(SessionSettings),
    #[serde(other, skip_serializing)]
    Unknown,
}

impl ServerMessage {
    /// The wire `type`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::ChatMetadata(_) => "chat_metadata",
            ServerMessage::UserMessage(_) => "user_message",
            ServerMessage::AssistantMessage(_) => "assistant_message",
            ServerMessage::AssistantProsody(_) => "assistant_prosody",
            ServerMessage::AudioOutput(_) => "audio_output",
            ServerMessage::AssistantEnd(_) => "assistant_end",
            ServerMessage::UserInterruption(_) => "user_interruption",
            ServerMessage::ToolCall(_) => "tool_call",
            ServerMessage::ToolResponse(_) => "tool_response",
            ServerMessage::ToolError(_) => "tool_error",
            ServerMessage::Error(_) => "error",
            ServerMessage::SessionSettings(_) => "session_settings",
            ServerMessage::Unknown => "unknown",
        }
    }
}

/// A message whose only field is the optional `custom_session_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bare {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

/// The caller's speech: base64 of raw audio in the format `session_settings.audio` declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioInput {
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

/// `user_input` (text as if said by the caller) and `assistant_input` (text for EVI to speak).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInput {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// Values for `{{name}}` placeholders in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<BTreeMap<String, VariableValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_tools: Option<Vec<BuiltinToolConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_model_api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How the `audio_input` bytes are to be read. `linear16` is the only encoding EVI declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioConfiguration {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

impl AudioConfiguration {
    /// Telephone audio as the gateway sends it: 8 kHz 16-bit mono, no upsampling.
    pub fn telephone() -> AudioConfiguration {
        AudioConfiguration {
            encoding: "linear16".into(),
            sample_rate: 8000,
            channels: 1,
            codec: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub text: String,
    /// `persistent` or `temporary`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A prompt variable: EVI takes strings, numbers and booleans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VariableValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// `function` (or `builtin`).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// A JSON Schema, as a string.
    pub parameters: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_content: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltinToolConfig {
    /// `web_search` or `hang_up`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_content: Option<String>,
}

/// The answer to a `tool_call`; EVI also reports its own built-in tools' results this way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResponse {
    pub tool_call_id: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// `function` or `builtin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolError {
    pub tool_call_id: String,
    pub error: String,
    /// What the assistant says instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Only `warn` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

/// Always the first server message: the ids of this chat and of its group (for resuming).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMetadata {
    pub chat_id: String,
    pub chat_group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    pub message: ChatMessage,
    pub models: Inference,
    /// True when it came from a `user_input` text, not speech.
    pub from_text: bool,
    /// A partial transcript (only with `verbose_transcription`).
    pub interim: bool,
    pub time: MillisecondInterval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub message: ChatMessage,
    pub models: Inference,
    pub from_text: bool,
    pub is_quick_response: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssistantProsody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub models: Inference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system`, `all`, `tool` or `context`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCall>,
    /// A `tool_response` or `tool_error` body; kept as JSON since nothing here reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prosody: Option<ProsodyInference>,
}

impl Inference {
    /// The `n` strongest prosody scores, highest first (ties by name, so the order is stable).
    pub fn top_emotions(&self, n: usize) -> Vec<(String, f32)> {
        let Some(p) = &self.prosody else {
            return Vec::new();
        };
        let mut all: Vec<(&String, f32)> = p
            .scores
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k, *v))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.into_iter()
            .take(n)
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }
}

/// 48 emotion scores keyed by their wire names ("Surprise (negative)").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProsodyInference {
    pub scores: BTreeMap<String, f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MillisecondInterval {
    pub begin: i64,
    pub end: i64,
}

/// One piece of the assistant's speech: `data` is base64 of a complete WAV file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioOutput {
    /// The segment (utterance) this chunk belongs to.
    pub id: String,
    /// The chunk's position within `id`, from 0.
    pub index: u32,
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInterruption {
    /// Unix time in milliseconds.
    pub time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// The arguments, as a JSON string.
    pub parameters: String,
    pub tool_call_id: String,
    pub response_required: bool,
    /// `function` or `builtin`.
    pub tool_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

/// EVI's `error` message (`WebSocketError` in the SDK).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EviError {
    pub code: String,
    pub slug: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_session_id: Option<String>,
}

/// The built-in tool that ends the conversation.
pub const HANG_UP_TOOL: &str = "hang_up";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> ServerMessage {
        serde_json::from_value(v).expect("parses")
    }

    #[test]
    fn every_server_type_parses_from_the_wire_shape() {
        let scores = json!({"Joy": 0.7, "Calmness": 0.2, "Surprise (negative)": 0.9});
        let cases = [
            (
                json!({"type": "chat_metadata", "chat_id": "c", "chat_group_id": "g", "request_id": "r"}),
                "chat_metadata",
            ),
            (
                json!({"type": "user_message", "message": {"role": "user", "content": "hi"},
                       "models": {"prosody": {"scores": scores}}, "from_text": false,
                       "interim": false, "time": {"begin": 0, "end": 900}}),
                "user_message",
            ),
            (
                json!({"type": "assistant_message", "id": "a1", "message": {"role": "assistant",
                       "content": "hello"}, "models": {}, "from_text": false,
                       "is_quick_response": false}),
                "assistant_message",
            ),
            (
                json!({"type": "assistant_prosody", "models": {"prosody": {"scores": scores}}}),
                "assistant_prosody",
            ),
            (
                json!({"type": "audio_output", "id": "a1", "index": 0, "data": "UklGRg=="}),
                "audio_output",
            ),
            (json!({"type": "assistant_end"}), "assistant_end"),
            (
                json!({"type": "user_interruption", "time": 1_700_000_000_000i64}),
                "user_interruption",
            ),
            (
                json!({"type": "tool_call", "name": "hang_up", "parameters": "{}",
                       "tool_call_id": "t", "response_required": false, "tool_type": "builtin"}),
                "tool_call",
            ),
            (
                json!({"type": "tool_response", "tool_call_id": "t", "content": "ok"}),
                "tool_response",
            ),
            (
                json!({"type": "tool_error", "tool_call_id": "t", "error": "no"}),
                "tool_error",
            ),
            (
                json!({"type": "error", "code": "E0101", "slug": "bad_request", "message": "m"}),
                "error",
            ),
            (
                json!({"type": "session_settings", "audio": {"encoding": "linear16",
                       "sample_rate": 8000, "channels": 1}}),
                "session_settings",
            ),
        ];
        for (wire, kind) in cases {
            let msg = parse(wire.clone());
            assert_eq!(msg.kind(), kind, "{wire}");
            // What the fake server sends is what the gateway reads back.
            let again: ServerMessage =
                serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
            assert_eq!(again, msg);
        }
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        assert_eq!(
            parse(json!({"type": "brand_new_event", "x": 1})),
            ServerMessage::Unknown
        );
        let m = parse(json!({"type": "assistant_end", "custom_session_id": "s", "new": [1]}));
        assert_eq!(
            m,
            ServerMessage::AssistantEnd(Bare {
                custom_session_id: Some("s".into())
            })
        );
        // Optional fields sent as null read as absent.
        let m = parse(
            json!({"type": "chat_metadata", "chat_id": "c", "chat_group_id": "g",
                             "request_id": null}),
        );
        assert!(matches!(
            m,
            ServerMessage::ChatMetadata(ChatMetadata {
                request_id: None,
                ..
            })
        ));
    }

    #[test]
    fn a_known_type_missing_a_required_field_is_an_error() {
        let bad =
            serde_json::from_value::<ServerMessage>(json!({"type": "audio_output", "id": "a"}));
        assert!(bad.is_err());
        let bad = serde_json::from_str::<ServerMessage>("not json");
        assert!(bad.is_err());
    }

    #[test]
    fn client_messages_omit_absent_fields() {
        let m = ClientMessage::SessionSettings(SessionSettings {
            audio: Some(AudioConfiguration::telephone()),
            custom_session_id: Some("call-1".into()),
            variables: Some(BTreeMap::from([(
                "caller_number".to_string(),
                VariableValue::Text("+15551234567".into()),
            )])),
            ..SessionSettings::default()
        });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({"type": "session_settings",
                   "audio": {"encoding": "linear16", "sample_rate": 8000, "channels": 1},
                   "custom_session_id": "call-1",
                   "variables": {"caller_number": "+15551234567"}})
        );
        let a = ClientMessage::AudioInput(AudioInput {
            data: "AAA=".into(),
            custom_session_id: None,
        });
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"type": "audio_input", "data": "AAA="})
        );
        let p = ClientMessage::PauseAssistantMessage(Bare::default());
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"type": "pause_assistant_message"})
        );
        // And the fake server reads them back.
        let back: ClientMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn top_emotions_are_the_highest_first() {
        let inf = Inference {
            prosody: Some(ProsodyInference {
                scores: BTreeMap::from([
                    ("Joy".to_string(), 0.5),
                    ("Anger".to_string(), 0.1),
                    ("Calmness".to_string(), 0.9),
                    ("Awe".to_string(), 0.5),
                    ("Bad".to_string(), f32::NAN),
                ]),
            }),
        };
        assert_eq!(
            inf.top_emotions(3),
            vec![
                ("Calmness".to_string(), 0.9),
                ("Awe".to_string(), 0.5),
                ("Joy".to_string(), 0.5)
            ]
        );
        assert!(Inference::default().top_emotions(3).is_empty());
    }
}
