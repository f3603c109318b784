use super::*;
use crate::config::Credentials;
use crate::sip::acl::AddressList;
use crate::sip::testing::{invite, request};

fn trunk(name: &str, user: Option<&str>, allowed: &[&str], numbers: &[&str]) -> Trunk {
    Trunk {
        name: name.into(),
        credentials: user.map(|u| Credentials {
            username: u.into(),
            password: "pw".into(),
        }),
        allowed: AddressList::parse(&allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap(),
        numbers: numbers.iter().map(|n| n.to_string()).collect(),
        symmetric_rtp: false,
        media_encryption: Default::default(),
    }
}

fn route(numbers: &[&str], agent: &str) -> Route {
    Route {
        numbers: numbers.iter().map(|n| n.to_string()).collect(),
        agent: agent.into(),
    }
}

fn test_clock() -> NonceClock {
    NonceClock {
        epoch: Instant::now(),
        unix_ms_at_epoch: 1_800_000_000_000,
    }
}

fn router(trunks: Vec<Trunk>, routes: Vec<Route>) -> Router {
    Router::new(
        trunks,
        routes,
        "r",
        ChallengeKind::Proxy,
        [7; 32],
        test_clock(),
    )
}

#[test]
fn twilio_preset_admits_twilio_and_rejects_others_with_403() {
    let mut r = router(
        vec![trunk("esip", None, &["twilio"], &[])],
        vec![route(&[], "echo")],
    );
    let req = invite("c", "z9hG4bK1", 1, "");
    let twilio = "54.171.127.193".parse().unwrap();
    assert!(
        matches!(r.admit(Instant::now(), &req, twilio), Admission::Accept(a) if a.trunk == "esip")
    );
    let other = "198.51.100.7".parse().unwrap();
    assert!(matches!(
        r.admit(Instant::now(), &req, other),
        Admission::Reject { status: 403, .. }
    ));
}

#[test]
fn trunk_numbers_and_routes_match_normalised_numbers() {
    let mut r = router(
        vec![trunk("uk", None, &["10.0.0.0/8"], &["447846855904"])],
        vec![route(&["447846855904"], "room"), route(&[], "echo")],
    );
    let ip = "10.1.1.1".parse().unwrap();
    // Request-URI user "+447846855904" matches the normalised trunk number.
    let req = invite("c", "z9hG4bK1", 1, "");
    match r.admit(Instant::now(), &req, ip) {
        Admission::Accept(a) => {
            assert_eq!(
                (a.agent.as_str(), a.caller.as_str()),
                ("room", "+447700900123")
            );
            assert_eq!(a.called, "+447846855904", "the number as presented");
        }
        other => panic!("{other:?}"),
    }
    // Escaped as some edges send it: unescaped for the agent, normalised for matching.
    let text = String::from_utf8(req.to_bytes().to_vec())
        .unwrap()
        .replacen("sip:+447846855904@gw", "sip:%2B447846855904@gw", 1);
    let escaped = crate::sip::testing::parse_request(text.as_bytes());
    match r.admit(Instant::now(), &escaped, ip) {
        Admission::Accept(a) => assert_eq!(
            (a.agent.as_str(), a.called.as_str()),
            ("room", "+447846855904")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.route("441234").as_deref(), Some("echo"), "default route");
    let other_number = request("INVITE", "d", "z9hG4bK2", 1, None, "", "")
        .to_bytes()
        .to_vec();
    let text =
        String::from_utf8(other_number)
            .unwrap()
            .replacen("+447846855904@gw", "+15550001111@gw", 1);
    let req = crate::sip::testing::parse_request(text.as_bytes());
    assert!(matches!(
        r.admit(Instant::now(), &req, ip),
        Admission::Reject { status: 403, .. }
    ));
}

#[test]
fn no_route_is_404() {
    let mut r = router(
        vec![trunk("t", None, &["10.0.0.0/8"], &[])],
        vec![route(&["441111"], "echo")],
    );
    let req = invite("c", "z9hG4bK1", 1, "");
    assert!(matches!(
        r.admit(Instant::now(), &req, "10.0.0.1".parse().unwrap()),
        Admission::Reject { status: 404, .. }
    ));
}

#[test]
fn www_challenge_option_uses_401() {
    let mut r = Router::new(
        vec![trunk("t", Some("u"), &[], &[])],
        vec![route(&[], "echo")],
        "realm",
        ChallengeKind::Www,
        [7; 32],
        test_clock(),
    );
    let req = invite("c", "z9hG4bK1", 1, "");
    match r.admit(Instant::now(), &req, "10.0.0.1".parse().unwrap()) {
        Admission::Challenge {
            status,
            header,
            values,
            failure: None,
        } => {
            assert_eq!((status, header), (401, HeaderName::WwwAuthenticate));
            assert!(values[0].contains("realm=\"realm\""));
        }
        other => panic!("{other:?}"),
    }
}
