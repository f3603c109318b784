//! The caller's playout queue of a far end that sends faster than real time ([`Playout`],
//! shared by every WebSocket agent), and the call's side of an agent whose far end lives in a
//! driver task of its own (Hume EVI, [`RemoteSession`]): the queue stays on the call's side, so
//! that a barge-in empties it the moment the call task next looks, without waiting on the
//! driver. The two talk through channels: caller audio up a bounded one (dropped when full, so
//! the call never blocks), caller events and played marks up an unbounded one, and frames,
//! marks, events and the "clear" marker down, in play order.

use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{
    AgentError, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallerEvent, ConnectFuture,
};

/// Caller frames waiting for the driver: one second. Beyond that the driver is stuck (a socket
/// that does not drain) and old audio is worth less than the call's own progress.
pub(crate) const UP_AUDIO_FRAMES: usize = 50;
/// Frames (and marks) queued for the caller. Far ends send faster than real time; a long
/// reply at 8 kHz is still small (2 minutes is 6000 frames, ~4 MB), and beyond it something
/// is wrong.
pub(crate) const MAX_PLAYOUT: usize = 6000;

/// What a driver hands down to the call, in play order.
#[allow(clippy::large_enum_variant)] // frames are the common case; boxing them would allocate
#[derive(Debug)]
pub enum Down {
    Frame(AudioFrame),
    /// A far end's marker: reported back up as [`Up::Played`] once every frame queued before
    /// it has gone to the caller (at once when nothing is queued, or when a clear drops them).
    Mark(String),
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

/// What the call tells its driver besides audio.
#[derive(Debug, PartialEq, Eq)]
pub enum Up {
    Caller(CallerEvent),
    /// The audio before this mark has been played (or dropped by a clear).
    Played(String),
    /// A [`Down::Clear`] was done. Counting every frame ever handed down from 0, frames
    /// before `heard` had left the queue (played, or dropped by an earlier clear) and the rest
    /// were dropped now: the caller's playout stopped right before frame `heard`. A far end
    /// that must know what the caller heard (OpenAI's truncation) reads it here.
    Cleared {
        heard: u64,
    },
}

#[allow(clippy::large_enum_variant)] // as for `Down`
enum Queued {
    Frame(AudioFrame),
    Mark(String),
}

/// The channels a driver keeps; the session holds the other ends.
pub(crate) struct DriverEnds {
    pub audio_rx: mpsc::Receiver<AudioFrame>,
    pub up_rx: mpsc::UnboundedReceiver<Up>,
    pub down_tx: mpsc::UnboundedSender<Down>,
}

/// Says whether the far end is ready (the call is answered then) or why it is not.
pub(crate) type ReadyTx = oneshot::Sender<Result<(), String>>;

/// Starts one conversation whose far end a driver task runs: `driver` gets the channel ends
/// and says on the [`ReadyTx`] when the far end is ready. The task runs inside the call's span,
/// so its lines carry the Call-ID.
pub(crate) fn connect<F>(
    far_end: &'static str,
    driver: impl FnOnce(DriverEnds, ReadyTx) -> F,
) -> ConnectFuture
where
    F: Future<Output = ()> + Send + 'static,
{
    let (session, ends) = RemoteSession::new(far_end);
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(driver(ends, ready_tx).instrument(tracing::Span::current()));
    Box::pin(async move {
        match ready_rx.await {
            Ok(Ok(())) => Ok(Box::new(session) as Box<dyn AgentSession>),
            Ok(Err(reason)) => Err(AgentError::Unreachable(reason)),
            Err(_) => Err(AgentError::Unreachable(format!(
                "the {far_end} driver stopped"
            ))),
        }
    })
}

/// The caller's playout queue of a far end that sends faster than real time: frames, marks and
/// events in play order, a clear that drops them at once, and the end after what is queued.
/// Marks reaching the head and clears are reported through `up`.
pub(crate) struct Playout {
    /// Names the far end in log lines ("EVI", "stream bot").
    far_end: &'static str,
    /// Never starts with a mark: marks reaching the head are reported at once.
    queue: VecDeque<Queued>,
    events: VecDeque<AgentEvent>,
    ending: Option<(String, bool)>,
    hangup_reported: bool,
    down_dropped: u64,
    /// Frames handed down that have left the queue (played, or dropped when it was full).
    taken: u64,
}

impl Playout {
    pub(crate) fn new(far_end: &'static str) -> Playout {
        Playout {
            far_end,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            ending: None,
            hangup_reported: false,
            down_dropped: 0,
            taken: 0,
        }
    }

    /// One item from the far end, in play order.
    pub(crate) fn down(&mut self, d: Down, up: &mut impl FnMut(Up)) {
        match d {
            Down::Frame(f) => {
                if self.queue.len() < MAX_PLAYOUT {
                    self.queue.push_back(Queued::Frame(f));
                } else {
                    self.taken += 1;
                    self.down_dropped += 1;
                    if self.down_dropped == 1 {
                        tracing::warn!(
                            far_end = self.far_end,
                            "playout queue full: dropping speech"
                        );
                    }
                }
            }
            Down::Mark(name) => {
                // A full queue (only a flood fills it) has lost audio anyway: the mark is
                // reported at once rather than stored without bound.
                if self.queue.is_empty() || self.queue.len() >= MAX_PLAYOUT {
                    up(Up::Played(name));
                } else {
                    self.queue.push_back(Queued::Mark(name));
                }
            }
            Down::Clear => {
                let mut dropped = 0;
                for item in std::mem::take(&mut self.queue) {
                    match item {
                        Queued::Frame(_) => dropped += 1,
                        Queued::Mark(name) => up(Up::Played(name)),
                    }
                }
                // Reported before `taken` counts the dropped frames: they were not heard.
                up(Up::Cleared { heard: self.taken });
                self.taken += dropped;
                tracing::debug!(dropped, "barge-in: playout cleared");
                self.events.push_back(AgentEvent::ClearPlayout);
            }
            Down::Event(e) => self.events.push_back(e),
            Down::End { reason, failed } => {
                self.ending.get_or_insert((reason, failed));
            }
        }
    }

    /// The far end is gone without saying why.
    pub(crate) fn far_end_gone(&mut self) {
        let far_end = self.far_end;
        self.ending
            .get_or_insert_with(|| (format!("the {far_end} driver stopped"), true));
    }

    /// The next output for the call; `None` while there is nothing, `Some(None)` once the
    /// conversation is over and said so.
    pub(crate) fn poll(
        &mut self,
        want_audio: bool,
        up: &mut impl FnMut(Up),
    ) -> Option<Option<AgentOutput>> {
        if let Some(e) = self.events.pop_front() {
            return Some(Some(AgentOutput::Event(e)));
        }
        if want_audio {
            if let Some(Queued::Frame(f)) = self.queue.pop_front() {
                self.taken += 1;
                // Report the marks that reached the head of the queue.
                while let Some(Queued::Mark(_)) = self.queue.front() {
                    if let Some(Queued::Mark(name)) = self.queue.pop_front() {
                        up(Up::Played(name));
                    }
                }
                return Some(Some(AgentOutput::Audio(f)));
            }
        }
        if self.queue.is_empty() {
            if let Some((reason, failed)) = &self.ending {
                if self.hangup_reported {
                    return Some(None);
                }
                self.hangup_reported = true;
                let reason = reason.clone();
                let event = match failed {
                    true => AgentEvent::Failed { reason },
                    false => AgentEvent::Hangup { reason },
                };
                return Some(Some(AgentOutput::Event(event)));
            }
        }
        None
    }

    pub(crate) fn audio_queued(&self) -> bool {
        !self.queue.is_empty()
    }
}

/// The call's side of one conversation with a remote far end.
pub struct RemoteSession {
    audio_tx: mpsc::Sender<AudioFrame>,
    up_tx: mpsc::UnboundedSender<Up>,
    down_rx: mpsc::UnboundedReceiver<Down>,
    playout: Playout,
    up_dropped: u64,
}

impl RemoteSession {
    /// A session and the ends its driver keeps.
    pub(crate) fn new(far_end: &'static str) -> (RemoteSession, DriverEnds) {
        Self::with_capacity(far_end, UP_AUDIO_FRAMES)
    }

    fn with_capacity(far_end: &'static str, up_frames: usize) -> (RemoteSession, DriverEnds) {
        let (audio_tx, audio_rx) = mpsc::channel(up_frames);
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let session = RemoteSession {
            audio_tx,
            up_tx,
            down_rx,
            playout: Playout::new(far_end),
            up_dropped: 0,
        };
        let ends = DriverEnds {
            audio_rx,
            up_rx,
            down_tx,
        };
        (session, ends)
    }

    /// Takes everything the driver has sent so far; registers the waker when there is none.
    fn take_down(&mut self, cx: &mut Context<'_>) {
        // A closed channel means the driver already ended; nobody waits for the report.
        let up_tx = &self.up_tx;
        let mut up = |u| {
            let _ = up_tx.send(u);
        };
        loop {
            match self.down_rx.poll_recv(cx) {
                Poll::Ready(Some(d)) => self.playout.down(d, &mut up),
                Poll::Ready(None) => return self.playout.far_end_gone(),
                Poll::Pending => return,
            }
        }
    }
}

impl AgentSession for RemoteSession {
    fn send_audio(&mut self, frame: &AudioFrame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.audio_tx.try_send(frame.clone()) {
            self.up_dropped += 1;
            if self.up_dropped % 250 == 1 {
                tracing::warn!(
                    far_end = self.playout.far_end,
                    dropped = self.up_dropped,
                    "the far end is not taking caller audio fast enough: frames dropped"
                );
            }
        }
    }

    fn send_event(&mut self, event: CallerEvent) {
        // A closed channel means the driver already ended; nothing to tell it.
        let _ = self.up_tx.send(Up::Caller(event));
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        self.take_down(cx);
        let up_tx = &self.up_tx;
        let mut up = |u| {
            let _ = up_tx.send(u);
        };
        match self.playout.poll(want_audio, &mut up) {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }

    fn audio_queued(&self) -> bool {
        self.playout.audio_queued()
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
