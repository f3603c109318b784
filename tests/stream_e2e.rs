//! The Media Streams agent end to end on loopback: calls through the gateway to the scriptable
//! fake bot (tests/fake_stream_bot), checked from both sides: what the bot received, message
//! by message, and what the caller heard and how the call ended.

mod common;
mod fake_stream_bot;
mod uac;

use std::time::Duration;

use common::load::{args, run};
use common::{admin_get, rtp_range, PASSWORD, USER};
use fake_stream_bot::{step, Act, FakeBot, When};
use sipbridge::call::Gateway;
use sipbridge::config;
use sipbridge::load::signal::{rms, zero_crossing_hz};
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, CallPlan, CallResult};

const WAIT: Duration = Duration::from_secs(10);

/// A gateway whose only agent is a stream to `bot`; `extra` lines go into the agent's table.
async fn gateway(bot: &FakeBot, extra: &str) -> Gateway {
    let table = format!(
        "[agents.bot]\nkind = \"stream\"\nurl = \"{}\"\n{extra}",
        bot.url()
    );
    let env = |k: &str| (k == "BOT_AUTH").then(|| "Bearer stream-test-token".to_string());
    common::gateway_env("", &table, &env).await
}

fn plan(gw: &Gateway, hold: Duration) -> CallPlan {
    CallPlan {
        target: gw.sip_addr,
        username: USER.into(),
        password: PASSWORD.into(),
        hold,
        caller_hz: Some(440.0),
        max_wait: Duration::from_secs(20),
        dtmf: Vec::new(),
    }
}

/// The Reason header of the gateway's BYE.
fn bye_reason(call: &CallResult) -> String {
    call.sip
        .as_ref()
        .and_then(|s| s.remote_bye_reason.clone())
        .expect("the gateway's BYE carries a Reason")
}

/// `prefix` and 32 hex digits.
fn is_sid(v: &serde_json::Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| {
        s.strip_prefix(prefix)
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_bot_gets_twilios_messages_and_the_load_harness_hears_its_echo_intact() {
    let bot = FakeBot::start(vec![step(When::Start, vec![Act::Echo])]).await;
    let gw = gateway(
        &bot,
        "headers_env = { Authorization = \"BOT_AUTH\" }\nparameters = { tenant = \"acme\" }\n",
    )
    .await;
    let (report, json) = run(args(gw.sip_addr, 3, 10.0, 2)).await;
    assert!(report.passed(), "{}", report.table());
    let s = &json["summary"];
    assert!(s["intact_pct"].as_f64().unwrap() > 95.0, "{s}");
    assert!(
        bot.wait_for(WAIT, |b| b.of("stop").len() == 3).await,
        "a stop per call"
    );

    // Every stream: connected, start, media..., stop, in that order, counted as Twilio counts.
    let all = bot.received();
    let starts = bot.of("start");
    assert_eq!(bot.of("connected").len(), 3);
    assert_eq!(starts.len(), 3);
    for start in &starts {
        let sid = start.msg["streamSid"].clone();
        let st = &start.msg["start"];
        assert_eq!(start.msg["sequenceNumber"], "1");
        assert!(
            is_sid(&sid, "MZ") && is_sid(&st["callSid"], "CA") && is_sid(&st["accountSid"], "AC"),
            "{st}"
        );
        assert_eq!(st["tracks"], serde_json::json!(["inbound"]));
        assert_eq!(st["mediaFormat"]["encoding"], "audio/x-mulaw");
        let params = &st["customParameters"];
        assert_eq!(params["from_number"], "+447700900123", "{params}");
        assert_eq!(params["to_number"], "+447846855904", "{params}");
        assert_eq!(params["tenant"], "acme");
        assert!(
            params["X-Twilio-AccountSid"].is_string(),
            "the INVITE's X- headers: {params}"
        );
        let mine: Vec<_> = all.iter().filter(|r| r.msg["streamSid"] == sid).collect();
        let media: Vec<_> = mine.iter().filter(|r| r.event() == "media").collect();
        assert!(media.len() > 50, "2 s of caller audio: {}", media.len());
        for (i, m) in media.iter().enumerate() {
            assert_eq!(m.msg["media"]["chunk"], (i + 1).to_string());
            assert_eq!(m.msg["media"]["track"], "inbound");
            assert_eq!(
                m.msg["media"]["payload"].as_str().unwrap().len(),
                216,
                "160 bytes"
            );
        }
        let seqs: Vec<u64> = mine
            .iter()
            .map(|r| r.msg["sequenceNumber"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "one counter, no gaps"
        );
        assert_eq!(mine.last().unwrap().event(), "stop");
        assert_eq!(mine.last().unwrap().msg["stop"]["callSid"], st["callSid"]);
    }
    let auth: Vec<_> = bot
        .headers()
        .into_iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(auth.len(), 3);
    assert_eq!(auth[0].1, "Bearer stream-test-token");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_bot_marks_come_back_and_a_clear_cuts_the_reply() {
    // Two seconds of tone in 40 ms messages (as Pipecat sends) and a mark after it; half a
    // second into the call the bot barges in.
    let bot = FakeBot::start(vec![
        step(
            When::Start,
            vec![
                Act::Mark("before-audio".into()),
                Act::Tone {
                    hz: 1000.0,
                    ms: 2000,
                    chunk: 320,
                },
                Act::Mark("end-of-tone".into()),
            ],
        ),
        step(
            When::Media(25),
            vec![Act::Clear, Act::Mark("after-clear".into())],
        ),
    ])
    .await;
    let gw = gateway(&bot, "").await;
    let call = place_call(plan(&gw, Duration::from_secs(3))).await;
    assert_eq!(call.status(), Some(200));
    assert!(matches!(call.bye(), Some(ByeOutcome::Answered(200))));
    let loud: Vec<_> = call.rx.iter().filter(|r| r.rms() > 1000.0).collect();
    assert!(loud.len() > 10, "the tone was heard: {} frames", loud.len());
    assert!(
        loud.len() < 80,
        "the clear cut the 100-frame tone short: {} frames",
        loud.len()
    );
    let pcm: Vec<i16> = loud.iter().flat_map(|r| r.pcm.iter().copied()).collect();
    let hz = zero_crossing_hz(&pcm, 8000.0);
    assert!((hz - 1000.0).abs() < 20.0, "heard {hz} Hz");
    assert!(rms(&pcm) > 3000.0);
    assert!(
        bot.wait_for(WAIT, |b| b.of("mark").len() == 3).await,
        "{:?}",
        bot.of("mark")
    );
    let names: Vec<_> = bot
        .of("mark")
        .iter()
        .map(|m| m.msg["mark"]["name"].clone())
        .collect();
    assert_eq!(names, ["before-audio", "end-of-tone", "after-clear"]);
    // The admin API names the stream, as the bot's own logs would.
    let record = admin_get(gw.http_addr, &format!("/calls/{}", call.call_id)).await;
    assert_eq!(record["agent"]["kind"], "stream", "{record}");
    assert_eq!(
        record["details"]["stream"]["stream_sid"],
        bot.of("start")[0].msg["streamSid"]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_presses_reach_the_bot_and_garbage_from_it_is_ignored() {
    let bot = FakeBot::start(vec![step(When::Start, vec![Act::Garbage, Act::Echo])]).await;
    let gw = gateway(&bot, "").await;
    let mut p = plan(&gw, Duration::from_secs(2));
    p.dtmf = vec![
        (Duration::from_millis(300), '7'),
        (Duration::from_millis(800), '#'),
    ];
    let call = place_call(p).await;
    assert!(
        matches!(call.bye(), Some(ByeOutcome::Answered(200))),
        "{:?}",
        call.sip
    );
    assert!(bot.wait_for(WAIT, |b| b.of("dtmf").len() == 2).await);
    let digits: Vec<_> = bot
        .of("dtmf")
        .iter()
        .map(|d| d.msg["dtmf"]["digit"].clone())
        .collect();
    assert_eq!(digits, ["7", "#"]);
    assert_eq!(bot.of("dtmf")[0].msg["dtmf"]["track"], "inbound_track");
    gw.stop().await;
}

/// A call to a bot that does `act` once the stream has started; the call's result.
async fn bot_that(act: Act, extra: &str) -> (CallResult, FakeBot) {
    let bot = FakeBot::start(vec![step(When::Media(10), vec![act])]).await;
    let gw = gateway(&bot, extra).await;
    let call = place_call(plan(&gw, Duration::from_secs(8))).await;
    gw.stop().await;
    (call, bot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_closes_the_stream_hangs_up_normally() {
    let (call, _bot) = bot_that(Act::Close(1000, "goodbye".into()), "").await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    let reason = bye_reason(&call);
    assert!(reason.contains("cause=16"), "{reason}");
    assert!(
        reason.contains("the bot closed the stream (code 1000: goodbye)"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_hung_bot_fails_the_call_with_cause_41() {
    let (call, _bot) = bot_that(Act::Drop, "").await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    let reason = bye_reason(&call);
    assert!(
        reason.contains("cause=41") && reason.contains("stream connection lost"),
        "{reason}"
    );

    let (call, _bot) = bot_that(Act::Hang, "").await;
    assert_eq!(call.bye(), Some(ByeOutcome::Remote));
    let reason = bye_reason(&call);
    assert!(
        reason.contains("cause=41") && reason.contains("no answer to pings for 2 s"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hangup_on_close_the_caller_stays_on_until_hanging_up() {
    let (call, bot) = bot_that(Act::Close(1000, String::new()), "hangup_on_close = false\n").await;
    assert!(
        matches!(call.bye(), Some(ByeOutcome::Answered(200))),
        "{:?}",
        call.sip
    );
    assert_eq!(bot.ended(), ["closed 1000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_never_completes_the_upgrade_gets_503_at_the_connect_timeout() {
    // Accepts TCP, reads the upgrade request, never answers it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [[trunks]]\nname = \"t\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         [agents.bot]\nkind = \"stream\"\nurl = \"ws://{addr}/media\"\nconnect_timeout_secs = 1\n"
    );
    let cfg = config::parse(&text, "test.toml", &|_| None).unwrap();
    let gw = Gateway::start(&cfg).await.unwrap();
    let call = place_call(plan(&gw, Duration::from_secs(1))).await;
    assert_eq!(call.status(), Some(503));
    assert!(
        call.responses.contains(&180),
        "it rang meanwhile: {:?}",
        call.responses
    );
    gw.stop().await;
    silent.abort();
}

/// What the TwiML server got: the request's headers and body.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// A voice webhook on loopback answering every POST with `answer`; its URL and its log.
async fn twiml_server(answer: String) -> (String, Asked) {
    use axum::routing::post;
    let asked = Asked::default();
    let log = asked.clone();
    let app = axum::Router::new().route(
        "/voice",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let (log, answer) = (log.clone(), answer.clone());
            async move {
                log.lock().unwrap().push((headers, body));
                // ElevenLabs answers TwiML as text/html: the type must not matter.
                ([("content-type", "text/html")], answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/voice", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twiml_url_is_asked_like_twilios_webhook_and_its_stream_and_parameters_are_used() {
    let bot = FakeBot::start(vec![step(When::Start, vec![Act::Echo])]).await;
    let twiml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"{}\">\
         <Parameter name=\"agent\" value=\"sales\"/></Stream></Connect></Response>",
        bot.url()
    );
    let (url, asked) = twiml_server(twiml).await;
    let token = "twilio-auth-token-for-tests";
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[trunks]]\nname = \"t\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         [agents.bot]\nkind = \"stream\"\ntwiml_url = \"{url}\"\ntwiml_auth_token_env = \"TOKEN\"\n"
    );
    let cfg = config::parse(&text, "test.toml", &|k| {
        (k == "TOKEN").then(|| token.to_string())
    })
    .unwrap();
    let gw = Gateway::start(&cfg).await.unwrap();
    let call = place_call(plan(&gw, Duration::from_secs(1))).await;
    assert!(
        matches!(call.bye(), Some(ByeOutcome::Answered(200))),
        "{:?}",
        call.sip
    );
    assert!(bot.wait_for(WAIT, |b| b.of("stop").len() == 1).await);

    let (headers, body) = asked.lock().unwrap()[0].clone();
    let form = sipbridge::http::twiml::parse_form(body.as_bytes());
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("From"), "+447700900123");
    assert_eq!(field("To"), "+447846855904");
    assert_eq!(field("Direction"), "inbound");
    assert_eq!(field("CallStatus"), "ringing");
    let signature = headers["x-twilio-signature"].to_str().unwrap();
    assert!(
        sipbridge::http::twiml::validate(token, &url, body.as_bytes(), true, signature),
        "signed as Twilio signs"
    );
    // The bot's start names the same call and carries the TwiML's parameter.
    let start = &bot.of("start")[0].msg["start"];
    assert_eq!(start["callSid"].as_str().unwrap(), field("CallSid"));
    assert_eq!(start["accountSid"].as_str().unwrap(), field("AccountSid"));
    assert_eq!(start["customParameters"]["agent"], "sales");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_request_with_a_join_url_answer_works_and_other_twiml_gets_503() {
    let bot = FakeBot::start(vec![step(When::Start, vec![Act::Echo])]).await;
    let (url, asked) = twiml_server(format!(
        "{{\"callId\":\"c1\",\"joinUrl\":\"{}\"}}",
        bot.url()
    ))
    .await;
    let (say_url, _) = twiml_server("<Response><Say>We are closed.</Say></Response>".into()).await;
    for (twiml_url, expect) in [(url, 200), (say_url, 503)] {
        let (lo, hi) = rtp_range();
        let text = format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
             [[trunks]]\nname = \"t\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
             [agents.bot]\nkind = \"stream\"\ntwiml_url = \"{twiml_url}\"\n\
             twiml_headers_env = {{ X-API-Key = \"KEY\" }}\n\
             twiml_json = '{{\"medium\": {{\"twilio\": {{}}}}, \"metadata\": {{\"from\": \"{{from}}\"}}}}'\n"
        );
        let cfg = config::parse(&text, "test.toml", &|k| {
            (k == "KEY").then(|| "uv-key".to_string())
        })
        .unwrap();
        let gw = Gateway::start(&cfg).await.unwrap();
        let call = place_call(plan(&gw, Duration::from_millis(500))).await;
        assert_eq!(call.status(), Some(expect), "{twiml_url}");
        gw.stop().await;
    }
    let (headers, body) = asked.lock().unwrap()[0].clone();
    assert_eq!(headers["x-api-key"], "uv-key");
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["metadata"]["from"], "+447700900123");
    assert!(bot.wait_for(WAIT, |b| b.of("stop").len() == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_caller_audio_still_reaches_the_bot_as_one_message_per_frame() {
    let bot = FakeBot::start(vec![step(When::Start, vec![Act::Echo])]).await;
    let gw = gateway(&bot, "audio_batch_ms = 40\n").await;
    let (report, _) = run(args(gw.sip_addr, 1, 10.0, 2)).await;
    assert!(report.passed(), "{}", report.table());
    assert!(bot.wait_for(WAIT, |b| b.of("stop").len() == 1).await);
    let media = bot.of("media");
    assert!(media.len() > 90, "{}", media.len());
    for (i, m) in media.iter().enumerate() {
        assert_eq!(m.msg["media"]["chunk"], (i + 1).to_string());
        assert_eq!(m.msg["media"]["payload"].as_str().unwrap().len(), 216);
    }
    gw.stop().await;
}
