//! `twiml_url`: where hosted agents (ElevenLabs' register-call, Hume's Twilio webhook, a
//! customer's own TwiML app) hand out a call's stream URL. The gateway asks as Twilio's voice
//! webhook would (a signed form POST), or with a JSON body for APIs that want one, and takes
//! the first `<Connect><Stream url>` of the TwiML answer with its `<Parameter>`s; an answer
//! that is JSON with a `joinUrl` (Ultravox's call creation) is taken too
//! (reference/ai-legs.md §1.5). Anything else is a clear error and 503 to the caller.

use std::time::Duration;

use crate::agent::percent_encode;
use crate::config::{TwimlFetch, TWIML_JSON_PLACEHOLDERS};

/// A TwiML answer larger than this is not one.
const MAX_ANSWER: usize = 64 * 1024;

/// What the call's facts are, for the request.
#[derive(Clone, Debug)]
pub struct CallFacts {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub sip_call_id: String,
    pub x_headers: Vec<(String, String)>,
}

/// Where to stream, as the answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTarget {
    pub url: String,
    /// `<Parameter name value/>`s, in order.
    pub parameters: Vec<(String, String)>,
}

/// Asks `fetch.url` for this call's stream.
pub async fn fetch(
    fetch: &TwimlFetch,
    call: &CallFacts,
    timeout: Duration,
) -> Result<StreamTarget, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("twiml_url: cannot build an HTTP client: {e}"))?;
    let mut request = client.post(&fetch.url);
    for (name, value) in &fetch.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = match &fetch.json {
        Some(template) => request
            .header("Content-Type", "application/json")
            .body(fill_json(template, call)),
        None => {
            let params = form(call);
            if let Some(token) = &fetch.auth_token {
                let sig = crate::http::twiml::signature(token, &fetch.url, &params);
                request = request.header("X-Twilio-Signature", sig);
            }
            request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encode_form(&params))
        }
    };
    let url = redact(&fetch.url);
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("twiml_url {url}: {}", error_chain(&e.without_url())))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        format!(
            "twiml_url {url}: reading the answer: {}",
            error_chain(&e.without_url())
        )
    })? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!(
                "twiml_url {url}: the answer is over {MAX_ANSWER} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let start: String = text.chars().take(200).collect();
        return Err(format!("twiml_url {url}: HTTP {status} {}", start.trim()));
    }
    parse_answer(&text).map_err(|e| format!("twiml_url {url}: {e}"))
}

/// The answer: TwiML with `<Connect><Stream>`, or JSON with `joinUrl`.
pub fn parse_answer(text: &str) -> Result<StreamTarget, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| format!("the JSON answer does not parse: {e}"))?;
        let url = v["joinUrl"]
            .as_str()
            .ok_or("the JSON answer has no joinUrl (the stream URL)")?;
        return Ok(StreamTarget {
            url: ws_url(url)?,
            parameters: Vec::new(),
        });
    }
    let doc = roxmltree::Document::parse(trimmed)
        .map_err(|e| format!("the answer is neither TwiML nor JSON: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!(
            "TwiML must be a <Response>, not <{}>",
            root.tag_name().name()
        ));
    }
    let verbs: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    let stream = verbs
        .iter()
        .filter(|v| v.tag_name().name() == "Connect")
        .flat_map(|c| c.children())
        .find(|n| n.is_element() && n.tag_name().name() == "Stream");
    let Some(stream) = stream else {
        let names: Vec<String> = verbs
            .iter()
            .map(|v| {
                let inner: Vec<&str> = v
                    .children()
                    .filter(|n| n.is_element())
                    .map(|n| n.tag_name().name())
                    .collect();
                if inner.is_empty() {
                    format!("<{}>", v.tag_name().name())
                } else {
                    format!("<{}><{}>", v.tag_name().name(), inner.join("><"))
                }
            })
            .collect();
        let found = if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        };
        let hint = if names.iter().any(|n| n.starts_with("<Start><Stream")) {
            " (<Start><Stream> is a one-way fork; a bot needs <Connect><Stream>)"
        } else {
            ""
        };
        return Err(format!(
            "the TwiML has no <Connect><Stream>: found {found}{hint}"
        ));
    };
    let url = stream
        .attribute("url")
        .ok_or("<Stream> has no url attribute")?;
    let parameters = stream
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "Parameter")
        .filter_map(|p| {
            Some((
                p.attribute("name")?.to_string(),
                p.attribute("value").unwrap_or("").to_string(),
            ))
        })
        .collect();
    Ok(StreamTarget {
        url: ws_url(url)?,
        parameters,
    })
}

fn ws_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.starts_with("wss://") || url.starts_with("ws://") {
        Ok(url.to_string())
    } else {
        Err(format!(
            "the stream URL {:?} is not ws:// or wss://",
            redact(url)
        ))
    }
}

/// Twilio's voice-webhook parameters for an inbound call that is ringing.
fn form(call: &CallFacts) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", call.account_sid.as_str()),
        ("CallSid", call.call_sid.as_str()),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
        ("Caller", call.from.as_str()),
        ("Called", call.to.as_str()),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.extend(
        call.x_headers
            .iter()
            .map(|(k, v)| (format!("SipHeader_{k}"), v.clone())),
    );
    params
}

fn encode_form(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(k, &mut out);
        out.push('=');
        percent_encode(v, &mut out);
    }
    out
}

/// The JSON template with each of [`TWIML_JSON_PLACEHOLDERS`] replaced by the call's value,
/// escaped for inside a JSON string.
pub fn fill_json(template: &str, call: &CallFacts) -> String {
    let escaped = |s: &str| {
        let quoted = serde_json::Value::String(s.to_string()).to_string();
        quoted[1..quoted.len() - 1].to_string()
    };
    // In the placeholders' order.
    let values = [
        &call.from,
        &call.to,
        &call.call_sid,
        &call.account_sid,
        &call.sip_call_id,
    ];
    let mut out = template.to_string();
    for (placeholder, value) in TWIML_JSON_PLACEHOLDERS.iter().zip(values) {
        out = out.replace(placeholder, &escaped(value));
    }
    out
}

/// The URL without its query, which may carry a key (Hume's webhook takes `api_key=`).
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallFacts {
        CallFacts {
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+447700900123".into(),
            to: "+447846855904".into(),
            sip_call_id: "a\"b@host".into(),
            x_headers: vec![("X-Customer".into(), "42 & co".into())],
        }
    }

    #[tokio::test]
    async fn https_speaks_tls_with_the_ring_provider_and_fails_cleanly_on_a_non_tls_peer() {
        crate::agent::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut hello)
                .await
                .unwrap();
            let _ =
                tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad\r\n\r\n").await;
            hello
        });
        let fetch = TwimlFetch {
            url: format!("https://localhost:{port}/voice?key=secret"),
            headers: Vec::new(),
            json: None,
            auth_token: None,
        };
        let err = super::fetch(&fetch, &call(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!("twiml_url https://localhost:{port}/voice: ")),
            "{err}"
        );
        assert!(
            !err.contains("secret"),
            "the query stays out of errors: {err}"
        );
        // A TLS handshake record (0x16) came first.
        assert_eq!(peer.await.unwrap()[0], 0x16);
    }

    #[test]
    fn connect_stream_with_parameters_is_taken() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response><Connect><Stream url="wss://bot.example/ws?x=1&amp;y=2">
              <Parameter name="agent" value="sales"/><Parameter name="lang" value="en"/>
            </Stream></Connect></Response>"#;
        assert_eq!(
            parse_answer(twiml),
            Ok(StreamTarget {
                url: "wss://bot.example/ws?x=1&y=2".into(),
                parameters: vec![
                    ("agent".into(), "sales".into()),
                    ("lang".into(), "en".into())
                ],
            })
        );
    }

    #[test]
    fn ultravox_style_json_with_a_join_url_is_taken() {
        let t =
            parse_answer(r#"{"callId":"c1","joinUrl":"wss://voice.ultravox.ai/calls/c1/twilio"}"#)
                .unwrap();
        assert_eq!(t.url, "wss://voice.ultravox.ai/calls/c1/twilio");
        assert!(parse_answer(r#"{"callId":"c1"}"#)
            .unwrap_err()
            .contains("joinUrl"));
    }

    #[test]
    fn other_twiml_is_a_clear_error() {
        let e = parse_answer("<Response><Say>Hello</Say><Hangup/></Response>").unwrap_err();
        assert_eq!(
            e,
            "the TwiML has no <Connect><Stream>: found <Say>, <Hangup>"
        );
        let e = parse_answer(r#"<Response><Start><Stream url="wss://x/y"/></Start></Response>"#)
            .unwrap_err();
        assert!(e.contains("one-way fork"), "{e}");
        let e =
            parse_answer(r#"<Response><Connect><Stream url="https://x/y"/></Connect></Response>"#)
                .unwrap_err();
        assert!(e.contains("not ws:// or wss://"), "{e}");
        assert!(parse_answer("<html>busy</html>")
            .unwrap_err()
            .contains("<Response>"));
        assert!(parse_answer("Service Unavailable")
            .unwrap_err()
            .contains("neither TwiML nor JSON"));
    }

    #[test]
    fn the_form_is_twilios_voice_webhook() {
        let body = encode_form(&form(&call()));
        assert!(
            body.starts_with("AccountSid=AC1&CallSid=CA1&From=%2B447700900123&To=%2B447846855904")
        );
        assert!(body.contains("&CallStatus=ringing&Direction=inbound&ApiVersion=2010-04-01"));
        assert!(
            body.ends_with("&SipHeader_X-Customer=42%20%26%20co"),
            "{body}"
        );
    }

    #[test]
    fn the_json_template_gets_escaped_values() {
        let t = r#"{"agent_id":"a1","from_number":"{from}","to_number":"{to}","conversation_initiation_client_data":{"dynamic_variables":{"sip":"{sip_call_id}"}}}"#;
        let v: serde_json::Value = serde_json::from_str(&fill_json(t, &call())).unwrap();
        assert_eq!(v["from_number"], "+447700900123");
        assert_eq!(
            v["conversation_initiation_client_data"]["dynamic_variables"]["sip"],
            "a\"b@host"
        );
    }
}
