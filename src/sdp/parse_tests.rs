//! Parser tests: fields, tolerance, malformed lines with their numbers, and no panics.

use proptest::prelude::*;

use super::*;

const ESIP_SRTP: &str = include_str!("../../fixtures/sdp/twilio-esip-srtp.sdp");

#[test]
fn parses_the_twilio_srtp_fixture() {
    let sd = SessionDescription::parse(ESIP_SRTP).unwrap();
    let o = sd.origin.as_ref().unwrap();
    assert_eq!(
        (o.username.as_str(), o.address.as_str()),
        ("root", "172.18.165.214")
    );
    assert_eq!(o.session_id, "1311022221");
    assert_eq!(sd.session_name, "Twilio Media Gateway");
    assert_eq!(
        sd.connection.as_ref().unwrap().ip,
        Some("168.86.138.121".parse().unwrap())
    );
    assert_eq!(sd.direction, None);
    let [m] = sd.media.as_slice() else {
        panic!("one m-line")
    };
    assert_eq!(
        (m.media.as_str(), m.port, m.proto.as_str()),
        ("audio", 12692, "RTP/SAVP")
    );
    assert_eq!(m.formats, ["0", "8", "101"]);
    assert_eq!(m.payload_types().collect::<Vec<_>>(), [0, 8, 101]);
    assert_eq!(m.crypto.len(), 1);
    assert_eq!(m.crypto[0].tag, 1);
    assert_eq!(m.crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
    assert!(m.crypto[0].key_params.starts_with("inline:"));
    assert_eq!(m.crypto[0].session_params, "");
    assert_eq!(m.rtpmap(101).unwrap().encoding, "telephone-event");
    assert_eq!(m.rtpmap(8).unwrap().clock_rate, 8000);
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert_eq!((m.ptime, m.maxptime), (Some(20), Some(20)));
    assert_eq!(m.direction, Some(Direction::SendRecv));
    assert_eq!(m.line, 6);
    assert_eq!(sd.direction_of(m), Direction::SendRecv);
}

#[test]
fn tolerant_of_odd_but_harmless_input() {
    let sdp =
        "v=0\n\no=- 1 2 IN IP4 10.0.0.1 \nb=AS:64\nx=unknown type\ns=-\nc=IN IP4 224.2.1.1/127/3\n\
               t=0 0\nm=audio 4000/2 RTP/AVP 0 97\na=rtpmap:97 opus/48000/2\na=ptime:20.0\n\
               a=fmtp:97 minptime=10;useinbandfec=1\na=unknown-attr:with:colons\na=ice-lite\n\
               a=rtcp:4001\n\n";
    let sd = SessionDescription::parse(sdp).unwrap();
    assert_eq!(sd.connection.as_ref().unwrap().address, "224.2.1.1");
    let m = &sd.media[0];
    assert_eq!(m.port_count, Some(2));
    assert_eq!(m.rtpmap(97).unwrap().channels, Some(2));
    assert_eq!(m.ptime, Some(20));
    assert_eq!(m.fmtp(97), Some("minptime=10;useinbandfec=1"));
    assert_eq!(
        m.rtcp,
        Some(RtcpAttr {
            port: 4001,
            connection: None
        })
    );
    // A repeated rtpmap for one payload type keeps the first.
    let sd = SessionDescription::parse(
        "v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:0 G729/8000\r\n",
    )
    .unwrap();
    assert_eq!(sd.media[0].rtpmap(0).unwrap().encoding, "PCMU");
}

#[test]
fn malformed_lines_give_their_number() {
    let head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n";
    let cases = [
        ("", 0),
        ("\r\n\r\n", 0),
        ("x", 1),
        ("v=1\r\n", 1),
        ("s=-\r\nv=0\r\n", 1),
        ("\r\nV=0\r\n", 2),
        ("v=0\r\nv=0\r\n", 2),
        ("v=0\r\no=- 1 IN IP4 10.0.0.1\r\n", 2),
        ("v=0\r\nbad line\r\n", 2),
        ("v=0\r\n=x\r\n", 2),
        ("v=0\r\nc=IN IP4\r\n", 2),
        ("v=0\r\nc=ATM NSAP 47.0005\r\n", 2),
        ("v=0\r\nc=IN IP5 10.0.0.1\r\n", 2),
        ("v=0\r\nc=IN IP4 2001:db8::1\r\n", 2),
        ("v=0\r\nc=IN IP6 10.0.0.1\r\n", 2),
        ("v=0\r\nc=IN IP4 10.0.0.1 extra\r\n", 2),
        ("v=0\r\na=x\rinjected\r\n", 2),
    ];
    for (sdp, line) in cases {
        match SessionDescription::parse(sdp) {
            Err(SdpError::Malformed { line: l, .. }) => assert_eq!(l, line, "{sdp:?}"),
            other => panic!("{sdp:?}: {other:?}"),
        }
    }
    let media_cases = [
        "m=audio 4000 RTP/AVP",
        "m=audio RTP/AVP 0",
        "m=audio 70000 RTP/AVP 0",
        "m=audio -1 RTP/AVP 0",
        "m=audio 4000/x RTP/AVP 0",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8k",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/1/1",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 /8000",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:128 X/8000",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:300 X/8000",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:x X/8000",
        "m=audio 4000 RTP/AVP 0\r\na=fmtp",
        "m=audio 4000 RTP/AVP 0\r\na=fmtp: 0-16",
        "m=audio 4000 RTP/AVP 0\r\na=ptime:fast",
        "m=audio 4000 RTP/AVP 0\r\na=ptime:-20",
        "m=audio 4000 RTP/AVP 0\r\na=maxptime:",
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:",
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4",
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:99999",
    ];
    for tail in media_cases {
        let sdp = format!("{head}{tail}\r\n");
        let line = 5 + tail.split("\r\n").count();
        match SessionDescription::parse(&sdp) {
            Err(SdpError::Malformed { line: l, reason }) => {
                assert_eq!(l, line, "{tail:?}: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{tail:?}: {other:?}"),
        }
    }
    let err = SessionDescription::parse(&format!("{head}m=audio 99999 RTP/AVP 0\r\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed SDP at line 6: port \"99999\" is out of range"
    );
    assert!(SessionDescription::parse(&"a".repeat(70_000)).is_err());
}

fn sdp_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("v=0".to_owned()),
        Just("o=root 1 1 IN IP4 172.18.165.214".to_owned()),
        Just("c=IN IP4 168.86.138.121".to_owned()),
        Just("c=IN IP6 ::".to_owned()),
        Just("c=IN IP4 0.0.0.0".to_owned()),
        Just("m=audio 12692 RTP/AVP 0 8 101".to_owned()),
        Just("m=audio 0 RTP/AVP 0".to_owned()),
        Just("m=video 5000 RTP/AVP 96".to_owned()),
        Just("m=audio 65535 RTP/AVP 96".to_owned()),
        Just("a=rtpmap:101 telephone-event/8000".to_owned()),
        Just("a=rtpmap:96 PCMA/8000".to_owned()),
        Just("a=fmtp:101 0-16".to_owned()),
        Just("a=sendonly".to_owned()),
        Just("a=rtcp:65535".to_owned()),
        Just("a=ptime:20".to_owned()),
        "[a-z]=[ -~]{0,20}".prop_map(|s| s),
        "m=audio [0-9]{1,6} RTP/AVP( [0-9]{1,3}){0,4}".prop_map(|s| s),
        "a=(rtpmap|fmtp|rtcp|ptime):[ -~]{0,16}".prop_map(|s| s),
        "\\PC{0,12}".prop_map(|s| s),
    ]
}

proptest! {
    #[test]
    fn parse_and_negotiate_never_panic(s in "\\PC*") {
        if let Ok(sd) = SessionDescription::parse(&s) {
            let _ = negotiate(&sd, &local_media());
        }
    }

    #[test]
    fn near_valid_sdp_never_panics(lines in prop::collection::vec(sdp_line(), 0..16), lf in any::<bool>()) {
        let sep = if lf { "\n" } else { "\r\n" };
        let text = lines.join(sep);
        if let Ok(sd) = SessionDescription::parse(&text) {
            if let Ok(n) = negotiate(&sd, &local_media()) {
                // Any answer we produce parses back with the same number of m-lines.
                let back = SessionDescription::parse(&n.answer).unwrap();
                prop_assert_eq!(back.media.len(), sd.media.len());
            }
        }
    }
}

fn local_media() -> LocalMedia {
    LocalMedia {
        ip: "203.0.113.10".parse().unwrap(),
        port: 10_000,
        session_id: 1,
        session_version: 1,
        ptime_ms: 20,
    }
}
