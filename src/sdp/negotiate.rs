//! The RFC 3264 answer.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::{Codec, Crypto, Direction, MediaSection, SdpError, SessionDescription};
use crate::media::srtp::{MasterKey, Suite};

/// The telephone-event range answered when the offer gives none: the DTMF events 0-15 and
/// flash (16), what Twilio offers (reference/twilio.md §2.2).
const DEFAULT_TELEPHONE_EVENTS: &str = "0-16";

/// Our side of the media: the address and port RTP is received on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    /// The public address for `o=` and `c=` (never a LAN address behind NAT:
    /// reference/twilio.md §0.4).
    pub ip: IpAddr,
    /// The local RTP port.
    pub port: u16,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version; bump it for each new answer or offer in the dialog.
    pub session_version: u64,
    /// `a=ptime`, normally 20.
    pub ptime_ms: u32,
}

/// What the answer may do about SRTP: the trunk's `media_encryption` as the call applies it
/// (off when the keys would travel over signalling that is not TLS), with our key for it.
#[derive(Clone, Copy, Debug)]
pub enum Encryption<'a> {
    Off,
    Allowed(&'a MasterKey),
    Required(&'a MasterKey),
}

/// The SRTP an answer set up (SDES, RFC 4568).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    /// The offer's `a=crypto` tag, which the answer repeats.
    pub tag: u32,
    /// The caller's key: what it sends is decrypted with it.
    pub remote: MasterKey,
    /// Ours, given in the answer: what we send is encrypted with it.
    pub local: MasterKey,
}

/// The outcome of answering an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides use.
    pub codec: Codec,
    /// The payload type of `codec` on the wire, in both directions: the offerer's number,
    /// which is the static one (0 or 8) unless the offer mapped G.711 to a dynamic type.
    pub payload_type: u8,
    /// The offerer's telephone-event/8000 payload type, if it offered one; the answer uses it.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP; `None` when the offer puts the stream on hold with `c=0.0.0.0`
    /// (or `::`).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: `a=rtcp` when given (RFC 3605), else the RTP port + 1; `None` with
    /// `remote_rtp`.
    pub remote_rtcp: Option<SocketAddr>,
    /// Our direction, as put in the answer.
    pub local_direction: Direction,
    /// The index of the accepted `m=` section in the offer (and the answer).
    pub media_index: usize,
    /// Keys when the accepted section is `RTP/SAVP`.
    pub srtp: Option<SrtpKeys>,
    /// The complete answer, CRLF line ends.
    pub answer: String,
}

/// What was chosen in one offered audio section.
struct Choice {
    codec: Codec,
    pt: u8,
    telephone_event: Option<(u8, String)>,
    srtp: Option<SrtpKeys>,
}

/// Answers `offer` (RFC 3264 §6): accepts the first audio section that is `RTP/AVP` with a
/// non-zero port and offers PCMU (0, or an rtpmap `PCMU/8000`) or PCMA (8, `PCMA/8000`),
/// taking whichever comes first in its format list, plus telephone-event/8000 with the
/// offerer's payload type and fmtp when offered. Every other section is answered with port 0.
///
/// - The answer has one codec, `a=ptime`, and a media-level direction: the offered one (media
///   level, else session level, else sendrecv) reversed.
/// - A section offered with port 0 is disabled and must stay so (RFC 3264 §6), so it is never
///   chosen; hold is `c=0.0.0.0` (then `remote_rtp` is `None`) or a direction attribute.
/// - `RTP/SAVP` (SDES-SRTP) and anything but G.711 give `NoCommonCodec`, for a 488.
///
/// This is the plain-RTP answer; [`negotiate_with`] can also take SRTP.
pub fn negotiate(offer: &SessionDescription, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, local, Encryption::Off)
}

/// [`negotiate`], with SRTP as `encryption` allows: an `RTP/SAVP` section is acceptable with
/// an `a=crypto` line of a suite we have (`AES_CM_128_HMAC_SHA1_80` or `_32`), one `inline:`
/// key without MKI and no session parameters; the answer repeats its tag and suite with our
/// key. `Required` refuses plain `RTP/AVP` sections.
pub fn negotiate_with(
    offer: &SessionDescription,
    local: &LocalMedia,
    encryption: Encryption<'_>,
) -> Result<Negotiated, SdpError> {
    let mut saw_audio = false;
    let (mut saw_savp, mut saw_avp) = (false, false);
    let mut chosen = None;
    for (i, m) in offer.media.iter().enumerate() {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        saw_audio = true;
        saw_savp |= m.proto.eq_ignore_ascii_case("RTP/SAVP");
        saw_avp |= m.proto.eq_ignore_ascii_case("RTP/AVP");
        if let Some(c) = choose(m, encryption) {
            chosen = Some((i, c));
            break;
        }
    }
    let Some((index, choice)) = chosen else {
        return Err(match encryption {
            _ if !saw_audio => SdpError::NoAudio,
            Encryption::Off if saw_savp && !saw_avp => SdpError::SrtpRefused,
            Encryption::Required(_) if saw_avp && !saw_savp => SdpError::EncryptionRequired,
            _ => SdpError::NoCommonCodec,
        });
    };
    let m = &offer.media[index];

    let conn = offer.connection_of(m).ok_or(SdpError::NoConnection)?;
    let ip = conn
        .ip
        .ok_or_else(|| SdpError::UnsupportedAddress(conn.address.clone()))?;
    let (remote_rtp, remote_rtcp) = if ip.is_unspecified() {
        (None, None)
    } else {
        let rtcp = match &m.rtcp {
            Some(r) => {
                let rtcp_ip = r.connection.as_ref().and_then(|c| c.ip).unwrap_or(ip);
                Some(SocketAddr::new(rtcp_ip, r.port))
            }
            None => m.port.checked_add(1).map(|p| SocketAddr::new(ip, p)),
        };
        (Some(SocketAddr::new(ip, m.port)), rtcp)
    };
    let local_direction = offer.direction_of(m).answer();
    let answer = write_answer(offer, local, index, &choice, local_direction);
    Ok(Negotiated {
        codec: choice.codec,
        payload_type: choice.pt,
        telephone_event_pt: choice.telephone_event.map(|(pt, _)| pt),
        remote_rtp,
        remote_rtcp,
        local_direction,
        media_index: index,
        srtp: choice.srtp,
        answer,
    })
}

fn choose(m: &MediaSection, encryption: Encryption<'_>) -> Option<Choice> {
    // AVPF's feedback rules are not implemented, nor DTLS-SRTP: RTP/AVP and RTP/SAVP only.
    let srtp = if m.proto.eq_ignore_ascii_case("RTP/AVP") {
        if let Encryption::Required(_) = encryption {
            return None;
        }
        None
    } else if m.proto.eq_ignore_ascii_case("RTP/SAVP") {
        let local = match encryption {
            Encryption::Off => return None,
            Encryption::Allowed(k) | Encryption::Required(k) => k,
        };
        let (tag, suite, remote) = m.crypto.iter().find_map(usable_crypto)?;
        Some(SrtpKeys {
            suite,
            tag,
            remote,
            local: local.clone(),
        })
    } else {
        return None;
    };
    let (pt, codec) = m.payload_types().find_map(|pt| {
        let codec = match m.rtpmap(pt) {
            Some(map) => Codec::from_rtpmap(map),
            None => Codec::from_static_payload_type(pt),
        };
        codec.map(|c| (pt, c))
    })?;
    let telephone_event = m.payload_types().find_map(|pt| {
        let map = m.rtpmap(pt)?;
        (map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == 8000).then(
            || {
                let events = m
                    .fmtp(pt)
                    .filter(|f| !f.is_empty())
                    .unwrap_or(DEFAULT_TELEPHONE_EVENTS);
                (pt, events.to_owned())
            },
        )
    });
    Some(Choice {
        codec,
        pt,
        telephone_event,
        srtp,
    })
}

/// The `a=crypto` line (RFC 4568) that gives `key` for `suite` under `tag`, CRLF ended.
pub(crate) fn crypto_attribute(tag: u32, suite: Suite, key: &MasterKey) -> String {
    format!(
        "a=crypto:{tag} {} inline:{}\r\n",
        suite.name(),
        key.to_inline()
    )
}

/// An `a=crypto` line we can take: a suite we have, one `inline:` key with at most a
/// lifetime (an MKI would put an identifier in every packet, which no trunk we know of uses),
/// and no session parameters (unencrypted or unauthenticated SRTP, other derivation rates).
pub(crate) fn usable_crypto(c: &Crypto) -> Option<(u32, Suite, MasterKey)> {
    let suite = Suite::from_name(&c.suite)?;
    if !c.session_params.is_empty() || c.key_params.contains(';') {
        return None;
    }
    let mut parts = c.key_params.strip_prefix("inline:")?.split('|');
    let key = MasterKey::from_inline(parts.next()?)?;
    // The rest may be a lifetime (`2^31`, or a number); an MKI is `value:length`.
    if parts.any(|p| p.contains(':')) {
        return None;
    }
    Some((c.tag, suite, key))
}

fn write_answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    index: usize,
    choice: &Choice,
    direction: Direction,
) -> String {
    let ip_kind = if local.ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(320);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=sipbridge {} {} IN {ip_kind} {ip}\r\ns=sipbridge\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n",
        local.session_id,
        local.session_version,
        ip = local.ip,
    );
    for (i, m) in offer.media.iter().enumerate() {
        if i != index {
            // Rejected: same media and proto, port 0, the offered formats (RFC 3264 §6).
            let _ = write!(s, "m={} 0 {} {}\r\n", m.media, m.proto, m.formats.join(" "));
            continue;
        }
        let _ = write!(s, "m={} {} {} {}", m.media, local.port, m.proto, choice.pt);
        if let Some((te, _)) = &choice.telephone_event {
            let _ = write!(s, " {te}");
        }
        let _ = write!(
            s,
            "\r\na=rtpmap:{} {}/8000\r\n",
            choice.pt,
            choice.codec.name()
        );
        if let Some((te, events)) = &choice.telephone_event {
            let _ = write!(
                s,
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} {events}\r\n"
            );
        }
        let _ = write!(
            s,
            "a=ptime:{}\r\na={}\r\n",
            local.ptime_ms,
            direction.attr()
        );
        if let Some(k) = &choice.srtp {
            s.push_str(&crypto_attribute(k.tag, k.suite, &k.local));
        }
    }
    s
}
