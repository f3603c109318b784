//! Protocol conformance against OpenAI's official Python SDK: for each API, one call through
//! the gateway to the fake OpenAI server exercises every event type the gateway sends and
//! every type the fake sends, and the recordings are validated by scripts/openai-sdk-check
//! (the SDK's pydantic models, strict, unknown fields refused at any depth, in a throwaway
//! virtualenv). A missing python3 or venv is a failure with instructions, never a skip.

mod common;
mod fake_openai;
mod uac;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{python_script, temp_dir, PASSWORD, USER};
use fake_openai::{step, Act, Api, Dir, FakeOpenai, When, API_KEY};
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, CallPlan};

const KEY_ENV: &str = "SIPBRIDGE_TEST_OPENAI_KEY";

fn sdk_check(api: &str, sent: &Path, received: &Path) -> (bool, String) {
    let (sent, received) = (sent.display().to_string(), received.display().to_string());
    python_script("openai-sdk-check", &[api, &sent, &received])
}

fn kinds(fake: &FakeOpenai, dir: Dir) -> BTreeSet<String> {
    fake.records()
        .iter()
        .filter(|r| r.dir == dir)
        .map(|r| r.kind().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn call_through(
    fake: &FakeOpenai,
    agent_lines: &str,
    hold_ms: u64,
    dtmf_ms: u64,
) -> uac::CallResult {
    let env = |k: &str| (k == KEY_ENV).then(|| API_KEY.to_string());
    let gw = common::gateway_env("", &fake.agent_table(KEY_ENV, agent_lines), &env).await;
    let call = place_call(CallPlan {
        target: gw.sip_addr,
        username: USER.into(),
        password: PASSWORD.into(),
        hold: Duration::from_millis(hold_ms),
        caller_hz: Some(440.0),
        max_wait: Duration::from_secs(20),
        dtmf: vec![(Duration::from_millis(dtmf_ms), '5')],
    })
    .await;
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close.is_some())
            .await,
        "the gateway closes the socket: {:?}",
        fake.conns()
    );
    gw.stop().await;
    call
}

/// Validates the fake's recordings, then the same recording with fields broken, which must
/// fail naming them.
fn validate(fake: &FakeOpenai, api: &str, breaks: &[(&str, &str)], named: &[&str]) {
    let dir = temp_dir(&format!("openai-sdk-{api}"));
    let (sent, received) = fake.write_jsonl(&dir);
    let (ok, report) = sdk_check(api, &sent, &received);
    eprintln!("{report}");
    assert!(ok, "the SDK refused recorded events:\n{report}");
    assert!(
        report.contains("client messages:") && report.contains("server messages:"),
        "{report}"
    );

    let bad = dir.join("bad.jsonl");
    let mut broken = std::fs::read_to_string(&sent).unwrap();
    for (from, to) in breaks {
        assert!(broken.contains(from), "nothing to break: {from}");
        broken = broken.replacen(from, to, 1);
    }
    std::fs::write(&bad, broken).unwrap();
    let (ok, report) = sdk_check(api, &bad, &received);
    assert!(!ok, "a broken recording passed:\n{report}");
    for field in named {
        assert!(report.contains(field), "{field} not named:\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_events_both_ways_validate_against_the_official_sdk() {
    let fake = FakeOpenai::start(Api::Realtime, |_| {
        vec![
            step(When::SessionConfigured, vec![Act::RateLimits]),
            step(
                When::Appends(5),
                vec![
                    Act::SpeechStarted,
                    Act::SpeechStopped,
                    Act::UserTranscript("what's the weather".into()),
                    Act::Reply {
                        hz: 1000.0,
                        ms: 3000,
                        transcript: "Sunny all day.".into(),
                        paced: true,
                    },
                ],
            ),
            step(
                When::Appends(5),
                vec![
                    Act::Sleep(800),
                    // A barge-in: the gateway truncates, the fake confirms.
                    Act::SpeechStarted,
                    Act::Sleep(200),
                    Act::SpeechStopped,
                    Act::Error {
                        code: "invalid_value".into(),
                        message: "a recoverable error".into(),
                        r#type: "invalid_request_error".into(),
                    },
                    Act::FunctionCall {
                        name: "send_dtmf".into(),
                        arguments_json: r#"{"digits":"1"}"#.into(),
                    },
                ],
            ),
            step(
                When::Appends(150),
                vec![Act::FunctionCall {
                    name: "end_call".into(),
                    arguments_json: "{}".into(),
                }],
            ),
        ]
    })
    .await;
    let call = call_through(&fake, "", 10_000, 2000).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote), "end_call hangs up");
    assert_eq!(fake.truncations().len(), 1);

    let sent = set(&[
        "conversation.item.create",
        "conversation.item.truncate",
        "input_audio_buffer.append",
        "response.create",
        "session.update",
    ]);
    assert_eq!(kinds(&fake, Dir::In), sent, "what the gateway sends");
    let received = set(&[
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.truncated",
        "error",
        "input_audio_buffer.committed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "rate_limits.updated",
        "response.content_part.added",
        "response.content_part.done",
        "response.created",
        "response.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_item.added",
        "response.output_item.done",
        "session.created",
        "session.updated",
    ]);
    assert_eq!(kinds(&fake, Dir::Out), received, "what the fake sends");
    validate(
        &fake,
        "realtime",
        &[
            ("\"audio_end_ms\"", "\"audio_end_msec\""),
            ("\"output_modalities\"", "\"modalities\""),
        ],
        &["audio_end_ms", "modalities"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_live_events_both_ways_validate_against_the_official_sdk() {
    let fake = FakeOpenai::start(Api::Live, |_| {
        vec![step(
            When::Appends(5),
            vec![
                Act::InputTranscript("hello live".into()),
                Act::LiveAudio {
                    hz: 1000.0,
                    ms: 500,
                    paced: false,
                },
                Act::OutputTranscript("Hi, caller.".into()),
                Act::Usage(1.0),
                Act::Info(
                    "session_expiring".into(),
                    "The session expires soon.".into(),
                ),
                Act::LiveError {
                    code: "invalid_value".into(),
                    message: "a recoverable error".into(),
                },
                Act::DelegationCall {
                    name: "send_dtmf".into(),
                    arguments_json: r#"{"digits":"2"}"#.into(),
                },
            ],
        )]
    })
    .await;
    let call = call_through(&fake, "delegation_model = \"gpt-5.2\"\n", 3000, 1500).await;
    assert_eq!(call.bye(), Some(ByeOutcome::Answered(200)));
    let sent = set(&[
        "response.create",
        "response.item.create",
        "session.close",
        "session.input_audio.append",
        "session.instructions.append",
        "session.start",
    ]);
    assert_eq!(kinds(&fake, Dir::In), sent, "what the gateway sends");
    let received = set(&[
        "error",
        "info",
        "response.event",
        "session.closed",
        "session.delegation.created",
        "session.input_transcript.delta",
        "session.instructions.appended",
        "session.output_audio.delta",
        "session.output_transcript.delta",
        "session.started",
        "session.usage.updated",
    ]);
    assert_eq!(kinds(&fake, Dir::Out), received, "what the fake sends");
    validate(
        &fake,
        "live",
        &[
            ("\"rate\":8000", "\"rate\":\"8000\""),
            ("\"call_id\"", "\"callid\""),
        ],
        &["rate", "callid"],
    );
}
