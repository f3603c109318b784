//! RFC 5118 IPv6 torture messages (fixtures/sip/rfc5118/, transcribed from the RFC with CRLF
//! line ends). The RFC's printed Content-Length values of the three messages with an SDP body
//! (268, 181, 236) do not match their bodies however the lines are counted; the fixtures carry
//! the true lengths, so each message tests what its section is about, not a framing error.
//! Valid messages parse to the right fields; §4.2 (an IPv6 host without brackets) is rejected
//! where the address is used; nothing panics.

use bytes::Bytes;
use sipbridge::sdp::SessionDescription;
use sipbridge::sip::message::{Message, Request};
use sipbridge::sip::uri::Uri;
use std::net::IpAddr;

fn raw(name: &str) -> Bytes {
    let path = format!(
        "{}/fixtures/sip/rfc5118/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn request(name: &str) -> Request {
    match Message::parse(raw(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ruri(r: &Request) -> Uri {
    Uri::parse(&r.uri).unwrap_or_else(|e| panic!("{}: {e}", r.uri))
}

#[test]
fn ipv6_good_references_in_uri_via_and_contact() {
    // §4.1
    let r = request("ipv6-good");
    let uri = ruri(&r);
    assert_eq!((uri.host.as_str(), uri.port), ("2001:db8::10", None));
    assert_eq!(uri.socket_addr(), Some((ip("2001:db8::10"), 5060).into()));
    let via = r.top_via().unwrap();
    assert_eq!((via.host.as_str(), via.port), ("2001:db8::9:1", None));
    let contact = &r.contacts()[0];
    assert_eq!(contact.display_name.as_deref(), Some("Caller"));
    assert_eq!(contact.uri.host, "2001:db8::1");
    // Written back with its brackets.
    assert_eq!(uri.to_string(), "sip:[2001:db8::10]");
}

#[test]
fn ipv6_bad_host_without_brackets_is_refused() {
    // §4.2: "sip:2001:db8::10" reads as host 2001 with port "db8::10": not a URI.
    let r = request("ipv6-bad");
    assert!(Uri::parse(&r.uri).is_err(), "{} was accepted", r.uri);
}

#[test]
fn port_inside_brackets_is_part_of_the_address() {
    // §4.3: [2001:db8::10:5070] is an address (2001:db8::10:5070), with no port.
    let uri = ruri(&request("port-ambiguous"));
    assert_eq!((uri.host.as_str(), uri.port), ("2001:db8::10:5070", None));
    assert_eq!(
        uri.socket_addr(),
        Some((ip("2001:db8::10:5070"), 5060).into())
    );
    // §4.4: the port after the bracket is a port.
    let uri = ruri(&request("port-unambiguous"));
    assert_eq!((uri.host.as_str(), uri.port), ("2001:db8::10", Some(5070)));
    assert_eq!(uri.socket_addr(), Some((ip("2001:db8::10"), 5070).into()));
}

#[test]
fn via_received_with_and_without_brackets() {
    // §4.5: RFC 3261's ABNF wants it bare; both forms must be understood as the same address.
    for name in [
        "via-received-param-with-delim",
        "via-received-param-no-delim",
    ] {
        let via = request(name).top_via().unwrap();
        assert_eq!(via.host, "2001:db8::9:1", "{name}");
        let received = via.received.as_deref().unwrap();
        assert_eq!(
            received.trim_start_matches('[').trim_end_matches(']'),
            "2001:db8::9:255",
            "{name}"
        );
        assert!(via.branch.is_some(), "{name}: branch lost after received");
    }
}

#[test]
fn ipv6_addresses_in_sdp() {
    // §4.6
    let r = request("ipv6-in-sdp");
    let sdp = SessionDescription::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    let c = sdp.connection.as_ref().unwrap();
    assert_eq!(c.ip, Some(ip("2001:db8::20")));
    assert_eq!(sdp.origin.as_ref().unwrap().address, "2001:db8::20");
    assert_eq!(ruri(&r).host, "2001:db8::10");
    // §4.8: one address per media section, of either family.
    let r = request("mult-ip-in-sdp");
    let sdp = SessionDescription::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    let per_media: Vec<_> = sdp
        .media
        .iter()
        .map(|m| m.connection.as_ref().and_then(|c| c.ip))
        .collect();
    assert_eq!(per_media, [Some(ip("192.0.2.1")), Some(ip("2001:db8::1"))]);
}

#[test]
fn mixed_address_families_in_vias() {
    // §4.7
    let r = request("mult-ip-in-header");
    let hops: Vec<_> = r
        .vias()
        .into_iter()
        .map(|v| (v.host, v.port, v.received))
        .collect();
    assert_eq!(
        hops,
        [
            ("2001:db8::9:1".to_string(), Some(6050), None),
            ("192.0.2.1".to_string(), None, None),
            (
                "2001:db8::9:255".to_string(),
                None,
                Some("192.0.2.200".to_string())
            ),
        ]
    );
}

#[test]
fn ipv4_mapped_ipv6_addresses() {
    // §4.9
    let r = request("ipv4-mapped-ipv6");
    let vias = r.vias();
    assert_eq!(
        (vias[0].host.as_str(), vias[0].port),
        ("::ffff:192.0.2.10", Some(19823))
    );
    assert_eq!(vias[1].host, "::ffff:192.0.2.2");
    assert_eq!(r.contacts()[0].uri.host, "::ffff:192.0.2.2");
    let sdp = SessionDescription::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip,
        Some(ip("::ffff:192.0.2.2"))
    );
}

#[test]
fn three_colons_are_not_an_address() {
    // §4.10: RFC 3261's ABNF admits "2001:db8:::192.0.2.1"; it is not an IPv6 address. The
    // message is understood (a B2BUA never sends to a Request-URI host), but the host never
    // becomes a destination. The two-colon form is the address.
    let bad = ruri(&request("ipv6-bug-abnf-3-colons"));
    assert_eq!(bad.host, "2001:db8:::192.0.2.1");
    assert_eq!(bad.socket_addr(), None);
    let good = ruri(&request("ipv6-correct-abnf-2-colons"));
    assert_eq!(
        good.socket_addr(),
        Some((ip("2001:db8::c000:201"), 5060).into())
    );
}

#[test]
fn no_ipv6_torture_message_or_truncation_of_one_panics() {
    let dir = format!("{}/fixtures/sip/rfc5118", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = Bytes::from(std::fs::read(entry.unwrap().path()).unwrap());
        for end in 0..=data.len() {
            if let Ok(Message::Request(r)) = Message::parse(data.slice(..end)) {
                let _ = Uri::parse(&r.uri);
                let _ = (r.vias(), r.contacts(), r.to(), r.from());
            }
        }
        count += 1;
    }
    assert_eq!(count, 12, "RFC 5118 has 12 messages");
}
