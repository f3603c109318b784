//! The wire shapes the UAC needs besides its state machine: Twilio's SDP offer, reading the
//! answer, and Twilio-like identifiers.

use std::net::{IpAddr, SocketAddr};

use crate::codec::g711::Law;
use crate::media::srtp::{MasterKey, Suite};
use crate::sdp::{crypto_attribute, usable_crypto, Codec, SessionDescription, SrtpKeys};
use crate::sip::message::NameAddr;
use crate::sip::uri::Uri;

use super::SendParams;

/// Twilio's SDP offer (reference/twilio.md §2.2), PCMA first when asked; with `srtp`, its
/// Secure Trunking form (`RTP/SAVP`, one `AES_CM_128_HMAC_SHA1_80` key, no MKI).
pub fn sdp_offer(
    ip: IpAddr,
    port: u16,
    first: Law,
    session: u64,
    srtp: Option<&MasterKey>,
) -> String {
    let fmts = match first {
        Law::Mu => [(0, "PCMU"), (8, "PCMA")],
        Law::A => [(8, "PCMA"), (0, "PCMU")],
    };
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=root {session} {session} IN {family} {ip}\r\ns=Twilio Media Gateway\r\n\
         c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {proto} {} {} 101\r\n",
        fmts[0].0,
        fmts[1].0,
        proto = if srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        },
    );
    if let Some(key) = srtp {
        s.push_str(&crypto_attribute(1, Suite::AesCm128HmacSha1_80, key));
    }
    for (pt, name) in fmts {
        s.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    s.push_str(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
         a=maxptime:20\r\na=sendrecv\r\n",
    );
    s
}

/// Where to send media, and with which codec, from the 200's SDP; with `srtp` (our offer's
/// key) the answer must give its own key, and both make the call's SRTP keys.
pub fn parse_answer(body: &[u8], srtp: Option<&MasterKey>) -> Result<SendParams, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("no SDP".into());
    }
    let sdp = SessionDescription::parse(text).map_err(|e| e.to_string())?;
    let m = sdp
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)
        .ok_or("no audio stream")?;
    let ip = sdp
        .connection_of(m)
        .and_then(|c| c.ip)
        .ok_or("no IP connection address")?;
    let (payload_type, codec) = m
        .payload_types()
        .find_map(|pt| {
            m.rtpmap(pt)
                .and_then(Codec::from_rtpmap)
                .or_else(|| Codec::from_static_payload_type(pt))
                .map(|c| (pt, c))
        })
        .ok_or("no PCMU or PCMA in the answer")?;
    let srtp = match srtp {
        None => None,
        Some(ours) => {
            let (tag, suite, theirs) = m
                .crypto
                .iter()
                .find_map(usable_crypto)
                .ok_or("the answer has no usable a=crypto key")?;
            Some(SrtpKeys {
                suite,
                tag,
                remote: theirs,
                local: ours.clone(),
            })
        }
    };
    Ok(SendParams {
        law: codec.into(),
        payload_type,
        remote: SocketAddr::new(ip, m.port),
        srtp,
    })
}

/// The socket address of a URI with an IP host; a host name (which this sans-IO core does not
/// resolve) falls back to `fallback`, the target.
pub(super) fn addr_of(uri: &Uri, fallback: SocketAddr) -> SocketAddr {
    uri.socket_addr().unwrap_or(fallback)
}

/// The URI inside a name-addr string we built ourselves.
pub(super) fn contact_uri(name_addr: &str) -> Uri {
    NameAddr::parse(name_addr)
        .map(|n| n.uri)
        .or_else(|_| Uri::parse(name_addr))
        .unwrap_or_else(|_| Uri::host("0.0.0.0", 5060))
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// A From tag shaped like Twilio's: `digits_hex8_uuid`.
pub(super) fn twilio_tag() -> String {
    let h = random_hex(16);
    format!(
        "{:08}_{}_{}-{}-{}-{}-{}",
        rand::random_range(0..100_000_000u32),
        random_hex(4),
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
