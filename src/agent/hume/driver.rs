//! The tokio edge of one EVI conversation: owns the WebSocket(s), feeds the sans-IO
//! [`EviCore`] and carries out what it returns. One task per call, spawned inside the call's
//! span.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use crate::timer::{now, sleep_until_opt};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::core::{ConnId, CoreConfig, EviCore, Output, SocketClose};
use super::protocol::ServerMessage;
use crate::agent::percent_encode;
use crate::agent::remote::{Down, DriverEnds, ReadyTx, Up};
use crate::agent::ws::{self, Ws};
use crate::agent::{AgentEvent, AudioFrame, CallInfo, CallerEvent};
use crate::config::HumeSpec;

type Connecting = Pin<Box<dyn Future<Output = Result<Box<Ws>, String>> + Send>>;

pub(super) struct Driver {
    spec: Arc<HumeSpec>,
    core: EviCore,
    audio_rx: mpsc::Receiver<AudioFrame>,
    up_rx: mpsc::UnboundedReceiver<Up>,
    down_tx: mpsc::UnboundedSender<Down>,
    ready_tx: Option<oneshot::Sender<Result<(), String>>>,
    sockets: Vec<(ConnId, Ws)>,
    connecting: Vec<(ConnId, Connecting)>,
    caller_gone: bool,
}

// Caller audio is the common wake-up, 50 times a second: boxing it would allocate each time.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Caller(Option<Up>),
    Audio(Option<AudioFrame>),
    Socket(ConnId, Option<Result<Message, tungstenite::Error>>),
    Connected(ConnId, Result<Box<Ws>, String>),
    Timer,
}

impl Driver {
    pub(super) fn new(
        spec: Arc<HumeSpec>,
        call: &CallInfo,
        ch: DriverEnds,
        ready_tx: ReadyTx,
    ) -> Driver {
        let cfg = CoreConfig {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            called: call.called.clone(),
            resume: spec.resume,
            connect_timeout: spec.connect_timeout,
            session_limit: spec.session_limit,
            batch_frames: (spec.audio_batch_ms / 20).clamp(1, 5) as usize,
        };
        Driver {
            core: EviCore::new(now(), cfg),
            spec,
            audio_rx: ch.audio_rx,
            up_rx: ch.up_rx,
            down_tx: ch.down_tx,
            ready_tx: Some(ready_tx),
            sockets: Vec::new(),
            connecting: Vec::new(),
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
                Wake::Caller(Some(Up::Caller(CallerEvent::Hangup))) | Wake::Caller(None) => {
                    self.caller_gone = true;
                    self.core.on_caller_hangup();
                }
                Wake::Caller(Some(Up::Caller(CallerEvent::Dtmf(d)))) => {
                    tracing::debug!(digit = %d, "EVI has no key presses; DTMF not forwarded");
                }
                // EVI has no marks: nothing is sent down that would come back played.
                Wake::Caller(Some(
                    Up::Caller(CallerEvent::Answered) | Up::Played(_) | Up::Cleared { .. },
                )) => {}
                Wake::Audio(Some(frame)) => self.core.on_caller_audio(now, frame.samples()),
                Wake::Audio(None) => {
                    self.caller_gone = true;
                    self.core.on_caller_hangup();
                }
                Wake::Socket(conn, item) => self.on_socket(now, conn, item),
                Wake::Connected(conn, Ok(ws)) => {
                    self.sockets.push((conn, *ws));
                    self.core.on_connected(now, conn);
                }
                Wake::Connected(conn, Err(e)) => {
                    tracing::warn!(conn, error = %e, "EVI connection failed");
                    self.core.on_connect_failed(now, conn, e);
                }
                Wake::Timer => self.core.handle_timeout(now),
            }
        }
        let stats = self.core.playout_stats();
        tracing::info!(
            chunks = stats.chunks_played,
            frames = stats.frames,
            discarded = stats.chunks_discarded,
            undecodable = stats.chunks_undecodable,
            caller_frames_dropped = self.core.caller_frames_dropped(),
            "EVI session finished"
        );
        // Sockets the core did not close (none, normally) are closed politely too.
        for (_, ws) in std::mem::take(&mut self.sockets) {
            ws::close_in_background("EVI", ws, Vec::new(), None);
        }
    }

    async fn next_wake(&mut self) -> Wake {
        let deadline = self.core.poll_timeout().map(Instant::from_std);
        let Driver {
            audio_rx,
            up_rx,
            sockets,
            connecting,
            caller_gone,
            ..
        } = self;
        let caller_gone = *caller_gone;
        let io = std::future::poll_fn(|cx| {
            if !caller_gone {
                if let Poll::Ready(ev) = up_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Caller(ev));
                }
                if let Poll::Ready(f) = audio_rx.poll_recv(cx) {
                    return Poll::Ready(Wake::Audio(f));
                }
            }
            for (conn, ws) in sockets.iter_mut() {
                if let Poll::Ready(item) = ws.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Socket(*conn, item));
                }
            }
            for i in 0..connecting.len() {
                if let Poll::Ready(r) = connecting[i].1.as_mut().poll(cx) {
                    let (conn, _) = connecting.swap_remove(i);
                    return Poll::Ready(Wake::Connected(conn, r));
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
        conn: ConnId,
        item: Option<Result<Message, tungstenite::Error>>,
    ) {
        let close = match item {
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(msg) => {
                        if matches!(msg, ServerMessage::Unknown) {
                            tracing::debug!(conn, "EVI message of an unknown type ignored");
                        }
                        self.core.on_message(now, conn, msg);
                    }
                    Err(e) => {
                        let start: String = text.as_str().chars().take(120).collect();
                        tracing::warn!(conn, error = %e, message = %start,
                            "unreadable EVI message ignored");
                    }
                }
                return;
            }
            // Pings are answered by tungstenite itself; EVI defines no binary messages. Pongs
            // (to our keep-alive pings) and the rest prove the socket alive.
            other => match SocketClose::from_read(other) {
                Some(close) => close,
                None => {
                    self.core.on_heard(now, conn);
                    return;
                }
            },
        };
        tracing::info!(conn, how = ?close, "EVI socket closed");
        if let Some(pos) = self.sockets.iter().position(|(c, _)| *c == conn) {
            let (_, ws) = self.sockets.swap_remove(pos);
            if matches!(close, SocketClose::Clean { .. }) {
                // Finish the closing handshake (tungstenite queued our reply).
                ws::close_in_background("EVI", ws, Vec::new(), None);
            }
        }
        self.core.on_closed(now, conn, close);
    }

    async fn act(&mut self, out: Output) {
        match out {
            Output::Connect { conn, resume_group } => {
                tracing::info!(
                    conn,
                    resumed_chat_group_id = resume_group.as_deref().unwrap_or(""),
                    "opening EVI socket"
                );
                let spec = self.spec.clone();
                let fut = async move { open_socket(&spec, resume_group.as_deref()).await };
                self.connecting.push((conn, Box::pin(fut)));
            }
            Output::Send { conn, msg } => {
                let text = match serde_json::to_string(&msg) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode an EVI message");
                        return;
                    }
                };
                self.send(conn, Message::text(text)).await;
            }
            Output::Ping { conn } => self.send(conn, Message::Ping(Default::default())).await,
            Output::Close { conn } => {
                self.connecting.retain(|(c, _)| *c != conn);
                if let Some(pos) = self.sockets.iter().position(|(c, _)| *c == conn) {
                    let (_, ws) = self.sockets.swap_remove(pos);
                    ws::close_in_background("EVI", ws, Vec::new(), None);
                }
            }
            Output::Audio(f) => self.down(Down::Frame(f)),
            Output::ClearPlayout => self.down(Down::Clear),
            Output::Event(e) => {
                match &e {
                    AgentEvent::Transcript {
                        role,
                        text,
                        emotions,
                    } => {
                        let top: Vec<String> = emotions
                            .iter()
                            .map(|(name, score)| format!("{name} {score:.2}"))
                            .collect();
                        tracing::info!(?role, %text, emotions = %top.join(", "), "EVI transcript");
                    }
                    AgentEvent::Detail { key, value } => {
                        tracing::info!(key, %value, "EVI session detail");
                    }
                    _ => {}
                }
                self.down(Down::Event(e));
            }
            Output::Ready => {
                tracing::info!("EVI chat ready: answering");
                if let Some(tx) = self.ready_tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Output::End { reason, failed } => {
                if let Some(tx) = self.ready_tx.take() {
                    tracing::warn!(%reason, "EVI session could not start");
                    let _ = tx.send(Err(reason));
                } else {
                    if !self.caller_gone {
                        tracing::info!(%reason, "EVI session ended");
                    }
                    self.down(Down::End { reason, failed });
                }
            }
        }
    }

    /// Writes one frame to socket `conn`; a failed or stalled write drops the socket.
    async fn send(&mut self, conn: ConnId, frame: Message) {
        let Some(pos) = self.sockets.iter().position(|(c, _)| *c == conn) else {
            return;
        };
        let Err(error) = ws::send(&mut self.sockets[pos].1, frame).await else {
            return;
        };
        self.sockets.swap_remove(pos);
        self.core
            .on_closed(now(), conn, SocketClose::Dropped { error });
    }

    fn down(&self, d: Down) {
        // The call may be gone already; then nothing is listening.
        let _ = self.down_tx.send(d);
    }
}

/// Opens one EVI socket: the API key in the `X-Hume-Api-Key` header (never in the URL, which
/// may be logged), the settings that only exist as query parameters in the query.
async fn open_socket(spec: &HumeSpec, resume_group: Option<&str>) -> Result<Box<Ws>, String> {
    let url = chat_url(spec, resume_group);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad EVI url {}: {e}", spec.url))?;
    let key = HeaderValue::from_str(&spec.api_key)
        .map_err(|_| "the Hume API key is not a valid HTTP header value".to_string())?;
    request.headers_mut().insert("X-Hume-Api-Key", key);
    ws::connect(request, "EVI", ws::READ_LARGE).await
}

/// The chat URL with its query parameters.
pub(super) fn chat_url(spec: &HumeSpec, resume_group: Option<&str>) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(id) = &spec.config_id {
        params.push(("config_id", id.clone()));
    }
    if let Some(v) = spec.config_version {
        params.push(("config_version", v.to_string()));
    }
    if spec.verbose_transcription {
        params.push(("verbose_transcription", "true".into()));
    }
    if let Some(g) = resume_group {
        params.push(("resumed_chat_group_id", g.to_string()));
    }
    let mut url = spec.url.clone();
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !spec.url.contains('?') {
            '?'
        } else {
            '&'
        };
        url.push(sep);
        url.push_str(k);
        url.push('=');
        percent_encode(v, &mut url);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> HumeSpec {
        HumeSpec {
            url: HumeSpec::DEFAULT_URL.into(),
            api_key: "k".into(),
            config_id: None,
            config_version: None,
            resume: true,
            verbose_transcription: false,
            connect_timeout: Duration::from_secs(10),
            session_limit: Duration::from_secs(1800),
            audio_batch_ms: 20,
        }
    }

    #[tokio::test]
    async fn wss_speaks_tls_with_the_ring_provider_and_fails_cleanly_on_a_non_tls_peer() {
        crate::agent::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            // Not TLS: read the ClientHello, answer with plain HTTP, hang up.
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut hello)
                .await
                .unwrap();
            let _ =
                tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad\r\n\r\n").await;
            hello
        });
        let s = HumeSpec {
            url: format!("wss://localhost:{}/v0/evi/chat", addr.port()),
            ..spec()
        };
        let err = open_socket(&s, None).await.unwrap_err();
        assert!(
            err.starts_with("cannot connect to wss://localhost"),
            "{err}"
        );
        // A TLS handshake record (0x16) came first: the socket really is TLS.
        assert_eq!(peer.await.unwrap()[0], 0x16);
    }

    #[test]
    fn the_url_carries_the_query_settings_but_never_the_key() {
        assert_eq!(chat_url(&spec(), None), "wss://api.hume.ai/v0/evi/chat");
        let s = HumeSpec {
            config_id: Some("cfg 1/ä".into()),
            config_version: Some(3),
            verbose_transcription: true,
            ..spec()
        };
        let url = chat_url(&s, Some("grp-1"));
        assert_eq!(
            url,
            "wss://api.hume.ai/v0/evi/chat?config_id=cfg%201%2F%C3%A4&config_version=3\
             &verbose_transcription=true&resumed_chat_group_id=grp-1"
        );
        assert!(!url.contains("api_key"));
        let s = HumeSpec {
            url: "ws://127.0.0.1:9/chat?x=1".into(),
            ..spec()
        };
        assert_eq!(
            chat_url(&s, Some("g")),
            "ws://127.0.0.1:9/chat?x=1&resumed_chat_group_id=g"
        );
    }
}
