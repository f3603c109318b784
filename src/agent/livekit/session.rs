//! The call's side of a LiveKit session: the peer connections, their sockets and the codecs,
//! run inside the call's own task. A caller frame is encoded and sent as SRTP in the same
//! wake-up that received it, and the room's packets are decoded when the call polls, so audio
//! never crosses a channel or another task. The driver task keeps only the `/rtc` WebSocket
//! and talks to this side through two unbounded channels of rare messages (SDP, candidates,
//! session state).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::task::{Context, Poll};

use livekit_protocol as proto;
use prost::Message as _;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::media::{Downlink, Uplink};
use super::peer::{PeerError, PeerEvent, Peers};
use super::signal::{PeerAction, Target};
use crate::agent::{
    AgentError, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallerEvent, Watch,
};
use crate::codec::opus::EncoderSettings;
use crate::media::dtmf;

/// What the driver tells the media side.
#[derive(Debug)]
pub(crate) enum Control {
    /// The room was joined: open the peer connections from this address.
    Join {
        local_ip: IpAddr,
    },
    Peer(PeerAction),
    Agent(AgentEvent),
    /// The agent's audio is subscribed: the call can be answered.
    Ready,
    /// The session could not be set up: the call is rejected with this.
    Failed(AgentError),
}

/// What the media side tells the driver.
#[derive(Debug, PartialEq)]
pub(crate) enum Report {
    Candidate {
        target: Target,
        init: String,
    },
    Offer(String),
    Answer {
        sdp: String,
        id: u32,
    },
    AudioSubscribed,
    /// Media can no longer flow (a connection failed, or negotiation broke).
    Lost(String),
    Caller(CallerEvent),
}

pub struct LivekitSession {
    control: UnboundedReceiver<Control>,
    report: UnboundedSender<Report>,
    peers: Option<Peers>,
    uplink: Uplink,
    downlink: Downlink,
    events: VecDeque<AgentEvent>,
    setup: Option<Result<(), AgentError>>,
    /// The driver is gone: nothing more will come from the room.
    ended: bool,
    unsent: u64,
}

impl LivekitSession {
    pub(crate) fn new(
        control: UnboundedReceiver<Control>,
        report: UnboundedSender<Report>,
    ) -> Result<LivekitSession, AgentError> {
        let uplink = Uplink::new(EncoderSettings::default())
            .map_err(|e| AgentError::Unreachable(format!("livekit: {e}")))?;
        Ok(LivekitSession {
            control,
            report,
            peers: None,
            uplink,
            downlink: Downlink::new(),
            events: VecDeque::new(),
            setup: None,
            ended: false,
            unsent: 0,
        })
    }

    /// Drives the session until the driver says the call can be answered (or cannot).
    pub(crate) fn poll_setup(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AgentError>> {
        self.poll_io(cx);
        match self.setup.take() {
            Some(result) => Poll::Ready(result),
            None if self.ended => Poll::Ready(Err(AgentError::Unreachable(
                "livekit: session ended".into(),
            ))),
            None => Poll::Pending,
        }
    }

    /// Everything that can happen without the call: the driver's messages, and the peer
    /// connections' sockets and timers.
    fn poll_io(&mut self, cx: &mut Context<'_>) {
        while !self.ended {
            match self.control.poll_recv(cx) {
                Poll::Ready(Some(c)) => self.on_control(c),
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => break,
            }
        }
        loop {
            let Some(peers) = self.peers.as_mut() else {
                return;
            };
            let downlink = &mut self.downlink;
            let polled = peers.poll(cx, &mut |key, payload| {
                if let Err(e) = downlink.on_packet(key, payload) {
                    tracing::warn!(error = %e, "room audio not decoded");
                }
            });
            let Poll::Ready(ev) = polled else { return };
            match ev {
                PeerEvent::Candidate { target, init } => {
                    self.tell(Report::Candidate { target, init });
                }
                PeerEvent::TrackStarted { .. } => self.tell(Report::AudioSubscribed),
                PeerEvent::TrackEnded { key } => self.downlink.remove_track(key),
                PeerEvent::Data(bytes) => {
                    if let Some(d) = dtmf_digit(&bytes) {
                        tracing::info!(digit = %d, "DTMF from the room");
                        self.events.push_back(AgentEvent::Dtmf(d));
                    }
                }
                PeerEvent::Failed { target } => self.tell(Report::Lost(format!(
                    "livekit: media connection failed ({target:?} peer connection)"
                ))),
            }
        }
    }

    fn tell(&self, report: Report) {
        // The driver gone means the session is over; the call learns that from `ended`.
        let _ = self.report.send(report);
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Join { local_ip } => match Peers::new(local_ip) {
                Ok(p) => self.peers = Some(p),
                Err(e) => self.tell(Report::Lost(format!("livekit: peer connection: {e}"))),
            },
            Control::Peer(action) => {
                let Some(p) = self.peers.as_mut() else { return };
                match run_action(p, action) {
                    Ok(Some(report)) => self.tell(report),
                    Ok(None) => {}
                    Err(e) => self.tell(Report::Lost(format!("livekit: {e}"))),
                }
            }
            Control::Agent(ev) => self.events.push_back(ev),
            Control::Ready => self.setup = Some(Ok(())),
            Control::Failed(e) => self.setup = Some(Err(e)),
        }
    }
}

fn run_action(p: &mut Peers, action: PeerAction) -> Result<Option<Report>, PeerError> {
    Ok(match action {
        PeerAction::AnswerOffer { sdp, id } => Some(Report::Answer {
            sdp: p.answer(sdp)?,
            id,
        }),
        PeerAction::CreatePublisherOffer => Some(Report::Offer(p.offer()?)),
        PeerAction::SetPublisherAnswer { sdp } => {
            p.set_answer(sdp)?;
            None
        }
        PeerAction::AddCandidate {
            target,
            candidate_init,
        } => {
            // One bad candidate is not the end of the connection.
            if let Err(e) = p.add_candidate(target, &candidate_init) {
                tracing::debug!(error = %e, "remote ICE candidate refused");
            }
            None
        }
        PeerAction::Close => {
            p.close();
            None
        }
    })
}

impl AgentSession for LivekitSession {
    fn send_audio(&mut self, frame: &AudioFrame) {
        let Some(p) = self.peers.as_mut() else { return };
        let sent = match self.uplink.push(frame) {
            Ok(Some(packet)) => p.write_audio(packet).map_err(|e| e.to_string()),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            self.unsent += 1;
            if self.unsent.is_power_of_two() {
                tracing::warn!(error = %e, unsent = self.unsent, "caller audio not sent to the room");
            }
        }
    }

    fn send_event(&mut self, event: CallerEvent) {
        match event {
            CallerEvent::Dtmf(d) => {
                let Some(code) = dtmf::digit_to_event(d) else {
                    return;
                };
                let sent = match self.peers.as_mut() {
                    Some(p) => p
                        .send_reliable(&dtmf_packet(code).encode_to_vec())
                        .map_err(|e| e.to_string()),
                    None => Err("not joined".into()),
                };
                match sent {
                    Ok(()) => tracing::info!(digit = %d, "DTMF sent to the room"),
                    Err(e) => tracing::warn!(digit = %d, error = %e, "DTMF not sent to the room"),
                }
            }
            CallerEvent::Answered => {
                // From now on the call's reactor watches the sockets and keeps the timers.
                if let Some(p) = self.peers.as_mut() {
                    p.quiet();
                }
                self.tell(Report::Caller(CallerEvent::Answered));
            }
            other => self.tell(Report::Caller(other)),
        }
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        self.poll_io(cx);
        if let Some(ev) = self.events.pop_front() {
            return Poll::Ready(Some(AgentOutput::Event(ev)));
        }
        if want_audio {
            if let Some(f) = self.downlink.tick() {
                return Poll::Ready(Some(AgentOutput::Audio(f)));
            }
        }
        if self.ended {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn audio_queued(&self) -> bool {
        self.downlink.ready()
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.peers.as_ref().and_then(Peers::poll_timeout)
    }

    fn watch(&mut self, why: Watch) -> Vec<std::os::fd::RawFd> {
        let Some(p) = self.peers.as_mut() else {
            return Vec::new();
        };
        match why {
            Watch::Join | Watch::Again => p.watch_fds(),
            Watch::Leave => {
                p.unwatched();
                Vec::new()
            }
        }
    }

    fn on_readable(&mut self, index: usize) {
        if let Some(p) = self.peers.as_mut() {
            p.on_readable(index);
        }
    }
}

impl Drop for LivekitSession {
    /// The call is over: the room hears DTLS close alerts now rather than an ICE timeout.
    fn drop(&mut self) {
        if let Some(p) = self.peers.as_mut() {
            p.close();
        }
    }
}

#[allow(deprecated)] // `kind` is what servers before the per-channel reliability read.
fn dtmf_packet(code: u8) -> proto::DataPacket {
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
            code: u32::from(code),
            // The digit is the code's canonical key (upper-case A-D), from the one table.
            digit: dtmf::event_to_digit(code)
                .map(String::from)
                .unwrap_or_default(),
        })),
        ..Default::default()
    }
}

/// The digit of a `sip_dtmf` data packet from the room; `None` for any other packet.
fn dtmf_digit(bytes: &[u8]) -> Option<char> {
    let packet = proto::DataPacket::decode(bytes).ok()?;
    let Some(proto::data_packet::Value::SipDtmf(d)) = packet.value else {
        return None;
    };
    // The digit string wins (it is what agents set); the code is the fallback. Both go through
    // the RFC 4733 table, which also makes `a`-`d` the canonical `A`-`D`.
    d.digit
        .chars()
        .next()
        .and_then(dtmf::digit_to_event)
        .or_else(|| u8::try_from(d.code).ok())
        .and_then(dtmf::event_to_digit)
}

#[cfg(test)]
mod tests {
    use super::super::signal::{STREAM_ID, TRACK_ID};
    use super::*;
    use std::task::Waker;
    use tokio::sync::mpsc;

    fn session() -> (
        LivekitSession,
        mpsc::UnboundedSender<Control>,
        mpsc::UnboundedReceiver<Report>,
    ) {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let s = LivekitSession::new(control_rx, report_tx).unwrap();
        (s, control_tx, report_rx)
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn setup_resolves_with_what_the_driver_says_and_fails_when_it_is_gone() {
        let (mut s, control, _reports) = session();
        assert!(s.poll_setup(&mut cx()).is_pending());
        control.send(Control::Ready).unwrap();
        assert!(matches!(s.poll_setup(&mut cx()), Poll::Ready(Ok(()))));

        let (mut s, control, _reports) = session();
        control
            .send(Control::Failed(AgentError::Refused("no agent".into())))
            .unwrap();
        assert!(matches!(
            s.poll_setup(&mut cx()),
            Poll::Ready(Err(AgentError::Refused(r))) if r == "no agent"
        ));

        let (mut s, control, _reports) = session();
        drop(control);
        assert!(matches!(
            s.poll_setup(&mut cx()),
            Poll::Ready(Err(AgentError::Unreachable(_)))
        ));
    }

    #[test]
    fn driver_events_come_out_first_then_the_end_and_caller_events_go_to_the_driver() {
        let (mut s, control, mut reports) = session();
        control
            .send(Control::Agent(AgentEvent::Hangup {
                reason: "room deleted".into(),
            }))
            .unwrap();
        // No room audio yet: nothing for a slot, and no frame waiting.
        assert!(!s.audio_queued());
        match s.poll_output(&mut cx(), true) {
            Poll::Ready(Some(AgentOutput::Event(AgentEvent::Hangup { reason }))) => {
                assert_eq!(reason, "room deleted");
            }
            other => panic!("expected the hang-up, got {other:?}"),
        }
        assert!(s.poll_output(&mut cx(), true).is_pending());

        s.send_event(CallerEvent::Answered);
        s.send_event(CallerEvent::Dtmf('5')); // not joined: logged, never a panic
        s.send_audio(&AudioFrame::silence(8000)); // likewise
        assert_eq!(
            reports.try_recv().unwrap(),
            Report::Caller(CallerEvent::Answered)
        );
        assert!(reports.try_recv().is_err());

        drop(control);
        assert!(matches!(s.poll_output(&mut cx(), false), Poll::Ready(None)));
        // Dropping the session is how the driver learns the call is over.
        drop(s);
        assert!(matches!(
            reports.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[tokio::test]
    async fn joining_opens_the_peers_and_our_offer_carries_the_opus_track_and_a_candidate() {
        let (mut s, control, mut reports) = session();
        control
            .send(Control::Join {
                local_ip: "127.0.0.1".parse().unwrap(),
            })
            .unwrap();
        control
            .send(Control::Peer(PeerAction::CreatePublisherOffer))
            .unwrap();
        assert!(s.poll_output(&mut cx(), false).is_pending());
        let offer = match reports.try_recv().unwrap() {
            Report::Offer(sdp) => sdp,
            other => panic!("expected our offer, got {other:?}"),
        };
        assert!(offer.contains("opus/48000/2"), "{offer}");
        assert!(
            offer.contains(&format!("msid:{STREAM_ID} {TRACK_ID}")),
            "{offer}"
        );
        assert!(offer.contains("m=application"), "data channels: {offer}");
        match reports.try_recv().unwrap() {
            Report::Candidate { target, init } => {
                assert_eq!(target, Target::Publisher);
                let init: serde_json::Value = serde_json::from_str(&init).unwrap();
                let candidate = init["candidate"].as_str().unwrap();
                assert!(candidate.contains("127.0.0.1") && candidate.contains("host"));
                assert_eq!(init["sdpMid"], "0");
            }
            other => panic!("expected our candidate, got {other:?}"),
        }
        // A broken answer from the server ends the media, with a reason.
        control
            .send(Control::Peer(PeerAction::SetPublisherAnswer {
                sdp: "not sdp".into(),
            }))
            .unwrap();
        assert!(s.poll_output(&mut cx(), false).is_pending());
        assert!(matches!(reports.try_recv().unwrap(), Report::Lost(_)));
    }

    #[test]
    fn dtmf_packets_round_trip_and_other_packets_are_not_digits() {
        for (code, digit) in [(5u8, '5'), (10, '*'), (11, '#'), (15, 'D')] {
            let bytes = dtmf_packet(code).encode_to_vec();
            assert_eq!(dtmf_digit(&bytes), Some(digit));
        }
        // Code only, lower-case digit, unknown digit with a valid code.
        let p = |code: u32, digit: &str| {
            proto::DataPacket {
                value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
                    code,
                    digit: digit.into(),
                })),
                ..Default::default()
            }
            .encode_to_vec()
        };
        assert_eq!(dtmf_digit(&p(11, "")), Some('#'));
        assert_eq!(dtmf_digit(&p(0, "a")), Some('A'));
        assert_eq!(dtmf_digit(&p(3, "x")), Some('3'));
        assert_eq!(dtmf_digit(&p(99, "")), None);
        let user = proto::DataPacket {
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: b"hi".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(dtmf_digit(&user.encode_to_vec()), None);
        assert_eq!(dtmf_digit(&[0xFF, 0xFF, 0xFF]), None);
    }
}
