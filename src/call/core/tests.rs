use std::time::Duration;

use super::*;
use crate::sip::testing::{invite, parse_request, parse_response, request, TWILIO_SDP};

const SRC: &str = "54.171.127.192:5060";

fn src() -> Peer {
    Peer::udp(SRC.parse().unwrap())
}

fn local() -> LocalContact {
    LocalContact {
        transport: Transport::Udp,
        via_host_port: "203.0.113.10:5060".into(),
        contact: Uri::parse("sip:203.0.113.10:5060").unwrap(),
    }
}

fn new_call(t0: Instant) -> CallCore {
    CallCore::new(
        t0,
        Timers::default(),
        invite("c1", "z9hG4bKinv", 7, ""),
        src(),
        local(),
    )
}

fn sent(core: &mut CallCore) -> Vec<(Destination, Bytes)> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn events(core: &mut CallCore) -> Vec<CallEvent> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn statuses(out: &[(Destination, Bytes)]) -> Vec<u16> {
    out.iter().map(|(_, b)| parse_response(b).status).collect()
}

fn answered(t0: Instant) -> CallCore {
    let mut core = new_call(t0);
    sent(&mut core);
    core.answer(t0, "v=0\r\n".into());
    sent(&mut core);
    core
}

fn ack(core: &CallCore, cseq: u32) -> Message {
    Message::Request(request(
        "ACK",
        "c1",
        "z9hG4bKack",
        cseq,
        Some(core.local_tag()),
        "",
        "",
    ))
}

fn advance_to(core: &mut CallCore, until: Instant) -> Vec<(Instant, Destination, Bytes)> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_timeout() {
        if t > until {
            break;
        }
        core.handle_timeout(t);
        out.extend(sent(core).into_iter().map(|(d, b)| (t, d, b)));
    }
    out
}

#[test]
fn trying_goes_out_at_once_to_the_source() {
    let mut core = new_call(Instant::now());
    let out = sent(&mut core);
    assert_eq!(statuses(&out), vec![100]);
    assert_eq!(out[0].0, Destination::Addr(src()));
}

#[test]
fn ok_is_retransmitted_until_ack_with_contact_and_sdp() {
    let t0 = Instant::now();
    let mut core = new_call(t0);
    sent(&mut core);
    core.answer(t0, "v=0\r\n".into());
    let out = sent(&mut core);
    let ok = parse_response(&out[0].1);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.to().unwrap().tag(), Some(core.local_tag()));
    assert_eq!(
        ok.headers.get(&HeaderName::Contact),
        Some("<sip:203.0.113.10:5060>")
    );
    assert_eq!(
        ok.headers.get(&HeaderName::ContentType),
        Some("application/sdp")
    );
    assert_eq!(&ok.body[..], b"v=0\r\n");
    assert_eq!(ok.vias().len(), 2, "both of Twilio's Vias are echoed");

    let retx = advance_to(&mut core, t0 + Duration::from_millis(3600));
    let times: Vec<u128> = retx.iter().map(|(t, ..)| (*t - t0).as_millis()).collect();
    assert_eq!(times, vec![500, 1500, 3500]);

    core.handle_message(t0 + Duration::from_secs(4), ack(&core, 7), src());
    assert_eq!(events(&mut core), vec![CallEvent::Confirmed]);
    assert!(advance_to(&mut core, t0 + Duration::from_secs(20)).is_empty());
}

/// RFC 3261 §12.1.1: every Record-Route of the INVITE, in order and with all its parameters,
/// goes into the responses that establish the dialog (the 180 with our tag and the 200).
#[test]
fn record_route_is_copied_into_the_180_and_the_200() {
    let t0 = Instant::now();
    let extra = "Record-Route: <sip:10.0.0.1:5070;lr;did=a.b>, <sip:10.0.0.2;lr;r2=on>\r\n\
                 Record-Route: <sip:[2001:db8::1]:5080;transport=udp;lr>\r\n";
    let mut core = CallCore::new(
        t0,
        Timers::default(),
        invite("c1", "z9hG4bKinv", 7, extra),
        src(),
        local(),
    );
    let trying = parse_response(&sent(&mut core)[0].1);
    assert_eq!(trying.record_routes(), vec![], "a 100 establishes nothing");
    let want = vec![
        "<sip:54.171.127.192:5060;lr;ftag=f1>",
        "<sip:10.0.0.1:5070;lr;did=a.b>",
        "<sip:10.0.0.2;lr;r2=on>",
        "<sip:[2001:db8::1]:5080;transport=udp;lr>",
    ];
    let values = |r: &Response| -> Vec<String> {
        r.headers
            .get_all(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect()
    };
    core.ring(t0);
    let ringing = parse_response(&sent(&mut core)[0].1);
    assert_eq!(ringing.status, 180);
    assert_eq!(values(&ringing), want);
    core.answer(t0, "v=0\r\n".into());
    let ok = parse_response(&sent(&mut core)[0].1);
    assert_eq!(ok.status, 200);
    assert_eq!(values(&ok), want);
    // The dialog's own route set, for our BYE, is the same list in the same order.
    core.hangup(t0, HangupCause::Normal, "test");
    let bye = parse_request(&sent(&mut core)[0].1);
    let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, want);
}

#[test]
fn lost_ack_hangs_up_through_the_record_route() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    let out = advance_to(&mut core, t0 + Duration::from_secs(33));
    let byes: Vec<_> = out
        .iter()
        .filter(|(_, _, b)| b.starts_with(b"BYE"))
        .collect();
    assert!(!byes.is_empty(), "no BYE after timer H");
    let (_, dest, bytes) = byes[0];
    // Sent to the Record-Route hop, never to Twilio's private Contact.
    assert_eq!(
        dest,
        &Destination::Uri(Uri::parse("sip:54.171.127.192:5060;lr;ftag=f1").unwrap())
    );
    let bye = parse_request(bytes);
    assert!(
        bye.uri.contains("172.18.4.191"),
        "Request-URI is the remote target"
    );
    assert!(bye
        .headers
        .get(&HeaderName::Route)
        .unwrap()
        .contains("54.171.127.192"));
    assert_eq!(
        events(&mut core),
        vec![CallEvent::Ended {
            reason: EndReason::AckTimeout
        }]
    );
}

/// The same INVITE on another branch (a proxy loop or fork) is a merged request: 482, and the
/// call goes on.
#[test]
fn the_invite_looping_back_on_another_branch_gets_482() {
    let t0 = Instant::now();
    let mut core = new_call(t0);
    sent(&mut core);
    let looped = invite("c1", "z9hG4bKloop", 7, "");
    core.handle_message(t0, Message::Request(looped), src());
    assert_eq!(statuses(&sent(&mut core)), vec![482]);
    core.answer(t0, "v=0\r\n".into());
    assert_eq!(statuses(&sent(&mut core)), vec![200]);
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let t0 = Instant::now();
    let mut core = new_call(t0);
    sent(&mut core);
    let cancel = request("CANCEL", "c1", "z9hG4bKinv", 7, None, "", "");
    core.handle_message(t0, Message::Request(cancel), src());
    let out = sent(&mut core);
    let got: Vec<(u16, Method)> = out
        .iter()
        .map(|(_, b)| {
            let r = parse_response(b);
            (r.status, r.cseq().unwrap().method)
        })
        .collect();
    assert_eq!(got, vec![(200, Method::Cancel), (487, Method::Invite)]);
    assert_eq!(
        events(&mut core),
        vec![CallEvent::Ended {
            reason: EndReason::CallerCancel
        }]
    );
    // The ACK for the 487 (same branch) finishes the transaction.
    let ack487 = request("ACK", "c1", "z9hG4bKinv", 7, Some(core.local_tag()), "", "");
    core.handle_message(t0, Message::Request(ack487), src());
    advance_to(&mut core, t0 + Duration::from_secs(40));
    assert!(core.is_finished());
}

#[test]
fn cancel_racing_the_200_changes_nothing() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    let cancel = request("CANCEL", "c1", "z9hG4bKinv", 7, None, "", "");
    core.handle_message(t0, Message::Request(cancel), src());
    assert_eq!(statuses(&sent(&mut core)), vec![200]);
    assert!(events(&mut core).is_empty());
    assert!(core.is_answered());
}

#[test]
fn caller_bye_is_answered_and_its_retransmission_absorbed() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    core.handle_message(t0, ack(&core, 7), src());
    events(&mut core);
    let bye = request("BYE", "c1", "z9hG4bKbye", 8, Some(core.local_tag()), "", "");
    core.handle_message(t0, Message::Request(bye.clone()), src());
    assert_eq!(statuses(&sent(&mut core)), vec![200]);
    assert_eq!(
        events(&mut core),
        vec![CallEvent::Ended {
            reason: EndReason::CallerBye
        }]
    );
    core.handle_message(t0, Message::Request(bye), src());
    assert_eq!(statuses(&sent(&mut core)), vec![200]);
    assert!(events(&mut core).is_empty());
    advance_to(&mut core, t0 + Duration::from_secs(40));
    assert!(core.is_finished());
}

#[test]
fn in_dialog_options_info_and_wrong_tags() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    let tag = core.local_tag().to_string();
    let opt = request("OPTIONS", "c1", "z9hG4bKo", 8, Some(&tag), "", "");
    core.handle_message(t0, Message::Request(opt), src());
    let out = sent(&mut core);
    assert_eq!(statuses(&out), vec![200]);
    assert!(parse_response(&out[0].1)
        .headers
        .get(&HeaderName::Allow)
        .is_some());

    let info = request("INFO", "c1", "z9hG4bKi", 9, Some(&tag), "", "");
    core.handle_message(t0, Message::Request(info), src());
    let out = sent(&mut core);
    assert_eq!(statuses(&out), vec![405]);
    assert_eq!(
        parse_response(&out[0].1).headers.get(&HeaderName::Allow),
        Some(ALLOW)
    );

    let stranger = request("BYE", "c1", "z9hG4bKs", 10, Some("not-ours"), "", "");
    core.handle_message(t0, Message::Request(stranger), src());
    assert_eq!(statuses(&sent(&mut core)), vec![481]);

    let old = request("OPTIONS", "c1", "z9hG4bKold", 3, Some(&tag), "", "");
    core.handle_message(t0, Message::Request(old), src());
    assert_eq!(
        statuses(&sent(&mut core)),
        vec![500],
        "CSeq lower than the last one"
    );
    assert!(core.is_answered());
}

#[test]
fn reinvite_reports_the_offer_and_sends_the_answer() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    let tag = core.local_tag().to_string();
    let hold = TWILIO_SDP.replace("a=sendrecv", "a=sendonly");
    let re = request("INVITE", "c1", "z9hG4bKre", 8, Some(&tag), "", &hold);
    core.handle_message(t0, Message::Request(re), src());
    assert_eq!(statuses(&sent(&mut core)), vec![100]);
    match events(&mut core).as_slice() {
        [CallEvent::ReOffer { sdp }] => {
            assert!(std::str::from_utf8(sdp).unwrap().contains("sendonly"))
        }
        other => panic!("expected a re-offer, got {other:?}"),
    }
    core.answer_reinvite(t0, Ok("v=0\r\na=recvonly\r\n".into()));
    let out = sent(&mut core);
    let ok = parse_response(&out[0].1);
    assert_eq!((ok.status, ok.cseq().unwrap().seq), (200, 8));
    assert!(std::str::from_utf8(&ok.body).unwrap().contains("recvonly"));
    assert!(core.is_answered());
}

/// Hold, then resume a second later: the first re-INVITE was answered and ACKed, so its
/// transaction lingering in RFC 6026's Accepted state (timer L) is no reason to refuse the
/// second one.
#[test]
fn resume_after_hold_is_accepted_while_the_hold_transaction_lingers() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    core.handle_message(t0, ack(&core, 7), src());
    events(&mut core);
    let tag = core.local_tag().to_string();
    let hold = TWILIO_SDP.replace("a=sendrecv", "a=sendonly");
    let re = request("INVITE", "c1", "z9hG4bKhold", 8, Some(&tag), "", &hold);
    core.handle_message(t0, Message::Request(re), src());
    assert!(matches!(events(&mut core)[..], [CallEvent::ReOffer { .. }]));
    core.answer_reinvite(t0, Ok("v=0\r\na=recvonly\r\n".into()));
    assert_eq!(statuses(&sent(&mut core)), vec![100, 200]);
    let t1 = t0 + Duration::from_millis(100);
    core.handle_message(t1, ack(&core, 8), src());
    assert!(advance_to(&mut core, t1 + Duration::from_millis(900)).is_empty());

    let t2 = t0 + Duration::from_secs(1);
    let resume = request(
        "INVITE",
        "c1",
        "z9hG4bKresume",
        9,
        Some(&tag),
        "",
        TWILIO_SDP,
    );
    core.handle_message(t2, Message::Request(resume), src());
    assert_eq!(statuses(&sent(&mut core)), vec![100]);
    assert!(matches!(events(&mut core)[..], [CallEvent::ReOffer { .. }]));
    core.answer_reinvite(t2, Ok("v=0\r\na=sendrecv\r\n".into()));
    let ok = parse_response(&sent(&mut core)[0].1);
    assert_eq!((ok.status, ok.cseq().unwrap().seq), (200, 9));
    assert!(std::str::from_utf8(&ok.body).unwrap().contains("sendrecv"));

    // The hold's INVITE arriving late again is absorbed (it was ACKed); the resume's 200 is
    // retransmitted until its own ACK, which the hold's ACK is not.
    let late = request("INVITE", "c1", "z9hG4bKhold", 8, Some(&tag), "", &hold);
    core.handle_message(t2, Message::Request(late), src());
    assert!(sent(&mut core).is_empty());
    core.handle_message(t2, ack(&core, 8), src());
    let retx = advance_to(&mut core, t2 + Duration::from_millis(600));
    assert_eq!(
        statuses(&retx.into_iter().map(|(_, d, b)| (d, b)).collect::<Vec<_>>()),
        vec![200]
    );
    core.handle_message(t2 + Duration::from_millis(700), ack(&core, 9), src());
    assert!(advance_to(&mut core, t2 + Duration::from_secs(10)).is_empty());
    assert!(core.is_answered());
}

/// RFC 3261 §14.2: a second re-INVITE while the first has no final response gets 500 with a
/// Retry-After of 0-10 s (491 is only for glare with a re-INVITE of ours).
#[test]
fn reinvite_while_one_is_unanswered_gets_500_with_retry_after() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    core.handle_message(t0, ack(&core, 7), src());
    let tag = core.local_tag().to_string();
    let first = request("INVITE", "c1", "z9hG4bKre1", 8, Some(&tag), "", TWILIO_SDP);
    core.handle_message(t0, Message::Request(first), src());
    sent(&mut core);
    events(&mut core);
    let second = request("INVITE", "c1", "z9hG4bKre2", 9, Some(&tag), "", TWILIO_SDP);
    core.handle_message(t0, Message::Request(second), src());
    let out = sent(&mut core);
    let r = parse_response(&out[0].1);
    assert_eq!((r.status, r.cseq().unwrap().seq), (500, 9));
    let after: u32 = r
        .headers
        .get(&HeaderName::RetryAfter)
        .unwrap()
        .parse()
        .unwrap();
    assert!(after <= 10);
    assert!(
        events(&mut core).is_empty(),
        "no second offer reaches the task"
    );
    // The first is still the one being answered.
    core.answer_reinvite(t0, Ok("v=0\r\n".into()));
    let ok = parse_response(&sent(&mut core)[0].1);
    assert_eq!((ok.status, ok.cseq().unwrap().seq), (200, 8));
}

#[test]
fn ending_the_call_answers_a_pending_reinvite_with_487() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    let tag = core.local_tag().to_string();
    let re = request("INVITE", "c1", "z9hG4bKre", 8, Some(&tag), "", TWILIO_SDP);
    core.handle_message(t0, Message::Request(re), src());
    sent(&mut core);
    events(&mut core);
    let bye = request("BYE", "c1", "z9hG4bKbye", 9, Some(&tag), "", "");
    core.handle_message(t0, Message::Request(bye), src());
    let got: Vec<(u16, Method)> = sent(&mut core)
        .iter()
        .map(|(_, b)| {
            let r = parse_response(b);
            (r.status, r.cseq().unwrap().method)
        })
        .collect();
    assert!(got.contains(&(200, Method::Bye)), "{got:?}");
    assert!(got.contains(&(487, Method::Invite)), "{got:?}");
    advance_to(&mut core, t0 + Duration::from_secs(40));
    assert!(core.is_finished());
}

#[test]
fn local_hangup_sends_bye_and_finishes_on_200() {
    let t0 = Instant::now();
    let mut core = answered(t0);
    core.handle_message(t0, ack(&core, 7), src());
    events(&mut core);
    core.hangup(t0, HangupCause::Normal, "agent ended");
    let out = sent(&mut core);
    assert_eq!(out.len(), 1);
    let bye = parse_request(&out[0].1);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.to().unwrap().tag(), Some("f1"));
    assert_eq!(
        bye.headers.get(&HeaderName::Reason),
        Some("Q.850;cause=16;text=\"agent ended\"")
    );
    let ok = Response::for_request(&bye, 200, None);
    core.handle_message(t0, Message::Response(ok), src());
    advance_to(&mut core, t0 + Duration::from_secs(40));
    assert!(core.is_finished());
}

/// On a lossy link our BYE is retransmitted (timer E, doubling from T1 up to T2) until a
/// response comes; a 200 that is lost every time ends the transaction at timer F (64 T1), so
/// the call is finished either way and never stays listed.
#[test]
fn our_bye_retransmits_until_answered_or_timer_f() {
    for answered_after in [Some(3), None] {
        let t0 = Instant::now();
        let mut core = answered(t0);
        core.handle_message(t0, ack(&core, 7), src());
        events(&mut core);
        core.hangup(t0, HangupCause::Normal, "agent ended");
        let bye = parse_request(&sent(&mut core)[0].1);
        let mut retransmitted = Vec::new();
        while let Some(t) = core.poll_timeout() {
            core.handle_timeout(t);
            for (_, b) in sent(&mut core) {
                let again = parse_request(&b);
                assert_eq!(again.method, Method::Bye);
                assert_eq!(
                    again.headers.top_branch(),
                    bye.headers.top_branch(),
                    "the same transaction"
                );
                retransmitted.push(t - t0);
            }
            if answered_after == Some(retransmitted.len()) {
                let ok = Response::for_request(&bye, 200, None);
                core.handle_message(t, Message::Response(ok), src());
            }
            if core.is_finished() || t - t0 > Duration::from_secs(60) {
                break;
            }
        }
        let ms: Vec<u128> = retransmitted.iter().map(|d| d.as_millis()).collect();
        match answered_after {
            Some(n) => assert_eq!(ms, [500, 1500, 3500][..n], "{ms:?}"),
            None => {
                // 0.5, 1.5, 3.5, 7.5, then every T2 (4 s) until 32 s.
                assert_eq!(ms[..5], [500, 1500, 3500, 7500, 11500], "{ms:?}");
                assert!(ms.iter().all(|&t| t < 32_000), "{ms:?}");
                assert_eq!(ms.len(), 10, "{ms:?}");
            }
        }
        assert!(core.is_finished(), "{answered_after:?}: finished");
    }
}

#[test]
fn the_reason_header_names_the_cause() {
    assert_eq!(
        HangupCause::AgentFailure.reason_header("EVI connection lost (reset)"),
        "Q.850;cause=41;text=\"EVI connection lost (reset)\""
    );
    assert_eq!(
        HangupCause::Timeout.reason_header("say \"hi\"\\\r\n\u{e9}"),
        "Q.850;cause=102;text=\"say 'hi''???\""
    );
    let long = HangupCause::Normal.reason_header(&"x".repeat(500));
    assert_eq!(long.len(), "Q.850;cause=16;text=\"\"".len() + 120);
}

#[test]
fn retransmitted_invite_gets_the_last_response_again() {
    let t0 = Instant::now();
    let mut core = new_call(t0);
    sent(&mut core);
    core.ring(t0);
    assert_eq!(statuses(&sent(&mut core)), vec![180]);
    let again = invite("c1", "z9hG4bKinv", 7, "");
    core.handle_message(t0, Message::Request(again), src());
    assert_eq!(statuses(&sent(&mut core)), vec![180]);
}

#[test]
fn rejection_is_a_final_error_and_ends_the_call() {
    let t0 = Instant::now();
    let mut core = new_call(t0);
    sent(&mut core);
    core.reject(t0, 488, None);
    assert_eq!(statuses(&sent(&mut core)), vec![488]);
    assert_eq!(
        events(&mut core),
        vec![CallEvent::Ended {
            reason: EndReason::Rejected(488)
        }]
    );
    // Without an ACK, timer G retransmits, then timer H gives up.
    let retx = advance_to(&mut core, t0 + Duration::from_secs(40));
    assert!(retx.len() >= 3);
    assert!(core.is_finished());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any sequence of in-dialog requests, responses and local actions, in any order and
        /// with any tags and CSeqs, leaves the call core without panics and finishing.
        #[test]
        fn any_sequence_of_inputs(ops in proptest::collection::vec((0u8..9, 0u32..12, any::<bool>()), 0..24)) {
            let t0 = Instant::now();
            let mut core = new_call(t0);
            let mut now = t0;
            for (op, cseq, ours) in ops {
                now += Duration::from_millis(137);
                let tag = if ours { core.local_tag().to_string() } else { "x".into() };
                let req = |m: &str| request(m, "c1", &format!("z9hG4bK{op}{cseq}"), cseq, Some(&tag), "", "");
                match op {
                    0 => core.answer(now, "v=0\r\n".into()),
                    1 => core.handle_message(now, Message::Request(req("BYE")), src()),
                    2 => core.handle_message(now, Message::Request(req("ACK")), src()),
                    3 => core.handle_message(now, Message::Request(request("CANCEL", "c1", "z9hG4bKinv", 7, None, "", "")), src()),
                    4 => core.handle_message(now, Message::Request(request("INVITE", "c1", &format!("z9hG4bKre{cseq}"), cseq, Some(&tag), "", TWILIO_SDP)), src()),
                    5 => core.answer_reinvite(now, if ours { Ok("v=0\r\n".into()) } else { Err(488) }),
                    6 => core.hangup(now, HangupCause::AgentFailure, "test"),
                    7 => {
                        let bye = req("BYE");
                        core.handle_message(now, Message::Response(Response::for_request(&bye, 200, None)), src());
                    }
                    _ => core.handle_timeout(now),
                }
                sent(&mut core);
                events(&mut core);
            }
            core.hangup(now, HangupCause::Timeout, "end");
            let mut steps = 0;
            while let Some(t) = core.poll_timeout() {
                core.handle_timeout(t.max(now));
                sent(&mut core);
                events(&mut core);
                steps += 1;
                prop_assert!(steps < 1000, "timers never run down");
            }
            prop_assert!(core.is_finished());
        }
    }
}
