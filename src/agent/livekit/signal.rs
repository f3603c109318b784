//! The LiveKit `/rtc` signalling of one participant, sans-IO.
//!
//! Input: decoded [`SignalResponse`]s from the server and what the peer connections report
//! (an answer or offer made, a local ICE candidate, the agent's audio subscribed), each with an
//! `Instant`. Output, drained with [`Signal::poll_output`]: [`SignalRequest`]s to send, actions
//! for the peer connections, and session events (joined, participants changed, ready to answer,
//! hang up). The driver sends, runs the actions and calls [`Signal::handle_timeout`] at
//! [`Signal::poll_timeout`] (pings, a missing join, a missing pong).
//!
//! The order is the one LiveKit's own SDKs follow (and its server expects): join, then
//! `add_track`; the publisher offer only once `track_published` arrived; subscriber offers are
//! answered whenever they come, the first one possibly with data channels only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::{signal_request, signal_response, SignalRequest, SignalResponse};

use super::token::CallStatus;

/// The WebRTC track id of our published audio; the `add_track` `cid` must equal it, because
/// the server pairs the pending track with the offer's `a=msid` through it.
pub const TRACK_ID: &str = "sipbridge-audio";
/// The msid stream of our track.
pub const STREAM_ID: &str = "sipbridge";
/// A server that has not answered the join this long after the WebSocket opened never will.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// What LiveKit's server sends; used when a join response leaves them out.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Which of the two peer connections a candidate or description belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Ours to offer: carries our audio and our data channels.
    Publisher,
    /// The server's to offer: carries the room's audio and its data channels.
    Subscriber,
}

impl Target {
    fn from_proto(t: i32) -> Option<Target> {
        match proto::SignalTarget::try_from(t).ok()? {
            proto::SignalTarget::Publisher => Some(Target::Publisher),
            proto::SignalTarget::Subscriber => Some(Target::Subscriber),
        }
    }

    fn to_proto(self) -> i32 {
        match self {
            Target::Publisher => proto::SignalTarget::Publisher as i32,
            Target::Subscriber => proto::SignalTarget::Subscriber as i32,
        }
    }
}

/// Work for the peer connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Apply the server's offer to the subscriber connection and answer it; report the answer
    /// with [`Signal::answer_created`].
    AnswerOffer {
        sdp: String,
        id: u32,
    },
    /// Offer on the publisher connection; report it with [`Signal::offer_created`].
    CreatePublisherOffer,
    SetPublisherAnswer {
        sdp: String,
    },
    AddCandidate {
        target: Target,
        candidate_init: String,
    },
    /// Close both connections: the session is over.
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The join response arrived: room and participants are known.
    Joined,
    ParticipantsChanged,
    /// Our track is published and the room's audio is subscribed: answer the call.
    Ready,
    /// The room ended the session, or (`failed`) the connection to it was lost.
    Hangup {
        reason: String,
        failed: bool,
    },
}

// Signalling messages are a few per second at most; boxing them would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send(SignalRequest),
    Peer(PeerAction),
    Event(SessionEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Joining,
    Joined,
    Closed,
}

/// A participant as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub sid: String,
    pub identity: String,
    pub name: String,
    pub kind: &'static str,
    pub state: &'static str,
}

pub struct Signal {
    state: State,
    started: Instant,
    /// Unix milliseconds at `started`, for ping timestamps (the server echoes them).
    epoch_ms: i64,
    join_deadline: Instant,
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    last_pong: Instant,
    rtt_ms: i64,
    room_name: String,
    room_sid: String,
    me: Option<Participant>,
    others: BTreeMap<String, Participant>,
    track_sid: Option<String>,
    subscribed: bool,
    ready: bool,
    out: VecDeque<Output>,
}

impl Signal {
    /// A session whose WebSocket just opened at `now` (`epoch_ms`: the wall clock then).
    pub fn new(now: Instant, epoch_ms: i64) -> Signal {
        Signal {
            state: State::Joining,
            started: now,
            epoch_ms,
            join_deadline: now + JOIN_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            next_ping: now,
            last_pong: now,
            rtt_ms: 0,
            room_name: String::new(),
            room_sid: String::new(),
            me: None,
            others: BTreeMap::new(),
            track_sid: None,
            subscribed: false,
            ready: false,
            out: VecDeque::new(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// Round-trip time of the last ping, in milliseconds.
    pub fn rtt_ms(&self) -> i64 {
        self.rtt_ms
    }

    /// Everyone in the room, ourselves first.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.me.iter().chain(self.others.values())
    }

    /// The `livekit_room` detail for the admin API.
    pub fn room_detail(&self) -> serde_json::Value {
        let participants: Vec<_> = self
            .participants()
            .map(|p| {
                serde_json::json!({
                    "identity": p.identity, "name": p.name, "kind": p.kind, "state": p.state,
                })
            })
            .collect();
        serde_json::json!({
            "name": self.room_name, "sid": self.room_sid, "participants": participants,
        })
    }

    pub fn handle_response(&mut self, now: Instant, response: SignalResponse) {
        if self.state == State::Closed {
            return;
        }
        let Some(message) = response.message else {
            return;
        };
        use signal_response::Message as M;
        match message {
            M::Join(join) => self.on_join(now, join),
            M::Offer(sd) => self.peer(PeerAction::AnswerOffer {
                sdp: sd.sdp,
                id: sd.id,
            }),
            M::Answer(sd) => self.peer(PeerAction::SetPublisherAnswer { sdp: sd.sdp }),
            M::Trickle(t) => {
                // An empty candidate marks the end of the server's candidates: nothing to add.
                if let (Some(target), false) =
                    (Target::from_proto(t.target), t.candidate_init.is_empty())
                {
                    self.peer(PeerAction::AddCandidate {
                        target,
                        candidate_init: t.candidate_init,
                    });
                }
            }
            M::TrackPublished(tp) if tp.cid == TRACK_ID && self.track_sid.is_none() => {
                self.track_sid = Some(tp.track.map(|t| t.sid).unwrap_or_default());
                self.peer(PeerAction::CreatePublisherOffer);
                self.check_ready();
            }
            M::Update(update) => self.on_update(update.participants),
            M::Leave(leave) => {
                let (reason, failed) = leave_reason(leave.reason);
                self.close(Some((reason, failed)));
            }
            M::PongResp(pong) => {
                self.last_pong = now;
                self.rtt_ms = (self.now_ms(now) - pong.last_ping_timestamp).max(0);
            }
            M::Pong(_) => self.last_pong = now,
            // Token refresh matters for reconnecting, which a phone call does not do (a lost
            // connection hangs up); the rest is about video, speakers and quality.
            _ => {}
        }
    }

    /// The subscriber connection's answer to the offer `id`.
    pub fn answer_created(&mut self, sdp: String, id: u32) {
        self.send(signal_request::Message::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp,
            id,
            mid_to_track_id: HashMap::new(),
        }));
    }

    /// The publisher connection's offer.
    pub fn offer_created(&mut self, sdp: String) {
        self.send(signal_request::Message::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id: 0,
            mid_to_track_id: HashMap::new(),
        }));
    }

    /// A local ICE candidate (RTCIceCandidateInit as JSON) to trickle.
    pub fn local_candidate(&mut self, target: Target, candidate_init: String) {
        self.send(signal_request::Message::Trickle(proto::TrickleRequest {
            candidate_init,
            target: target.to_proto(),
            r#final: false,
        }));
    }

    /// A remote audio track was subscribed (the agent is talking, or about to).
    pub fn audio_subscribed(&mut self) {
        self.subscribed = true;
        self.check_ready();
    }

    /// The call was answered: tell the room.
    pub fn answered(&mut self) {
        self.set_status(CallStatus::Active);
    }

    /// The caller hung up: say so, leave, close the connections.
    pub fn hangup(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::Joined {
            self.set_status(CallStatus::Hangup);
            self.send(signal_request::Message::Leave(proto::LeaveRequest {
                can_reconnect: false,
                reason: proto::DisconnectReason::ClientInitiated as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                regions: None,
            }));
        }
        self.close(None);
    }

    /// The WebSocket or a peer connection failed: the session is over.
    pub fn lost(&mut self, reason: &str) {
        self.close(Some((reason.to_string(), true)));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Joining if now >= self.join_deadline => {
                self.lost("livekit: no join response from the server");
            }
            State::Joined if now >= self.last_pong + self.ping_timeout => {
                self.lost("livekit: signalling connection lost (no pong)");
            }
            State::Joined if now >= self.next_ping => {
                let timestamp = self.now_ms(now);
                self.send(signal_request::Message::PingReq(proto::Ping {
                    timestamp,
                    rtt: self.rtt_ms,
                }));
                self.next_ping = now + self.ping_interval;
            }
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Joining => Some(self.join_deadline),
            State::Joined => Some(self.next_ping.min(self.last_pong + self.ping_timeout)),
            State::Closed => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn on_join(&mut self, now: Instant, join: proto::JoinResponse) {
        if self.state != State::Joining {
            return;
        }
        self.state = State::Joined;
        let secs = |s: i32, default: Duration| {
            if s > 0 {
                Duration::from_secs(s as u64)
            } else {
                default
            }
        };
        self.ping_interval = secs(join.ping_interval, DEFAULT_PING_INTERVAL);
        self.ping_timeout = secs(join.ping_timeout, DEFAULT_PING_TIMEOUT).max(self.ping_interval);
        self.next_ping = now + self.ping_interval;
        self.last_pong = now;
        if let Some(room) = join.room {
            self.room_name = room.name;
            self.room_sid = room.sid;
        }
        self.me = join.participant.as_ref().map(participant);
        self.others = join
            .other_participants
            .iter()
            .filter(|p| p.state != proto::participant_info::State::Disconnected as i32)
            .map(|p| (p.sid.clone(), participant(p)))
            .collect();
        self.event(SessionEvent::Joined);
        self.send(signal_request::Message::AddTrack(add_track_request()));
    }

    fn on_update(&mut self, list: Vec<proto::ParticipantInfo>) {
        let mut changed = false;
        for p in &list {
            let info = participant(p);
            if self.me.as_ref().is_some_and(|m| m.sid == p.sid) {
                changed |= self.me.as_ref() != Some(&info);
                self.me = Some(info);
            } else if p.state == proto::participant_info::State::Disconnected as i32 {
                changed |= self.others.remove(&p.sid).is_some();
            } else if self.others.get(&p.sid) != Some(&info) {
                self.others.insert(p.sid.clone(), info);
                changed = true;
            }
        }
        if changed {
            self.event(SessionEvent::ParticipantsChanged);
        }
    }

    fn check_ready(&mut self) {
        if !self.ready && self.subscribed && self.track_sid.is_some() {
            self.ready = true;
            self.event(SessionEvent::Ready);
        }
    }

    fn set_status(&mut self, status: CallStatus) {
        if self.state != State::Joined {
            return;
        }
        // Attributes merge on the server: sending only the one that changed keeps the rest.
        self.send(signal_request::Message::UpdateMetadata(
            proto::UpdateParticipantMetadata {
                attributes: HashMap::from([(
                    "sip.callStatus".to_string(),
                    status.as_str().to_string(),
                )]),
                ..Default::default()
            },
        ));
    }

    /// Ends the session; with `ending`, tells the call why and whether it was a failure.
    fn close(&mut self, ending: Option<(String, bool)>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.peer(PeerAction::Close);
        if let Some((reason, failed)) = ending {
            self.event(SessionEvent::Hangup { reason, failed });
        }
    }

    fn now_ms(&self, now: Instant) -> i64 {
        self.epoch_ms + now.saturating_duration_since(self.started).as_millis() as i64
    }

    fn send(&mut self, m: signal_request::Message) {
        self.out
            .push_back(Output::Send(SignalRequest { message: Some(m) }));
    }

    fn peer(&mut self, a: PeerAction) {
        self.out.push_back(Output::Peer(a));
    }

    fn event(&mut self, e: SessionEvent) {
        self.out.push_back(Output::Event(e));
    }
}

/// Our one audio track: Opus from the phone, no DTX (the caller's line noise is the signal
/// the agent's voice activity detection expects) and no RED (we offer plain Opus).
#[allow(deprecated)] // `disable_dtx` is what servers before `audio_features` read.
fn add_track_request() -> proto::AddTrackRequest {
    proto::AddTrackRequest {
        cid: TRACK_ID.into(),
        name: "phone".into(),
        r#type: proto::TrackType::Audio as i32,
        source: proto::TrackSource::Microphone as i32,
        muted: false,
        disable_dtx: true,
        disable_red: true,
        stream: STREAM_ID.into(),
        audio_features: vec![proto::AudioTrackFeature::TfNoDtx as i32],
        ..Default::default()
    }
}

fn participant(p: &proto::ParticipantInfo) -> Participant {
    use proto::participant_info::{Kind, State as S};
    let kind = match Kind::try_from(p.kind) {
        Ok(Kind::Standard) => "standard",
        Ok(Kind::Ingress) => "ingress",
        Ok(Kind::Egress) => "egress",
        Ok(Kind::Sip) => "sip",
        Ok(Kind::Agent) => "agent",
        Ok(Kind::Connector) => "connector",
        Ok(Kind::Bridge) => "bridge",
        _ => "other",
    };
    let state = match S::try_from(p.state) {
        Ok(S::Joining) => "joining",
        Ok(S::Joined) => "joined",
        Ok(S::Active) => "active",
        Ok(S::Disconnected) => "disconnected",
        Err(_) => "unknown",
    };
    Participant {
        sid: p.sid.clone(),
        identity: p.identity.clone(),
        name: p.name.clone(),
        kind,
        state,
    }
}

/// The hang-up reason for a server `leave`.
/// Why the server made us leave, and whether that is a failure: an agent ends a call by
/// removing the SIP participant or deleting the room; anything else is the room going wrong.
fn leave_reason(reason: i32) -> (String, bool) {
    use proto::DisconnectReason as R;
    let (why, failed) = match R::try_from(reason) {
        Ok(R::ParticipantRemoved) => ("participant removed", false),
        Ok(R::RoomDeleted) => ("room deleted", false),
        Ok(R::RoomClosed) => ("room closed", false),
        Ok(R::DuplicateIdentity) => ("duplicate identity", true),
        Ok(R::ServerShutdown) => ("server shutdown", true),
        Ok(R::JoinFailure) => ("join failure", true),
        Ok(R::StateMismatch) => ("state mismatch", true),
        Ok(R::Migration) => ("migration", true),
        Ok(R::SignalClose) => ("signal closed", true),
        _ => ("left the room", true),
    };
    (format!("livekit: {why}"), failed)
}

#[cfg(test)]
mod tests;
