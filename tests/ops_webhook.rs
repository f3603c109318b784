//! `POST /twilio/voice` over loopback HTTP: Twilio's published signature example accepted,
//! tampered or unsigned requests refused with a bare 403, the port tried both ways, JSON
//! bodies through `bodySHA256`, and the TwiML that dials the gateway.

mod common;
mod ops_support;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Digest;

use common::*;
use ops_support::*;
use sipbridge::call::Gateway;
use sipbridge::config;

const TOKEN: &str = "12345";

type Param = (&'static str, &'static str);

/// The example of Twilio's security docs: these params, this token, and for
/// `https://mycompany.com/myapp.php?foo=1&bar=2` the signature `0/KCTR6DLpKmkAf8muzZqo1nDgQ=`.
const PARAMS: [(&str, &str); 5] = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
];

/// Twilio's algorithm written out plainly here, apart from the gateway's code: URL, then the
/// params sorted by name, each name and value run together; HMAC-SHA1; base64.
fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn form(params: &[(&str, &str)]) -> Vec<u8> {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

async fn start(twilio: &str, public_addr: bool) -> Gateway {
    let (lo, hi) = rtp_range();
    let public = if public_addr {
        "public_addr = \"gw.example.com\"\n"
    } else {
        ""
    };
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n{public}[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[twilio]\nauth_token_env = \"OPS_TWILIO_TOKEN\"\n\
         {twilio}\n[[trunks]]\nname = \"pv\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"twilio\", \"127.0.0.0/8\"]\n"
    );
    let env = |k: &str| (k == "OPS_TWILIO_TOKEN").then(|| TOKEN.to_string());
    let cfg = config::parse(&text, "ops.toml", &env).expect("test config");
    Gateway::start(&cfg).await.expect("gateway start")
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// POSTs `params` form-encoded to `path`, with `headers` besides the content type.
async fn post_form(gw: &Gateway, path: &str, headers: &[(&str, &str)], params: &[Param]) -> Resp {
    let mut all = vec![FORM];
    all.extend_from_slice(headers);
    http(gw.http_addr, "POST", path, &all, &form(params)).await
}

/// POSTs `params` to `/twilio/voice`, signed as Twilio signs it for
/// `https://mycompany.com/twilio/voice` (the `public_url` these tests configure).
async fn post_signed(gw: &Gateway, params: &[Param]) -> Resp {
    let sig = sign(TOKEN, "https://mycompany.com/twilio/voice", params);
    post_form(gw, "/twilio/voice", &[("X-Twilio-Signature", &sig)], params).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilios_example_is_accepted_and_answered_with_twiml_that_dials_the_gateway() {
    // The signer above reproduces Twilio's published value.
    let published = sign(
        TOKEN,
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        &PARAMS,
    );
    assert_eq!(published, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");

    let gw = start("public_url = \"https://mycompany.com\"", true).await;
    let port = gw.sip_addr.port();
    let url = "https://mycompany.com/twilio/voice?foo=1&bar=2";
    let sig = sign(TOKEN, url, &PARAMS);
    let r = post_form(
        &gw,
        "/twilio/voice?foo=1&bar=2",
        &[("X-Twilio-Signature", &sig)],
        &PARAMS,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/xml"));
    assert_eq!(
        r.body,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Dial answerOnBridge=\"true\">\
             <Sip username=\"{USER}\" password=\"{PASSWORD}\">\
             sip:+18005551212@gw.example.com:{port};transport=udp</Sip></Dial></Response>\n"
        )
    );

    // A UK number leaves Twilio from Dublin.
    let mut uk = PARAMS;
    uk[4] = ("To", "+447846855904");
    let r = post_signed(&gw, &uk).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!(
            ">sip:+447846855904@gw.example.com:{port};transport=udp;edge=dublin</Sip>"
        )),
        "{}",
        r.body
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_unsigned_or_wrongly_keyed_requests_get_a_bare_403() {
    let gw = start("public_url = \"https://mycompany.com\"", true).await;
    let url = "https://mycompany.com/twilio/voice";
    let sig = sign(TOKEN, url, &PARAMS);
    let mut tampered = PARAMS;
    tampered[2] = ("Digits", "9999");
    let wrong_key = sign("54321", url, &PARAMS);
    let cases: [(&[Param], Option<&str>); 4] = [
        (&tampered, Some(&sig)),
        (&PARAMS, None),
        (&PARAMS, Some(&wrong_key)),
        (&PARAMS, Some("")),
    ];
    for (params, signature) in cases {
        let mut headers = vec![];
        if let Some(s) = signature {
            headers.push(("X-Twilio-Signature", s));
        }
        let r = post_form(&gw, "/twilio/voice", &headers, params).await;
        assert_eq!(r.status, 403, "{params:?} {signature:?}");
        assert_eq!(r.body, "", "a 403 says nothing more");
    }
    // The untampered request on the same gateway passes.
    let r = post_form(
        &gw,
        "/twilio/voice",
        &[("X-Twilio-Signature", &sig)],
        &PARAMS,
    )
    .await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_comes_from_host_and_forwarded_proto_with_or_without_the_port() {
    let gw = start("", true).await;
    for (signed_url, host) in [
        ("https://gw.test/twilio/voice", "gw.test:443"),
        ("https://gw.test:443/twilio/voice", "gw.test"),
    ] {
        let sig = sign(TOKEN, signed_url, &PARAMS);
        let r = post_form(
            &gw,
            "/twilio/voice",
            &[
                ("X-Twilio-Signature", &sig),
                ("X-Forwarded-Proto", "https"),
                ("Host", host),
            ],
            &PARAMS,
        )
        .await;
        assert_eq!(r.status, 200, "signed {signed_url}, Host {host}");
    }
    // Signed for another scheme: refused.
    let sig = sign(TOKEN, "http://gw.test/twilio/voice", &PARAMS);
    let r = post_form(
        &gw,
        "/twilio/voice",
        &[
            ("X-Twilio-Signature", &sig),
            ("X-Forwarded-Proto", "https"),
            ("Host", "gw.test"),
        ],
        &PARAMS,
    )
    .await;
    assert_eq!(r.status, 403);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_checked_through_body_sha256() {
    let gw = start("public_url = \"https://mycompany.com\"", true).await;
    let body = br#"{"CallSid":"CA1","To":"+447846855904"}"#;
    let hash = hex::encode(sha2::Sha256::digest(body));
    let path = format!("/twilio/voice?bodySHA256={hash}");
    let sig = sign(TOKEN, &format!("https://mycompany.com{path}"), &[]);
    let post_json = async |body: &[u8]| {
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Twilio-Signature", &sig),
        ];
        http(gw.http_addr, "POST", &path, &headers, body).await
    };
    let r = post_json(body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("edge=dublin"), "{}", r.body);
    let other = br#"{"CallSid":"CA1","To":"+447000000000"}"#;
    let r = post_json(other).await;
    assert_eq!(r.status, 403);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_address_or_a_serving_trunk_there_is_nothing_to_dial() {
    let gw = start("public_url = \"https://mycompany.com\"", false).await;
    let r = post_signed(&gw, &PARAMS).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("sip.public_addr"), "{}", r.body);
    gw.stop().await;

    // A trunk that serves other numbers only: TwiML that rejects the call.
    let gw = start("public_url = \"https://mycompany.com\"", true).await;
    let mut odd = PARAMS;
    odd[4] = ("To", "not a number");
    let r = post_signed(&gw, &odd).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<Reject reason=\"rejected\"/>"),
        "{}",
        r.body
    );
    gw.stop().await;
}

/// Behind a proxy (docs/scaling.md) the `<Sip>` URI must name the proxy, never the node that
/// happened to serve the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_twiml_dials_twilio_sip_host() {
    let twilio = "public_url = \"https://mycompany.com\"\nsip_host = \"sip.example.com:5070\"";
    for public_addr in [false, true] {
        let gw = start(twilio, public_addr).await;
        let r = post_signed(&gw, &PARAMS).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body
                .contains(">sip:+18005551212@sip.example.com:5070;transport=udp</Sip>"),
            "{}",
            r.body
        );
        gw.stop().await;
    }
}
