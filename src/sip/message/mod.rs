//! SIP message codec (RFC 3261 §7, §20, §25): parse a datagram into a [`Message`] and
//! serialize one back.
//!
//! Parsing is zero-copy: header values and the body are [`bytes::Bytes`] slices of the
//! datagram, the header section is validated as UTF-8 once, and typed views ([`Via`],
//! [`NameAddr`], [`CSeq`]) are built only when asked for. A message that parses is safe to
//! route: it has a SIP/2.0 start line, exactly one From, To, Call-ID and CSeq, at least one
//! Via, a well-formed top Via, From, To and CSeq, a CSeq method equal to the request method,
//! and a body framed by Content-Length. Lower Vias are only copied back into responses, and
//! Contact and Record-Route are checked by whoever uses them (the dialog), so the parse does
//! not pay for them on every packet.

mod headers;
pub(crate) mod names;
mod parse;
mod typed;
mod write;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use headers::{HeaderValue, Headers};
pub use names::{HeaderName, Method};
pub use parse::peek_call_id;
pub use typed::{CSeq, NameAddr, Via};

/// The largest datagram accepted (the UDP payload limit, rounded up).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes exceeds the 64 KiB limit")]
    TooLarge(usize),
    #[error("header section not UTF-8")]
    NotUtf8,
    #[error("bare CR in header section")]
    BareCr,
    #[error("bad start line: {0}")]
    BadStartLine(&'static str),
    #[error("unsupported SIP version {0:?}")]
    BadVersion(String),
    #[error("bad status code {0:?}")]
    BadStatus(String),
    #[error("bad header line {line}: {reason}")]
    BadHeaderLine { line: usize, reason: &'static str },
    #[error("missing {0}")]
    MissingHeader(&'static str),
    #[error("more than one {0}")]
    DuplicateHeader(&'static str),
    #[error("bad {header}: {reason}")]
    BadHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch { method: String, cseq: String },
    #[error("Content-Length {declared} exceeds body {available}")]
    ContentLengthExceedsBody { declared: usize, available: usize },
    #[error("bad Via: {0}")]
    BadVia(&'static str),
    #[error("bad address: {0}")]
    BadNameAddr(&'static str),
    #[error("bad URI: {0}")]
    BadUri(&'static str),
    #[error("bad parameter: {0}")]
    BadParam(&'static str),
    #[error("header value not UTF-8")]
    ValueNotUtf8,
    #[error("bad header value: {0}")]
    BadHeaderValue(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI as sent (parse it with [`crate::sip::uri::Uri::parse`] when needed).
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Typed views shared by requests and responses; each delegates to [`Headers`].
macro_rules! typed_views {
    () => {
        pub fn call_id(&self) -> Option<&str> {
            self.headers.call_id()
        }
        pub fn cseq(&self) -> Option<CSeq> {
            self.headers.cseq()
        }
        pub fn from(&self) -> Option<NameAddr> {
            self.headers.from()
        }
        pub fn to(&self) -> Option<NameAddr> {
            self.headers.to()
        }
        pub fn vias(&self) -> Vec<Via> {
            self.headers.vias()
        }
        pub fn top_via(&self) -> Option<Via> {
            self.headers.top_via()
        }
        pub fn contacts(&self) -> Vec<NameAddr> {
            self.headers.contacts()
        }
        pub fn record_routes(&self) -> Vec<NameAddr> {
            self.headers.record_routes()
        }
        pub fn routes(&self) -> Vec<NameAddr> {
            self.headers.routes()
        }
        pub fn max_forwards(&self) -> Option<u32> {
            self.headers.max_forwards()
        }
    };
}

impl Request {
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let start = write::StartLine::Request {
            method: self.method.as_str(),
            uri: &self.uri,
        };
        write::serialize(start, &self.headers, &self.body)
    }

    typed_views!();
}

impl Response {
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` per RFC 3261 §8.2.6.2: every Via (in order), From, To, Call-ID
    /// and CSeq copied from the request (the values share the request's bytes), with
    /// `;tag=<to_tag>` added to To when given and To has no tag yet. The reason phrase is the
    /// standard one for `status`.
    pub fn for_request(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::with_capacity(8);
        for via in req.headers.get_all_values(&HeaderName::Via) {
            headers.push(HeaderName::Via, via);
        }
        if let Some(from) = req.headers.get_value(&HeaderName::From) {
            headers.push(HeaderName::From, from);
        }
        if let Some(to) = req.headers.get_value(&HeaderName::To) {
            match to_tag {
                Some(tag) if req.headers.to_tag().is_none() => {
                    headers.push(HeaderName::To, format!("{to};tag={tag}"));
                }
                _ => headers.push(HeaderName::To, to),
            }
        }
        for name in [HeaderName::CallId, HeaderName::CSeq] {
            if let Some(v) = req.headers.get_value(&name) {
                headers.push(name, v);
            }
        }
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers,
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let start = write::StartLine::Response {
            status: self.status,
            reason: &self.reason,
        };
        write::serialize(start, &self.headers, &self.body)
    }

    typed_views!();
}

impl Message {
    /// Parses one datagram (at most [`MAX_MESSAGE_LEN`] bytes). Never panics.
    pub fn parse(datagram: Bytes) -> Result<Message, ParseError> {
        parse::parse(datagram)
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self, Message::Request(_))
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers().call_id()
    }

    pub fn cseq(&self) -> Option<CSeq> {
        self.headers().cseq()
    }

    pub fn top_via(&self) -> Option<Via> {
        self.headers().top_via()
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

/// The RFC 3261 §21 reason phrase for a status code (plus the common extension codes), or
/// a generic phrase for the class when the code is not registered.
pub fn reason_phrase(status: u16) -> &'static str {
    registered_reason(status).unwrap_or(match status {
        100..=199 => "Session Progress",
        200..=299 => "OK",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    })
}

fn registered_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}
