//! `POST /twilio/voice`: the TwiML webhook of a Twilio number. It checks
//! `X-Twilio-Signature` exactly as Twilio's own validators do and answers with TwiML that dials
//! this gateway: `<Dial answerOnBridge="true"><Sip username=.. password=..>` to the called
//! number at `sip.public_addr`, with the Twilio edge to leave from.
//!
//! The signature (Twilio's "webhooks security" page and its official libraries): HMAC-SHA1,
//! keyed with the account's auth token, over the full URL Twilio requested followed by each
//! POST parameter's name and value, sorted by name (then value), with nothing between them;
//! base64 with padding. Twilio is inconsistent about the port, so the URL is tried both
//! without a port and with the scheme's default one. A JSON body is signed differently: its
//! SHA-256 (hex) rides in the URL as `bodySHA256`, and the signature covers the URL alone.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::call::{has_port, host_part, Shared};
use crate::config::{normalize_number, Config, MediaEncryption};
use crate::sip::transport::Transport;

/// The longest `<Sip>` URI Twilio takes.
const MAX_SIP_URI: usize = 255;

/// Twilio's signature of a request to `url` with these POST parameters.
pub fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(token.as_bytes()) else {
        // HMAC takes keys of any length; this arm cannot be reached.
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is Twilio's signature of a request to `url` with `body`. `form` says the
/// body is `application/x-www-form-urlencoded` (its parameters are signed); any other body is
/// signed through `bodySHA256` in the URL, or not at all.
pub fn validate(token: &str, url: &str, body: &[u8], form: bool, given: &str) -> bool {
    let (params, body_ok) = match query_param(url, "bodySHA256") {
        Some(hash) => {
            let actual = hex::encode(Sha256::digest(body));
            (
                Vec::new(),
                super::same_secret(&actual, &hash.to_ascii_lowercase()),
            )
        }
        None if form => (parse_form(body), true),
        None => (Vec::new(), true),
    };
    let mut ok = false;
    for candidate in [without_port(url), with_default_port(url)] {
        // Both candidates are always computed: no early exit to time.
        ok |= super::same_secret(&signature(token, &candidate, &params), given);
    }
    ok && body_ok
}

/// `scheme://host[:port]rest` split up; `None` for anything else.
fn split_url(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    Some((scheme, host, port, tail))
}

/// The URL with any port removed.
pub fn without_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, host, Some(_), tail)) => format!("{scheme}://{host}{tail}"),
        _ => url.to_string(),
    }
}

/// The URL with the scheme's default port added when it has none.
pub fn with_default_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, host, None, tail)) => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{host}:{port}{tail}")
        }
        _ => url.to_string(),
    }
}

/// The first value of `name` in the URL's query, decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    parse_form(query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte), keeping order
/// and repeats.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL Twilio requested: `twilio.public_url` + path and query, else the scheme
/// (`X-Forwarded-Proto`, else http) and the `Host` header.
pub fn request_url(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(base) = public_url {
        return format!("{base}{path}");
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("http");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

/// Escapes text for XML attributes and content.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The user part to dial for the webhook's `To`: an E.164 number as is, the user of a SIP
/// URI; only characters that need no escaping in a SIP URI user part.
fn dial_user(to: &str) -> Option<String> {
    let to = to.trim();
    let user = match to.strip_prefix("sip:").or_else(|| to.strip_prefix("sips:")) {
        Some(uri) => uri.split('@').next()?,
        None => to.strip_prefix("tel:").unwrap_or(to),
    };
    let ok = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c));
    ok.then(|| user.to_string())
}

/// The edge for a called number: `twilio.edge`, else Dublin for UK and Irish numbers (there
/// is no public London edge; without one, Twilio sends from Virginia).
fn edge_for<'a>(configured: Option<&'a str>, user: &str) -> Option<&'a str> {
    configured.or_else(|| (user.starts_with("+44") || user.starts_with("+353")).then_some("dublin"))
}

/// `host[:port]` of our SIP address for the `<Sip>` URI: `public_addr` as configured, with our
/// SIP port added when it has none and it is not 5060. Over TLS the port is the TLS
/// listener's (a port in `public_addr` is the UDP one), left out when it is 5061.
fn sip_host(public_addr: &str, sip_port: u16, transport: Transport) -> String {
    if transport == Transport::Tls {
        let host = host_part(public_addr);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return with_port(host, sip_port, 5061);
    }
    if has_port(public_addr) {
        return public_addr.to_string();
    }
    with_port(public_addr, sip_port, 5060)
}

/// `host` (bracketed when IPv6) with `:port` unless it is the transport's default.
fn with_port(public_addr: &str, sip_port: u16, default: u16) -> String {
    let host = if public_addr.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{public_addr}]")
    } else {
        public_addr.to_string()
    };
    if sip_port == default {
        host
    } else {
        format!("{host}:{sip_port}")
    }
}

/// The TwiML that dials `target` (`host[:port]`: this gateway, or the proxy in front of it)
/// for a call to `to` over `transport`, or why there is none. Over TLS the URI also asks for
/// SRTP (`secure=true`: Twilio's Secure Trunking) unless the trunk's media_encryption is none.
pub fn dial_twiml(
    config: &Config,
    target: &str,
    to: &str,
    transport: Transport,
) -> Result<String, String> {
    let user = dial_user(to).ok_or_else(|| format!("called number {to:?} is not dialable"))?;
    let number = normalize_number(&user);
    let trunk = config
        .trunks
        .iter()
        .find(|t| t.credentials.is_some() && (t.numbers.is_empty() || t.numbers.contains(&number)))
        .ok_or_else(|| format!("no trunk with username/password serves {to:?}"))?;
    let Some(creds) = &trunk.credentials else {
        return Err(format!("trunk {:?} has no credentials", trunk.name));
    };
    let mut uri = format!("sip:{user}@{target};transport={transport}");
    if transport == Transport::Tls && trunk.media_encryption != MediaEncryption::None {
        uri.push_str(";secure=true");
    }
    if let Some(edge) = edge_for(config.twilio.edge.as_deref(), &user) {
        uri.push_str(";edge=");
        uri.push_str(edge);
    }
    if uri.len() > MAX_SIP_URI {
        return Err(format!(
            "the <Sip> URI would pass Twilio's {MAX_SIP_URI} characters"
        ));
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Dial answerOnBridge=\"true\">\
         <Sip username=\"{}\" password=\"{}\">{}</Sip></Dial></Response>\n",
        xml_escape(&creds.username),
        xml_escape(&creds.password),
        xml_escape(&uri)
    ))
}

/// TwiML that turns the call away (Twilio plays a "not in service" message).
const REJECT: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Reject reason=\"rejected\"/></Response>\n";

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

pub async fn voice(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let live = shared.live();
    let config = &live.config;
    let Some(token) = config.twilio.auth_token.as_deref() else {
        tracing::warn!("TwiML webhook called but twilio.auth_token_env is not set: 503");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "twilio.auth_token_env is not configured: this webhook does not answer unsigned \
             requests",
        );
    };
    let url = request_url(config.twilio.public_url.as_deref(), &headers, &uri);
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let signed = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| validate(token, &url, &body, form, sig.trim()));
    if !signed {
        tracing::warn!(%url, "TwiML webhook: missing or wrong X-Twilio-Signature: 403");
        return StatusCode::FORBIDDEN.into_response();
    }
    let params = if form {
        parse_form(&body)
    } else {
        json_params(&body)
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let call_sid = param("CallSid").unwrap_or("");
    let span = tracing::info_span!("webhook", twilio_sid = %call_sid);
    let _enter = span.enter();
    // Behind a proxy the <Sip> URI names the proxy (twilio.sip_host), as given; else this node,
    // over TLS when it listens for it (the password and the call's keys are then encrypted).
    let (transport, port) = match shared.sip.tls_port {
        Some(port) if config.twilio.sip_host.is_none() => (Transport::Tls, port),
        _ => (Transport::Udp, shared.sip_port),
    };
    let target = match (&config.twilio.sip_host, shared.public_addr.as_deref()) {
        (Some(proxy), _) => proxy.clone(),
        (None, Some(public_addr)) => sip_host(public_addr, port, transport),
        (None, None) => {
            tracing::error!("TwiML webhook: neither twilio.sip_host nor sip.public_addr is set, so there is no address for Twilio to dial: 503");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "sip.public_addr is not configured: there is no address to put in <Sip>",
            );
        }
    };
    let to = param("To").or_else(|| param("Called")).unwrap_or("");
    match dial_twiml(config, &target, to, transport) {
        Ok(twiml) => {
            tracing::info!(to, "TwiML webhook: dialling the gateway");
            xml(twiml)
        }
        Err(why) => {
            tracing::warn!(to, "TwiML webhook: rejecting the call: {why}");
            xml(REJECT.to_string())
        }
    }
}

/// String members of a JSON object body, as parameters.
fn json_params(body: &[u8]) -> Vec<(String, String)> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
