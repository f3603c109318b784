use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::{Credentials, Route, Trunk};
use crate::sip::acl::AddressList;
use crate::sip::auth::{respond, Challenge, ChallengeKind, NonceClock};
use crate::sip::guard::{BanReason, Limits};
use crate::sip::testing::{invite, parse_response, request};

const TWILIO: &str = "54.171.127.192:5060";

pub(super) fn src() -> SocketAddr {
    TWILIO.parse().unwrap()
}

pub(super) fn dispatcher(max_calls: usize) -> Dispatcher {
    dispatcher_keyed(max_calls, [7; 32])
}

/// A node whose digest nonces are keyed with `nonce_key` (shared by the nodes of a cluster).
fn dispatcher_keyed(max_calls: usize, nonce_key: [u8; 32]) -> Dispatcher {
    dispatcher_with(max_calls, nonce_key, Limits::default())
}

fn dispatcher_with(max_calls: usize, nonce_key: [u8; 32], limits: Limits) -> Dispatcher {
    let trunks = vec![
        Trunk {
            name: "digest".into(),
            credentials: Some(Credentials {
                username: "ai-voice-agent".into(),
                password: "pw".into(),
            }),
            allowed: AddressList::parse(&[]).unwrap(),
            numbers: vec![],
            symmetric_rtp: false,
            media_encryption: Default::default(),
        },
        Trunk {
            name: "esip".into(),
            credentials: None,
            allowed: AddressList::parse(&["10.9.0.0/16".to_string()]).unwrap(),
            numbers: vec![],
            symmetric_rtp: false,
            media_encryption: Default::default(),
        },
    ];
    let routes = vec![Route {
        numbers: vec![],
        agent: "echo".into(),
    }];
    let router = Router::new(
        trunks,
        routes,
        "sipbridge",
        ChallengeKind::Proxy,
        nonce_key,
        NonceClock::system(Instant::now()),
    );
    Dispatcher::new(Instant::now(), router, max_calls, limits)
}

pub(super) fn outputs(d: &mut Dispatcher) -> Vec<Output> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn feed(d: &mut Dispatcher, now: Instant, from: SocketAddr, req: &Request) -> Vec<Output> {
    d.handle_datagram(now, from, req.to_bytes());
    outputs(d)
}

fn only_response(out: &[Output]) -> Response {
    match out {
        [Output::Transmit { bytes, .. }] => parse_response(bytes),
        other => panic!("expected one response, got {other:?}"),
    }
}

fn authorized(
    challenge: &Response,
    call_id: &str,
    branch: &str,
    password: &str,
    nc: u32,
) -> Request {
    let value = challenge
        .headers
        .get(&HeaderName::ProxyAuthenticate)
        .unwrap();
    let ch = Challenge::parse(value).unwrap();
    let creds = respond(
        &ch,
        "INVITE",
        "sip:+447846855904@gw.example.net",
        "ai-voice-agent",
        password,
        "c0ffee",
        nc,
    );
    invite(
        call_id,
        branch,
        2,
        &format!("Proxy-Authorization: {creds}\r\n"),
    )
}

#[test]
fn challenge_then_authorized_invite_starts_a_call() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let first = invite("call-1", "z9hG4bK1", 1, "");
    let challenge = only_response(&feed(&mut d, t0, src(), &first));
    assert_eq!(challenge.status, 407);

    // A retransmission of the first INVITE gets the same 407 and To tag (answered again,
    // statelessly: the nonce is a fresh one, and either answers the challenge).
    let again = only_response(&feed(&mut d, t0, src(), &first));
    assert_eq!(again.status, 407);
    assert_eq!(again.to().unwrap().tag(), challenge.to().unwrap().tag());
    // Its ACK is absorbed.
    let ack = request(
        "ACK",
        "call-1",
        "z9hG4bK1",
        1,
        challenge.to().unwrap().tag(),
        "",
        "",
    );
    assert!(feed(&mut d, t0, src(), &ack).is_empty());

    let second = authorized(&challenge, "call-1", "z9hG4bK2", "pw", 1);
    match feed(&mut d, t0, src(), &second).as_slice() {
        [Output::NewCall(n)] => {
            assert_eq!(n.call_id, "call-1");
            assert_eq!(n.admitted.trunk, "digest");
            assert_eq!(n.admitted.agent, "echo");
            assert_eq!(
                n.admitted.called, "+447846855904",
                "as the caller presented it"
            );
            assert_eq!(n.admitted.caller, "+447700900123");
        }
        other => panic!("expected a new call, got {other:?}"),
    }
    assert_eq!(d.active_calls(), 1);

    // In-dialog traffic now goes to the call.
    let bye = request("BYE", "call-1", "z9hG4bK3", 3, Some("x"), "", "");
    assert!(matches!(
        feed(&mut d, t0, src(), &bye).as_slice(),
        [Output::Route { .. }]
    ));
}

#[test]
fn wrong_password_gets_a_fresh_challenge_then_403() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let challenge = only_response(&feed(&mut d, t0, src(), &invite("c", "z9hG4bK1", 1, "")));
    let bad = authorized(&challenge, "c", "z9hG4bK2", "wrong", 1);
    let r = only_response(&feed(&mut d, t0, src(), &bad));
    assert_eq!(r.status, 407);
    let bad2 = authorized(&r, "c", "z9hG4bK3", "wrong", 1);
    assert_eq!(only_response(&feed(&mut d, t0, src(), &bad2)).status, 403);
    assert_eq!(d.active_calls(), 0);
}

#[test]
fn address_only_trunk_needs_no_challenge() {
    let mut d = dispatcher(10);
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let out = feed(
        &mut d,
        Instant::now(),
        esip,
        &invite("c", "z9hG4bK1", 1, ""),
    );
    assert!(matches!(out.as_slice(), [Output::NewCall(n)] if n.admitted.trunk == "esip"));
}

#[test]
fn full_or_draining_gateway_answers_503_with_retry_after() {
    let mut d = dispatcher(1);
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let t0 = Instant::now();
    feed(&mut d, t0, esip, &invite("a", "z9hG4bKa", 1, ""));
    let r = only_response(&feed(&mut d, t0, esip, &invite("b", "z9hG4bKb", 1, "")));
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("5"));
    d.call_ended("a");
    assert!(matches!(
        feed(&mut d, t0, esip, &invite("c", "z9hG4bKc", 1, "")).as_slice(),
        [Output::NewCall(_)]
    ));
    d.call_finished("c");
    d.set_draining(true);
    assert_eq!(
        only_response(&feed(&mut d, t0, esip, &invite("d", "z9hG4bKd", 1, ""))).status,
        503
    );
}

#[test]
fn calls_in_setup_are_capped_apart_from_calls_up() {
    let limits = Limits {
        max_setup: 2,
        ..Limits::default()
    };
    let mut d = dispatcher_with(10, [7; 32], limits);
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let t0 = Instant::now();
    let start =
        |d: &mut Dispatcher, id: &str| match feed(d, t0, esip, &invite(id, id, 1, "")).as_slice() {
            [Output::NewCall(_)] => None,
            out => Some(only_response(out).status),
        };
    assert_eq!(start(&mut d, "a"), None);
    assert_eq!(start(&mut d, "b"), None);
    assert_eq!(d.calls_in_setup(), 2);
    // A third while two connect their agents: 503, though max_calls has room.
    assert_eq!(start(&mut d, "c"), Some(503));
    // "a" is answered, "b" fails before answering: both leave setup, "a" still counts as up.
    d.call_answered("a");
    d.call_ended("b");
    d.call_ended("b");
    assert_eq!((d.calls_in_setup(), d.active_calls()), (0, 1));
    assert_eq!(start(&mut d, "d"), None);
    assert_eq!(start(&mut d, "e"), None);
    assert_eq!((d.calls_in_setup(), d.active_calls()), (2, 3));
    // An answer after the end (or twice) changes nothing.
    d.call_ended("d");
    d.call_answered("d");
    d.call_answered("a");
    assert_eq!((d.calls_in_setup(), d.active_calls()), (1, 2));
}

/// A load balancer (Kamailio's dispatcher) judges a node alive by its answer to OPTIONS: a
/// draining node says 503 so no new call is sent its way, while the calls it still carries
/// keep their in-dialog requests.
#[test]
fn a_draining_gateway_answers_options_503_but_serves_its_calls() {
    let mut d = dispatcher(10);
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let t0 = Instant::now();
    feed(&mut d, t0, esip, &invite("a", "z9hG4bKa", 1, ""));
    let probe = request("OPTIONS", "probe", "z9hG4bKp1", 1, None, "", "");
    assert_eq!(only_response(&feed(&mut d, t0, esip, &probe)).status, 200);

    d.set_draining(true);
    let probe = request("OPTIONS", "probe", "z9hG4bKp2", 2, None, "", "");
    let r = only_response(&feed(&mut d, t0, esip, &probe));
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("5"));
    let in_dialog = request("OPTIONS", "a", "z9hG4bKka", 2, Some("ours"), "", "");
    assert!(matches!(
        feed(&mut d, t0, esip, &in_dialog).as_slice(),
        [Output::Route { call_id, .. }] if call_id == "a"
    ));
    let bye = request("BYE", "a", "z9hG4bKbye", 3, Some("ours"), "", "");
    assert!(matches!(
        feed(&mut d, t0, esip, &bye).as_slice(),
        [Output::Route { call_id, .. }] if call_id == "a"
    ));

    d.set_draining(false);
    let probe = request("OPTIONS", "probe", "z9hG4bKp3", 3, None, "", "");
    assert_eq!(only_response(&feed(&mut d, t0, esip, &probe)).status, 200);
}

/// What a broken proxy in front can do to an INVITE gets a clear answer at once, never a call
/// whose dialog cannot work.
#[test]
fn mangled_record_route_and_too_many_hops_are_refused_clearly() {
    let mut d = dispatcher(10);
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let t0 = Instant::now();
    let mangled = invite("rr", "z9hG4bKrr", 1, "Record-Route: <sip:10.0.0.1;lr\r\n");
    let r = only_response(&feed(&mut d, t0, esip, &mangled));
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("Record-Route"), "{}", r.reason);

    let vias: String = (0..16)
        .map(|i| format!("Via: SIP/2.0/UDP 10.1.0.{i}:5060;branch=z9hG4bKhop{i}\r\n"))
        .collect();
    let looped = invite("hops", "z9hG4bKh", 1, &vias);
    assert_eq!(only_response(&feed(&mut d, t0, esip, &looped)).status, 483);
    let spent = invite("mf", "z9hG4bKmf", 1, "").to_bytes();
    let spent = String::from_utf8(spent.to_vec())
        .unwrap()
        .replace("Max-Forwards: 68", "Max-Forwards: 0");
    let spent = crate::sip::testing::parse_request(spent.as_bytes());
    assert_eq!(only_response(&feed(&mut d, t0, esip, &spent)).status, 483);
    assert_eq!(d.active_calls(), 0);
}

#[test]
fn out_of_dialog_requests() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let opt = request("OPTIONS", "o", "z9hG4bKo", 1, None, "", "");
    let r = only_response(&feed(&mut d, t0, src(), &opt));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::Allow), Some(ALLOW));

    let reg = request("REGISTER", "r", "z9hG4bKr", 1, None, "", "");
    let r = only_response(&feed(&mut d, t0, src(), &reg));
    assert_eq!(r.status, 405);
    assert!(r.headers.get(&HeaderName::Allow).is_some());

    let bye = request("BYE", "gone", "z9hG4bKb", 1, Some("t"), "", "");
    assert_eq!(only_response(&feed(&mut d, t0, src(), &bye)).status, 481);
    let cancel = request("CANCEL", "gone", "z9hG4bKc", 1, None, "", "");
    assert_eq!(only_response(&feed(&mut d, t0, src(), &cancel)).status, 481);

    let req = invite("x", "z9hG4bKx", 1, "Require: 100rel\r\n");
    let r = only_response(&feed(&mut d, t0, src(), &req));
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::Unsupported)),
        (420, Some("100rel"))
    );
}

#[test]
fn malformed_input_gets_400_or_nothing_and_never_panics() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let bad = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKq\r\n\
               From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: q\r\nCSeq: 1 INVITE\r\n\
               Content-Length: 9999\r\n\r\nshort";
    d.handle_datagram(t0, src(), Bytes::from(bad));
    let out = outputs(&mut d);
    assert_eq!(only_response(&out).status, 400);
    for junk in [
        &b"\r\n\r\n"[..],
        b"",
        b"\x00\xff garbage",
        b"SIP/2.0 200 OK\r\n\r\n",
    ] {
        d.handle_datagram(t0, src(), Bytes::copy_from_slice(junk));
        assert!(outputs(&mut d).is_empty());
    }
    // The Content-Length lie, the garbage and the header-less response; keep-alives are not malformed.
    assert_eq!(d.counters().malformed, 3);
}

/// A stranger's request is answered once per copy received and nothing is kept: no
/// retransmission (no reflection amplifier), no memory, the same answer (tag included) to a
/// retransmitted INVITE, and its ACK absorbed.
#[test]
fn rejections_are_stateless_one_answer_per_request() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let first = only_response(&feed(&mut d, t0, src(), &invite("c", "z9hG4bK1", 1, "")));
    let again = only_response(&feed(&mut d, t0, src(), &invite("c", "z9hG4bK1", 1, "")));
    assert_eq!((first.status, again.status), (407, 407));
    let tag = first.to().unwrap().tag().unwrap().to_string();
    assert_eq!(again.to().unwrap().tag(), Some(tag.as_str()), "same tag");
    let ack = request("ACK", "c", "z9hG4bK1", 1, Some(&tag), "", "");
    assert!(feed(&mut d, t0, src(), &ack).is_empty());
    // Another call's answer carries another tag.
    let other = only_response(&feed(&mut d, t0, src(), &invite("c2", "z9hG4bK2", 1, "")));
    assert_ne!(other.to().unwrap().tag(), Some(tag.as_str()));
    // Rejections of every kind, too: one answer each, whatever the clock does after.
    let opt = request("OPTIONS", "o", "z9hG4bKo", 1, None, "", "");
    let bye = request("BYE", "gone", "z9hG4bKb", 1, Some("t"), "", "");
    for req in [&opt, &bye, &opt] {
        assert_eq!(feed(&mut d, t0, src(), req).len(), 1);
    }
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    d.set_draining(true);
    assert_eq!(
        feed(&mut d, t0, esip, &invite("e", "z9hG4bKe", 1, "")).len(),
        1
    );
    d.handle_datagram(
        t0 + Duration::from_secs(60),
        src(),
        Bytes::from_static(b"\r\n"),
    );
    assert!(outputs(&mut d).is_empty(), "nothing is ever retransmitted");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn seed_messages() -> Vec<Vec<u8>> {
        let inv = invite("p", "z9hG4bKp", 1, "").to_bytes().to_vec();
        let bye = request("BYE", "p", "z9hG4bKq", 2, Some("t"), "", "")
            .to_bytes()
            .to_vec();
        let cancel = request("CANCEL", "p", "z9hG4bKp", 1, None, "", "")
            .to_bytes()
            .to_vec();
        vec![inv, bye, cancel]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever arrives on the SIP socket, mutated Twilio messages or plain garbage, the
        /// front door answers at most once per datagram, or drops it, without panicking.
        #[test]
        fn mutated_and_random_datagrams(
            which in 0usize..3,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut d = dispatcher(4);
            let t0 = Instant::now();
            let mut msg = seed_messages()[which].clone();
            for (at, byte) in flips {
                let i = at % msg.len();
                msg[i] = byte;
            }
            msg.truncate(cut % (msg.len() + 1));
            for datagram in [msg, garbage] {
                d.handle_datagram(t0, src(), Bytes::from(datagram));
                let answers = std::iter::from_fn(|| d.poll_output())
                    .filter(|o| matches!(o, Output::Transmit { .. }))
                    .count();
                prop_assert!(answers <= 1, "{answers} answers to one datagram");
            }
        }
    }
}

fn stats(d: &mut Dispatcher) -> Vec<Stat> {
    std::iter::from_fn(|| d.poll_stat()).collect()
}

#[test]
fn stats_count_final_invite_responses_and_auth_failures_by_reason() {
    use crate::metrics::AuthFailure::*;
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let challenge = only_response(&feed(&mut d, t0, src(), &invite("c1", "z9hG4bKa", 1, "")));
    assert_eq!(
        stats(&mut d),
        [Stat::AuthFailure(NoCredentials), Stat::InviteResponse(407)]
    );
    let wrong = authorized(&challenge, "c1", "z9hG4bKb", "nope", 1);
    feed(&mut d, t0, src(), &wrong);
    assert_eq!(
        stats(&mut d),
        [
            Stat::AuthFailure(WrongCredentials),
            Stat::InviteResponse(407)
        ]
    );
    let wrong = authorized(&challenge, "c1", "z9hG4bKc", "nope", 2);
    assert_eq!(only_response(&feed(&mut d, t0, src(), &wrong)).status, 403);
    assert_eq!(
        stats(&mut d),
        [
            Stat::AuthFailure(WrongCredentials),
            Stat::InviteResponse(403)
        ]
    );
    // An admitted call: nothing counted here (its task answers it).
    let good = authorized(&challenge, "c2", "z9hG4bKd", "pw", 1);
    assert!(matches!(
        feed(&mut d, t0, src(), &good).as_slice(),
        [Output::NewCall(_)]
    ));
    assert!(stats(&mut d).is_empty());
    d.set_draining(true);
    feed(&mut d, t0, src(), &invite("c3", "z9hG4bKe", 1, ""));
    assert_eq!(stats(&mut d), [Stat::InviteResponse(503)]);
    d.handle_datagram(t0, src(), Bytes::from_static(b"INVITE nonsense\r\n\r\n"));
    assert_eq!(stats(&mut d), [Stat::Malformed]);
}

#[test]
fn a_source_no_trunk_admits_counts_as_address_not_allowed() {
    let esip = Trunk {
        name: "esip".into(),
        credentials: None,
        allowed: AddressList::parse(&["10.9.0.0/16".to_string()]).unwrap(),
        numbers: vec![],
        symmetric_rtp: false,
        media_encryption: Default::default(),
    };
    let routes = vec![Route {
        numbers: vec![],
        agent: "echo".into(),
    }];
    let router = Router::new(
        vec![esip],
        routes,
        "sipbridge",
        ChallengeKind::Proxy,
        [7; 32],
        NonceClock::system(Instant::now()),
    );
    let mut d = Dispatcher::new(Instant::now(), router, 10, Limits::default());
    let r = only_response(&feed(
        &mut d,
        Instant::now(),
        src(),
        &invite("c", "z9hG4bKa", 1, ""),
    ));
    assert_eq!(r.status, 403);
    assert_eq!(
        stats(&mut d),
        [
            Stat::AuthFailure(crate::metrics::AuthFailure::AddressNotAllowed),
            Stat::InviteResponse(403)
        ]
    );
}

#[test]
fn a_reload_changes_passwords_but_keeps_nonces_valid() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let challenge = only_response(&feed(&mut d, t0, src(), &invite("r1", "z9hG4bKa", 1, "")));
    let trunk = Trunk {
        name: "digest2".into(),
        credentials: Some(Credentials {
            username: "ai-voice-agent".into(),
            password: "new-pw".into(),
        }),
        allowed: AddressList::parse(&[]).unwrap(),
        numbers: vec![],
        symmetric_rtp: false,
        media_encryption: Default::default(),
    };
    let routes = vec![Route {
        numbers: vec![],
        agent: "echo".into(),
    }];
    d.reload(vec![trunk], routes, 10, Limits::default());
    // The nonce from before the reload, answered with the new password.
    let retry = authorized(&challenge, "r1", "z9hG4bKb", "new-pw", 1);
    match feed(&mut d, t0, src(), &retry).as_slice() {
        [Output::NewCall(n)] => assert_eq!(n.admitted.trunk, "digest2"),
        other => panic!("expected a new call, got {other:?}"),
    }
    let old = authorized(&challenge, "r2", "z9hG4bKc", "pw", 1);
    assert_eq!(only_response(&feed(&mut d, t0, src(), &old)).status, 407);
}

/// Behind a round-robin balancer the retried INVITE reaches another node. With the shared
/// secret that node admits it; without, the right password earns a stale challenge (and the
/// metric says stale, not wrong password), never a 403.
#[test]
fn a_challenge_from_another_node_verifies_with_the_shared_secret_and_is_stale_without() {
    let t0 = Instant::now();
    let mut a = dispatcher_keyed(10, [1; 32]);
    let mut b = dispatcher_keyed(10, [1; 32]);
    let challenge = only_response(&feed(&mut a, t0, src(), &invite("x1", "z9hG4bKa", 1, "")));
    let retry = authorized(&challenge, "x1", "z9hG4bKb", "pw", 1);
    assert!(matches!(
        feed(&mut b, t0, src(), &retry).as_slice(),
        [Output::NewCall(n)] if n.call_id == "x1"
    ));

    let mut lone = dispatcher_keyed(10, [2; 32]);
    for branch in ["z9hG4bKc", "z9hG4bKd"] {
        let retry = authorized(&challenge, "x2", branch, "pw", 1);
        let r = only_response(&feed(&mut lone, t0, src(), &retry));
        assert_eq!(r.status, 407, "a fresh challenge, however often");
        let value = r.headers.get(&HeaderName::ProxyAuthenticate).unwrap();
        assert!(value.contains("stale=true"), "{value}");
        assert_eq!(
            stats(&mut lone),
            vec![
                Stat::AuthFailure(AuthFailure::StaleNonce),
                Stat::InviteResponse(407)
            ]
        );
    }
    // The wrong password over that foreign nonce is still a wrong password.
    let guess = authorized(&challenge, "x3", "z9hG4bKe", "guess", 1);
    assert_eq!(
        only_response(&feed(&mut lone, t0, src(), &guess)).status,
        407
    );
    assert_eq!(
        stats(&mut lone)[0],
        Stat::AuthFailure(AuthFailure::WrongCredentials)
    );
}

/// A stranger flooding INVITEs: its burst is answered, then it is banned with one stat (and one
/// log line) and every later packet is dropped unanswered, while an ESIP trunk's address
/// (trusted) sending far more is never limited.
#[test]
fn a_flooding_stranger_is_banned_and_a_trusted_trunk_never_is() {
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let flooder: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let mut answered = 0;
    for i in 0..1000 {
        let out = feed(
            &mut d,
            t0,
            flooder,
            &invite(&format!("f{i}"), "z9hG4bKf", 1, ""),
        );
        answered += out.len();
    }
    assert_eq!(answered, 40, "the burst, then nothing");
    let s = stats(&mut d);
    let banned = s.iter().filter(|s| matches!(s, Stat::Banned(..))).count();
    let dropped = s.iter().filter(|s| matches!(s, Stat::Dropped(_))).count();
    assert_eq!((banned, dropped), (1, 960));
    assert_eq!(d.bans(t0).len(), 1);
    assert!(d.lift_ban(t0, flooder.ip()));
    assert_eq!(
        feed(&mut d, t0, flooder, &invite("g", "z9hG4bKg", 1, "")).len(),
        1
    );

    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let opt = request("OPTIONS", "o", "z9hG4bKo", 1, None, "", "");
    for _ in 0..5000 {
        assert_eq!(feed(&mut d, t0, esip, &opt).len(), 1);
    }
}

/// Behind on the socket, the front door serves its trunks, its customers and its calls, and
/// drops strangers' datagrams unparsed; caught up, strangers are answered again.
#[test]
fn a_backlog_sheds_strangers_but_not_calls_trunks_or_customers() {
    use crate::sip::guard::Drop;
    let mut d = dispatcher(10);
    let t0 = Instant::now();
    let esip: SocketAddr = "10.9.1.1:5060".parse().unwrap();
    let stranger: SocketAddr = "192.0.2.7:5060".parse().unwrap();
    let customer: SocketAddr = "192.0.2.8:5060".parse().unwrap();
    // A call up through the trunk, and a customer who knows the password.
    assert!(matches!(
        feed(&mut d, t0, esip, &invite("up", "z9hG4bKu", 1, "")).as_slice(),
        [Output::NewCall(_)]
    ));
    let ch = only_response(&feed(&mut d, t0, customer, &invite("c", "z9hG4bKa", 1, "")));
    let ok = authorized(&ch, "c", "z9hG4bKb", "pw", 1);
    assert!(matches!(
        feed(&mut d, t0, customer, &ok).as_slice(),
        [Output::NewCall(_)]
    ));
    stats(&mut d);

    d.set_backlogged(true);
    assert!(feed(&mut d, t0, stranger, &invite("s", "z9hG4bKs", 1, "")).is_empty());
    assert_eq!(stats(&mut d), vec![Stat::Dropped(Drop::Shed)]);
    assert!(matches!(
        feed(&mut d, t0, esip, &invite("t", "z9hG4bKt", 1, "")).as_slice(),
        [Output::NewCall(_)]
    ));
    assert_eq!(
        only_response(&feed(
            &mut d,
            t0,
            customer,
            &invite("c2", "z9hG4bKc", 1, "")
        ))
        .status,
        407
    );
    // The BYE of the call that is up, from an address nobody knows: still routed.
    let bye = request("BYE", "up", "z9hG4bKbye", 2, Some("x"), "", "");
    assert!(matches!(
        feed(&mut d, t0, stranger, &bye).as_slice(),
        [Output::Route { call_id, .. }] if call_id == "up"
    ));

    d.set_backlogged(false);
    assert_eq!(
        only_response(&feed(&mut d, t0, stranger, &invite("s", "z9hG4bKs", 1, ""))).status,
        407
    );
}

/// Password guessing: ten wrong answers ban the source; then even the right password from it
/// is dropped, while the same password from elsewhere gets in. A customer (right password)
/// placing ten calls a second is never limited.
#[test]
fn a_password_guesser_is_banned_and_a_busy_customer_is_not() {
    let mut d = dispatcher(1000);
    let t0 = Instant::now();
    let guesser: SocketAddr = "192.0.2.66:5060".parse().unwrap();
    for i in 0..10u32 {
        let t = t0 + Duration::from_secs(u64::from(i) * 5);
        let ch = only_response(&feed(
            &mut d,
            t,
            guesser,
            &invite(&format!("g{i}"), "z9hG4bKa", 1, ""),
        ));
        let guess = authorized(&ch, &format!("g{i}"), "z9hG4bKb", &format!("guess{i}"), 1);
        assert_eq!(
            feed(&mut d, t, guesser, &guess).len(),
            1,
            "guess {i} answered"
        );
    }
    let t = t0 + Duration::from_secs(60);
    let s = stats(&mut d);
    assert!(
        s.iter()
            .any(|s| matches!(s, Stat::Banned(BanReason::AuthFailures, _))),
        "{s:?}"
    );
    assert!(feed(&mut d, t, guesser, &invite("g-ok", "z9hG4bKc", 1, "")).is_empty());
    assert_eq!(
        stats(&mut d),
        vec![Stat::Dropped(crate::sip::guard::Drop::Banned)]
    );

    let other: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let ch = only_response(&feed(&mut d, t, other, &invite("c0", "z9hG4bKa", 1, "")));
    let ok = authorized(&ch, "c0", "z9hG4bKb", "pw", 1);
    assert!(matches!(
        feed(&mut d, t, other, &ok).as_slice(),
        [Output::NewCall(_)]
    ));
    // Now a customer: 600 calls at 10 a second, each INVITE, 407, ACK, INVITE, BYE.
    for i in 1..600u32 {
        let t = t + Duration::from_millis(100 * u64::from(i));
        let id = format!("c{i}");
        let ch = only_response(&feed(&mut d, t, other, &invite(&id, "z9hG4bKa", 1, "")));
        let ack = request("ACK", &id, "z9hG4bKa", 1, ch.to().unwrap().tag(), "", "");
        assert!(feed(&mut d, t, other, &ack).is_empty());
        let retry = authorized(&ch, &id, "z9hG4bKb", "pw", 1);
        assert!(
            matches!(
                feed(&mut d, t, other, &retry).as_slice(),
                [Output::NewCall(_)]
            ),
            "call {i}"
        );
        d.call_finished(&id);
    }
    assert!(!stats(&mut d).iter().any(|s| matches!(s, Stat::Dropped(_))));
}
