//! Syntax tests: header parsing, escaping, malformed input, and property tests that no input
//! panics and no change to a hashed value verifies.

use proptest::prelude::*;

use super::tests::{answer, server, users, URI};
use super::*;

#[test]
fn twilio_shaped_credentials_parse() {
    // Fixture B's shape: unquoted qop and nc, params in Twilio's order, odd spacing, an
    // uppercase response and a lowercase scheme.
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let reference = respond(
        &ch,
        "INVITE",
        URI,
        "ai-voice-agent",
        "s3cret-Passw0rd",
        "6a3bd1",
        2,
    );
    let response = reference
        .split("response=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_ascii_uppercase();
    let creds = format!(
        "digest   username=\"ai-voice-agent\",realm=\"gw.example.net\" ,nonce=\"{}\",\r\n \
         uri=\"{URI}\", response=\"{response}\", algorithm=md5, cnonce=\"6a3bd1\", \
         opaque=\"{}\", QOP=auth, nc=00000002",
        ch.nonce,
        ch.opaque.as_deref().unwrap()
    );
    assert_eq!(
        srv.verify(epoch, "INVITE", &creds, users).unwrap().username,
        "ai-voice-agent"
    );
}

#[test]
fn escaped_username_and_username_star() {
    let lookup = |u: &str| (u == "J\u{e4}s\u{f8}n \"Doe\"").then(|| "Secret, or not?".to_owned());
    let (mut srv, epoch) = server(vec![Algorithm::Sha256], true);
    let ch = Challenge::parse(&srv.challenges(epoch, false)[0]).unwrap();
    let creds = respond(
        &ch,
        "INVITE",
        URI,
        "J\u{e4}s\u{f8}n \"Doe\"",
        "Secret, or not?",
        "c",
        1,
    );
    assert!(
        creds.contains("username=\"J\u{e4}s\u{f8}n \\\"Doe\\\"\""),
        "{creds}"
    );
    assert!(srv.verify(epoch, "INVITE", &creds, lookup).is_ok());

    let creds = respond(
        &ch,
        "INVITE",
        URI,
        "J\u{e4}s\u{f8}n \"Doe\"",
        "Secret, or not?",
        "c",
        2,
    );
    let star = creds.replace(
        "username=\"J\u{e4}s\u{f8}n \\\"Doe\\\"\"",
        "username*=UTF-8''J%C3%A4s%C3%B8n%20%22Doe%22",
    );
    assert!(srv.verify(epoch, "INVITE", &star, lookup).is_ok(), "{star}");
    let both = format!("{creds}, username*=UTF-8''x");
    assert!(matches!(
        srv.verify(epoch, "INVITE", &both, lookup),
        Err(AuthError::Malformed(_))
    ));
    let latin1 = star.replace("UTF-8''", "ISO-8859-1''");
    assert!(matches!(
        srv.verify(epoch, "INVITE", &latin1, lookup),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn malformed_credentials() {
    let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
    let (_, good) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
    let cases = [
        String::new(),
        "   ".to_owned(),
        "Digest".to_owned(),
        "Digest ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Digestusername=\"a\"".to_owned(),
        "Digest username=\"unterminated".to_owned(),
        "Digest username".to_owned(),
        "Digest username=".to_owned(),
        "Digest =\"x\"".to_owned(),
        "Digest username=\"a\" realm=\"b\"".to_owned(),
        "Digest username=\"a\\".to_owned(),
        format!("{good}, realm=\"gw.example.net\""),
        format!("{good}, userhash=true"),
        good.replace("username=\"ai-voice-agent\", ", ""),
        good.replace(", response=", ", responsx="),
        good.replace("nc=00000001", "nc=0x1"),
        good.replace("nc=00000001", "nc=000000001"),
        good.replace(", nc=00000001", ""),
        good.replace("cnonce=", "xnonce="),
        good.replace("qop=auth", "qop=auth-int"),
        format!("Digest {}", "a=b, ".repeat(40)),
        format!("Digest username=\"{}\"", "x".repeat(9000)),
    ];
    for c in &cases {
        let r = srv.verify(epoch, "INVITE", c, users);
        assert!(
            matches!(r, Err(AuthError::Malformed(_))),
            "{c:?} gave {r:?}"
        );
    }
    // Quoted values may hold commas and escaped quotes; empty list elements are skipped.
    let (_, good) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 2);
    let padded = good
        .replacen("Digest ", "Digest ,, ", 1)
        .replace(", ", " ,\t");
    assert!(
        srv.verify(epoch, "INVITE", &padded, users).is_ok(),
        "{padded}"
    );
}

#[test]
fn challenge_parse_errors() {
    assert!(matches!(
        Challenge::parse("Digest nonce=\"n\""),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\""),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
        Err(AuthError::Malformed(_))
    ));
    let ch = Challenge::parse("DIGEST realm=\"r\", nonce=\"n\", stale=TRUE").unwrap();
    assert!(ch.stale && !ch.qop_auth && ch.opaque.is_none());
    assert!(Challenge::select(std::iter::empty()).is_err());
    let picked = Challenge::select([
        "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
        "Digest realm=\"r\", nonce=\"n\", algorithm=MD5",
    ])
    .unwrap();
    assert_eq!(picked.algorithm, Algorithm::Md5);
}

#[test]
fn error_messages_escape_user_text() {
    let e = AuthError::UnknownUser("evil\nINFO forged".to_owned());
    assert_eq!(e.to_string(), "unknown user \"evil\\nINFO forged\"");
    assert_eq!(AuthError::StaleNonce.to_string(), "nonce expired");
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Digest".to_owned()),
        Just(" ".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\r\n ".to_owned()),
        Just("username=\"ai-voice-agent\"".to_owned()),
        Just("realm=\"gw.example.net\"".to_owned()),
        Just("qop=auth".to_owned()),
        Just("nc=00000001".to_owned()),
        Just("username*=UTF-8''%C3%A4%".to_owned()),
        Just("algorithm=SHA-256".to_owned()),
        Just("response=\"0123\"".to_owned()),
        "[a-z*]{1,8}".prop_map(|s| s),
        "\\PC{0,6}".prop_map(|s| s),
    ]
}

proptest! {
    #[test]
    fn verify_never_panics(s in "\\PC*") {
        let (mut srv, epoch) = server(vec![Algorithm::Md5, Algorithm::Sha256], true);
        let _ = srv.verify(epoch, "INVITE", &s, users);
        let _ = Challenge::parse(&s);
    }

    #[test]
    fn verify_never_panics_on_near_valid_headers(parts in prop::collection::vec(fragment(), 0..24)) {
        let s = parts.concat();
        let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
        let _ = srv.verify(epoch, "INVITE", &s, users);
        let _ = Challenge::parse(&s);
    }

    #[test]
    fn mutated_credentials_never_panic(pos in 0usize..400, byte in any::<u8>()) {
        let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
        let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
        let mut b = creds.into_bytes();
        let i = pos % b.len();
        b[i] = byte;
        let s = String::from_utf8_lossy(&b);
        let _ = srv.verify(epoch, "INVITE", &s, users);
    }

    #[test]
    fn any_change_to_a_hashed_value_fails(
        field in prop::sample::select(vec!["username", "realm", "nonce", "uri", "response", "cnonce", "nc"]),
        pos in 0usize..64,
        byte in 0x20u8..0x7f,
    ) {
        prop_assume!(byte != b'"' && byte != b'\\' && byte != b',' && byte != b' ');
        let (mut srv, epoch) = server(vec![Algorithm::Md5], true);
        let (_, creds) = answer(&srv, epoch, "ai-voice-agent", "s3cret-Passw0rd", 1);
        let key = format!(" {field}=");
        let start = creds.find(&key).unwrap() + key.len();
        let rest = &creds[start..];
        let (lo, hi) = match rest.strip_prefix('"') {
            Some(inner) => (start + 1, start + 1 + inner.find('"').unwrap()),
            None => (start, start + rest.find(',').unwrap_or(rest.len())),
        };
        let i = lo + pos % (hi - lo);
        let old = creds.as_bytes()[i];
        prop_assume!(old != byte && !(field == "response" && old.eq_ignore_ascii_case(&byte)));
        let mut b = creds.into_bytes();
        b[i] = byte;
        let s = String::from_utf8(b).unwrap();
        prop_assert!(srv.verify(epoch, "INVITE", &s, users).is_err(), "{}", s);
    }
}
