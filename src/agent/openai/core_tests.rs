use serde_json::{json, Value};

use super::*;
use crate::config::TurnDetection;

fn spec(api: OpenaiApi) -> OpenaiSpec {
    OpenaiSpec {
        api,
        url: "wss://api.openai.com/v1/realtime".into(),
        api_key: "sk-test".into(),
        headers: Vec::new(),
        model: "gpt-realtime-2".into(),
        voice: "marin".into(),
        instructions: "Be brief.".into(),
        tools: Tool::ALL.to_vec(),
        turn_detection: TurnDetection::ServerVad {
            silence_duration_ms: Some(400),
        },
        transcription_model: Some("gpt-4o-transcribe".into()),
        delegation_model: Some("gpt-5.1".into()),
        connect_timeout: Duration::from_secs(10),
        audio_batch_ms: 40,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(c: &mut OpenaiCore) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn sent(out: &[Output]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(t) => Some(serde_json::from_str(t).unwrap()),
            _ => None,
        })
        .collect()
}

fn types(out: &[Output]) -> Vec<String> {
    sent(out)
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_string())
        .collect()
}

fn downs(out: &[Output]) -> Vec<&Down> {
    out.iter()
        .filter_map(|o| match o {
            Output::Down(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn frames(out: &[Output]) -> usize {
    downs(out)
        .iter()
        .filter(|d| matches!(d, Down::Frame(_)))
        .count()
}

fn ended(out: &[Output]) -> Option<(String, bool)> {
    out.iter().find_map(|o| match o {
        Output::End { reason, failed } => Some((reason.clone(), *failed)),
        _ => None,
    })
}

fn text(c: &mut OpenaiCore, now: Instant, v: Value) {
    c.on_text(now, &v.to_string());
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Realtime session ready at the returned instant, its setup outputs taken.
fn realtime(law: Law) -> (OpenaiCore, Instant) {
    let t0 = Instant::now();
    let mut c = OpenaiCore::new(t0, Arc::new(spec(OpenaiApi::Realtime)), law);
    assert!(matches!(drain(&mut c)[..], [Output::Connect]));
    c.on_connected(t0 + ms(50), ());
    assert!(
        drain(&mut c).is_empty(),
        "Realtime waits for session.created"
    );
    let now = t0 + ms(80);
    text(
        &mut c,
        now,
        json!({"type": "session.created", "event_id": "e0", "session": {"id": "sess_1"}}),
    );
    let out = drain(&mut c);
    assert_eq!(types(&out), ["session.update"]);
    text(
        &mut c,
        now,
        json!({"type": "session.updated", "event_id": "e1", "session": {"id": "sess_1", "model": "gpt-realtime-2"}}),
    );
    let out = drain(&mut c);
    assert!(out.iter().any(|o| matches!(o, Output::Ready)));
    (c, now)
}

fn delta(c: &mut OpenaiCore, now: Instant, response: &str, item: &str, bytes: usize) {
    text(
        c,
        now,
        json!({"type": "response.output_audio.delta", "event_id": "e", "response_id": response,
               "item_id": item, "output_index": 0, "content_index": 0, "delta": b64(&vec![0x55; bytes])}),
    );
}

#[test]
fn realtime_is_configured_in_the_callers_law_before_the_call_is_answered() {
    for (law, format) in [(Law::Mu, "audio/pcmu"), (Law::A, "audio/pcma")] {
        let t0 = Instant::now();
        let mut c = OpenaiCore::new(t0, Arc::new(spec(OpenaiApi::Realtime)), law);
        drain(&mut c);
        c.on_connected(t0, ());
        text(
            &mut c,
            t0,
            json!({"type": "session.created", "session": {}}),
        );
        let update = &sent(&drain(&mut c))[0];
        let session = &update["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["audio"]["input"]["format"], json!({"type": format}));
        assert_eq!(
            session["audio"]["output"]["format"],
            json!({"type": format})
        );
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(
            session["audio"]["input"]["turn_detection"],
            json!({"type": "server_vad", "silence_duration_ms": 400})
        );
        assert_eq!(
            session["audio"]["input"]["transcription"]["model"],
            "gpt-4o-transcribe"
        );
        let names: Vec<&str> = session["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["end_call", "send_dtmf"]);
        // Caller audio before the session is ready would be read in the wrong format.
        c.on_caller_audio(t0, &[0; 160]);
        c.on_caller_audio(t0, &[0; 160]);
        assert!(drain(&mut c).is_empty());
    }
}

#[test]
fn caller_audio_goes_up_in_batches_in_the_callers_law() {
    let (mut c, now) = realtime(Law::A);
    let pcm: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
    c.on_caller_audio(now, &pcm);
    assert!(drain(&mut c).is_empty(), "40 ms batches: one frame waits");
    c.on_caller_audio(now, &pcm);
    let out = sent(&drain(&mut c));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "input_audio_buffer.append");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(out[0]["audio"].as_str().unwrap())
        .unwrap();
    let mut expect = [0u8; 160];
    g711::encode(Law::A, &pcm, &mut expect);
    assert_eq!(bytes.len(), 320);
    assert_eq!(&bytes[..160], &expect[..]);
    assert_eq!(&bytes[160..], &expect[..]);
}

/// The reference's rule (ai-legs.md §3.4): `audio_end_ms` is what the caller heard of the
/// item playing, bytes / 8, measured from that item's own start.
#[test]
fn a_barge_in_clears_the_playout_and_truncates_the_item_where_the_caller_stopped_hearing() {
    let (mut c, now) = realtime(Law::Mu);
    // A first reply, 300 ms, fully played; then a second of 1 s, in two items' worth of deltas.
    delta(&mut c, now, "resp_1", "item_1", 2400);
    delta(&mut c, now, "resp_2", "item_2", 4000);
    delta(&mut c, now, "resp_2", "item_2", 4000);
    let out = drain(&mut c);
    assert_eq!(frames(&out), 15 + 50);
    text(
        &mut c,
        now,
        json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 900, "item_id": "user_1"}),
    );
    let out = drain(&mut c);
    assert!(matches!(downs(&out)[..], [Down::Clear]), "{out:?}");
    // Late deltas of the interrupted reply are dropped.
    delta(&mut c, now, "resp_2", "item_2", 1600);
    assert_eq!(frames(&drain(&mut c)), 0);
    assert_eq!(c.stats().deltas_dropped, 1);
    // The call played 15 frames of item_1 and 12 of item_2 (240 ms) before it cleared.
    c.on_up(now, Up::Cleared { heard: 27 });
    let out = sent(&drain(&mut c));
    assert_eq!(
        out,
        [
            json!({"type": "conversation.item.truncate", "item_id": "item_2", "content_index": 0, "audio_end_ms": 240})
        ]
    );
    // A new reply plays, and a clear it was not part of truncates nothing more.
    delta(&mut c, now, "resp_3", "item_3", 320);
    assert_eq!(frames(&drain(&mut c)), 2);
    c.on_up(now, Up::Cleared { heard: 70 });
    assert!(drain(&mut c).is_empty());
}

#[test]
fn a_reply_heard_to_its_end_is_not_truncated_and_an_odd_sized_item_is_counted_in_bytes() {
    let (mut c, now) = realtime(Law::Mu);
    // 250 bytes: one frame and a partial one, padded when the audio runs dry.
    delta(&mut c, now, "resp_1", "item_1", 250);
    assert_eq!(frames(&drain(&mut c)), 1);
    c.handle_timeout(now + ms(40));
    assert_eq!(frames(&drain(&mut c)), 1, "the partial frame, padded");
    delta(&mut c, now + ms(45), "resp_2", "item_2", 800);
    assert_eq!(frames(&drain(&mut c)), 5);
    text(
        &mut c,
        now + ms(60),
        json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"}),
    );
    drain(&mut c);
    // Heard: both frames of item_1 and one of item_2.
    c.on_up(now, Up::Cleared { heard: 3 });
    let out = sent(&drain(&mut c));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["item_id"], "item_2");
    assert_eq!(out[0]["audio_end_ms"], 20);
}

#[test]
fn send_dtmf_presses_keys_and_its_result_goes_back_once_the_response_is_done() {
    let (mut c, now) = realtime(Law::Mu);
    text(
        &mut c,
        now,
        json!({"type": "response.created", "response": {"id": "resp_1"}}),
    );
    text(
        &mut c,
        now,
        json!({"type": "response.function_call_arguments.done", "response_id": "resp_1",
        "item_id": "fc_1", "output_index": 0, "call_id": "call_1", "name": "send_dtmf", "arguments": "{\"digits\":\"12x#\"}"}),
    );
    let out = drain(&mut c);
    let keys: Vec<char> = downs(&out)
        .iter()
        .filter_map(|d| match d {
            Down::Event(AgentEvent::Dtmf(k)) => Some(*k),
            _ => None,
        })
        .collect();
    assert_eq!(keys, ['1', '2', '#']);
    assert!(
        sent(&out).is_empty(),
        "a second response would be refused while one is active"
    );
    text(
        &mut c,
        now,
        json!({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}),
    );
    let out = sent(&drain(&mut c));
    assert_eq!(out[0]["type"], "conversation.item.create");
    assert_eq!(
        out[0]["item"],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "sent 12#"})
    );
    assert_eq!(out[1], json!({"type": "response.create"}));
}

#[test]
fn an_unknown_tool_is_answered_with_an_error_and_end_call_hangs_up_after_the_goodbye() {
    let (mut c, now) = realtime(Law::Mu);
    text(
        &mut c,
        now,
        json!({"type": "response.created", "response": {"id": "r1"}}),
    );
    text(
        &mut c,
        now,
        json!({"type": "response.function_call_arguments.done", "call_id": "c1", "name": "transfer", "arguments": "{}"}),
    );
    text(
        &mut c,
        now,
        json!({"type": "response.done", "response": {"id": "r1", "status": "completed"}}),
    );
    let out = sent(&drain(&mut c));
    assert_eq!(
        out[0]["item"]["output"],
        "error: there is no tool named \"transfer\""
    );

    text(
        &mut c,
        now,
        json!({"type": "response.created", "response": {"id": "r2"}}),
    );
    delta(&mut c, now, "r2", "goodbye", 1600);
    text(
        &mut c,
        now,
        json!({"type": "response.function_call_arguments.done", "call_id": "c2", "name": "end_call", "arguments": "{}"}),
    );
    let out = drain(&mut c);
    assert_eq!(frames(&out), 10);
    assert!(ended(&out).is_none(), "the goodbye is still being said");
    text(
        &mut c,
        now,
        json!({"type": "response.done", "response": {"id": "r2", "status": "completed"}}),
    );
    let out = drain(&mut c);
    assert_eq!(
        ended(&out),
        Some(("the assistant ended the call".into(), false))
    );
    assert!(sent(&out).is_empty(), "nothing more is asked of the model");
}

#[test]
fn a_caller_key_press_reaches_the_model_as_text_and_waits_for_an_active_response() {
    let (mut c, now) = realtime(Law::Mu);
    c.on_up(now, Up::Caller(CallerEvent::Dtmf('5')));
    let out = sent(&drain(&mut c));
    assert_eq!(out[0]["item"]["role"], "user");
    assert_eq!(out[0]["item"]["content"][0]["type"], "input_text");
    assert!(out[0]["item"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("5 key"));
    assert_eq!(out[1]["type"], "response.create");
    // That response is active now: the next key waits for it.
    c.on_up(now, Up::Caller(CallerEvent::Dtmf('#')));
    assert_eq!(types(&drain(&mut c)), ["conversation.item.create"]);
    text(
        &mut c,
        now,
        json!({"type": "response.done", "response": {"id": "r", "status": "completed"}}),
    );
    assert_eq!(types(&drain(&mut c)), ["response.create"]);
}

#[test]
fn transcripts_of_both_sides_become_transcript_lines() {
    let (mut c, now) = realtime(Law::Mu);
    text(
        &mut c,
        now,
        json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1", "content_index": 0, "transcript": " What time is it? "}),
    );
    text(
        &mut c,
        now,
        json!({"type": "response.output_audio_transcript.done", "response_id": "r", "item_id": "a1", "output_index": 0, "content_index": 0, "transcript": "Noon."}),
    );
    let out = drain(&mut c);
    let lines: Vec<(Role, &str)> = downs(&out)
        .iter()
        .filter_map(|d| match d {
            Down::Event(AgentEvent::Transcript { role, text, .. }) => Some((*role, text.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        lines,
        [(Role::User, "What time is it?"), (Role::Assistant, "Noon.")]
    );
}

#[test]
fn errors_refuse_the_call_during_setup_and_end_it_only_when_fatal() {
    let t0 = Instant::now();
    let mut c = OpenaiCore::new(t0, Arc::new(spec(OpenaiApi::Realtime)), Law::Mu);
    drain(&mut c);
    c.on_connected(t0, ());
    text(
        &mut c,
        t0,
        json!({"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", "code": "model_not_found", "message": "no such model"}}),
    );
    let out = drain(&mut c);
    assert!(!out.iter().any(|o| matches!(o, Output::Ready)));
    let (reason, failed) = ended(&out).unwrap();
    assert!(failed && reason.contains("model_not_found"), "{reason}");

    let (mut c, now) = realtime(Law::Mu);
    text(
        &mut c,
        now,
        json!({"type": "error", "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "busy"}}),
    );
    assert!(
        ended(&drain(&mut c)).is_none(),
        "one request failed; the session goes on"
    );
    text(
        &mut c,
        now,
        json!({"type": "error", "error": {"type": "invalid_request_error", "code": "session_expired", "message": "60 minutes"}}),
    );
    let (reason, failed) = ended(&drain(&mut c)).unwrap();
    assert!(failed && reason.contains("session_expired"));
}

#[test]
fn no_session_in_time_refuses_the_call_and_a_silent_socket_ends_it() {
    let t0 = Instant::now();
    let mut c = OpenaiCore::new(t0, Arc::new(spec(OpenaiApi::Realtime)), Law::Mu);
    drain(&mut c);
    c.on_connected(t0, ());
    // Pings keep going while the session is configured; answered ones keep it alive.
    c.on_heard(t0 + ms(9000));
    c.handle_timeout(t0 + ms(9500));
    assert!(drain(&mut c).iter().any(|o| matches!(o, Output::Ping)));
    c.on_heard(t0 + ms(9900));
    c.handle_timeout(t0 + ms(10_000));
    let (reason, failed) = ended(&drain(&mut c)).unwrap();
    assert!(failed && reason.contains("10 s"), "{reason}");

    let (mut c, now) = realtime(Law::Mu);
    c.handle_timeout(now + ms(2100));
    let (reason, failed) = ended(&drain(&mut c)).unwrap();
    assert!(failed && reason.contains("pings"), "{reason}");
}

/// A GPT-Live session ready at the returned instant.
fn live() -> (OpenaiCore, Instant) {
    let t0 = Instant::now();
    let mut s = spec(OpenaiApi::Live);
    s.model = "gpt-live-1".into();
    let mut c = OpenaiCore::new(t0, Arc::new(s), Law::Mu);
    drain(&mut c);
    c.on_connected(t0, ());
    let start = &sent(&drain(&mut c))[0];
    assert_eq!(start["type"], "session.start");
    assert_eq!(
        start["session"]["audio"]["format"],
        json!({"type": "audio/pcmu", "rate": 8000})
    );
    assert_eq!(start["session"]["delegation"]["type"], "responses");
    assert_eq!(
        start["session"]["delegation"]["responses"]["model"],
        "gpt-5.1"
    );
    let now = t0 + ms(100);
    text(
        &mut c,
        now,
        json!({"type": "session.started", "session": {"id": "ls_1", "model": "gpt-live-1"}}),
    );
    assert!(drain(&mut c).iter().any(|o| matches!(o, Output::Ready)));
    (c, now)
}

#[test]
fn live_plays_deltas_builds_transcript_lines_and_clears_when_the_caller_talks_over_it() {
    let (mut c, now) = live();
    c.on_caller_audio(now, &[0; 160]);
    c.on_caller_audio(now, &[0; 160]);
    assert_eq!(types(&drain(&mut c)), ["session.input_audio.append"]);
    text(
        &mut c,
        now,
        json!({"type": "session.output_audio.delta", "delta": b64(&[0xFF; 1600])}),
    );
    text(
        &mut c,
        now,
        json!({"type": "session.output_transcript.delta", "delta": "Hello, ", "start_ms": 0, "end_ms": 300}),
    );
    text(
        &mut c,
        now,
        json!({"type": "session.output_transcript.delta", "delta": "how can I help?", "start_ms": 300, "end_ms": 900}),
    );
    assert_eq!(frames(&drain(&mut c)), 10);
    // The caller speaks 60 ms in, while 140 ms are still queued.
    text(
        &mut c,
        now + ms(60),
        json!({"type": "session.input_transcript.delta", "delta": "Wait", "start_ms": 0, "end_ms": 200}),
    );
    let out = drain(&mut c);
    let d = downs(&out);
    assert!(matches!(d[0], Down::Clear), "{d:?}");
    assert!(
        matches!(d[1], Down::Event(AgentEvent::Transcript { role: Role::Assistant, text, .. }) if text == "Hello, how can I help?")
    );
    // Heard by the time the model answers: no clear for words said in silence.
    text(
        &mut c,
        now + ms(500),
        json!({"type": "session.input_transcript.delta", "delta": ", please.", "start_ms": 200, "end_ms": 400}),
    );
    assert!(downs(&drain(&mut c)).is_empty());
    c.on_caller_hangup(now);
    let out = drain(&mut c);
    assert!(
        matches!(downs(&out)[0], Down::Event(AgentEvent::Transcript { role: Role::User, text, .. }) if text == "Wait, please.")
    );
    // session.close, then the socket closes once its answer has come.
    assert_eq!(types(&out), ["session.close"]);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::CloseAfter(r) if *r == protocol::SESSION_CLOSED)));
    assert_eq!(ended(&out), Some(("the caller hung up".into(), false)));
}

#[test]
fn live_tools_answer_through_the_delegation_and_end_call_waits_for_quiet() {
    let (mut c, now) = live();
    let call = |name: &str, args: &str| {
        json!({"type": "response.event", "delegation_id": "d1", "event": {"type": "response.output_item.done",
            "output_index": 0, "sequence_number": 4,
            "item": {"type": "function_call", "id": "fc", "call_id": "call_9", "name": name, "arguments": args, "status": "completed"}}})
    };
    text(&mut c, now, call("send_dtmf", "{\"digits\":\"42\"}"));
    let out = drain(&mut c);
    let s = sent(&out);
    assert_eq!(
        s[0],
        json!({"type": "response.item.create", "item": {"type": "function_call_output", "call_id": "call_9", "output": "sent 42"}})
    );
    assert_eq!(s[1], json!({"type": "response.create"}));
    text(&mut c, now, call("end_call", "{}"));
    text(
        &mut c,
        now + ms(200),
        json!({"type": "session.output_audio.delta", "delta": b64(&[0xFF; 800])}),
    );
    drain(&mut c);
    c.handle_timeout(now + ms(1100));
    assert!(ended(&drain(&mut c)).is_none(), "audio came 0.9 s ago");
    assert_eq!(c.poll_timeout(), Some(now + ms(1200)).min(c.poll_timeout()));
    c.handle_timeout(now + ms(1200));
    let out = drain(&mut c);
    assert_eq!(types(&out), ["session.close"]);
    assert_eq!(
        ended(&out),
        Some(("the assistant ended the call".into(), false))
    );
}

#[test]
fn live_sessions_closed_by_the_server_end_the_call_with_the_reason() {
    for (reason, failed) in [
        ("expired", true),
        ("content", false),
        ("connection_lost", true),
    ] {
        let (mut c, now) = live();
        text(
            &mut c,
            now,
            json!({"type": "session.closed", "reason": reason}),
        );
        let (text, f) = ended(&drain(&mut c)).unwrap();
        assert!(text.contains(reason));
        assert_eq!(f, failed, "{reason}");
    }
}

#[test]
fn garbage_is_counted_and_ignored() {
    let (mut c, now) = realtime(Law::Mu);
    c.on_text(now, "not json");
    c.on_binary(now);
    text(
        &mut c,
        now,
        json!({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "!!"}),
    );
    text(&mut c, now, json!({"type": "some.future.event", "x": 1}));
    let out = drain(&mut c);
    assert!(ended(&out).is_none() && frames(&out) == 0);
    assert_eq!(c.stats().ignored, 3);
}

#[test]
fn a_live_line_is_passed_on_after_a_second_without_more() {
    let (mut c, now) = live();
    text(
        &mut c,
        now,
        json!({"type": "session.output_transcript.delta", "delta": "Hello.", "start_ms": 0, "end_ms": 300}),
    );
    assert!(downs(&drain(&mut c)).is_empty());
    assert!(c.poll_timeout().unwrap() <= now + ms(1000));
    c.handle_timeout(now + ms(1000));
    let out = drain(&mut c);
    assert!(
        matches!(downs(&out)[..], [Down::Event(AgentEvent::Transcript { role: Role::Assistant, text, .. })] if text == "Hello.")
    );
}
