//! The torture messages of RFC 4475 and RFC 5118 (fixtures/sip/) fed whole to the front door,
//! from a source no trunk trusts: each gets the answer its section asks of a user agent, at
//! most one, and none starts a call. tests/sip_torture*.rs check what the parser makes of
//! them; this checks what the gateway does with them.

use super::tests::{dispatcher, outputs, src};
use super::*;
use crate::sip::testing::parse_response;

fn fixture(dir: &str, name: &str) -> Bytes {
    let path = format!(
        "{}/fixtures/sip/{dir}/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// The datagram the gateway sends back for one torture message, if any; fails on a second
/// output, an answer sent elsewhere, or a call started.
fn reply(dir: &str, name: &str) -> Option<Bytes> {
    let mut d = dispatcher(10);
    d.handle_datagram(Instant::now(), src(), fixture(dir, name));
    match outputs(&mut d).as_slice() {
        [] => None,
        [Output::Transmit { to, bytes }] => {
            assert_eq!(*to, src().into(), "{name}: answered elsewhere");
            Some(bytes.clone())
        }
        other => panic!("{name}: expected at most one answer, got {other:?}"),
    }
}

/// The answer to one torture message: `None` for silence.
fn answer(dir: &str, name: &str) -> Option<Response> {
    reply(dir, name).map(|bytes| parse_response(&bytes))
}

fn status(dir: &str, name: &str) -> Option<u16> {
    answer(dir, name).map(|r| r.status)
}

#[test]
fn rfc4475_application_layer_answers() {
    let expected = [
        // §3.2.1: a bare "z9hG4bK" branch is still a branch; the request is served.
        ("badbranch", Some(200)),
        // §3.3.1: no From, To or Call-ID: nothing a response could be built from.
        ("insuf", None),
        // §3.3.2/3: schemes we never serve.
        ("unkscm", Some(416)),
        ("novelsc", Some(416)),
        // §3.3.4, 3.3.7, 3.3.12-14: REGISTER; a gateway is not a registrar, and the method
        // is judged before anything in it (RFC 3261 8.2.1).
        ("unksm2", Some(405)),
        ("regaut01", Some(405)),
        ("cparam01", Some(405)),
        ("cparam02", Some(405)),
        ("regescrt", Some(405)),
        // §3.3.6: an offer that is not SDP.
        ("invut", Some(415)),
        // §3.3.8/9: ambiguous Call-ID, CSeq, From, To; two Content-Lengths.
        ("multi01", Some(400)),
        ("mcl01", Some(400)),
        // §3.3.10: a response nobody asked for is dropped, never sent to 255.255.255.255.
        ("bcast", None),
        // §3.3.11: Max-Forwards 0 stops proxies, not the user agent it reached.
        ("zeromf", Some(200)),
        // §3.3.15: the caller accepts no SDP in the answer.
        ("sdp01", Some(406)),
        // §3.4.1: RFC 2543 syntax is served (here: challenged, as any unknown caller is).
        ("inv2543", Some(407)),
    ];
    for (name, want) in expected {
        assert_eq!(status("rfc4475", name), want, "{name}");
    }
}

#[test]
fn refusals_say_what_would_have_worked() {
    let bext = answer("rfc4475", "bext01").unwrap();
    assert_eq!(bext.status, 420);
    // Proxy-Require is for proxies: only Require's tags are listed.
    assert_eq!(
        bext.headers.get(&HeaderName::Unsupported),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    for name in ["invut", "sdp01"] {
        let r = answer("rfc4475", name).unwrap();
        assert_eq!(
            r.headers.get(&HeaderName::Accept),
            Some("application/sdp"),
            "{name}"
        );
    }
    let register = answer("rfc4475", "cparam01").unwrap();
    assert_eq!(register.headers.get(&HeaderName::Allow), Some(ALLOW));
}

#[test]
fn final_answers_carry_a_to_tag() {
    // RFC 3261 8.2.6.2: every final response gets a To tag, so the ACK of a refused INVITE
    // can be matched (and absorbed) statelessly.
    for name in ["invut", "sdp01", "unkscm", "bext01", "zeromf", "cparam01"] {
        let r = answer("rfc4475", name).unwrap();
        assert!(r.to().unwrap().tag().is_some(), "{name}: no To tag");
    }
}

#[test]
fn rfc5118_answers() {
    let expected = [
        // §4.1, 4.3, 4.4: REGISTER, whatever its addresses.
        ("ipv6-good", Some(405)),
        ("port-ambiguous", Some(405)),
        ("port-unambiguous", Some(405)),
        // §4.2: "sip:2001:db8::10" is no URI; the method is judged first all the same.
        ("ipv6-bad", Some(405)),
        // §4.5, 4.7: a BYE for no dialog of ours.
        ("via-received-param-with-delim", Some(481)),
        ("mult-ip-in-header", Some(481)),
        ("via-received-param-no-delim", Some(200)),
        // §4.6, 4.8, 4.9: INVITEs with IPv6 in SDP: challenged like any stranger's.
        ("ipv6-in-sdp", Some(407)),
        ("mult-ip-in-sdp", Some(407)),
        ("ipv4-mapped-ipv6", Some(407)),
        // §4.10: both OPTIONS are served; the three-colon host is never sent to.
        ("ipv6-bug-abnf-3-colons", Some(200)),
        ("ipv6-correct-abnf-2-colons", Some(200)),
    ];
    for (name, want) in expected {
        assert_eq!(status("rfc5118", name), want, "{name}");
    }
}

#[test]
fn every_torture_message_gets_at_most_one_answer_and_no_call() {
    let mut count = 0;
    for dir in ["rfc4475", "rfc5118"] {
        let path = format!("{}/fixtures/sip/{dir}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            // An answer to a malformed message echoes its malformed Via (RFC 3261 8.2.6.2),
            // so it is counted, not parsed.
            let _ = reply(dir, &name);
            count += 1;
        }
    }
    assert_eq!(count, 49 + 12);
}
