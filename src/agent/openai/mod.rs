//! The OpenAI agent: a call talks to one of OpenAI's speech-to-speech models over one
//! WebSocket, the Realtime API (GA) or GPT-Live, in G.711 both ways so the caller's audio is
//! never resampled (reference/ai-legs.md §3-4).
//!
//! - [`protocol`]: the events both APIs take and send;
//! - [`core`]: the sans-IO conversation, which decides everything;
//! - here: the agent, the core as the call's socket session's, and opening the socket.

pub mod core;
pub mod protocol;

use std::sync::Arc;
use std::time::Instant;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use self::core::OpenaiCore;
use super::remote::Up;
use super::ws::session::{self, Output, SocketCore};
use super::ws::{self, SocketClose, Ws};
use super::{percent_encode, Agent, CallInfo, ConnectFuture, SetupPolicy};
use crate::config::{OpenaiApi, OpenaiSpec};
use crate::timer::now;

/// `kind = "openai"`.
pub struct OpenaiAgent {
    spec: Arc<OpenaiSpec>,
}

impl OpenaiAgent {
    pub fn new(spec: OpenaiSpec) -> OpenaiAgent {
        super::install_crypto_provider();
        OpenaiAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for OpenaiAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let spec = self.spec.clone();
        tracing::info!(model = %spec.model, api = ?spec.api, "opening an OpenAI session");
        let core = OpenaiCore::new(now(), spec.clone(), call.law);
        let open = Box::pin(async move { Ok((open_socket(&spec).await?, ())) });
        session::connect(core, open)
    }

    fn kind(&self) -> &'static str {
        "openai"
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy::websocket(self.spec.connect_timeout)
    }
}

/// The endpoint with the key and the configured headers. Realtime names its model in the
/// query; GPT-Live takes none.
async fn open_socket(spec: &OpenaiSpec) -> Result<Box<Ws>, String> {
    let mut url = spec.url.clone();
    if spec.api == OpenaiApi::Realtime {
        url.push_str("?model=");
        percent_encode(&spec.model, &mut url);
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad OpenAI url: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", spec.api_key))
        .map_err(|_| "the OpenAI API key is not a valid header value".to_string())?;
    request.headers_mut().insert("authorization", bearer);
    for (name, value) in &spec.headers {
        // Both were checked when the config was loaded.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(format!("header {name} is not a valid HTTP header"));
        };
        request.headers_mut().insert(name, value);
    }
    ws::connect(request, "OpenAI", ws::READ_SMALL).await
}

impl SocketCore for OpenaiCore {
    type Opened = ();
    const FAR_END: &'static str = "OpenAI";

    fn poll_output(&mut self) -> Option<Output> {
        OpenaiCore::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        OpenaiCore::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        OpenaiCore::handle_timeout(self, now)
    }
    fn on_connected(&mut self, now: Instant, _: ()) {
        OpenaiCore::on_connected(self, now)
    }
    fn on_connect_failed(&mut self, error: String) {
        OpenaiCore::on_connect_failed(self, error)
    }
    fn on_caller_audio(&mut self, _now: Instant, pcm: &[i16]) {
        OpenaiCore::on_caller_audio(self, pcm)
    }
    fn on_up(&mut self, now: Instant, up: Up) {
        OpenaiCore::on_up(self, now, up)
    }
    fn on_caller_hangup(&mut self, _now: Instant) {
        OpenaiCore::on_caller_hangup(self)
    }
    fn on_text(&mut self, now: Instant, text: &str) {
        OpenaiCore::on_text(self, now, text)
    }
    fn on_binary(&mut self, now: Instant) {
        OpenaiCore::on_binary(self, now)
    }
    fn on_heard(&mut self, now: Instant) {
        OpenaiCore::on_heard(self, now)
    }
    fn on_closed(&mut self, now: Instant, how: SocketClose) {
        OpenaiCore::on_closed(self, now, how)
    }
    fn finished(&self) {
        let s = self.stats();
        tracing::info!(
            appends = s.appends,
            deltas = s.deltas,
            frames_down = s.frames_down,
            deltas_dropped = s.deltas_dropped,
            barge_ins = s.barge_ins,
            truncations = s.truncations,
            tool_calls = s.tool_calls,
            errors = s.errors,
            ignored = s.ignored,
            "OpenAI session finished"
        );
    }
}
