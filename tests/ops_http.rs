//! The admin HTTP API on loopback during live calls placed by the project's own UAC: the call
//! listed with its state, codec and RTP figures, `/calls/{id}`, the metrics moving, the bearer
//! token, and the LiveKit debug views.

mod common;
mod ops_support;

use common::*;
use ops_support::*;
use serde_json::Value;
use sipbridge::call::Gateway;
use sipbridge::config;

async fn start(http_extra: &str, env: &[(&str, &str)]) -> Gateway {
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         media_timeout_secs = 5\n[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n\
         [[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n"
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let cfg = config::parse(&text, "ops.toml", &lookup).expect("test config");
    Gateway::start(&cfg).await.expect("gateway start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_is_listed_and_the_metrics_move() {
    let gw = start("", &[]).await;
    let http_addr = gw.http_addr;
    let call = place_calls(gw.sip_addr, 1, 5.0, USER, PASSWORD);

    // The call, once confirmed and with RTP both ways.
    let calls = poll(
        100,
        async || get(http_addr, "/calls").await.json(),
        |v: &Value| {
            v.as_array().and_then(|a| a.first()).is_some_and(|c| {
                c["state"] == "confirmed"
                    && c["rtp"]["packets_received"].as_u64() > Some(5)
                    && c["rtp"]["packets_sent"].as_u64() > Some(5)
            })
        },
    )
    .await;
    let c = &calls[0];
    assert_eq!(c["state"], "confirmed", "{calls:#}");
    assert_eq!(c["trunk"], "twilio");
    assert_eq!(c["agent"]["name"], "echo");
    assert_eq!(c["agent"]["kind"], "echo");
    assert_eq!(c["codec"], "PCMU");
    assert_eq!(c["called"], "+447846855904", "as dialled: {c:#}");
    assert!(c["twilio_call_sid"].as_str().unwrap().starts_with("CA"));
    assert!(c["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(c["timings"]["setup_ms"].as_f64().unwrap() > 0.0);
    assert!(c["timings"]["received"].as_str().unwrap().ends_with('Z'));
    assert!(c["rtp"]["bytes_received"].as_u64().unwrap() >= 172 * 5);
    assert!(c["transcript"].as_array().unwrap().is_empty());
    let id = c["call_id"].as_str().unwrap().to_string();

    let one = get(http_addr, &format!("/calls/{}", encode(&id))).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["call_id"], id.as_str());
    let by_sid = get(
        http_addr,
        &format!("/calls/{}", c["twilio_call_sid"].as_str().unwrap()),
    )
    .await;
    assert_eq!(by_sid.json()["call_id"], id.as_str());
    let missing = get(http_addr, "/calls/no-such-call").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());

    let during = get(http_addr, "/metrics").await;
    assert_eq!(during.status, 200);
    assert!(during
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert_exposition(&during.body);
    assert_eq!(metric(&during.body, "sipbridge_active_calls"), Some(1.0));
    // The echo call's media runs on a reactor (one of them, however many this machine has).
    let on_reactors: f64 = during
        .body
        .lines()
        .filter(|l| l.starts_with("sipbridge_media_reactor_calls{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(on_reactors, 1.0, "{}", during.body);
    // Answered and confirmed: out of setup.
    assert_eq!(metric(&during.body, "sipbridge_calls_in_setup"), Some(0.0));
    assert_eq!(
        metric(
            &during.body,
            "sipbridge_calls_total{outcome=\"caller_hangup\"}"
        ),
        Some(0.0)
    );

    let report = call.await.unwrap();
    assert!(report.passed(), "{}", report.table());
    let after = poll(
        100,
        async || get(http_addr, "/metrics").await.body,
        |m: &String| metric(m, "sipbridge_calls_total{outcome=\"caller_hangup\"}") == Some(1.0),
    )
    .await;
    assert_exposition(&after);
    let m = |s: &str| metric(&after, s).unwrap_or_else(|| panic!("{s} missing:\n{after}"));
    assert_eq!(
        m("sipbridge_calls_total{outcome=\"caller_hangup\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(m("sipbridge_active_calls"), 0.0);
    assert_eq!(m("sipbridge_invite_responses_total{code=\"200\"}"), 1.0);
    assert_eq!(m("sipbridge_invite_responses_total{code=\"407\"}"), 1.0);
    assert_eq!(
        m("sipbridge_auth_failures_total{reason=\"no_credentials\"}"),
        1.0
    );
    assert!(m("sipbridge_rtp_packets_total{direction=\"received\"}") > 50.0);
    assert!(m("sipbridge_rtp_packets_total{direction=\"sent\"}") > 50.0);
    assert!(m("sipbridge_rtp_bytes_total{direction=\"sent\"}") > 50.0 * 172.0);
    assert_eq!(m("sipbridge_call_setup_seconds_count"), 1.0);
    assert_eq!(
        m("sipbridge_agent_connect_seconds_count{kind=\"echo\"}"),
        1.0
    );
    assert_eq!(m("sipbridge_rtp_jitter_seconds_count"), 1.0);

    // The ended call stays readable, with why it ended; the active list is empty.
    let ended = get(http_addr, &format!("/calls/{}", encode(&id)))
        .await
        .json();
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["outcome"], "caller_hangup");
    assert!(ended["end_reason"].as_str().unwrap().contains("BYE"));
    assert!(ended["timings"]["ended"].is_string());
    assert!(ended["rtp"]["packets_sent"].as_u64().unwrap() > 50);
    assert_eq!(get(http_addr, "/calls").await.json(), serde_json::json!([]));

    // A wrong password: challenged, then refused; both counted.
    let report = place_calls(gw.sip_addr, 1, 0.0, USER, "wrong-password")
        .await
        .unwrap();
    assert!(!report.passed());
    let m = get(http_addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &m,
            "sipbridge_auth_failures_total{reason=\"wrong_credentials\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sipbridge_invite_responses_total{code=\"403\"}"),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_guards_all_but_healthz_and_the_webhook() {
    let token = "admin-token-for-test-3b1f";
    let gw = start(
        "auth_token_env = \"OPS_ADMIN_TOKEN\"",
        &[("OPS_ADMIN_TOKEN", token)],
    )
    .await;
    let a = gw.http_addr;
    let bearer = format!("Bearer {token}");
    for path in [
        "/calls",
        "/metrics",
        "/calls/x",
        "/livekit/rooms",
        "/livekit/sip/inbound-trunks",
    ] {
        let none = get(a, path).await;
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer"));
        let wrong = http(a, "GET", path, &[("Authorization", "Bearer nope")], b"").await;
        assert_eq!(wrong.status, 401, "{path}");
        let right = http(a, "GET", path, &[("Authorization", &bearer)], b"").await;
        assert_ne!(right.status, 401, "{path}");
    }
    assert_eq!(get(a, "/healthz").await.status, 200);
    // The webhook is Twilio-signed, not bearer-guarded: here it has no Twilio token at all.
    let hook = http(a, "POST", "/twilio/voice", &[], b"To=%2B447846855904").await;
    assert_eq!(hook.status, 503);
    assert!(hook.body.contains("twilio.auth_token_env"), "{}", hook.body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_views_show_trunks_without_secrets() {
    let gw = start("", &[]).await;
    let trunks = get(gw.http_addr, "/livekit/sip/inbound-trunks").await;
    assert_eq!(trunks.status, 200);
    assert!(!trunks.body.contains(PASSWORD), "{}", trunks.body);
    let t = &trunks.json()["items"][0];
    assert_eq!(t["name"], "twilio");
    assert_eq!(t["auth_username"], USER);
    assert_eq!(t["auth_password"], "<redacted>");
    assert_eq!(t["allowed_addresses"], serde_json::json!(["127.0.0.0/8"]));
    let rooms = get(gw.http_addr, "/livekit/rooms").await;
    assert_eq!(rooms.json(), serde_json::json!({ "rooms": [] }));
    assert_eq!(get(gw.http_addr, "/healthz").await.body, "ok\n");
    gw.stop().await;
}
