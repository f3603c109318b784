//! The load harness against the gateway in-process: dozens of Twilio-shaped calls with digest
//! auth and echoed G.711, checked through the JSON report a script would read.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::load::{args, f, run, temp_path};
use common::*;
use sipbridge::codec::g711::Law;
use sipbridge::codec::wav;
use sipbridge::config;
use sipbridge::load;

/// Every call answered, held, hung up; audio back intact; figures present.
fn assert_all_completed(json: &Value, calls: u64) {
    let s = &json["summary"];
    let table = || serde_json::to_string_pretty(s).unwrap();
    assert_eq!(s["attempted"], calls, "{}", table());
    assert_eq!(s["completed"], calls, "{}", table());
    assert_eq!(s["passed"], true, "{}", table());
    let records = json["calls"].as_array().unwrap();
    assert_eq!(records.len() as u64, calls);
    for c in records {
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["completed"], true, "{c}");
        assert_eq!(c["bye"], "200", "{c}");
        assert!(f(&c["setup_ms"]) > 0.0, "{c}");
        assert!(f(&c["first_rtp_ms"]) > 0.0, "{c}");
        assert!(c["rtp_sent"].as_u64().unwrap() > 50, "{c}");
        // The echo of what was sent, bit for bit, for more than 95 % of non-silence frames.
        let echoed = c["echoed_frames"].as_u64().unwrap();
        let unmatched = c["unmatched_frames"].as_u64().unwrap();
        assert!(echoed > 50, "{c}");
        assert!(echoed * 100 > 95 * (echoed + unmatched), "{c}");
        assert!(f(&c["loss_pct"]) < 1.0, "{c}");
        assert!(f(&c["rtt_mean_ms"]) > 0.0, "{c}");
        assert!(f(&c["mos"]) > 4.0, "{c}");
    }
    assert!(f(&s["loss_pct"]) < 1.0);
    assert!(f(&s["intact_pct"]) > 95.0, "{}", table());
    for key in ["setup_ms", "first_rtp_ms", "rtt_ms"] {
        for p in ["p50", "p95", "p99", "max"] {
            assert!(f(&s[key][p]) > 0.0, "{key}.{p}: {}", table());
        }
    }
    assert!(f(&s["rtt_ms"]["p50"]) <= f(&s["rtt_ms"]["max"]));
    assert_eq!(s["outcomes"]["200"], calls);
}

/// `--srtp`: every call offers SRTP with its own key and the gateway answers with its own;
/// the echo comes back intact through both directions' encryption (the harness decrypts with
/// the gateway's key), so the report reads as for plain RTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_calls_echo_intact() {
    let gw = gateway_with("media_timeout_secs = 5\nsdes_without_tls = true\n", "").await;
    let (report, json) = run(load::LoadArgs {
        srtp: true,
        ..args(gw.sip_addr, 4, 4.0, 2)
    })
    .await;
    assert!(report.passed(), "{}", report.table());
    assert_all_completed(&json, 4);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_calls_at_fifteen_per_second_all_complete_with_intact_echo() {
    let gw = gateway("").await;
    let (report, json) = run(args(gw.sip_addr, 30, 15.0, 2)).await;
    assert!(report.passed(), "{}", report.table());
    assert_all_completed(&json, 30);
    // Every call answered a 407 first.
    assert!(json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["auth_rounds"] == 1));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_every_call_with_403() {
    let gw = gateway("").await;
    let mut a = args(gw.sip_addr, 5, 10.0, 1);
    a.password = Some("not-the-password".into());
    let (report, json) = run(a).await;
    assert!(!report.passed());
    let s = &json["summary"];
    assert_eq!(s["attempted"], 5);
    assert_eq!(s["completed"], 0);
    assert_eq!(s["outcomes"]["403"], 5, "{s}");
    assert_eq!(s["failures"]["SIP 403"], 5, "{s}");
    assert_eq!(s["passed"], false);
    for c in json["calls"].as_array().unwrap() {
        assert_eq!(c["status"], 403);
        assert_eq!(c["rtp_sent"], 0);
    }
    gw.stop().await;
}

/// A gateway that challenges with 401 + WWW-Authenticate instead of 407.
async fn gateway_401() -> sipbridge::call::Gateway {
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nauth_challenge = \"401\"\n\
         [media]\nrtp_ports = \"{lo}-{hi}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[trunks]]\nname = \"t\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n"
    );
    let cfg = config::parse(&text, "test.toml", &|_| None).expect("test config");
    sipbridge::call::Gateway::start(&cfg)
        .await
        .expect("gateway start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn www_challenge_and_pcma_from_a_wav_file() {
    let gw = gateway_401().await;
    // A pure tone repeats every five frames: the harness must still tell its echoes apart.
    let pcm: Vec<i16> = (0..8000)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let audio = temp_path("tone.wav");
    std::fs::write(&audio, wav::write_pcm16(8000, &pcm)).unwrap();
    let mut a = args(gw.sip_addr, 4, 10.0, 2);
    a.codec = Law::A;
    a.audio = Some(audio.clone());
    let (report, json) = run(a).await;
    let _ = std::fs::remove_file(&audio);
    assert!(report.passed(), "{}", report.table());
    assert_all_completed(&json, 4);
    for c in json["calls"].as_array().unwrap() {
        assert_eq!(c["codec"], "PCMA", "{c}");
        assert_eq!(c["auth_rounds"], 1, "{c}");
    }
    assert_eq!(json["summary"]["codec"], "PCMA");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_early_ends_calls_with_bye_and_still_reports() {
    let gw = gateway("").await;
    let target = gw.sip_addr;
    // Ten calls held for 30 s; stop after 1.5 s: the calls up by then end with BYE.
    let report = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(load::run_until(
            args(target, 10, 5.0, 30),
            tokio::time::sleep(Duration::from_millis(1500)),
        ))
    })
    .await
    .unwrap()
    .unwrap();
    let s = &report.summary;
    assert!(s.run.interrupted);
    assert!(!report.passed());
    assert!(s.run.elapsed_s < 10.0, "bounded wait: {}", report.table());
    assert!((7..=9).contains(&s.attempted), "{}", report.table());
    // Every answered call was hung up cleanly.
    let answered: Vec<_> = report
        .calls
        .iter()
        .filter(|c| c.status == Some(200))
        .collect();
    assert!(answered.len() >= 6, "{}", report.table());
    assert!(answered.iter().all(|c| c.bye == "200"), "{:?}", answered);
    gw.stop().await;
}

/// `--called` picks the number dialled, and so the gateway's route: with a route for one
/// number only, calls to it complete and calls to the default number are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_called_number_picks_the_route() {
    let gw = gateway(
        "[agents.echo]\nkind = \"echo\"\n[[routes]]\nnumbers = [\"+15550100\"]\nagent = \"echo\"\n",
    )
    .await;
    let mut a = args(gw.sip_addr, 2, 10.0, 1);
    a.called = "+15550100".into();
    let (report, json) = run(a).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(json["summary"]["completed"], 2);
    let (report, json) = run(args(gw.sip_addr, 2, 10.0, 1)).await;
    assert!(!report.passed());
    assert_eq!(json["summary"]["outcomes"]["404"], 2, "{}", json["summary"]);
    gw.stop().await;
}

#[test]
fn a_called_number_that_is_not_dialable_is_refused() {
    let mut a = args("127.0.0.1:5060".parse().unwrap(), 1, 1.0, 1);
    a.called = "+1 555 0100".into();
    let Err(e) = load::run(a) else {
        panic!("a called number with spaces was accepted")
    };
    assert!(e.to_string().contains("--called \"+1 555 0100\""), "{e}");
}
