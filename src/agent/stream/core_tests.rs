use serde_json::Value;

use super::*;

fn ids() -> StreamIds {
    StreamIds {
        stream_sid: format!("MZ{}", "1".repeat(32)),
        call_sid: format!("CA{}", "2".repeat(32)),
        account_sid: format!("AC{}", "3".repeat(32)),
    }
}

fn cfg() -> CoreConfig {
    CoreConfig {
        ids: ids(),
        parameters: vec![("from_number".into(), "+447700900123".into())],
        connect_timeout: Duration::from_secs(10),
        hangup_on_close: true,
        batch_frames: 1,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything the core has queued.
fn drain(c: &mut StreamCore) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// The JSON messages among `out`, queued or sent.
fn sent(out: &[Output]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(t) | Output::Queue(t) => Some(serde_json::from_str(t).unwrap()),
            _ => None,
        })
        .collect()
}

/// An open stream at `t0`, its opening messages taken.
fn open(cfg: CoreConfig) -> (StreamCore, Instant) {
    let t0 = Instant::now();
    let mut c = StreamCore::new(t0, cfg);
    assert!(matches!(drain(&mut c)[..], [Output::Connect]));
    c.on_connected(t0 + ms(30), Vec::new());
    drain(&mut c);
    (c, t0 + ms(30))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn bot_media(c: &mut StreamCore, now: Instant, bytes: &[u8]) {
    let text = format!(
        r#"{{"event":"media","streamSid":"{}","media":{{"payload":"{}"}}}}"#,
        ids().stream_sid,
        b64(bytes)
    );
    c.on_text(now, &text);
}

fn bot(c: &mut StreamCore, now: Instant, json: &str) {
    c.on_text(now, json);
}

/// What went down to the call: `F(first mu-law byte of the frame)`, `M(name)` or `C`.
#[derive(Debug, PartialEq)]
enum D {
    F(u8),
    M(String),
    C,
}

fn downs(out: &[Output]) -> Vec<D> {
    out.iter()
        .filter_map(|o| match o {
            Output::Down(Down::Frame(f)) => {
                let mut code = [0u8; 1];
                g711::encode(Law::Mu, &f.samples()[..1], &mut code);
                Some(D::F(code[0]))
            }
            Output::Down(Down::Mark(n)) => Some(D::M(n.clone())),
            Output::Down(Down::Clear) => Some(D::C),
            _ => None,
        })
        .collect()
}

#[test]
fn opening_sends_connected_then_start_then_answers() {
    let t0 = Instant::now();
    let mut c = StreamCore::new(t0, cfg());
    assert!(matches!(drain(&mut c)[..], [Output::Connect]));
    c.on_connected(
        t0 + ms(40),
        vec![
            ("from_number".into(), "+15550100".into()),
            ("agent".into(), "sales".into()),
        ],
    );
    let out = drain(&mut c);
    let msgs = sent(&out);
    assert_eq!(msgs[0]["event"], "connected");
    assert!(msgs[0].get("sequenceNumber").is_none());
    assert_eq!(msgs[1]["event"], "start");
    assert_eq!(msgs[1]["sequenceNumber"], "1");
    // A TwiML <Parameter> joins the configured ones and wins over one of the same name.
    let params = &msgs[1]["start"]["customParameters"];
    assert_eq!(params["from_number"], "+15550100");
    assert_eq!(params["agent"], "sales");
    assert!(matches!(out.last(), Some(Output::Ready)));
    let detail = out.iter().find_map(|o| match o {
        Output::Down(Down::Event(AgentEvent::Detail {
            key: "stream",
            value,
        })) => Some(value),
        _ => None,
    });
    assert_eq!(detail.unwrap()["stream_sid"], ids().stream_sid);
}

#[test]
fn caller_audio_goes_up_as_mulaw_media_counted_as_twilio_counts() {
    let (mut c, t) = open(cfg());
    c.on_caller_audio(t + ms(20), &[1000; 160]);
    c.on_caller_audio(t + ms(40), &[-1000; 160]);
    let msgs = sent(&drain(&mut c));
    assert_eq!(msgs.len(), 2);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["event"], "media");
        assert_eq!(m["sequenceNumber"], (i + 2).to_string());
        assert_eq!(m["media"]["chunk"], (i + 1).to_string());
        assert_eq!(m["media"]["timestamp"], ((i + 1) * 20).to_string());
        assert_eq!(m["streamSid"], ids().stream_sid);
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(msgs[0]["media"]["payload"].as_str().unwrap())
        .unwrap();
    let mut expect = [0u8; 160];
    g711::encode(Law::Mu, &[1000; 160], &mut expect);
    assert_eq!(payload, expect);
}

#[test]
fn without_caller_audio_silence_keeps_the_bots_clock_real() {
    let (mut c, t) = open(cfg());
    c.on_caller_audio(t + ms(20), &[500; 160]);
    drain(&mut c);
    // Nothing for 60 ms, then a silence frame every 20 ms.
    assert_eq!(c.poll_timeout(), Some(t + ms(80)));
    let mut stamps = Vec::new();
    for k in 0..4 {
        let now = t + ms(80 + 20 * k);
        c.handle_timeout(now);
        for m in sent(&drain(&mut c)) {
            assert!(m["media"]["payload"].as_str().unwrap().starts_with("////"));
            stamps.push(m["media"]["timestamp"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(stamps, ["80", "100", "120", "140"]);
    assert_eq!(c.stats().silence_sent, 4);
    // A stall is not replayed in full: at most five frames catch up.
    c.on_heard(t + ms(1400));
    c.handle_timeout(t + ms(1500));
    assert_eq!(sent(&drain(&mut c)).len(), 5);
}

#[test]
fn bot_audio_of_any_length_is_cut_into_frames_and_a_partial_one_waits() {
    let (mut c, t) = open(cfg());
    // 40 ms in one message (as Pipecat sends), then 100 bytes, then 60 more.
    bot_media(&mut c, t, &[0x11; 320]);
    assert_eq!(downs(&drain(&mut c)), [D::F(0x11), D::F(0x11)]);
    bot_media(&mut c, t + ms(1), &[0x22; 100]);
    assert!(downs(&drain(&mut c)).is_empty(), "a partial frame waits");
    bot_media(&mut c, t + ms(2), &[0x22; 60]);
    assert_eq!(downs(&drain(&mut c)), [D::F(0x22)]);
    assert_eq!(c.stats().frames_received, 3);
}

#[test]
fn a_partial_frame_is_padded_only_when_the_audio_runs_dry() {
    let (mut c, t) = open(cfg());
    bot_media(&mut c, t, &[0x33; 160 * 3 + 40]);
    assert_eq!(downs(&drain(&mut c)).len(), 3);
    bot(&mut c, t, r#"{"event":"mark","mark":{"name":"end"}}"#);
    assert!(
        downs(&drain(&mut c)).is_empty(),
        "the mark stays behind the partial frame"
    );
    // Three frames play until t + 60 ms: the partial one is padded and sent then.
    assert_eq!(c.poll_timeout(), Some(t + ms(60)));
    c.handle_timeout(t + ms(59));
    assert!(downs(&drain(&mut c)).is_empty());
    c.handle_timeout(t + ms(60));
    let out = drain(&mut c);
    assert_eq!(downs(&out), [D::F(0x33), D::M("end".into())]);
    let Some(Output::Down(Down::Frame(f))) = out
        .iter()
        .find(|o| matches!(o, Output::Down(Down::Frame(_))))
    else {
        unreachable!()
    };
    let mut codes = [0u8; 160];
    g711::encode(Law::Mu, f.samples(), &mut codes);
    assert!(codes[..40].iter().all(|&b| b == 0x33));
    assert!(
        codes[40..].iter().all(|&b| b == 0xFF),
        "padded with mu-law silence"
    );
}

#[test]
fn marks_keep_their_place_and_are_echoed_when_played() {
    let (mut c, t) = open(cfg());
    bot(&mut c, t, r#"{"event":"mark","mark":{"name":"first"}}"#);
    bot_media(&mut c, t, &[0x44; 160]);
    bot(&mut c, t, r#"{"event":"mark","mark":{"name":"second"}}"#);
    assert_eq!(
        downs(&drain(&mut c)),
        [D::M("first".into()), D::F(0x44), D::M("second".into())]
    );
    assert_eq!(c.stats().marks, 2);
    // The call reports them played; each is echoed with the next sequence number.
    c.on_played("first");
    c.on_played("second");
    let msgs = sent(&drain(&mut c));
    assert_eq!(msgs[0]["event"], "mark");
    assert_eq!(msgs[0]["mark"]["name"], "first");
    assert_eq!(msgs[0]["sequenceNumber"], "2");
    assert_eq!(msgs[1]["mark"]["name"], "second");
    assert_eq!(msgs[1]["sequenceNumber"], "3");
}

#[test]
fn clear_drops_the_partial_frame_and_passes_its_marks_on_after_the_clear() {
    let (mut c, t) = open(cfg());
    bot_media(&mut c, t, &[0x55; 200]);
    bot(&mut c, t, r#"{"event":"mark","mark":{"name":"m"}}"#);
    bot(
        &mut c,
        t,
        &format!(r#"{{"event":"clear","streamSid":"{}"}}"#, ids().stream_sid),
    );
    assert_eq!(downs(&drain(&mut c)), [D::F(0x55), D::C, D::M("m".into())]);
    assert_eq!(c.reframer.position() % 160, 0, "no partial frame left");
    assert_eq!(c.stats().clears, 1);
}

#[test]
fn dtmf_goes_up_once_per_key() {
    let (mut c, _) = open(cfg());
    c.on_caller_dtmf('#');
    let msgs = sent(&drain(&mut c));
    assert_eq!(msgs[0]["event"], "dtmf");
    assert_eq!(msgs[0]["dtmf"]["digit"], "#");
    assert_eq!(msgs[0]["dtmf"]["track"], "inbound_track");
}

#[test]
fn a_caller_hangup_sends_stop_then_closes() {
    let (mut c, t) = open(cfg());
    c.on_caller_audio(t + ms(20), &[0; 160]);
    c.on_caller_hangup(t + ms(40));
    let out = drain(&mut c);
    let msgs = sent(&out);
    assert_eq!(msgs.last().unwrap()["event"], "stop");
    assert_eq!(msgs.last().unwrap()["sequenceNumber"], "3");
    assert_eq!(msgs.last().unwrap()["stop"]["callSid"], ids().call_sid);
    assert!(matches!(
        &out[out.len() - 2..],
        [Output::Close, Output::End { failed: false, .. }]
    ));
    assert!(c.is_ended());
}

#[test]
fn the_bot_closing_the_stream_ends_the_call_normally_and_a_drop_as_a_failure() {
    let (mut c, t) = open(cfg());
    c.on_closed(
        t,
        SocketClose::Clean {
            code: 1000,
            reason: "bye".into(),
        },
    );
    match &drain(&mut c)[..] {
        [Output::End {
            reason,
            failed: false,
        }] => {
            assert_eq!(reason, "the bot closed the stream (code 1000: bye)")
        }
        other => panic!("{other:?}"),
    }
    let (mut c, t) = open(cfg());
    c.on_closed(
        t,
        SocketClose::Dropped {
            error: "reset".into(),
        },
    );
    match &drain(&mut c)[..] {
        [Output::End {
            reason,
            failed: true,
        }] => assert_eq!(reason, "stream connection lost: reset"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_hangup_on_close_the_caller_stays_on() {
    let (mut c, t) = open(CoreConfig {
        hangup_on_close: false,
        ..cfg()
    });
    c.on_closed(
        t,
        SocketClose::Clean {
            code: 1000,
            reason: String::new(),
        },
    );
    assert!(drain(&mut c).is_empty());
    assert_eq!(
        c.poll_timeout(),
        None,
        "no pings, no media to a closed stream"
    );
    c.on_caller_audio(t + ms(20), &[0; 160]);
    assert!(drain(&mut c).is_empty());
    c.on_caller_hangup(Instant::now());
    assert!(matches!(
        drain(&mut c)[..],
        [Output::End { failed: false, .. }]
    ));
}

#[test]
fn a_bot_that_stops_answering_pings_fails_the_call_within_two_seconds() {
    let (mut c, t) = open(cfg());
    let mut pings = 0;
    let (now, end) = loop {
        let now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        let out = drain(&mut c);
        pings += out.iter().filter(|o| matches!(o, Output::Ping)).count();
        if let Some(Output::End { reason, failed }) = out.last() {
            assert!(*failed);
            break (now, reason.clone());
        }
        assert!(now < t + ms(3000), "no end");
    };
    assert_eq!(end, "stream connection lost: no answer to pings for 2 s");
    assert_eq!(now, t + SILENT_LIMIT);
    assert_eq!(pings, 3);
}

#[test]
fn pongs_keep_a_quiet_bot_alive() {
    let (mut c, t) = open(cfg());
    for k in 1..=10 {
        let now = t + PING_EVERY * k;
        c.handle_timeout(now);
        c.on_heard(now + ms(5));
    }
    assert!(!drain(&mut c)
        .iter()
        .any(|o| matches!(o, Output::End { .. })));
}

#[test]
fn a_bot_that_never_accepts_fails_at_the_connect_timeout() {
    let t0 = Instant::now();
    let mut c = StreamCore::new(t0, cfg());
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.handle_timeout(t0 + Duration::from_secs(10));
    match &drain(&mut c)[..] {
        [Output::Close, Output::End {
            reason,
            failed: true,
        }] => {
            assert!(reason.contains("within 10 s"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_from_the_bot_is_counted_and_ignored() {
    let (mut c, t) = open(cfg());
    bot(&mut c, t, "not json");
    bot(&mut c, t, r#"{"event":"transfer"}"#);
    bot(&mut c, t, r#"{"event":"media","media":{"payload":"***"}}"#);
    c.on_binary(t);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.stats().ignored, 4);
    // The stream carries on.
    bot_media(&mut c, t, &[0x66; 160]);
    assert_eq!(downs(&drain(&mut c)), [D::F(0x66)]);
}

#[test]
fn caller_frames_go_out_in_batches_and_a_partial_batch_is_flushed_in_time() {
    let (mut c, t) = open(CoreConfig {
        batch_frames: 2,
        ..cfg()
    });
    c.on_caller_audio(t + ms(20), &[0; 160]);
    assert!(matches!(drain(&mut c)[..], [Output::Queue(_)]));
    c.on_caller_audio(t + ms(40), &[0; 160]);
    assert!(
        matches!(drain(&mut c)[..], [Output::Send(_)]),
        "the batch's last flushes"
    );
    // The caller goes quiet after one frame: it is flushed a batch's time later.
    c.on_caller_audio(t + ms(60), &[0; 160]);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(t + ms(100)));
    c.handle_timeout(t + ms(100));
    assert!(matches!(drain(&mut c)[..], [Output::Flush]));
    // Anything else goes at once and takes the queued media with it.
    c.on_caller_audio(t + ms(120), &[0; 160]);
    c.on_caller_dtmf('1');
    assert!(matches!(
        drain(&mut c)[..],
        [Output::Queue(_), Output::Send(_)]
    ));
    c.handle_timeout(t + ms(170));
    assert!(!drain(&mut c).iter().any(|o| matches!(o, Output::Flush)));
}
