use super::*;

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
/// Twilio's published example (its security docs and the official libraries' tests).
const EXPECTED: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

fn vector_params() -> Vec<(String, String)> {
    [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[test]
fn twilios_published_vector_signs_and_validates() {
    assert_eq!(signature(TOKEN, URL, &vector_params()), EXPECTED);
    // Parameter order in the body does not matter: they are sorted.
    let mut reversed = vector_params();
    reversed.reverse();
    assert!(validate(TOKEN, URL, &form_body(&reversed), true, EXPECTED));
}

#[test]
fn a_tampered_request_fails() {
    let mut p = vector_params();
    p[4].1 = "+18005551213".into();
    assert!(!validate(TOKEN, URL, &form_body(&p), true, EXPECTED));
    let extra = [vector_params(), vec![("Extra".into(), "1".into())]].concat();
    assert!(!validate(TOKEN, URL, &form_body(&extra), true, EXPECTED));
    let body = form_body(&vector_params());
    assert!(!validate(
        TOKEN,
        &URL.replace("foo=1", "foo=2"),
        &body,
        true,
        EXPECTED
    ));
    assert!(!validate("54321", URL, &body, true, EXPECTED));
    assert!(!validate(TOKEN, URL, &body, true, ""));
    assert!(!validate(
        TOKEN,
        URL,
        &body,
        true,
        &EXPECTED.replace('0', "1")
    ));
}

#[test]
fn the_port_is_tried_both_ways() {
    let body = form_body(&vector_params());
    // Signed without a port, requested with the default one (and the other way round).
    let with = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert!(validate(TOKEN, with, &body, true, EXPECTED));
    let sig_with = signature(TOKEN, with, &vector_params());
    assert!(validate(TOKEN, URL, &body, true, &sig_with));
    // A non-default port signed as such also passes; a different host never does.
    let odd = "http://gw.example.com:8080/twilio/voice";
    let sig = signature(TOKEN, odd, &[]);
    assert!(validate(TOKEN, odd, b"", true, &sig));
    assert!(!validate(
        TOKEN,
        "http://gw.example.org:8080/twilio/voice",
        b"",
        true,
        &sig
    ));
    assert_eq!(with_default_port("http://[::1]/x"), "http://[::1]:80/x");
    assert_eq!(
        without_port("http://[::1]:8080/x?a=b"),
        "http://[::1]/x?a=b"
    );
    assert_eq!(without_port("https://h.example/p"), "https://h.example/p");
}

#[test]
fn json_bodies_are_checked_through_body_sha256() {
    let body = br#"{"CallSid":"CA1","To":"+447846855904"}"#;
    let hash = hex::encode(Sha256::digest(body));
    let url = format!("https://gw.example.com/twilio/voice?bodySHA256={hash}");
    let sig = signature(TOKEN, &url, &[]);
    assert!(validate(TOKEN, &url, body, false, &sig));
    // Same URL and signature, different body: the hash gives it away.
    assert!(!validate(TOKEN, &url, br#"{"CallSid":"CA2"}"#, false, &sig));
}

#[test]
fn repeated_names_sort_by_value_too() {
    let p: Vec<(String, String)> = vec![("a".into(), "2".into()), ("a".into(), "1".into())];
    let manual = {
        let mut mac = Hmac::<Sha1>::new_from_slice(b"k").unwrap();
        mac.update(b"http://x/a1a2");
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    assert_eq!(signature("k", "http://x/", &p), manual);
}

#[test]
fn forms_decode_like_browsers_encode() {
    let p = parse_form(b"To=%2B447846855904&Caller=a+b&Empty=&Flag&Bad=%zz&Pct=100%25");
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+447846855904"));
    assert_eq!(get("Caller"), Some("a b"));
    assert_eq!(get("Empty"), Some(""));
    assert_eq!(get("Flag"), Some(""));
    assert_eq!(get("Bad"), Some("%zz"));
    assert_eq!(get("Pct"), Some("100%"));
}

fn config(extra: &str) -> Config {
    let text = format!(
        "[[trunks]]\nname = \"esip\"\nallowed_addresses = [\"twilio\"]\n\
         [[trunks]]\nname = \"pv\"\nusername = \"ai-voice-agent\"\npassword = \"p&ss<\\\"word>\"\n\
         numbers = [\"+447846855904\", \"+15551234567\"]\n{extra}"
    );
    crate::config::parse(&text, "t.toml", &|_| None).unwrap()
}

#[test]
fn twiml_dials_the_gateway_with_the_trunks_credentials() {
    let c = config("");
    let x = dial_twiml(
        &c,
        &sip_host("gw.example.com", 5060, Transport::Udp),
        "+447846855904",
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Dial answerOnBridge=\"true\">\
         <Sip username=\"ai-voice-agent\" password=\"p&amp;ss&lt;&quot;word&gt;\">\
         sip:+447846855904@gw.example.com;transport=udp;edge=dublin</Sip></Dial></Response>\n"
    );
    // A US number: no edge unless configured; a port other than 5060 is written out.
    let x = dial_twiml(
        &c,
        &sip_host("203.0.113.10", 5070, Transport::Udp),
        "+15551234567",
        Transport::Udp,
    )
    .unwrap();
    assert!(
        x.contains(">sip:+15551234567@203.0.113.10:5070;transport=udp</Sip>"),
        "{x}"
    );
    let c = config("[twilio]\nedge = \"frankfurt\"\n");
    let x = dial_twiml(
        &c,
        &sip_host("2001:db8::1", 5060, Transport::Udp),
        "+447846855904",
        Transport::Udp,
    )
    .unwrap();
    assert!(
        x.contains("@[2001:db8::1];transport=udp;edge=frankfurt<"),
        "{x}"
    );
    let x = dial_twiml(
        &c,
        &sip_host("gw.example.com:5080", 5060, Transport::Udp),
        "sip:+447846855904@x.sip.twilio.com",
        Transport::Udp,
    )
    .unwrap();
    assert!(x.contains(">sip:+447846855904@gw.example.com:5080;"), "{x}");
}

#[test]
fn numbers_no_digest_trunk_serves_are_refused() {
    let c = config("");
    assert!(dial_twiml(
        &c,
        &sip_host("gw.example.com", 5060, Transport::Udp),
        "+33123456789",
        Transport::Udp
    )
    .is_err());
    assert!(dial_twiml(
        &c,
        &sip_host("gw.example.com", 5060, Transport::Udp),
        "",
        Transport::Udp
    )
    .is_err());
    assert!(dial_twiml(
        &c,
        &sip_host("gw.example.com", 5060, Transport::Udp),
        "+44<script>",
        Transport::Udp
    )
    .is_err());
}

/// With a TLS listener the webhook dials it: transport=tls on the TLS port (left out at
/// 5061, the UDP port in public_addr ignored) and secure=true for SRTP, unless the trunk
/// refuses SRTP.
#[test]
fn over_tls_the_sip_uri_asks_for_secure_trunking() {
    let c = config("");
    let x = dial_twiml(
        &c,
        &sip_host("gw.example.com:5060", 5061, Transport::Tls),
        "+447846855904",
        Transport::Tls,
    )
    .unwrap();
    assert!(
        x.contains(">sip:+447846855904@gw.example.com;transport=tls;secure=true;edge=dublin<"),
        "{x}"
    );
    assert_eq!(
        sip_host("2001:db8::1", 5071, Transport::Tls),
        "[2001:db8::1]:5071"
    );
    let c = config("media_encryption = \"none\"\n");
    let x = dial_twiml(&c, "gw.example.com", "+447846855904", Transport::Tls).unwrap();
    assert!(x.contains(";transport=tls;edge=dublin<"), "{x}");
}
