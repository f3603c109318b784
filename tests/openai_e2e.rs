//! The OpenAI agent end to end on loopback: a Twilio-shaped call from the project's own UAC
//! through the gateway to the fake OpenAI server (tests/fake_openai), Realtime and GPT-Live.
//! The caller's received RTP is decoded and measured; the fake records everything and checks
//! what the gateway sends as the real server would (session config, truncation offsets, tool
//! call ids).

mod common;
mod fake_openai;
mod uac;

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use common::{admin_get, metric, PASSWORD, USER};
use fake_openai::{step, Act, Api, Dir, FakeOpenai, Record, When, AMPLITUDE, API_KEY};
use sipbridge::call::Gateway;
use sipbridge::codec::g711::{self, Law};
use sipbridge::load::signal::{rms, zero_crossing_hz};
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, place_call_in, CallPlan, CallResult};

const KEY_ENV: &str = "SIPBRIDGE_TEST_OPENAI_KEY";

/// A gateway whose only agent is an openai agent at `fake`; `agent_lines` are added to its
/// table. `key` is what the API-key variable holds.
async fn gateway(fake: &FakeOpenai, key: &str, agent_lines: &str) -> Gateway {
    let key = key.to_string();
    let env = move |k: &str| (k == KEY_ENV).then(|| key.clone());
    common::gateway_env(
        "media_timeout_secs = 5\n",
        &fake.agent_table(KEY_ENV, agent_lines),
        &env,
    )
    .await
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

fn reply(hz: f64, ms: u32, transcript: &str, paced: bool) -> Act {
    Act::Reply {
        hz,
        ms,
        transcript: transcript.into(),
        paced,
    }
}

fn bye_reason(call: &CallResult) -> String {
    call.sip
        .as_ref()
        .and_then(|s| s.remote_bye_reason.clone())
        .expect("the gateway's BYE carries a Reason")
}

fn sent_by_gateway(fake: &FakeOpenai, kind: &str) -> Vec<Record> {
    fake.records()
        .into_iter()
        .filter(|r| r.dir == Dir::In && r.kind() == kind)
        .collect()
}

/// The fake, checking everything as the server would, found nothing to object to.
fn assert_no_errors(fake: &FakeOpenai) {
    let errors: Vec<Value> = fake
        .records()
        .into_iter()
        .filter(|r| r.dir == Dir::Out && r.kind() == "error")
        .map(|r| r.json)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// The caller's audio as the model received it, decoded from every append.
fn appended_pcm(fake: &FakeOpenai, kind: &str, law: Law) -> Vec<i16> {
    let mut pcm = Vec::new();
    for r in sent_by_gateway(fake, kind) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r.json["audio"].as_str().unwrap())
            .unwrap();
        let mut out = vec![0i16; bytes.len()];
        g711::decode(law, &bytes, &mut out);
        pcm.extend(out);
    }
    pcm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_in_the_callers_law_answered_once_configured_with_transcripts_on_the_call() {
    let fake = FakeOpenai::start(Api::Realtime, |_| {
        vec![
            step(When::SessionConfigured, vec![Act::RateLimits]),
            step(
                When::Appends(5),
                vec![
                    Act::SpeechStarted,
                    Act::SpeechStopped,
                    Act::UserTranscript("hello openai".into()),
                    reply(1000.0, 1000, "Hello caller!", false),
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(
        &fake,
        API_KEY,
        "model = \"gpt-realtime-2.1\"\nvoice = \"cedar\"\n",
    )
    .await;
    let call = place_call_in(plan(&gw, 2500), Law::A).await;
    assert_eq!(call.status(), Some(200), "{call:?}");
    assert_eq!(call.bye(), Some(ByeOutcome::Answered(200)));

    // The handshake: the key as a bearer token, the model in the query.
    let conn = &fake.conns()[0];
    assert_eq!(conn.api_key.as_deref(), Some(API_KEY));
    assert_eq!(
        conn.query.get("model").map(String::as_str),
        Some("gpt-realtime-2.1")
    );
    // Answered only once the session was configured in the caller's law (PCMA here).
    let updated = fake.of("session.updated");
    assert_eq!(updated.len(), 1);
    let answered = call
        .sip
        .as_ref()
        .and_then(|s| s.answered)
        .expect("answered");
    assert!(answered > updated[0].at, "200 only after session.updated");
    let session = &sent_by_gateway(&fake, "session.update")[0].json["session"];
    assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcma");
    assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcma");
    assert_eq!(session["audio"]["output"]["voice"], "cedar");

    // The caller's 440 Hz reached the model as A-law, 20 ms an append.
    let up = appended_pcm(&fake, "input_audio_buffer.append", Law::A);
    assert!(up.len() > 8000, "{} samples appended", up.len());
    let p = zero_crossing_hz(&up[1600..], 8000.0);
    assert!((p - 440.0).abs() < 10.0, "caller pitch at OpenAI: {p}");
    assert!(sent_by_gateway(&fake, "input_audio_buffer.append")
        .iter()
        .all(|r| r.json["audio"].as_str().unwrap().len() == 216));

    // The caller heard the one-second reply at its pitch and level.
    let heard = call.speech();
    assert!(
        (48..=51).contains(&heard.len()),
        "{} speech packets",
        heard.len()
    );
    let pcm: Vec<i16> = uac::joined(&heard[1..heard.len() - 1]);
    let p = zero_crossing_hz(&pcm, 8000.0);
    assert!((p - 1000.0).abs() < 20.0, "pitch heard: {p}");
    let expected = AMPLITUDE / 2f64.sqrt();
    let level = rms(&pcm);
    assert!(
        (level - expected).abs() < expected * 0.1,
        "level {level} vs {expected}"
    );

    // Both transcripts and the session are on the call; the caller's BYE closed the socket.
    let record = admin_get(gw.http_addr, &format!("/calls/{}", call.call_id)).await;
    let lines = record["transcript"].as_array().expect("transcript");
    assert!(
        lines
            .iter()
            .any(|l| l["role"] == "user" && l["text"] == "hello openai"),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l["role"] == "assistant" && l["text"] == "Hello caller!"));
    assert_eq!(record["agent"]["kind"], "openai", "{record}");
    assert_eq!(record["details"]["openai"]["api"], "realtime");
    assert_eq!(record["details"]["openai"]["format"], "audio/pcma");
    assert!(
        record["details"]["openai_rate_limits"].is_array(),
        "{record}"
    );
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close
            == Some(1000))
            .await,
        "close 1000 from the gateway: {:?}",
        fake.conns()
    );
    assert_no_errors(&fake);
    gw.stop().await;
}

/// The truncation is what the caller heard: every 20 ms RTP packet of the reply the caller
/// received is in `audio_end_ms`, and nothing after the barge-in is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_truncates_the_reply_exactly_where_the_caller_stopped_hearing_it() {
    let fake = FakeOpenai::start(Api::Realtime, |_| {
        vec![
            step(
                When::Appends(5),
                vec![reply(1000.0, 4000, "A long answer.", true)],
            ),
            step(
                When::Appends(5),
                vec![
                    Act::Sleep(1200),
                    Act::SpeechStarted,
                    Act::Sleep(200),
                    Act::SpeechStopped,
                ],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 3500)).await;
    assert_eq!(call.status(), Some(200), "{call:?}");
    let truncations = fake.truncations();
    assert_eq!(truncations.len(), 1, "{truncations:?}");
    assert_no_errors(&fake);
    let heard = call.speech();
    let heard_ms = heard.len() as u64 * 20;
    let cut = truncations[0].audio_end_ms;
    assert!(
        (900..2000).contains(&cut) && cut.abs_diff(heard_ms) <= 20,
        "truncated at {cut} ms; the caller heard {heard_ms} ms"
    );
    // The reply was 4 s: the rest (and its deltas still in flight) never played.
    let started = fake.of("input_audio_buffer.speech_started")[0].at;
    let late = heard
        .iter()
        .filter(|r| r.at > started + Duration::from_millis(100))
        .count();
    assert_eq!(late, 0, "speech after the barge-in");
    let m = gw.shared().metrics.render();
    assert_eq!(
        metric(&m, "sipbridge_agent_connect_seconds_count{kind=\"openai\"}"),
        Some(1.0),
        "metrics by kind"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_plays_the_goodbye_out_then_hangs_up() {
    let fake = FakeOpenai::start(Api::Realtime, |_| {
        vec![step(
            When::Appends(3),
            vec![
                reply(800.0, 1000, "Goodbye!", false),
                Act::FunctionCall {
                    name: "end_call".into(),
                    arguments_json: "{}".into(),
                },
            ],
        )]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let call = place_call(plan(&gw, 8000)).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote), "{call:?}");
    assert!(
        bye_reason(&call).contains("cause=16"),
        "{}",
        bye_reason(&call)
    );
    let heard = call.speech();
    assert!(
        (48..=51).contains(&heard.len()),
        "the whole goodbye: {}",
        heard.len()
    );
    let bye_at = call
        .sip
        .as_ref()
        .and_then(|s| s.remote_bye_at)
        .expect("BYE time");
    assert!(heard.last().unwrap().at <= bye_at);
    gw.stop().await;
}

/// Keys both ways: the caller's reach the model as text (and get an answer), the model's
/// `send_dtmf` reaches the caller as RFC 4733 events and the model is told they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_both_ways() {
    let fake = FakeOpenai::start(Api::Realtime, |_| {
        vec![step(
            When::Appends(40),
            vec![Act::FunctionCall {
                name: "send_dtmf".into(),
                arguments_json: r#"{"digits":"12#"}"#.into(),
            }],
        )]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "").await;
    let mut p = plan(&gw, 3000);
    p.dtmf = vec![(Duration::from_millis(300), '5')];
    let call = place_call(p).await;
    assert_eq!(call.status(), Some(200));
    let items = sent_by_gateway(&fake, "conversation.item.create");
    let text = items
        .iter()
        .find(|r| r.json["item"]["type"] == "message")
        .expect("the key press as a user message");
    assert!(
        text.json["item"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("5 key"),
        "{}",
        text.json
    );
    let output = items
        .iter()
        .find(|r| r.json["item"]["type"] == "function_call_output")
        .expect("the tool's result");
    assert_eq!(output.json["item"]["output"], "sent 12#");
    assert_eq!(sent_by_gateway(&fake, "response.create").len(), 2);
    assert_eq!(call.dtmf_rx, ['1', '2', '#']);
    assert_no_errors(&fake);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_or_an_unknown_model_rejects_the_call_with_503() {
    let fake = FakeOpenai::start(Api::Realtime, |_| Vec::new()).await;
    let gw = gateway(&fake, "sk-wrong", "").await;
    let call = place_call(plan(&gw, 1000)).await;
    assert_eq!(call.status(), Some(503), "{call:?}");
    assert_eq!(fake.conns()[0].rejected, Some(401));
    let m = gw.shared().metrics.render();
    assert_eq!(
        metric(
            &m,
            "sipbridge_agent_errors_total{kind=\"openai\",error=\"connect_failed\"}"
        ),
        Some(1.0)
    );
    gw.stop().await;

    let gw = gateway(&fake, API_KEY, "model = \"gpt-nonexistent\"\n").await;
    let call = place_call(plan(&gw, 1000)).await;
    assert_eq!(call.status(), Some(503), "{call:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_or_an_expired_session_ends_the_call_with_cause_41() {
    for fault in [
        Act::Drop,
        Act::Error {
            code: "session_expired".into(),
            message: "Your session hit the maximum duration of 60 minutes.".into(),
            r#type: "invalid_request_error".into(),
        },
    ] {
        let fake = FakeOpenai::start(Api::Realtime, move |_| {
            vec![step(When::Appends(25), vec![fault.clone()])]
        })
        .await;
        let gw = gateway(&fake, API_KEY, "").await;
        let call = place_call(plan(&gw, 6000)).await;
        assert_eq!(call.bye(), Some(ByeOutcome::Remote), "{call:?}");
        assert!(
            bye_reason(&call).contains("cause=41"),
            "{}",
            bye_reason(&call)
        );
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_live_from_session_start_to_session_close() {
    let fake = FakeOpenai::start(Api::Live, |_| {
        vec![
            step(
                When::Appends(5),
                vec![
                    Act::InputTranscript("hi there".into()),
                    Act::LiveAudio {
                        hz: 1000.0,
                        ms: 600,
                        paced: false,
                    },
                    Act::OutputTranscript("Hello from GPT-Live".into()),
                    Act::Usage(1.5),
                ],
            ),
            step(
                When::Appends(50),
                vec![Act::DelegationCall {
                    name: "send_dtmf".into(),
                    arguments_json: r#"{"digits":"9"}"#.into(),
                }],
            ),
        ]
    })
    .await;
    let gw = gateway(&fake, API_KEY, "delegation_model = \"gpt-5.2\"\n").await;
    let mut p = plan(&gw, 3000);
    p.dtmf = vec![(Duration::from_millis(1500), '7')];
    let call = place_call(p).await;
    assert_eq!(call.status(), Some(200), "{call:?}");
    let conn = &fake.conns()[0];
    assert_eq!(conn.path, "/v1/live/sessions");
    assert!(conn.query.is_empty());
    let start = &sent_by_gateway(&fake, "session.start")[0].json["session"];
    assert_eq!(
        start["audio"]["format"],
        serde_json::json!({"type": "audio/pcmu", "rate": 8000})
    );
    assert_eq!(start["delegation"]["responses"]["model"], "gpt-5.2");
    // Before the key press (the caller sends events, not audio, while a key is down).
    let up = appended_pcm(&fake, "session.input_audio.append", Law::Mu);
    let p = zero_crossing_hz(&up[1600..8000], 8000.0);
    assert!((p - 440.0).abs() < 10.0, "caller pitch at GPT-Live: {p}");
    let heard = call.speech();
    assert!(
        (29..=31).contains(&heard.len()),
        "{} speech packets",
        heard.len()
    );
    // Keys both ways, through instructions and the delegation.
    let appended = sent_by_gateway(&fake, "session.instructions.append");
    assert!(appended[0].json["content"]
        .as_str()
        .unwrap()
        .contains("7 key"));
    let outputs = sent_by_gateway(&fake, "response.item.create");
    assert_eq!(outputs[0].json["item"]["output"], "sent 9");
    assert_eq!(call.dtmf_rx, ['9']);
    // The caller's BYE: session.close, confirmed, then the socket closed.
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close
            == Some(1000))
            .await,
        "{:?}",
        fake.conns()
    );
    assert_eq!(sent_by_gateway(&fake, "session.close").len(), 1);
    assert_eq!(fake.of("session.closed").len(), 1);
    let record = admin_get(gw.http_addr, &format!("/calls/{}", call.call_id)).await;
    let lines = record["transcript"].as_array().expect("transcript");
    assert!(
        lines
            .iter()
            .any(|l| l["role"] == "user" && l["text"] == "hi there"),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l["role"] == "assistant" && l["text"] == "Hello from GPT-Live"));
    assert_eq!(record["details"]["openai"]["api"], "live");
    assert_eq!(record["details"]["openai_usage"]["seconds"], 1.5);
    assert_no_errors(&fake);
    gw.stop().await;
}
