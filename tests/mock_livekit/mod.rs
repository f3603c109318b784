//! A mock LiveKit server for the tests, built from LiveKit's published protocol: the Twirp
//! endpoints the gateway calls (protobuf and JSON bodies, Bearer JWTs verified), and the `/rtc`
//! WebSocket speaking `livekit-protocol` messages with a webrtc-rs peer that plays the SFU
//! (ICE-lite, like LiveKit's server). It records what it receives and exposes hooks.
#![allow(dead_code)]

mod http;
#[allow(unused_imports)] // only the tests post raw requests
pub use http::post;
mod sfu;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livekit_api::access_token::Claims;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const API_KEY: &str = "APItestkey";
pub const API_SECRET: &str = "mock-secret-0123456789abcdef0123456789";

#[derive(Clone, Debug)]
pub struct MockConfig {
    pub api_key: String,
    pub api_secret: String,
    /// How long after the join the agent publishes its audio track.
    pub agent_delay: Duration,
    /// The agent's tone.
    pub tone_hz: f64,
    /// Sent in the join response.
    pub ping_interval_secs: i32,
    pub ping_timeout_secs: i32,
    /// The agent never publishes (the call must ring out).
    pub agent_silent: bool,
    /// Keep the participants' decoded audio (off for capacity runs: 5.8 MB per minute).
    pub record_audio: bool,
    /// A loaded server: it takes this long over each signal message it reads.
    pub signal_delay: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            api_key: API_KEY.into(),
            api_secret: API_SECRET.into(),
            agent_delay: Duration::from_millis(100),
            tone_hz: 440.0,
            ping_interval_secs: 2,
            ping_timeout_secs: 10,
            agent_silent: false,
            record_audio: true,
            signal_delay: Duration::ZERO,
        }
    }
}

/// One Twirp request as received.
#[derive(Clone, Debug)]
pub struct TwirpCall {
    pub method: String,
    pub content_type: String,
    /// The request as JSON (decoded from protobuf when it came as protobuf).
    pub request: serde_json::Value,
    pub claims: Option<Claims>,
    pub status: u16,
}

/// Commands the tests give a participant's session.
#[derive(Debug)]
pub enum Command {
    /// Send a `sip_dtmf` data packet to the participant.
    SendDtmf { code: u32, digit: String },
    /// Offer the subscriber connection again (as the server does when subscriptions change).
    Renegotiate,
    /// Remove the participant (server `leave`, reason PARTICIPANT_REMOVED).
    Remove,
    /// The room was deleted (server `leave`, reason ROOM_DELETED).
    RoomDeleted,
    /// Drop the WebSocket without a word.
    DropConnection,
}

/// What one `/rtc` participant session did.
#[derive(Debug, Default)]
pub struct Session {
    pub claims: Option<Claims>,
    pub query: HashMap<String, String>,
    pub room: String,
    pub add_tracks: Vec<livekit_protocol::AddTrackRequest>,
    /// The publisher offer's SDP, as the gateway sent it.
    pub publisher_offer: Option<String>,
    pub subscriber_answers: Vec<u32>,
    pub offers_sent: u32,
    pub candidates_received: u32,
    pub pings: u32,
    /// The gateway's audio, decoded to 48 kHz.
    pub audio: Vec<i16>,
    pub audio_packets: u64,
    /// `sip_dtmf` packets received: (code, digit).
    pub dtmf: Vec<(u32, String)>,
    pub other_data: u32,
    /// Attribute updates (UpdateParticipantMetadata), in order.
    pub attribute_updates: Vec<HashMap<String, String>>,
    pub left: Option<livekit_protocol::LeaveRequest>,
    /// Why the session's signalling loop ended (set as it ends, before the clean-up).
    pub ended: Option<String>,
    pub agent_track_published: bool,
    pub commands: Option<mpsc::UnboundedSender<Command>>,
}

#[derive(Debug, Default)]
pub struct State {
    pub twirp: Vec<TwirpCall>,
    /// Rooms and their creation time (Unix ms).
    pub rooms: HashMap<String, i64>,
    pub deleted: Vec<String>,
    /// Rooms deleted while a participant's session was still open (its leave not yet read).
    pub deleted_occupied: Vec<String>,
    pub dispatches: Vec<(String, String)>,
    pub sessions: Vec<Session>,
    /// Joins refused (bad token), with why.
    pub refused: Vec<String>,
}

pub struct MockLivekit {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub config: MockConfig,
    task: tokio::task::JoinHandle<()>,
}

impl MockLivekit {
    pub async fn start(config: MockConfig) -> MockLivekit {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::new(http::Shared {
            config: config.clone(),
            state: Arc::clone(&state),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(http::serve(Arc::clone(&shared), stream));
            }
        });
        MockLivekit {
            url: format!("ws://{addr}"),
            addr,
            state,
            config,
            task,
        }
    }

    /// Waits (bounded) until `cond` holds for the state; panics with `what` otherwise.
    pub async fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let s = self.state.lock().unwrap();
                panic!(
                    "mock LiveKit: timed out waiting for {what}; sessions: {:#?}; twirp: {:?}; refused: {:?}",
                    s.sessions
                        .iter()
                        .map(|x| (x.room.clone(), x.audio_packets, x.dtmf.clone(), x.left.is_some(), x.ended.clone(), x.publisher_offer.is_some(), x.candidates_received, x.subscriber_answers.clone(), x.offers_sent))
                        .collect::<Vec<_>>(),
                    s.twirp.iter().map(|t| (&t.method, t.status)).collect::<Vec<_>>(),
                    s.refused
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Gives session `i` a command.
    pub fn command(&self, i: usize, cmd: Command) {
        let s = self.state.lock().unwrap();
        let tx = s.sessions[i]
            .commands
            .as_ref()
            .expect("session has commands");
        tx.send(cmd).expect("session alive");
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for MockLivekit {
    fn drop(&mut self) {
        self.task.abort();
    }
}
