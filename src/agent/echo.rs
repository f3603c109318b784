//! The echo agent: plays the caller's audio straight back. It lets anyone try the gateway with
//! no account, and it is what the load harness measures round-trip latency against.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use super::{
    Agent, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallInfo, CallerEvent, ConnectFuture,
};

/// Frames held back when the call's send clock is slower than the caller (clock drift): beyond
/// this the oldest is dropped so the echo never lags by more than 200 ms.
const MAX_QUEUED: usize = 10;

#[derive(Default)]
pub struct EchoAgent;

impl Agent for EchoAgent {
    fn connect(&self, _call: &CallInfo) -> ConnectFuture {
        Box::pin(async { Ok(Box::new(EchoSession::new()) as Box<dyn AgentSession>) })
    }

    fn kind(&self) -> &'static str {
        "echo"
    }
}

pub struct EchoSession {
    queue: VecDeque<AudioFrame>,
    events: VecDeque<AgentEvent>,
    ended: bool,
    waker: Option<Waker>,
}

impl EchoSession {
    pub fn new() -> EchoSession {
        EchoSession {
            // Echo keeps one or two frames in flight; grow only if the send clock lags.
            queue: VecDeque::with_capacity(2),
            events: VecDeque::new(),
            ended: false,
            waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Default for EchoSession {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentSession for EchoSession {
    fn audio_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    fn send_audio(&mut self, frame: &AudioFrame) {
        if self.queue.len() == MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(frame.clone());
        self.wake();
    }

    fn send_event(&mut self, event: CallerEvent) {
        match event {
            // Echo key presses too, so DTMF round trips are testable end to end.
            CallerEvent::Dtmf(d) => self.events.push_back(AgentEvent::Dtmf(d)),
            CallerEvent::Hangup => self.ended = true,
            CallerEvent::Answered => {}
        }
        self.wake();
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        if let Some(e) = self.events.pop_front() {
            return Poll::Ready(Some(AgentOutput::Event(e)));
        }
        if want_audio {
            if let Some(f) = self.queue.pop_front() {
                return Poll::Ready(Some(AgentOutput::Audio(f)));
            }
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(s: &mut EchoSession, want: bool) -> Poll<Option<AgentOutput>> {
        let mut cx = Context::from_waker(Waker::noop());
        s.poll_output(&mut cx, want)
    }

    #[test]
    fn echoes_frames_in_order_only_when_asked() {
        let mut s = EchoSession::new();
        s.send_audio(&AudioFrame::from_samples(8000, &[1; 160]));
        s.send_audio(&AudioFrame::from_samples(8000, &[2; 160]));
        assert!(poll(&mut s, false).is_pending());
        for want in [1, 2] {
            match poll(&mut s, true) {
                Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], want),
                other => panic!("expected audio, got {other:?}"),
            }
        }
        assert!(poll(&mut s, true).is_pending());
    }

    #[test]
    fn queue_is_bounded_dropping_the_oldest() {
        let mut s = EchoSession::new();
        for i in 0..(MAX_QUEUED as i16 + 5) {
            s.send_audio(&AudioFrame::from_samples(8000, &[i; 160]));
        }
        match poll(&mut s, true) {
            Poll::Ready(Some(AgentOutput::Audio(f))) => assert_eq!(f.samples()[0], 5),
            other => panic!("expected audio, got {other:?}"),
        }
    }

    #[test]
    fn dtmf_is_echoed_and_hangup_ends_the_session() {
        let mut s = EchoSession::new();
        s.send_event(CallerEvent::Dtmf('5'));
        match poll(&mut s, false) {
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::Dtmf('5')))) => {}
            other => panic!("expected dtmf, got {other:?}"),
        }
        s.send_event(CallerEvent::Hangup);
        assert!(matches!(poll(&mut s, true), Poll::Ready(None)));
    }
}
