//! The tokio edge shared by the agents whose far end is one WebSocket per call and whose
//! protocol is a sans-IO core (Media Streams, OpenAI): one task per call owns the socket,
//! feeds the core what the call and the socket bring, and carries out what it returns.
//! Spawned by [`crate::agent::remote::connect`] inside the call's span.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant as StdInstant;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{SocketClose, Ws};
use crate::agent::remote::{Down, DriverEnds, ReadyTx, Up};
use crate::agent::{AudioFrame, CallerEvent};
use crate::timer::{now, sleep_until_opt};

/// What a core asks its driver to do.
#[allow(clippy::large_enum_variant)] // frames are the common case; boxing them would allocate
#[derive(Debug)]
pub enum Output {
    /// Open the WebSocket.
    Connect,
    /// Send a text message, and with it any queued before.
    Send(String),
    /// Write a text message without flushing: more of the same batch follow.
    Queue(String),
    /// Flush what was queued.
    Flush,
    Ping,
    /// Close the socket (normal closure).
    Close,
    /// Hand to the call, in play order.
    Down(Down),
    /// The far end is ready: answer the call.
    Ready,
    /// The conversation is over: before [`Output::Ready`] the call is refused, after it hung
    /// up (with a failure cause when `failed`).
    End {
        reason: String,
        failed: bool,
    },
}

/// A far end's protocol, sans-IO: everything it decides is queued as [`Output`]s.
pub trait SocketCore: Send + 'static {
    /// What opening the socket brings besides the socket (a TwiML answer's parameters).
    type Opened: Send + 'static;
    /// Names the far end in log lines ("stream bot", "OpenAI").
    const FAR_END: &'static str;

    fn poll_output(&mut self) -> Option<Output>;
    /// The next instant [`Self::handle_timeout`] has work.
    fn poll_timeout(&self) -> Option<StdInstant>;
    fn handle_timeout(&mut self, now: StdInstant);
    /// Ended, with every output taken.
    fn is_ended(&self) -> bool;
    fn on_connected(&mut self, now: StdInstant, opened: Self::Opened);
    fn on_connect_failed(&mut self, error: String);
    /// 20 ms of the caller at 8 kHz.
    fn on_caller_audio(&mut self, now: StdInstant, pcm: &[i16]);
    /// What the call says besides audio and its hang-up.
    fn on_up(&mut self, now: StdInstant, up: Up);
    /// The caller hung up (or the call is gone).
    fn on_caller_hangup(&mut self, now: StdInstant);
    fn on_text(&mut self, now: StdInstant, text: &str);
    fn on_binary(&mut self, now: StdInstant);
    /// A ping or pong: the socket is alive.
    fn on_heard(&mut self, now: StdInstant);
    fn on_closed(&mut self, now: StdInstant, how: SocketClose);
    /// The driver is done: log the counters.
    fn finished(&self);
}

/// Opens the far end's socket (asking whatever must be asked first).
pub type Opening<O> = Pin<Box<dyn Future<Output = Result<(Box<Ws>, O), String>> + Send>>;

pub(crate) struct Driver<C: SocketCore> {
    core: C,
    /// Taken when the core says [`Output::Connect`].
    open: Option<Opening<C::Opened>>,
    connecting: Option<Opening<C::Opened>>,
    audio_rx: mpsc::Receiver<AudioFrame>,
    up_rx: mpsc::UnboundedReceiver<Up>,
    down_tx: mpsc::UnboundedSender<Down>,
    ready_tx: Option<ReadyTx>,
    socket: Option<Box<Ws>>,
    caller_gone: bool,
}

#[allow(clippy::large_enum_variant)] // caller audio is the common wake-up; boxing would allocate
enum Wake<O> {
    Caller(Option<Up>),
    Audio(Option<AudioFrame>),
    Socket(Option<Result<Message, tungstenite::Error>>),
    Connected(Result<(Box<Ws>, O), String>),
    Timer,
}

impl<C: SocketCore> Driver<C> {
    pub(crate) fn new(
        core: C,
        open: Opening<C::Opened>,
        ends: DriverEnds,
        ready_tx: ReadyTx,
    ) -> Driver<C> {
        Driver {
            core,
            open: Some(open),
            connecting: None,
            audio_rx: ends.audio_rx,
            up_rx: ends.up_rx,
            down_tx: ends.down_tx,
            ready_tx: Some(ready_tx),
            socket: None,
            caller_gone: false,
        }
    }

    pub(crate) async fn run(mut self) {
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
                    self.core.on_caller_hangup(now);
                }
                Wake::Caller(Some(up)) => self.core.on_up(now, up),
                Wake::Audio(Some(frame)) => self.core.on_caller_audio(now, frame.samples()),
                Wake::Socket(item) => self.on_socket(now, item),
                Wake::Connected(Ok((ws, opened))) => {
                    tracing::debug!(far_end = C::FAR_END, "socket open");
                    self.socket = Some(ws);
                    self.core.on_connected(now, opened);
                }
                Wake::Connected(Err(e)) => {
                    tracing::warn!(far_end = C::FAR_END, error = %e, "connection failed");
                    self.core.on_connect_failed(e);
                }
                Wake::Timer => self.core.handle_timeout(now),
            }
        }
        self.core.finished();
        if let Some(ws) = self.socket.take() {
            super::close_in_background(C::FAR_END, *ws);
        }
    }

    async fn next_wake(&mut self) -> Wake<C::Opened> {
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

    fn on_socket(&mut self, now: StdInstant, item: Option<Result<Message, tungstenite::Error>>) {
        match item {
            Some(Ok(Message::Text(text))) => self.core.on_text(now, text.as_str()),
            Some(Ok(Message::Binary(_))) => self.core.on_binary(now),
            other => {
                // Pings are answered by tungstenite itself; pongs answer our keep-alive.
                let Some(close) = SocketClose::from_read(other) else {
                    return self.core.on_heard(now);
                };
                tracing::info!(far_end = C::FAR_END, how = ?close, "socket closed");
                if let Some(ws) = self.socket.take() {
                    if matches!(close, SocketClose::Clean { .. }) {
                        // Finish the closing handshake (tungstenite queued our reply).
                        super::close_in_background(C::FAR_END, *ws);
                    }
                }
                self.core.on_closed(now, close);
            }
        }
    }

    async fn act(&mut self, out: Output) {
        match out {
            Output::Connect => self.connecting = self.open.take(),
            Output::Send(text) => self.send(Message::text(text)).await,
            Output::Queue(text) => {
                if let Some(ws) = self.socket.as_mut() {
                    let result = super::feed(ws, Message::text(text)).await;
                    self.check(result);
                }
            }
            Output::Flush => {
                if let Some(ws) = self.socket.as_mut() {
                    let result = super::flush(ws).await;
                    self.check(result);
                }
            }
            Output::Ping => self.send(Message::Ping(Default::default())).await,
            Output::Close => {
                self.connecting = None;
                if let Some(ws) = self.socket.take() {
                    super::close_in_background(C::FAR_END, *ws);
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
                    tracing::warn!(far_end = C::FAR_END, %reason, "could not start");
                    let _ = tx.send(Err(reason));
                } else {
                    if !self.caller_gone {
                        tracing::info!(far_end = C::FAR_END, %reason, "conversation ended");
                    }
                    let _ = self.down_tx.send(Down::End { reason, failed });
                }
            }
        }
    }

    /// Writes one message, and any queued before it.
    async fn send(&mut self, message: Message) {
        if let Some(ws) = self.socket.as_mut() {
            let result = super::send(ws, message).await;
            self.check(result);
        }
    }

    /// A failed or stalled write drops the socket.
    fn check(&mut self, result: Result<(), String>) {
        if let Err(error) = result {
            self.socket = None;
            self.core.on_closed(now(), SocketClose::Dropped { error });
        }
    }
}
