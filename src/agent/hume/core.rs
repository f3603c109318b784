//! The EVI session, sans-IO: one call's conversation with Hume across the sockets it needs.
//!
//! It takes socket events, parsed server messages, caller frames and the time, and returns
//! what the driver must do ([`Output`]: open, write to or close a socket, play a frame, clear
//! the caller's queue, report an event, answer or end the call) and when to call back
//! ([`EviCore::poll_timeout`]). The decisions that matter live here, testable with a fake
//! clock: when the call may be answered, barge-in, what ends the call and why, the one
//! reconnect after a dropped socket, and moving to a resumed socket before EVI's 30-minute
//! limit without a gap (the old socket keeps playing its reply while the new one is set up).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;

// A silent socket counts as dropped: the one reconnect is tried, then the call fails.
pub use crate::agent::ws::{SocketClose, PING_EVERY, SILENT_LIMIT};
use crate::agent::{AgentEvent, AudioFrame, Role};

use super::playout::{Playout, PlayoutStats};
use super::protocol::{
    AudioConfiguration, AudioInput, ClientMessage, EviError, Inference, ServerMessage,
    SessionSettings, ToolCall, ToolError, ToolResponse, VariableValue, HANG_UP_TOOL,
};

/// Identifies one socket of the session (the driver's handle for it).
pub type ConnId = u64;

/// Samples in one 20 ms caller frame at 8 kHz.
const CALLER_FRAME: usize = 160;
/// The longest head start before the socket limit: the resumed socket opens this early.
const MAX_HANDOVER_MARGIN: Duration = Duration::from_secs(60);
/// After the hang_up tool, how long further speech (a goodbye still streaming) is awaited
/// before the call ends; `assistant_end` or a close ends it sooner.
const HANG_UP_GRACE: Duration = Duration::from_secs(2);
/// A reconnected socket that stays up this long earns back the one reconnect.
const RECONNECT_RESET: Duration = Duration::from_secs(60);
/// Emotion scores reported with a transcript line.
const TOP_EMOTIONS: usize = 3;

/// Settings for one call's session.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The SIP Call-ID: `custom_session_id`, so Hume's chat history names the call.
    pub call_id: String,
    pub caller: String,
    pub called: String,
    /// Reconnect with `resumed_chat_group_id` (context kept) rather than a fresh chat.
    pub resume: bool,
    pub connect_timeout: Duration,
    /// How long one socket may live (EVI: 30 minutes).
    pub session_limit: Duration,
    /// Caller frames per `audio_input` (1..=5).
    pub batch_frames: usize,
}

impl CoreConfig {
    /// How long before the limit the next socket opens: a minute, or a fifth of a short
    /// (test) limit.
    pub fn handover_margin(&self) -> Duration {
        MAX_HANDOVER_MARGIN.min(self.session_limit / 5)
    }
}

/// What the driver must do.
#[allow(clippy::large_enum_variant)] // frames are the common case; boxing them would allocate
#[derive(Debug)]
pub enum Output {
    /// Open a socket, with `resumed_chat_group_id` when set.
    Connect {
        conn: ConnId,
        resume_group: Option<String>,
    },
    Send {
        conn: ConnId,
        msg: ClientMessage,
    },
    /// Close normally (1000), or abandon the connection attempt.
    Close {
        conn: ConnId,
    },
    /// Send a WebSocket ping (its pong, like any frame, goes to [`EviCore::on_heard`]).
    Ping {
        conn: ConnId,
    },
    /// 20 ms at 8 kHz for the caller, in play order.
    Audio(AudioFrame),
    /// Barge-in: drop everything queued for the caller.
    ClearPlayout,
    Event(AgentEvent),
    /// The first chat is up (chat_metadata in, session_settings out): answer the call.
    Ready,
    /// The session is over. Before [`Output::Ready`] the call setup fails with this reason;
    /// after it the caller hears what is queued, then BYE. Nothing follows.
    End {
        reason: String,
        /// EVI failed (unreachable, broken, an error), as opposed to ending the chat.
        failed: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    First,
    /// After a dropped socket: the caller is waiting.
    Reconnect,
    /// Before the socket limit: the old socket still runs.
    Handover,
}

struct Conn {
    id: ConnId,
    purpose: Purpose,
    /// When the driver was asked to open it (the connect timeout runs from here).
    opened_at: Instant,
    /// When the WebSocket upgrade completed (EVI's socket time limit runs from here).
    upgraded_at: Option<Instant>,
    /// When chat_metadata arrived and session_settings went out.
    ready_at: Option<Instant>,
    /// When the socket last sent anything (a message, a pong), once ready.
    heard_at: Option<Instant>,
    /// When it is next pinged, once ready.
    ping_at: Option<Instant>,
}

impl Conn {
    fn limit_from(&self) -> Instant {
        self.upgraded_at.unwrap_or(self.opened_at)
    }
}

pub struct EviCore {
    cfg: CoreConfig,
    next_id: ConnId,
    /// The socket the caller talks to and hears.
    active: Option<Conn>,
    /// A socket being set up to replace it.
    standby: Option<Conn>,
    chat_group_id: Option<String>,
    answered: bool,
    ended: bool,
    /// The one reconnect after a drop has been used (until the new socket proves stable).
    reconnect_spent: bool,
    reconnect_reset_at: Option<Instant>,
    /// The handover to a resumed socket was tried for the active socket.
    handover_tried: bool,
    /// The active socket has sent speech since the last `assistant_end` or barge-in.
    mid_reply: bool,
    /// The caller finished a turn (final `user_message`) and EVI has not finished answering.
    awaiting_reply: bool,
    /// The hang_up tool ran: end at this deadline (or sooner).
    hang_up_at: Option<Instant>,
    playout: Playout,
    /// Caller audio not yet sent, already in the wire's 16-bit little-endian layout.
    batch: Vec<u8>,
    /// Caller frames dropped because no socket was ready for them.
    caller_frames_dropped: u64,
    /// Speech from a socket that is not the active one (a resumed socket before the switch).
    foreign_chunks: u64,
    out: VecDeque<Output>,
}

impl EviCore {
    /// Starts a session: the first socket is to be opened.
    pub fn new(now: Instant, cfg: CoreConfig) -> EviCore {
        let batch = Vec::with_capacity(cfg.batch_frames.max(1) * CALLER_FRAME * 2);
        let mut core = EviCore {
            cfg,
            next_id: 1,
            active: None,
            standby: None,
            chat_group_id: None,
            answered: false,
            ended: false,
            reconnect_spent: false,
            reconnect_reset_at: None,
            handover_tried: false,
            mid_reply: false,
            awaiting_reply: false,
            hang_up_at: None,
            playout: Playout::new(),
            batch,
            caller_frames_dropped: 0,
            foreign_chunks: 0,
            out: VecDeque::new(),
        };
        let conn = core.open(now, Purpose::First, None);
        core.active = Some(conn);
        core
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn playout_stats(&self) -> PlayoutStats {
        self.playout.stats()
    }

    pub fn caller_frames_dropped(&self) -> u64 {
        self.caller_frames_dropped
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`EviCore::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let connect_by = |c: &Conn| {
            c.ready_at
                .is_none()
                .then(|| c.opened_at + self.cfg.connect_timeout)
        };
        let mut next: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        at(self.active.as_ref().and_then(connect_by));
        at(self.standby.as_ref().and_then(connect_by));
        for c in [self.active.as_ref(), self.standby.as_ref()]
            .into_iter()
            .flatten()
        {
            at(c.ping_at);
            at(c.heard_at.map(|t| t + SILENT_LIMIT));
        }
        at(self.handover_open_at());
        at(self.force_switch_at());
        at(self.hang_up_at);
        at(self.reconnect_reset_at);
        next
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.hang_up_at.is_some_and(|t| t <= now) {
            self.end("EVI hung up (hang_up tool)".into());
            return;
        }
        if self.reconnect_reset_at.is_some_and(|t| t <= now) {
            self.reconnect_reset_at = None;
            self.reconnect_spent = false;
        }
        if self.keep_alive(now) {
            return;
        }
        let timeout = self.cfg.connect_timeout;
        if let Some(c) = self
            .active
            .as_ref()
            .filter(|c| c.ready_at.is_none() && c.opened_at + timeout <= now)
        {
            let reason = format!(
                "EVI did not send chat_metadata within {} s",
                timeout.as_secs_f64()
            );
            let id = c.id;
            self.out.push_back(Output::Close { conn: id });
            self.active = None;
            self.fail(reason);
            return;
        }
        if let Some(c) = self
            .standby
            .as_ref()
            .filter(|c| c.ready_at.is_none() && c.opened_at + timeout <= now)
        {
            let (id, purpose) = (c.id, c.purpose);
            self.out.push_back(Output::Close { conn: id });
            self.standby = None;
            self.standby_failed(
                purpose,
                format!("no chat_metadata within {} s", timeout.as_secs_f64()),
            );
            if self.ended {
                return;
            }
        }
        if self.handover_open_at().is_some_and(|t| t <= now) {
            self.handover_tried = true;
            tracing::info!(
                limit_secs = self.cfg.session_limit.as_secs_f64(),
                "EVI socket nears its time limit: opening a resumed one"
            );
            let group = self.resume_group();
            let conn = self.open(now, Purpose::Handover, group);
            self.standby = Some(conn);
        }
        if self.force_switch_at().is_some_and(|t| t <= now) {
            tracing::info!("EVI reply still running at the socket limit: switching sockets now");
            self.switch(now);
        }
    }

    /// A socket's WebSocket upgrade completed: EVI's chat_metadata is next.
    pub fn on_connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.upgraded_at.get_or_insert(now);
        }
    }

    /// The socket sent a frame: a pong, a ping, anything (messages count by themselves).
    pub fn on_heard(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn).filter(|c| c.heard_at.is_some()) {
            c.heard_at = Some(now);
        }
    }

    /// A socket could not be opened (refused key, unreachable, bad handshake).
    pub fn on_connect_failed(&mut self, _now: Instant, conn: ConnId, error: String) {
        if self.ended {
            return;
        }
        if self.active.as_ref().is_some_and(|c| c.id == conn) {
            self.active = None;
            self.fail(format!("cannot reach EVI: {error}"));
        } else if let Some(c) = self.standby.take_if(|c| c.id == conn) {
            self.standby_failed(c.purpose, error);
        }
    }

    /// A socket ended.
    pub fn on_closed(&mut self, now: Instant, conn: ConnId, how: SocketClose) {
        if self.ended {
            return;
        }
        if let Some(c) = self.standby.take_if(|c| c.id == conn) {
            self.standby_failed(c.purpose, describe(&how));
            return;
        }
        let Some(active) = self.active.take_if(|c| c.id == conn) else {
            return; // a socket already closed on purpose
        };
        if self.hang_up_at.is_some() {
            self.end("EVI hung up (hang_up tool)".into());
            return;
        }
        if active.ready_at.is_none() {
            self.fail(format!(
                "EVI closed the connection before chat_metadata ({})",
                describe(&how)
            ));
            return;
        }
        // Past the handover point a close is the socket limit, not the end of the conversation.
        let at_limit =
            now >= active.limit_from() + self.cfg.session_limit - self.cfg.handover_margin();
        match how {
            SocketClose::Clean { .. } if !at_limit => {
                self.end(format!("EVI ended the chat ({})", describe(&how)));
            }
            _ => {
                if let Some(next) = self.standby.as_mut() {
                    next.purpose = Purpose::Reconnect;
                    if next.ready_at.is_some() {
                        self.promote(now);
                    }
                } else if self.reconnect_spent {
                    self.fail(format!(
                        "EVI connection lost again after a reconnect ({})",
                        describe(&how)
                    ));
                } else {
                    self.reconnect_spent = true;
                    self.reconnect_reset_at = None;
                    let group = self.resume_group();
                    tracing::warn!(
                        how = %describe(&how),
                        resume = group.is_some(),
                        "EVI socket lost mid-call: reconnecting once"
                    );
                    let conn = self.open(now, Purpose::Reconnect, group);
                    self.standby = Some(conn);
                }
            }
        }
    }

    /// A text message from a socket, parsed.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, msg: ServerMessage) {
        if self.ended {
            return;
        }
        let from_active = self.active.as_ref().is_some_and(|c| c.id == conn);
        let from_standby = self.standby.as_ref().is_some_and(|c| c.id == conn);
        if !from_active && !from_standby {
            return;
        }
        self.on_heard(now, conn);
        match msg {
            ServerMessage::ChatMetadata(m) => {
                self.detail("chat_id", m.chat_id.into());
                self.detail("chat_group_id", m.chat_group_id.clone().into());
                if let Some(r) = m.request_id {
                    self.detail("request_id", r.into());
                }
                self.chat_group_id = Some(m.chat_group_id);
                let Some(c) = self.conn_mut(conn) else { return };
                if c.ready_at.is_some() {
                    return;
                }
                c.ready_at = Some(now);
                // Until now the connect timeout watched it; from now on, the keep-alive.
                c.heard_at = Some(now);
                c.ping_at = Some(now + PING_EVERY);
                let settings = self.session_settings();
                self.out.push_back(Output::Send {
                    conn,
                    msg: settings,
                });
                if from_active {
                    if !self.answered {
                        self.answered = true;
                        self.out.push_back(Output::Ready);
                    }
                } else if self.active.is_none() || self.between_turns() {
                    self.switch(now);
                }
            }
            ServerMessage::AudioOutput(chunk) => {
                if !from_active {
                    self.foreign_chunks += 1;
                    self.playout.discard(&chunk.id);
                    return;
                }
                let out = &mut self.out;
                let accepted = self.playout.push(
                    chunk,
                    &mut |f| out.push_back(Output::Audio(f)),
                    &mut |e| tracing::warn!(error = %e, "EVI audio chunk skipped"),
                );
                self.mid_reply |= accepted;
            }
            ServerMessage::AssistantEnd(_) if from_active => {
                let out = &mut self.out;
                self.playout.end_of_turn(
                    &mut |f| out.push_back(Output::Audio(f)),
                    &mut |e| tracing::warn!(error = %e, "EVI audio chunk skipped"),
                );
                self.mid_reply = false;
                self.awaiting_reply = false;
                if self.hang_up_at.is_some() {
                    self.end("EVI hung up (hang_up tool)".into());
                } else if self.standby.as_ref().is_some_and(|c| c.ready_at.is_some()) {
                    self.switch(now);
                }
            }
            ServerMessage::UserInterruption(_) if from_active => self.barge_in(),
            ServerMessage::UserMessage(m) => {
                if m.interim {
                    return;
                }
                if from_active {
                    // Hume's own clients flush on every user message: a new turn has begun.
                    self.barge_in();
                    self.awaiting_reply = true;
                }
                let text = m.message.content.unwrap_or_default();
                self.transcript(Role::User, text, &m.models);
            }
            ServerMessage::AssistantMessage(m) => {
                let text = m.message.content.unwrap_or_default();
                self.transcript(Role::Assistant, text, &m.models);
            }
            ServerMessage::ToolCall(call) => self.on_tool_call(now, conn, call),
            ServerMessage::ToolResponse(r) if r.tool_name.as_deref() == Some(HANG_UP_TOOL) => {
                self.hang_up(now);
            }
            ServerMessage::Error(e) => self.on_error(conn, from_active, e),
            ServerMessage::AssistantEnd(_)
            | ServerMessage::UserInterruption(_)
            | ServerMessage::AssistantProsody(_)
            | ServerMessage::ToolResponse(_)
            | ServerMessage::ToolError(_)
            | ServerMessage::SessionSettings(_)
            | ServerMessage::Unknown => {}
        }
    }

    /// 20 ms of the caller at 8 kHz.
    pub fn on_caller_audio(&mut self, _now: Instant, samples: &[i16]) {
        if self.ended {
            return;
        }
        let Some(conn) = self
            .active
            .as_ref()
            .filter(|c| c.ready_at.is_some())
            .map(|c| c.id)
        else {
            self.caller_frames_dropped += 1;
            return;
        };
        self.batch
            .extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        if self.batch.len() < self.cfg.batch_frames.max(1) * CALLER_FRAME * 2 {
            return;
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&self.batch);
        self.batch.clear();
        self.out.push_back(Output::Send {
            conn,
            msg: ClientMessage::AudioInput(AudioInput {
                data,
                custom_session_id: None,
            }),
        });
    }

    /// The caller hung up (or the call ended): close every socket normally.
    pub fn on_caller_hangup(&mut self) {
        if self.ended {
            return;
        }
        self.end("caller hung up".into());
    }

    fn on_tool_call(&mut self, now: Instant, conn: ConnId, call: ToolCall) {
        if call.name == HANG_UP_TOOL {
            if call.response_required {
                self.out.push_back(Output::Send {
                    conn,
                    msg: ClientMessage::ToolResponse(ToolResponse {
                        tool_call_id: call.tool_call_id,
                        content: "The phone call is being hung up.".into(),
                        tool_name: Some(call.name),
                        tool_type: Some(call.tool_type),
                        custom_session_id: None,
                    }),
                });
            }
            self.hang_up(now);
        } else if call.response_required {
            // No tools run on the phone line: an error lets the assistant carry on instead of
            // waiting for an answer that never comes.
            tracing::warn!(tool = %call.name, "EVI called a tool the gateway does not have");
            self.out.push_back(Output::Send {
                conn,
                msg: ClientMessage::ToolError(ToolError {
                    tool_call_id: call.tool_call_id,
                    error: format!("tool {} is not available on this phone line", call.name),
                    content: None,
                    code: None,
                    level: None,
                    tool_type: Some(call.tool_type),
                    custom_session_id: None,
                }),
            });
        }
    }

    fn on_error(&mut self, conn: ConnId, from_active: bool, e: EviError) {
        // W-codes are warnings (reference section 3); everything else is treated as fatal.
        if e.code.starts_with('W') {
            tracing::warn!(code = %e.code, slug = %e.slug, message = %e.message, "EVI warning");
            return;
        }
        tracing::error!(code = %e.code, slug = %e.slug, message = %e.message,
            request_id = e.request_id.as_deref().unwrap_or(""), "EVI error");
        let reason = format!("EVI error {} {}: {}", e.code, e.slug, e.message);
        if from_active {
            self.fail(reason);
        } else if let Some(c) = self.standby.take() {
            self.out.push_back(Output::Close { conn });
            self.standby_failed(c.purpose, reason);
        }
    }

    fn hang_up(&mut self, now: Instant) {
        if self.hang_up_at.is_some() {
            return;
        }
        tracing::info!("EVI used the hang_up tool: ending the call after its last words");
        if self.mid_reply {
            self.hang_up_at = Some(now + HANG_UP_GRACE);
        } else {
            self.end("EVI hung up (hang_up tool)".into());
        }
    }

    fn barge_in(&mut self) {
        // No socket switch here: the caller is speaking, and their words must not be split
        // between two chats.
        self.playout.interrupt();
        self.mid_reply = false;
        self.out.push_back(Output::ClearPlayout);
    }

    /// Neither side holds the turn: EVI finished its reply and the caller has not yet said
    /// anything EVI is answering. The moment to move to another socket.
    fn between_turns(&self) -> bool {
        !self.mid_reply && !self.awaiting_reply
    }

    fn transcript(&mut self, role: Role, text: String, models: &Inference) {
        let emotions = models.top_emotions(TOP_EMOTIONS);
        self.out.push_back(Output::Event(AgentEvent::Transcript {
            role,
            text,
            emotions,
        }));
    }

    fn detail(&mut self, key: &'static str, value: serde_json::Value) {
        self.out
            .push_back(Output::Event(AgentEvent::Detail { key, value }));
    }

    fn session_settings(&self) -> ClientMessage {
        let variables = BTreeMap::from([
            (
                "caller_number".to_string(),
                VariableValue::Text(self.cfg.caller.clone()),
            ),
            (
                "called_number".to_string(),
                VariableValue::Text(self.cfg.called.clone()),
            ),
        ]);
        ClientMessage::SessionSettings(SessionSettings {
            audio: Some(AudioConfiguration::telephone()),
            custom_session_id: Some(self.cfg.call_id.clone()),
            variables: Some(variables),
            ..SessionSettings::default()
        })
    }

    fn resume_group(&self) -> Option<String> {
        self.chat_group_id.clone().filter(|_| self.cfg.resume)
    }

    fn open(&mut self, now: Instant, purpose: Purpose, resume_group: Option<String>) -> Conn {
        let id = self.next_id;
        self.next_id += 1;
        self.out.push_back(Output::Connect {
            conn: id,
            resume_group,
        });
        Conn {
            id,
            purpose,
            opened_at: now,
            upgraded_at: None,
            ready_at: None,
            heard_at: None,
            ping_at: None,
        }
    }

    /// Pings the open sockets that are due, and gives up on one that has gone silent, as if it
    /// had dropped. True when that ended the session.
    fn keep_alive(&mut self, now: Instant) -> bool {
        let silent = [self.active.as_ref(), self.standby.as_ref()]
            .into_iter()
            .flatten()
            .find(|c| c.heard_at.is_some_and(|t| t + SILENT_LIMIT <= now))
            .map(|c| c.id);
        if let Some(conn) = silent {
            tracing::warn!(
                conn,
                "EVI socket silent, pings unanswered: treating it as dropped"
            );
            self.out.push_back(Output::Close { conn });
            let error = format!("no answer to pings for {} s", SILENT_LIMIT.as_secs_f64());
            self.on_closed(now, conn, SocketClose::Dropped { error });
            if self.ended {
                return true;
            }
        }
        for c in [self.active.as_mut(), self.standby.as_mut()]
            .into_iter()
            .flatten()
        {
            if c.ping_at.is_some_and(|t| t <= now) {
                c.ping_at = Some(now + PING_EVERY);
                self.out.push_back(Output::Ping { conn: c.id });
            }
        }
        false
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        if let Some(c) = self.active.as_mut().filter(|c| c.id == id) {
            return Some(c);
        }
        self.standby.as_mut().filter(|c| c.id == id)
    }

    /// When the active socket should be joined by a resumed one.
    fn handover_open_at(&self) -> Option<Instant> {
        if self.handover_tried || self.standby.is_some() || self.hang_up_at.is_some() {
            return None;
        }
        let c = self.active.as_ref()?;
        c.ready_at?;
        Some(c.limit_from() + self.cfg.session_limit - self.cfg.handover_margin())
    }

    /// When a ready standby takes over even though the old socket is mid-reply.
    fn force_switch_at(&self) -> Option<Instant> {
        self.standby.as_ref()?.ready_at?;
        let c = self.active.as_ref()?;
        Some(c.limit_from() + self.cfg.session_limit - self.cfg.handover_margin() / 4)
    }

    /// The ready standby replaces the active socket, which is closed.
    fn switch(&mut self, now: Instant) {
        if let Some(old) = self.active.take() {
            self.out.push_back(Output::Close { conn: old.id });
        }
        self.promote(now);
    }

    fn promote(&mut self, now: Instant) {
        let Some(next) = self.standby.take() else {
            return;
        };
        if next.purpose == Purpose::Reconnect {
            self.reconnect_reset_at = Some(now + RECONNECT_RESET);
        }
        tracing::info!(
            resumed = self.cfg.resume,
            dropped_chunks = self.foreign_chunks,
            "EVI conversation moved to a new socket"
        );
        // Whatever the old socket had half-sent cannot be completed any more.
        if self.mid_reply {
            let out = &mut self.out;
            self.playout
                .end_of_turn(&mut |f| out.push_back(Output::Audio(f)), &mut |_| {});
        }
        self.mid_reply = false;
        self.awaiting_reply = false;
        self.handover_tried = false;
        self.active = Some(next);
    }

    fn standby_failed(&mut self, purpose: Purpose, error: String) {
        match purpose {
            Purpose::Handover => {
                // The old socket carries on; if EVI closes it at the limit, that close is
                // handled as a drop and reconnects.
                tracing::warn!(%error, "resumed EVI socket failed before the handover");
            }
            Purpose::First | Purpose::Reconnect => {
                self.fail(format!(
                    "EVI connection lost and the reconnect failed: {error}"
                ));
            }
        }
    }

    /// The conversation is over, as EVI or the caller meant it to be.
    fn end(&mut self, reason: String) {
        self.finish(reason, false);
    }

    /// The conversation is over because EVI failed: the caller is told so (a failure cause).
    fn fail(&mut self, reason: String) {
        self.finish(reason, true);
    }

    fn finish(&mut self, reason: String, failed: bool) {
        for c in [self.active.take(), self.standby.take()]
            .into_iter()
            .flatten()
        {
            self.out.push_back(Output::Close { conn: c.id });
        }
        // What is already decoded still plays; a half-frame is padded.
        let out = &mut self.out;
        self.playout
            .end_of_turn(&mut |f| out.push_back(Output::Audio(f)), &mut |_| {});
        self.ended = true;
        self.hang_up_at = None;
        self.out.push_back(Output::End { reason, failed });
    }
}

fn describe(how: &SocketClose) -> String {
    match how {
        SocketClose::Clean { code, reason } if reason.is_empty() => format!("close code {code}"),
        SocketClose::Clean { code, reason } => format!("close code {code}: {reason}"),
        SocketClose::Dropped { error } => format!("dropped: {error}"),
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
