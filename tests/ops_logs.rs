//! No secret ever reaches a log line: the binary runs (text and JSON logs, debug level) with a
//! trunk password, a Twilio auth token and an admin bearer token that are easy to grep for,
//! takes a call with a wrong and then the right password, a signed and an unsigned webhook,
//! admin requests with right and wrong tokens, a broken reload and SIGTERM; then every line of
//! its stdout and stderr is searched for each secret.

mod common;
mod ops_support;

use common::*;
use ops_support::*;
use sipbridge::http::twiml::signature;

const TRUNK_PW: &str = "trunkpw-Zq7x9Kp2Lm";
const TWILIO_TOKEN: &str = "twiliotok-Hv3n8Rt5Wb";
const ADMIN_TOKEN: &str = "admintok-Jc6m2Yd9Qs";

fn config() -> String {
    let (lo, hi) = rtp_range();
    format!(
        "shutdown_grace_secs = 5\n\
         [sip]\nlisten = \"127.0.0.1:0\"\npublic_addr = \"gw.example.com\"\n\
         [media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"OPS_ADMIN_TOKEN\"\n\
         [twilio]\nauth_token_env = \"OPS_TWILIO_TOKEN\"\npublic_url = \"https://gw.example.com\"\n\
         [[trunks]]\nname = \"pv\"\nusername = \"{USER}\"\npassword_env = \"OPS_TRUNK_PW\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n"
    )
}

async fn exercise(format: &str) -> String {
    let path = temp_file("gw.toml", &config());
    let env = [
        ("OPS_TRUNK_PW", TRUNK_PW),
        ("OPS_TWILIO_TOKEN", TWILIO_TOKEN),
        ("OPS_ADMIN_TOKEN", ADMIN_TOKEN),
        ("RUST_LOG", "debug"),
    ];
    let args = ["--log-format", format, "run", "--config"];
    let mut gw = Gateway::spawn_with(&args, &path, &env).await;

    let wrong = place_calls(gw.sip, 1, 0.0, USER, "not-the-password")
        .await
        .unwrap();
    assert_eq!(wrong.calls[0].status, Some(403));
    let right = place_calls(gw.sip, 1, 1.0, USER, TRUNK_PW).await.unwrap();
    assert!(right.passed(), "{}", right.table());

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for path in ["/calls", "/metrics", "/livekit/sip/inbound-trunks"] {
        let r = http(gw.http, "GET", path, &[("Authorization", &bearer)], b"").await;
        assert_eq!(r.status, 200, "{path}");
    }
    let r = http(
        gw.http,
        "GET",
        "/calls",
        &[("Authorization", "Bearer guess")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    let params = vec![
        ("CallSid".to_string(), "CAlogs".to_string()),
        ("To".to_string(), "+447846855904".to_string()),
    ];
    let sig = signature(TWILIO_TOKEN, "https://gw.example.com/twilio/voice", &params);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let body = b"CallSid=CAlogs&To=%2B447846855904";
    let r = http(
        gw.http,
        "POST",
        "/twilio/voice",
        &[form, ("X-Twilio-Signature", &sig)],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(TRUNK_PW),
        "the TwiML itself carries the password"
    );
    let r = http(
        gw.http,
        "POST",
        "/twilio/voice",
        &[form, ("X-Twilio-Signature", "AAAA")],
        body,
    )
    .await;
    assert_eq!(r.status, 403);

    // A reload that fails on a missing secret variable.
    std::fs::write(
        &path,
        config().replace("OPS_TRUNK_PW", "OPS_UNSET_VARIABLE"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(gw.wait_log("configuration reload refused").await);

    gw.signal("TERM");
    assert!(gw.wait_exit().await.success());
    gw.lines().join("\n")
}

fn assert_no_secret(log: &str, format: &str) {
    // The test read real logs: the call, the webhook and the reload are all in them.
    for expected in [
        "incoming call",
        "TwiML webhook",
        "OPS_UNSET_VARIABLE",
        "stopped",
    ] {
        assert!(
            log.contains(expected),
            "{format} log lacks {expected:?}:\n{log}"
        );
    }
    for secret in [TRUNK_PW, TWILIO_TOKEN, ADMIN_TOKEN] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            hits.is_empty(),
            "{format} log shows a secret:\n{}",
            hits.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_never_show_a_secret() {
    let log = exercise("text").await;
    assert_no_secret(&log, "text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_never_show_a_secret() {
    let log = exercise("json").await;
    assert_no_secret(&log, "json");
    // Every line is JSON, and a call's lines carry its span.
    for l in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }
    assert!(log
        .lines()
        .any(|l| l.contains("incoming call") && l.contains("\"twilio_sid\":\"CA")));
}
