//! Property tests for the SIP codec: generated messages survive serialize + parse unchanged,
//! arbitrary and mutated datagrams never panic (and what parses re-serializes stably), and
//! on what rsip 0.4 can read (long header names, no folding) the two parsers agree.

use std::sync::OnceLock;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use sipbridge::sip::message::{
    HeaderName, Headers, Message, Method, NameAddr, Request, Response, Via,
};
use sipbridge::sip::uri::Uri;

fn fixtures() -> &'static [Bytes] {
    static ALL: OnceLock<Vec<Bytes>> = OnceLock::new();
    ALL.get_or_init(|| {
        let root = format!("{}/fixtures/sip", env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [root.clone(), format!("{root}/rfc4475")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "sip") {
                    files.push(Bytes::from(std::fs::read(path).unwrap()));
                }
            }
        }
        assert!(files.len() >= 40);
        files
    })
}

/// `cases` unless PROPTEST_CASES asks for another number (for long fuzzing runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    // Integration tests have no src/lib.rs beside them for proptest's regression files.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn without_content_length(mut msg: Message) -> Message {
    msg.headers_mut().remove(&HeaderName::ContentLength);
    msg
}

/// Parse, serialize, parse again: the second parse must succeed and see the same message.
fn assert_reparses(msg: &Message) -> Result<(), TestCaseError> {
    let again = Message::parse(msg.to_bytes());
    prop_assert!(again.is_ok(), "re-parse failed: {:?}", again);
    let again = again.unwrap();
    prop_assert_eq!(
        without_content_length(again),
        without_content_length(msg.clone())
    );
    Ok(())
}

// ---- generators -------------------------------------------------------------------------

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,3}",
        (any::<[u8; 4]>()).prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
    ]
}

fn sip_uri() -> impl Strategy<Value = Uri> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        proptest::option::of("\\+?[A-Za-z0-9_.!~*'()&=+$,-]{1,12}"),
        host(),
        proptest::option::of(1u16..),
        vec(
            (
                "[a-z][a-z0-9-]{0,6}",
                proptest::option::of("[A-Za-z0-9.-]{1,8}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s += &format!("{u}@");
            }
            s += &host;
            if let Some(p) = port {
                s += &format!(":{p}");
            }
            for (n, v) in params {
                s += &format!(";{n}");
                if let Some(v) = v {
                    s += &format!("={v}");
                }
            }
            Uri::parse(&s).expect("generated URI parses")
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Options),
        Just(Method::Register),
        Just(Method::Info),
        Just(Method::Refer),
        Just(Method::Notify),
        "[A-Z][A-Z0-9_.!%*+`'~-]{0,10}".prop_map(|s| Method::parse(&s)),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS")],
        host(),
        proptest::option::of(1u16..),
        "[A-Za-z0-9.-]{1,40}",
        proptest::option::of(proptest::option::of(1u16..)),
    )
        .prop_map(|(transport, host, port, branch, rport)| Via {
            transport: transport.into(),
            host,
            port,
            branch: Some(format!("z9hG4bK{branch}")),
            received: None,
            rport,
            params: Vec::new(),
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        proptest::option::of("[ -~éü]{0,16}"),
        sip_uri(),
        proptest::option::of("[A-Za-z0-9_.-]{1,20}"),
    )
        .prop_map(|(display_name, uri, tag)| NameAddr {
            display_name,
            uri,
            params: tag
                .map(|t| ("tag".to_string(), Some(t)))
                .into_iter()
                .collect(),
        })
}

/// Extension headers: names that are not standard or compact, values without the
/// surrounding whitespace the parser trims.
fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(
        (
            "X-[A-Za-z][A-Za-z0-9-]{0,18}",
            prop_oneof!["", "[!-~]([ -~]{0,40}[!-~])?", "[a-zé大]{1,10}"],
        ),
        0..8,
    )
}

#[derive(Debug, Clone)]
struct Parts {
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    seq: u32,
    max_forwards: Option<u8>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        vec(via(), 1..4),
        name_addr(),
        name_addr(),
        "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,32}(@[a-z0-9.]{1,20})?",
        any::<u32>(),
        proptest::option::of(any::<u8>()),
        extra_headers(),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(vias, from, to, call_id, seq, max_forwards, extra, body)| Parts {
                vias,
                from,
                to,
                call_id,
                seq,
                max_forwards,
                extra,
                body,
            },
        )
}

/// The required headers first (so the top Via is the generated one), then the extension
/// headers shuffled among the optional ones.
fn headers(p: &Parts, cseq_method: &Method) -> Headers {
    let mut h = Headers::new();
    for v in &p.vias {
        h.push(HeaderName::Via, v.to_string());
    }
    h.push(HeaderName::From, p.from.to_string());
    h.push(HeaderName::To, p.to.to_string());
    h.push(HeaderName::CallId, p.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} {}", p.seq, cseq_method));
    if let Some(mf) = p.max_forwards {
        h.push(HeaderName::MaxForwards, mf.to_string());
    }
    for (name, value) in &p.extra {
        h.push(HeaderName::parse(name), value.clone());
    }
    h
}

fn request() -> impl Strategy<Value = Request> {
    (method(), sip_uri(), parts()).prop_map(|(method, uri, p)| {
        let mut r = Request::new(method.clone(), uri.to_string());
        r.headers = headers(&p, &method);
        r.body = Bytes::from(p.body);
        r
    })
}

fn response() -> impl Strategy<Value = Response> {
    (100u16..700, "([!-~é]([ -~é]{0,30}))?", method(), parts()).prop_map(
        |(status, reason, method, p)| {
            let mut r = Response::new(status, reason);
            r.headers = headers(&p, &method);
            r.body = Bytes::from(p.body);
            r
        },
    )
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn requests_round_trip(req in request()) {
        let msg = Message::Request(req.clone());
        let parsed = Message::parse(msg.to_bytes());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let Message::Request(parsed) = parsed.unwrap() else {
            return Err(TestCaseError::fail("parsed as a response"));
        };
        let length = req.body.len().to_string();
        prop_assert_eq!(parsed.headers.get(&HeaderName::ContentLength), Some(length.as_str()));
        prop_assert_eq!(&parsed.from(), &req.from());
        prop_assert_eq!(&parsed.to(), &req.to());
        prop_assert_eq!(parsed.vias(), req.vias());
        prop_assert_eq!(without_content_length(Message::Request(parsed)), msg);
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        let msg = Message::Response(resp);
        let parsed = Message::parse(msg.to_bytes());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        prop_assert_eq!(without_content_length(parsed.unwrap()), msg);
    }

    #[test]
    fn typed_values_round_trip_through_display(v in via(), n in name_addr(), u in sip_uri()) {
        prop_assert_eq!(Via::parse(&v.to_string()), Ok(v));
        prop_assert_eq!(NameAddr::parse(&n.to_string()), Ok(n));
        prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..2048)) {
        if let Ok(msg) = Message::parse(Bytes::from(data)) {
            assert_reparses(&msg)?;
        }
    }

    /// Datagrams assembled from SIP-looking pieces reach much deeper into the parser than
    /// uniform random bytes do.
    #[test]
    fn sip_shaped_garbage_never_panics(pieces in vec(prop_oneof![
        Just("INVITE sip:a@b SIP/2.0"), Just("SIP/2.0 200 OK"), Just("Via: SIP/2.0/UDP h;branch=z9hG4bK1"),
        Just("v: SIP / 2.0 / TCP [::1]:5;rport"), Just("From: \"x\\\"\" <sip:f@h>;tag=1"), Just("t: sip:t@h"),
        Just("i: c@h"), Just("CSeq: 1 INVITE"), Just("l: 5"), Just("Content-Length: 99999999999999999999"),
        Just(" folded"), Just("\t"), Just(""), Just(":"), Just(";"), Just(","), Just("<"), Just("\""), Just("\r"),
        Just("é"), Just("\u{0}"), Just("Max-Forwards: 70"), Just("Contact: *"), Just("Record-Route: <sip:r;lr>"),
    ], 0..24), sep in prop_oneof![Just("\r\n"), Just("\n"), Just("")]) {
        let text = pieces.join(sep);
        if let Ok(msg) = Message::parse(Bytes::from(text)) {
            assert_reparses(&msg)?;
            let _ = (msg.top_via(), msg.cseq(), msg.headers().from(), msg.headers().to());
            let _ = (msg.headers().contacts(), msg.headers().record_routes(), msg.headers().vias());
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let original = which.get(fixtures());
        let mut data = original.to_vec();
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if let Some(cut) = cut {
            data.truncate(cut.index(data.len() + 1));
        }
        if let Ok(msg) = Message::parse(Bytes::from(data)) {
            assert_reparses(&msg)?;
            let _ = (msg.top_via(), msg.cseq(), msg.headers().from(), msg.headers().to());
            let _ = (msg.headers().contacts(), msg.headers().record_routes(), msg.headers().vias());
        }
    }
}

// ---- differential against rsip 0.4 ------------------------------------------------------

/// What both parsers must agree on. The start line is compared lower-cased because rsip
/// re-prints URI parameters it knows in its own case (`transport=TLS`).
#[derive(Debug, PartialEq)]
struct Summary {
    start: String,
    call_id: String,
    cseq: (u32, String),
    header_count: usize,
    body: Bytes,
}

fn ours(data: &Bytes) -> Summary {
    let msg = Message::parse(data.clone()).expect("we parse it");
    let start = match &msg {
        Message::Request(r) => format!("{} {}", r.method, r.uri).to_lowercase(),
        Message::Response(r) => r.status.to_string(),
    };
    let cseq = msg.cseq().unwrap();
    Summary {
        start,
        call_id: msg.call_id().unwrap().to_string(),
        cseq: (cseq.seq, cseq.method.to_string()),
        header_count: msg.headers().len(),
        body: msg.body().clone(),
    }
}

fn theirs(data: &Bytes) -> Summary {
    use rsip::prelude::*;
    let msg = rsip::SipMessage::try_from(data.clone()).expect("rsip parses it");
    let start = match &msg {
        rsip::SipMessage::Request(r) => format!("{} {}", r.method, r.uri).to_lowercase(),
        rsip::SipMessage::Response(r) => r.status_code.code().to_string(),
    };
    let cseq = msg.cseq_header().unwrap().typed().unwrap();
    Summary {
        start,
        call_id: msg.call_id_header().unwrap().value().to_string(),
        cseq: (cseq.seq, cseq.method.to_string()),
        header_count: msg.headers().iter().count(),
        body: Bytes::from(msg.body().clone()),
    }
}

#[test]
fn rsip_agrees_on_the_twilio_fixtures() {
    for name in [
        "twilio_esip_tls_invite.sip",
        "twilio_esip_udp_invite.sip",
        "twilio_dial_sip_invite.sip",
        "twilio_dial_sip_invite_auth.sip",
    ] {
        let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
        let data = Bytes::from(std::fs::read(path).unwrap());
        assert_eq!(ours(&data), theirs(&data), "{name}");
    }
}

/// Requests rsip can read: standard methods, long header names, plain URIs (rsip rewrites
/// some URI parameters when printing), text bodies.
fn rsip_friendly_request() -> impl Strategy<Value = Bytes> {
    (
        prop_oneof![
            Just(Method::Invite),
            Just(Method::Options),
            Just(Method::Bye),
            Just(Method::Info)
        ],
        "[a-z0-9]{1,10}",
        host(),
        proptest::option::of(1024u16..),
        "[a-f0-9]{8,32}",
        "[a-f0-9]{6,20}",
        1u32..1_000_000,
        vec(
            ("X-[A-Za-z][A-Za-z0-9-]{0,18}", "[!-~]([ -~]{0,30}[!-~])?"),
            0..6,
        ),
        "[ -~\r\n]{0,200}",
    )
        .prop_map(
            |(method, user, host, port, call_id, tag, seq, extra, body)| {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let mut r = Request::new(method.clone(), format!("sip:{user}@{host}{port}"));
                let h = &mut r.headers;
                h.push(
                    HeaderName::Via,
                    format!("SIP/2.0/UDP {host}{port};branch=z9hG4bK{tag}"),
                );
                h.push(HeaderName::From, format!("<sip:caller@{host}>;tag={tag}"));
                h.push(HeaderName::To, format!("<sip:{user}@{host}>"));
                h.push(HeaderName::CallId, format!("{call_id}@{host}"));
                h.push(HeaderName::CSeq, format!("{seq} {method}"));
                h.push(HeaderName::MaxForwards, "70");
                for (n, v) in extra {
                    h.push(HeaderName::parse(&n), v);
                }
                r.body = Bytes::from(body);
                r.to_bytes()
            },
        )
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn rsip_agrees_on_generated_requests(data in rsip_friendly_request()) {
        prop_assert_eq!(ours(&data), theirs(&data));
    }
}
