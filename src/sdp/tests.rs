//! Offer/answer tests: a negotiation table, then the answer's exact text.

use std::net::{IpAddr, SocketAddr};

use super::*;

const ESIP_UDP: &str = include_str!("../../fixtures/sdp/twilio-esip-udp.sdp");
const ESIP_SRTP: &str = include_str!("../../fixtures/sdp/twilio-esip-srtp.sdp");
const PV_RTCP: &str = include_str!("../../fixtures/sdp/twilio-pv-rtcp.sdp");
const PV_LEGACY: &str = include_str!("../../fixtures/sdp/twilio-pv-legacy-pcmu.sdp");

fn local() -> LocalMedia {
    LocalMedia {
        ip: "203.0.113.10".parse().unwrap(),
        port: 10_000,
        session_id: 42,
        session_version: 1,
        ptime_ms: 20,
    }
}

/// A Twilio-like offer with the given media sections (CRLF added).
fn offer(media: &[&str]) -> String {
    let mut s = "v=0\r\no=root 1 1 IN IP4 172.18.165.214\r\ns=Twilio Media Gateway\r\n\
                 c=IN IP4 168.86.138.121\r\nt=0 0\r\n"
        .to_owned();
    for l in media {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

enum Want {
    Ok {
        codec: Codec,
        pt: u8,
        te: Option<u8>,
        remote: Option<SocketAddr>,
        dir: Direction,
        index: usize,
    },
    Err(SdpError),
}

fn ok(codec: Codec, pt: u8, te: Option<u8>, remote: Option<SocketAddr>, dir: Direction) -> Want {
    Want::Ok {
        codec,
        pt,
        te,
        remote,
        dir,
        index: 0,
    }
}

const AVP_0_8_101: &[&str] = &[
    "m=audio 12692 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
];

fn with(extra: &[&str]) -> String {
    let mut lines = AVP_0_8_101.to_vec();
    lines.extend_from_slice(extra);
    offer(&lines)
}

#[test]
fn negotiation_table() {
    use Codec::*;
    use Direction::*;
    let twilio = addr("168.86.138.121:12692");
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "twilio fixture 0 8 101",
            ESIP_UDP.to_owned(),
            ok(Pcmu, 0, Some(101), twilio, SendRecv),
        ),
        (
            "twilio pv with a=rtcp",
            PV_RTCP.to_owned(),
            ok(Pcmu, 0, Some(101), addr("168.86.160.17:18034"), SendRecv),
        ),
        (
            "legacy pv 0 101",
            PV_LEGACY.to_owned(),
            ok(Pcmu, 0, Some(101), addr("168.86.131.52:16454"), SendRecv),
        ),
        (
            "8 0 101 picks PCMA",
            offer(&[
                "m=audio 12692 RTP/AVP 8 0 101",
                "a=rtpmap:101 telephone-event/8000",
            ]),
            ok(Pcma, 8, Some(101), twilio, SendRecv),
        ),
        (
            "0 only: no telephone-event",
            offer(&["m=audio 12692 RTP/AVP 0"]),
            ok(Pcmu, 0, None, twilio, SendRecv),
        ),
        (
            "G.729 only",
            offer(&["m=audio 12692 RTP/AVP 18", "a=rtpmap:18 G729/8000"]),
            Want::Err(SdpError::NoCommonCodec),
        ),
        (
            "G.729 first, then PCMA",
            offer(&["m=audio 12692 RTP/AVP 18 8", "a=rtpmap:18 G729/8000"]),
            ok(Pcma, 8, None, twilio, SendRecv),
        ),
        (
            "dynamic telephone-event 96",
            offer(&[
                "m=audio 12692 RTP/AVP 0 96",
                "a=rtpmap:96 telephone-event/8000",
                "a=fmtp:96 0-15",
            ]),
            ok(Pcmu, 0, Some(96), twilio, SendRecv),
        ),
        (
            "telephone-event at 48 kHz ignored",
            offer(&[
                "m=audio 12692 RTP/AVP 0 110",
                "a=rtpmap:110 telephone-event/48000",
            ]),
            ok(Pcmu, 0, None, twilio, SendRecv),
        ),
        (
            "dynamic PCMU, lowercase name",
            offer(&[
                "m=audio 12692 RTP/AVP 97 101",
                "a=rtpmap:97 pcmu/8000",
                "a=rtpmap:101 Telephone-Event/8000",
            ]),
            ok(Pcmu, 97, Some(101), twilio, SendRecv),
        ),
        (
            "dynamic PT without rtpmap skipped",
            offer(&["m=audio 12692 RTP/AVP 97 8"]),
            ok(Pcma, 8, None, twilio, SendRecv),
        ),
        (
            "PCMU at 16 kHz is not G.711",
            offer(&["m=audio 12692 RTP/AVP 97", "a=rtpmap:97 PCMU/16000"]),
            Want::Err(SdpError::NoCommonCodec),
        ),
        (
            "stereo PCMU is not ours",
            offer(&["m=audio 12692 RTP/AVP 97 8", "a=rtpmap:97 PCMU/8000/2"]),
            ok(Pcma, 8, None, twilio, SendRecv),
        ),
        (
            "SAVP fixture, SRTP off",
            ESIP_SRTP.to_owned(),
            Want::Err(SdpError::SrtpRefused),
        ),
        (
            "AVPF",
            offer(&["m=audio 12692 RTP/AVPF 0"]),
            Want::Err(SdpError::NoCommonCodec),
        ),
        (
            "sendonly -> recvonly",
            with(&["a=sendonly"]),
            ok(Pcmu, 0, Some(101), twilio, RecvOnly),
        ),
        (
            "recvonly -> sendonly",
            with(&["a=recvonly"]),
            ok(Pcmu, 0, Some(101), twilio, SendOnly),
        ),
        (
            "inactive -> inactive",
            with(&["a=inactive"]),
            ok(Pcmu, 0, Some(101), twilio, Inactive),
        ),
        (
            "session-level sendonly",
            offer(&["a=sendonly", "m=audio 12692 RTP/AVP 0"]),
            ok(Pcmu, 0, None, twilio, RecvOnly),
        ),
        (
            "media level beats session level",
            offer(&["a=inactive", "m=audio 12692 RTP/AVP 0", "a=sendrecv"]),
            ok(Pcmu, 0, None, twilio, SendRecv),
        ),
        (
            "hold with c=0.0.0.0",
            with(&["c=IN IP4 0.0.0.0"]),
            ok(Pcmu, 0, Some(101), None, SendRecv),
        ),
        (
            "media c= overrides session",
            with(&["c=IN IP4 168.86.140.2"]),
            ok(Pcmu, 0, Some(101), addr("168.86.140.2:12692"), SendRecv),
        ),
        (
            "IPv6",
            offer(&["m=audio 4000 RTP/AVP 8", "c=IN IP6 2001:db8::7"]),
            ok(Pcma, 8, None, addr("[2001:db8::7]:4000"), SendRecv),
        ),
        (
            "video first, then audio",
            offer(&[
                "m=video 5000 RTP/AVP 96",
                "a=rtpmap:96 H264/90000",
                "m=audio 12692 RTP/AVP 8 0",
            ]),
            Want::Ok {
                codec: Pcma,
                pt: 8,
                te: None,
                remote: twilio,
                dir: SendRecv,
                index: 1,
            },
        ),
        (
            "two audio lines, first unusable",
            offer(&[
                "m=audio 7000 RTP/AVP 9",
                "a=rtpmap:9 G722/8000",
                "m=audio 7002 RTP/AVP 0",
            ]),
            Want::Ok {
                codec: Pcmu,
                pt: 0,
                te: None,
                remote: addr("168.86.138.121:7002"),
                dir: SendRecv,
                index: 1,
            },
        ),
        (
            "two usable audio lines: first wins",
            offer(&["m=audio 7000 RTP/AVP 8", "m=audio 7002 RTP/AVP 0"]),
            Want::Ok {
                codec: Pcma,
                pt: 8,
                te: None,
                remote: addr("168.86.138.121:7000"),
                dir: SendRecv,
                index: 0,
            },
        ),
        (
            "disabled audio line skipped",
            offer(&["m=audio 0 RTP/AVP 0", "m=audio 7002 RTP/AVP 8"]),
            Want::Ok {
                codec: Pcma,
                pt: 8,
                te: None,
                remote: addr("168.86.138.121:7002"),
                dir: SendRecv,
                index: 1,
            },
        ),
        (
            "only disabled audio",
            offer(&["m=audio 0 RTP/AVP 0"]),
            Want::Err(SdpError::NoAudio),
        ),
        (
            "video only",
            offer(&["m=video 5000 RTP/AVP 96"]),
            Want::Err(SdpError::NoAudio),
        ),
        ("no media", offer(&[]), Want::Err(SdpError::NoAudio)),
        (
            "no c= anywhere",
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                .to_owned(),
            Want::Err(SdpError::NoConnection),
        ),
        (
            "host name c=",
            offer(&["m=audio 4000 RTP/AVP 0", "c=IN IP4 media.example.com"]),
            Want::Err(SdpError::UnsupportedAddress("media.example.com".to_owned())),
        ),
        (
            "LF-only fixture",
            ESIP_UDP.replace("\r\n", "\n"),
            ok(Pcmu, 0, Some(101), twilio, SendRecv),
        ),
        (
            "trailing whitespace",
            ESIP_UDP.replace("\r\n", "  \t\r\n"),
            ok(Pcmu, 0, Some(101), twilio, SendRecv),
        ),
    ];
    for (name, sdp, want) in cases {
        let parsed = SessionDescription::parse(&sdp).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = negotiate(&parsed, &local());
        match (want, got) {
            (
                Want::Ok {
                    codec,
                    pt,
                    te,
                    remote,
                    dir,
                    index,
                },
                Ok(n),
            ) => {
                assert_eq!(n.codec, codec, "{name}");
                assert_eq!(n.payload_type, pt, "{name}");
                assert_eq!(n.telephone_event_pt, te, "{name}");
                assert_eq!(n.remote_rtp, remote, "{name}");
                assert_eq!(n.local_direction, dir, "{name}");
                assert_eq!(n.media_index, index, "{name}");
                check_answer_shape(name, &parsed, &n);
            }
            (Want::Err(e), Err(g)) => assert_eq!(g, e, "{name}"),
            (Want::Ok { .. }, Err(e)) => panic!("{name}: expected an answer, got {e}"),
            (Want::Err(e), Ok(n)) => panic!("{name}: expected {e}, got {}", n.answer),
        }
    }
}

/// The invariants every answer keeps, checked by parsing it back.
fn check_answer_shape(name: &str, offer: &SessionDescription, n: &Negotiated) {
    assert!(n.answer.ends_with("\r\n"), "{name}");
    assert!(
        !n.answer.replace("\r\n", "").contains('\n'),
        "{name}: bare LF"
    );
    let a = SessionDescription::parse(&n.answer).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(a.media.len(), offer.media.len(), "{name}: m-line count");
    assert_eq!(a.session_name, "sipbridge", "{name}");
    assert_eq!(
        a.connection.as_ref().and_then(|c| c.ip),
        Some(local().ip),
        "{name}"
    );
    for (i, (am, om)) in a.media.iter().zip(&offer.media).enumerate() {
        assert_eq!(am.media, om.media, "{name}");
        assert_eq!(am.proto, om.proto, "{name}");
        if i == n.media_index {
            assert_eq!(am.port, local().port, "{name}");
            let mut want = vec![n.payload_type.to_string()];
            want.extend(n.telephone_event_pt.map(|t| t.to_string()));
            assert_eq!(am.formats, want, "{name}: one codec plus telephone-event");
            assert_eq!(am.ptime, Some(20), "{name}");
            assert_eq!(am.direction, Some(n.local_direction), "{name}");
            let map = am.rtpmap(n.payload_type).unwrap();
            assert_eq!(Codec::from_rtpmap(map), Some(n.codec), "{name}");
        } else {
            assert_eq!(am.port, 0, "{name}: stream {i} must be rejected");
            assert_eq!(am.formats, om.formats, "{name}");
        }
    }
}

#[test]
fn twilio_answer_text() {
    let parsed = SessionDescription::parse(ESIP_UDP).unwrap();
    let n = negotiate(&parsed, &local()).unwrap();
    assert_eq!(
        n.answer,
        "v=0\r\n\
         o=sipbridge 42 1 IN IP4 203.0.113.10\r\n\
         s=sipbridge\r\n\
         c=IN IP4 203.0.113.10\r\n\
         t=0 0\r\n\
         m=audio 10000 RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(
        n.remote_rtcp,
        addr("168.86.138.121:12693"),
        "RTP port + 1 without a=rtcp"
    );
}

#[test]
fn rejected_video_and_ipv6_answer_text() {
    let sdp = offer(&[
        "m=video 5000 RTP/AVP 96 97",
        "a=rtpmap:96 H264/90000",
        "m=audio 4000 RTP/AVP 8 0 96",
        "a=rtpmap:96 telephone-event/8000",
        "a=fmtp:96 0-15",
        "a=sendonly",
    ]);
    let local = LocalMedia {
        ip: "2001:db8::10".parse().unwrap(),
        ..local()
    };
    let n = negotiate(&SessionDescription::parse(&sdp).unwrap(), &local).unwrap();
    assert_eq!(
        n.answer,
        "v=0\r\n\
         o=sipbridge 42 1 IN IP6 2001:db8::10\r\n\
         s=sipbridge\r\n\
         c=IN IP6 2001:db8::10\r\n\
         t=0 0\r\n\
         m=video 0 RTP/AVP 96 97\r\n\
         m=audio 10000 RTP/AVP 8 96\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:96 telephone-event/8000\r\n\
         a=fmtp:96 0-15\r\n\
         a=ptime:20\r\n\
         a=recvonly\r\n"
    );
}

#[test]
fn telephone_event_without_fmtp_answers_the_default_range() {
    let sdp = offer(&[
        "m=audio 4000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
    ]);
    let n = negotiate(&SessionDescription::parse(&sdp).unwrap(), &local()).unwrap();
    assert!(n.answer.contains("a=fmtp:101 0-16\r\n"), "{}", n.answer);
}

#[test]
fn rtcp_attribute_gives_the_rtcp_address() {
    let n = negotiate(&SessionDescription::parse(PV_RTCP).unwrap(), &local()).unwrap();
    assert_eq!(n.remote_rtcp, addr("168.86.160.17:18035"));
    let sdp = offer(&["m=audio 4000 RTP/AVP 0", "a=rtcp:4009 IN IP4 168.86.140.9"]);
    let n = negotiate(&SessionDescription::parse(&sdp).unwrap(), &local()).unwrap();
    assert_eq!(n.remote_rtcp, addr("168.86.140.9:4009"));
    let sdp = offer(&["m=audio 4000 RTP/AVP 0", "c=IN IP4 0.0.0.0"]);
    let n = negotiate(&SessionDescription::parse(&sdp).unwrap(), &local()).unwrap();
    assert_eq!((n.remote_rtp, n.remote_rtcp), (None, None));
}

#[test]
fn codec_and_direction_helpers() {
    assert_eq!(
        (Codec::Pcmu.payload_type(), Codec::Pcmu.name()),
        (0, "PCMU")
    );
    assert_eq!(
        (Codec::Pcma.payload_type(), Codec::Pcma.name()),
        (8, "PCMA")
    );
    for d in [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ] {
        assert_eq!(Direction::from_attr(d.attr()), Some(d));
        assert_eq!(d.answer().answer(), d);
        assert_eq!(d.sends(), d.answer().receives());
    }
    let ip: IpAddr = "0.0.0.0".parse().unwrap();
    assert!(ip.is_unspecified());
}

fn key(byte: u8) -> crate::media::srtp::MasterKey {
    crate::media::srtp::MasterKey::new([byte; 16], [byte; 14])
}

/// Twilio's Secure Trunking offer: SAVP with one AES_CM_128_HMAC_SHA1_80 key. The answer
/// keeps the profile, repeats the tag and suite, and gives our key.
#[test]
fn an_sdes_offer_is_answered_with_our_key() {
    use crate::media::srtp::Suite;
    let ours = key(7);
    let offer = SessionDescription::parse(ESIP_SRTP).unwrap();
    let n = negotiate_with(&offer, &local(), Encryption::Allowed(&ours)).unwrap();
    let k = n.srtp.as_ref().expect("SRTP negotiated");
    assert_eq!(k.suite, Suite::AesCm128HmacSha1_80);
    assert_eq!(k.tag, 1);
    assert_eq!(
        k.remote.to_inline(),
        "c2lwYnJpZGdlLXRlc3QtZml4dHVyZS1rZXktMzBi"
    );
    assert_eq!(k.local, ours);
    assert!(
        n.answer.contains("m=audio 10000 RTP/SAVP 0 101\r\n"),
        "{}",
        n.answer
    );
    let line = format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        ours.to_inline()
    );
    assert!(n.answer.contains(&line), "{}", n.answer);
    // The same offer where SRTP is required: the same answer.
    let required = negotiate_with(&offer, &local(), Encryption::Required(&ours)).unwrap();
    assert_eq!(required.answer, n.answer);
}

#[test]
fn which_crypto_lines_are_usable() {
    let ours = key(9);
    let inline = key(1).to_inline();
    let section = |crypto: &[String]| {
        let mut lines = vec!["m=audio 12692 RTP/SAVP 0".to_string()];
        lines.extend(crypto.iter().cloned());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        SessionDescription::parse(&offer(&refs)).unwrap()
    };
    let cases: Vec<(&str, Vec<String>, Option<u32>)> = vec![
        (
            "an unknown suite is passed over for a known one",
            vec![
                format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{inline}"),
                format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{inline}"),
            ],
            Some(2),
        ),
        (
            "a lifetime is fine",
            vec![format!(
                "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{inline}|2^31"
            )],
            Some(3),
        ),
        (
            "an MKI is not",
            vec![format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}|2^20|1:4"
            )],
            None,
        ),
        (
            "nor session parameters",
            vec![format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline} UNENCRYPTED_SRTP"
            )],
            None,
        ),
        (
            "nor a short key",
            vec!["a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_string()],
            None,
        ),
        ("nor no crypto at all", vec![], None),
    ];
    for (what, crypto, tag) in cases {
        let got = negotiate_with(&section(&crypto), &local(), Encryption::Allowed(&ours));
        match tag {
            Some(t) => assert_eq!(got.unwrap().srtp.unwrap().tag, t, "{what}"),
            None => assert_eq!(got.unwrap_err(), SdpError::NoCommonCodec, "{what}"),
        }
    }
}

#[test]
fn policy_refusals_say_which() {
    let ours = key(3);
    let plain = SessionDescription::parse(ESIP_UDP).unwrap();
    let srtp = SessionDescription::parse(ESIP_SRTP).unwrap();
    assert_eq!(
        negotiate_with(&plain, &local(), Encryption::Required(&ours)).unwrap_err(),
        SdpError::EncryptionRequired
    );
    assert_eq!(
        negotiate_with(&srtp, &local(), Encryption::Off).unwrap_err(),
        SdpError::SrtpRefused
    );
    // Plain RTP where SRTP is merely allowed: no crypto in the answer.
    let n = negotiate_with(&plain, &local(), Encryption::Allowed(&ours)).unwrap();
    assert!(
        n.srtp.is_none() && !n.answer.contains("crypto"),
        "{}",
        n.answer
    );
}
