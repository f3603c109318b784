//! The Hume EVI agent end to end on loopback: a Twilio-shaped call from the project's own UAC
//! through the gateway to the fake EVI server (tests/fake_evi), which follows a script per
//! test. The caller's received RTP is decoded and measured (pitch, level, silence); the fake
//! records everything the gateway sent.

mod common;
mod fake_evi;
mod uac;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

use common::{admin_get, PASSWORD, USER};
use fake_evi::{step, Act, Dir, FakeEvi, When, API_KEY, EMOTIONS, GROUP_ID};
use sipbridge::call::Gateway;
use sipbridge::load::signal::{rms, zero_crossing_hz};
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, CallPlan, CallResult};

const KEY_ENV: &str = "SIPBRIDGE_TEST_HUME_KEY";

/// Everything the gateway logs in this test binary, for the assertions on log lines.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct W;
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("sipbridge=info")
            .with_ansi(false)
            .with_writer(|| W)
            .try_init();
        Mutex::new(Vec::new())
    })
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

/// A gateway whose only agent is a hume agent pointing at `fake`; `agent_lines` are added to
/// its table. `key` is what the API-key variable holds.
async fn gateway(fake: &FakeEvi, key: &str, agent_lines: &str) -> Gateway {
    logs();
    let table = format!(
        "[agents.evi]\nkind = \"hume\"\nurl = \"{}\"\napi_key_env = \"{KEY_ENV}\"\n{agent_lines}",
        fake.url()
    );
    let key = key.to_string();
    let env = move |k: &str| (k == KEY_ENV).then(|| key.clone());
    common::gateway_env("media_timeout_secs = 5\n", &table, &env).await
}

fn plan(gw: &Gateway, hold_ms: u64) -> CallPlan {
    CallPlan {
        target: gw.sip_addr,
        username: USER.into(),
        password: PASSWORD.into(),
        hold: Duration::from_millis(hold_ms),
        caller_hz: Some(440.0),
        max_wait: Duration::from_secs(20),
        dtmf: Vec::new(),
    }
}

fn tone(id: &str, hz: f64, chunks: u32) -> Act {
    Act::Tone {
        id: id.into(),
        hz,
        chunks,
        chunk_ms: 100,
        first_index: 0,
    }
}

/// The first socket answers after a pause (so the 200 provably waits for it).
fn metadata_later() -> fake_evi::Step {
    step(When::Connected, vec![Act::Sleep(300), Act::Metadata])
}

/// The Reason header of the gateway's BYE.
fn bye_reason(call: &CallResult) -> String {
    call.sip
        .as_ref()
        .and_then(|s| s.remote_bye_reason.clone())
        .expect("the gateway's BYE carries a Reason")
}

fn sent_by_gateway(fake: &FakeEvi, kind: &str) -> Vec<fake_evi::Record> {
    fake.records()
        .into_iter()
        .filter(|r| r.dir == Dir::In && r.kind() == kind)
        .collect()
}

fn sent_at(fake: &FakeEvi, kind: &str, pred: impl Fn(&serde_json::Value) -> bool) -> Instant {
    fake.records()
        .iter()
        .find(|r| r.dir == Dir::Out && r.kind() == kind && pred(&r.json))
        .unwrap_or_else(|| panic!("the fake never sent {kind}"))
        .at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_after_chat_metadata_and_the_caller_hears_the_tone_at_its_pitch() {
    let fake = FakeEvi::start(|_| {
        vec![
            metadata_later(),
            step(
                When::SessionSettings,
                vec![
                    Act::Raw(serde_json::json!({"type": "brand_new_event", "x": 1})),
                    Act::UserMessage {
                        text: "hello evi".into(),
                        interim: false,
                    },
                    Act::AssistantMessage("Hello caller!".into()),
                    tone("reply-1", 1000.0, 20),
                    Act::AssistantEnd,
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 3000)).await;
    assert_eq!(call.status(), Some(200), "{call:?}");
    assert!(
        call.responses.contains(&180),
        "rings while EVI connects: {:?}",
        call.responses
    );
    let metadata_at = sent_at(&fake, "chat_metadata", |_| true);
    let answered = call
        .sip
        .as_ref()
        .and_then(|s| s.answered)
        .expect("answered");
    assert!(answered > metadata_at, "200 only after chat_metadata");
    assert_eq!(call.bye(), Some(ByeOutcome::Answered(200)));

    // The handshake: the key in the header, nothing secret in the query.
    let conns = fake.conns();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].api_key.as_deref(), Some(API_KEY));
    assert!(conns[0].query.is_empty(), "{:?}", conns[0].query);

    // session_settings: telephone audio, the Call-ID, both numbers.
    let settings = sent_by_gateway(&fake, "session_settings");
    assert_eq!(settings.len(), 1);
    let s = &settings[0].json;
    assert_eq!(
        s["audio"],
        serde_json::json!({"encoding": "linear16", "sample_rate": 8000, "channels": 1})
    );
    assert_eq!(s["custom_session_id"], call.call_id.as_str());
    // As the caller presented them, `+` and all: the agent's prompt may read them out.
    assert_eq!(s["variables"]["caller_number"], "+447700900123", "{s}");
    assert_eq!(s["variables"]["called_number"], "+447846855904", "{s}");

    // audio_input: 20 ms of 8 kHz linear16 each (320 bytes), carrying the caller's 440 Hz.
    let inputs = sent_by_gateway(&fake, "audio_input");
    assert!(inputs.len() > 100, "{} audio_input messages", inputs.len());
    let mut up = Vec::new();
    for r in &inputs {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r.json["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 320);
        up.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    let p = zero_crossing_hz(&up[1600..], 8000.0);
    assert!((p - 440.0).abs() < 10.0, "caller pitch at EVI: {p}");

    // The caller hears 2 s of the 1 kHz tone, resampled 48 -> 8 kHz, at its level.
    let heard = call.speech();
    assert!(
        (95..=102).contains(&heard.len()),
        "{} speech packets",
        heard.len()
    );
    let pcm: Vec<i16> = uac::joined(&heard[2..heard.len() - 2]);
    let p = zero_crossing_hz(&pcm, 8000.0);
    assert!((p - 1000.0).abs() < 20.0, "pitch heard: {p}");
    let level = rms(&pcm);
    let expected = fake_evi::SPEECH_AMPLITUDE / 2f64.sqrt();
    assert!(
        (level - expected).abs() < expected * 0.1,
        "level {level} vs {expected}"
    );

    // Caller BYE closes the socket normally; the unknown event did not hurt.
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close
            == Some(1000))
            .await,
        "close frame 1000 from the gateway: {:?}",
        fake.conns()
    );
    // Transcripts are logged with their top emotions (the fake's strongest for conn 0 is
    // EMOTIONS[0] at 0.9).
    assert!(logged("hello evi"));
    assert!(logged("Hello caller!"));
    assert!(logged(&format!("{} 0.90", EMOTIONS[0])));
    assert!(logged("fake-chat-0"));
    // ...and kept on the call for the admin API, with the chat ids.
    let record = admin_get(gw.http_addr, &format!("/calls/{}", call.call_id)).await;
    let lines = record["transcript"].as_array().expect("transcript");
    let user = lines
        .iter()
        .find(|l| l["role"] == "user")
        .expect("user line");
    assert_eq!(user["text"], "hello evi");
    assert_eq!(user["emotions"].as_array().unwrap().len(), 3);
    assert_eq!(user["emotions"][0]["name"], EMOTIONS[0]);
    assert!(lines
        .iter()
        .any(|l| l["role"] == "assistant" && l["text"] == "Hello caller!"));
    assert_eq!(record["details"]["chat_id"], "fake-chat-0");
    assert_eq!(record["details"]["chat_group_id"], GROUP_ID);
    assert_eq!(record["details"]["request_id"], "fake-request-0");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_key_rejects_the_call_with_503() {
    let fake = FakeEvi::start(|_| vec![step(When::Connected, vec![Act::Metadata])]).await;
    let gw = gateway(&fake, "not-the-key", "").await;
    let call = place_call(plan(&gw, 1000)).await;
    assert_eq!(call.status(), Some(503), "{:?}", call.responses);
    assert!(fake.conns()[0].rejected);
    assert!(logged("HTTP 401"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evi_that_never_sends_chat_metadata_gets_503_after_the_connect_timeout() {
    let fake = FakeEvi::start(|_| Vec::new()).await;
    let gw = gateway(&fake, API_KEY, "connect_timeout_secs = 1\n").await;
    let call = place_call(plan(&gw, 1000)).await;
    assert_eq!(call.status(), Some(503), "{:?}", call.responses);
    assert!(call.responses.contains(&180));
    assert!(sent_by_gateway(&fake, "session_settings").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_stops_the_reply_within_a_frame_and_late_chunks_are_dropped() {
    let fake = FakeEvi::start(|_| {
        vec![
            metadata_later(),
            // 5 s of reply at once, as EVI sends faster than real time.
            step(When::SessionSettings, vec![tone("long", 800.0, 50)]),
            // 1.5 s after the answer, the caller talks over it.
            step(
                When::AudioInputs(75),
                vec![
                    Act::UserInterruption,
                    // Late chunks of the interrupted reply (a moment later, so that making
                    // them does not compete for the CPU with the barge-in being measured).
                    Act::Sleep(60),
                    Act::Tone {
                        id: "long".into(),
                        hz: 800.0,
                        chunks: 5,
                        chunk_ms: 100,
                        first_index: 50,
                    },
                    Act::Sleep(600),
                    tone("next", 600.0, 5),
                    Act::AssistantEnd,
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 3500)).await;
    assert_eq!(call.status(), Some(200));
    let interrupted = sent_at(&fake, "user_interruption", |_| true);
    let next = sent_at(&fake, "audio_output", |v| v["id"] == "next");
    let before: Vec<_> = call
        .speech()
        .into_iter()
        .filter(|r| r.at < interrupted)
        .collect();
    assert!(before.len() > 50, "the reply was playing: {}", before.len());
    let after_interruption = call
        .speech()
        .into_iter()
        .filter(|r| r.at >= interrupted && r.at < next)
        .count();
    assert!(
        after_interruption <= 1,
        "{after_interruption} speech packets after user_interruption"
    );
    // The next reply plays, and nothing of the late 800 Hz chunks does.
    let after: Vec<i16> = call
        .speech()
        .into_iter()
        .filter(|r| r.at >= next)
        .flat_map(|r| r.pcm.iter().copied())
        .collect();
    assert!(
        after.len() >= 160 * 20,
        "{} samples of the next reply",
        after.len()
    );
    let p = zero_crossing_hz(&after, 8000.0);
    assert!((p - 600.0).abs() < 20.0, "pitch after barge-in: {p}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hang_up_tool_plays_out_the_goodbye_then_sends_bye() {
    let fake = FakeEvi::start(|_| {
        vec![
            metadata_later(),
            step(
                When::SessionSettings,
                vec![
                    Act::AssistantMessage("Goodbye!".into()),
                    tone("goodbye", 1000.0, 10),
                    Act::AssistantEnd,
                    Act::ToolCall {
                        name: "hang_up".into(),
                        response_required: true,
                    },
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 15000)).await;
    assert_eq!(call.status(), Some(200));
    assert_eq!(call.bye(), Some(ByeOutcome::Remote), "the gateway hung up");
    assert_eq!(
        bye_reason(&call),
        "Q.850;cause=16;text=\"EVI hung up (hang_up tool)\"",
        "a conversation ended on purpose is normal clearing"
    );
    assert!(
        call.speech().len() >= 48,
        "the goodbye played out: {}",
        call.speech().len()
    );
    let responses = sent_by_gateway(&fake, "tool_response");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].json["tool_call_id"], "fake-tool-call-0");
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close
            == Some(1000))
            .await
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_close_plays_out_and_hangs_up() {
    let fake = FakeEvi::start(|_| {
        vec![
            metadata_later(),
            step(
                When::SessionSettings,
                vec![
                    tone("last", 1000.0, 10),
                    Act::AssistantEnd,
                    Act::Close(1000),
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 15000)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    assert!(call.speech().len() >= 48, "{}", call.speech().len());
    assert!(logged(
        "EVI ended the chat (close code 1000: fake EVI closes)"
    ));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evi_error_ends_the_call_with_the_reason_logged() {
    let fake = FakeEvi::start(|_| {
        vec![
            metadata_later(),
            step(
                When::AudioInputs(20),
                vec![Act::Error {
                    code: "E0710".into(),
                    slug: "fake_fatal_slug_e2e".into(),
                    message: "the fake failed".into(),
                }],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 15000)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    assert!(logged(
        "EVI error E0710 fake_fatal_slug_e2e: the fake failed"
    ));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_reconnects_once_with_the_chat_group() {
    let fake = FakeEvi::start(|conn| match conn {
        0 => vec![
            metadata_later(),
            step(When::SessionSettings, vec![tone("before", 1000.0, 5)]),
            step(When::AudioInputs(40), vec![Act::Drop]),
        ],
        _ => vec![
            step(When::Connected, vec![Act::Metadata]),
            step(
                When::SessionSettings,
                vec![tone("after", 600.0, 10), Act::AssistantEnd],
            ),
        ],
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 3500)).await;
    assert_eq!(
        call.bye(),
        Some(ByeOutcome::Answered(200)),
        "the call survived"
    );
    let conns = fake.conns();
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert_eq!(
        conns[1]
            .query
            .get("resumed_chat_group_id")
            .map(String::as_str),
        Some(GROUP_ID)
    );
    let second: Vec<_> = fake
        .records()
        .into_iter()
        .filter(|r| r.conn == 1 && r.dir == Dir::In)
        .collect();
    assert_eq!(second[0].kind(), "session_settings");
    assert!(second.iter().filter(|r| r.kind() == "audio_input").count() > 20);
    let resumed = sent_at(&fake, "audio_output", |v| v["id"] == "after");
    let pcm: Vec<i16> = call
        .speech()
        .into_iter()
        .filter(|r| r.at > resumed)
        .flat_map(|r| r.pcm.iter().copied())
        .collect();
    let p = zero_crossing_hz(&pcm, 8000.0);
    assert!((p - 600.0).abs() < 20.0, "the resumed chat is heard: {p}");
    gw.stop().await;
}

/// A fake whose first socket and every later one do `fail` as their 20th `audio_input`
/// arrives (the first answers after a pause, the later ones at once).
async fn failing_twice(fail: Act) -> FakeEvi {
    FakeEvi::start(move |conn| {
        let first = if conn == 0 {
            metadata_later()
        } else {
            step(When::Connected, vec![Act::Metadata])
        };
        vec![first, step(When::AudioInputs(20), vec![fail.clone()])]
    })
    .await
}

/// When the second socket failed: as its 20th `audio_input` arrived.
fn second_failure_at(fake: &FakeEvi) -> Instant {
    fake.records()
        .into_iter()
        .filter(|r| r.conn == 1 && r.dir == Dir::In && r.kind() == "audio_input")
        .nth(19)
        .expect("the 20th audio_input of the second socket")
        .at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_drop_ends_the_call() {
    let fake = failing_twice(Act::Drop).await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 15000)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    assert_eq!(fake.accepted(), 2, "one reconnect only");
    assert!(logged("EVI connection lost again after a reconnect"));
    // The caller is told it failed (Q.850 41, temporary failure), and why, within 2 s of the
    // second drop (the fake drops as the 20th audio_input of its second socket arrives).
    let reason = bye_reason(&call);
    assert!(
        reason.starts_with("Q.850;cause=41;text=\"EVI connection lost again after a reconnect"),
        "{reason}"
    );
    let dropped = second_failure_at(&fake);
    let bye_at = call.sip.as_ref().unwrap().remote_bye_at.unwrap();
    assert!(
        bye_at.saturating_duration_since(dropped) < Duration::from_secs(2),
        "BYE {:?} after the drop",
        bye_at.saturating_duration_since(dropped)
    );
    gw.stop().await;
}

/// A far end that hangs with its socket open (no close, no reset, pings unanswered): the
/// gateway gives the socket up after 2 s of silence, resumes the chat on a new one, and when
/// that one hangs too, hangs up with a failure cause naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_far_end_is_resumed_once_then_the_call_fails() {
    let fake = failing_twice(Act::Hang).await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 15000)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote), "the gateway hung up");
    assert_eq!(fake.accepted(), 2, "resumed once");
    let reconnect = &sent_by_gateway(&fake, "session_settings");
    assert_eq!(reconnect.len(), 2);
    let reason = bye_reason(&call);
    assert_eq!(
        reason,
        "Q.850;cause=41;text=\"EVI connection lost again after a reconnect (dropped: no answer \
         to pings for 2 s)\""
    );
    let hung = second_failure_at(&fake);
    let after = call.sip.as_ref().unwrap().remote_bye_at.unwrap() - hung;
    // 2 s of silence (pings every 0.5 s), then the BYE.
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_millis(2600),
        "BYE {after:?} after the far end hung"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_limit_moves_to_a_resumed_socket_with_no_gap() {
    let stream = || Act::Stream {
        hz: 1000.0,
        chunk_ms: 100,
        lead: 3,
    };
    let fake = FakeEvi::start(move |conn| {
        vec![
            if conn == 0 {
                metadata_later()
            } else {
                step(When::Connected, vec![Act::Metadata])
            },
            // EVI speaks when spoken to: a resumed socket only once caller audio reaches it.
            step(When::AudioInputs(1), vec![stream()]),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "session_limit_secs = 3\n").await;
    let call = place_call(plan(&gw, 4500)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Answered(200)));
    let conns = fake.conns();
    assert!(conns.len() >= 2, "{conns:?}");
    assert_eq!(
        conns[1]
            .query
            .get("resumed_chat_group_id")
            .map(String::as_str),
        Some(GROUP_ID)
    );
    assert_eq!(
        conns[0].client_close,
        Some(1000),
        "the old socket closed normally"
    );
    // Caller audio moved to the new socket.
    let on_new = fake
        .records()
        .iter()
        .filter(|r| r.conn == 1 && r.dir == Dir::In && r.kind() == "audio_input")
        .count();
    assert!(on_new > 10, "{on_new} audio_input on the resumed socket");
    // No run of silence between the first and last speech packet while the tone streamed: a
    // switch that waited on the new socket would leave several silent frames in a row. (A
    // lone one can come from this shared machine starving the call's send clock, which then
    // fills the slot with comfort silence; that is not the handover.)
    let first = call
        .rx
        .iter()
        .position(|r| r.rms() > uac::SPEECH_RMS)
        .unwrap();
    let last = call
        .rx
        .iter()
        .rposition(|r| r.rms() > uac::SPEECH_RMS)
        .unwrap();
    let silent: Vec<u16> = call.rx[first..=last]
        .iter()
        .filter(|r| r.rms() <= uac::SPEECH_RMS)
        .map(|r| r.seq)
        .collect();
    let run = call.rx[first..=last]
        .windows(2)
        .any(|w| w[0].rms() <= uac::SPEECH_RMS && w[1].rms() <= uac::SPEECH_RMS);
    assert!(
        !run && silent.len() <= 2,
        "silent packets during the call: {silent:?}"
    );
    assert!(last - first > 150, "{} packets of tone", last - first);
    let switched = fake
        .records()
        .iter()
        .find(|r| r.conn == 1 && r.dir == Dir::In && r.kind() == "audio_input")
        .map(|r| r.at)
        .unwrap();
    assert!(
        call.rx[last].at > switched,
        "audio kept flowing after the switch"
    );
    gw.stop().await;
}
