//! Typed views of the headers a B2BUA reads: CSeq, Via and name-addr (From, To, Contact,
//! Route, Record-Route).
//!
//! Each has a borrowing scanner (`scan_*`) that checks the syntax without allocating, which
//! the parser runs on every message, and an owned type built from the scanner's parts on
//! demand.

use std::fmt;

use super::headers::{find_byte, split_byte, trim_lws, trim_start_lws};
use super::names::{
    all_in, is_token, is_token_byte, param_value_len, token_len, HeaderName, Method, URI_CHAR,
};
use super::{Headers, ParseError};
use crate::sip::uri::{parse_port, Uri};

/// `CSeq: <seq> <method>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let (seq, method) = scan_cseq(s)?;
        Ok(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

pub(crate) fn scan_cseq(s: &str) -> Result<(u32, &str), ParseError> {
    let bad = |reason| ParseError::BadHeader {
        header: "CSeq",
        reason,
    };
    let s = trim_lws(s);
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad("no sequence number"));
    }
    // RFC 3261 §8.1.1.5: the number must fit in 32 bits.
    let seq = s[..digits]
        .parse::<u32>()
        .map_err(|_| bad("sequence number does not fit in 32 bits"))?;
    let rest = &s[digits..];
    let method = trim_lws(rest);
    if method.len() == rest.len() || !is_token(method) {
        return Err(bad("no method after the sequence number"));
    }
    Ok((seq, method))
}

/// One Via header value. `params` holds the parameters other than `branch`, `received` and
/// `rport`, which have fields of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-cased (`UDP`, `TLS`, ...).
    pub transport: String,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub received: Option<String>,
    /// `Some(None)` for a bare `;rport` (RFC 3581 request), `Some(Some(p))` once filled in.
    pub rport: Option<Option<u16>>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let parts = scan_via(s)?;
        let mut via = Via {
            transport: parts.transport.to_ascii_uppercase(),
            host: parts.host.to_string(),
            port: parts.port,
            branch: None,
            received: None,
            rport: None,
            params: Vec::new(),
        };
        for param in HeaderParams::new(parts.params) {
            let (name, value) = param?;
            if name.eq_ignore_ascii_case("branch") {
                via.branch = value.map(str::to_string);
            } else if name.eq_ignore_ascii_case("received") {
                via.received = value.map(str::to_string);
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(value.map(parse_port).transpose()?);
            } else {
                via.params
                    .push((name.to_string(), value.map(str::to_string)));
            }
        }
        Ok(via)
    }

    /// A parameter other than branch/received/rport, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} ", self.transport)?;
        write_host(f, &self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(branch) = &self.branch {
            write!(f, ";branch={branch}")?;
        }
        if let Some(received) = &self.received {
            write!(f, ";received={received}")?;
        }
        match self.rport {
            Some(Some(p)) => write!(f, ";rport={p}")?,
            Some(None) => f.write_str(";rport")?,
            None => {}
        }
        write_params(f, &self.params)
    }
}

pub(crate) struct ViaParts<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: &'a str,
}

/// `SIP / 2.0 / transport LWS sent-by *( ; via-param )`, with the LWS that RFC 3261 allows
/// around the slashes, colon, semicolons and equals signs.
pub(crate) fn scan_via(s: &str) -> Result<ViaParts<'_>, ParseError> {
    let s = trim_lws(s);
    let (name, s) = take_token(s);
    // let-else rather than `ok_or`, which builds (and drops) the error on every Via.
    let Some(s) = expect_sep(s, '/') else {
        return Err(ParseError::BadVia("bad sent-protocol"));
    };
    let (version, s) = take_token(s);
    let Some(s) = expect_sep(s, '/') else {
        return Err(ParseError::BadVia("bad sent-protocol"));
    };
    let (transport, rest) = take_token(s);
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return Err(ParseError::BadVia("protocol is not SIP/2.0"));
    }
    if transport.is_empty() {
        return Err(ParseError::BadVia("missing transport"));
    }
    let s = trim_start_lws(rest);
    if s.len() == rest.len() {
        return Err(ParseError::BadVia("no space before sent-by"));
    }
    let (host, s) = if let Some(v6) = s.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or(ParseError::BadVia("unterminated IPv6 host"))?;
        (&v6[..end], &v6[end + 1..])
    } else {
        let end = s
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
            .unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if host.is_empty() {
        return Err(ParseError::BadVia("missing host"));
    }
    let s = trim_start_lws(s);
    let (port, params) = match s.strip_prefix(':') {
        Some(p) => {
            let p = trim_start_lws(p);
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            (Some(parse_port(&p[..digits])?), &p[digits..])
        }
        None => (None, s),
    };
    for param in HeaderParams::new(params) {
        let (name, value) = param?;
        if name.eq_ignore_ascii_case("rport") {
            value.map(parse_port).transpose()?;
        }
    }
    Ok(ViaParts {
        transport,
        host,
        port,
        params,
    })
}

/// An address: `"Display" <uri>;params` or `uri;params` (From, To, Contact, Route,
/// Record-Route). `params` are header parameters (`tag`, `expires`...); URI parameters such
/// as `lr` stay in `uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Unquoted and unescaped.
    pub display_name: Option<String>,
    pub uri: Uri,
    /// Values as sent (a quoted value keeps its quotes).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let parts = scan_name_addr(s)?;
        let display_name = parts.display.map(|d| match d.strip_prefix('"') {
            Some(q) => unescape_quoted(q.strip_suffix('"').unwrap_or(q)),
            None => d.to_string(),
        });
        let params = HeaderParams::new(parts.params)
            .map(|p| p.map(|(n, v)| (n.to_string(), v.map(str::to_string))))
            .collect::<Result<_, _>>()?;
        Ok(NameAddr {
            display_name,
            uri: Uri::parse(parts.uri)?,
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Sets (or replaces) the `tag` header parameter.
    pub fn set_tag(&mut self, tag: &str) {
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("tag"))
        {
            Some((_, v)) => *v = Some(tag.to_string()),
            None => self.params.push(("tag".to_string(), Some(tag.to_string()))),
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            f.write_str("\"")?;
            for c in name.chars() {
                match c {
                    '"' | '\\' => write!(f, "\\{c}")?,
                    // A quoted-pair cannot carry CR or LF (RFC 3261 §25.1).
                    '\r' | '\n' => f.write_str(" ")?,
                    _ => write!(f, "{c}")?,
                }
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

pub(crate) struct NameAddrParts<'a> {
    /// Trimmed; still quoted when it was a quoted string.
    pub display: Option<&'a str>,
    pub uri: &'a str,
    /// Raw header parameters (`;tag=x;...`), possibly empty.
    pub params: &'a str,
}

pub(crate) fn scan_name_addr(s: &str) -> Result<NameAddrParts<'_>, ParseError> {
    let bad = |why| Err(ParseError::BadNameAddr(why));
    let s = trim_lws(s);
    if s.is_empty() {
        return bad("empty address");
    }
    let (display, rest) = if s.starts_with('"') {
        let Some(end) = quoted_end(s) else {
            return bad("unterminated quoted display name");
        };
        let rest = trim_start_lws(&s[end..]);
        if !rest.starts_with('<') {
            return bad("quoted display name not followed by <uri>");
        }
        (Some(&s[..end]), rest)
    } else if let Some(lt) = find_byte(s, b'<') {
        // RFC 3261 wants LWS before '<'; RFC 4475 §3.1.1.6 says to accept `caller<sip:...>`.
        let name = trim_lws(&s[..lt]);
        if !name
            .bytes()
            .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
        {
            return bad("display name must be tokens or a quoted string");
        }
        ((!name.is_empty()).then_some(name), &s[lt..])
    } else {
        (None, s)
    };
    let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
        let Some(gt) = find_byte(inner, b'>') else {
            return bad("missing >");
        };
        (&inner[..gt], &inner[gt + 1..])
    } else {
        // Without brackets the URI ends at the first ';': what follows are header parameters
        // (RFC 3261 §20.10), and a URI with '?' or ',' must be bracketed.
        let end = find_byte(rest, b';').unwrap_or(rest.len());
        let uri = trim_lws(&rest[..end]);
        if uri.contains(['?', ',']) {
            return bad("URI with ? or , must be enclosed in <>");
        }
        (uri, &rest[end..])
    };
    check_absolute_uri(uri)?;
    for param in HeaderParams::new(params) {
        param?;
    }
    Ok(NameAddrParts {
        display,
        uri,
        params,
    })
}

/// `scheme ":" ...` with no whitespace, quotes or angle brackets: what an address must hold
/// whatever its scheme (a `tel:` or unknown scheme is still routable syntax).
fn check_absolute_uri(uri: &str) -> Result<(), ParseError> {
    let bad = |why| Err(ParseError::BadUri(why));
    let Some((scheme, rest)) = split_byte(uri, b':') else {
        return bad("no scheme");
    };
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return bad("bad scheme");
    }
    if rest.is_empty() {
        return bad("nothing after the scheme");
    }
    if !all_in(&URI_CHAR, uri.as_bytes()) {
        return bad("whitespace, control character or <>\" in URI");
    }
    Ok(())
}

/// Iterates `;name[=value]` header parameters, allowing LWS around `;` and `=` (RFC 3261
/// SEMI and EQUAL). Values are tokens, hosts (IPv6 included) or quoted strings (kept quoted).
pub(crate) struct HeaderParams<'a> {
    rest: &'a str,
}

impl<'a> HeaderParams<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        HeaderParams { rest: raw }
    }

    fn fail(
        &mut self,
        why: &'static str,
    ) -> Option<Result<(&'a str, Option<&'a str>), ParseError>> {
        self.rest = "";
        Some(Err(ParseError::BadParam(why)))
    }
}

impl<'a> Iterator for HeaderParams<'a> {
    type Item = Result<(&'a str, Option<&'a str>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = trim_start_lws(self.rest);
        if s.is_empty() {
            return None;
        }
        let Some(s) = s.strip_prefix(';') else {
            return self.fail("expected ; before parameter");
        };
        let (name, s) = take_token(trim_start_lws(s));
        if name.is_empty() {
            return self.fail("empty parameter name");
        }
        let after_name = trim_start_lws(s);
        let Some(v) = after_name.strip_prefix('=') else {
            self.rest = s;
            return Some(Ok((name, None)));
        };
        let v = trim_start_lws(v);
        let len = if v.starts_with('"') {
            match quoted_end(v) {
                Some(end) => end,
                None => return self.fail("unterminated quoted parameter value"),
            }
        } else {
            param_value_len(v.as_bytes())
        };
        if len == 0 {
            return self.fail("empty parameter value");
        }
        self.rest = &v[len..];
        Some(Ok((name, Some(&v[..len]))))
    }
}

/// For `s` starting with `"`: the index just past the closing quote, honouring `\` escapes.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unescape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn take_token(s: &str) -> (&str, &str) {
    let n = token_len(s.as_bytes());
    s.split_at(n)
}

fn expect_sep(s: &str, sep: char) -> Option<&str> {
    trim_start_lws(s).strip_prefix(sep).map(trim_start_lws)
}

fn find_param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (name, value) in params {
        write!(f, ";{name}")?;
        if let Some(v) = value {
            write!(f, "={v}")?;
        }
    }
    Ok(())
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

/// Typed views over the raw headers. They parse on every call (allocating); the message
/// parser has already checked the syntax of the headers it requires, so for a parsed message
/// `call_id`, `cseq`, `from`, `to` and `top_via` return `Some` unless a URI has a scheme
/// other than sip/sips/tel.
impl Headers {
    pub fn call_id(&self) -> Option<&str> {
        self.get(&HeaderName::CallId)
    }

    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(self.get(&HeaderName::CSeq)?).ok()
    }

    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get(&HeaderName::From)?).ok()
    }

    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get(&HeaderName::To)?).ok()
    }

    /// The From tag without building a [`NameAddr`].
    pub fn from_tag(&self) -> Option<&str> {
        self.get(&HeaderName::From).and_then(tag_of)
    }

    /// The To tag without building a [`NameAddr`].
    pub fn to_tag(&self) -> Option<&str> {
        self.get(&HeaderName::To).and_then(tag_of)
    }

    /// Every Via value in order (values that do not parse are skipped).
    pub fn vias(&self) -> Vec<Via> {
        self.get_all(&HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
            .collect()
    }

    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.get_all(&HeaderName::Via).next()?).ok()
    }

    /// The top Via's branch without building a [`Via`] (for transaction matching).
    pub fn top_branch(&self) -> Option<&str> {
        let via = scan_via(self.get_all(&HeaderName::Via).next()?).ok()?;
        HeaderParams::new(via.params)
            .filter_map(Result::ok)
            .find(|(n, _)| n.eq_ignore_ascii_case("branch"))
            .and_then(|(_, v)| v)
    }

    /// Contact addresses in order; a `*` (REGISTER wildcard) is skipped.
    pub fn contacts(&self) -> Vec<NameAddr> {
        self.addresses(&HeaderName::Contact)
    }

    pub fn record_routes(&self) -> Vec<NameAddr> {
        self.addresses(&HeaderName::RecordRoute)
    }

    pub fn routes(&self) -> Vec<NameAddr> {
        self.addresses(&HeaderName::Route)
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.get(&HeaderName::MaxForwards)?.parse().ok()
    }

    fn addresses(&self, name: &HeaderName) -> Vec<NameAddr> {
        self.get_all(name)
            .filter(|v| *v != "*")
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }
}

fn tag_of(value: &str) -> Option<&str> {
    let parts = scan_name_addr(value).ok()?;
    HeaderParams::new(parts.params)
        .filter_map(Result::ok)
        .find(|(n, _)| n.eq_ignore_ascii_case("tag"))
        .and_then(|(_, v)| v)
}
