//! Agents: the far end of a call (the built-in echo agent, Hume EVI, a LiveKit room, a Media
//! Streams bot, OpenAI's Realtime and GPT-Live).
//!
//! A call talks to its agent through [`AgentSession`], in 20 ms frames of 16-bit mono PCM that
//! carry their sample rate, plus events both ways. The session is polled from inside the call's
//! own task (no extra task or channel for the echo agent), and an agent whose far end is a
//! network service keeps its own I/O behind the same methods.

pub mod echo;
pub mod hume;
pub mod livekit;
pub mod openai;
pub mod reframe;
pub mod remote;
pub mod stream;
pub mod ws;

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use crate::media::frame::{AudioFrame, MAX_FRAME_SAMPLES};

/// What the call tells its agent besides audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerEvent {
    /// An RFC 4733 key press from the caller.
    Dtmf(char),
    /// The call was answered (200 OK sent): the conversation is live.
    Answered,
    /// The caller hung up (or the call ended for another reason); the agent should close.
    Hangup,
}

/// Who spoke a transcript line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// What an agent tells its call besides audio.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// Barge-in: drop every frame queued for the caller now.
    ClearPlayout,
    /// The agent ended the conversation; play out what is queued, then hang up.
    Hangup { reason: String },
    /// The agent's far end failed (closed, reset, stopped answering, could not be resumed);
    /// play out what is queued, then hang up with a failure cause.
    Failed { reason: String },
    /// A key press for the caller.
    Dtmf(char),
    Transcript {
        role: Role,
        text: String,
        /// The strongest emotion scores, highest first.
        emotions: Vec<(String, f32)>,
    },
    /// Something about the far-end session worth showing on the admin API (a chat id, a room
    /// name, the room's participants). A later value for the same key replaces the earlier one.
    Detail {
        key: &'static str,
        value: serde_json::Value,
    },
}

/// Output polled from an agent session.
// Audio is the common case, 50 times a second per call: boxing it to shrink the rare event
// variant would allocate on every frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AgentOutput {
    Audio(AudioFrame),
    Event(AgentEvent),
}

/// One call's conversation with an agent. Methods never block: an agent with a network far end
/// queues and does its I/O elsewhere, and wakes the waker it was last polled with.
pub trait AgentSession: Send {
    /// 20 ms of the caller's audio at 8 kHz, in order; lost frames arrive concealed.
    fn send_audio(&mut self, frame: &AudioFrame);

    fn send_event(&mut self, event: CallerEvent);

    /// The next output. Audio is only returned when `want_audio` is true: the call asks for a
    /// frame only when its send clock has a slot open, so the agent keeps the queue (and can drop
    /// it at once on barge-in). Audio frames must be 8 kHz. `Ready(None)` means the session ended.
    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>>;

    /// Whether a frame is ready now, so the call knows to wake when its next slot opens.
    fn audio_queued(&self) -> bool;

    /// When the session must next be polled though nothing woke it: a session that keeps its
    /// own protocol timers (WebRTC's) says when the next one fires, and the call polls it then.
    /// Arming a tokio timer instead works on the call's task but not on a media reactor, where
    /// tokio's timer thread would have to wake the reactor across threads for every firing.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Descriptors the session reads itself (its far end's sockets), for the media reactor
    /// running the call to watch ([`Watch`] says when it asks). While watched, the session
    /// reads a descriptor only when [`AgentSession::on_readable`] says it is readable, and must
    /// then read it (the watch is level-triggered). A descriptor given must stay open until
    /// the next ask: closed earlier, its number could be reused by another socket that the
    /// reactor would then stop watching. None by default: the session does its own I/O.
    fn watch(&mut self, _why: Watch) -> Vec<RawFd> {
        Vec::new()
    }

    /// The session wants its descriptors watched differently (it is done with a socket): the
    /// reactor, after the call's service, stops watching the ones it has and asks again.
    fn watch_changed(&self) -> bool {
        false
    }

    /// The descriptor at `index` in what [`AgentSession::watch`] last returned is readable;
    /// the call is polled right after.
    fn on_readable(&mut self, _index: usize) {}
}

/// Why a media reactor asks an agent session which descriptors to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// The call has joined the reactor.
    Join,
    /// After [`AgentSession::watch_changed`]: the reactor no longer watches what it was given.
    Again,
    /// The call has left the reactor, which no longer watches anything of the session; what
    /// is returned is ignored.
    Leave,
}

/// What an agent learns about the call when it starts.
#[derive(Clone, Debug, Default)]
pub struct CallInfo {
    /// The SIP Call-ID, in full.
    pub call_id: String,
    /// Our To-tag on the caller's dialog.
    pub local_tag: String,
    /// Caller and called numbers, normalised (E.164 where they were numbers).
    pub caller: String,
    pub called: String,
    /// The trunk that admitted the call and the agent name it was routed to (config keys).
    pub trunk: String,
    pub agent: String,
    pub twilio_call_sid: Option<String>,
    pub twilio_account_sid: Option<String>,
    /// The G.711 law the caller negotiated: a far end that takes G.711 gets the same, so the
    /// call's audio is not transcoded on its way.
    pub law: crate::codec::g711::Law,
    /// The INVITE's `X-` headers (Twilio's `X-Twilio-*`, a customer's own), as received; at
    /// most [`MAX_X_HEADERS`], each name and value under 500 bytes together.
    pub x_headers: Vec<(String, String)>,
}

/// `X-` headers an agent is told about; more are a flood, not call data.
pub const MAX_X_HEADERS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    #[error("agent refused the call: {0}")]
    Refused(String),
}

/// How a call behaves while its agent connects. The agent knows its far end: a WebSocket is up in
/// a second or fails, while a LiveKit room waits for its dispatched agent like a phone rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupPolicy {
    /// Connecting longer than this sends 180 Ringing.
    pub ring_after: Duration,
    /// Re-send 180 this often while connecting (some carriers drop a call that rings silently).
    pub ring_every: Option<Duration>,
    /// Give up connecting after this long...
    pub timeout: Duration,
    /// ...and reject the INVITE with this status (5xx lets Twilio fail over; 480 is "no answer").
    pub timeout_status: u16,
    /// The status for a connect error.
    pub error_status: u16,
}

impl SetupPolicy {
    /// A far end over a WebSocket: ring at once (the caller hears progress while the socket
    /// opens), give up after `timeout`; 503 both ways, so Twilio fails over to the next route.
    pub fn websocket(timeout: Duration) -> SetupPolicy {
        SetupPolicy {
            ring_after: Duration::ZERO,
            ring_every: None,
            timeout,
            timeout_status: 503,
            error_status: 503,
        }
    }
}

impl Default for SetupPolicy {
    fn default() -> Self {
        SetupPolicy {
            ring_after: Duration::from_millis(50),
            ring_every: None,
            timeout: Duration::from_secs(10),
            timeout_status: 503,
            error_status: 503,
        }
    }
}

pub type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Box<dyn AgentSession>, AgentError>> + Send>>;

/// The agents' `wss://` and `https://` go through rustls, built here with `ring` only (no
/// aws-lc C build) and so without a default crypto provider: the first TLS connection would
/// panic. Each agent kind that speaks TLS installs it when it is built, which covers the
/// binary, the library and the tests.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already (by the binary or a test): that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, appended to `out`:
/// query parameters and form bodies the agents send.
pub(crate) fn percent_encode(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A configured agent: starts one session per call. Connecting may take time (a WebSocket), so
/// the call rings meanwhile and answers once the session is ready.
pub trait Agent: Send + Sync {
    fn connect(&self, call: &CallInfo) -> ConnectFuture;

    /// The config `kind` ("echo", "hume", "livekit"), for logs, metrics and the admin API.
    fn kind(&self) -> &'static str;

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy::default()
    }

    /// Whether the call's media may run on a media reactor. An agent whose far end's every
    /// message arrives through tokio sockets or tasks of its own (Hume's driver task) says no:
    /// polled from a reactor, each would cross threads (tokio's I/O driver waking the reactor
    /// through its eventfd), which cost a Media Streams call 45 % more CPU than the reactor
    /// saves. Such a call's media stays on its own task. An agent whose sockets the reactor
    /// watches ([`AgentSession::watch`]) and whose timers it keeps
    /// ([`AgentSession::poll_timeout`]) crosses no thread; rare messages (LiveKit's
    /// signalling) may.
    fn media_on_reactor(&self) -> bool {
        true
    }
}
