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
        let is = |lit: &str| b.eq_ignore_ascii_case(lit.as_bytes());
        let name = match b.len() {
            1 => return Self::compact(b[0]),
            2 if is("to") => H::To,
            3 if is("via") => H::Via,
            4 if is("from") => H::From,
            4 if is("cseq") => H::CSeq,
            5 if is("route") => H::Route,
            5 if is("allow") => H::Allow,
            5 if is("event") => H::Event,
            6 if is("server") => H::Server,
            6 if is("reason") => H::Reason,
            6 if is("accept") => H::Accept,
            7 if is("call-id") => H::CallId,
            7 if is("contact") => H::Contact,
            7 if is("expires") => H::Expires,
            7 if is("require") => H::Require,
            7 if is("subject") => H::Subject,
            8 if is("refer-to") => H::ReferTo,
            9 if is("supported") => H::Supported,
            10 if is("user-agent") => H::UserAgent,
            11 if is("retry-after") => H::RetryAfter,
            11 if is("unsupported") => H::Unsupported,
            12 if is("max-forwards") => H::MaxForwards,
            12 if is("content-type") => H::ContentType,
            12 if is("record-route") => H::RecordRoute,
            13 if is("authorization") => H::Authorization,
            13 if is("proxy-require") => H::ProxyRequire,
            14 if is("content-length") => H::ContentLength,
            16 if is("www-authenticate") => H::WwwAuthenticate,
            18 if is("proxy-authenticate") => H::ProxyAuthenticate,
            19 if is("proxy-authorization") => H::ProxyAuthorization,
            _ => return None,
        };
        Some(name)
    }

    /// Compact forms from RFC 3261 §7.3.3 and the extensions that registered one.
    fn compact(c: u8) -> Option<HeaderName> {
        use HeaderName as H;
        let other = |s: &str| H::Other(s.to_string());
        Some(match c.to_ascii_lowercase() {
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

/// RFC 3261 `token` characters: alphanumerics and `-.!%*_+` `` ` `` `'~`.
pub(crate) const fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}
