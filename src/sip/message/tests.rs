use bytes::Bytes;

use super::*;
use crate::sip::uri::Uri;

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()))
}

fn req(s: &str) -> Request {
    match parse(s) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

const OPTIONS: &str = "OPTIONS sip:gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:gw.example.net>\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 7 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn method_round_trips_and_is_case_sensitive() {
    for m in [
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE",
    ] {
        assert_eq!(Method::parse(m).as_str(), m);
        assert_ne!(Method::parse(m), Method::Other(m.to_string()));
    }
    assert_eq!(Method::parse("invite"), Method::Other("invite".into()));
    assert_eq!(Method::Refer.to_string(), "REFER");
}

#[test]
fn header_names_are_case_insensitive_with_compact_forms() {
    let cases = [
        ("v", HeaderName::Via),
        ("VIA", HeaderName::Via),
        ("i", HeaderName::CallId),
        ("call-id", HeaderName::CallId),
        ("f", HeaderName::From),
        ("T", HeaderName::To),
        ("m", HeaderName::Contact),
        ("l", HeaderName::ContentLength),
        ("c", HeaderName::ContentType),
        ("k", HeaderName::Supported),
        ("s", HeaderName::Subject),
        ("o", HeaderName::Event),
        ("r", HeaderName::ReferTo),
        ("www-authenticate", HeaderName::WwwAuthenticate),
        ("PROXY-AUTHORIZATION", HeaderName::ProxyAuthorization),
        ("cseq", HeaderName::CSeq),
    ];
    for (text, want) in cases {
        assert_eq!(HeaderName::parse(text), want, "{text}");
    }
    assert_eq!(HeaderName::parse("u").as_str(), "Allow-Events");
    assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    assert_eq!(HeaderName::WwwAuthenticate.as_str(), "WWW-Authenticate");
    assert_eq!(
        HeaderName::parse("X-Twilio-CallSid").as_str(),
        "X-Twilio-CallSid"
    );
}

#[test]
fn other_header_names_compare_and_hash_ignoring_case() {
    use std::collections::HashSet;
    let a = HeaderName::Other("X-Twilio-CallSid".into());
    let b = HeaderName::parse("x-twilio-callsid");
    assert_eq!(a, b);
    assert_eq!(HeaderName::Other("call-id".into()), HeaderName::CallId);
    assert_ne!(
        HeaderName::Other("X-A".into()),
        HeaderName::Other("X-B".into())
    );
    assert_ne!(HeaderName::Via, HeaderName::Route);
    let set: HashSet<HeaderName> = [a, HeaderName::Other("CALL-ID".into())].into();
    assert!(set.contains(&b));
    assert!(set.contains(&HeaderName::CallId));
}

#[test]
fn parses_a_minimal_request() {
    let r = req(OPTIONS);
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.uri, "sip:gw.example.net");
    assert_eq!(r.call_id(), Some("c1@192.0.2.1"));
    assert_eq!(
        r.cseq(),
        Some(CSeq {
            seq: 7,
            method: Method::Options
        })
    );
    assert_eq!(r.max_forwards(), Some(70));
    assert_eq!(r.headers.len(), 7);
    assert!(r.body.is_empty());
    let via = r.top_via().unwrap();
    assert_eq!(via.branch.as_deref(), Some("z9hG4bKabc"));
    assert_eq!(via.rport, Some(None));
    assert_eq!(via.port, Some(5060));
    assert_eq!(r.headers.top_branch(), Some("z9hG4bKabc"));
    assert_eq!(r.headers.from_tag(), Some("f1"));
    assert_eq!(r.headers.to_tag(), None);
}

#[test]
fn header_values_are_slices_of_the_datagram() {
    let data = Bytes::from(OPTIONS);
    let Message::Request(r) = Message::parse(data.clone()).unwrap() else {
        panic!("request expected");
    };
    let call_id = r.headers.get_value(&HeaderName::CallId).unwrap();
    let range = data.as_ptr_range();
    assert!(range.contains(&call_id.as_bytes().as_ptr()));
}

#[test]
fn lf_only_line_endings_are_accepted() {
    let r = req(&OPTIONS.replace("\r\n", "\n"));
    assert_eq!(r.call_id(), Some("c1@192.0.2.1"));
    assert_eq!(r.headers.len(), 7);
}

#[test]
fn leading_crlfs_are_skipped_and_keepalives_are_empty() {
    assert!(req(&format!("\r\n\r\n{OPTIONS}")).call_id().is_some());
    assert_eq!(parse("\r\n\r\n"), Err(ParseError::Empty));
    assert_eq!(parse(""), Err(ParseError::Empty));
}

#[test]
fn folded_values_are_joined_with_one_space() {
    let msg = OPTIONS.replace(
        "Max-Forwards: 70\r\n",
        "Subject: first part\r\n \t second part  \r\n\tthird\r\nMax-Forwards: 70\r\n",
    );
    let r = req(&msg);
    assert_eq!(
        r.headers.get(&HeaderName::Subject),
        Some("first part second part third")
    );
    assert!(!r.to_bytes().windows(3).any(|w| w == b"\r\n "));
}

#[test]
fn content_length_frames_the_body() {
    let base = OPTIONS.replace("Content-Length: 0\r\n", "Content-Length: 4\r\n");
    let r = req(&format!("{base}abcdEXTRA"));
    assert_eq!(&r.body[..], b"abcd");

    let err = parse(&format!("{base}ab")).unwrap_err();
    assert_eq!(
        err,
        ParseError::ContentLengthExceedsBody {
            declared: 4,
            available: 2
        }
    );
    assert_eq!(err.to_string(), "Content-Length 4 exceeds body 2");

    let no_cl = OPTIONS.replace("Content-Length: 0\r\n", "");
    assert_eq!(
        &req(&format!("{no_cl}rest of datagram")).body[..],
        b"rest of datagram"
    );

    for bad in ["-1", "five", "", "4 4", "+4"] {
        let msg = OPTIONS.replace("Content-Length: 0", &format!("Content-Length: {bad}"));
        assert!(parse(&msg).is_err(), "Content-Length {bad:?} accepted");
    }
}

#[test]
fn a_datagram_without_blank_line_has_no_body() {
    let r = req(OPTIONS.trim_end_matches("\r\n"));
    assert!(r.body.is_empty());
    let with_cl = OPTIONS
        .replace("Content-Length: 0", "Content-Length: 3")
        .trim_end()
        .to_string();
    assert!(parse(&with_cl).is_err());
}

#[test]
fn binary_body_is_allowed_but_binary_headers_are_not() {
    let base = OPTIONS.replace("Content-Length: 0", "Content-Length: 3");
    let mut data = base.into_bytes();
    data.extend_from_slice(&[0xff, 0x00, 0xfe]);
    let Ok(Message::Request(r)) = Message::parse(Bytes::from(data)) else {
        panic!("binary body rejected");
    };
    assert_eq!(&r.body[..], &[0xff, 0x00, 0xfe]);

    let mut bad = OPTIONS.as_bytes().to_vec();
    let at = OPTIONS.find("c1@").unwrap();
    bad[at] = 0xff;
    assert_eq!(Message::parse(Bytes::from(bad)), Err(ParseError::NotUtf8));
}

#[test]
fn mandatory_headers_are_checked() {
    for (header, name) in [
        (
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n",
            "Via",
        ),
        ("From: <sip:alice@example.com>;tag=f1\r\n", "From"),
        ("To: <sip:gw.example.net>\r\n", "To"),
        ("Call-ID: c1@192.0.2.1\r\n", "Call-ID"),
        ("CSeq: 7 OPTIONS\r\n", "CSeq"),
    ] {
        let err = parse(&OPTIONS.replace(header, "")).unwrap_err();
        assert_eq!(err, ParseError::MissingHeader(name));
        assert_eq!(err.to_string(), format!("missing {name}"));
    }
    assert!(req(&OPTIONS.replace("Max-Forwards: 70\r\n", ""))
        .max_forwards()
        .is_none());
}

#[test]
fn single_valued_headers_must_not_repeat() {
    let twice = OPTIONS.replace(
        "Call-ID: c1@192.0.2.1\r\n",
        "i: c1@192.0.2.1\r\ni: c2@x\r\n",
    );
    assert_eq!(parse(&twice), Err(ParseError::DuplicateHeader("Call-ID")));
    // Equal duplicates of Content-Length are tolerated (seen in redacted Twilio captures).
    let same = OPTIONS.replace("Content-Length: 0\r\n", "Content-Length: 0\r\nl: 0\r\n");
    assert!(parse(&same).is_ok());
}

#[test]
fn cseq_method_must_match_the_request_method() {
    let err = parse(&OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE")).unwrap_err();
    assert!(matches!(err, ParseError::CSeqMismatch { .. }));
    assert!(parse(&OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 7 options")).is_err());
    assert!(parse(&OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 4294967296 OPTIONS")).is_err());
    assert!(parse(&OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 7OPTIONS")).is_err());
    let max = req(&OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 4294967295 OPTIONS"));
    assert_eq!(max.cseq().unwrap().seq, u32::MAX);
}

#[test]
fn start_line_errors() {
    let cases = [
        ("OPTIONS sip:gw.example.net SIP/3.0", "version"),
        ("OPTIONS sip:gw.example.net", "no version"),
        ("OPTIONS <sip:gw.example.net> SIP/2.0", "brackets"),
        ("OPTIONS gw.example.net SIP/2.0", "no scheme"),
        ("OPT IONS sip:gw.example.net SIP/2.0", "space in method"),
        ("OPTIONS sip:gw.example.net;\tlr SIP/2.0", "tab in URI"),
        ("SIP/2.0 2000 OK", "long status"),
        ("SIP/2.0 099 Odd", "status below 100"),
        ("SIP/2.0 700 Odd", "status above 699"),
        ("SIP/2.1 200 OK", "response version"),
    ];
    for (line, why) in cases {
        let msg = format!("{line}\r\n{}", OPTIONS.split_once("\r\n").unwrap().1);
        assert!(
            parse(&msg).is_err(),
            "accepted start line with {why}: {line}"
        );
    }
}

#[test]
fn responses_parse_with_and_without_reason() {
    let body = OPTIONS.split_once("\r\n").unwrap().1;
    for (line, reason) in [
        ("SIP/2.0 200 OK", "OK"),
        ("SIP/2.0 100 ", ""),
        ("SIP/2.0 100", ""),
        ("sip/2.0 486 Busy Here", "Busy Here"),
    ] {
        let Ok(Message::Response(r)) = parse(&format!("{line}\r\n{body}")) else {
            panic!("{line} rejected");
        };
        assert_eq!(r.reason, reason);
    }
}

#[test]
fn header_lines_need_a_token_name_and_colon() {
    for bad in [
        "NoColonHere\r\n",
        "Bad Name: x\r\n",
        ": empty name\r\n",
        "Bad\rCR: x\r\n",
    ] {
        let msg = OPTIONS.replace("Max-Forwards: 70\r\n", bad);
        assert!(parse(&msg).is_err(), "{bad:?} accepted");
    }
    assert!(parse(&format!(" leading: fold\r\n{OPTIONS}")).is_err());
}

#[test]
fn malformed_addresses_and_vias_are_rejected() {
    let swaps = [
        (
            "To: <sip:gw.example.net>",
            "To: \"unterminated <sip:gw.example.net>",
        ),
        ("To: <sip:gw.example.net>", "To: <sip:gw.example.net"),
        (
            "To: <sip:gw.example.net>",
            "To: Bad, Name <sip:gw.example.net>",
        ),
        ("To: <sip:gw.example.net>", "To: <sip:gw.example.net>;;"),
        ("To: <sip:gw.example.net>", "To: <gw.example.net>"),
        (
            "From: <sip:alice@example.com>;tag=f1",
            "From: <sip:alice@example.com>;tag=",
        ),
        ("SIP/2.0/UDP 192.0.2.1:5060", "SIP/2.0/UDP"),
        ("SIP/2.0/UDP 192.0.2.1:5060", "SIP/1.0/UDP 192.0.2.1"),
        ("SIP/2.0/UDP 192.0.2.1:5060", "SIP/2.0/UDP 192.0.2.1:99999"),
        (";rport\r\n", ";rport=x\r\n"),
        ("branch=z9hG4bKabc", "branch="),
        ("branch=z9hG4bKabc", "branch=z9hG4bKabc;;x"),
    ];
    for (from, to) in swaps {
        let msg = OPTIONS.replace(from, to);
        assert_ne!(msg, OPTIONS);
        assert!(parse(&msg).is_err(), "accepted {to:?}");
    }
    let star = OPTIONS.replace("Max-Forwards: 70\r\n", "Contact: *\r\n");
    assert!(req(&star).contacts().is_empty());
}

#[test]
fn only_the_top_via_and_from_to_are_checked_at_parse_time() {
    // Lower Vias are copied back untouched and Contact/Route are checked where they are used
    // (dialog creation), so a bad one does not stop the message; the typed view skips it.
    let lower = OPTIONS.replace(
        "Max-Forwards: 70\r\n",
        "Via: garbage\r\nContact: sip:a@b?x=1, <sip:ok@h>\r\n",
    );
    let r = req(&lower);
    assert_eq!(r.vias().len(), 1);
    let contacts = r.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].uri.user.as_deref(), Some("ok"));
    let top = OPTIONS.replace(
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n",
        "Via: garbage, SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n",
    );
    assert!(matches!(parse(&top), Err(ParseError::BadVia(_))));
}

#[test]
fn max_forwards_must_be_a_small_number() {
    assert_eq!(
        req(&OPTIONS.replace(": 70", ": 0068")).max_forwards(),
        Some(68)
    );
    for bad in ["256", "-1", "seventy", ""] {
        assert!(
            parse(&OPTIONS.replace("Max-Forwards: 70", &format!("Max-Forwards: {bad}"))).is_err()
        );
    }
}

#[test]
fn too_large_datagrams_are_rejected() {
    let big = vec![b'a'; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        Message::parse(Bytes::from(big)),
        Err(ParseError::TooLarge(MAX_MESSAGE_LEN + 1))
    );
}

#[test]
fn get_all_splits_list_headers_only() {
    let msg = OPTIONS.replace(
        "Max-Forwards: 70\r\n",
        "Route: <sip:a;lr>, \"x, y\" <sip:b;lr>\r\nRoute: <sip:c,d@e;lr>\r\n\
         Subject: one, two\r\nAllow: INVITE, ACK,,BYE\r\n",
    );
    let r = req(&msg);
    let routes: Vec<_> = r.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(
        routes,
        ["<sip:a;lr>", "\"x, y\" <sip:b;lr>", "<sip:c,d@e;lr>"]
    );
    let subject: Vec<_> = r.headers.get_all(&HeaderName::Subject).collect();
    assert_eq!(subject, ["one, two"]);
    let allow: Vec<_> = r.headers.get_all(&HeaderName::Allow).collect();
    assert_eq!(allow, ["INVITE", "ACK", "BYE"]);
    assert_eq!(r.routes().len(), 3);
    assert_eq!(r.routes()[1].display_name.as_deref(), Some("x, y"));
}

#[test]
fn headers_push_set_remove() {
    let mut h = Headers::new();
    assert!(h.is_empty());
    h.push(HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1");
    h.push(HeaderName::Contact, "<sip:x@y>");
    h.push(HeaderName::Via, "SIP/2.0/UDP b;branch=z9hG4bK2");
    h.push(HeaderName::Other("X-A".into()), String::from("1"));
    h.set(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
    let names: Vec<_> = h.iter().map(|(n, v)| (n.as_str(), v)).collect();
    assert_eq!(
        names,
        [
            ("Via", "SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("Contact", "<sip:x@y>"),
            ("X-A", "1")
        ]
    );
    h.set(HeaderName::parse("x-a"), "2");
    assert_eq!(h.get(&HeaderName::Other("X-A".into())), Some("2"));
    h.set(HeaderName::Expires, "60");
    assert_eq!(h.len(), 4);
    h.remove(&HeaderName::Via);
    assert!(!h.contains(&HeaderName::Via));
    assert_eq!(h.len(), 3);
}

#[test]
fn header_values_cannot_inject_lines() {
    let v = HeaderValue::from("a\r\nVia: evil");
    assert_eq!(v.as_str(), "a  Via: evil");
    let v = HeaderValue::from(String::from("x\ny"));
    assert_eq!(v.as_str(), "x y");
    let v = HeaderValue::from(Bytes::from_static(b"\xffok"));
    assert_eq!(v.as_str(), "\u{fffd}ok");
    assert!(HeaderValue::from_utf8(Bytes::from_static(b"a\rb")).is_err());
    assert_eq!(
        HeaderValue::from_utf8(Bytes::from_static(b"fine"))
            .unwrap()
            .as_str(),
        "fine"
    );

    let mut r = Request::new(Method::Other("BAD\r\nX".into()), "sip:a\r\n@b");
    r.headers.push(HeaderName::Other("X-\r\nY".into()), "v");
    let text = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    assert_eq!(text.matches("\r\n").count(), 4, "{text:?}");
}

#[test]
fn serializer_writes_content_length_from_the_body() {
    let mut r = req(OPTIONS);
    r.body = Bytes::from_static(b"hello");
    r.headers.push(HeaderName::ContentLength, "999");
    let bytes = r.to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with("OPTIONS sip:gw.example.net SIP/2.0\r\nVia: "));
    assert!(text.ends_with("Content-Length: 5\r\n\r\nhello"), "{text}");
    assert_eq!(text.matches("Content-Length").count(), 1);
    let again = req(text);
    assert_eq!(&again.body[..], b"hello");
    assert_eq!(again.call_id(), r.call_id());
}

#[test]
fn serialize_then_parse_is_identity_for_parsed_messages() {
    let r = req(OPTIONS);
    let again = req(std::str::from_utf8(&r.to_bytes()).unwrap());
    assert_eq!(again, r);
}

#[test]
fn response_for_request_copies_the_dialog_headers() {
    let invite = OPTIONS
        .replace("OPTIONS sip", "INVITE sip")
        .replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE")
        .replace(
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n",
            "Via: SIP/2.0/UDP edge;branch=z9hG4bK1, SIP/2.0/UDP inner;branch=z9hG4bK2\r\n\
             v: SIP/2.0/UDP third;branch=z9hG4bK3\r\n",
        );
    let r = req(&invite);
    let ok = Response::for_request(&r, 200, Some("totag1"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.reason, "OK");
    let names: Vec<_> = ok.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
    let vias: Vec<_> = ok.vias().into_iter().map(|v| v.host).collect();
    assert_eq!(vias, ["edge", "inner", "third"]);
    assert_eq!(
        ok.headers.get(&HeaderName::To),
        Some("<sip:gw.example.net>;tag=totag1")
    );
    assert_eq!(ok.to().unwrap().tag(), Some("totag1"));

    let ringing = Response::for_request(&r, 180, None);
    assert_eq!(ringing.reason, "Ringing");
    assert_eq!(ringing.to().unwrap().tag(), None);

    let tagged = invite.replace(
        "To: <sip:gw.example.net>",
        "To: <sip:gw.example.net>;tag=old",
    );
    let resp = Response::for_request(&req(&tagged), 487, Some("new"));
    assert_eq!(resp.to().unwrap().tag(), Some("old"));
    assert_eq!(resp.reason, "Request Terminated");

    let parsed = match Message::parse(ok.to_bytes()).unwrap() {
        Message::Response(p) => p,
        Message::Request(_) => panic!("response expected"),
    };
    assert_eq!(
        parsed.cseq(),
        Some(CSeq {
            seq: 7,
            method: Method::Invite
        })
    );
    assert_eq!(parsed.headers.to_tag(), Some("totag1"));
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(100), "Trying");
    assert_eq!(reason_phrase(407), "Proxy Authentication Required");
    assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
    assert_eq!(reason_phrase(499), "Client Error");
    assert_eq!(reason_phrase(699), "Global Failure");
}

#[test]
fn name_addr_forms() {
    let n = NameAddr::parse("\"A \\\"B\\\" C\" <sip:a@b;lr>;tag=x;expires=60").unwrap();
    assert_eq!(n.display_name.as_deref(), Some("A \"B\" C"));
    assert!(n.uri.has_lr());
    assert_eq!(n.tag(), Some("x"));
    assert_eq!(n.param("EXPIRES"), Some(Some("60")));
    assert_eq!(
        n.to_string(),
        "\"A \\\"B\\\" C\" <sip:a@b;lr>;tag=x;expires=60"
    );

    let bare = NameAddr::parse("sip:a@b;tag=y").unwrap();
    assert!(bare.uri.params.is_empty());
    assert_eq!(bare.tag(), Some("y"));
    assert_eq!(bare.to_string(), "<sip:a@b>;tag=y");

    let tokens = NameAddr::parse("Bob Smith<sip:bob@b>").unwrap();
    assert_eq!(tokens.display_name.as_deref(), Some("Bob Smith"));

    let mut plain = NameAddr::new(Uri::parse("sip:x@y").unwrap());
    plain.set_tag("t1");
    plain.set_tag("t2");
    assert_eq!(plain.to_string(), "<sip:x@y>;tag=t2");

    let odd = NameAddr {
        display_name: Some("line\r\nbreak".into()),
        ..plain
    };
    assert!(!odd.to_string().contains('\n'));
    assert!(NameAddr::parse("<http://example.com>").is_err());
}

#[test]
fn via_typed_view() {
    let v = Via::parse("SIP / 2.0 / tls [2001:db8::1] : 5061 ; branch = z9hG4bKx ; received=10.0.0.1;rport=5070;maddr=m;ttl=1").unwrap();
    assert_eq!(v.transport, "TLS");
    assert_eq!(v.host, "2001:db8::1");
    assert_eq!(v.port, Some(5061));
    assert_eq!(v.branch.as_deref(), Some("z9hG4bKx"));
    assert_eq!(v.received.as_deref(), Some("10.0.0.1"));
    assert_eq!(v.rport, Some(Some(5070)));
    assert_eq!(v.param("maddr"), Some(Some("m")));
    assert_eq!(
        v.to_string(),
        "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;received=10.0.0.1;rport=5070;maddr=m;ttl=1"
    );
    assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
}

#[test]
fn call_id_is_peeked_without_a_parse() {
    let msg = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCALL-id :  abc@h \r\n\r\nCall-ID: body";
    assert_eq!(peek_call_id(msg), Some("abc@h"));
    assert_eq!(
        peek_call_id(b"ACK sip:a@b SIP/2.0\r\ni:x\r\n\r\n"),
        Some("x")
    );
    // Only the header section counts, and the start line is no header.
    assert_eq!(
        peek_call_id(b"Call-ID: a SIP/2.0\r\nTo: b\r\n\r\ni: c"),
        None
    );
    assert_eq!(peek_call_id(b""), None);
    assert_eq!(peek_call_id(b"\r\n\r\n"), None);
    assert_eq!(
        peek_call_id(b"X sip:a SIP/2.0\r\nCall-ID: \xff\r\n\r\n"),
        None
    );
}
