//! Method and header-name vocabularies (RFC 3261 §7.1, §7.3.3, §20).

use std::fmt;
use std::hash::{Hash, Hasher};

/// A SIP request method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an
/// extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Never fails: anything that is not a standard method becomes `Other`. The codec checks
    /// that a method on the wire is a token before calling this.
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header field name. [`HeaderName::parse`] is case-insensitive and maps compact forms to
/// their canonical name, so `v`, `VIA` and `Via` are all [`HeaderName::Via`].
///
/// Equality and hashing ignore ASCII case and compare by canonical name, so
/// `HeaderName::Other("call-id".into()) == HeaderName::CallId`.
#[derive(Debug, Clone)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Allow,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    UserAgent,
    Server,
    Expires,
    Reason,
    RetryAfter,
    Accept,
    Event,
    ReferTo,
    Subject,
    /// Any other header, with its name as sent (or the long form of a compact name that has
    /// no variant of its own, e.g. `u` -> `Allow-Events`).
    Other(String),
}

impl HeaderName {
    pub fn parse(s: &str) -> HeaderName {
        Self::known(s.as_bytes()).unwrap_or_else(|| HeaderName::Other(s.to_string()))
    }

    /// The canonical long form, as the serializer writes it.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Allow => "Allow",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Expires => "Expires",
            HeaderName::Reason => "Reason",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Accept => "Accept",
            HeaderName::Event => "Event",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::Subject => "Subject",
            HeaderName::Other(s) => s,
        }
    }

    /// Headers whose comma-separated values are separate entries (RFC 3261 §7.3.1), so
    /// [`super::Headers::get_all`] splits them.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Contact
                | HeaderName::Allow
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::Accept
        )
    }

    /// Matches the names we have variants for without allocating; the length is checked
    /// first so most lookups compare a single candidate.
    fn known(b: &[u8]) -> Option<HeaderName> {
        use HeaderName as H;
        // Length and first letter select at most one candidate, so a lookup costs a single
        // comparison and extension headers (X-...) usually none.
        let first = b.first()?.to_ascii_lowercase();
        let (lit, name) = match (b.len(), first) {
            (1, c) => return Self::compact(c),
            (2, b't') => ("to", H::To),
            (3, b'v') => ("via", H::Via),
            (4, b'f') => ("from", H::From),
            (4, b'c') => ("cseq", H::CSeq),
            (5, b'r') => ("route", H::Route),
            (5, b'a') => ("allow", H::Allow),
            (5, b'e') => ("event", H::Event),
            (6, b's') => ("server", H::Server),
            (6, b'r') => ("reason", H::Reason),
            (6, b'a') => ("accept", H::Accept),
            (7, b'c') if b.get(2).is_some_and(|c| c.eq_ignore_ascii_case(&b'l')) => {
                ("call-id", H::CallId)
            }
            (7, b'c') => ("contact", H::Contact),
            (7, b'e') => ("expires", H::Expires),
            (7, b'r') => ("require", H::Require),
            (7, b's') => ("subject", H::Subject),
            (8, b'r') => ("refer-to", H::ReferTo),
            (9, b's') => ("supported", H::Supported),
            (10, b'u') => ("user-agent", H::UserAgent),
            (11, b'r') => ("retry-after", H::RetryAfter),
            (11, b'u') => ("unsupported", H::Unsupported),
            (12, b'm') => ("max-forwards", H::MaxForwards),
            (12, b'c') => ("content-type", H::ContentType),
            (12, b'r') => ("record-route", H::RecordRoute),
            (13, b'a') => ("authorization", H::Authorization),
            (13, b'p') => ("proxy-require", H::ProxyRequire),
            (14, b'c') => ("content-length", H::ContentLength),
            (16, b'w') => ("www-authenticate", H::WwwAuthenticate),
            (18, b'p') => ("proxy-authenticate", H::ProxyAuthenticate),
            (19, b'p') => ("proxy-authorization", H::ProxyAuthorization),
            _ => return None,
        };
        eq_lowercase_name(b, lit.as_bytes()).then_some(name)
    }

    /// Compact forms from RFC 3261 §7.3.3 and the extensions that registered one.
    fn compact(c: u8) -> Option<HeaderName> {
        use HeaderName as H;
        let other = |s: &str| H::Other(s.to_string());
        Some(match c {
            b'v' => H::Via,
            b'i' => H::CallId,
            b'f' => H::From,
            b't' => H::To,
            b'm' => H::Contact,
            b'l' => H::ContentLength,
            b'c' => H::ContentType,
            b'k' => H::Supported,
            b's' => H::Subject,
            b'o' => H::Event,
            b'r' => H::ReferTo,
            b'e' => other("Content-Encoding"),
            b'u' => other("Allow-Events"),
            b'b' => other("Referred-By"),
            b'x' => other("Session-Expires"),
            b'a' => other("Accept-Contact"),
            b'j' => other("Reject-Contact"),
            b'd' => other("Request-Disposition"),
            b'y' => other("Identity"),
            b'n' => other("Identity-Info"),
            _ => return None,
        })
    }
}

/// `input` equals `lit` ignoring ASCII case, where `lit` is lower case letters and `-`.
/// Eight bytes at a time: OR-ing 0x20 into the positions where `lit` has a letter folds an
/// upper-case input letter onto it, and only there, so the comparison stays exact.
fn eq_lowercase_name(input: &[u8], lit: &[u8]) -> bool {
    if input.len() != lit.len() {
        return false;
    }
    let (mut a, mut l) = (input, lit);
    while let (Some((wa, ra)), Some((wl, rl))) =
        (a.split_first_chunk::<8>(), l.split_first_chunk::<8>())
    {
        let wa = u64::from_le_bytes(*wa);
        let wl = u64::from_le_bytes(*wl);
        // Letters have bit 6 set and '-' does not: that bit, shifted, is the case bit.
        let case = (wl & 0x4040_4040_4040_4040) >> 1;
        if wa | case != wl {
            return false;
        }
        (a, l) = (ra, rl);
    }
    a.iter().zip(l).all(|(&x, &y)| x | ((y & 0x40) >> 1) == y)
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), b) | (b, HeaderName::Other(a)) => {
                a.eq_ignore_ascii_case(b.as_str())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must agree with `eq`, which compares canonical names ignoring ASCII case.
        for b in self.as_str().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s)
    }
}

/// RFC 3261 `token` characters: alphanumerics and `-.!%*_+` `` ` `` `'~`. A table, because
/// the parser asks this for nearly every byte of every header.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes allowed inside a URI as the codec checks it: printable ASCII and UTF-8, without
/// space, `<`, `>` or `"` (which would end or break the URI in a header).
pub(crate) static URI_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 256 {
        t[i] = !matches!(i as u8, b'<' | b'>' | b'"' | 0x7f);
        i += 1;
    }
    t
};

/// What an unquoted header-parameter value may hold: a token or a host (IPv6 included).
static PARAM_VALUE: [bool; 256] = {
    let mut t = TOKEN;
    t[b':' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// The length of the longest prefix of `b` whose bytes are all in `table`. Eight lookups per
/// step, folded into a bit mask before a single branch: token and parameter scans are most of
/// the parse, and a byte-at-a-time loop is bound by its branch per byte.
#[inline]
fn span(table: &[bool; 256], b: &[u8]) -> usize {
    let mut rest = b;
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        let mut outside = 0u32;
        for (i, &c) in w.iter().enumerate() {
            outside |= u32::from(!table[c as usize]) << i;
        }
        if outside != 0 {
            return b.len() - rest.len() + outside.trailing_zeros() as usize;
        }
        rest = tail;
    }
    b.len() - rest.len() + rest.iter().take_while(|&&c| table[c as usize]).count()
}

/// True when every byte of `b` is in `table`.
#[inline]
pub(crate) fn all_in(table: &[bool; 256], b: &[u8]) -> bool {
    span(table, b) == b.len()
}

/// The length of the token at the start of `b`.
#[inline]
pub(crate) fn token_len(b: &[u8]) -> usize {
    span(&TOKEN, b)
}

/// The length of the unquoted parameter value at the start of `b`.
#[inline]
pub(crate) fn param_value_len(b: &[u8]) -> usize {
    span(&PARAM_VALUE, b)
}

#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN[b as usize]
}

#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}
