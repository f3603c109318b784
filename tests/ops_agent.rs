//! What agents report reaches the admin API and the metrics: transcripts and session details
//! (shown verbatim, the LiveKit room view built from them), an agent's own hang-up, a connect
//! failure, and a session that ends by itself. A scripted agent stands in for Hume or LiveKit.

mod common;
mod ops_support;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::{json, Value};

use common::*;
use ops_support::*;
use sipbridge::agent::{
    Agent, AgentError, AgentEvent, AgentOutput, AgentSession, AudioFrame, CallInfo, CallerEvent,
    ConnectFuture, Role,
};
use sipbridge::call::Gateway;
use sipbridge::config;

#[derive(Clone, Copy)]
enum Script {
    /// Talks (transcripts, a room detail), then hangs up after this many caller frames.
    TalkThenHangUp(u32),
    /// Refuses to connect.
    Fail,
    /// The session ends (None) after this many caller frames.
    EndAfter(u32),
}

struct Scripted(Script);

impl Agent for Scripted {
    fn connect(&self, _call: &CallInfo) -> ConnectFuture {
        let script = self.0;
        Box::pin(async move {
            if let Script::Fail = script {
                return Err(AgentError::Unreachable("scripted failure".into()));
            }
            let events = match script {
                Script::TalkThenHangUp(_) => VecDeque::from([
                    AgentEvent::Transcript {
                        role: Role::Assistant,
                        text: "Hello, how can I help?".into(),
                        emotions: vec![],
                    },
                    AgentEvent::Transcript {
                        role: Role::User,
                        text: "Book a table".into(),
                        emotions: vec![("Determination".into(), 0.61)],
                    },
                    AgentEvent::Detail {
                        key: "livekit_room",
                        value: json!({"name": "hume-call-test", "sid": "RM_test",
                            "participants": [{"identity": "agent-1", "name": "Agent",
                                "kind": "agent", "state": "active"}]}),
                    },
                    AgentEvent::Detail {
                        key: "chat_id",
                        value: json!("chat-123"),
                    },
                ]),
                _ => VecDeque::new(),
            };
            Ok(Box::new(Session {
                script,
                events,
                frames: 0,
            }) as Box<dyn AgentSession>)
        })
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }
}

struct Session {
    script: Script,
    events: VecDeque<AgentEvent>,
    frames: u32,
}

impl AgentSession for Session {
    fn send_audio(&mut self, _frame: &AudioFrame) {
        self.frames += 1;
    }

    fn send_event(&mut self, _event: CallerEvent) {}

    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        // The call polls its agent on every media pass (at least every 20 ms), so no waker is
        // kept.
        if let Some(e) = self.events.pop_front() {
            return Poll::Ready(Some(AgentOutput::Event(e)));
        }
        match self.script {
            Script::TalkThenHangUp(n) if self.frames == n => {
                self.frames += 1;
                Poll::Ready(Some(AgentOutput::Event(AgentEvent::Hangup {
                    reason: "goodbye".into(),
                })))
            }
            Script::EndAfter(n) if self.frames >= n => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }

    fn audio_queued(&self) -> bool {
        false
    }
}

async fn start(script: Script) -> Gateway {
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n"
    );
    let cfg = config::parse(&text, "ops.toml", &|_| None).expect("test config");
    // The default route goes to "echo": the scripted agent takes its place.
    let agents: HashMap<String, Arc<dyn Agent>> = HashMap::from([(
        "echo".to_string(),
        Arc::new(Scripted(script)) as Arc<dyn Agent>,
    )]);
    Gateway::start_with_agents(&cfg, agents)
        .await
        .expect("gateway start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_and_details_show_and_the_agents_hang_up_is_counted() {
    // Hangs up after 3 s of caller audio; the caller would hold for 20.
    let gw = start(Script::TalkThenHangUp(150)).await;
    let a = gw.http_addr;
    let call = place_calls(gw.sip_addr, 1, 20.0, USER, PASSWORD);
    let calls = poll(
        200,
        async || get(a, "/calls").await.json(),
        |v: &Value| v[0]["details"]["chat_id"] == "chat-123",
    )
    .await;
    let c = &calls[0];
    assert_eq!(
        c["agent"],
        json!({"name": "echo", "kind": "scripted"}),
        "{c:#}"
    );
    assert_eq!(
        c["transcript"],
        json!([
            {"role": "assistant", "text": "Hello, how can I help?", "emotions": []},
            {"role": "user", "text": "Book a table",
             "emotions": [{"name": "Determination", "score": 0.61}]}
        ])
    );
    assert_eq!(c["details"]["livekit_room"]["sid"], "RM_test");
    let rooms = get(a, "/livekit/rooms").await.json();
    let room = &rooms["rooms"][0];
    assert_eq!(room["name"], "hume-call-test");
    assert_eq!(room["num_participants"], 1);
    assert_eq!(room["call_id"], c["call_id"]);
    assert_eq!(room["participants"][0]["identity"], "agent-1");

    let report = call.await.unwrap();
    assert_eq!(report.calls[0].status, Some(200));
    assert_eq!(
        report.calls[0].bye, "remote",
        "the gateway hung up for the agent"
    );
    let id = encode(c["call_id"].as_str().unwrap());
    let ended = poll(
        100,
        async || get(a, &format!("/calls/{id}")).await.json(),
        |v: &Value| v["state"] == "ended",
    )
    .await;
    assert_eq!(ended["outcome"], "agent_hangup");
    assert!(ended["end_reason"].as_str().unwrap().contains("goodbye"));
    assert_eq!(ended["transcript"].as_array().unwrap().len(), 2);
    let m = get(a, "/metrics").await.body;
    assert_eq!(
        metric(&m, "sipbridge_calls_total{outcome=\"agent_hangup\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sipbridge_agent_connect_seconds_count{kind=\"scripted\"}"
        ),
        Some(1.0)
    );
    assert_eq!(get(a, "/livekit/rooms").await.json(), json!({"rooms": []}));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_connect_gets_the_call_a_503_and_is_counted() {
    let gw = start(Script::Fail).await;
    let report = place_calls(gw.sip_addr, 1, 1.0, USER, PASSWORD)
        .await
        .unwrap();
    assert_eq!(report.calls[0].status, Some(503));
    let m = poll(
        100,
        async || get(gw.http_addr, "/metrics").await.body,
        |m: &String| metric(m, "sipbridge_calls_total{outcome=\"agent_failed\"}") == Some(1.0),
    )
    .await;
    assert_eq!(
        metric(
            &m,
            "sipbridge_agent_errors_total{kind=\"scripted\",error=\"connect_failed\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sipbridge_calls_total{outcome=\"agent_failed\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "sipbridge_invite_responses_total{code=\"503\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "sipbridge_invite_responses_total{code=\"200\"}"),
        None
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_by_itself_hangs_up_once_and_counts_once() {
    let gw = start(Script::EndAfter(50)).await;
    let report = place_calls(gw.sip_addr, 1, 20.0, USER, PASSWORD)
        .await
        .unwrap();
    assert_eq!(report.calls[0].bye, "remote");
    let m = poll(
        100,
        async || get(gw.http_addr, "/metrics").await.body,
        |m: &String| metric(m, "sipbridge_calls_total{outcome=\"agent_error\"}") == Some(1.0),
    )
    .await;
    assert_eq!(
        metric(
            &m,
            "sipbridge_agent_errors_total{kind=\"scripted\",error=\"session_ended\"}"
        ),
        Some(1.0),
        "{m}"
    );
    gw.stop().await;
}
