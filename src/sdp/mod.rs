//! SDP (RFC 8866, formerly 4566): a tolerant parser for offers, and the RFC 3264 answer a G.711
//! gateway gives.
//!
//! The answer accepts the first usable audio stream with a single codec, PCMU or PCMA in the
//! offerer's order, plus `telephone-event` when offered (reference/twilio.md §0.6, §2.2), and
//! rejects every other stream with port 0.

mod negotiate;
mod parse;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub(crate) use negotiate::{crypto_attribute, usable_crypto};
pub use negotiate::{negotiate, negotiate_with, Encryption, LocalMedia, Negotiated, SrtpKeys};

/// The G.711 codecs the gateway speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl From<Codec> for crate::codec::g711::Law {
    fn from(c: Codec) -> Self {
        match c {
            Codec::Pcmu => crate::codec::g711::Law::Mu,
            Codec::Pcma => crate::codec::g711::Law::A,
        }
    }
}

impl Codec {
    /// The static RTP payload type (RFC 3551). An offer may map the codec to a dynamic type
    /// instead; [`Negotiated::payload_type`] is the one to use on the wire.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of a static payload type, for offers that list it without an rtpmap.
    pub fn from_static_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec an rtpmap describes: `PCMU/8000` or `PCMA/8000` (any case), mono.
    pub fn from_rtpmap(map: &RtpMap) -> Option<Codec> {
        if map.clock_rate != 8000 || map.channels.is_some_and(|c| c != 1) {
            return None;
        }
        if map.encoding.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if map.encoding.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// A media direction attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`, the default when none is given.
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name (case-sensitive, as RFC 8866 defines attribute names).
    pub fn from_attr(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answerer takes for this offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether this side sends media in this direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media in this direction.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `o=`. Twilio's address here is private (reference/twilio.md §2.2): use `c=` for media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`root`, `-`).
    pub username: String,
    /// The session id, as written (a numeric string, possibly beyond 64 bits).
    pub session_id: String,
    /// The session version, as written.
    pub session_version: String,
    /// The address, as written.
    pub address: String,
}

/// `c=` (or the address part of `a=rtcp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The address as written, without any `/ttl` or `/count` suffix.
    pub address: String,
    /// The address as an IP, or `None` for a host name (which this gateway cannot resolve in
    /// its sans-IO core and does not expect from Twilio).
    pub ip: Option<IpAddr>,
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type.
    pub payload_type: u8,
    /// The encoding name as written (compare case-insensitively).
    pub encoding: String,
    /// Samples per second.
    pub clock_rate: u32,
    /// The channel count, when given.
    pub channels: Option<u16>,
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcpAttr {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the RTP one.
    pub connection: Option<Connection>,
}

/// An `a=crypto` line (RFC 4568 §9.1): `<tag> <crypto-suite> <key-params> [<session-params>]`,
/// kept as sent; which suites and keys are usable is for the negotiation to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    /// `inline:<key||salt base64>[|lifetime][|MKI:length]`, several joined by `;`.
    pub key_params: String,
    /// Anything after the key parameters (e.g. `UNENCRYPTED_SRTP`, `KDR=...`).
    pub session_params: String,
}

/// One `m=` section with the attributes the gateway uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, ...
    pub media: String,
    /// The transport port; 0 marks a disabled stream.
    pub port: u16,
    /// The `/<count>` after the port, when given.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// The format list (payload type numbers for RTP), in the offerer's order of preference.
    pub formats: Vec<String>,
    /// Media-level `c=`, which overrides the session's.
    pub connection: Option<Connection>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines: format and parameters.
    pub fmtps: Vec<(String, String)>,
    /// `a=ptime`, in ms.
    pub ptime: Option<u32>,
    /// `a=maxptime`, in ms.
    pub maxptime: Option<u32>,
    /// The media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp`.
    pub rtcp: Option<RtcpAttr>,
    /// `a=crypto` lines (SDES-SRTP keys, used with `RTP/SAVP`), in the offerer's order of
    /// preference; lines that do not parse are left out (they cannot be chosen anyway).
    pub crypto: Vec<Crypto>,
    /// The 1-based line number of the `m=` line, for diagnostics.
    pub line: usize,
}

impl MediaSection {
    /// The rtpmap of a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.payload_type == pt)
    }

    /// The fmtp parameters of a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(f, _)| f.parse::<u8>() == Ok(pt))
            .map(|(_, p)| p.as_str())
    }

    /// The numeric formats, in order (non-numeric ones are skipped).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok())
    }
}

/// A parsed session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`, if present.
    pub origin: Option<Origin>,
    /// `s=`.
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level direction attribute, the default for media sections without their own.
    pub direction: Option<Direction>,
    /// The `m=` sections in order.
    pub media: Vec<MediaSection>,
}

impl SessionDescription {
    /// Parses SDP text. Tolerant of LF-only line ends, trailing whitespace, blank lines,
    /// unknown line types and unknown attributes; strict about the lines it uses (`v`, `o`,
    /// `c`, `m`, and the `rtpmap`, `fmtp`, `ptime`, `maxptime` and `rtcp` attributes), which
    /// give [`SdpError::Malformed`] with the 1-based line number.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        parse::parse(text)
    }

    /// The effective direction of a media section: its own attribute, else the session's,
    /// else `sendrecv` (RFC 3264 §5.1).
    pub fn direction_of(&self, m: &MediaSection) -> Direction {
        m.direction.or(self.direction).unwrap_or_default()
    }

    /// The connection of a media section: its own `c=`, else the session's.
    pub fn connection_of<'a>(&'a self, m: &'a MediaSection) -> Option<&'a Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }
}

/// Why an offer could not be parsed or answered. Apart from `Malformed` (answer 400), these
/// call for `488 Not Acceptable Here`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The text is not valid SDP; `line` is 1-based (0 when the problem is the whole text).
    #[error("malformed SDP at line {line}: {reason}")]
    Malformed {
        /// Where.
        line: usize,
        /// What.
        reason: String,
    },
    /// The offer has no audio stream with a non-zero port.
    #[error("the offer has no audio stream")]
    NoAudio,
    /// No audio stream has PCMU or PCMA over a profile we take (RTP/AVP, or RTP/SAVP with a
    /// usable `a=crypto` when SRTP is allowed).
    #[error("no common codec: need PCMU or PCMA over RTP/AVP or RTP/SAVP (SDES)")]
    NoCommonCodec,
    /// The offer is SRTP only, and SRTP is off here: for the trunk, or because the keys came
    /// over signalling that is not TLS.
    #[error("the offer is SRTP (RTP/SAVP) only, and SRTP is not allowed here")]
    SrtpRefused,
    /// The trunk requires SRTP and the offer is plain RTP.
    #[error("the trunk requires SRTP and the offer is plain RTP/AVP")]
    EncryptionRequired,
    /// The chosen stream has no `c=` line at either level.
    #[error("the audio stream has no connection address")]
    NoConnection,
    /// The chosen stream's address is a host name, not an IP address.
    #[error("connection address {0:?} is not an IP address")]
    UnsupportedAddress(String),
}
