//! One call's conversation with OpenAI, sans-IO, for both APIs: the session is configured
//! (Realtime `session.update`, GPT-Live `session.start`) before the call is answered; the
//! caller's audio goes up in the law the caller negotiated, batched; the model's deltas come
//! down cut into 20 ms frames; a barge-in clears the playout and tells the model how much of
//! its reply the caller really heard; the gateway's tools run here; transcripts become the
//! call's transcript lines. Driven by the shared WebSocket driver, tested with a fake clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

use super::protocol::{self, ServerEvent};
use crate::agent::reframe::{Reframer, FRAME_BYTES};
use crate::agent::remote::{Down, Up};
use crate::agent::ws::session::{self, Output, SocketCore};
use crate::agent::ws::{SocketClose, PING_EVERY, SILENT_LIMIT};
use crate::agent::{AgentEvent, CallerEvent, Role};
use crate::codec::g711::{self, Law};
use crate::config::{OpenaiApi, OpenaiSpec, Tool};

/// GPT-Live has no "response done": after `end_call`, the call ends once the model has sent
/// no audio for this long (its goodbye is over) and that audio has played.
const QUIET_BEFORE_END: Duration = Duration::from_secs(1);
/// Assistant items remembered for truncation; older ones have long finished playing.
const MAX_ITEMS: usize = 16;
/// Keys one `send_dtmf` call may press.
const MAX_DTMF: usize = 32;
/// A GPT-Live transcript line is passed on at this length even mid-turn...
const MAX_LINE: usize = 2000;
/// ...or when no more of it has come for this long (GPT-Live marks no end of turn).
const LINE_GAP: Duration = Duration::from_secs(1);
/// Error events logged in full; after these, one in a hundred.
const LOGGED_ERRORS: u64 = 10;

/// Counters, logged when the conversation ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenaiStats {
    pub appends: u64,
    pub deltas: u64,
    pub frames_down: u64,
    /// Deltas of a reply the caller interrupted, dropped.
    pub deltas_dropped: u64,
    pub barge_ins: u64,
    pub truncations: u64,
    pub tool_calls: u64,
    pub errors: u64,
    pub ignored: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The socket is opening.
    Connecting {
        give_up_at: Instant,
    },
    /// Open; the session is being configured. The call rings meanwhile.
    Configuring {
        give_up_at: Instant,
    },
    Open,
    Ended,
}

/// An assistant audio item handed down, where it starts in the reframer's byte positions.
#[derive(Debug)]
struct PlayedItem {
    id: String,
    start: u64,
    bytes: u64,
}

pub struct OpenaiCore {
    spec: Arc<OpenaiSpec>,
    law: Law,
    live: bool,
    state: State,
    out: VecDeque<Output>,
    heard_at: Instant,
    ping_at: Instant,
    reframer: Reframer,
    /// Caller audio not sent yet, and how many frames make a batch.
    batch: Vec<u8>,
    batch_frames: usize,
    decoded: Vec<u8>,
    /// Realtime: assistant items handed down since the last barge-in, oldest first.
    items: VecDeque<PlayedItem>,
    /// The response whose audio came last, and the one the caller interrupted (its late
    /// deltas are dropped).
    last_response: Option<String>,
    muted_response: Option<String>,
    /// A clear was asked for; the truncation waits for what the call says was heard.
    awaiting_cleared: bool,
    response_active: bool,
    /// A `response.create` waits for the active response to finish.
    respond_after: bool,
    /// Realtime tool results (call id, output) sent when the response that asked is done.
    tool_outputs: Vec<(String, String)>,
    /// `end_call` was called: Realtime ends when its response is done, GPT-Live when quiet.
    ending: bool,
    model_audio_at: Instant,
    /// GPT-Live transcript lines being built from deltas.
    user_line: String,
    assistant_line: String,
    line_at: Instant,
    stats: OpenaiStats,
}

impl OpenaiCore {
    pub fn new(now: Instant, spec: Arc<OpenaiSpec>, law: Law) -> OpenaiCore {
        let mut out = VecDeque::new();
        out.push_back(Output::Connect);
        let batch_frames = (spec.audio_batch_ms / 20).clamp(1, 5) as usize;
        OpenaiCore {
            live: spec.api == OpenaiApi::Live,
            state: State::Connecting {
                give_up_at: now + spec.connect_timeout,
            },
            spec,
            law,
            out,
            heard_at: now,
            ping_at: now,
            reframer: Reframer::new(law, now),
            batch: Vec::with_capacity(batch_frames * FRAME_BYTES),
            batch_frames,
            decoded: Vec::new(),
            items: VecDeque::new(),
            last_response: None,
            muted_response: None,
            awaiting_cleared: false,
            response_active: false,
            respond_after: false,
            tool_outputs: Vec::new(),
            ending: false,
            model_audio_at: now,
            user_line: String::new(),
            assistant_line: String::new(),
            line_at: now,
            stats: OpenaiStats::default(),
        }
    }

    pub fn stats(&self) -> OpenaiStats {
        OpenaiStats {
            frames_down: self.reframer.frames(),
            ..self.stats
        }
    }

    fn keepalive_at(&self) -> Instant {
        self.ping_at.min(self.heard_at + SILENT_LIMIT)
    }

    /// The caller pressed a key: the model learns of it as text (neither API carries DTMF
    /// over WebSocket) and, on Realtime, answers it.
    fn on_caller_dtmf(&mut self, digit: char) {
        if self.state != State::Open {
            return;
        }
        let text = protocol::dtmf_text(digit);
        if self.live {
            self.send(protocol::instructions_append(&text));
        } else {
            self.send(protocol::user_text(&text));
            self.respond();
        }
    }

    fn on_session_ready(&mut self, event: &ServerEvent<'_>) {
        if !matches!(self.state, State::Configuring { .. }) {
            return;
        }
        self.state = State::Open;
        let session = event.session.as_ref();
        let id = session.and_then(|s| s.id.clone());
        tracing::info!(session_id = id.as_deref().unwrap_or(""), model = %self.spec.model,
            "OpenAI session ready: answering");
        self.detail(
            "openai",
            serde_json::json!({
                "api": if self.live { "live" } else { "realtime" },
                "model": session.and_then(|s| s.model.clone()).unwrap_or_else(|| self.spec.model.clone()),
                "session_id": id,
                "format": if self.law == Law::Mu { "audio/pcmu" } else { "audio/pcma" },
            }),
        );
        self.out.push_back(Output::Ready);
    }

    fn on_audio(&mut self, now: Instant, event: &ServerEvent<'_>) {
        if self.state != State::Open {
            return;
        }
        self.stats.deltas += 1;
        if let (Some(muted), Some(id)) = (&self.muted_response, &event.response_id) {
            if **muted == **id {
                self.stats.deltas_dropped += 1;
                return;
            }
        }
        let Some(delta) = event.delta.as_deref() else {
            return self.ignore(format_args!("an audio delta without audio"));
        };
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(delta, &mut decoded) {
            self.decoded = decoded;
            return self.ignore(format_args!("an audio delta that is not base64: {e}"));
        }
        if let Some(id) = event.response_id.as_deref() {
            if self.last_response.as_deref() != Some(id) {
                self.last_response = Some(id.to_string());
            }
        }
        if let Some(item_id) = event.item_id.as_deref() {
            match self.items.back_mut() {
                Some(item) if item.id == item_id => item.bytes += decoded.len() as u64,
                _ => {
                    if self.items.len() == MAX_ITEMS {
                        self.items.pop_front();
                    }
                    self.items.push_back(PlayedItem {
                        id: item_id.to_string(),
                        start: self.reframer.position(),
                        bytes: decoded.len() as u64,
                    });
                }
            }
        }
        self.model_audio_at = now;
        self.reframer.push(now, &decoded, &mut self.out);
        self.decoded = decoded;
    }

    /// Realtime's voice activity detection heard the caller: stop the reply now. What was
    /// heard of it is known once the call has cleared its queue ([`Up::Cleared`]).
    fn on_speech_started(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.flush_lines();
        if self.items.is_empty() {
            return;
        }
        self.stats.barge_ins += 1;
        // Deltas of the interrupted reply may still be on their way.
        self.muted_response = self.last_response.clone();
        self.reframer.clear(now, &mut self.out);
        self.awaiting_cleared = true;
    }

    /// The call's queue was cleared with frames up to `heard` played: every assistant item
    /// the caller did not hear to its end is truncated where they stopped hearing it.
    fn on_cleared(&mut self, heard: u64) {
        if !std::mem::take(&mut self.awaiting_cleared) || self.state != State::Open {
            return;
        }
        let heard_bytes = heard * FRAME_BYTES as u64;
        for item in std::mem::take(&mut self.items) {
            if heard_bytes >= item.start + item.bytes {
                continue;
            }
            let played = heard_bytes.saturating_sub(item.start).min(item.bytes);
            // G.711 is 8 bytes a millisecond.
            let audio_end_ms = played / 8;
            tracing::info!(item_id = %item.id, audio_end_ms, "barge-in: the reply is truncated where the caller stopped hearing it");
            self.stats.truncations += 1;
            self.send(protocol::truncate(&item.id, audio_end_ms));
        }
    }

    fn on_response_done(&mut self, event: &ServerEvent<'_>) {
        self.response_active = false;
        if let Some(r) = &event.response {
            match r.status.as_deref() {
                Some("failed") | Some("incomplete") => {
                    tracing::warn!(status = r.status.as_deref().unwrap_or(""),
                        details = %r.status_details.clone().unwrap_or_default(),
                        "OpenAI's response did not complete");
                }
                _ => {}
            }
        }
        if self.ending {
            return self.hang_up();
        }
        let outputs = std::mem::take(&mut self.tool_outputs);
        for (call_id, output) in &outputs {
            self.send(protocol::function_output(false, call_id, output));
        }
        if !outputs.is_empty() || std::mem::take(&mut self.respond_after) {
            self.respond();
        }
    }

    /// Asks for a response now, or once the active one is done (Realtime refuses a second).
    fn respond(&mut self) {
        if self.response_active {
            self.respond_after = true;
        } else {
            self.response_active = true;
            self.send(protocol::response_create());
        }
    }

    /// The model called one of the gateway's tools.
    fn on_tool_call(&mut self, now: Instant, call_id: &str, name: &str, arguments: &str) {
        if self.state != State::Open || self.ending {
            return;
        }
        self.stats.tool_calls += 1;
        let tool = Tool::ALL
            .into_iter()
            .find(|t| t.name() == name && self.spec.tools.contains(t));
        tracing::info!(tool = name, arguments, "OpenAI called a tool");
        let output = match tool {
            Some(Tool::EndCall) => {
                // Nothing more is asked of the model: its goodbye plays out, then BYE.
                self.ending = true;
                self.model_audio_at = self.model_audio_at.max(now);
                return;
            }
            Some(Tool::SendDtmf) => {
                let digits = serde_json::from_str::<serde_json::Value>(arguments)
                    .ok()
                    .and_then(|v| v["digits"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let keys: Vec<char> = digits
                    .chars()
                    .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
                    .take(MAX_DTMF)
                    .collect();
                for &key in &keys {
                    self.out
                        .push_back(Output::Down(Down::Event(AgentEvent::Dtmf(key))));
                }
                match keys.is_empty() {
                    true => "error: no keys in `digits` (use 0-9, * and #)".to_string(),
                    false => format!("sent {}", keys.iter().collect::<String>()),
                }
            }
            None => format!("error: there is no tool named {name:?}"),
        };
        if self.live {
            self.send(protocol::function_output(true, call_id, &output));
            self.send(protocol::response_create());
        } else {
            self.tool_outputs.push((call_id.to_string(), output));
        }
    }

    /// GPT-Live transcripts come as deltas with no end of turn: a line is complete when the
    /// other side starts speaking, after a second without more, or when the call ends. A caller speaking over audio still
    /// playing is GPT-Live's barge-in: the model stops on its own, the gateway drops what
    /// it queued.
    fn on_live_transcript(&mut self, now: Instant, role: Role, event: &ServerEvent<'_>) {
        let Some(delta) = event.delta.as_deref() else {
            return;
        };
        if role == Role::User && !delta.trim().is_empty() && self.reframer.playing(now) {
            self.stats.barge_ins += 1;
            tracing::debug!("the caller speaks over the reply: playout cleared");
            self.reframer.clear(now, &mut self.out);
        }
        self.line_at = now;
        let (line, other) = match role {
            Role::User => (&mut self.user_line, &mut self.assistant_line),
            Role::Assistant => (&mut self.assistant_line, &mut self.user_line),
        };
        let finished_other = std::mem::take(other);
        line.push_str(delta);
        let full = (line.len() >= MAX_LINE).then(|| std::mem::take(line));
        let other_role = match role {
            Role::User => Role::Assistant,
            Role::Assistant => Role::User,
        };
        self.transcript(other_role, finished_other.trim().to_string());
        if let Some(full) = full {
            self.transcript(role, full.trim().to_string());
        }
    }

    fn flush_lines(&mut self) {
        let user = std::mem::take(&mut self.user_line);
        let assistant = std::mem::take(&mut self.assistant_line);
        self.transcript(Role::User, user.trim().to_string());
        self.transcript(Role::Assistant, assistant.trim().to_string());
    }

    fn transcript(&mut self, role: Role, text: String) {
        if text.is_empty() {
            return;
        }
        self.out
            .push_back(Output::Down(Down::Event(AgentEvent::Transcript {
                role,
                text,
                emotions: Vec::new(),
            })));
    }

    /// An `error` event: before the session is ready the call is refused with it; later it
    /// ends the call only when the session cannot go on.
    fn on_error(&mut self, event: &ServerEvent<'_>) {
        let error = event.error.as_ref();
        let code = error.and_then(|e| e.code.as_deref()).unwrap_or("");
        let kind = error.and_then(|e| e.kind.as_deref()).unwrap_or("");
        let message = error.and_then(|e| e.message.as_deref()).unwrap_or("");
        self.stats.errors += 1;
        if matches!(self.state, State::Configuring { .. }) {
            self.out.push_back(Output::Close);
            return self.end(
                format!("OpenAI refused the session: {code} {message}"),
                true,
            );
        }
        // The session cannot go on after these; the rest concern one request.
        let fatal = matches!(
            code,
            "session_expired" | "insufficient_quota" | "invalid_api_key" | "session_closed"
        );
        if fatal {
            tracing::warn!(code, kind, message, "OpenAI error: the session is over");
            self.out.push_back(Output::Close);
            self.flush_lines();
            return self.end(format!("OpenAI error {code}: {message}"), true);
        }
        if self.stats.errors <= LOGGED_ERRORS || self.stats.errors.is_multiple_of(100) {
            tracing::warn!(
                code,
                kind,
                message,
                errors = self.stats.errors,
                "OpenAI error"
            );
        }
    }

    /// GPT-Live ended the session.
    fn on_session_closed(&mut self, reason: String) {
        self.flush_lines();
        self.out.push_back(Output::Close);
        // `content`: the model ended the conversation; the others are the session failing.
        let failed = reason != "content" && reason != "close_requested";
        self.end(format!("GPT-Live closed the session: {reason}"), failed);
    }

    fn on_rate_limits(&mut self, event: &ServerEvent<'_>) {
        let Some(limits) = event.rate_limits.clone() else {
            return;
        };
        let exhausted: Vec<&str> = limits
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["remaining"].as_f64() == Some(0.0))
            .filter_map(|l| l["name"].as_str())
            .collect();
        if !exhausted.is_empty() {
            tracing::warn!(limits = ?exhausted, "OpenAI rate limit reached");
        }
        self.detail("openai_rate_limits", limits);
    }

    fn detail(&mut self, key: &'static str, value: serde_json::Value) {
        self.out
            .push_back(Output::Down(Down::Event(AgentEvent::Detail { key, value })));
    }

    /// Plays out what is queued, then hangs up (the model ended the call).
    fn hang_up(&mut self) {
        self.close_session("the assistant ended the call");
    }

    /// Ends the conversation on purpose. A GPT-Live session is asked to close, and its
    /// `session.closed` (the final usage) awaited for a second before the closing handshake;
    /// Realtime's socket, or one still opening, is simply closed.
    fn close_session(&mut self, reason: &str) {
        self.flush_lines();
        let started = matches!(self.state, State::Open | State::Configuring { .. });
        if self.live && started {
            self.send(protocol::session_close());
            self.out
                .push_back(Output::CloseAfter(protocol::SESSION_CLOSED));
        } else {
            self.out.push_back(Output::Close);
        }
        self.end(reason.to_string(), false);
    }

    fn send(&mut self, text: String) {
        self.out.push_back(Output::Send(text));
    }

    fn end(&mut self, reason: String, failed: bool) {
        if self.state != State::Ended {
            self.state = State::Ended;
            self.out.push_back(Output::End { reason, failed });
        }
    }

    fn ignore(&mut self, why: std::fmt::Arguments<'_>) {
        session::ignored(&mut self.stats.ignored, why);
    }
}

impl SocketCore for OpenaiCore {
    type Opened = ();
    const FAR_END: &'static str = "OpenAI";

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { give_up_at } => Some(give_up_at),
            State::Configuring { give_up_at } => Some(give_up_at.min(self.keepalive_at())),
            State::Open => {
                let mut at = self.keepalive_at();
                if let Some(t) = self.reframer.poll_timeout() {
                    at = at.min(t);
                }
                if self.live && self.ending {
                    at = at.min(self.model_audio_at + QUIET_BEFORE_END);
                }
                if !self.user_line.is_empty() || !self.assistant_line.is_empty() {
                    at = at.min(self.line_at + LINE_GAP);
                }
                Some(at)
            }
            State::Ended => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Connecting { give_up_at } | State::Configuring { give_up_at }
                if now >= give_up_at =>
            {
                let secs = self.spec.connect_timeout.as_secs_f64();
                self.out.push_back(Output::Close);
                self.end(format!("no OpenAI session within {secs} s"), true);
                return;
            }
            State::Configuring { .. } | State::Open => {}
            _ => return,
        }
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
        self.reframer.handle_timeout(now, &mut self.out);
        if now >= self.line_at + LINE_GAP {
            self.flush_lines();
        }
        if self.live && self.ending && now >= self.model_audio_at + QUIET_BEFORE_END {
            self.hang_up();
        }
    }

    /// The socket is open: configure the session.
    fn on_connected(&mut self, now: Instant, _: ()) {
        let State::Connecting { give_up_at } = self.state else {
            return;
        };
        self.state = State::Configuring { give_up_at };
        self.heard_at = now;
        self.ping_at = now + PING_EVERY;
        if self.live {
            // GPT-Live waits for the client to speak first.
            let start = protocol::session_start(&self.spec, self.law);
            self.out.push_back(Output::Send(start));
        }
    }

    fn on_connect_failed(&mut self, error: String) {
        if matches!(self.state, State::Connecting { .. }) {
            self.end(error, true);
        }
    }

    /// 20 ms of the caller at 8 kHz, sent in the session's law once a batch is full.
    fn on_caller_audio(&mut self, _now: Instant, pcm: &[i16]) {
        if self.state != State::Open {
            return;
        }
        let at = self.batch.len();
        self.batch.resize(at + FRAME_BYTES, self.law.silence());
        let n = pcm.len().min(FRAME_BYTES);
        g711::encode(self.law, &pcm[..n], &mut self.batch[at..at + n]);
        if self.batch.len() >= self.batch_frames * FRAME_BYTES {
            let mut text = String::with_capacity(64 + self.batch.len() * 4 / 3);
            protocol::append(&mut text, self.live, &self.batch);
            self.batch.clear();
            self.stats.appends += 1;
            self.out.push_back(Output::Send(text));
        }
    }

    fn on_up(&mut self, _now: Instant, up: Up) {
        match up {
            Up::Caller(CallerEvent::Dtmf(d)) => self.on_caller_dtmf(d),
            Up::Cleared { heard } => self.on_cleared(heard),
            // The hang-up comes through `on_caller_hangup`; no marks are sent.
            Up::Caller(CallerEvent::Answered | CallerEvent::Hangup) | Up::Played(_) => {}
        }
    }

    /// The caller hung up: the session is closed as [`Self::close_session`] says.
    fn on_caller_hangup(&mut self, _now: Instant) {
        if self.state != State::Ended {
            self.close_session("the caller hung up");
        }
    }

    fn on_heard(&mut self, now: Instant) {
        self.heard_at = now;
    }

    fn on_binary(&mut self, now: Instant) {
        self.heard_at = now;
        self.ignore(format_args!("binary message from OpenAI"));
    }

    fn on_closed(&mut self, _now: Instant, how: SocketClose) {
        let (reason, failed) = match (self.state, how) {
            (State::Ended, _) => return,
            (State::Connecting { .. } | State::Configuring { .. }, how) => (
                format!("OpenAI closed the connection before the session started: {how:?}"),
                true,
            ),
            (_, SocketClose::Clean { code, reason }) => (
                format!(
                    "OpenAI closed the session (code {code}{}{reason})",
                    if reason.is_empty() { "" } else { ": " }
                ),
                false,
            ),
            (_, SocketClose::Dropped { error }) => {
                (format!("OpenAI connection lost: {error}"), true)
            }
        };
        self.flush_lines();
        self.end(reason, failed);
    }

    /// A text message from OpenAI.
    fn on_text(&mut self, now: Instant, text: &str) {
        self.heard_at = now;
        if matches!(self.state, State::Ended | State::Connecting { .. }) {
            return;
        }
        let event = match ServerEvent::parse(text) {
            Ok(e) => e,
            Err(e) => {
                self.ignore(format_args!("unreadable message from OpenAI: {e}"));
                return;
            }
        };
        match &*event.kind {
            // The hot path first: the model's audio.
            "response.output_audio.delta" | "session.output_audio.delta" => {
                self.on_audio(now, &event)
            }
            "session.created" if matches!(self.state, State::Configuring { .. }) && !self.live => {
                let update = protocol::session_update(&self.spec, self.law);
                self.send(update);
            }
            "session.updated" | "session.started" => self.on_session_ready(&event),
            "input_audio_buffer.speech_started" => self.on_speech_started(now),
            "response.created" => self.response_active = true,
            "response.done" => self.on_response_done(&event),
            "response.function_call_arguments.done" => {
                let (call_id, name) = (event.call_id.as_deref(), event.name.as_deref());
                let args = event.arguments.as_deref().unwrap_or("{}");
                self.on_tool_call(now, call_id.unwrap_or(""), name.unwrap_or(""), args);
            }
            "response.event" => {
                // GPT-Live's delegation: its function calls come as finished output items.
                let call = event.event.as_ref().and_then(|e| {
                    let item = e.item.as_ref()?;
                    let is_call = &*e.kind == "response.output_item.done"
                        && item.kind.as_deref() == Some("function_call");
                    is_call.then_some(item)
                });
                if let Some(item) = call {
                    let call_id = item.call_id.clone().unwrap_or_default();
                    let name = item.name.clone().unwrap_or_default();
                    let args = item.arguments.clone().unwrap_or_else(|| "{}".into());
                    self.on_tool_call(now, &call_id, &name, &args);
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                if let Some(t) = event.transcript.as_deref() {
                    self.transcript(Role::User, t.trim().to_string());
                }
            }
            "response.output_audio_transcript.done" => {
                if let Some(t) = event.transcript.as_deref() {
                    self.transcript(Role::Assistant, t.trim().to_string());
                }
            }
            "session.input_transcript.delta" => self.on_live_transcript(now, Role::User, &event),
            "session.output_transcript.delta" => {
                self.on_live_transcript(now, Role::Assistant, &event)
            }
            "error" => self.on_error(&event),
            "session.closed" => {
                let reason = event.reason.as_deref().unwrap_or("unknown").to_string();
                self.on_session_closed(reason);
            }
            "rate_limits.updated" => self.on_rate_limits(&event),
            "session.usage.updated" => {
                if let Some(usage) = event.usage {
                    self.detail("openai_usage", usage);
                }
            }
            "info" => {
                tracing::info!(
                    code = event.code.as_deref().unwrap_or(""),
                    message = event.message.as_deref().unwrap_or(""),
                    "OpenAI says"
                );
            }
            // Lifecycle events the gateway has nothing to do with.
            _ => {}
        }
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

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
