//! The LiveKit agent: each call becomes a room where the dispatched agent talks to the caller.
//!
//! The gateway does for an inbound call what LiveKit's SIP service does: it creates a room
//! (`<room_prefix><id>`), dispatches the configured agent into it, joins as the SIP participant
//! (kind `sip`, identity `sip_<caller>`, the `sip.*` attributes), publishes the caller's audio
//! as Opus and plays the room's audio to the caller. The call rings until the agent's audio is
//! subscribed and is answered then.
//!
//! The media runs in the call's own task: the [`LivekitSession`] the call polls owns the peer
//! connections, their sockets and the codecs (webrtc-rs's sans-IO core), so a frame goes from
//! the caller's RTP socket to the room's in one wake-up. One driver task per call ([`driver`])
//! owns the `/rtc` WebSocket and the Twirp calls, and exchanges the rare signalling messages
//! with the session over two channels.

pub mod api;
mod driver;
pub mod media;
pub mod peer;
mod session;
pub mod signal;
mod socket;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Agent, AgentSession, CallInfo, ConnectFuture, SetupPolicy};
use crate::config::LivekitSpec;
pub use session::LivekitSession;

pub struct LivekitAgent {
    spec: Arc<LivekitSpec>,
}

impl LivekitAgent {
    pub fn new(spec: LivekitSpec) -> LivekitAgent {
        super::install_crypto_provider();
        LivekitAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for LivekitAgent {
    /// The returned future is the session itself being set up: polled by the call while it
    /// rings, it runs ICE and DTLS on the call's task and resolves once the agent's audio is
    /// subscribed. Dropping it (the caller gave up) ends the driver, which leaves the room.
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let session = LivekitSession::new(control_rx, report_tx);
        let room = token::room_name(&self.spec.room_prefix);
        tracing::info!(%room, "joining LiveKit room");
        let driver = driver::Driver::new(
            Arc::clone(&self.spec),
            call.clone(),
            room,
            control_tx,
            report_rx,
        );
        tokio::spawn(driver.run().instrument(tracing::Span::current()));
        Box::pin(async move {
            let mut session = session?;
            std::future::poll_fn(|cx| session.poll_setup(cx)).await?;
            Ok(Box::new(session) as Box<dyn AgentSession>)
        })
    }

    fn kind(&self) -> &'static str {
        "livekit"
    }

    /// Like LiveKit's SIP service: ring at once, re-send 180 every second (carriers drop calls
    /// that ring silently), answer when the agent's audio is there. A room that never gets its
    /// agent is "no answer" (480); a server that cannot be reached is 503 so Twilio fails over.
    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy {
            ring_after: Duration::ZERO,
            ring_every: Some(Duration::from_secs(1)),
            timeout: self.spec.ringing_timeout,
            timeout_status: 480,
            error_status: 503,
        }
    }
}
