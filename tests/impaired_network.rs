//! Calls across an impaired network: the harness's seeded impairment (`--impair-sip`,
//! `--impair-rtp`) between the caller and an in-process gateway, in each direction. SIP loss
//! is survived by RFC 3261 retransmissions on both sides; nothing is left half-open.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::load::{args, f, run};
use common::*;
use sipbridge::load::impair::ImpairSpec;

/// What the impaired link did in one direction, from the JSON report.
fn link(json: &Value, dir: &str) -> (u64, u64) {
    let d = &json["summary"]["harness"]["impaired"][dir];
    (d["offered"].as_u64().unwrap(), d["lost"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_sip_loss_each_way_every_call_completes_and_ends() {
    let gw = gateway("").await;
    let mut a = args(gw.sip_addr, 30, 10.0, 2);
    a.impair_sip = Some(ImpairSpec::parse("loss=10%").unwrap());
    a.seed = Some(11);
    let (report, json) = run(a).await;
    let s = &json["summary"];
    assert!(report.passed(), "{}", report.table());
    assert_eq!(s["completed"], 30, "{}", report.table());
    for c in json["calls"].as_array().unwrap() {
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["bye"], "200", "{c}");
        assert!(c["rtp_sent"].as_u64().unwrap() > 50, "{c}");
        assert!(f(&c["loss_pct"]) < 1.0, "RTP is clear: {c}");
    }
    // The link did lose, both ways, about one datagram in ten.
    for dir in ["sip_out", "sip_in"] {
        let (offered, lost) = link(&json, dir);
        assert!(offered > 100, "{dir}: {offered}");
        assert!(
            lost * 100 > offered * 5 && lost * 100 < offered * 15,
            "{dir}: {lost} of {offered}"
        );
    }
    // Losses cost retransmissions, visible in the setup tail (T1 is 500 ms).
    assert!(f(&s["setup_ms"]["max"]) >= 500.0, "{}", report.table());
    // Nothing half-open on the gateway's side: every call ended and its task settled.
    let settled = tokio::time::timeout(
        Duration::from_secs(40),
        gw.wait_for(|st| st.active == 0 && st.unsettled == 0),
    )
    .await;
    assert!(settled.is_ok(), "still open: {:?}", gw.status());
    assert_eq!(gw.shared().registry.active_count(), 0);
    gw.stop().await;
}

/// RTP with 5 % loss, 40 ms jitter, 2 % reordering and 1 % duplicates each way: every call
/// stays up and ends normally, the loss shows in the report and its MOS, and every frame
/// that reached the gateway in time to be played came back intact (the few that did not are
/// the gateway's late packets: held back more than its 60 ms reorder window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impaired_rtp_keeps_calls_up_and_echoes_every_frame_that_arrived() {
    let gw = gateway("").await;
    let mut a = args(gw.sip_addr, 20, 10.0, 3);
    a.impair_rtp = Some(ImpairSpec::parse("loss=5%,jitter=40ms,reorder=2%,dup=1%").unwrap());
    a.seed = Some(5);
    a.max_loss_pct = 20.0;
    let (report, json) = run(a).await;
    let s = &json["summary"];
    assert!(report.passed(), "{}", report.table());
    assert_eq!(s["completed"], 20, "{}", report.table());
    for c in json["calls"].as_array().unwrap() {
        assert_eq!(c["bye"], "200", "{c}");
    }
    // The caller hears about 5 % loss (its own way back), and the MOS says so.
    let loss = f(&s["loss_pct"]);
    assert!((3.0..7.0).contains(&loss), "{}", report.table());
    let mos = f(&s["mos"]["mean"]);
    assert!(mos > 1.0 && mos < 3.5, "{}", report.table());
    for dir in ["rtp_out", "rtp_in"] {
        let d = &json["summary"]["harness"]["impaired"][dir];
        for key in ["lost", "reordered", "duplicated"] {
            assert!(d[key].as_u64().unwrap() > 0, "{dir}.{key}: {d}");
        }
    }
    // Frames lost on the way out come back as concealment, not as echoes; every other frame
    // came back bit for bit, unless the gateway had already given it up as late.
    // The calls' last figures reach the metrics as their tasks end.
    tokio::time::timeout(Duration::from_secs(10), gw.wait_for(|st| st.active == 0))
        .await
        .expect("calls end");
    let text = gw.shared().metrics.render();
    let gateway_late = metric(&text, "sipbridge_rtp_late_packets_total").unwrap();
    let not_returned = s["not_returned"].as_u64().unwrap();
    assert!(
        not_returned as f64 <= gateway_late,
        "{not_returned} frames lost inside the gateway, {gateway_late} late: {}",
        report.table()
    );
    gw.stop().await;
}

/// A caller that vanishes after the ACK (no RTP, no BYE): the media timeout ends the call with
/// a BYE that says so (Q.850 102, recovery on timer expiry), and nothing of the call is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_caller_gets_bye_with_cause_102_and_nothing_is_left() {
    use common::raw_sip::{ack, authenticated_invite, header, rtp_sink, RawSip};
    let gw = gateway_with(
        "initial_media_timeout_secs = 1\nmedia_timeout_secs = 1\n",
        "",
    )
    .await;
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let sink = rtp_sink();
    let rtp_port = sink.local_addr().unwrap().port();
    let to = gw.sip_addr;
    let ok = authenticated_invite(&sip, to, "vanished", rtp_port, USER, PASSWORD)
        .await
        .expect("answered");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ack(&sip, to, "vanished", &ok).await;
    // Silence: the gateway's BYE comes within its timeout and a bounded wait.
    let mut bye = None;
    for _ in 0..20 {
        match sip.recv(Duration::from_millis(500)).await {
            Some(m) if m.starts_with("BYE ") => {
                bye = Some(m);
                break;
            }
            _ => {}
        }
    }
    let bye = bye.expect("the gateway hangs up");
    let reason = header(&bye, "Reason").unwrap_or_default();
    assert!(
        reason.starts_with("Q.850;cause=102;text=\"media timeout"),
        "{reason}"
    );
    tokio::time::timeout(Duration::from_secs(5), gw.wait_for(|s| s.active == 0))
        .await
        .expect("the call ends");
    assert_eq!(gw.shared().registry.active_count(), 0);
    gw.stop().await;
}
