//! RFC 4475 torture messages (fixtures/sip/rfc4475/, transcribed from the RFC with CRLF line
//! ends). §3.1.1 valid messages must parse with the right fields; §3.1.2 invalid messages
//! that a parser of our scope can detect must be rejected; a few "liberal" cases (where the
//! RFC allows either answer) are pinned to what we chose, with the reason; nothing panics.

use bytes::Bytes;
use sipbridge::sip::message::{HeaderName, Message, Method, ParseError, Request, Response};
use sipbridge::sip::uri::{unescape_user, Uri};

fn raw(name: &str) -> Bytes {
    let path = format!(
        "{}/fixtures/sip/rfc4475/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn parse(name: &str) -> Result<Message, ParseError> {
    Message::parse(raw(name))
}

fn request(name: &str) -> Request {
    match parse(name) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn response(name: &str) -> Response {
    match parse(name) {
        Ok(Message::Response(r)) => r,
        other => panic!("{name}: expected a response, got {other:?}"),
    }
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(&HeaderName::parse(name))
}

#[test]
fn wsinv_short_tortuous_invite() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:vivekg@chair-dnrc.example.com;unknownparam");
    let to = r.to().unwrap();
    assert_eq!(to.uri.host, "chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = r.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(r.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = r.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));

    let vias = r.vias();
    let hops: Vec<_> = vias
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch.as_deref()))
        .collect();
    assert_eq!(
        hops,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(header(&r, "Subject"), Some(""));
    assert_eq!(
        header(&r, "NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        header(&r, "UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let route = &r.routes()[0];
    assert!(route.uri.has_lr());
    assert_eq!(route.uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(route.uri.param("unknown-no-value"), Some(None));

    let contact = &r.contacts()[0];
    assert_eq!(contact.display_name.as_deref(), Some("Quoted string \"\""));
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("q"), Some(Some("0.33")));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let r = request("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Other(method.into()));
    let uri = Uri::parse(&r.uri).unwrap();
    assert_eq!(
        uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(uri.host, "example.com");
    assert_eq!(
        r.top_via().unwrap().branch.as_deref(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    let to = r.to().unwrap();
    assert_eq!(to.display_name.as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
    assert_eq!(to.uri.user, uri.user);
    let from = r.from().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(
        r.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(r.cseq().unwrap().seq, 139122385);
    assert_eq!(r.cseq().unwrap().method.as_str(), method);
    assert_eq!(r.max_forwards(), Some(255));
    assert_eq!(
        header(&r, "extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
}

#[test]
fn esc01_escapes_are_kept_as_sent() {
    let r = request("esc01");
    let uri = Uri::parse(&r.uri).unwrap();
    assert_eq!(uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        unescape_user(uri.user.as_deref().unwrap()),
        "sips:user@example.com"
    );
    assert_eq!(uri.host, "example.net");
    let to = r.to().unwrap();
    assert_eq!(unescape_user(to.uri.user.as_deref().unwrap()), "user");
    let from = r.from().unwrap();
    assert_eq!(from.uri.user.as_deref(), Some("I%20have%20spaces"));
    let contact = &r.contacts()[0];
    assert_eq!(contact.uri.user.as_deref(), Some("cal%6Cer"));
    assert_eq!(contact.uri.param("%6C%72"), Some(None));
    assert_eq!(contact.uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
    assert_eq!(r.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(header(&r, "Content-Type"), Some("application/sdp"));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn escnull_escaped_nuls_stay_distinct() {
    let r = request("escnull");
    assert_eq!(r.method, Method::Register);
    let to = r.to().unwrap();
    assert_eq!(
        unescape_user(to.uri.user.as_deref().unwrap()),
        "null-\0-null"
    );
    let users: Vec<_> = r
        .contacts()
        .into_iter()
        .map(|c| c.uri.user.unwrap())
        .collect();
    assert_eq!(users, ["%00", "%00%00"]);
    assert!(r.body.is_empty());
}

#[test]
fn esc02_percent_is_not_an_escape_in_method_or_header_name() {
    let r = request("esc02");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_eq!(r.to().unwrap().display_name.as_deref(), Some("%Z%45"));
    assert_eq!(
        r.top_via().unwrap().branch.as_deref(),
        Some("z9hG4bK209%fzsnel234")
    );
    let users: Vec<_> = r
        .contacts()
        .into_iter()
        .map(|c| c.uri.user.unwrap())
        .collect();
    assert_eq!(users, ["alias1", "alias3"]);
    assert_eq!(
        header(&r, "C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
}

#[test]
fn lwsdisp_display_name_without_space() {
    let r = request("lwsdisp");
    let from = r.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

#[test]
fn longreq_long_values_and_34_vias() {
    let r = request("longreq");
    let to = r.to().unwrap();
    assert!(to
        .display_name
        .unwrap()
        .starts_with("I have a user name of extremeextreme"));
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(to.uri.params.len(), 3);
    assert_eq!(to.uri.param("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename"), Some(Some("shortvalue")));
    let from = r.from().unwrap();
    assert_eq!(from.tag(), Some("12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424"));
    assert_eq!(from.params.len(), 3);
    let vias = r.vias();
    assert_eq!(vias.len(), 34);
    for (i, via) in vias.iter().take(33).enumerate() {
        assert_eq!(via.host, format!("sip{}.example.com", 33 - i));
    }
    assert_eq!(vias[33].received.as_deref(), Some("192.0.2.5"));
    assert!(vias[33]
        .branch
        .as_ref()
        .unwrap()
        .ends_with("longbranchvalue"));
    assert!(header(
        &r,
        "Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name"
    )
    .is_some());
    assert_eq!(r.contacts()[0].uri.host, "host5.example.net");
    assert_eq!(r.body.len(), 150);
}

#[test]
fn dblreq_ignores_octets_after_content_length() {
    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.call_id(), Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412"));
    assert!(r.body.is_empty());
    assert_eq!(r.contacts()[0].uri.host, "host.example.com");
}

#[test]
fn semiuri_user_part_with_semicolon() {
    let r = request("semiuri");
    let uri = Uri::parse(&r.uri).unwrap();
    assert_eq!(uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(
        unescape_user(uri.user.as_deref().unwrap()),
        "user;par=u@example.net"
    );
    assert_eq!(uri.host, "example.com");
    assert!(uri.params.is_empty());
    let accept: Vec<_> = r.headers.get_all(&HeaderName::Accept).collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
}

#[test]
fn transports_known_and_unknown() {
    let r = request("transports");
    let transports: Vec<_> = r.vias().into_iter().map(|v| v.transport).collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(r.call_id(), Some("transports.kijh4akdnaqjkwendsasfdj"));
}

#[test]
fn mpart01_binary_body_is_framed_by_content_length() {
    let r = request("mpart01");
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.body.len(), 553);
    assert!(r.body.contains(&0));
    assert!(std::str::from_utf8(&r.body).is_err());
    assert!(r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(r.top_via().unwrap().rport, Some(None));
    assert_eq!(r.routes()[0].uri.port, Some(5080));
}

#[test]
fn unreason_utf8_reason_phrase() {
    let r = response("unreason");
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_eq!(r.body.len(), 154);
    assert_eq!(r.to().unwrap().tag(), Some("2229"));
}

#[test]
fn noreason_empty_reason_phrase() {
    let r = response("noreason");
    assert_eq!(r.status, 100);
    assert_eq!(r.reason, "");
    assert_eq!(r.call_id(), Some("noreason.asndj203insdf99223ndf"));
}

#[test]
fn invalid_messages_are_rejected() {
    let cases = [
        ("badinv01", "empty parameters in the Via"),
        ("clerr", "Content-Length larger than the datagram"),
        ("ncl", "negative Content-Length"),
        ("scalar02", "CSeq beyond 32 bits, Max-Forwards 300"),
        ("scalarlg", "response CSeq beyond 32 bits"),
        ("quotbal", "unterminated quoted display name"),
        ("ltgtruri", "Request-URI in <>"),
        ("lwsruri", "space inside the Request-URI"),
        ("baddn", "unquoted display name with a comma"),
        ("badvers", "SIP/7.0"),
        ("mismatch01", "CSeq method differs from the request method"),
        ("mismatch02", "unknown method with a different CSeq method"),
        ("bigcode", "status code 4294967301"),
        ("insuf", "no From, To or Call-ID"),
        ("multi01", "two different Call-IDs, CSeqs, Froms and Tos"),
        ("mcl01", "two different Content-Lengths"),
        ("badaspec", "spaces inside <> around the URI"),
    ];
    for (name, why) in cases {
        assert!(parse(name).is_err(), "{name} ({why}) was accepted");
    }
    assert_eq!(
        parse("clerr").unwrap_err().to_string(),
        "Content-Length 9999 exceeds body 154"
    );
    assert_eq!(
        parse("badvers"),
        Err(ParseError::BadVersion("SIP/7.0".into()))
    );
    assert!(matches!(
        parse("mismatch01"),
        Err(ParseError::CSeqMismatch { .. })
    ));
}

/// RFC 4475 lets an element either reject these or be liberal. A B2BUA terminates both
/// dialogs and never forwards these fields, so accepting them costs nothing and avoids
/// failing calls on a cosmetic fault.
#[test]
fn liberal_cases_we_accept() {
    // §3.1.2.9/10: extra spaces in or after the request line; we re-serialize with single
    // spaces, so nothing malformed propagates.
    assert_eq!(request("lwsstart").uri, "sip:user@example.com");
    let trws = request("trws");
    assert_eq!(trws.uri, "sip:remote-target@example.com");
    assert!(trws
        .to_bytes()
        .starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n"));
    // §3.1.2.11: escaped headers in the Request-URI; the B2BUA never forwards it.
    let escruri = Uri::parse(&request("escruri").uri).unwrap();
    assert_eq!(
        escruri.headers,
        [("Route".to_string(), "%3Csip:example.com%3E".to_string())]
    );
    // §3.1.2.12: the Date header is not interpreted.
    assert!(parse("baddate").is_ok());
    // §3.1.2.13: the codec does not check Contact (the dialog does, strictly); the typed
    // view skips the malformed value.
    assert!(request("regbadct").contacts().is_empty());
}

/// Syntactically valid messages whose problem is semantic (RFC 4475 §3.2-3.4) must reach
/// the application.
#[test]
fn semantic_cases_parse() {
    assert_eq!(
        request("badbranch").top_via().unwrap().branch.as_deref(),
        Some("z9hG4bK")
    );
    assert_eq!(request("novelsc").uri, "soap.beep://192.0.2.103:3002");
    let old = request("inv2543");
    assert_eq!(old.from().unwrap().tag(), None);
    assert_eq!(old.top_via().unwrap().branch, None);
    assert_eq!(old.max_forwards(), None);
    assert_eq!(old.body.len(), 105);
    // §3.3: every application-layer case is a well-formed message; what the gateway answers
    // to each is checked in the dispatcher's torture tests.
    for name in [
        "unkscm", "unksm2", "bext01", "invut", "regaut01", "zeromf", "cparam01", "cparam02",
        "regescrt", "sdp01",
    ] {
        assert!(matches!(parse(name), Ok(Message::Request(_))), "{name}");
    }
    assert_eq!(response("bcast").vias()[1].host, "255.255.255.255");
    assert_eq!(
        header(&request("bext01"), "Proxy-Require"),
        Some("noProxiesSupportThis, norDoAnyProxiesSupportThis")
    );
    assert_eq!(request("invut").body.len(), 40);
    // §3.3.14: the escaped Route stays inside the Contact URI, never a header of its own.
    let contact = &request("regescrt").contacts()[0];
    assert_eq!(
        contact.uri.headers,
        [("Route".to_string(), "%3Csip:sip.example.com%3E".to_string())]
    );
    // §3.3.12/13: outside <> the parameter is the Contact's, inside it is the URI's.
    let c1 = &request("cparam01").contacts()[0];
    assert_eq!(
        (c1.uri.param("unknownparam"), c1.param("unknownparam")),
        (None, Some(None))
    );
    let c2 = &request("cparam02").contacts()[0];
    assert_eq!(
        (c2.uri.param("unknownparam"), c2.param("unknownparam")),
        (Some(None), None)
    );
}

#[test]
fn no_torture_message_or_truncation_of_one_panics() {
    let dir = format!("{}/fixtures/sip/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = Bytes::from(std::fs::read(entry.unwrap().path()).unwrap());
        for end in 0..=data.len() {
            let _ = Message::parse(data.slice(..end));
        }
        count += 1;
    }
    assert_eq!(count, 49, "RFC 4475 has 49 messages");
}
