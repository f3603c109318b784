//! The tokio edge of one Media Stream: owns the WebSocket, feeds the sans-IO [`StreamCore`]
//! and carries out what it returns. One task per call, spawned inside the call's span.

use std::sync::Arc;
use std::task::Poll;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};

use super::core::{CoreConfig, Output, StreamCore};
use super::twiml::{self, CallFacts};
use crate::agent::remote::{Down, DriverEnds, ReadyTx, Up};
use crate::agent::ws::{self, SocketClose, Ws};
use crate::agent::{AudioFrame, CallerEvent};
use crate::config::{StreamSource, StreamSpec};
use crate::timer::{now, sleep_until_opt};

/// The open socket and the `<Parameter>`s of the TwiML that named it.
type Opened = (Box<Ws>, Vec<(String, String)>);
type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Opened, String>> + Send>>;

pub(super) struct Driver {
    spec: Arc<StreamSpec>,
    facts: Arc<CallFacts>,
    core: StreamCore,
    audio_rx: mpsc::Receiver<AudioFrame>,
    up_rx: mpsc::UnboundedReceiver<Up>,
    down_tx: mpsc::UnboundedSender<Down>,
    ready_tx: Option<oneshot::Sender<Result<(), String>>>,
    socket: Option<Box<Ws>>,
    connecting: Option<Connecting>,
    caller_gone: bool,
}

#[allow(clippy::large_enum_variant)] // caller audio is the common wake-up; boxing would allocate
enum Wake {
    Caller(Option<Up>),
    Audio(Option<AudioFrame>),
    Socket(Option<Result<Message, tungstenite::Error>>),
    Connected(Result<Opened, String>),
    Timer,
}

impl Driver {
    pub(super) fn new(
        spec: Arc<StreamSpec>,
        facts: CallFacts,
        cfg: CoreConfig,
        ends: DriverEnds,
        ready_tx: ReadyTx,
    ) -> Driver {
        Driver {
            core: StreamCore::new(now(), cfg),
            spec,
            facts: Arc::new(facts),
            audio_rx: ends.audio_rx,
            up_rx: ends.up_rx,
            down_tx: ends.down_tx,
            ready_tx: Some(ready_tx),
            socket: None,
            connecting: None,
            caller_gone: false,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            while let Some(out) = self.core.poll_output() {
                self.act(out).await;
            }
            if self.core.is_ended() {
                break;
            }
            let wake = self.next_wake().await;
            let now = now();
            match wake {
                Wake::Caller(Some(Up::Caller(CallerEvent::Hangup)))
                | Wake::Caller(None)
                | Wake::Audio(None) => {
                    self.caller_gone = true;
                    self.core.on_caller_hangup();
                }
                Wake::Caller(Some(Up::Caller(CallerEvent::Dtmf(d)))) => self.core.on_caller_dtmf(d),
                Wake::Caller(Some(Up::Caller(CallerEvent::Answered))) => {}
                Wake::Caller(Some(Up::Played(name))) => self.core.on_played(&name),
                Wake::Audio(Some(frame)) => self.core.on_caller_audio(now, frame.samples()),
                Wake::Socket(item) => self.on_socket(now, item),
                Wake::Connected(Ok((ws, parameters))) => {
                    tracing::info!("stream open: answering");
                    self.socket = Some(ws);
                    self.core.on_connected(now, parameters);
                }
                Wake::Connected(Err(e)) => {
                    tracing::warn!(error = %e, "stream connection failed");
                    self.core.on_connect_failed(e);
                }
                Wake::Timer => self.core.handle_timeout(now),
            }
        }
        let s = self.core.stats();
        tracing::info!(
            media_sent = s.media_sent,
            silence_sent = s.silence_sent,
            frames_received = s.frames_received,
            marks = s.marks,
            clears = s.clears,
            ignored = s.ignored,
            "stream finished"
        );
        if let Some(ws) = self.socket.take() {
            ws::close_in_background("stream bot", *ws);
        }
    }

    async fn next_wake(&mut self) -> Wake {
        let deadline = self.core.poll_timeout().map(Instant::from_std);
        let Driver {
            audio_rx,
            up_rx,
            socket,
            connecting,
            caller_gone,
            ..
        } = self;
        let caller_gone = *caller_gone;
        let io = std::future::poll_fn(|cx| {
            if !caller_gone {
                if let Poll::Ready(up) = up_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Caller(up));
                }
                if let Poll::Ready(f) = audio_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Audio(f));
                }
            }
            if let Some(ws) = socket.as_mut() {
                if let Poll::Ready(item) = ws.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Socket(item));
                }
            }
            if let Some(fut) = connecting.as_mut() {
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    *connecting = None;
                    return Poll::Ready(Wake::Connected(r));
                }
            }
            Poll::Pending
        });
        tokio::select! {
            w = io => w,
            _ = sleep_until_opt(deadline) => Wake::Timer,
        }
    }

    fn on_socket(
        &mut self,
        now: std::time::Instant,
        item: Option<Result<Message, tungstenite::Error>>,
    ) {
        match item {
            Some(Ok(Message::Text(text))) => self.core.on_text(now, text.as_str()),
            Some(Ok(Message::Binary(_))) => self.core.on_binary(now),
            other => {
                // Pings are answered by tungstenite itself; pongs answer our keep-alive.
                let Some(close) = SocketClose::from_read(other) else {
                    return self.core.on_heard(now);
                };
                tracing::info!(how = ?close, "stream socket closed");
                if let Some(ws) = self.socket.take() {
                    if matches!(close, SocketClose::Clean { .. }) {
                        // Finish the closing handshake (tungstenite queued our reply).
                        ws::close_in_background("stream bot", *ws);
                    }
                }
                self.core.on_closed(now, close);
            }
        }
    }

    async fn act(&mut self, out: Output) {
        match out {
            Output::Connect => {
                let (spec, facts) = (self.spec.clone(), self.facts.clone());
                self.connecting = Some(Box::pin(async move { open_socket(&spec, &facts).await }));
            }
            Output::Send(text) => self.send(Message::text(text)).await,
            Output::Queue(text) => self.queue(Message::text(text)).await,
            Output::Flush => self.flush().await,
            Output::Ping => self.send(Message::Ping(Default::default())).await,
            Output::Close => {
                self.connecting = None;
                if let Some(ws) = self.socket.take() {
                    ws::close_in_background("stream bot", *ws);
                }
            }
            Output::Down(d) => {
                // The call may be gone already; then nothing is listening.
                let _ = self.down_tx.send(d);
            }
            Output::Ready => {
                if let Some(tx) = self.ready_tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Output::End { reason, failed } => {
                if let Some(tx) = self.ready_tx.take() {
                    tracing::warn!(%reason, "stream could not start");
                    let _ = tx.send(Err(reason));
                } else {
                    if !self.caller_gone {
                        tracing::info!(%reason, "stream ended");
                    }
                    let _ = self.down_tx.send(Down::End { reason, failed });
                }
            }
        }
    }

    /// Writes one message, and any queued before it; a failed or stalled write drops the
    /// socket.
    async fn send(&mut self, message: Message) {
        let Some(ws) = self.socket.as_mut() else {
            return;
        };
        let result = ws::send(ws, message).await;
        self.check(result);
    }

    /// Buffers one message (written at the next send or flush).
    async fn queue(&mut self, message: Message) {
        let Some(ws) = self.socket.as_mut() else {
            return;
        };
        let result = ws::feed(ws, message).await;
        self.check(result);
    }

    async fn flush(&mut self) {
        let Some(ws) = self.socket.as_mut() else {
            return;
        };
        let result = ws::flush(ws).await;
        self.check(result);
    }

    fn check(&mut self, result: Result<(), String>) {
        if let Err(error) = result {
            self.socket = None;
            self.core.on_closed(now(), SocketClose::Dropped { error });
        }
    }
}

/// Opens the bot's socket with the configured headers, asking the `twiml_url` for it first
/// when that is how the bot is found.
async fn open_socket(spec: &StreamSpec, facts: &CallFacts) -> Result<Opened, String> {
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
    let ws = ws::connect(request, "the stream bot").await?;
    Ok((ws, parameters))
}
