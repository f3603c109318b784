//! The public SIP port against a real gateway process: a flooding stranger is banned after its
//! burst (one log line, counted, listed by `GET /bans`, lifted by `DELETE /bans/{ip}`), and a
//! password guesser is banned after its failures (logged once, not once a guess) while the
//! right password from another address still gets in. Sources are distinct 127/8 addresses.

mod common;
mod ops_support;

use std::time::Duration;

use common::raw_sip::{header, invite, invite_uri, options, RawSip};
use common::{metric, PASSWORD, USER};
use ops_support::*;
use sipbridge::sip::auth::{respond, Challenge};

const SECS: Duration = Duration::from_secs(1);

async fn gateway() -> Gateway {
    open_trunk_gateway("source_burst = 5\nsource_rate = 1\nauth_failures = 3").await
}

fn bans_logged(gw: &Gateway, ip: &str) -> usize {
    gw.lines()
        .iter()
        .filter(|l| l.contains("source banned") && l.contains(ip))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_stranger_is_banned_listed_counted_and_can_be_let_back() {
    let gw = gateway().await;
    let flooder = RawSip::bind([127, 0, 0, 9]).await;
    let mut answered = 0;
    for i in 0..20 {
        if options(&flooder, gw.sip, &format!("f{i}"), SECS / 5)
            .await
            .is_some()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 5, "the burst is answered, then nothing");

    let bans = get(gw.http, "/bans").await.json();
    assert_eq!(bans["bans"][0]["ip"], "127.0.0.9", "{bans}");
    assert_eq!(bans["bans"][0]["reason"], "rate", "{bans}");
    assert!(bans["bans"][0]["remaining_secs"].as_u64().unwrap() > 500);
    let m = get(gw.http, "/metrics").await.body;
    assert_eq!(
        metric(&m, "sipbridge_bans_total{reason=\"rate\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "sipbridge_active_bans"), Some(1.0));
    assert_eq!(
        metric(&m, "sipbridge_sip_dropped_total{reason=\"over_rate\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "sipbridge_sip_dropped_total{reason=\"banned\"}"),
        Some(14.0)
    );
    assert_eq!(bans_logged(&gw, "127.0.0.9"), 1, "one line per ban");

    // Another stranger is not affected; the admin lifts the ban.
    let other = RawSip::bind([127, 0, 0, 19]).await;
    assert!(options(&other, gw.sip, "o", SECS).await.is_some());
    let lifted = http(gw.http, "DELETE", "/bans/127.0.0.9", &[], b"").await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert!(options(&flooder, gw.sip, "back", SECS).await.is_some());
    let again = http(gw.http, "DELETE", "/bans/127.0.0.9", &[], b"").await;
    assert_eq!(again.status, 404);
    let junk = http(gw.http, "DELETE", "/bans/not-an-ip", &[], b"").await;
    assert_eq!(junk.status, 400);
    let m = get(gw.http, "/metrics").await.body;
    assert_eq!(metric(&m, "sipbridge_active_bans"), Some(0.0));
}

/// One INVITE with `password`'s answer to a fresh challenge from `sip`; the final response to
/// the answered INVITE, if any.
async fn call_with(sip: &RawSip, gw: &Gateway, id: &str, password: &str) -> Option<String> {
    sip.send(
        gw.sip,
        &invite(gw.sip, sip.local, id, 1, &format!("{id}-1"), 9, None),
    )
    .await;
    let challenge = sip.final_response("INVITE", SECS).await?;
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    let ch = Challenge::parse(&header(&challenge, "Proxy-Authenticate").unwrap()).unwrap();
    let auth = respond(
        &ch,
        "INVITE",
        &invite_uri(gw.sip),
        USER,
        password,
        "0a4f113b",
        1,
    );
    let retry = invite(gw.sip, sip.local, id, 2, &format!("{id}-2"), 9, Some(&auth));
    sip.send(gw.sip, &retry).await;
    sip.final_response("INVITE", SECS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_guesser_is_banned_and_the_right_password_elsewhere_gets_in() {
    let gw = gateway().await;
    let guesser = RawSip::bind([127, 0, 0, 66]).await;
    for i in 0..3 {
        let r = call_with(&guesser, &gw, &format!("guess-{i}"), &format!("guess{i}")).await;
        assert!(r.is_some_and(|r| r.starts_with("SIP/2.0 407")), "guess {i}");
        // Under the stranger budget (1 per second): this test is about failures alone.
        tokio::time::sleep(2 * SECS).await;
    }
    assert_eq!(bans_logged(&gw, "127.0.0.66"), 1);
    let failures_logged = gw
        .lines()
        .iter()
        .filter(|l| l.contains("authentication failed") && l.contains("127.0.0.66"))
        .count();
    assert_eq!(
        failures_logged, 1,
        "repeats are counted, not logged one by one"
    );
    let bans = get(gw.http, "/bans").await.json();
    assert_eq!(bans["bans"][0]["reason"], "auth_failures", "{bans}");
    // Banned: even the right password from there is not answered at all.
    guesser
        .send(
            gw.sip,
            &invite(gw.sip, guesser.local, "late", 1, "late-1", 9, None),
        )
        .await;
    assert!(guesser.final_response("INVITE", SECS).await.is_none());

    let customer = RawSip::bind([127, 0, 0, 67]).await;
    let ok = call_with(&customer, &gw, "right", PASSWORD).await;
    assert!(
        ok.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "{ok:?}"
    );
    let m = get(gw.http, "/metrics").await.body;
    assert_eq!(
        metric(&m, "sipbridge_bans_total{reason=\"auth_failures\"}"),
        Some(1.0)
    );
}
