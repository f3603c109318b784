//! Protocol conformance against Hume's official Python SDK: one call through the gateway to
//! the fake EVI exercises every message type the gateway sends and every type EVI sends, and
//! the recordings are validated by scripts/hume-sdk-check (the SDK's pydantic models, in a
//! throwaway virtualenv). A missing python3 or venv is a failure with instructions, never a
//! skip.

mod common;
mod fake_evi;
mod uac;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{python_script, rtp_range, temp_dir, PASSWORD, USER};
use fake_evi::{step, Act, Dir, FakeEvi, When, API_KEY};
use sipbridge::config;
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, CallPlan};

const KEY_ENV: &str = "SIPBRIDGE_TEST_HUME_KEY";

/// Runs scripts/hume-sdk-check; (success, stdout + stderr).
fn sdk_check(gateway: &Path, evi: &Path) -> (bool, String) {
    let (gateway, evi) = (gateway.display().to_string(), evi.display().to_string());
    python_script("hume-sdk-check", &[&gateway, &evi])
}

fn kinds(fake: &FakeEvi, dir: Dir) -> BTreeSet<String> {
    fake.records()
        .iter()
        .filter(|r| r.dir == dir)
        .map(|r| r.kind().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_both_ways_validates_against_the_official_sdk() {
    let tone = |id: &str, chunks| Act::Tone {
        id: id.into(),
        hz: 1000.0,
        chunks,
        chunk_ms: 100,
        first_index: 0,
    };
    let fake = FakeEvi::start(move |_| {
        vec![
            step(When::Connected, vec![Act::Metadata]),
            step(
                When::SessionSettings,
                vec![
                    Act::SessionSettingsEcho,
                    Act::UserMessage {
                        text: "what's the".into(),
                        interim: true,
                    },
                    Act::UserMessage {
                        text: "what's the weather".into(),
                        interim: false,
                    },
                    Act::AssistantMessage("Let me check.".into()),
                    Act::AssistantProsody,
                    tone("seg-1", 3),
                    // A function tool the gateway does not have: it answers tool_error.
                    Act::ToolCall {
                        name: "get_weather".into(),
                        response_required: true,
                    },
                    Act::ToolResponse {
                        name: "web_search".into(),
                    },
                    Act::ToolError,
                    Act::Error {
                        code: "W0101".into(),
                        slug: "no_vocal_bursts".into(),
                        message: "a warning, not fatal".into(),
                    },
                    Act::UserInterruption,
                    tone("seg-2", 3),
                    Act::AssistantEnd,
                    Act::Sleep(300),
                    // The gateway answers tool_response, plays out, and hangs up.
                    Act::ToolCall {
                        name: "hang_up".into(),
                        response_required: true,
                    },
                ],
            ),
        ]
    })
    .await;
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n\
         [agents.evi]\nkind = \"hume\"\nurl = \"{}\"\napi_key_env = \"{KEY_ENV}\"\n\
         config_id = \"cfg-sdk\"\nconfig_version = 2\nverbose_transcription = true\n",
        fake.url()
    );
    let cfg = config::parse(&text, "test.toml", &|k| {
        (k == KEY_ENV).then(|| API_KEY.to_string())
    })
    .unwrap();
    let gw = sipbridge::call::Gateway::start(&cfg).await.unwrap();
    let call = place_call(CallPlan {
        target: gw.sip_addr,
        username: USER.into(),
        password: PASSWORD.into(),
        hold: Duration::from_secs(15),
        caller_hz: Some(440.0),
        max_wait: Duration::from_secs(20),
        dtmf: Vec::new(),
    })
    .await;
    assert_eq!(
        call.bye(),
        Some(ByeOutcome::Remote),
        "hung up by the hang_up tool"
    );
    assert!(
        fake.wait_for(Duration::from_secs(3), |_, c| c[0].client_close.is_some())
            .await
    );
    gw.stop().await;

    let q = &fake.conns()[0].query;
    assert_eq!(q.get("config_id").map(String::as_str), Some("cfg-sdk"));
    assert_eq!(q.get("config_version").map(String::as_str), Some("2"));
    assert_eq!(
        q.get("verbose_transcription").map(String::as_str),
        Some("true")
    );

    let sent: BTreeSet<String> = [
        "audio_input",
        "session_settings",
        "tool_error",
        "tool_response",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds(&fake, Dir::In), sent, "what the gateway sends");
    let received: BTreeSet<String> = [
        "assistant_end",
        "assistant_message",
        "assistant_prosody",
        "audio_output",
        "chat_metadata",
        "error",
        "session_settings",
        "tool_call",
        "tool_error",
        "tool_response",
        "user_interruption",
        "user_message",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        kinds(&fake, Dir::Out),
        received,
        "all 12 SubscribeEvent types"
    );

    let dir = temp_dir("hume-sdk");
    let (to_evi, from_evi) = fake.write_jsonl(&dir);
    let (ok, report) = sdk_check(&to_evi, &from_evi);
    eprintln!("{report}");
    assert!(ok, "the SDK refused recorded messages:\n{report}");
    assert!(
        report.contains("client messages:") && report.contains("server messages:"),
        "{report}"
    );

    // The check itself must be able to fail: the same recording with one field misspelt and
    // one required field missing.
    let bad = dir.join("bad.jsonl");
    let original = std::fs::read_to_string(&to_evi).unwrap();
    let broken = original
        .replacen("\"sample_rate\"", "\"sample_rte\"", 1)
        .replacen("\"tool_call_id\"", "\"tool_call\"", 1);
    std::fs::write(&bad, broken).unwrap();
    let (ok, report) = sdk_check(&bad, &from_evi);
    assert!(!ok, "a broken recording passed:\n{report}");
    assert!(
        report.contains("sample_rate") && report.contains("tool_call_id"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
