//! The codec against the Twilio fixtures (fixtures/sip/, built from
//! /work/shared/reference/twilio.md §2.3 and §2.4).

use bytes::Bytes;
use sipbridge::sip::message::{CSeq, HeaderName, Message, Method, Request, Response};
use sipbridge::sip::uri::Scheme;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn request(name: &str) -> Request {
    match Message::parse(fixture(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(&HeaderName::parse(name))
}

fn declared_length(r: &Request) -> usize {
    header(r, "Content-Length").unwrap().parse().unwrap()
}

#[test]
fn fixture_a_esip_tls_invite() {
    let r = request("twilio_esip_tls_invite.sip");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:+442071230000@sbc.example.net;transport=tls");
    assert_eq!(
        r.call_id(),
        Some("fb3e6e86a53e3094ed17b4776a69af59@0.0.0.0")
    );
    assert_eq!(
        r.cseq(),
        Some(CSeq {
            seq: 29044,
            method: Method::Invite
        })
    );
    assert_eq!(r.max_forwards(), Some(60));

    let vias = r.vias();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].transport, "TLS");
    assert_eq!(vias[0].host, "54.171.127.193");
    assert_eq!(vias[0].port, Some(5061));
    assert_eq!(
        vias[0].branch.as_deref(),
        Some("z9hG4bK1dc3.f822d4f6a9d2c3b351d555992ddc6b78.0")
    );
    assert_eq!(vias[1].transport, "UDP");
    assert_eq!(vias[1].host, "172.25.75.240");
    assert_eq!(vias[1].rport, Some(Some(5060)));
    assert_eq!(
        vias[1].branch.as_deref(),
        Some("z9hG4bK658bbbdc-370e-4c02-862b-9f5807568f80_c3356d0b_588-14959261184934463487")
    );
    assert_eq!(r.top_via(), Some(vias[0].clone()));

    let rr = r.record_routes();
    assert_eq!(rr.len(), 2);
    assert_eq!(
        rr[0].uri.to_string(),
        "sip:54.171.127.193:5061;transport=tls;r2=on;lr"
    );
    assert_eq!(rr[1].uri.to_string(), "sip:54.171.127.193;r2=on;lr");
    assert!(rr.iter().all(|a| a.uri.has_lr()));

    let from = r.from().unwrap();
    assert_eq!(from.display_name, None);
    assert_eq!(from.uri.user.as_deref(), Some("+447700900123"));
    assert_eq!(from.uri.host, "mytrunk.pstn.twilio.com");
    assert_eq!(
        from.tag(),
        Some("08601002_c3356d0b_658bbbdc-370e-4c02-862b-9f5807568f80")
    );
    let to = r.to().unwrap();
    assert_eq!(to.tag(), None);
    assert_eq!(to.uri.param("transport"), Some(Some("tls")));

    let contacts = r.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].uri.host, "172.25.75.240");
    assert_eq!(contacts[0].uri.port, Some(5060));
    assert_eq!(contacts[0].uri.param("transport"), Some(Some("udp")));

    assert_eq!(
        header(&r, "X-Twilio-CallSid"),
        Some("CA00000000000000000000000000000000")
    );
    assert_eq!(
        header(&r, "x-twilio-accountsid"),
        Some("AC00000000000000000000000000000000")
    );
    assert_eq!(header(&r, "Content-Type"), Some("application/sdp"));
    let allow: Vec<_> = r.headers.get_all(&HeaderName::Allow).collect();
    assert_eq!(
        allow,
        ["ACK", "BYE", "CANCEL", "INVITE", "OPTIONS", "REFER", "NOTIFY"]
    );

    assert_eq!(r.body.len(), declared_length(&r));
    assert!(r.body.starts_with(b"v=0\r\n"));
    assert!(r.body.windows(9).any(|w| w == b"RTP/SAVP "));
    assert!(r.body.ends_with(b"a=sendrecv\r\n"));
}

#[test]
fn fixture_b_dial_sip_invite() {
    let r = request("twilio_dial_sip_invite.sip");
    assert_eq!(r.uri, "sip:agent@gw.example.net");
    assert_eq!(
        r.call_id(),
        Some("111bcbfb91a2b904a5bd43e17c223751@0.0.0.0")
    );
    assert_eq!(r.cseq().map(|c| c.seq), Some(1));
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(header(&r, "Min-SE"), Some("120"));

    let vias = r.vias();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].branch.as_deref(), Some("z9hG4bK7f66.08df6eb7.0"));
    assert_eq!(vias[1].host, "172.18.4.191");

    let rr = r.record_routes();
    assert_eq!(rr.len(), 1);
    assert_eq!(rr[0].uri.host, "54.171.127.192");
    assert_eq!(rr[0].uri.port, Some(5060));
    assert!(rr[0].uri.has_lr());
    assert!(rr[0].uri.param("ftag").is_some());

    let from = r.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("+447700900123"));
    assert_eq!(from.uri.host, "sip.twilio.com");
    assert_eq!(
        from.tag(),
        Some("94012475_6772d868_174680c1-63fa-4700-93fc-8726c8187bd8")
    );
    let contact = &r.contacts()[0];
    assert_eq!(contact.display_name.as_deref(), Some("+447700900123"));
    assert_eq!(contact.uri.scheme, Scheme::Sip);
    assert_eq!(contact.uri.host_port(), ("172.18.4.191".to_string(), 5060));
    assert_eq!(header(&r, "X-Twilio-ApiVersion"), Some("2010-04-01"));
    assert_eq!(r.body.len(), declared_length(&r));
    assert!(r.body.windows(16).any(|w| w == b"RTP/AVP 0 8 101\r"));
}

#[test]
fn fixture_b_retry_after_407_carries_proxy_authorization() {
    let first = request("twilio_dial_sip_invite.sip");
    let retry = request("twilio_dial_sip_invite_auth.sip");
    assert_eq!(retry.call_id(), first.call_id());
    assert_eq!(retry.headers.from_tag(), first.headers.from_tag());
    assert_eq!(retry.cseq().map(|c| c.seq), Some(2));
    assert_ne!(retry.headers.top_branch(), first.headers.top_branch());
    let auth = retry.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(auth.starts_with("Digest username=\"ai-voice-agent\""));
    assert!(auth.contains("uri=\"sip:agent@gw.example.net\""));
    assert!(auth.contains("qop=auth"));
    assert_eq!(retry.body, first.body);
}

/// The retry's digest is a real one, so the auth code can be tested against it: user
/// `ai-voice-agent`, password `correct-horse-battery`, realm `gw.example.net` (RFC 2617 MD5
/// with qop=auth).
#[test]
fn fixture_b_retry_digest_is_consistent() {
    use md5::{Digest, Md5};
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let retry = request("twilio_dial_sip_invite_auth.sip");
    let auth = retry.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    let field = |name: &str| {
        auth.trim_start_matches("Digest ")
            .split(", ")
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap()
    };
    let ha1 = md5(format!(
        "{}:{}:correct-horse-battery",
        field("username"),
        field("realm")
    ));
    let ha2 = md5(format!("INVITE:{}", field("uri")));
    let expected = md5(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        field("nonce"),
        field("nc"),
        field("cnonce"),
        field("qop")
    ));
    assert_eq!(field("response"), expected);
    assert_eq!(field("uri"), retry.uri);
}

#[test]
fn esip_udp_variant_has_one_record_route_and_plain_rtp() {
    let r = request("twilio_esip_udp_invite.sip");
    assert_eq!(r.uri, "sip:+442071230000@sbc.example.net");
    let rr = r.record_routes();
    assert_eq!(rr.len(), 1);
    assert_eq!(rr[0].uri.to_string(), "sip:54.171.127.193;lr");
    assert!(r.vias().iter().all(|v| v.transport == "UDP"));
    assert_eq!(r.body.len(), declared_length(&r));
    assert!(r.body.windows(16).any(|w| w == b"RTP/AVP 0 8 101\r"));
    assert!(!r.body.windows(8).any(|w| w == b"a=crypto"));
}

#[test]
fn fixtures_serialize_back_to_the_same_bytes() {
    // The fixtures use canonical header names and put Content-Length last, which is exactly
    // what the serializer writes, so parse + serialize must reproduce them byte for byte.
    for name in [
        "twilio_esip_tls_invite.sip",
        "twilio_esip_udp_invite.sip",
        "twilio_dial_sip_invite.sip",
        "twilio_dial_sip_invite_auth.sip",
    ] {
        let raw = fixture(name);
        let msg = Message::parse(raw.clone()).unwrap();
        assert_eq!(msg.to_bytes(), raw, "{name}");
    }
}

#[test]
fn answers_built_from_fixture_a_echo_both_vias_untouched() {
    let r = request("twilio_esip_tls_invite.sip");
    let ok = Response::for_request(&r, 200, Some("gw-tag-1"));
    let wire = ok.to_bytes();
    let Message::Response(parsed) = Message::parse(wire).unwrap() else {
        panic!("response expected");
    };
    let want: Vec<_> = r.headers.get_all(&HeaderName::Via).collect();
    let got: Vec<_> = parsed.headers.get_all(&HeaderName::Via).collect();
    assert_eq!(got, want);
    assert_eq!(parsed.headers.to_tag(), Some("gw-tag-1"));
    assert_eq!(parsed.headers.from_tag(), r.headers.from_tag());
    assert_eq!(parsed.call_id(), r.call_id());
    assert_eq!(parsed.cseq(), r.cseq());
}
