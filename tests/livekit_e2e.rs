//! The LiveKit agent end to end on loopback: our UAC calls the gateway, the gateway makes a room
//! on the mock LiveKit server, joins it over `/rtc` with webrtc-rs, and the mock's SFU peer
//! plays the agent (a 440 Hz tone) and records the caller.

#[path = "livekit_e2e/caller.rs"]
mod caller;
mod common;
mod mock_livekit;

use std::time::Duration;

use caller::{Caller, CALLER_TONE_HZ};
use common::{admin_get, PASSWORD, USER};
use livekit_protocol as proto;
use mock_livekit::{Command, MockConfig, MockLivekit, API_KEY, API_SECRET};
use sipbridge::call::Gateway;
use sipbridge::load::signal::{rms, zero_crossing_hz};
use sipbridge::load::uac::{ByeOutcome, Outcome};

/// Every wait is bounded by this (a call set-up on loopback takes well under a second).
const WAIT: Duration = Duration::from_secs(15);

async fn gateway(url: &str, extra: &str) -> Gateway {
    let table = format!(
        "[agents.room]\nkind = \"livekit\"\nurl = \"{url}\"\napi_key_env = \"LK_KEY\"\n\
         api_secret_env = \"LK_SECRET\"\nagent_name = \"hume-agent\"\n{extra}"
    );
    let env = |k: &str| match k {
        "LK_KEY" => Some(API_KEY.to_string()),
        "LK_SECRET" => Some(API_SECRET.to_string()),
        _ => None,
    };
    common::gateway_env("", &table, &env).await
}

/// Keeps the call going (SIP and RTP) until the mock's state satisfies `cond`.
async fn drive(
    caller: &mut Caller,
    mock: &MockLivekit,
    what: &str,
    cond: impl Fn(&mock_livekit::State) -> bool,
) {
    let ok = caller
        .run_until(WAIT, |_| cond(&mock.state.lock().unwrap()))
        .await;
    if !ok {
        // Report the mock's view.
        mock.wait_for(what, Duration::ZERO, cond).await;
    }
}

/// The longest stretch of `pcm` in which every 20 ms chunk is louder than `floor`.
fn loud_run(pcm: &[i16], chunk: usize, floor: f64) -> &[i16] {
    let (mut best, mut start) = ((0, 0), None);
    for (i, c) in pcm.chunks(chunk).enumerate() {
        match (rms(c) > floor, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 - best.0 {
                    best = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        let end = pcm.len().div_ceil(chunk);
        if end - s > best.1 - best.0 {
            best = (s, end);
        }
    }
    &pcm[best.0 * chunk..(best.1 * chunk).min(pcm.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_until_the_agent_talks_then_audio_and_dtmf_flow_both_ways() {
    let mock = MockLivekit::start(MockConfig {
        // Long enough for two 180s (one at once, one a second later).
        agent_delay: Duration::from_millis(1600),
        ..Default::default()
    })
    .await;
    let gw = gateway(&mock.url, "").await;
    let mut caller = Caller::call(gw.sip_addr, USER, PASSWORD, Duration::from_secs(60)).await;

    assert!(
        caller.run_until(WAIT, |c| c.answered.is_some()).await,
        "never answered: {:?}",
        caller.result()
    );
    // Answered only once the agent's track was there, ringing meanwhile.
    assert!(caller.ringing >= 2, "{} ringing", caller.ringing);
    assert!(mock.state.lock().unwrap().sessions[0].agent_track_published);

    // The room, the dispatch, the token.
    {
        let s = mock.state.lock().unwrap();
        let create = s
            .twirp
            .iter()
            .find(|t| t.method == "RoomService/CreateRoom")
            .expect("CreateRoom");
        assert_eq!(create.status, 200);
        assert_eq!(create.content_type, "application/protobuf");
        let room = create.request["name"].as_str().unwrap().to_string();
        assert!(room.starts_with("hume-call-"), "{room}");
        assert!(s
            .dispatches
            .contains(&(room.clone(), "hume-agent".to_string())));
        let sess = &s.sessions[0];
        assert_eq!(sess.room, room);
        let claims = sess.claims.as_ref().unwrap();
        assert_eq!(claims.iss, API_KEY);
        assert_eq!(claims.kind, "sip");
        assert_eq!(claims.sub, "sip_+447700900123");
        assert_eq!(claims.name, "Phone +447700900123");
        assert_eq!(
            claims.room_config.as_ref().unwrap().agents[0].agent_name,
            "hume-agent"
        );
        let a = &claims.attributes;
        assert_eq!(a["sip.phoneNumber"], "+447700900123");
        assert_eq!(
            a["sip.trunkPhoneNumber"], "+447846855904",
            "E.164 with its +"
        );
        assert_eq!(a["sip.trunkID"], "twilio");
        assert!(a["sip.twilio.callSid"].starts_with("CA"));
        assert_eq!(a["sip.twilio.accountSid"], "ACtest");
        assert!(!a["sip.callIDFull"].is_empty());
        assert_eq!(sess.query["protocol"], "16");
        // The published track: Opus 48000/2, cid = msid track id, no DTX/RED.
        let add = &sess.add_tracks[0];
        assert!(add.disable_red);
        assert_eq!(add.r#type, proto::TrackType::Audio as i32);
        let offer = sess.publisher_offer.as_ref().expect("publisher offer");
        assert!(offer.contains("opus/48000/2"), "{offer}");
        assert!(
            offer.contains(&format!(" {}", add.cid)) && offer.contains("a=msid:"),
            "{offer}"
        );
    }

    // Audio both ways.
    assert!(caller.run_until(WAIT, |c| c.heard_packets > 100).await);
    drive(&mut caller, &mock, "the caller's audio", |s| {
        s.sessions[0].audio.len() > 48_000
    })
    .await;
    assert!(
        caller
            .run_until(WAIT, |c| loud_run(&c.heard, 160, 1000.0).len() >= 8000)
            .await,
        "caller never heard a second of the agent (rms {})",
        rms(&caller.heard)
    );
    let heard = loud_run(&caller.heard, 160, 1000.0);
    let f = zero_crossing_hz(heard, 8000.0);
    assert!((f - 440.0).abs() <= 20.0, "caller hears {f} Hz");
    let got = mock.state.lock().unwrap().sessions[0].audio.clone();
    let loud = loud_run(&got, 960, 1000.0);
    assert!(loud.len() >= 48_000 / 2, "{} loud samples", loud.len());
    let f = zero_crossing_hz(loud, 48_000.0);
    assert!((f - CALLER_TONE_HZ).abs() <= 20.0, "room hears {f} Hz");

    // sip.callStatus went active once answered.
    drive(&mut caller, &mock, "callStatus active", |s| {
        s.sessions[0]
            .attribute_updates
            .iter()
            .any(|a| a.get("sip.callStatus").map(String::as_str) == Some("active"))
    })
    .await;

    // The admin API lists the room with the call and its participants.
    let rooms = admin_get(gw.http_addr, "/livekit/rooms").await;
    let room = &rooms["rooms"][0];
    assert_eq!(
        room["name"].as_str(),
        Some(mock.state.lock().unwrap().sessions[0].room.as_str()),
        "{rooms:#}"
    );
    let ids: Vec<_> = room["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["identity"].as_str())
        .collect();
    assert!(ids.contains(&"sip_+447700900123"), "{rooms:#}");
    assert!(ids.contains(&"agent-hume"), "{rooms:#}");

    // DTMF: caller RFC 4733 to a sip_dtmf packet, and a sip_dtmf packet to RFC 4733.
    caller.press('5');
    caller.press('#');
    drive(&mut caller, &mock, "sip_dtmf from the caller", |s| {
        s.sessions[0].dtmf.len() >= 2
    })
    .await;
    assert_eq!(
        mock.state.lock().unwrap().sessions[0].dtmf,
        vec![(5, "5".to_string()), (11, "#".to_string())]
    );
    mock.command(
        0,
        Command::SendDtmf {
            code: 7,
            digit: "7".into(),
        },
    );
    assert!(
        caller.run_until(WAIT, |c| c.heard_dtmf == vec!['7']).await,
        "caller got {:?}",
        caller.heard_dtmf
    );

    // Renegotiation mid-call: audio keeps flowing both ways.
    mock.command(0, Command::Renegotiate);
    drive(&mut caller, &mock, "the re-offer answered", |s| {
        s.sessions[0].subscriber_answers.len() >= 3
    })
    .await;
    let (heard, sent) = (
        caller.heard_packets,
        mock.state.lock().unwrap().sessions[0].audio_packets,
    );
    let heard_before = caller.heard.len();
    assert!(
        caller
            .run_until(WAIT, |c| c.heard_packets > heard + 50)
            .await
    );
    drive(&mut caller, &mock, "audio after renegotiation", |s| {
        s.sessions[0].audio_packets > sent + 50
    })
    .await;
    assert!(rms(&caller.heard[heard_before..]) > 1000.0);

    // The caller hangs up: the gateway leaves and deletes the room.
    caller.hangup().await;
    assert!(caller.run_until(WAIT, |c| c.result().is_some()).await);
    assert_eq!(caller.result().unwrap().bye, ByeOutcome::Answered(200));
    mock.wait_for("leave and DeleteRoom", WAIT, |s| {
        s.sessions[0].left.is_some() && !s.deleted.is_empty()
    })
    .await;
    {
        let s = mock.state.lock().unwrap();
        let left = s.sessions[0].left.as_ref().unwrap();
        assert_eq!(left.reason, proto::DisconnectReason::ClientInitiated as i32);
        let statuses: Vec<_> = s.sessions[0]
            .attribute_updates
            .iter()
            .filter_map(|a| a.get("sip.callStatus").cloned())
            .collect();
        assert_eq!(statuses, vec!["active", "hangup"]);
        // The call lasted longer than the mock's 2 s ping interval.
        assert!(s.sessions[0].pings >= 1);
        assert_eq!(s.deleted, vec![s.sessions[0].room.clone()]);
    }
    gw.stop().await;
}

/// Waits for the answer and for the agent's audio to reach the caller.
async fn answered_call(mock: &MockLivekit, gw: &Gateway) -> Caller {
    let mut caller = Caller::call(gw.sip_addr, USER, PASSWORD, Duration::from_secs(60)).await;
    assert!(
        caller.run_until(WAIT, |c| c.answered.is_some()).await,
        "never answered: {:?}",
        caller.result()
    );
    assert!(caller.run_until(WAIT, |c| c.heard_packets > 10).await);
    drive(&mut caller, mock, "the caller's audio", |s| {
        s.sessions[0].audio_packets > 10
    })
    .await;
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_from_the_room_sends_bye_to_the_caller() {
    let mock = MockLivekit::start(MockConfig::default()).await;
    let gw = gateway(&mock.url, "").await;
    let mut caller = answered_call(&mock, &gw).await;
    mock.command(0, Command::Remove);
    assert!(
        caller.run_until(WAIT, |c| c.result().is_some()).await,
        "no BYE after removal"
    );
    assert_eq!(caller.result().unwrap().bye, ByeOutcome::Remote);
    // The agent hung up on purpose: normal clearing.
    assert_eq!(
        caller.result().unwrap().remote_bye_reason.as_deref(),
        Some("Q.850;cause=16;text=\"livekit: participant removed\"")
    );
    // The gateway made the room, so it deletes it; it sends no leave to a session the server
    // ended.
    mock.wait_for("DeleteRoom", WAIT, |s| !s.deleted.is_empty())
        .await;
    assert!(mock.state.lock().unwrap().sessions[0].left.is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_signalling_connection_sends_bye_to_the_caller() {
    let mock = MockLivekit::start(MockConfig::default()).await;
    let gw = gateway(&mock.url, "").await;
    let mut caller = answered_call(&mock, &gw).await;
    let dropped = std::time::Instant::now();
    mock.command(0, Command::DropConnection);
    assert!(
        caller.run_until(WAIT, |c| c.result().is_some()).await,
        "no BYE after the connection dropped"
    );
    let result = caller.result().unwrap();
    assert_eq!(result.bye, ByeOutcome::Remote);
    // A failure, named, within 2 s.
    let reason = result.remote_bye_reason.clone().unwrap_or_default();
    assert!(reason.starts_with("Q.850;cause=41;text="), "{reason}");
    let after = result.remote_bye_at.unwrap() - dropped;
    assert!(
        after < Duration::from_secs(2),
        "BYE {after:?} after the drop"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_talks_rings_out_with_480_and_the_room_is_cleaned_up() {
    let mock = MockLivekit::start(MockConfig {
        agent_silent: true,
        ..Default::default()
    })
    .await;
    let gw = gateway(&mock.url, "ringing_timeout_secs = 2\n").await;
    let mut caller = Caller::call(gw.sip_addr, USER, PASSWORD, Duration::from_secs(60)).await;
    assert!(caller.run_until(WAIT, |c| c.result().is_some()).await);
    assert_eq!(caller.result().unwrap().outcome, Outcome::Status(480));
    assert!(caller.ringing >= 2, "{} ringing", caller.ringing);
    mock.wait_for("leave and DeleteRoom", WAIT, |s| {
        s.sessions.first().is_some_and(|x| x.left.is_some()) && !s.deleted.is_empty()
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_rejects_the_call_with_503() {
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = gateway(&format!("ws://127.0.0.1:{port}"), "").await;
    let mut caller = Caller::call(gw.sip_addr, USER, PASSWORD, Duration::from_secs(60)).await;
    assert!(caller.run_until(WAIT, |c| c.result().is_some()).await);
    assert_eq!(caller.result().unwrap().outcome, Outcome::Status(503));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_speaks_twirp_json_and_refuses_bad_tokens() {
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let mock = MockLivekit::start(MockConfig::default()).await;
    let token = |secret: &str, create: bool| {
        AccessToken::with_api_key(API_KEY, secret)
            .with_grants(VideoGrants {
                room_create: create,
                ..Default::default()
            })
            .to_jwt()
            .unwrap()
    };
    let body = br#"{"name":"json-room","emptyTimeout":30}"#;
    let path = "/twirp/livekit.RoomService/CreateRoom";
    let (status, out) = mock_livekit_post(&mock, path, &token(API_SECRET, true), body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let room: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(room["name"], "json-room");
    let (status, _) = mock_livekit_post(&mock, path, &token("wrong-secret", true), body).await;
    assert_eq!(status, 401);
    let (status, _) = mock_livekit_post(&mock, path, &token(API_SECRET, false), body).await;
    assert_eq!(status, 403);
}

async fn mock_livekit_post(
    mock: &MockLivekit,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    mock_livekit::post(mock.addr, path, "application/json", token, body).await
}

/// The session's next output (events only: no playout slot is open).
async fn next(s: &mut dyn sipbridge::agent::AgentSession) -> Option<sipbridge::agent::AgentOutput> {
    std::future::poll_fn(|cx| s.poll_output(cx, false)).await
}

/// The agent on its own, without a call: rooms named `t-...`, automatic dispatch.
fn direct_agent(mock: &MockLivekit) -> sipbridge::agent::livekit::LivekitAgent {
    common::capture_logs();
    sipbridge::agent::livekit::LivekitAgent::new(sipbridge::config::LivekitSpec {
        url: mock.url.clone(),
        api_key: API_KEY.into(),
        api_secret: API_SECRET.into(),
        room_prefix: "t-".into(),
        agent_name: None,
        ringing_timeout: Duration::from_secs(5),
    })
}

/// A session of [`direct_agent`], connected (the agent's audio is subscribed).
async fn direct_session(
    agent: &sipbridge::agent::livekit::LivekitAgent,
) -> Box<dyn sipbridge::agent::AgentSession> {
    use sipbridge::agent::{Agent, CallInfo};
    let call = CallInfo {
        call_id: "c1@test".into(),
        local_tag: "tag1".into(),
        caller: "+15550002222".into(),
        called: "+15550003333".into(),
        trunk: "t".into(),
        agent: "room".into(),
        ..Default::default()
    };
    tokio::time::timeout(WAIT, agent.connect(&call))
        .await
        .expect("connected in time")
        .expect("session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_reports_its_room_and_the_rooms_dtmf_to_the_call() {
    use sipbridge::agent::{Agent, AgentEvent, AgentOutput, CallerEvent};

    let mock = MockLivekit::start(MockConfig::default()).await;
    let agent = direct_agent(&mock);
    let policy = agent.setup_policy();
    assert_eq!((policy.timeout_status, policy.error_status), (480, 503));
    assert_eq!(policy.ring_every, Some(Duration::from_secs(1)));
    let mut session = direct_session(&agent).await;
    // Automatic dispatch: no CreateDispatch.
    assert!(mock.state.lock().unwrap().dispatches.is_empty());

    // Details until the agent shows up among the participants.
    let mut agent_seen = false;
    for _ in 0..10 {
        let out = tokio::time::timeout(WAIT, next(&mut *session))
            .await
            .expect("output");
        if let Some(AgentOutput::Event(AgentEvent::Detail { key, value })) = out {
            assert_eq!(key, "livekit_room");
            assert!(value["name"].as_str().unwrap().starts_with("t-"));
            let ids: Vec<_> = value["participants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["identity"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids[0], "sip_+15550002222");
            if ids.iter().any(|i| i == "agent-hume") {
                agent_seen = true;
                break;
            }
        }
    }
    assert!(agent_seen, "the agent never appeared in the room detail");

    mock.command(
        0,
        Command::SendDtmf {
            code: 11,
            digit: "#".into(),
        },
    );
    let mut digit = None;
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, next(&mut *session))
            .await
            .expect("output")
        {
            Some(AgentOutput::Event(AgentEvent::Dtmf(d))) => {
                digit = Some(d);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(digit, Some('#'));

    session.send_event(CallerEvent::Hangup);
    mock.wait_for("leave and DeleteRoom", WAIT, |s| {
        s.sessions[0].left.is_some() && !s.deleted.is_empty()
    })
    .await;
    // The session ends once the driver is gone.
    let mut ended = false;
    for _ in 0..20 {
        if tokio::time::timeout(WAIT, next(&mut *session))
            .await
            .expect("output")
            .is_none()
        {
            ended = true;
            break;
        }
    }
    assert!(ended);
}

/// A loaded server reads the signalling connection slowly. The gateway closes it and waits for
/// the server's close before `DeleteRoom`, so the server has read the leave by then: the room
/// is never deleted under a participant the server still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_is_deleted_only_after_the_server_has_read_the_leave() {
    use sipbridge::agent::CallerEvent;

    let mock = MockLivekit::start(MockConfig {
        signal_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let agent = direct_agent(&mock);
    let mut session = direct_session(&agent).await;
    session.send_event(CallerEvent::Hangup);
    mock.wait_for("DeleteRoom", WAIT, |s| !s.deleted.is_empty())
        .await;
    let (ended, occupied) = {
        let s = mock.state.lock().unwrap();
        (s.sessions[0].ended.clone(), s.deleted_occupied.clone())
    };
    assert_eq!(ended.as_deref(), Some("leave"));
    assert!(
        occupied.is_empty(),
        "deleted with the participant still in: {occupied:?}"
    );
}
