//! The Hume EVI agent: the caller talks to Hume's Empathic Voice Interface over its chat
//! WebSocket (reference/hume-evi.md).
//!
//! Three layers:
//! - [`protocol`]: the JSON messages, as serde types matching Hume's SDK models;
//! - [`core`] (with [`playout`]): the sans-IO session, which decides everything;
//! - `driver`: one tokio task per call that owns the WebSocket(s) and runs the core.
//!
//! The call polls a [`HumeSession`], which keeps the caller's playout queue on the call's side
//! so that a barge-in empties it the moment the call task next looks, without waiting on the
//! driver. The two talk through channels: caller audio up a bounded one (dropped when full,
//! so the call never blocks), frames, events and the "clear" marker down in play order.

pub mod core;
mod driver;
pub mod playout;
pub mod protocol;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{
    Agent, AgentError, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallInfo, CallerEvent,
    ConnectFuture, SetupPolicy,
};
use crate::config::HumeSpec;

/// Caller frames waiting for the driver: one second. Beyond that the driver is stuck (a socket
/// that does not drain) and old audio is worth less than the call's own progress.
const UP_AUDIO_FRAMES: usize = 50;
/// Frames queued for the caller. EVI sends faster than real time; a long reply at 8 kHz is
/// still small (2 minutes is 6000 frames, ~4 MB), and beyond it something is wrong.
const MAX_PLAYOUT_FRAMES: usize = 6000;

/// What the driver hands down to the call, in play order.
#[allow(clippy::large_enum_variant)] // frames are the common case; boxing them would allocate
#[derive(Debug)]
enum Down {
    Frame(AudioFrame),
    /// Barge-in: everything queued before this marker is dropped.
    Clear,
    Event(AgentEvent),
    /// The conversation is over: play what is queued, then hang up (with a failure cause
    /// when `failed`).
    End {
        reason: String,
        failed: bool,
    },
}

/// `kind = "hume"`.
pub struct HumeAgent {
    spec: Arc<HumeSpec>,
}

impl HumeAgent {
    pub fn new(spec: HumeSpec) -> HumeAgent {
        super::install_crypto_provider();
        HumeAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for HumeAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let (audio_tx, audio_rx) = mpsc::channel(UP_AUDIO_FRAMES);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = driver::Driver::new(
            self.spec.clone(),
            call,
            driver::Channels {
                audio_rx,
                events_rx,
                down_tx,
                ready_tx,
            },
        );
        // Inside the call's span, so the driver's lines carry the Call-ID.
        tokio::spawn(driver.run().instrument(tracing::Span::current()));
        Box::pin(async move {
            match ready_rx.await {
                Ok(Ok(())) => Ok(Box::new(HumeSession::new(audio_tx, events_tx, down_rx))
                    as Box<dyn AgentSession>),
                Ok(Err(reason)) => Err(AgentError::Unreachable(reason)),
                Err(_) => Err(AgentError::Unreachable("the EVI driver stopped".into())),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "hume"
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy {
            // Ring at once: the caller hears progress while the socket opens.
            ring_after: std::time::Duration::ZERO,
            ring_every: None,
            timeout: self.spec.connect_timeout,
            // 5xx both ways, so Twilio fails over to the next route.
            timeout_status: 503,
            error_status: 503,
        }
    }
}

/// The call's side of one EVI conversation.
pub struct HumeSession {
    audio_tx: mpsc::Sender<AudioFrame>,
    events_tx: mpsc::UnboundedSender<CallerEvent>,
    down_rx: mpsc::UnboundedReceiver<Down>,
    queue: VecDeque<AudioFrame>,
    events: VecDeque<AgentEvent>,
    ending: Option<(String, bool)>,
    hangup_reported: bool,
    up_dropped: u64,
    down_dropped: u64,
}

impl HumeSession {
    fn new(
        audio_tx: mpsc::Sender<AudioFrame>,
        events_tx: mpsc::UnboundedSender<CallerEvent>,
        down_rx: mpsc::UnboundedReceiver<Down>,
    ) -> HumeSession {
        HumeSession {
            audio_tx,
            events_tx,
            down_rx,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            ending: None,
            hangup_reported: false,
            up_dropped: 0,
            down_dropped: 0,
        }
    }

    /// Takes everything the driver has sent so far; registers the waker when there is none.
    fn take_down(&mut self, cx: &mut Context<'_>) {
        loop {
            match self.down_rx.poll_recv(cx) {
                Poll::Ready(Some(Down::Frame(f))) => {
                    if self.queue.len() < MAX_PLAYOUT_FRAMES {
                        self.queue.push_back(f);
                    } else {
                        self.down_dropped += 1;
                        if self.down_dropped == 1 {
                            tracing::warn!("EVI playout queue full: dropping speech");
                        }
                    }
                }
                Poll::Ready(Some(Down::Clear)) => {
                    let dropped = self.queue.len();
                    self.queue.clear();
                    tracing::debug!(dropped, "barge-in: playout cleared");
                    self.events.push_back(AgentEvent::ClearPlayout);
                }
                Poll::Ready(Some(Down::Event(e))) => self.events.push_back(e),
                Poll::Ready(Some(Down::End { reason, failed })) => {
                    self.ending.get_or_insert((reason, failed));
                }
                Poll::Ready(None) => {
                    self.ending
                        .get_or_insert_with(|| ("the EVI driver stopped".into(), true));
                    return;
                }
                Poll::Pending => return,
            }
        }
    }
}

impl AgentSession for HumeSession {
    fn send_audio(&mut self, frame: &AudioFrame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.audio_tx.try_send(frame.clone()) {
            self.up_dropped += 1;
            if self.up_dropped % 250 == 1 {
                tracing::warn!(
                    dropped = self.up_dropped,
                    "EVI is not taking caller audio fast enough: frames dropped"
                );
            }
        }
    }

    fn send_event(&mut self, event: CallerEvent) {
        // A closed channel means the driver already ended; nothing to tell it.
        let _ = self.events_tx.send(event);
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        self.take_down(cx);
        if let Some(e) = self.events.pop_front() {
            return Poll::Ready(Some(AgentOutput::Event(e)));
        }
        if want_audio {
            if let Some(f) = self.queue.pop_front() {
                return Poll::Ready(Some(AgentOutput::Audio(f)));
            }
        }
        if self.queue.is_empty() {
            if let Some((reason, failed)) = &self.ending {
                if self.hangup_reported {
                    return Poll::Ready(None);
                }
                self.hangup_reported = true;
                let reason = reason.clone();
                let event = match failed {
                    true => AgentEvent::Failed { reason },
                    false => AgentEvent::Hangup { reason },
                };
                return Poll::Ready(Some(AgentOutput::Event(event)));
            }
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

    fn session() -> (
        HumeSession,
        mpsc::Receiver<AudioFrame>,
        mpsc::UnboundedSender<Down>,
    ) {
        let (audio_tx, audio_rx) = mpsc::channel(2);
        let (events_tx, _events_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        // The events receiver may drop: sending to it is then a no-op.
        (
            HumeSession::new(audio_tx, events_tx, down_rx),
            audio_rx,
            down_tx,
        )
    }

    fn poll(s: &mut HumeSession, want: bool) -> Poll<Option<AgentOutput>> {
        s.poll_output(&mut Context::from_waker(Waker::noop()), want)
    }

    fn frame(v: i16) -> AudioFrame {
        AudioFrame::from_samples(8000, &[v; 160])
    }

    /// A far end that streams faster than real time without end: the queue stops at two
    /// minutes of speech (memory bounded), the excess is dropped and counted, and what is
    /// queued still plays in order.
    #[test]
    fn a_flood_of_speech_is_capped_at_two_minutes() {
        let (mut s, _up, down) = session();
        for i in 0..MAX_PLAYOUT_FRAMES + 500 {
            down.send(Down::Frame(frame((i % 1000) as i16))).unwrap();
        }
        assert!(poll(&mut s, false).is_pending());
        assert_eq!(s.queue.len(), MAX_PLAYOUT_FRAMES);
        assert_eq!(s.down_dropped, 500);
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], 0),
            other => panic!("{other:?}"),
        }
        // Room again: new speech is queued behind the old.
        down.send(Down::Frame(frame(-1))).unwrap();
        assert!(poll(&mut s, false).is_pending());
        assert_eq!(s.queue.back().map(|f| f.samples()[0]), Some(-1));
    }

    #[test]
    fn frames_leave_only_on_the_paced_clock_and_a_clear_drops_them_at_once() {
        let (mut s, _up, down) = session();
        for v in 1..=3 {
            down.send(Down::Frame(frame(v))).unwrap();
        }
        assert!(poll(&mut s, false).is_pending());
        assert!(s.audio_queued());
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], 1),
            other => panic!("{other:?}"),
        }
        down.send(Down::Clear).unwrap();
        down.send(Down::Frame(frame(9))).unwrap();
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::ClearPlayout))) => {}
            other => panic!("{other:?}"),
        }
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], 9),
            other => panic!("{other:?}"),
        }
        assert!(poll(&mut s, true).is_pending());
    }

    #[test]
    fn the_end_comes_after_the_queue_has_played() {
        let (mut s, _up, down) = session();
        down.send(Down::Frame(frame(1))).unwrap();
        down.send(Down::End {
            reason: "EVI hung up".into(),
            failed: false,
        })
        .unwrap();
        drop(down);
        assert!(poll(&mut s, false).is_pending(), "a frame is still queued");
        assert!(matches!(
            poll(&mut s, true),
            Poll::Ready(Some(AgentOutput::Audio(_)))
        ));
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::Hangup { reason }))) => {
                assert_eq!(reason, "EVI hung up")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(poll(&mut s, true), Poll::Ready(None)));
    }

    #[test]
    fn a_vanished_driver_ends_the_session_with_a_reason() {
        let (mut s, _up, down) = session();
        drop(down);
        match poll(&mut s, false) {
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::Failed { reason }))) => {
                assert!(reason.contains("driver stopped"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn caller_audio_never_blocks_and_drops_are_counted() {
        let (mut s, mut up, _down) = session();
        for v in 0..5 {
            s.send_audio(&frame(v));
        }
        assert_eq!(s.up_dropped, 3, "capacity 2");
        assert_eq!(up.try_recv().unwrap().samples()[0], 0);
    }
}
