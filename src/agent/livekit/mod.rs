//! The LiveKit agent: each call becomes a room where the dispatched agent talks to the caller.
//!
//! The gateway does for an inbound call what LiveKit's SIP service does: it creates a room
//! (`<room_prefix><id>`), dispatches the configured agent into it, joins as the SIP participant
//! (kind `sip`, identity `sip_<caller>`, the `sip.*` attributes), publishes the caller's audio
//! as Opus and plays the room's audio to the caller. The call rings until the agent's audio is
//! subscribed and is answered then.
//!
//! One driver task per call ([`driver`]) owns the WebSocket, the peer connections and the
//! codecs; the [`LivekitSession`] the call polls only holds channels and the playout queue, so
//! nothing it does can block the call.

pub mod api;
mod driver;
pub mod media;
pub mod peer;
pub mod signal;
pub mod token;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{
    Agent, AgentError, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallInfo, CallerEvent,
    ConnectFuture, SetupPolicy,
};
use crate::config::LivekitSpec;

/// Caller frames queued towards the driver; beyond this they are dropped (the driver is stuck,
/// and the call must not be).
const UPLINK_QUEUE: usize = 16;
/// Room frames queued for the caller: beyond 200 ms the oldest go, so latency stays put when
/// the call's send clock runs slower than the room's.
const PLAYOUT_QUEUE: usize = 10;

pub struct LivekitAgent {
    spec: Arc<LivekitSpec>,
}

impl LivekitAgent {
    pub fn new(spec: LivekitSpec) -> LivekitAgent {
        install_crypto_provider();
        LivekitAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for LivekitAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let (session, ends) = LivekitSession::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let room = token::room_name(&self.spec.room_prefix);
        tracing::info!(%room, "joining LiveKit room");
        let driver = driver::Driver::new(Arc::clone(&self.spec), call.clone(), room, ends);
        tokio::spawn(driver.run(ready_tx).instrument(tracing::Span::current()));
        Box::pin(async move {
            match ready_rx.await {
                Ok(Ok(())) => Ok(Box::new(session) as Box<dyn AgentSession>),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(AgentError::Unreachable("livekit: session ended".into())),
            }
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

/// `wss://` and `https://` to LiveKit go through rustls, which is built here without a default
/// crypto provider (ring is chosen to avoid aws-lc's C build): without one installed, the
/// first TLS connection would panic.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already (by the binary or a test): that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The driver's ends of a session's channels.
pub(crate) struct DriverEnds {
    pub uplink: mpsc::Receiver<AudioFrame>,
    pub caller_events: mpsc::UnboundedReceiver<CallerEvent>,
    pub playout: mpsc::Sender<AudioFrame>,
    pub agent_events: mpsc::UnboundedSender<AgentEvent>,
}

/// What the call polls. Dropping it (the call ended, or gave up ringing) closes the channels,
/// which the driver takes as a hang-up.
pub struct LivekitSession {
    uplink: mpsc::Sender<AudioFrame>,
    caller_events: mpsc::UnboundedSender<CallerEvent>,
    playout_rx: mpsc::Receiver<AudioFrame>,
    events_rx: mpsc::UnboundedReceiver<AgentEvent>,
    queue: VecDeque<AudioFrame>,
    dropped_uplink: u64,
    closed: bool,
}

impl LivekitSession {
    pub(crate) fn new() -> (LivekitSession, DriverEnds) {
        let (uplink, uplink_rx) = mpsc::channel(UPLINK_QUEUE);
        let (caller_events, caller_events_rx) = mpsc::unbounded_channel();
        let (playout, playout_rx) = mpsc::channel(PLAYOUT_QUEUE);
        let (agent_events, events_rx) = mpsc::unbounded_channel();
        (
            LivekitSession {
                uplink,
                caller_events,
                playout_rx,
                events_rx,
                queue: VecDeque::with_capacity(PLAYOUT_QUEUE),
                dropped_uplink: 0,
                closed: false,
            },
            DriverEnds {
                uplink: uplink_rx,
                caller_events: caller_events_rx,
                playout,
                agent_events,
            },
        )
    }
}

impl AgentSession for LivekitSession {
    fn send_audio(&mut self, frame: &AudioFrame) {
        if self.uplink.try_send(frame.clone()).is_err() {
            self.dropped_uplink += 1;
            if self.dropped_uplink.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_uplink,
                    "livekit uplink full; caller audio dropped"
                );
            }
        }
    }

    fn send_event(&mut self, event: CallerEvent) {
        let _ = self.caller_events.send(event);
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        let events_done = match self.events_rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => return Poll::Ready(Some(AgentOutput::Event(e))),
            Poll::Ready(None) => true,
            Poll::Pending => false,
        };
        if !self.closed {
            loop {
                match self.playout_rx.poll_recv(cx) {
                    Poll::Ready(Some(f)) => {
                        if self.queue.len() == PLAYOUT_QUEUE {
                            self.queue.pop_front();
                        }
                        self.queue.push_back(f);
                    }
                    Poll::Ready(None) => {
                        self.closed = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if want_audio {
            if let Some(f) = self.queue.pop_front() {
                return Poll::Ready(Some(AgentOutput::Audio(f)));
            }
        }
        if events_done && self.closed && self.queue.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn audio_queued(&self) -> bool {
        !self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(s: &mut LivekitSession, want: bool) -> Poll<Option<AgentOutput>> {
        s.poll_output(&mut Context::from_waker(Waker::noop()), want)
    }

    #[test]
    fn playout_queue_is_bounded_and_events_come_first() {
        let (mut s, ends) = LivekitSession::new();
        for i in 0..PLAYOUT_QUEUE as i16 {
            ends.playout
                .try_send(AudioFrame::from_samples(8000, &[i; 160]))
                .unwrap();
        }
        assert!(poll(&mut s, false).is_pending());
        assert!(s.audio_queued());
        for i in 0..5i16 {
            ends.playout
                .try_send(AudioFrame::from_samples(8000, &[100 + i; 160]))
                .unwrap();
        }
        ends.agent_events.send(AgentEvent::Dtmf('7')).unwrap();
        assert!(matches!(
            poll(&mut s, true),
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::Dtmf('7'))))
        ));
        // The five oldest frames were dropped to keep 200 ms.
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], 5),
            other => panic!("expected audio, got {other:?}"),
        }
        drop(ends);
        let mut frames = 0;
        while let Poll::Ready(Some(AgentOutput::Audio(_))) = poll(&mut s, true) {
            frames += 1;
        }
        assert_eq!(frames, PLAYOUT_QUEUE - 1);
        assert!(matches!(poll(&mut s, true), Poll::Ready(None)));
    }

    #[test]
    fn uplink_never_blocks_and_dropping_the_session_closes_the_driver_side() {
        let (mut s, mut ends) = LivekitSession::new();
        for _ in 0..UPLINK_QUEUE + 5 {
            s.send_audio(&AudioFrame::silence(8000));
        }
        assert_eq!(s.dropped_uplink, 5);
        s.send_event(CallerEvent::Answered);
        assert_eq!(
            ends.caller_events.try_recv().unwrap(),
            CallerEvent::Answered
        );
        drop(s);
        let mut n = 0;
        while ends.uplink.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, UPLINK_QUEUE);
        assert!(ends.uplink.try_recv().is_err());
        assert!(matches!(
            ends.caller_events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
