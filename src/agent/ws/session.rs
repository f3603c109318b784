//! A far end whose protocol is a sans-IO core over one WebSocket (Media Streams, OpenAI), run
//! wherever the call's media runs: the session owns the socket and the core, and the call's
//! polls drive both. Caller audio goes from the call to the core and onto the socket without a
//! channel or a second task to wake, which was most of these legs' cost (a driver task woken
//! 50 times a second per call). While the call sets up, its task polls the session and the
//! socket is tokio's; once answered the call joins a media reactor, which watches the socket
//! ([`AgentSession::watch`], [`super::tcp::WsTcp`]) and keeps the core's timer
//! ([`AgentSession::poll_timeout`]), so a far end's message wakes no tokio thread. A socket
//! done with while watched is kept open until the reactor lets go of it ([`Retired`]). The
//! playout queue is the same as the remote agents' ([`Playout`]), so clears, marks and the end
//! behave alike.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::{Sink, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{SocketClose, Ws, SEND_TIMEOUT};
use crate::agent::remote::{Down, Playout, Up};
use crate::agent::{
    AgentError, AgentOutput, AgentSession, AudioFrame, CallerEvent, ConnectFuture, Watch,
};
use crate::timer::now;

/// What a core asks of its session.
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
    /// Close the socket (normal closure), after what is already written.
    Close,
    /// The same, once the far end has answered with a text message containing this (waited
    /// for a second at most, in the background).
    CloseAfter(&'static str),
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
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn on_connected(&mut self, now: Instant, opened: Self::Opened);
    fn on_connect_failed(&mut self, error: String);
    /// 20 ms of the caller at 8 kHz.
    fn on_caller_audio(&mut self, now: Instant, pcm: &[i16]);
    /// What the call says besides audio and its hang-up, and what the playout reports.
    fn on_up(&mut self, now: Instant, up: Up);
    /// The caller hung up (or the call is gone): whatever the core still sends must be
    /// queued now, with a [`Output::Close`]; nothing is read after this.
    fn on_caller_hangup(&mut self, now: Instant);
    fn on_text(&mut self, now: Instant, text: &str);
    fn on_binary(&mut self, now: Instant);
    /// A ping or pong: the socket is alive.
    fn on_heard(&mut self, now: Instant);
    fn on_closed(&mut self, now: Instant, how: SocketClose);
    /// The conversation is over: log the counters.
    fn finished(&self);
}

/// Counts a far end's message that a core ignores (unreadable, unknown, binary): the first is
/// logged, then every 1000th, so a far end sending garbage costs no log line per message.
pub fn ignored(count: &mut u64, why: std::fmt::Arguments<'_>) {
    *count += 1;
    if *count % 1000 == 1 {
        tracing::warn!(ignored = *count, "{why}; ignored");
    }
}

/// Opens the far end's socket (asking whatever must be asked first).
pub type Opening<O> = Pin<Box<dyn Future<Output = Result<(Box<Ws>, O), String>> + Send>>;

/// Messages read in one poll at most, so a flooding far end cannot starve the call's RTP.
const MAX_READS_PER_POLL: usize = 32;

/// Starts one conversation: the returned future drives the core (opening the socket,
/// whatever handshake it has) until it says [`Output::Ready`], inside the call's task, and
/// yields the session then.
pub fn connect<C: SocketCore>(core: C, open: Opening<C::Opened>) -> ConnectFuture {
    let mut session = Box::new(SocketSession {
        core,
        playout: Playout::new(C::FAR_END),
        open: Some(open),
        connecting: None,
        socket: None,
        writes: VecDeque::new(),
        flush: false,
        write_waits_since: None,
        timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
        armed: None,
        watched: false,
        retired: Vec::new(),
        setup: Setup::Waiting,
        over: false,
    });
    Box::pin(async move {
        let ready = std::future::poll_fn(|cx| {
            session.drive(cx);
            match std::mem::replace(&mut session.setup, Setup::Answered) {
                Setup::Decided(result) => Poll::Ready(result),
                waiting => {
                    session.setup = waiting;
                    Poll::Pending
                }
            }
        })
        .await;
        match ready {
            Ok(()) => Ok(session as Box<dyn AgentSession>),
            // Dropping the session closes what is open.
            Err(reason) => Err(AgentError::Unreachable(reason)),
        }
    })
}

/// Where the call's setup stands.
enum Setup {
    /// The core has not said yet.
    Waiting,
    /// Ready, or refused with a reason: waiting for the connect future to take it.
    Decided(Result<(), String>),
    /// The call is answered (or the session is being dropped after a refusal).
    Answered,
}

pub struct SocketSession<C: SocketCore> {
    core: C,
    playout: Playout,
    /// Taken when the core says [`Output::Connect`].
    open: Option<Opening<C::Opened>>,
    connecting: Option<Opening<C::Opened>>,
    socket: Option<Box<Ws>>,
    /// Messages the socket has not taken yet, and whether a flush is owed.
    writes: VecDeque<Message>,
    flush: bool,
    /// A write waiting this long on the socket means it is dead ([`SEND_TIMEOUT`]).
    write_waits_since: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
    /// A media reactor watches the socket (and keeps the timer, through `poll_timeout`).
    watched: bool,
    /// Sockets done with while watched: closed once the reactor lets go of them.
    retired: Vec<Retired>,
    setup: Setup,
    /// The core has ended (its counters logged).
    over: bool,
}

impl<C: SocketCore> SocketSession<C> {
    /// Runs everything that is ready: the socket opening, reads, the core's timer, its
    /// outputs and the writes they make. Registers the call's waker with each.
    fn drive(&mut self, cx: &mut Context<'_>) {
        // Each pass either made progress or armed a timer in the future; a timer already
        // due means another pass (bounded: a core always moves its deadline forward).
        for _ in 0..4 {
            let now = now();
            if let Some(fut) = self.connecting.as_mut() {
                if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                    self.connecting = None;
                    match result {
                        Ok((ws, opened)) => {
                            self.socket = Some(ws);
                            self.core.on_connected(now, opened);
                        }
                        Err(e) => {
                            tracing::warn!(far_end = C::FAR_END, error = %e, "connection failed");
                            self.core.on_connect_failed(e);
                        }
                    }
                }
            }
            self.read(cx, now);
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.take_outputs(now);
            self.write(cx, now);
            if !self.arm(cx) {
                return;
            }
        }
        // Still due after every pass (a core that did not move its deadline): the timer has
        // fired without registering the waker, so ask to be polled again.
        cx.waker().wake_by_ref();
    }

    fn read(&mut self, cx: &mut Context<'_>, now: Instant) {
        for _ in 0..MAX_READS_PER_POLL {
            let Some(ws) = self.socket.as_mut() else {
                return;
            };
            let Poll::Ready(item) = ws.poll_next_unpin(cx) else {
                return;
            };
            match item {
                Some(Ok(Message::Text(text))) => self.core.on_text(now, text.as_str()),
                Some(Ok(Message::Binary(_))) => self.core.on_binary(now),
                other => {
                    // Pings are answered by tungstenite itself; pongs answer our keep-alive.
                    let Some(close) = SocketClose::from_read(other) else {
                        self.core.on_heard(now);
                        continue;
                    };
                    tracing::info!(far_end = C::FAR_END, how = ?close, "socket closed");
                    if let Some(ws) = self.socket.take() {
                        // Finish the closing handshake (tungstenite queued our reply).
                        let polite = matches!(close, SocketClose::Clean { .. });
                        self.release(ws, polite.then(Vec::new), None);
                    }
                    self.writes.clear();
                    self.core.on_closed(now, close);
                }
            }
        }
        // More is waiting: come back on the next poll rather than starve the call.
        cx.waker().wake_by_ref();
    }

    fn take_outputs(&mut self, now: Instant) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Connect => self.connecting = self.open.take(),
                Output::Send(text) => {
                    self.writes.push_back(Message::text(text));
                    self.flush = true;
                }
                Output::Queue(text) => self.writes.push_back(Message::text(text)),
                Output::Flush => self.flush = true,
                Output::Ping => {
                    self.writes.push_back(Message::Ping(Default::default()));
                    self.flush = true;
                }
                Output::Close => self.close(None),
                Output::CloseAfter(reply) => self.close(Some(reply)),
                Output::Down(d) => {
                    let core = &mut self.core;
                    self.playout.down(d, &mut |up| core.on_up(now, up));
                }
                Output::Ready => {
                    if let Setup::Waiting = self.setup {
                        self.setup = Setup::Decided(Ok(()));
                    }
                }
                Output::End { reason, failed } => {
                    if !self.over {
                        self.over = true;
                        self.core.finished();
                    }
                    if let Setup::Waiting = self.setup {
                        tracing::warn!(far_end = C::FAR_END, %reason, "could not start");
                        self.setup = Setup::Decided(Err(reason));
                    } else {
                        self.playout.down(Down::End { reason, failed }, &mut |_| {});
                    }
                }
            }
        }
    }

    /// Hands what is queued to the socket and flushes when owed; a socket that errors or
    /// stalls is dropped and the core told.
    fn write(&mut self, cx: &mut Context<'_>, now: Instant) {
        let Some(ws) = self.socket.as_mut() else {
            self.writes.clear();
            self.flush = false;
            return;
        };
        let mut ws = Pin::new(&mut **ws);
        let mut result = Ok(true);
        while let Some(msg) = self.writes.pop_front() {
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Err(e) = ws.as_mut().start_send(msg) {
                        result = Err(e);
                        break;
                    }
                }
                Poll::Ready(Err(e)) => {
                    result = Err(e);
                    break;
                }
                Poll::Pending => {
                    self.writes.push_front(msg);
                    result = Ok(false);
                    break;
                }
            }
        }
        if matches!(result, Ok(true)) && self.flush {
            result = match ws.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.flush = false;
                    Ok(true)
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(false),
            };
        }
        match result {
            Ok(true) => self.write_waits_since = None,
            Ok(false) => {
                let since = *self.write_waits_since.get_or_insert(now);
                if now >= since + SEND_TIMEOUT {
                    let error = format!("write stalled for {} s", SEND_TIMEOUT.as_secs());
                    self.dropped(now, error);
                }
            }
            Err(e) => self.dropped(now, e.to_string()),
        }
    }

    fn dropped(&mut self, now: Instant, error: String) {
        if let Some(ws) = self.socket.take() {
            self.release(ws, None, None);
        }
        self.writes.clear();
        self.write_waits_since = None;
        self.core.on_closed(now, SocketClose::Dropped { error });
        self.take_outputs(now);
    }

    /// Closes the socket politely once what is queued has been written (in the background:
    /// the call does not wait for the far end's closing handshake).
    fn close(&mut self, reply: Option<&'static str>) {
        self.open = None;
        self.connecting = None;
        let pending: Vec<Message> = self.writes.drain(..).collect();
        self.flush = false;
        if let Some(ws) = self.socket.take() {
            self.release(ws, Some(pending), reply);
        }
    }

    /// Done with a socket: closed politely (`pending` written first, `reply` awaited) or
    /// just dropped. One a reactor watches waits until it no longer does.
    fn release(&mut self, ws: Box<Ws>, pending: Option<Vec<Message>>, reply: Option<&'static str>) {
        let r = Retired { ws, pending, reply };
        if self.watched {
            self.retired.push(r);
        } else {
            r.finish(C::FAR_END);
        }
    }

    /// Closes (or drops) the sockets kept while a reactor watched them; it no longer does.
    fn finish_retired(&mut self) {
        for r in std::mem::take(&mut self.retired) {
            r.finish(C::FAR_END);
        }
    }

    /// The core's next deadline, or a stalled write's.
    fn next_deadline(&self) -> Option<Instant> {
        let next = self.core.poll_timeout();
        match self.write_waits_since {
            Some(since) => {
                let stall = since + SEND_TIMEOUT;
                Some(next.map_or(stall, |t| t.min(stall)))
            }
            None => next,
        }
    }

    /// Arms the timer for [`Self::next_deadline`]; true when it is already due. On a reactor
    /// the call polls at that deadline itself ([`AgentSession::poll_timeout`]), so no tokio
    /// timer has to wake it from another thread.
    fn arm(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.next_deadline() else {
            self.armed = None;
            return false;
        };
        if self.watched {
            return at <= now();
        }
        if self.armed != Some(at) {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
            self.armed = Some(at);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// The call is over for the far end: the core says its last (`stop`, `session.close`)
    /// and the socket closes after it.
    fn hang_up(&mut self) {
        if self.socket.is_none() && self.connecting.is_none() {
            return;
        }
        let now = now();
        self.core.on_caller_hangup(now);
        self.take_outputs(now);
        // A core always closes on hang-up; this is for one that forgot.
        self.close(None);
    }
}

impl<C: SocketCore> AgentSession for SocketSession<C> {
    fn send_audio(&mut self, frame: &AudioFrame) {
        // Written at the call's next poll, which follows in the same pass.
        self.core.on_caller_audio(now(), frame.samples());
    }

    fn send_event(&mut self, event: CallerEvent) {
        match event {
            CallerEvent::Hangup => self.hang_up(),
            other => self.core.on_up(now(), Up::Caller(other)),
        }
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        self.drive(cx);
        let now = now();
        let core = &mut self.core;
        let out = self.playout.poll(want_audio, &mut |up| core.on_up(now, up));
        // A played mark may have made the core write.
        self.take_outputs(now);
        self.write(cx, now);
        match out {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }

    fn audio_queued(&self) -> bool {
        self.playout.audio_queued()
    }

    fn watch(&mut self, why: Watch) -> Vec<std::os::fd::RawFd> {
        // What was given before is no longer watched: sockets done with can go now.
        self.finish_retired();
        self.watched = false;
        let Some(ws) = self.socket.as_mut().filter(|_| why != Watch::Leave) else {
            return Vec::new();
        };
        let Some(tcp) = super::tcp_of(ws) else {
            return Vec::new();
        };
        match tcp.watch() {
            Ok(fd) => {
                self.watched = true;
                vec![fd]
            }
            Err(e) => {
                // Its reads now fail, and the core learns the socket dropped.
                tracing::warn!(far_end = C::FAR_END, error = %e, "socket cannot leave the runtime");
                Vec::new()
            }
        }
    }

    fn watch_changed(&self) -> bool {
        !self.retired.is_empty()
    }

    fn on_readable(&mut self, _index: usize) {
        if let Some(tcp) = self.socket.as_mut().and_then(|ws| super::tcp_of(ws)) {
            tcp.readable();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline()
    }
}

impl<C: SocketCore> Drop for SocketSession<C> {
    // A call that ends (or a setup that is abandoned) without a hang-up still closes politely.
    fn drop(&mut self) {
        self.hang_up();
        // Dropped with the session, a reactor cannot be watching these any more.
        self.finish_retired();
    }
}

/// A socket the session is done with, kept open while a reactor may still watch it.
struct Retired {
    ws: Box<Ws>,
    /// To write before a polite close; `None` drops the socket.
    pending: Option<Vec<Message>>,
    reply: Option<&'static str>,
}

impl Retired {
    fn finish(self, far_end: &'static str) {
        if let Some(pending) = self.pending {
            super::close_in_background(far_end, *self.ws, pending, self.reply);
        }
    }
}
