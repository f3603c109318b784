//! One call's Media Stream, sans-IO: the gateway plays Twilio's side towards a bot. Caller
//! audio goes up as mu-law `media` every 20 ms (silence when the caller sends none, so the
//! bot's clock keeps real time); the bot's audio comes down as bytes of any length, cut into
//! 20 ms frames for the call's paced playout, its marks kept in their place in that audio and
//! echoed once it has played, a `clear` dropping the lot. Driven by `driver`, tested with a
//! fake clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::Engine;

use super::protocol::{self, BotMessage, StreamIds};
use crate::agent::reframe::{Reframer, FRAME_BYTES};
use crate::agent::remote::{Down, Up};
pub use crate::agent::ws::session::{self, Output, SocketCore};
use crate::agent::ws::{SocketClose, PING_EVERY, SILENT_LIMIT};
use crate::agent::{AgentEvent, CallerEvent};
use crate::codec::g711::{self, Law};

const FRAME: Duration = Duration::from_millis(20);
/// With no caller audio for this long, silence goes up in its place, frame by frame.
const FILL_AFTER: Duration = Duration::from_millis(60);
/// At most this many silence frames catch up at once (after a stall, time is not replayed).
const MAX_FILL: u32 = 5;

/// Settings for one call's stream.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub ids: StreamIds,
    /// `customParameters` of the `start` message.
    pub parameters: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// End the call when the bot closes the stream (otherwise the caller stays on, in silence).
    pub hangup_on_close: bool,
    /// Caller frames per socket write (1..=5): each is its own `media` message, as Twilio
    /// sends them, but a batch goes out in one write, at the cost of that much latency.
    pub batch_frames: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting {
        give_up_at: Instant,
    },
    Open,
    /// The bot closed the stream and `hangup_on_close` is off: the caller stays on.
    Detached,
    Ended,
}

/// Counters, logged when the stream ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub media_sent: u64,
    pub silence_sent: u64,
    pub frames_received: u64,
    pub marks: u64,
    pub clears: u64,
    pub ignored: u64,
}

pub struct StreamCore {
    cfg: CoreConfig,
    state: State,
    out: VecDeque<Output>,
    started_at: Instant,
    /// The last `sequenceNumber` used (`start` is 1).
    seq: u64,
    /// `media` messages sent.
    chunk: u64,
    /// When silence goes up if no caller frame comes first.
    fill_at: Instant,
    /// The bot's audio, cut into frames.
    reframer: Reframer,
    heard_at: Instant,
    ping_at: Instant,
    decoded: Vec<u8>,
    /// Media messages queued and not flushed yet, and when the first of them was.
    unflushed: usize,
    flush_by: Option<Instant>,
    stats: StreamStats,
    wrong_sid_logged: bool,
}

impl StreamCore {
    pub fn new(now: Instant, cfg: CoreConfig) -> StreamCore {
        let mut out = VecDeque::new();
        out.push_back(Output::Connect);
        StreamCore {
            state: State::Connecting {
                give_up_at: now + cfg.connect_timeout,
            },
            cfg,
            out,
            started_at: now,
            seq: 0,
            chunk: 0,
            fill_at: now,
            reframer: Reframer::new(Law::Mu, now),
            heard_at: now,
            ping_at: now,
            decoded: Vec::new(),
            unflushed: 0,
            flush_by: None,
            stats: StreamStats::default(),
            wrong_sid_logged: false,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended && self.out.is_empty()
    }

    pub fn stats(&self) -> StreamStats {
        StreamStats {
            frames_received: self.reframer.frames(),
            ..self.stats
        }
    }

    pub fn on_caller_dtmf(&mut self, digit: char) {
        if self.state != State::Open {
            return;
        }
        self.flushed();
        self.seq += 1;
        self.out
            .push_back(Output::Send(protocol::dtmf(&self.cfg.ids, self.seq, digit)));
    }

    /// The audio before the bot's mark `name` has played: echo it.
    pub fn on_played(&mut self, name: &str) {
        if self.state != State::Open {
            return;
        }
        self.flushed();
        self.seq += 1;
        self.out
            .push_back(Output::Send(protocol::mark(&self.cfg.ids, self.seq, name)));
    }

    fn end(&mut self, reason: String, failed: bool) {
        if self.state != State::Ended {
            self.state = State::Ended;
            self.out.push_back(Output::End { reason, failed });
        }
    }

    fn send_media(&mut self, now: Instant, mulaw: &[u8]) {
        self.seq += 1;
        self.chunk += 1;
        let ms = now.saturating_duration_since(self.started_at).as_millis() as u64;
        let mut text = String::with_capacity(360);
        protocol::media(&mut text, &self.cfg.ids, self.seq, self.chunk, ms, mulaw);
        self.stats.media_sent += 1;
        self.unflushed += 1;
        if self.unflushed >= self.cfg.batch_frames {
            self.flushed();
            self.out.push_back(Output::Send(text));
        } else {
            // Held one batch's time at most, then flushed by `handle_timeout`.
            let batch = FRAME * self.cfg.batch_frames as u32;
            self.flush_by.get_or_insert(now + batch);
            self.out.push_back(Output::Queue(text));
        }
    }

    /// Any `Send` flushes what was queued before it.
    fn flushed(&mut self) {
        self.unflushed = 0;
        self.flush_by = None;
    }

    fn on_bot_audio(&mut self, now: Instant, payload: &str) {
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(payload, &mut decoded)
        {
            self.decoded = decoded;
            self.ignore(format_args!("stream bot media that is not base64: {e}"));
            return;
        }
        self.reframer.push(now, &decoded, &mut self.out);
        self.decoded = decoded;
    }

    fn check_sid(&mut self, sid: Option<&str>) {
        if let Some(sid) = sid {
            if sid != self.cfg.ids.stream_sid && !self.wrong_sid_logged {
                self.wrong_sid_logged = true;
                tracing::warn!(got = sid, ours = %self.cfg.ids.stream_sid,
                    "the stream bot names another streamSid; its messages are taken anyway");
            }
        }
    }

    fn ignore(&mut self, why: std::fmt::Arguments<'_>) {
        session::ignored(&mut self.stats.ignored, why);
    }
}

impl SocketCore for StreamCore {
    type Opened = Vec<(String, String)>;
    const FAR_END: &'static str = "stream bot";

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant [`Self::handle_timeout`] has work.
    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { give_up_at } => Some(give_up_at),
            State::Open => {
                let mut at = self
                    .ping_at
                    .min(self.heard_at + SILENT_LIMIT)
                    .min(self.fill_at);
                if let Some(t) = self.reframer.poll_timeout() {
                    at = at.min(t);
                }
                if let Some(t) = self.flush_by {
                    at = at.min(t);
                }
                Some(at)
            }
            State::Detached | State::Ended => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Connecting { give_up_at } if now >= give_up_at => {
                let secs = self.cfg.connect_timeout.as_secs_f64();
                self.out.push_back(Output::Close);
                self.end(
                    format!("the stream bot did not accept the connection within {secs} s"),
                    true,
                );
            }
            State::Open => {
                if now >= self.heard_at + SILENT_LIMIT {
                    let error = format!("no answer to pings for {} s", SILENT_LIMIT.as_secs_f64());
                    self.out.push_back(Output::Close);
                    self.on_closed(now, SocketClose::Dropped { error });
                    return;
                }
                if now >= self.ping_at {
                    self.ping_at = now + PING_EVERY;
                    self.out.push_back(Output::Ping);
                }
                // A batch the caller stopped filling goes out anyway.
                if self.flush_by.is_some_and(|t| now >= t) {
                    self.flushed();
                    self.out.push_back(Output::Flush);
                }
                self.reframer.handle_timeout(now, &mut self.out);
                let mut filled = 0;
                while now >= self.fill_at && filled < MAX_FILL {
                    self.send_media(now, &[Law::Mu.silence(); FRAME_BYTES]);
                    self.stats.silence_sent += 1;
                    self.fill_at += FRAME;
                    filled += 1;
                }
                if now >= self.fill_at {
                    self.fill_at = now + FRAME;
                }
            }
            _ => {}
        }
    }

    /// The socket is open; `parameters` (a TwiML answer's `<Parameter>`s) join the
    /// configured ones, winning over any of the same name.
    fn on_connected(&mut self, now: Instant, parameters: Vec<(String, String)>) {
        if !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        for (k, v) in parameters {
            self.cfg.parameters.retain(|(name, _)| *name != k);
            self.cfg.parameters.push((k, v));
        }
        self.state = State::Open;
        self.started_at = now;
        self.heard_at = now;
        self.ping_at = now + PING_EVERY;
        self.fill_at = now + FILL_AFTER;
        self.reframer = Reframer::new(Law::Mu, now);
        self.out.push_back(Output::Send(protocol::connected()));
        self.seq = 1;
        self.out.push_back(Output::Send(protocol::start(
            &self.cfg.ids,
            &self.cfg.parameters,
        )));
        // For `/calls/{id}`: what to look for in the bot's own logs.
        let ids = &self.cfg.ids;
        self.out
            .push_back(Output::Down(Down::Event(AgentEvent::Detail {
                key: "stream",
                value: serde_json::json!({
                    "stream_sid": ids.stream_sid,
                    "call_sid": ids.call_sid,
                    "account_sid": ids.account_sid,
                }),
            })));
        self.out.push_back(Output::Ready);
    }

    fn on_connect_failed(&mut self, error: String) {
        if matches!(self.state, State::Connecting { .. }) {
            self.end(error, true);
        }
    }

    /// 20 ms of the caller at 8 kHz.
    fn on_caller_audio(&mut self, now: Instant, pcm: &[i16]) {
        if self.state != State::Open {
            return;
        }
        let mut mulaw = [Law::Mu.silence(); FRAME_BYTES];
        let n = pcm.len().min(FRAME_BYTES);
        g711::encode(Law::Mu, &pcm[..n], &mut mulaw[..n]);
        self.send_media(now, &mulaw);
        self.fill_at = now + FILL_AFTER;
    }

    /// The caller hung up: `stop`, then close.
    fn on_caller_hangup(&mut self, _now: Instant) {
        match self.state {
            State::Open => {
                self.flushed();
                self.seq += 1;
                self.out
                    .push_back(Output::Send(protocol::stop(&self.cfg.ids, self.seq)));
                self.out.push_back(Output::Close);
            }
            State::Connecting { .. } => self.out.push_back(Output::Close),
            State::Detached | State::Ended => {}
        }
        self.end("the caller hung up".into(), false);
    }

    /// Anything from the socket proves it alive.
    fn on_heard(&mut self, now: Instant) {
        self.heard_at = now;
    }

    /// A text message from the bot.
    fn on_text(&mut self, now: Instant, text: &str) {
        self.heard_at = now;
        if self.state != State::Open {
            return;
        }
        let msg = match BotMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                self.ignore(format_args!("unreadable message from the stream bot: {e}"));
                return;
            }
        };
        match msg {
            BotMessage::Media {
                stream_sid,
                payload,
            } => {
                self.check_sid(stream_sid.as_deref());
                self.on_bot_audio(now, &payload);
            }
            BotMessage::Mark { stream_sid, name } => {
                self.check_sid(stream_sid.as_deref());
                self.stats.marks += 1;
                self.reframer.mark(name, &mut self.out);
            }
            BotMessage::Clear { stream_sid } => {
                self.check_sid(stream_sid.as_deref());
                self.stats.clears += 1;
                self.reframer.clear(now, &mut self.out);
            }
            BotMessage::Other { event } => {
                self.ignore(format_args!(
                    "stream bot event {event:?} is not one Twilio takes"
                ));
            }
        }
    }

    /// A binary frame: Twilio refuses them (warning 31950); so do we, without ending the call.
    fn on_binary(&mut self, now: Instant) {
        self.heard_at = now;
        self.ignore(format_args!("binary message from the stream bot"));
    }

    fn on_closed(&mut self, _now: Instant, how: SocketClose) {
        match self.state {
            State::Open => {}
            State::Connecting { .. } => {
                let reason = format!("the stream bot closed the connection at once: {how:?}");
                return self.end(reason, true);
            }
            State::Detached | State::Ended => return,
        }
        let (reason, failed) = match how {
            SocketClose::Clean { code, reason } if reason.is_empty() => {
                (format!("the bot closed the stream (code {code})"), false)
            }
            SocketClose::Clean { code, reason } => (
                format!("the bot closed the stream (code {code}: {reason})"),
                false,
            ),
            SocketClose::Dropped { error } => (format!("stream connection lost: {error}"), true),
        };
        if self.cfg.hangup_on_close {
            self.end(reason, failed);
        } else {
            tracing::info!(%reason, "the stream is over; the caller stays on (hangup_on_close = false)");
            self.state = State::Detached;
        }
    }

    fn on_up(&mut self, _now: Instant, up: Up) {
        match up {
            Up::Caller(CallerEvent::Dtmf(d)) => self.on_caller_dtmf(d),
            Up::Played(name) => self.on_played(&name),
            // The hang-up comes through `on_caller_hangup`.
            Up::Caller(CallerEvent::Answered | CallerEvent::Hangup) | Up::Cleared { .. } => {}
        }
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

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
