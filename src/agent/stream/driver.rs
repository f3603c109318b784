//! The stream's edge: [`StreamCore`] as the core of the call's socket session, and how the
//! bot's socket is opened (its URL given, or asked of a `twiml_url`).

use std::time::Instant;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use super::core::{Output, StreamCore};
use super::twiml::{self, CallFacts};
use crate::agent::remote::Up;
use crate::agent::ws::session::SocketCore;
use crate::agent::ws::{self, SocketClose, Ws};
use crate::agent::CallerEvent;
use crate::config::{StreamSource, StreamSpec};

/// The open socket and the `<Parameter>`s of the TwiML that named it.
type Opened = (Box<Ws>, Vec<(String, String)>);

impl SocketCore for StreamCore {
    type Opened = Vec<(String, String)>;
    const FAR_END: &'static str = "stream bot";

    fn poll_output(&mut self) -> Option<Output> {
        StreamCore::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        StreamCore::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        StreamCore::handle_timeout(self, now)
    }
    fn on_connected(&mut self, now: Instant, parameters: Self::Opened) {
        tracing::info!("stream open: answering");
        StreamCore::on_connected(self, now, parameters)
    }
    fn on_connect_failed(&mut self, error: String) {
        StreamCore::on_connect_failed(self, error)
    }
    fn on_caller_audio(&mut self, now: Instant, pcm: &[i16]) {
        StreamCore::on_caller_audio(self, now, pcm)
    }
    fn on_up(&mut self, _now: Instant, up: Up) {
        match up {
            Up::Caller(CallerEvent::Dtmf(d)) => self.on_caller_dtmf(d),
            Up::Played(name) => self.on_played(&name),
            Up::Caller(CallerEvent::Answered | CallerEvent::Hangup) | Up::Cleared { .. } => {}
        }
    }
    fn on_caller_hangup(&mut self, _now: Instant) {
        StreamCore::on_caller_hangup(self)
    }
    fn on_text(&mut self, now: Instant, text: &str) {
        StreamCore::on_text(self, now, text)
    }
    fn on_binary(&mut self, now: Instant) {
        StreamCore::on_binary(self, now)
    }
    fn on_heard(&mut self, now: Instant) {
        StreamCore::on_heard(self, now)
    }
    fn on_closed(&mut self, now: Instant, how: SocketClose) {
        StreamCore::on_closed(self, now, how)
    }
    fn finished(&self) {
        let s = self.stats();
        tracing::info!(
            media_sent = s.media_sent,
            silence_sent = s.silence_sent,
            frames_received = s.frames_received,
            marks = s.marks,
            clears = s.clears,
            ignored = s.ignored,
            "stream finished"
        );
    }
}

/// Opens the bot's socket with the configured headers, asking the `twiml_url` for it first
/// when that is how the bot is found.
pub(super) async fn open_socket(spec: &StreamSpec, facts: &CallFacts) -> Result<Opened, String> {
    let (url, parameters) = match &spec.source {
        StreamSource::Url(url) => (url.clone(), Vec::new()),
        StreamSource::Twiml(fetch) => {
            let target = twiml::fetch(fetch, facts, spec.connect_timeout).await?;
            tracing::info!(url = %target.url.split('?').next().unwrap_or(""), "the TwiML named the stream");
            (target.url, target.parameters)
        }
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad stream url: {e}"))?;
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
    let ws = ws::connect(request, "the stream bot", ws::READ_SMALL).await?;
    Ok((ws, parameters))
}
