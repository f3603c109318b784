//! The binary's life as systemd runs it: SIGTERM drains (503 with Retry-After to new INVITEs,
//! the running call completes, exit 0), the grace period ends with a BYE, SIGHUP reloads or
//! refuses a broken file, and sd_notify messages reach NOTIFY_SOCKET.

mod common;
mod ops_support;

use std::time::Duration;

use common::*;
use ops_support::*;
use sipbridge::load::Report;

/// A gateway child process with `grace_secs` of shutdown grace, and a call held for
/// `hold_secs`, returned once the call is confirmed.
async fn gateway_with_a_live_call(
    grace_secs: u64,
    hold_secs: f64,
) -> (Gateway, tokio::task::JoinHandle<Report>) {
    let config = temp_file(
        "gw.toml",
        &child_config(
            rtp_range(),
            grace_secs,
            &format!("password = \"{PASSWORD}\""),
        ),
    );
    let gw = Gateway::spawn(&config, &[]).await;
    let call = place_calls(gw.sip, 1, hold_secs, USER, PASSWORD);
    let http_addr = gw.http;
    let calls = poll(
        200,
        async || get(http_addr, "/calls").await.json(),
        |v: &serde_json::Value| v[0]["state"] == "confirmed",
    )
    .await;
    assert_eq!(calls[0]["state"], "confirmed", "{calls}");
    (gw, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_with_503_while_the_running_call_completes() {
    let (mut gw, call) = gateway_with_a_live_call(30, 8.0).await;
    let http_addr = gw.http;

    gw.signal("TERM");
    let health = poll(
        200,
        async || get(http_addr, "/healthz").await.status,
        |s| *s == 503,
    )
    .await;
    assert_eq!(health, 503, "healthz while draining");
    let metrics = get(http_addr, "/metrics").await.body;
    assert_eq!(metric(&metrics, "sipbridge_draining"), Some(1.0));
    assert_eq!(metric(&metrics, "sipbridge_active_calls"), Some(1.0));

    // A new call is turned away so Twilio fails over...
    let answer = raw_invite(gw.sip, "drain1").await;
    assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
    assert!(
        answer
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("retry-after:")),
        "{answer}"
    );
    // ...and a balancer's OPTIONS probe hears the same, so it sends new calls elsewhere...
    let probe = raw_request(gw.sip, "OPTIONS", "drain-probe").await;
    assert!(probe.starts_with("SIP/2.0 503"), "{probe}");
    assert!(
        probe
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("retry-after:")),
        "{probe}"
    );
    // ...while the first one runs to its end: answered, held, hung up by the caller.
    let report = call.await.unwrap();
    assert!(report.passed(), "{}", report.table());
    assert!(report.calls[0].completed);
    assert_eq!(report.calls[0].bye, "200");

    let status = gw.wait_exit().await;
    assert!(
        status.success(),
        "exit {status}:\n{}",
        gw.lines().join("\n")
    );
    let log = gw.lines().join("\n");
    assert!(log.contains("draining"), "{log}");
    assert!(!log.contains("hanging up the remaining calls"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_grace_runs_out_the_remaining_call_gets_a_bye_and_the_exit_is_clean() {
    // Held far longer than the grace.
    let (mut gw, call) = gateway_with_a_live_call(1, 60.0).await;
    gw.signal("TERM");
    let report = call.await.unwrap();
    assert_eq!(report.calls[0].status, Some(200));
    assert_eq!(report.calls[0].bye, "remote", "the gateway hung up");
    let status = gw.wait_exit().await;
    assert!(
        status.success(),
        "exit {status}:\n{}",
        gw.lines().join("\n")
    );
    let log = gw.lines().join("\n");
    assert!(log.contains("hanging up the remaining calls"), "{log}");
    assert!(log.contains("\"calls_cut\":1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_broken_file_and_applies_a_good_one_to_new_calls() {
    let rtp = rtp_range();
    let old_pw = "old-password-1111";
    let new_pw = "new-password-2222";
    let config = temp_file(
        "gw.toml",
        &child_config(rtp, 5, &format!("password = \"{old_pw}\"")),
    );
    let mut gw = Gateway::spawn(&config, &[]).await;

    // Broken: a bad listen address and an unknown key, with the new password.
    let broken = child_config(rtp, 5, &format!("password = \"{new_pw}\"\nbogus = 1")).replace(
        "[sip]\nlisten = \"127.0.0.1:0\"",
        "[sip]\nlisten = \"nowhere\"",
    );
    std::fs::write(&config, broken).unwrap();
    gw.signal("HUP");
    assert!(gw.wait_log("configuration reload refused").await);
    let log = gw.lines().join("\n");
    assert!(
        log.contains("gw.toml:"),
        "problems name the file and line: {log}"
    );
    let report = place_calls(gw.sip, 1, 0.0, USER, old_pw).await.unwrap();
    assert!(
        report.passed(),
        "old password still in force: {}",
        report.table()
    );
    let report = place_calls(gw.sip, 1, 0.0, USER, new_pw).await.unwrap();
    assert_eq!(report.calls[0].status, Some(403));
    let m = get(gw.http, "/metrics").await.body;
    assert_eq!(
        metric(&m, "sipbridge_config_reloads_total{result=\"failed\"}"),
        Some(1.0)
    );

    // Good: the new password, and a change that needs a restart (named, not applied).
    let good = child_config((rtp.0, rtp.1 - 2), 5, &format!("password = \"{new_pw}\""));
    std::fs::write(&config, good).unwrap();
    gw.signal("HUP");
    assert!(gw.wait_log("configuration reloaded").await);
    assert!(gw.lines().iter().any(|l| l.contains("media.rtp_ports")));
    let report = place_calls(gw.sip, 1, 0.0, USER, new_pw).await.unwrap();
    assert!(report.passed(), "new password in force: {}", report.table());
    let report = place_calls(gw.sip, 1, 0.0, USER, old_pw).await.unwrap();
    assert_eq!(report.calls[0].status, Some(403));
    let m = get(gw.http, "/metrics").await.body;
    assert_eq!(
        metric(&m, "sipbridge_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );

    gw.signal("TERM");
    assert!(gw.wait_exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let config = temp_file(
        "gw.toml",
        &child_config(rtp_range(), 5, &format!("password = \"{PASSWORD}\"")),
    );
    let sock_path = config.with_file_name("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut gw = Gateway::spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut recv = |seen: &mut String, want: &str| {
        for _ in 0..50 {
            if seen.contains(want) {
                return true;
            }
            match sock.recv(&mut buf) {
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => return false,
            }
        }
        seen.contains(want)
    };
    assert!(recv(&mut seen, "READY=1"), "{seen}");
    assert!(recv(&mut seen, "STATUS=0 active calls"), "{seen}");
    assert!(recv(&mut seen, "WATCHDOG=1"), "{seen}");
    gw.signal("TERM");
    assert!(recv(&mut seen, "STOPPING=1"), "{seen}");
    assert!(recv(&mut seen, "STATUS=draining: 0 active calls"), "{seen}");
    assert!(gw.wait_exit().await.success());
    let _ = std::fs::remove_file(&sock_path);
}

/// SIGKILL with a call up, then a restart on the same ports: the new process binds at once,
/// takes new calls, and answers the dead process's in-dialog requests with 481 rather than
/// silence (so the caller's BYE ends its side instead of retransmitting for 32 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_a_restart_binds_at_once_and_answers_old_dialogs_481() {
    use common::raw_sip::{ack, ack_and_bye, bye, unauthenticated_invite, RawSip};
    let sip_port = free_udp_port();
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (lo, hi) = rtp_range();
    let config = temp_file(
        "restart.toml",
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n\
             [media]\nrtp_ports = \"{lo}-{hi}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [[trunks]]\nname = \"esip\"\nallowed_addresses = [\"127.0.0.0/8\"]\n"
        ),
    );
    let mut first = Gateway::spawn(&config, &[]).await;
    let sip = RawSip::bind([127, 0, 0, 1]).await;
    let rtp = common::raw_sip::rtp_sink();
    let rtp_port = rtp.local_addr().unwrap().port();
    let to = first.sip;
    let ok = unauthenticated_invite(&sip, to, "before-kill", rtp_port)
        .await
        .expect("answered");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    ack(&sip, to, "before-kill", &ok).await;

    first.signal("KILL");
    first.wait_exit().await;
    let second = Gateway::spawn(&config, &[]).await;
    assert_eq!(
        (second.sip, second.http),
        (first.sip, first.http),
        "same ports"
    );

    // The old call's BYE: 481, at once.
    let old_bye = bye(&sip, to, "before-kill", &ok)
        .await
        .expect("the BYE is answered");
    assert!(old_bye.starts_with("SIP/2.0 481"), "{old_bye}");
    // A new call is served.
    let ok = unauthenticated_invite(&sip, to, "after-restart", rtp_port)
        .await
        .expect("answered");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ack_and_bye(&sip, to, "after-restart", &ok).await);
}
