//! One answered call's media as the reactor runs it, sans-IO: the media session and the agent
//! session, with the byte counters and the once-a-second report. Datagrams come in through
//! [`MediaCall::handle_datagram`]; [`MediaCall::service`] hands what it sends to a `transmit`
//! function, which the reactor points at the call's socket (and a bench at memory). Built by the
//! call task, handed to a reactor with its socket, and handed back at teardown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::agent::{AgentEvent, AgentOutput, AgentSession, CallerEvent};
use crate::call::registry::{Registry, RtpStats, TranscriptLine};
use crate::media::session::MediaSession;
use crate::metrics::{Metrics, RtpDelta};

/// Where a reactor publishes what its calls do: the admin API's registry and the metrics.
#[derive(Clone)]
pub struct Sinks {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

/// The media side decided the call must end: the call task sends BYE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hangup {
    pub reason: String,
    /// The `sipbridge_calls_total` outcome.
    pub outcome: &'static str,
}

pub struct MediaCall {
    pub session: MediaSession,
    pub agent: Box<dyn AgentSession>,
    call_id: String,
    /// The agent's kind, for metrics labels.
    kind: &'static str,
    hangups: mpsc::UnboundedSender<Hangup>,
    hangup_sent: bool,
    agent_ended: bool,
    bytes_sent: u64,
    bytes_received: u64,
    /// What the metrics were last told: they get the difference once a second, never per
    /// packet.
    reported: RtpDelta,
    recv_errors: u64,
}

impl MediaCall {
    /// The call task reads hang-up decisions from the returned receiver; the media runs until
    /// it is taken back.
    pub fn new(
        session: MediaSession,
        agent: Box<dyn AgentSession>,
        call_id: String,
        kind: &'static str,
    ) -> (MediaCall, mpsc::UnboundedReceiver<Hangup>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let call = MediaCall {
            session,
            agent,
            call_id,
            kind,
            hangups: tx,
            hangup_sent: false,
            agent_ended: false,
            bytes_sent: 0,
            bytes_received: 0,
            reported: RtpDelta::default(),
            recv_errors: 0,
        };
        (call, rx)
    }

    /// Reads that returned an error instead of a datagram.
    pub fn recv_errors(&self) -> u64 {
        self.recv_errors
    }

    /// A datagram arrived on the call's RTP port (decrypted in place on an SRTP call).
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        self.bytes_received += data.len() as u64;
        self.session.on_datagram(now, src, data);
    }

    /// A read of the call's socket returned an error (an ICMP error the kernel queued on it).
    pub fn handle_socket_error(&mut self, e: &std::io::Error) {
        if self.recv_errors == 0 {
            tracing::warn!(error = %e, "RTP socket error (logged once per call)");
        }
        self.recv_errors += 1;
    }

    /// Moves audio and events between the media session and the agent and sends what is due.
    /// `rearm` is called right before the agent is polled: wake-ups the agent raised earlier in
    /// this pass (as it took the caller's frame) are answered by that poll.
    /// `transmit` sends a packet and returns the bytes sent (0 when it was dropped).
    pub fn service(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
        rearm: impl Fn(),
        sinks: &Sinks,
        transmit: &mut impl FnMut(SocketAddr, &[u8]) -> usize,
    ) {
        // Caller -> agent.
        while let Some(frame) = self.session.poll_caller_audio(now) {
            self.agent.send_audio(&frame);
        }
        if let Some(d) = self.session.poll_dtmf() {
            tracing::info!(digit = %d, "DTMF from caller");
            self.agent.send_event(CallerEvent::Dtmf(d));
        }
        // Agent -> caller: everything the agent has ready, audio only while a slot is open.
        rearm();
        let mut hangup = None;
        while hangup.is_none() {
            let want = self.session.slot_open(now);
            match self.agent.poll_output(cx, want) {
                Poll::Ready(out) => hangup = self.on_agent_output(now, out, sinks, transmit),
                Poll::Pending => break,
            }
        }
        if let Some((to, pkt)) = self.session.handle_timeout(now) {
            self.bytes_sent += transmit(to, pkt) as u64;
        }
        if let Some(timeout) = self.session.timed_out(now) {
            if !self.hangup_sent {
                tracing::warn!(?timeout, "media timeout; hanging up");
            }
            self.hang_up("media timeout".into(), "media_timeout");
        } else if let Some((reason, outcome)) = hangup {
            if !self.hangup_sent {
                tracing::info!(%reason, "agent hung up");
            }
            self.hang_up(reason, outcome);
        }
    }

    /// When the call next needs the reactor without a packet or an agent wake-up.
    pub fn poll_timeout(&self) -> Instant {
        let media = self.session.poll_timeout(self.agent.audio_queued());
        match self.agent.poll_timeout() {
            Some(agent) => media.min(agent),
            None => media,
        }
    }

    /// The engine cannot run this call: the call task hangs up.
    pub(super) fn fail(&mut self, reason: &str) {
        self.hang_up(reason.into(), "other");
    }

    /// Tells the call task once; the media keeps running (and the agent's goodbye playing)
    /// until the call task takes the call back.
    fn hang_up(&mut self, reason: String, outcome: &'static str) {
        if !self.hangup_sent {
            self.hangup_sent = true;
            let _ = self.hangups.send(Hangup { reason, outcome });
        }
    }

    /// Acts on one agent output; returns a hang-up reason and outcome when the agent ended
    /// the call.
    fn on_agent_output(
        &mut self,
        t: Instant,
        out: Option<AgentOutput>,
        sinks: &Sinks,
        transmit: &mut impl FnMut(SocketAddr, &[u8]) -> usize,
    ) -> Option<(String, &'static str)> {
        match out {
            Some(AgentOutput::Audio(f)) => {
                if let Some((to, pkt)) = self.session.send_frame(t, &f) {
                    self.bytes_sent += transmit(to, pkt) as u64;
                }
                None
            }
            Some(AgentOutput::Event(AgentEvent::Hangup { reason })) => {
                Some((reason, "agent_hangup"))
            }
            Some(AgentOutput::Event(AgentEvent::Failed { reason })) => {
                if !self.hangup_sent {
                    sinks.metrics.agent_error(self.kind, "session_failed");
                }
                Some((reason, "agent_error"))
            }
            // Frames go out the moment their slot opens, so there is no queue on our side to
            // drop: the agent clears its own.
            Some(AgentOutput::Event(AgentEvent::ClearPlayout)) => None,
            Some(AgentOutput::Event(AgentEvent::Dtmf(d))) => {
                // The press goes out as RFC 4733 events in the next slots of the stream.
                if self.session.send_dtmf(d) {
                    tracing::info!(digit = %d, "DTMF to the caller");
                } else {
                    tracing::info!(digit = %d,
                        "agent DTMF dropped: no telephone-event negotiated (or not a key)");
                }
                None
            }
            Some(AgentOutput::Event(AgentEvent::Transcript {
                role,
                text,
                emotions,
            })) => {
                tracing::info!(?role, %text, "transcript");
                let line = TranscriptLine::new(role, text, emotions);
                sinks
                    .registry
                    .update(&self.call_id, |r| r.push_transcript(line));
                None
            }
            Some(AgentOutput::Event(AgentEvent::Detail { key, value })) => {
                tracing::info!(key, %value, "agent session detail");
                sinks.registry.update(&self.call_id, |r| {
                    r.details.insert(key.to_string(), value);
                });
                None
            }
            None => {
                // An ended session keeps answering None until the call stops polling it.
                if !self.agent_ended {
                    self.agent_ended = true;
                    sinks.metrics.agent_error(self.kind, "session_ended");
                }
                Some(("agent session ended".into(), "agent_error"))
            }
        }
    }

    /// The call's RTP figures so far.
    pub fn rtp_stats(&self) -> RtpStats {
        let c = self.session.counters();
        let s = self.session.recv_stats();
        let j = self.session.jitter_stats();
        RtpStats {
            packets_sent: c.packets_sent,
            packets_received: c.packets_received,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            lost: s.lost(),
            jitter_ms: s.jitter_ms(),
            concealed: c.concealed,
            late: j.late,
            duplicates: j.duplicates,
        }
    }

    /// Writes the RTP figures to the registry's snapshot and returns the change since the
    /// last report, for the metrics (a reactor adds up its calls' changes and reports once).
    pub fn report(&mut self, registry: &Registry) -> RtpDelta {
        let rtp = self.rtp_stats();
        let now = RtpDelta {
            packets_sent: rtp.packets_sent,
            packets_received: rtp.packets_received,
            bytes_sent: rtp.bytes_sent,
            bytes_received: rtp.bytes_received,
            lost: rtp.lost.max(0) as u64,
            late: rtp.late,
        };
        let before = self.reported;
        let delta = RtpDelta {
            packets_sent: now.packets_sent.saturating_sub(before.packets_sent),
            packets_received: now.packets_received.saturating_sub(before.packets_received),
            bytes_sent: now.bytes_sent.saturating_sub(before.bytes_sent),
            bytes_received: now.bytes_received.saturating_sub(before.bytes_received),
            lost: now.lost.saturating_sub(before.lost),
            late: now.late.saturating_sub(before.late),
        };
        // Loss can shrink (late packets); never report a negative change, and never count
        // the same loss twice.
        self.reported = RtpDelta {
            lost: before.lost.max(now.lost),
            ..now
        };
        registry.update(&self.call_id, |r| r.rtp = rtp);
        delta
    }

    /// The call is over: the agent is told, the last figures are published.
    pub fn close(mut self, sinks: &Sinks) -> RtpStats {
        self.agent.send_event(CallerEvent::Hangup);
        let delta = self.report(&sinks.registry);
        sinks.metrics.rtp(delta);
        self.rtp_stats()
    }
}
