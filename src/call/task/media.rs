//! The answered call's media and agent: the RTP socket and session, the agent session, and
//! what the call publishes about them (registry snapshot, metrics deltas).

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::REPORT_EVERY;
use crate::agent::{AgentEvent, AgentOutput, AgentSession};
use crate::call::registry::{RtpStats, TranscriptLine};
use crate::call::Shared;
use crate::media::ports::PortLease;
use crate::media::session::MediaSession;
use crate::metrics::RtpDelta;

pub(super) struct ActiveMedia {
    pub(super) socket: UdpSocket,
    pub(super) session: MediaSession,
    pub(super) _lease: PortLease,
    pub(super) agent: Box<dyn AgentSession>,
    /// The SDP answer's `o=` version, bumped on every re-answer (RFC 3264 8).
    pub(super) sdp_version: u64,
    pub(super) sdp_session: u64,
    pub(super) media_ip: IpAddr,
    /// The agent's kind, for metrics labels.
    pub(super) kind: &'static str,
    /// Counted here, in the call's own state: the shared metrics get the difference once a
    /// second, never per packet.
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    pub(super) reported: RtpDelta,
    pub(super) next_report: Instant,
    pub(super) agent_ended: bool,
}

impl ActiveMedia {
    /// Acts on one agent output; returns a hang-up reason and outcome when the agent ended
    /// the call.
    pub(super) fn on_agent_output(
        &mut self,
        t: std::time::Instant,
        out: Option<AgentOutput>,
        shared: &Shared,
        call_id: &str,
    ) -> Option<(String, &'static str)> {
        match out {
            Some(AgentOutput::Audio(f)) => {
                if let Some((to, pkt)) = self.session.send_frame(t, &f) {
                    send_rtp(&self.socket, &mut self.bytes_sent, to, pkt);
                }
                None
            }
            Some(AgentOutput::Event(AgentEvent::Hangup { reason })) => {
                Some((reason, "agent_hangup"))
            }
            Some(AgentOutput::Event(AgentEvent::Failed { reason })) => {
                shared.metrics.agent_error(self.kind, "session_failed");
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
                shared.registry.update(call_id, |r| r.push_transcript(line));
                None
            }
            Some(AgentOutput::Event(AgentEvent::Detail { key, value })) => {
                tracing::info!(key, %value, "agent session detail");
                shared.registry.update(call_id, |r| {
                    r.details.insert(key.to_string(), value);
                });
                None
            }
            None => {
                // An ended session keeps answering None until the call stops polling it.
                if !self.agent_ended {
                    self.agent_ended = true;
                    shared.metrics.agent_error(self.kind, "session_ended");
                }
                Some(("agent session ended".into(), "agent_error"))
            }
        }
    }

    /// The call's RTP figures so far.
    pub(super) fn rtp_stats(&self) -> RtpStats {
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

    /// Publishes the RTP figures: the registry's snapshot, and the change since the last
    /// report to the metrics.
    pub(super) fn report(&mut self, shared: &Shared, call_id: &str, t: Instant) {
        self.next_report = t + REPORT_EVERY;
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
        shared.metrics.rtp(RtpDelta {
            packets_sent: now.packets_sent.saturating_sub(before.packets_sent),
            packets_received: now.packets_received.saturating_sub(before.packets_received),
            bytes_sent: now.bytes_sent.saturating_sub(before.bytes_sent),
            bytes_received: now.bytes_received.saturating_sub(before.bytes_received),
            lost: now.lost.saturating_sub(before.lost),
            late: now.late.saturating_sub(before.late),
        });
        // Loss can shrink (late packets); never report a negative change, and never count
        // the same loss twice.
        self.reported = RtpDelta {
            lost: before.lost.max(now.lost),
            ..now
        };
        shared.registry.update(call_id, |r| r.rtp = rtp);
    }
}

/// Sends one RTP packet to the caller and counts its bytes. RTP tolerates loss: a full socket
/// buffer drops the packet and never blocks the call.
pub(super) fn send_rtp(socket: &UdpSocket, bytes_sent: &mut u64, to: SocketAddr, pkt: &[u8]) {
    if let Ok(n) = socket.try_send_to(pkt, to) {
        *bytes_sent += n as u64;
    }
}
