use std::collections::BTreeMap;

use super::*;
use crate::agent::hume::protocol::{
    AssistantMessage, AudioOutput, Bare, ChatMessage, ChatMetadata, MillisecondInterval,
    ProsodyInference, UserInterruption, UserMessage,
};
use crate::codec::wav::write_pcm16;

fn cfg() -> CoreConfig {
    CoreConfig {
        call_id: "abc@10.0.0.1".into(),
        caller: "+15551230001".into(),
        called: "+15551230002".into(),
        resume: true,
        connect_timeout: Duration::from_secs(5),
        session_limit: Duration::from_secs(100),
        batch_frames: 1,
    }
}

struct H {
    core: EviCore,
    now: Instant,
    t0: Instant,
    /// Sockets that stopped answering (a hung far end); the others answer every ping.
    hung: Vec<ConnId>,
}

impl H {
    fn new(cfg: CoreConfig) -> H {
        let t0 = Instant::now();
        H {
            core: EviCore::new(t0, cfg),
            now: t0,
            t0,
            hung: Vec::new(),
        }
    }

    /// A session whose first socket is up and answered; outputs so far drained.
    fn live(cfg: CoreConfig) -> H {
        let mut h = H::new(cfg);
        h.core.on_connected(h.now, 1);
        h.msg(1, metadata("chat-1", "group-1"));
        let out = h.drain();
        assert!(out.iter().any(|o| matches!(o, Output::Ready)));
        h
    }

    /// The outputs so far, but the keep-alive pings (the far end answers them in `at`).
    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output())
            .filter(|o| !matches!(o, Output::Ping { .. }))
            .collect()
    }

    fn msg(&mut self, conn: ConnId, m: ServerMessage) {
        self.core.on_message(self.now, conn, m);
    }

    /// Advances the clock to `secs` after the start, firing every timer on the way.
    fn at(&mut self, secs: f64) {
        let target = self.t0 + Duration::from_secs_f64(secs);
        while let Some(t) = self.core.poll_timeout().filter(|&t| t <= target) {
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            // A live far end answers each ping at once (the pings stay in the outputs).
            for conn in (1..8).filter(|c| !self.hung.contains(c)) {
                self.core.on_heard(self.now, conn);
            }
        }
        self.now = target;
    }

    fn caller_frame(&mut self) {
        self.core.on_caller_audio(self.now, &[100; 160]);
    }
}

fn metadata(chat: &str, group: &str) -> ServerMessage {
    ServerMessage::ChatMetadata(ChatMetadata {
        chat_id: chat.into(),
        chat_group_id: group.into(),
        request_id: Some("req-1".into()),
        custom_session_id: None,
    })
}

fn audio(id: &str, index: u32, ms: usize) -> ServerMessage {
    let pcm = vec![4000i16; 48 * ms];
    ServerMessage::AudioOutput(AudioOutput {
        id: id.into(),
        index,
        data: base64::engine::general_purpose::STANDARD.encode(write_pcm16(48000, &pcm)),
        custom_session_id: None,
    })
}

fn scores() -> Inference {
    Inference {
        prosody: Some(ProsodyInference {
            scores: BTreeMap::from([
                ("Joy".to_string(), 0.6),
                ("Calmness".to_string(), 0.8),
                ("Anger".to_string(), 0.1),
                ("Interest".to_string(), 0.7),
            ]),
        }),
    }
}

fn user_message(text: &str, interim: bool) -> ServerMessage {
    ServerMessage::UserMessage(UserMessage {
        message: ChatMessage {
            role: "user".into(),
            content: Some(text.into()),
            tool_call: None,
            tool_result: None,
        },
        models: scores(),
        from_text: false,
        interim,
        time: MillisecondInterval { begin: 0, end: 800 },
        language: None,
        custom_session_id: None,
    })
}

fn assistant_end() -> ServerMessage {
    ServerMessage::AssistantEnd(Bare::default())
}

fn interruption() -> ServerMessage {
    ServerMessage::UserInterruption(UserInterruption {
        time: 1,
        custom_session_id: None,
    })
}

fn tool_call(name: &str, response_required: bool) -> ServerMessage {
    ServerMessage::ToolCall(ToolCall {
        name: name.into(),
        parameters: "{}".into(),
        tool_call_id: "tc-1".into(),
        response_required,
        tool_type: "builtin".into(),
        custom_session_id: None,
    })
}

fn frames(out: &[Output]) -> usize {
    out.iter().filter(|o| matches!(o, Output::Audio(_))).count()
}

fn sends(out: &[Output]) -> Vec<(ConnId, &ClientMessage)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, msg } => Some((*conn, msg)),
            _ => None,
        })
        .collect()
}

/// The reason the session ended with, checking on the way that only the ends EVI or the
/// caller meant (the hang_up tool, a clean close, the caller's BYE) are not failures.
fn end_reason(out: &[Output]) -> Option<&str> {
    out.iter().find_map(|o| match o {
        Output::End { reason, failed } => {
            let meant = ["EVI hung up", "EVI ended the chat", "caller hung up"]
                .iter()
                .any(|p| reason.starts_with(p));
            assert_eq!(*failed, !meant, "{reason}: failed = {failed}");
            Some(reason.as_str())
        }
        _ => None,
    })
}

fn closes(out: &[Output]) -> Vec<ConnId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn connects(out: &[Output]) -> Vec<(ConnId, Option<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { conn, resume_group } => Some((*conn, resume_group.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn answers_only_after_chat_metadata_and_sends_the_session_settings() {
    let mut h = H::new(cfg());
    assert_eq!(connects(&h.drain()), vec![(1, None)]);
    h.core.on_connected(h.now, 1);
    h.caller_frame();
    assert!(
        h.drain().is_empty(),
        "no answer and no audio before chat_metadata"
    );
    h.msg(1, metadata("chat-1", "group-1"));
    let out = h.drain();
    let details: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(AgentEvent::Detail { key, value }) => Some((*key, value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        details,
        vec![
            ("chat_id", "chat-1".into()),
            ("chat_group_id", "group-1".into()),
            ("request_id", "req-1".into())
        ]
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    let json = serde_json::to_value(s[0].1).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "session_settings",
            "audio": {"encoding": "linear16", "sample_rate": 8000, "channels": 1},
            "custom_session_id": "abc@10.0.0.1",
            "variables": {"caller_number": "+15551230001", "called_number": "+15551230002"}})
    );
    // Settings go out before the call is answered.
    let settings_at = out.iter().position(|o| matches!(o, Output::Send { .. }));
    let ready_at = out.iter().position(|o| matches!(o, Output::Ready));
    assert!(settings_at < ready_at);
    assert_eq!(h.core.caller_frames_dropped(), 1);
}

#[test]
fn caller_audio_goes_up_in_batches_of_whole_frames() {
    let mut h = H::live(CoreConfig {
        batch_frames: 3,
        ..cfg()
    });
    for _ in 0..7 {
        h.caller_frame();
    }
    let out = h.drain();
    let s = sends(&out);
    assert_eq!(s.len(), 2, "7 frames: two messages of 3, one frame waiting");
    for (conn, m) in s {
        assert_eq!(conn, 1);
        let ClientMessage::AudioInput(a) = m else {
            panic!("{m:?}")
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&a.data)
            .unwrap();
        assert_eq!(bytes.len(), 960);
        assert_eq!(&bytes[..2], &100i16.to_le_bytes());
    }
}

#[test]
fn speech_is_played_and_barge_in_clears_it_and_drops_late_chunks() {
    let mut h = H::live(cfg());
    h.msg(1, audio("a", 0, 100));
    h.msg(1, audio("a", 1, 100));
    assert_eq!(frames(&h.drain()), 10);
    h.msg(1, interruption());
    let out = h.drain();
    assert!(matches!(out.as_slice(), [Output::ClearPlayout]), "{out:?}");
    h.msg(1, audio("a", 2, 100));
    assert_eq!(frames(&h.drain()), 0, "late chunk of the interrupted reply");
    h.msg(1, audio("b", 0, 100));
    assert_eq!(frames(&h.drain()), 5, "the next reply plays");
    assert_eq!(h.core.playout_stats().chunks_discarded, 1);
}

#[test]
fn a_final_user_message_clears_playout_and_becomes_a_transcript() {
    let mut h = H::live(cfg());
    h.msg(1, user_message("hel", true));
    assert!(
        h.drain().is_empty(),
        "interim messages are neither barge-in nor transcript"
    );
    h.msg(1, user_message("hello there", false));
    let out = h.drain();
    assert!(matches!(out[0], Output::ClearPlayout));
    match &out[1] {
        Output::Event(AgentEvent::Transcript {
            role,
            text,
            emotions,
        }) => {
            assert_eq!(*role, Role::User);
            assert_eq!(text, "hello there");
            let names: Vec<&str> = emotions.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, vec!["Calmness", "Interest", "Joy"]);
        }
        other => panic!("{other:?}"),
    }
    h.msg(
        1,
        ServerMessage::AssistantMessage(AssistantMessage {
            id: Some("m1".into()),
            message: ChatMessage {
                role: "assistant".into(),
                content: Some("Hi!".into()),
                tool_call: None,
                tool_result: None,
            },
            models: Inference::default(),
            from_text: false,
            is_quick_response: false,
            language: None,
            custom_session_id: None,
        }),
    );
    let out = h.drain();
    assert!(
        matches!(&out[..], [Output::Event(AgentEvent::Transcript { role: Role::Assistant, text, emotions })]
        if text == "Hi!" && emotions.is_empty())
    );
}

#[test]
fn hang_up_tool_answers_and_ends_after_the_reply() {
    let mut h = H::live(cfg());
    h.msg(1, audio("a", 0, 100));
    h.msg(1, tool_call(HANG_UP_TOOL, true));
    let out = h.drain();
    let s = sends(&out);
    assert!(
        matches!(s[..], [(1, ClientMessage::ToolResponse(ref r))] if r.tool_call_id == "tc-1"
        && r.tool_name.as_deref() == Some("hang_up"))
    );
    assert_eq!(end_reason(&out), None, "the goodbye may still be streaming");
    h.msg(1, audio("a", 1, 100));
    h.msg(1, assistant_end());
    let out = h.drain();
    assert!(frames(&out) >= 5);
    assert_eq!(closes(&out), vec![1]);
    assert_eq!(end_reason(&out), Some("EVI hung up (hang_up tool)"));
    // The End comes after every frame.
    assert!(matches!(out.last(), Some(Output::End { .. })));
    assert!(h.core.is_ended() && h.core.poll_timeout().is_none());
}

#[test]
fn hang_up_without_assistant_end_waits_a_grace_period() {
    let mut h = H::live(cfg());
    h.msg(1, audio("a", 0, 100));
    h.msg(1, tool_call(HANG_UP_TOOL, false));
    let out = h.drain();
    assert!(sends(&out).is_empty(), "no response required");
    h.at(1.0);
    assert_eq!(end_reason(&h.drain()), None);
    h.at(2.5);
    assert_eq!(end_reason(&h.drain()), Some("EVI hung up (hang_up tool)"));
}

#[test]
fn hang_up_between_replies_ends_at_once_and_a_close_after_it_is_not_an_error() {
    let mut h = H::live(cfg());
    h.msg(1, tool_call(HANG_UP_TOOL, false));
    assert_eq!(end_reason(&h.drain()), Some("EVI hung up (hang_up tool)"));

    let mut h = H::live(cfg());
    h.msg(1, audio("a", 0, 100));
    h.msg(1, tool_call(HANG_UP_TOOL, false));
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Clean {
            code: 1000,
            reason: String::new(),
        },
    );
    assert_eq!(end_reason(&h.drain()), Some("EVI hung up (hang_up tool)"));
}

#[test]
fn other_tools_get_an_error_so_evi_does_not_wait() {
    let mut h = H::live(cfg());
    h.msg(1, tool_call("get_weather", true));
    let out = h.drain();
    match sends(&out)[..] {
        [(1, ClientMessage::ToolError(ref e))] => {
            assert_eq!(e.tool_call_id, "tc-1");
            assert!(e.error.contains("get_weather"));
        }
        ref other => panic!("{other:?}"),
    }
    h.msg(1, tool_call("log_it", false));
    assert!(h.drain().is_empty());
}

#[test]
fn an_evi_error_ends_the_call_with_code_and_slug_but_a_warning_does_not() {
    let mut h = H::live(cfg());
    let err = |code: &str| {
        ServerMessage::Error(EviError {
            code: code.into(),
            slug: "some_slug".into(),
            message: "details".into(),
            request_id: None,
            custom_session_id: None,
        })
    };
    h.msg(1, err("W0101"));
    assert!(h.drain().is_empty());
    h.msg(1, audio("a", 0, 30));
    h.msg(1, err("E0710"));
    let out = h.drain();
    assert_eq!(closes(&out), vec![1]);
    assert_eq!(frames(&out), 2, "what was decoded still plays, padded");
    assert_eq!(end_reason(&out), Some("EVI error E0710 some_slug: details"));
}

#[test]
fn a_clean_server_close_ends_the_call() {
    let mut h = H::live(cfg());
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Clean {
            code: 1000,
            reason: "bye".into(),
        },
    );
    let out = h.drain();
    assert_eq!(
        end_reason(&out),
        Some("EVI ended the chat (close code 1000: bye)")
    );
    assert!(closes(&out).is_empty(), "already closed");
}

#[test]
fn a_dropped_socket_reconnects_once_with_the_chat_group_then_gives_up() {
    let mut h = H::live(cfg());
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Dropped {
            error: "reset".into(),
        },
    );
    let out = h.drain();
    assert_eq!(connects(&out), vec![(2, Some("group-1".into()))]);
    assert_eq!(end_reason(&out), None);
    h.caller_frame();
    assert!(
        h.drain().is_empty(),
        "no socket for the caller while reconnecting"
    );
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    let out = h.drain();
    assert!(
        !out.iter().any(|o| matches!(o, Output::Ready)),
        "answered once only"
    );
    assert!(matches!(
        sends(&out)[..],
        [(2, ClientMessage::SessionSettings(_))]
    ));
    h.caller_frame();
    assert!(matches!(
        sends(&h.drain())[..],
        [(2, ClientMessage::AudioInput(_))]
    ));
    h.core.on_closed(
        h.now,
        2,
        SocketClose::Dropped {
            error: "reset".into(),
        },
    );
    let reason = end_reason(&h.drain()).map(str::to_string);
    assert_eq!(
        reason.as_deref(),
        Some("EVI connection lost again after a reconnect (dropped: reset)")
    );
}

#[test]
fn a_reconnect_that_fails_or_times_out_ends_the_call() {
    let mut h = H::live(cfg());
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Dropped {
            error: "eof".into(),
        },
    );
    h.drain();
    h.core.on_connect_failed(h.now, 2, "HTTP 503".into());
    assert_eq!(
        end_reason(&h.drain()),
        Some("EVI connection lost and the reconnect failed: HTTP 503")
    );

    let mut h = H::live(cfg());
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Dropped {
            error: "eof".into(),
        },
    );
    h.drain();
    h.at(6.0);
    let out = h.drain();
    assert_eq!(closes(&out), vec![2]);
    assert!(end_reason(&out)
        .unwrap()
        .contains("no chat_metadata within 5 s"));
}

#[test]
fn without_resume_a_reconnect_starts_a_new_chat() {
    let mut h = H::live(CoreConfig {
        resume: false,
        ..cfg()
    });
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Dropped {
            error: "eof".into(),
        },
    );
    assert_eq!(connects(&h.drain()), vec![(2, None)]);
}

#[test]
fn a_reconnect_that_holds_for_a_minute_earns_the_next_one() {
    let mut h = H::live(cfg());
    h.core
        .on_closed(h.now, 1, SocketClose::Dropped { error: "a".into() });
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    h.at(61.0);
    h.drain();
    h.core
        .on_closed(h.now, 2, SocketClose::Dropped { error: "b".into() });
    assert_eq!(connects(&h.drain()), vec![(3, Some("group-1".into()))]);
}

#[test]
fn the_first_socket_failing_or_timing_out_fails_the_setup() {
    let mut h = H::new(cfg());
    h.drain();
    h.core
        .on_connect_failed(h.now, 1, "HTTP 401 Unauthorized".into());
    assert_eq!(
        end_reason(&h.drain()),
        Some("cannot reach EVI: HTTP 401 Unauthorized")
    );

    let mut h = H::new(cfg());
    h.drain();
    h.core.on_connected(h.now, 1);
    assert_eq!(h.core.poll_timeout(), Some(h.t0 + Duration::from_secs(5)));
    h.at(5.0);
    let out = h.drain();
    assert_eq!(closes(&out), vec![1]);
    assert_eq!(
        end_reason(&out),
        Some("EVI did not send chat_metadata within 5 s")
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Ready)));

    let mut h = H::new(cfg());
    h.drain();
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Clean {
            code: 1008,
            reason: "policy".into(),
        },
    );
    assert!(end_reason(&h.drain())
        .unwrap()
        .contains("before chat_metadata"));
}

#[test]
fn the_caller_hanging_up_closes_every_socket() {
    let mut h = H::live(cfg());
    h.at(82.0); // the handover socket is opening
    assert_eq!(connects(&h.drain()).len(), 1);
    h.core.on_caller_hangup();
    let out = h.drain();
    assert_eq!(closes(&out), vec![1, 2]);
    assert_eq!(end_reason(&out), Some("caller hung up"));
    h.caller_frame();
    h.msg(1, audio("a", 0, 100));
    assert!(h.drain().is_empty());
}

#[test]
fn before_the_socket_limit_a_resumed_socket_takes_over_between_turns() {
    let mut h = H::live(cfg());
    // Limit 100 s, margin 20 s: the resumed socket opens at 80 s.
    h.at(79.0);
    assert!(h.drain().is_empty());
    h.at(80.0);
    assert_eq!(connects(&h.drain()), vec![(2, Some("group-1".into()))]);
    // The old socket keeps the caller until the new one is ready.
    h.caller_frame();
    assert!(matches!(sends(&h.drain())[..], [(1, _)]));
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    let out = h.drain();
    assert!(matches!(
        sends(&out)[..],
        [(2, ClientMessage::SessionSettings(_))]
    ));
    assert_eq!(closes(&out), vec![1]);
    h.caller_frame();
    assert!(matches!(sends(&h.drain())[..], [(2, _)]));
    // The new socket's own limit counts from its upgrade: its handover opens at 160 s.
    h.at(159.9);
    assert!(connects(&h.drain()).is_empty());
    h.at(160.0);
    assert_eq!(connects(&h.drain()), vec![(3, Some("group-1".into()))]);
}

#[test]
fn a_handover_waits_for_the_reply_to_finish_and_plays_it_whole() {
    let mut h = H::live(cfg());
    h.at(80.0);
    h.drain();
    h.msg(1, audio("a", 0, 100));
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    let out = h.drain();
    assert!(closes(&out).is_empty(), "the old socket is mid-reply");
    // Speech from the new socket before the switch is not mixed in.
    h.msg(2, audio("x", 0, 100));
    h.msg(1, audio("a", 1, 100));
    assert_eq!(frames(&h.drain()), 5);
    h.caller_frame();
    assert!(matches!(sends(&h.drain())[..], [(1, _)]));
    // A barge-in does not switch either: the caller is talking to the old chat.
    h.msg(1, user_message("wait", false));
    assert!(closes(&h.drain()).is_empty());
    h.msg(1, audio("b", 0, 100));
    h.msg(1, assistant_end());
    let out = h.drain();
    assert_eq!(closes(&out), vec![1]);
    h.caller_frame();
    assert!(matches!(sends(&h.drain())[..], [(2, _)]));
    // The rest of a segment whose start was dropped stays dropped; a new one plays.
    h.msg(2, audio("x", 1, 100));
    assert_eq!(frames(&h.drain()), 0);
    h.msg(2, audio("y", 0, 100));
    assert_eq!(frames(&h.drain()), 5);
}

#[test]
fn a_reply_running_into_the_limit_is_cut_over_at_the_force_point() {
    let mut h = H::live(cfg());
    h.at(80.0);
    h.drain();
    h.msg(1, audio("a", 0, 100));
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    h.drain();
    // Margin 20 s: forced at 95 s.
    h.at(94.0);
    assert!(closes(&h.drain()).is_empty());
    h.at(95.0);
    assert_eq!(closes(&h.drain()), vec![1]);
    h.msg(2, audio("y", 0, 100));
    assert_eq!(frames(&h.drain()), 5);
}

#[test]
fn a_failed_handover_leaves_the_old_socket_and_its_close_at_the_limit_reconnects() {
    let mut h = H::live(cfg());
    h.at(80.0);
    h.drain();
    h.core.on_connect_failed(h.now, 2, "HTTP 429".into());
    let out = h.drain();
    assert_eq!(end_reason(&out), None);
    h.at(99.9);
    assert!(
        connects(&h.drain()).is_empty(),
        "no second handover attempt on this socket"
    );
    h.at(100.0);
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Clean {
            code: 1000,
            reason: "max duration".into(),
        },
    );
    let out = h.drain();
    assert_eq!(end_reason(&out), None);
    assert_eq!(connects(&out), vec![(3, Some("group-1".into()))]);
}

#[test]
fn the_old_socket_dropping_during_a_handover_hands_straight_over() {
    let mut h = H::live(cfg());
    h.at(80.0);
    h.drain();
    h.core.on_closed(
        h.now,
        1,
        SocketClose::Dropped {
            error: "eof".into(),
        },
    );
    let out = h.drain();
    assert!(
        connects(&out).is_empty(),
        "the standby socket is the reconnect"
    );
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    h.drain();
    h.caller_frame();
    assert!(matches!(sends(&h.drain())[..], [(2, _)]));
}

#[test]
fn margins_scale_with_short_limits() {
    let c = |secs| CoreConfig {
        session_limit: Duration::from_secs(secs),
        ..cfg()
    };
    assert_eq!(c(1800).handover_margin(), Duration::from_secs(60));
    assert_eq!(c(3).handover_margin(), Duration::from_millis(600));
}

#[test]
fn a_ready_socket_is_pinged_every_half_second() {
    let mut h = H::live(cfg());
    h.at(2.0);
    let pings = std::iter::from_fn(|| h.core.poll_output())
        .filter(|o| matches!(o, Output::Ping { conn: 1 }))
        .count();
    assert_eq!(pings, 4);
}

/// A far end that keeps its socket open but stops answering: after 2 s without a frame the
/// socket counts as dropped; the one reconnect resumes the chat, and when that socket hangs
/// too the call fails, naming why.
#[test]
fn a_hung_far_end_is_dropped_after_silent_pings_then_the_call_fails() {
    let mut h = H::live(cfg());
    h.at(10.0);
    h.drain();
    h.hung.push(1);
    h.at(11.9);
    assert!(closes(&h.drain()).is_empty(), "still within the limit");
    h.at(12.0);
    let out = h.drain();
    assert_eq!(closes(&out), vec![1]);
    assert_eq!(connects(&out), vec![(2, Some("group-1".into()))]);
    assert_eq!(end_reason(&out), None, "resumed first");
    h.core.on_connected(h.now, 2);
    h.msg(2, metadata("chat-2", "group-1"));
    h.drain();
    h.at(20.0);
    assert!(closes(&h.drain()).is_empty(), "the resumed socket answers");
    h.hung.push(2);
    h.at(22.0);
    let out = h.drain();
    assert_eq!(closes(&out), vec![2]);
    assert_eq!(
        end_reason(&out),
        Some("EVI connection lost again after a reconnect (dropped: no answer to pings for 2 s)")
    );
}
