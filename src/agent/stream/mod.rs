//! The Media Streams agent: the gateway plays Twilio's side of a bidirectional Media Stream
//! towards any bot built for Twilio (Pipecat, ElevenLabs, Ultravox, hand-written ones), over
//! one WebSocket per call (reference/ai-legs.md §1).
//!
//! - [`protocol`]: the messages as Twilio sends them and bots answer;
//! - [`core`]: the sans-IO stream, which decides everything;
//! - [`twiml`]: asking a `twiml_url` for the stream's URL (ElevenLabs, Ultravox, Hume);
//! - `socket`: opening the bot's socket (the call's own task runs it, `agent::ws::session`).

pub mod core;
pub mod protocol;
mod socket;
pub mod twiml;

use std::sync::Arc;

use self::core::{CoreConfig, StreamCore};
use self::protocol::StreamIds;
use super::ws::session;
use super::{Agent, CallInfo, ConnectFuture, SetupPolicy};
use crate::config::StreamSpec;
use crate::timer::now;

/// `kind = "stream"`.
pub struct StreamAgent {
    spec: Arc<StreamSpec>,
}

impl StreamAgent {
    pub fn new(spec: StreamSpec) -> StreamAgent {
        super::install_crypto_provider();
        StreamAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for StreamAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let ids = stream_ids(call);
        let facts = twiml::CallFacts {
            call_sid: ids.call_sid.clone(),
            account_sid: ids.account_sid.clone(),
            from: call.caller.clone(),
            to: call.called.clone(),
            sip_call_id: call.call_id.clone(),
            x_headers: call.x_headers.clone(),
        };
        let cfg = CoreConfig {
            ids,
            parameters: parameters(call, &self.spec.parameters),
            connect_timeout: self.spec.connect_timeout,
            hangup_on_close: self.spec.hangup_on_close,
            batch_frames: (self.spec.audio_batch_ms / 20).clamp(1, 5) as usize,
        };
        tracing::info!(stream_sid = %cfg.ids.stream_sid, call_sid = %cfg.ids.call_sid, "opening stream");
        let spec = self.spec.clone();
        let open = Box::pin(async move { socket::open(&spec, &facts).await });
        session::connect(StreamCore::new(now(), cfg), open)
    }

    fn kind(&self) -> &'static str {
        "stream"
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy::websocket(self.spec.connect_timeout)
    }
}

/// The SIDs Twilio would give this stream: Twilio's own call and account when the INVITE came
/// from Twilio (`X-Twilio-CallSid`, `X-Twilio-AccountSid`), made-up ones of the same shape
/// otherwise, since bots check the shape. The stream SID is new for every call.
fn stream_ids(call: &CallInfo) -> StreamIds {
    let sid = |prefix: &str, given: Option<&str>| match given {
        Some(s) if is_sid(s, prefix) => s.to_string(),
        _ => format!("{prefix}{:032x}", rand::random::<u128>()),
    };
    StreamIds {
        stream_sid: sid("MZ", None),
        call_sid: sid("CA", call.twilio_call_sid.as_deref()),
        account_sid: sid("AC", call.twilio_account_sid.as_deref()),
    }
}

/// `prefix` and 32 hex digits: what Twilio's SIDs look like.
fn is_sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `customParameters`: the call's facts under the names Pipecat reads (`from_number`,
/// `to_number`), the SIP Call-ID, the INVITE's X- headers under their own names, then the
/// configured parameters, which win over any of these.
fn parameters(call: &CallInfo, configured: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = vec![
        ("from_number".to_string(), call.caller.clone()),
        ("to_number".to_string(), call.called.clone()),
        ("sip_call_id".to_string(), call.call_id.clone()),
    ];
    out.extend(call.x_headers.iter().cloned());
    for (k, v) in configured {
        out.retain(|(name, _)| name != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallInfo {
        CallInfo {
            call_id: "abc@10.0.0.1".into(),
            caller: "+447700900123".into(),
            called: "+447846855904".into(),
            twilio_call_sid: Some(format!("CA{}", "e".repeat(32))),
            twilio_account_sid: Some("not-a-sid".into()),
            x_headers: vec![("X-Customer".into(), "42".into())],
            ..Default::default()
        }
    }

    #[test]
    fn twilios_sids_are_kept_and_missing_or_odd_ones_made_up_in_shape() {
        let ids = stream_ids(&call());
        assert_eq!(ids.call_sid, format!("CA{}", "e".repeat(32)));
        assert!(is_sid(&ids.account_sid, "AC"));
        assert_ne!(ids.account_sid, "not-a-sid");
        assert!(is_sid(&ids.stream_sid, "MZ"));
        assert_ne!(
            stream_ids(&call()).stream_sid,
            ids.stream_sid,
            "new per call"
        );
    }

    #[test]
    fn parameters_carry_the_call_and_the_config_wins() {
        let p = parameters(&call(), &[("to_number".into(), "sales".into())]);
        assert_eq!(
            p,
            [
                ("from_number".to_string(), "+447700900123".to_string()),
                ("sip_call_id".into(), "abc@10.0.0.1".into()),
                ("X-Customer".into(), "42".into()),
                ("to_number".into(), "sales".into()),
            ]
        );
    }
}
