//! The UAC against a scripted far end, on a fake clock: challenges (401/407, MD5/SHA-256,
//! with and without qop, stale), finals, timeouts, CANCEL, BYE retransmission.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::sdp::{self, LocalMedia, SessionDescription};
use crate::sip::auth::{
    Algorithm, AuthError, ChallengeKind, DigestConfig, DigestServer, NonceClock,
};
use crate::sip::message::{HeaderName, Message, Method, Request, Response};

const USER: &str = "ai-voice-agent";
const PASS: &str = "correct-horse-battery";

fn target() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

fn cfg(law: Law) -> UacConfig {
    UacConfig {
        target: target(),
        local: "127.0.0.1:5070".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        law,
        credentials: Some(Credentials {
            username: USER.into(),
            password: PASS.into(),
        }),
        hold: Duration::from_secs(10),
        timers: Timers::default(),
        setup_timeout: Duration::from_secs(20),
        caller: "+447700900123".into(),
        called: "+447846855904".into(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        srtp: false,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything the UAC sent, parsed.
fn sent(uac: &mut Uac) -> Vec<(SocketAddr, Message)> {
    let mut v = Vec::new();
    while let Some((to, bytes)) = uac.poll_transmit() {
        v.push((to, Message::parse(bytes).expect("what we send parses")));
    }
    v
}

fn only_request(uac: &mut Uac, method: Method) -> (SocketAddr, Request) {
    let mut out = sent(uac);
    assert_eq!(out.len(), 1, "expected one {method}, got {out:?}");
    match out.pop() {
        Some((to, Message::Request(r))) if r.method == method => (to, r),
        other => panic!("expected {method}, got {other:?}"),
    }
}

fn events(uac: &mut Uac) -> Vec<UacEvent> {
    std::iter::from_fn(|| uac.poll_event()).collect()
}

/// Fires every timer due up to `until`, returning what was sent.
fn run_until(uac: &mut Uac, until: Instant) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    while let Some(t) = uac.poll_timeout().filter(|&t| t <= until) {
        uac.handle_timeout(t);
        out.extend(sent(uac));
    }
    out
}

fn respond_to(req: &Request, status: u16, extra: &[(HeaderName, String)], body: &str) -> Message {
    let mut r = Response::for_request(req, status, (status > 100).then_some("gw-tag"));
    for (n, v) in extra {
        r.headers.push(n.clone(), v.clone());
    }
    if !body.is_empty() {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(body.to_string());
    }
    Message::Response(r)
}

/// The gateway's 200: its Contact and its SDP answer to our offer.
fn ok_200(invite: &Request, extra: &[(HeaderName, String)]) -> Message {
    let offer = SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    let local = LocalMedia {
        ip: "127.0.0.1".parse().unwrap(),
        port: 30000,
        session_id: 1,
        session_version: 1,
        ptime_ms: 20,
    };
    let answer = sdp::negotiate(&offer, &local).expect("the gateway accepts our offer");
    let mut headers = vec![(HeaderName::Contact, "<sip:127.0.0.1:5060>".to_string())];
    headers.extend_from_slice(extra);
    respond_to(invite, 200, &headers, &answer.answer)
}

fn server(kind: ChallengeKind, alg: Algorithm, qop: bool) -> DigestServer {
    let cfg = DigestConfig {
        realm: "sipbridge".into(),
        algorithms: vec![alg],
        qop,
        kind,
        ..DigestConfig::default()
    };
    DigestServer::new(cfg, [7; 32], 1, NonceClock::system(Instant::now()))
}

fn challenge(invite: &Request, digest: &DigestServer, now: Instant, stale: bool) -> Message {
    let kind = digest.config().kind;
    let name = HeaderName::parse(kind.challenge_header());
    let values: Vec<_> = digest
        .challenges(now, stale)
        .into_iter()
        .map(|v| (name.clone(), v))
        .collect();
    respond_to(invite, kind.status(), &values, "")
}

fn verify(
    digest: &mut DigestServer,
    now: Instant,
    invite: &Request,
    header: HeaderName,
) -> Result<(), AuthError> {
    let creds = invite
        .headers
        .get(&header)
        .unwrap_or_else(|| panic!("no {header} in {invite:?}"));
    let lookup = |u: &str| (u == USER).then(|| PASS.to_string());
    digest.verify(now, "INVITE", creds, lookup).map(|_| ())
}

fn start(law: Law) -> (Uac, Instant, SocketAddr, Request) {
    let t0 = Instant::now();
    let mut uac = Uac::new(t0, &cfg(law), 40000);
    let (to, invite) = only_request(&mut uac, Method::Invite);
    (uac, t0, to, invite)
}

#[test]
fn invite_is_shaped_like_twilios() {
    let (uac, _, to, inv) = start(Law::Mu);
    assert_eq!(to, target());
    assert_eq!(inv.uri, "sip:+447846855904@127.0.0.1:5060");
    assert_eq!(inv.to().unwrap().uri.to_string(), inv.uri);
    let from = inv.from().unwrap();
    assert_eq!(from.uri.to_string(), "sip:+447700900123@sip.twilio.com");
    let text = String::from_utf8(inv.to_bytes().to_vec()).unwrap();
    assert!(text.contains("From: \"+447700900123\" <sip:+447700900123@sip.twilio.com>;tag="));
    // Twilio's tag shape: digits_hex8_uuid.
    let tag = from.tag().unwrap();
    let parts: Vec<&str> = tag.split('_').collect();
    assert_eq!(parts.len(), 3, "{tag}");
    assert!(parts[0].len() == 8 && parts[0].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(parts[2].len(), 36);
    let call_id = inv.call_id().unwrap();
    assert_eq!(call_id, uac.call_id());
    let (hex, host) = call_id.split_once('@').unwrap();
    assert_eq!(host, "0.0.0.0");
    assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let cseq = inv.cseq().unwrap();
    assert_eq!(cseq.method, Method::Invite);
    assert!((2..=30_000).contains(&cseq.seq));
    let sid = inv.headers.get(&"X-Twilio-CallSid".into()).unwrap();
    assert!(sid.starts_with("CA") && sid.len() == 34);
    assert_eq!(
        inv.headers.get(&"X-Twilio-AccountSid".into()),
        Some("AC0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        inv.headers.get(&HeaderName::UserAgent),
        Some("Twilio Gateway")
    );
    assert!(inv
        .top_via()
        .unwrap()
        .branch
        .unwrap()
        .starts_with("z9hG4bK"));
    // Twilio's order: Via after Call-ID.
    assert!(text.find("Call-ID:").unwrap() < text.find("Via:").unwrap());
    let body = std::str::from_utf8(&inv.body).unwrap();
    for line in [
        "m=audio 40000 RTP/AVP 0 8 101",
        "c=IN IP4 127.0.0.1",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
    ] {
        assert!(body.contains(line), "{line} missing in {body}");
    }
    // No credentials on the first INVITE.
    assert!(inv.headers.get(&HeaderName::ProxyAuthorization).is_none());
}

#[test]
fn pcma_is_offered_first_when_asked() {
    let (_, _, _, inv) = start(Law::A);
    let body = std::str::from_utf8(&inv.body).unwrap();
    assert!(body.contains("m=audio 40000 RTP/AVP 8 0 101"), "{body}");
    match ok_200(&inv, &[]) {
        Message::Response(r) => assert_eq!(parse_answer(&r.body, None).unwrap().law, Law::A),
        _ => unreachable!(),
    }
}

#[test]
fn proxy_challenge_md5_qop_then_answer_hold_and_bye() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let mut digest = server(ChallengeKind::Proxy, Algorithm::Md5, true);
    uac.on_message(t0 + ms(5), respond_to(&inv1, 100, &[], ""), target());
    uac.on_message(t0 + ms(6), challenge(&inv1, &digest, t0, false), target());
    let out = sent(&mut uac);
    assert_eq!(
        out.len(),
        2,
        "ACK for the 407, then the new INVITE: {out:?}"
    );
    let Message::Request(ack) = &out[0].1 else {
        panic!()
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.top_branch(), inv1.headers.top_branch());
    assert_eq!(ack.to().unwrap().tag(), Some("gw-tag"));
    assert_eq!(ack.cseq().unwrap().seq, inv1.cseq().unwrap().seq);
    let Message::Request(inv2) = &out[1].1 else {
        panic!()
    };
    assert_eq!(inv2.method, Method::Invite);
    assert_eq!(inv2.call_id(), inv1.call_id());
    assert_eq!(inv2.headers.from_tag(), inv1.headers.from_tag());
    assert_eq!(inv2.cseq().unwrap().seq, inv1.cseq().unwrap().seq + 1);
    assert_ne!(inv2.headers.top_branch(), inv1.headers.top_branch());
    let creds = inv2.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(
        creds.contains("qop=auth") && creds.contains("nc=00000001"),
        "{creds}"
    );
    assert!(inv2.headers.get(&HeaderName::Authorization).is_none());
    verify(&mut digest, t0, inv2, HeaderName::ProxyAuthorization).expect("credentials verify");

    // 200: ACK with a new branch and the INVITE's CSeq, to the Contact.
    let t1 = t0 + ms(50);
    uac.on_message(t1, ok_200(inv2, &[]), target());
    let (to, ack2) = only_request(&mut uac, Method::Ack);
    assert_eq!(to, target());
    assert_eq!(ack2.uri, "sip:127.0.0.1:5060");
    assert_ne!(ack2.headers.top_branch(), inv2.headers.top_branch());
    assert_eq!(ack2.cseq().unwrap().seq, inv2.cseq().unwrap().seq);
    assert_eq!(ack2.to().unwrap().tag(), Some("gw-tag"));
    let params = SendParams {
        law: Law::Mu,
        payload_type: 0,
        remote: "127.0.0.1:30000".parse().unwrap(),
        srtp: None,
    };
    assert_eq!(events(&mut uac), vec![UacEvent::Answered(params)]);
    assert!(uac.result().is_none(), "no result while the call is up");

    // Held for 10 s, then BYE through the dialog.
    assert_eq!(uac.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    let out = run_until(&mut uac, t1 + Duration::from_secs(10));
    let Some((to, Message::Request(bye))) = out.into_iter().next() else {
        panic!("no BYE")
    };
    assert_eq!(to, target());
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.cseq().unwrap().seq, inv2.cseq().unwrap().seq + 1);
    assert_eq!(bye.to().unwrap().tag(), Some("gw-tag"));
    assert_eq!(bye.headers.from_tag(), inv1.headers.from_tag());
    assert_eq!(events(&mut uac), vec![UacEvent::MediaStop]);
    let t2 = t1 + Duration::from_secs(10) + ms(3);
    uac.on_message(t2, respond_to(&bye, 200, &[], ""), target());
    let r = uac.result().expect("result after the BYE's 200").clone();
    assert_eq!(r.outcome, Outcome::Status(200));
    assert_eq!(r.bye, ByeOutcome::Answered(200));
    assert_eq!(r.auth_rounds, 1);
    assert_eq!(r.invite_sent, t0);
    assert_eq!(r.answered, Some(t1));
    assert!(r.note.is_none());
}

#[test]
fn www_challenge_sha256_without_qop_is_answered_in_authorization() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let mut digest = server(ChallengeKind::Www, Algorithm::Sha256, false);
    uac.on_message(t0, challenge(&inv1, &digest, t0, false), target());
    let out = sent(&mut uac);
    let Message::Request(inv2) = &out[1].1 else {
        panic!()
    };
    let creds = inv2.headers.get(&HeaderName::Authorization).unwrap();
    assert!(
        creds.contains("algorithm=SHA-256") && !creds.contains("qop"),
        "{creds}"
    );
    assert!(inv2.headers.get(&HeaderName::ProxyAuthorization).is_none());
    verify(&mut digest, t0, inv2, HeaderName::Authorization).expect("credentials verify");
}

#[test]
fn stale_nonce_is_answered_again_without_counting_as_a_failure() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let mut digest = server(ChallengeKind::Proxy, Algorithm::Md5, true);
    uac.on_message(t0, challenge(&inv1, &digest, t0, false), target());
    let inv2 = match sent(&mut uac).pop() {
        Some((_, Message::Request(r))) => r,
        other => panic!("{other:?}"),
    };
    // Twice stale, then a normal re-challenge: still answered (the budgets are separate).
    let mut last = inv2;
    for stale in [true, true, false] {
        uac.on_message(t0, challenge(&last, &digest, t0, stale), target());
        last = match sent(&mut uac).pop() {
            Some((_, Message::Request(r))) if r.method == Method::Invite => r,
            other => panic!("stale={stale}: {other:?}"),
        };
        let creds = last.headers.get(&HeaderName::ProxyAuthorization).unwrap();
        assert!(
            creds.contains("nc=00000001"),
            "a new nonce restarts nc: {creds}"
        );
    }
    verify(&mut digest, t0, &last, HeaderName::ProxyAuthorization).unwrap();
    uac.on_message(t0 + ms(9), ok_200(&last, &[]), target());
    assert!(matches!(events(&mut uac)[..], [UacEvent::Answered(_)]));
    assert_eq!(uac.result.auth_rounds, 4);
}

#[test]
fn same_nonce_again_increments_nc() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let digest = server(ChallengeKind::Proxy, Algorithm::Md5, true);
    uac.on_message(t0, challenge(&inv1, &digest, t0, false), target());
    let inv2 = match sent(&mut uac).pop() {
        Some((_, Message::Request(r))) => r,
        other => panic!("{other:?}"),
    };
    // Challenged again with the nonce just used: the next request with it is nc=2.
    let creds = inv2.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    let nonce = creds
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let again =
        format!("Digest realm=\"sipbridge\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"");
    uac.on_message(
        t0,
        respond_to(&inv2, 407, &[(HeaderName::ProxyAuthenticate, again)], ""),
        target(),
    );
    let inv3 = match sent(&mut uac).pop() {
        Some((_, Message::Request(r))) => r,
        other => panic!("{other:?}"),
    };
    let creds = inv3.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(creds.contains("nc=00000002"), "{creds}");
}

#[test]
fn wrong_password_ends_with_the_servers_403() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let digest = server(ChallengeKind::Proxy, Algorithm::Md5, true);
    let mut last = inv1;
    for _ in 0..MAX_AUTH_ANSWERS {
        uac.on_message(t0, challenge(&last, &digest, t0, false), target());
        last = match sent(&mut uac).pop() {
            Some((_, Message::Request(r))) if r.method == Method::Invite => r,
            other => panic!("{other:?}"),
        };
    }
    uac.on_message(t0 + ms(1), respond_to(&last, 403, &[], ""), target());
    let (_, ack) = only_request(&mut uac, Method::Ack);
    assert_eq!(ack.headers.top_branch(), last.headers.top_branch());
    let r = uac.result().unwrap();
    assert_eq!(r.outcome, Outcome::Status(403));
    assert_eq!(r.auth_rounds, MAX_AUTH_ANSWERS);
    assert!(events(&mut uac).is_empty(), "no media for a refused call");
}

#[test]
fn endless_challenges_give_up_with_the_challenge_code() {
    let (mut uac, t0, _, inv1) = start(Law::Mu);
    let digest = server(ChallengeKind::Proxy, Algorithm::Md5, true);
    let mut last = inv1;
    for _ in 0..MAX_AUTH_ANSWERS {
        uac.on_message(t0, challenge(&last, &digest, t0, false), target());
        last = match sent(&mut uac).pop() {
            Some((_, Message::Request(r))) if r.method == Method::Invite => r,
            other => panic!("{other:?}"),
        };
    }
    uac.on_message(t0, challenge(&last, &digest, t0, false), target());
    let (_, ack) = only_request(&mut uac, Method::Ack);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    let r = uac.result().unwrap();
    assert_eq!(r.outcome, Outcome::Status(407));
    assert!(r.note.as_deref().unwrap().contains("refused"), "{r:?}");
}

#[test]
fn challenge_without_credentials_is_a_failure() {
    let t0 = Instant::now();
    let mut c = cfg(Law::Mu);
    c.credentials = None;
    let mut uac = Uac::new(t0, &c, 40000);
    let (_, inv) = only_request(&mut uac, Method::Invite);
    let digest = server(ChallengeKind::Www, Algorithm::Md5, true);
    uac.on_message(t0, challenge(&inv, &digest, t0, false), target());
    only_request(&mut uac, Method::Ack);
    assert_eq!(uac.result().unwrap().outcome, Outcome::Status(401));
}

#[test]
fn busy_486_is_acked_with_the_invites_branch_and_again_on_retransmission() {
    let (mut uac, t0, _, inv) = start(Law::Mu);
    uac.on_message(t0 + ms(1), respond_to(&inv, 100, &[], ""), target());
    assert!(sent(&mut uac).is_empty());
    let busy = respond_to(&inv, 486, &[], "");
    uac.on_message(t0 + ms(2), busy.clone(), target());
    let (to, ack) = only_request(&mut uac, Method::Ack);
    assert_eq!(to, target());
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(ack.headers.top_branch(), inv.headers.top_branch());
    assert_eq!(uac.result().unwrap().outcome, Outcome::Status(486));
    assert_eq!(uac.result().unwrap().bye, ByeOutcome::NotSent);
    uac.on_message(t0 + ms(600), busy, target());
    only_request(&mut uac, Method::Ack);
    assert!(events(&mut uac).is_empty());
    // Timer D (32 s) ends the transaction; then nothing is left.
    assert!(!uac.is_finished());
    run_until(&mut uac, t0 + Duration::from_secs(33));
    assert!(uac.is_finished());
}

#[test]
fn silence_is_a_timeout_after_retransmitting_the_invite() {
    let (mut uac, t0, _, _) = start(Law::Mu);
    let out = run_until(&mut uac, t0 + Duration::from_secs(40));
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; timer B fires at 32 s.
    assert_eq!(out.len(), 6, "{out:?}");
    assert!(out
        .iter()
        .all(|(to, m)| *to == target()
            && matches!(m, Message::Request(r) if r.method == Method::Invite)));
    let r = uac.result().unwrap();
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(uac.is_finished());
}

#[test]
fn ringing_too_long_is_a_timeout_and_cancelled() {
    let (mut uac, t0, _, inv) = start(Law::Mu);
    uac.on_message(t0 + ms(1), respond_to(&inv, 180, &[], ""), target());
    let out = run_until(&mut uac, t0 + Duration::from_secs(20));
    assert_eq!(out.len(), 1, "{out:?}");
    let Message::Request(cancel) = &out[0].1 else {
        panic!()
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.headers.top_branch(), inv.headers.top_branch());
    assert_eq!(cancel.cseq().unwrap().seq, inv.cseq().unwrap().seq);
    assert_eq!(uac.result().unwrap().outcome, Outcome::Timeout);
    let t1 = t0 + Duration::from_secs(20) + ms(2);
    uac.on_message(t1, respond_to(cancel, 200, &[], ""), target());
    uac.on_message(t1, respond_to(&inv, 487, &[], ""), target());
    only_request(&mut uac, Method::Ack);
    assert_eq!(uac.result().unwrap().outcome, Outcome::Timeout);
}

#[test]
fn hangup_before_any_response_cancels_once_the_invite_is_seen() {
    let (mut uac, t0, _, inv) = start(Law::Mu);
    uac.hangup(t0 + ms(1));
    assert!(sent(&mut uac).is_empty(), "no CANCEL before a provisional");
    uac.on_message(t0 + ms(2), respond_to(&inv, 100, &[], ""), target());
    let (_, cancel) = only_request(&mut uac, Method::Cancel);
    assert_eq!(cancel.headers.top_branch(), inv.headers.top_branch());
    uac.on_message(t0 + ms(3), respond_to(&inv, 487, &[], ""), target());
    only_request(&mut uac, Method::Ack);
    let r = uac.result().unwrap();
    assert_eq!(r.outcome, Outcome::Interrupted);
    assert!(r.note.as_deref().unwrap().contains("487"), "{r:?}");
}

fn answered(extra: &[(HeaderName, String)]) -> (Uac, Instant, Request) {
    let (mut uac, t0, _, inv) = start(Law::Mu);
    uac.on_message(t0 + ms(10), ok_200(&inv, extra), target());
    sent(&mut uac);
    events(&mut uac);
    (uac, t0 + ms(10), inv)
}

#[test]
fn bye_is_retransmitted_until_answered() {
    let (mut uac, t1, _) = answered(&[]);
    let hang = t1 + Duration::from_secs(10);
    let out = run_until(&mut uac, hang + ms(7600));
    // The BYE, then timer E: +0.5, +1.5, +3.5, +7.5 s.
    assert_eq!(out.len(), 5, "{out:?}");
    let Message::Request(bye) = &out[0].1 else {
        panic!()
    };
    assert!(out
        .iter()
        .all(|(_, m)| matches!(m, Message::Request(r) if r.headers.top_branch() == bye.headers.top_branch())));
    assert!(uac.result().is_none());
    uac.on_message(hang + ms(7700), respond_to(bye, 200, &[], ""), target());
    assert_eq!(uac.result().unwrap().bye, ByeOutcome::Answered(200));
}

#[test]
fn unanswered_bye_times_out() {
    let (mut uac, t1, _) = answered(&[]);
    let out = run_until(&mut uac, t1 + Duration::from_secs(60));
    // BYE plus retransmissions at 0.5, 1.5, 3.5, 7.5 then every 4 s until timer F (32 s).
    assert_eq!(out.len(), 11, "{out:?}");
    let r = uac.result().unwrap();
    assert_eq!(r.outcome, Outcome::Status(200));
    assert_eq!(r.bye, ByeOutcome::Timeout);
}

#[test]
fn retransmitted_200_is_acked_again() {
    let (mut uac, t1, inv) = answered(&[]);
    uac.on_message(t1 + ms(500), ok_200(&inv, &[]), target());
    only_request(&mut uac, Method::Ack);
    assert!(events(&mut uac).is_empty(), "not answered twice");
}

#[test]
fn record_route_is_followed_in_reverse() {
    let rr = [
        (
            HeaderName::RecordRoute,
            "<sip:10.0.0.2:5080;lr>".to_string(),
        ),
        (
            HeaderName::RecordRoute,
            "<sip:10.0.0.1:5090;lr>".to_string(),
        ),
    ];
    let (mut uac, t0, _, inv) = start(Law::Mu);
    uac.on_message(t0, ok_200(&inv, &rr), target());
    // The ACK goes to the last Record-Route entry: the hop nearest us.
    let (to, ack) = only_request(&mut uac, Method::Ack);
    let hop: SocketAddr = "10.0.0.1:5090".parse().unwrap();
    assert_eq!(to, hop);
    let routes: Vec<&str> = ack.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, ["<sip:10.0.0.1:5090;lr>", "<sip:10.0.0.2:5080;lr>"]);
    assert_eq!(ack.uri, "sip:127.0.0.1:5060");
    let out = run_until(&mut uac, t0 + Duration::from_secs(10));
    assert_eq!(out[0].0, hop, "the BYE follows the route too");
}

#[test]
fn far_end_bye_is_answered_and_ends_the_call() {
    let (mut uac, t1, inv) = answered(&[]);
    let bye = format!(
        "BYE sip:+447700900123@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgwbye\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        "<sip:+447846855904@127.0.0.1:5060>;tag=gw-tag",
        inv.headers.get(&HeaderName::From).unwrap(),
        inv.call_id().unwrap(),
    );
    let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    uac.on_message(t1 + ms(100), Message::parse(Bytes::from(bye)).unwrap(), src);
    let out = sent(&mut uac);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, src);
    assert!(matches!(&out[0].1, Message::Response(r) if r.status == 200));
    assert_eq!(events(&mut uac), vec![UacEvent::MediaStop]);
    let r = uac.result().unwrap();
    assert_eq!(
        (r.outcome, r.bye),
        (Outcome::Status(200), ByeOutcome::Remote)
    );
    // Nothing more happens at the hold time.
    assert!(run_until(&mut uac, t1 + Duration::from_secs(11)).is_empty());
}

#[test]
fn unusable_answer_is_hung_up_at_once() {
    let (mut uac, t0, _, inv) = start(Law::Mu);
    let bad = respond_to(
        &inv,
        200,
        &[(HeaderName::Contact, "<sip:127.0.0.1:5060>".into())],
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 3000 RTP/AVP 18\r\n",
    );
    uac.on_message(t0, bad, target());
    let out = sent(&mut uac);
    let methods: Vec<Method> = out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) => Some(r.method.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    assert_eq!(events(&mut uac), vec![UacEvent::MediaStop]);
    let Message::Request(bye) = &out[1].1 else {
        panic!()
    };
    uac.on_message(t0, respond_to(bye, 200, &[], ""), target());
    let r = uac.result().unwrap();
    assert!(r.note.as_deref().unwrap().contains("SDP"), "{r:?}");
}
