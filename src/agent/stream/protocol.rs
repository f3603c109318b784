//! Twilio's bidirectional Media Streams messages, as Twilio sends them (JSON text frames; every
//! counter a string of digits) and as bots send them back (reference/ai-legs.md §1,
//! twilio.com/docs/voice/media-streams/websocket-messages).

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

/// The stream's identity, as Twilio names it in every message.
#[derive(Clone, Debug)]
pub struct StreamIds {
    /// `MZ` + 32 hex digits.
    pub stream_sid: String,
    /// `CA` + 32 hex digits: Twilio's own when the INVITE carried `X-Twilio-CallSid`.
    pub call_sid: String,
    /// `AC` + 32 hex digits.
    pub account_sid: String,
}

/// `connected`: the first message, before any counter starts.
pub fn connected() -> String {
    json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
}

/// `start`: always sequence number 1. The media format is what Twilio always sends on this
/// path: mu-law at 8 kHz, mono.
pub fn start(ids: &StreamIds, parameters: &[(String, String)]) -> String {
    let params: serde_json::Map<String, Value> = parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ids.account_sid,
            "streamSid": ids.stream_sid,
            "callSid": ids.call_sid,
            "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": ids.stream_sid,
    })
    .to_string()
}

/// `media`, written into `out` (cleared first) without building a JSON tree: 50 of these a
/// second per call. Every field is digits, a SID or base64, so nothing needs escaping.
pub fn media(out: &mut String, ids: &StreamIds, seq: u64, chunk: u64, ms: u64, mulaw: &[u8]) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{{\"event\":\"media\",\"sequenceNumber\":\"{seq}\",\"media\":{{\"track\":\"inbound\",\
         \"chunk\":\"{chunk}\",\"timestamp\":\"{ms}\",\"payload\":\""
    );
    base64::engine::general_purpose::STANDARD.encode_string(mulaw, out);
    let _ = write!(out, "\"}},\"streamSid\":\"{}\"}}", ids.stream_sid);
}

/// `dtmf`: one per key press (Twilio names the track `inbound_track` here).
pub fn dtmf(ids: &StreamIds, seq: u64, digit: char) -> String {
    json!({
        "event": "dtmf",
        "streamSid": ids.stream_sid,
        "sequenceNumber": seq.to_string(),
        "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
    })
    .to_string()
}

/// `mark`: a bot's mark, echoed once the audio before it has played.
pub fn mark(ids: &StreamIds, seq: u64, name: &str) -> String {
    json!({
        "event": "mark",
        "sequenceNumber": seq.to_string(),
        "streamSid": ids.stream_sid,
        "mark": {"name": name},
    })
    .to_string()
}

/// `stop`: the call is over.
pub fn stop(ids: &StreamIds, seq: u64) -> String {
    json!({
        "event": "stop",
        "sequenceNumber": seq.to_string(),
        "streamSid": ids.stream_sid,
        "stop": {"accountSid": ids.account_sid, "callSid": ids.call_sid},
    })
    .to_string()
}

/// What a bot may send. Anything else (another event, a missing field) is [`BotMessage::Other`]
/// or an error, which the core logs and ignores, as a lenient Twilio-compatible server does.
/// Borrowed from the message where JSON needed no unescaping: a bot's `media` arrives up to 50
/// times a second per call.
#[derive(Debug, PartialEq, Eq)]
pub enum BotMessage<'a> {
    /// Base64 mu-law, any length.
    Media {
        stream_sid: Option<Cow<'a, str>>,
        payload: Cow<'a, str>,
    },
    Mark {
        stream_sid: Option<Cow<'a, str>>,
        name: String,
    },
    Clear {
        stream_sid: Option<Cow<'a, str>>,
    },
    /// A well-formed message of another kind (`event` named here).
    Other {
        event: String,
    },
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "streamSid", borrow)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media: Option<RawMedia<'a>>,
    mark: Option<RawMark>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawMark {
    name: String,
}

/// Why a bot's message was not understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BotMessageError {
    #[error("not a JSON object with an event: {0}")]
    Json(String),
    #[error("{event} without {field}")]
    Missing {
        event: &'static str,
        field: &'static str,
    },
}

impl<'a> BotMessage<'a> {
    pub fn parse(text: &'a str) -> Result<BotMessage<'a>, BotMessageError> {
        let raw: Raw<'a> =
            serde_json::from_str(text).map_err(|e| BotMessageError::Json(e.to_string()))?;
        let stream_sid = raw.stream_sid;
        Ok(match raw.event.as_ref() {
            "media" => BotMessage::Media {
                stream_sid,
                payload: raw
                    .media
                    .ok_or(BotMessageError::Missing {
                        event: "media",
                        field: "media.payload",
                    })?
                    .payload,
            },
            "mark" => BotMessage::Mark {
                stream_sid,
                name: raw
                    .mark
                    .ok_or(BotMessageError::Missing {
                        event: "mark",
                        field: "mark.name",
                    })?
                    .name,
            },
            "clear" => BotMessage::Clear { stream_sid },
            _ => BotMessage::Other {
                event: raw.event.into_owned(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> StreamIds {
        StreamIds {
            stream_sid: format!("MZ{}", "a".repeat(32)),
            call_sid: format!("CA{}", "b".repeat(32)),
            account_sid: format!("AC{}", "c".repeat(32)),
        }
    }

    #[test]
    fn media_is_the_json_twilio_sends() {
        let mut out = String::new();
        media(&mut out, &ids(), 7, 6, 120, &[0xFF, 0x7F, 0x00]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "media",
                "sequenceNumber": "7",
                "media": {"track": "inbound", "chunk": "6", "timestamp": "120", "payload": "/38A"},
                "streamSid": ids().stream_sid,
            })
        );
    }

    #[test]
    fn start_carries_the_ids_parameters_and_format() {
        let v: Value = serde_json::from_str(&start(
            &ids(),
            &[("from_number".into(), "+447700900123".into())],
        ))
        .unwrap();
        assert_eq!(v["sequenceNumber"], "1");
        assert_eq!(v["start"]["callSid"], ids().call_sid);
        assert_eq!(v["start"]["tracks"], json!(["inbound"]));
        assert_eq!(
            v["start"]["customParameters"]["from_number"],
            "+447700900123"
        );
        assert_eq!(v["start"]["mediaFormat"]["sampleRate"], 8000);
        let v: Value = serde_json::from_str(&stop(&ids(), 9)).unwrap();
        assert_eq!(v["stop"]["accountSid"], ids().account_sid);
        assert_eq!(v["sequenceNumber"], "9");
    }

    #[test]
    fn bot_messages_parse_and_unknown_ones_are_named() {
        assert_eq!(
            BotMessage::parse(r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/w=="}}"#),
            Ok(BotMessage::Media {
                stream_sid: Some("MZ1".into()),
                payload: "/w==".into()
            })
        );
        assert_eq!(
            BotMessage::parse(r#"{"event":"mark","mark":{"name":"m1"}}"#),
            Ok(BotMessage::Mark {
                stream_sid: None,
                name: "m1".into()
            })
        );
        assert_eq!(
            BotMessage::parse(r#"{"event":"clear","streamSid":"MZ1"}"#),
            Ok(BotMessage::Clear {
                stream_sid: Some("MZ1".into())
            })
        );
        assert_eq!(
            BotMessage::parse(r#"{"event":"transfer","to":"+1"}"#),
            Ok(BotMessage::Other {
                event: "transfer".into()
            })
        );
        assert_eq!(
            BotMessage::parse(r#"{"event":"media"}"#),
            Err(BotMessageError::Missing {
                event: "media",
                field: "media.payload"
            })
        );
        assert!(matches!(
            BotMessage::parse("not json"),
            Err(BotMessageError::Json(_))
        ));
    }
}
