use super::*;

fn join(ping_interval: i32, ping_timeout: i32) -> SignalResponse {
    let me = proto::ParticipantInfo {
        sid: "PA_me".into(),
        identity: "sip_+4477".into(),
        name: "Phone +4477".into(),
        kind: proto::participant_info::Kind::Sip as i32,
        state: proto::participant_info::State::Joined as i32,
        ..Default::default()
    };
    let agent = proto::ParticipantInfo {
        sid: "PA_agent".into(),
        identity: "agent-1".into(),
        name: "hume".into(),
        kind: proto::participant_info::Kind::Agent as i32,
        state: proto::participant_info::State::Active as i32,
        ..Default::default()
    };
    response(signal_response::Message::Join(proto::JoinResponse {
        room: Some(proto::Room {
            sid: "RM_1".into(),
            name: "hume-call-abc".into(),
            ..Default::default()
        }),
        participant: Some(me),
        other_participants: vec![agent],
        subscriber_primary: true,
        ping_interval,
        ping_timeout,
        ..Default::default()
    }))
}

fn response(m: signal_response::Message) -> SignalResponse {
    SignalResponse { message: Some(m) }
}

fn drain(s: &mut Signal) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn sent(out: &[Output]) -> Vec<&signal_request::Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(SignalRequest { message: Some(m) }) => Some(m),
            _ => None,
        })
        .collect()
}

fn joined(t0: Instant) -> Signal {
    let mut s = Signal::new(t0, 1_700_000_000_000);
    s.handle_response(t0, join(5, 15));
    drain(&mut s);
    s
}

fn track_published(cid: &str) -> SignalResponse {
    response(signal_response::Message::TrackPublished(
        proto::TrackPublishedResponse {
            cid: cid.into(),
            track: Some(proto::TrackInfo {
                sid: "TR_1".into(),
                ..Default::default()
            }),
        },
    ))
}

#[test]
fn join_reports_the_room_then_adds_the_track_without_dtx_or_red() {
    let t0 = Instant::now();
    let mut s = Signal::new(t0, 0);
    assert_eq!(s.poll_timeout(), Some(t0 + JOIN_TIMEOUT));
    s.handle_response(t0, join(5, 15));
    let out = drain(&mut s);
    assert_eq!(out[0], Output::Event(SessionEvent::Joined));
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1);
    let signal_request::Message::AddTrack(add) = reqs[0] else {
        panic!("expected add_track, got {reqs:?}");
    };
    assert_eq!(add.cid, TRACK_ID);
    assert_eq!(add.r#type, proto::TrackType::Audio as i32);
    assert_eq!(add.source, proto::TrackSource::Microphone as i32);
    assert!(add.disable_red);
    assert!(add
        .audio_features
        .contains(&(proto::AudioTrackFeature::TfNoDtx as i32)));
    assert_eq!(s.room_name(), "hume-call-abc");
    let detail = s.room_detail();
    assert_eq!(detail["sid"], "RM_1");
    assert_eq!(detail["participants"][0]["identity"], "sip_+4477");
    assert_eq!(detail["participants"][0]["kind"], "sip");
    assert_eq!(detail["participants"][1]["kind"], "agent");
    assert_eq!(detail["participants"][1]["state"], "active");
    // The first ping is due one interval after the join.
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
}

#[test]
fn publisher_offer_waits_for_track_published_and_ready_needs_both() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    // The agent's audio arrives first: not ready while our track is unpublished.
    s.audio_subscribed();
    assert!(drain(&mut s).is_empty());
    // A track_published for another cid is not ours.
    s.handle_response(t0, track_published("other"));
    assert!(drain(&mut s).is_empty());
    s.handle_response(t0, track_published(TRACK_ID));
    assert_eq!(
        drain(&mut s),
        vec![
            Output::Peer(PeerAction::CreatePublisherOffer),
            Output::Event(SessionEvent::Ready)
        ]
    );
    assert!(s.is_ready());
    // A repeated track_published does not offer again.
    s.handle_response(t0, track_published(TRACK_ID));
    assert!(drain(&mut s).is_empty());
    s.offer_created("v=0 pub".into());
    let out = drain(&mut s);
    let signal_request::Message::Offer(sd) = sent(&out)[0] else {
        panic!("expected offer");
    };
    assert_eq!((sd.r#type.as_str(), sd.sdp.as_str()), ("offer", "v=0 pub"));
    s.handle_response(
        t0,
        response(signal_response::Message::Answer(
            proto::SessionDescription {
                r#type: "answer".into(),
                sdp: "v=0 ans".into(),
                ..Default::default()
            },
        )),
    );
    assert_eq!(
        drain(&mut s),
        vec![Output::Peer(PeerAction::SetPublisherAnswer {
            sdp: "v=0 ans".into()
        })]
    );
}

#[test]
fn ready_once_published_then_subscribed() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    s.handle_response(t0, track_published(TRACK_ID));
    assert_eq!(
        drain(&mut s),
        vec![Output::Peer(PeerAction::CreatePublisherOffer)]
    );
    s.audio_subscribed();
    s.audio_subscribed();
    assert_eq!(drain(&mut s), vec![Output::Event(SessionEvent::Ready)]);
}

#[test]
fn every_subscriber_offer_is_answered_with_its_id() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    for id in [1, 2, 3] {
        s.handle_response(
            t0,
            response(signal_response::Message::Offer(proto::SessionDescription {
                r#type: "offer".into(),
                sdp: format!("v=0 {id}"),
                id,
                ..Default::default()
            })),
        );
        assert_eq!(
            drain(&mut s),
            vec![Output::Peer(PeerAction::AnswerOffer {
                sdp: format!("v=0 {id}"),
                id
            })]
        );
        s.answer_created(format!("ans {id}"), id);
        let out = drain(&mut s);
        let signal_request::Message::Answer(sd) = sent(&out)[0] else {
            panic!("expected answer");
        };
        assert_eq!((sd.id, sd.r#type.as_str()), (id, "answer"));
    }
}

#[test]
fn trickle_goes_both_ways_with_the_right_target() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    for (target, t) in [(0, Target::Publisher), (1, Target::Subscriber)] {
        s.handle_response(
            t0,
            response(signal_response::Message::Trickle(proto::TrickleRequest {
                candidate_init: "{\"candidate\":\"c\"}".into(),
                target,
                r#final: false,
            })),
        );
        assert_eq!(
            drain(&mut s),
            vec![Output::Peer(PeerAction::AddCandidate {
                target: t,
                candidate_init: "{\"candidate\":\"c\"}".into()
            })]
        );
    }
    // Unknown targets and the empty end-of-candidates marker are ignored.
    for (target, init) in [(7, "{}"), (1, "")] {
        s.handle_response(
            t0,
            response(signal_response::Message::Trickle(proto::TrickleRequest {
                candidate_init: init.into(),
                target,
                r#final: true,
            })),
        );
        assert!(drain(&mut s).is_empty());
    }
    s.local_candidate(Target::Subscriber, "{\"candidate\":\"l\"}".into());
    let out = drain(&mut s);
    let signal_request::Message::Trickle(t) = sent(&out)[0] else {
        panic!("expected trickle");
    };
    assert_eq!(t.target, proto::SignalTarget::Subscriber as i32);
}

#[test]
fn pings_at_the_servers_interval_and_a_missing_pong_is_a_lost_connection() {
    let t0 = Instant::now();
    let mut s = Signal::new(t0, 1_000);
    s.handle_response(t0, join(2, 6));
    drain(&mut s);
    let mut t = t0;
    let mut pings = Vec::new();
    // Pongs keep it alive.
    for _ in 0..5 {
        t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        for m in sent(&drain(&mut s)) {
            if let signal_request::Message::PingReq(p) = m {
                pings.push(p.timestamp);
            }
        }
        s.handle_response(
            t + Duration::from_millis(30),
            response(signal_response::Message::PongResp(proto::Pong {
                last_ping_timestamp: *pings.last().unwrap(),
                timestamp: 0,
            })),
        );
    }
    assert_eq!(pings.len(), 5);
    assert_eq!(pings[0], 1_000 + 2_000);
    assert_eq!(pings[1] - pings[0], 2_000);
    assert_eq!(s.rtt_ms(), 30);
    // Then silence: pings go out but nothing comes back; after 6 s it is over.
    let last_pong = t + Duration::from_millis(30);
    let mut hangup = None;
    for _ in 0..10 {
        let Some(next) = s.poll_timeout() else { break };
        s.handle_timeout(next);
        for o in drain(&mut s) {
            if let Output::Event(SessionEvent::Hangup { reason, failed }) = o {
                assert!(failed, "a lost connection is a failure");
                hangup = Some((next, reason));
            }
        }
    }
    let (at, reason) = hangup.expect("hung up");
    assert_eq!(at, last_pong + Duration::from_secs(6));
    assert!(reason.contains("signalling connection lost"), "{reason}");
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn no_join_in_time_hangs_up() {
    let t0 = Instant::now();
    let mut s = Signal::new(t0, 0);
    s.handle_timeout(t0 + Duration::from_secs(1));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + JOIN_TIMEOUT);
    let out = drain(&mut s);
    assert_eq!(out[0], Output::Peer(PeerAction::Close));
    assert!(
        matches!(&out[1], Output::Event(SessionEvent::Hangup { reason, failed: true }) if reason.contains("no join"))
    );
    // Nothing is sent to a server that never joined us.
    assert!(sent(&out).is_empty());
}

#[test]
fn server_leave_hangs_up_naming_the_reason_and_sends_nothing() {
    for (reason, text, failed) in [
        (
            proto::DisconnectReason::ParticipantRemoved,
            "livekit: participant removed",
            false,
        ),
        (
            proto::DisconnectReason::RoomDeleted,
            "livekit: room deleted",
            false,
        ),
        (
            proto::DisconnectReason::ServerShutdown,
            "livekit: server shutdown",
            true,
        ),
        (
            proto::DisconnectReason::UnknownReason,
            "livekit: left the room",
            true,
        ),
    ] {
        let t0 = Instant::now();
        let mut s = joined(t0);
        s.handle_response(
            t0,
            response(signal_response::Message::Leave(proto::LeaveRequest {
                reason: reason as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                ..Default::default()
            })),
        );
        assert_eq!(
            drain(&mut s),
            vec![
                Output::Peer(PeerAction::Close),
                Output::Event(SessionEvent::Hangup {
                    reason: text.into(),
                    failed
                })
            ]
        );
        // A caller hang-up afterwards sends no leave to a session already gone.
        s.hangup();
        assert!(drain(&mut s).is_empty());
        s.handle_response(t0, track_published(TRACK_ID));
        assert!(drain(&mut s).is_empty());
    }
}

#[test]
fn call_status_goes_active_then_hangup_with_a_clean_leave() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    s.answered();
    let out = drain(&mut s);
    let signal_request::Message::UpdateMetadata(u) = sent(&out)[0] else {
        panic!("expected update_metadata");
    };
    assert_eq!(u.attributes["sip.callStatus"], "active");
    s.hangup();
    let out = drain(&mut s);
    let reqs = sent(&out);
    let signal_request::Message::UpdateMetadata(u) = reqs[0] else {
        panic!("expected update_metadata");
    };
    assert_eq!(u.attributes["sip.callStatus"], "hangup");
    let signal_request::Message::Leave(l) = reqs[1] else {
        panic!("expected leave");
    };
    assert_eq!(l.reason, proto::DisconnectReason::ClientInitiated as i32);
    assert_eq!(l.action, proto::leave_request::Action::Disconnect as i32);
    assert_eq!(out.last(), Some(&Output::Peer(PeerAction::Close)));
    // No hang-up event: the caller already knows.
    assert!(!out.iter().any(|o| matches!(o, Output::Event(_))));
    s.hangup();
    assert!(drain(&mut s).is_empty());
}

#[test]
fn participant_updates_add_change_and_remove() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    let p = |sid: &str, state: proto::participant_info::State| proto::ParticipantInfo {
        sid: sid.into(),
        identity: format!("id-{sid}"),
        state: state as i32,
        kind: proto::participant_info::Kind::Standard as i32,
        ..Default::default()
    };
    let update = |list| {
        response(signal_response::Message::Update(proto::ParticipantUpdate {
            participants: list,
        }))
    };
    use proto::participant_info::State as S;
    s.handle_response(t0, update(vec![p("PA_x", S::Joining)]));
    assert_eq!(
        drain(&mut s),
        vec![Output::Event(SessionEvent::ParticipantsChanged)]
    );
    assert_eq!(s.participants().count(), 3);
    // The same again changes nothing.
    s.handle_response(t0, update(vec![p("PA_x", S::Joining)]));
    assert!(drain(&mut s).is_empty());
    s.handle_response(t0, update(vec![p("PA_x", S::Disconnected)]));
    assert_eq!(
        drain(&mut s),
        vec![Output::Event(SessionEvent::ParticipantsChanged)]
    );
    let ids: Vec<_> = s.participants().map(|p| p.identity.as_str()).collect();
    assert_eq!(ids, vec!["sip_+4477", "agent-1"]);
}

#[test]
fn lost_connection_hangs_up_once() {
    let t0 = Instant::now();
    let mut s = joined(t0);
    s.lost("livekit: signalling connection lost");
    let out = drain(&mut s);
    assert_eq!(out.len(), 2);
    s.lost("again");
    assert!(drain(&mut s).is_empty());
}
