//! The datagram parser: start line, header lines (folding, compact names, any order),
//! Content-Length framing and the checks that make a parsed message safe to route.

use bytes::Bytes;

use super::headers::{
    split_byte, split_list, trim_end_lws, trim_lws, trim_start_lws, HeaderValue, Headers,
};
use super::names::{all_in, is_token, token_len, HeaderName, Method, URI_CHAR};
use super::typed::{scan_cseq, scan_name_addr, scan_via};
use super::{Message, ParseError, Request, Response, MAX_MESSAGE_LEN};

pub(super) fn parse(data: Bytes) -> Result<Message, ParseError> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLarge(data.len()));
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let text = utf8_prefix(&data[start..]);
    let mut lines = Lines {
        text,
        pos: 0,
        complete: start + text.len() == data.len(),
    };

    let first = lines.next_line()?.ok_or(ParseError::Empty)?.0;
    let start_line = parse_start_line(first)?;

    let mut headers = Headers::with_source(data.clone(), 24);
    let mut seen = Seen::default();
    let mut pending: Option<Pending> = None;
    let mut body_start = None;
    let mut line_no = 1;
    while let Some((line, line_start)) = lines.next_line()? {
        line_no += 1;
        if line.is_empty() {
            body_start = Some(start + lines.pos);
            break;
        }
        let bytes = line.as_bytes();
        if matches!(bytes.first(), Some(b' ' | b'\t')) {
            // RFC 3261 §7.3.1 folding: a line starting with whitespace continues the value.
            let Some(p) = pending.as_mut() else {
                return Err(ParseError::BadHeaderLine {
                    line: line_no,
                    reason: "continuation line before the first header",
                });
            };
            p.value_end = line_start + line.len();
            p.folded = true;
            continue;
        }
        if let Some(p) = pending.take() {
            finish(p, start, text, &mut headers, &mut seen)?;
        }
        // One pass over the name: token bytes, optional whitespace, then the colon.
        let name_len = token_len(bytes);
        let colon = name_len
            + bytes[name_len..]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
        if name_len == 0 || bytes.get(colon) != Some(&b':') {
            let reason = if memchr::memchr(b':', bytes).is_some() {
                "header name is not a token"
            } else {
                "no colon"
            };
            return Err(ParseError::BadHeaderLine {
                line: line_no,
                reason,
            });
        }
        pending = Some(Pending {
            name: HeaderName::parse(&line[..name_len]),
            value_start: line_start + colon + 1,
            value_end: line_start + line.len(),
            folded: false,
        });
    }
    if let Some(p) = pending.take() {
        finish(p, start, text, &mut headers, &mut seen)?;
    }
    // Without a blank line the datagram ended inside the header section: no body. If the
    // text stopped early because of a non-UTF-8 byte, that byte is in the headers.
    let body_start = match body_start {
        Some(b) => b,
        None if start + text.len() == data.len() => data.len(),
        None => return Err(ParseError::NotUtf8),
    };

    let available = data.len() - body_start;
    let body = match seen.content_length {
        Some(declared) if declared > available => {
            return Err(ParseError::ContentLengthExceedsBody {
                declared,
                available,
            })
        }
        // Octets past Content-Length in a datagram are ignored (RFC 3261 §18.3).
        Some(declared) => data.slice(body_start..body_start + declared),
        None => data.slice(body_start..),
    };

    check_required(&seen)?;
    match start_line {
        StartLine::Request { method, uri } => {
            let cseq = headers.get(&HeaderName::CSeq).unwrap_or_default();
            let (_, cseq_method) = scan_cseq(cseq)?;
            if cseq_method != method.as_str() {
                return Err(ParseError::CSeqMismatch {
                    method: method.as_str().to_string(),
                    cseq: cseq_method.to_string(),
                });
            }
            Ok(Message::Request(Request {
                method,
                uri: uri.to_string(),
                headers,
                body,
            }))
        }
        StartLine::Response { status, reason } => {
            scan_cseq(headers.get(&HeaderName::CSeq).unwrap_or_default())?;
            Ok(Message::Response(Response {
                status,
                reason: reason.to_string(),
                headers,
                body,
            }))
        }
    }
}

/// The longest valid UTF-8 prefix: the whole datagram when the body is text (one validation
/// pass), otherwise everything before the first invalid byte, which must lie in the body.
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

struct Lines<'a> {
    text: &'a str,
    pos: usize,
    /// False when `text` stopped at a non-UTF-8 byte: an unterminated last line is then cut
    /// short by that byte rather than by the end of the datagram.
    complete: bool,
}

impl<'a> Lines<'a> {
    /// The next line without its terminator, and its offset in `text`. Lines end in CRLF or
    /// a bare LF; a bare CR is an error because a CR-only peer would see a line break there.
    fn next_line(&mut self) -> Result<Option<(&'a str, usize)>, ParseError> {
        let start = self.pos;
        if start >= self.text.len() {
            return Ok(None);
        }
        let rest = &self.text.as_bytes()[start..];
        let (len, next) = match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) if rest[i] == b'\n' => (i, i + 1),
            Some(i) if rest.get(i + 1) == Some(&b'\n') => (i, i + 2),
            Some(_) => return Err(ParseError::BareCr),
            None if self.complete => (rest.len(), rest.len()),
            None => return Err(ParseError::NotUtf8),
        };
        self.pos = start + next;
        Ok(Some((&self.text[start..start + len], start)))
    }
}

enum StartLine<'a> {
    Request { method: Method, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    let version_ok = |v: &str| v.eq_ignore_ascii_case("SIP/2.0");
    let is_response = line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
    if is_response {
        let (version, rest) = split_byte(line, b' ').unwrap_or((line, ""));
        if !version_ok(version) {
            return Err(ParseError::BadVersion(version.to_string()));
        }
        let (code, reason) = split_byte(rest, b' ').unwrap_or((rest, ""));
        let status = match code.as_bytes() {
            [a, b, c] if code.bytes().all(|d| d.is_ascii_digit()) && (b'1'..=b'6').contains(a) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(ParseError::BadStatus(code.to_string())),
        };
        return Ok(StartLine::Response { status, reason });
    }
    // Liberal where RFC 4475 §3.1.2.9/10 allow it: extra spaces between the elements and
    // after the version are dropped (we re-serialize with single spaces). Spaces inside the
    // Request-URI are still an error (§3.1.2.8).
    let line = trim_end_lws(line);
    let (method, rest) =
        split_byte(line, b' ').ok_or(ParseError::BadStartLine("no Request-URI"))?;
    let (uri, version) = rest
        .rsplit_once(' ')
        .ok_or(ParseError::BadStartLine("no SIP version"))?;
    let uri = trim_lws(uri);
    if !is_token(method) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    if !version_ok(version) {
        return Err(ParseError::BadVersion(version.to_string()));
    }
    check_request_uri(uri)?;
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri,
    })
}

/// An absolute URI of any scheme (a B2BUA answers 416 to schemes it does not serve rather
/// than 400): `scheme ":" rest`, no whitespace, no `<>"`.
fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    let bad = ParseError::BadStartLine;
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or(bad("Request-URI has no scheme"))?;
    let mut sb = scheme.bytes();
    let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() {
        return Err(bad("bad Request-URI"));
    }
    if !all_in(&URI_CHAR, uri.as_bytes()) {
        return Err(bad("whitespace, control character or <>\" in Request-URI"));
    }
    Ok(())
}

struct Pending {
    name: HeaderName,
    /// Offsets in the UTF-8 text (relative to the first byte of the start line).
    value_start: usize,
    value_end: usize,
    folded: bool,
}

/// What the single-valued headers held, gathered while the headers are stored.
#[derive(Default)]
struct Seen {
    via: usize,
    from: usize,
    to: usize,
    call_id: usize,
    cseq: usize,
    content_length: Option<usize>,
    max_forwards: Option<u32>,
}

fn finish(
    p: Pending,
    base: usize,
    text: &str,
    headers: &mut Headers,
    seen: &mut Seen,
) -> Result<(), ParseError> {
    let raw = &text[p.value_start..p.value_end];
    let mut joined = String::new();
    let (v, range) = if p.folded {
        // Each line break plus the whitespace around it becomes one space (RFC 3261 §7.3.1).
        joined = raw
            .split('\n')
            .map(|l| trim_lws(l.strip_suffix('\r').unwrap_or(l)))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        (joined.as_str(), None)
    } else {
        let leading = raw.len() - trim_start_lws(raw).len();
        let trimmed = trim_lws(raw);
        let offset = base + p.value_start + leading;
        (trimmed, Some((offset, offset + trimmed.len())))
    };
    match p.name {
        HeaderName::Via => {
            // Only the top Via is checked: it is where responses go (RFC 3261 §18.2.2); the
            // hops below it are copied back into responses untouched and never read.
            if seen.via == 0 {
                scan_via(split_list(v).next().unwrap_or_default())?;
            }
            seen.via += 1;
        }
        HeaderName::From => {
            seen.from += 1;
            scan_name_addr(v)?;
        }
        HeaderName::To => {
            seen.to += 1;
            scan_name_addr(v)?;
        }
        HeaderName::CallId => {
            seen.call_id += 1;
            if v.is_empty() || v.bytes().any(|b| b == b' ' || b == b'\t') {
                return Err(ParseError::BadHeader {
                    header: "Call-ID",
                    reason: "empty or contains whitespace",
                });
            }
        }
        HeaderName::CSeq => seen.cseq += 1,
        HeaderName::ContentLength => {
            let Some(n) = parse_decimal(v) else {
                return Err(ParseError::BadHeader {
                    header: "Content-Length",
                    reason: "not a decimal number",
                });
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if seen.content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::DuplicateHeader("Content-Length"));
            }
            seen.content_length = Some(n);
        }
        HeaderName::MaxForwards => {
            let Some(n) = parse_decimal(v).filter(|&n| n <= 255) else {
                return Err(ParseError::BadHeader {
                    header: "Max-Forwards",
                    reason: "not a number from 0 to 255",
                });
            };
            let n = n as u32;
            if seen.max_forwards.is_some_and(|prev| prev != n) {
                return Err(ParseError::DuplicateHeader("Max-Forwards"));
            }
            seen.max_forwards = Some(n);
        }
        _ => {}
    }
    match range {
        Some((start, end)) => headers.push_src(p.name, start, end),
        None => headers.push(p.name, HeaderValue::from(joined)),
    }
    Ok(())
}

/// Digits only (no sign); saturates far above any limit we compare with.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn check_required(seen: &Seen) -> Result<(), ParseError> {
    let required = [
        (seen.via, "Via"),
        (seen.from, "From"),
        (seen.to, "To"),
        (seen.call_id, "Call-ID"),
        (seen.cseq, "CSeq"),
    ];
    for (count, name) in required {
        match count {
            0 => return Err(ParseError::MissingHeader(name)),
            // Via is a list; the others must appear once (RFC 4475 §3.3.8).
            1 => {}
            _ if name == "Via" => {}
            _ => return Err(ParseError::DuplicateHeader(name)),
        }
    }
    Ok(())
}

/// The Call-ID of a raw message, read without parsing it: under load, whether a datagram
/// belongs to a call decides whether it is worth a parse. A folded Call-ID is not followed (no
/// sender folds one); a miss only means the datagram is judged as a stranger's.
pub fn peek_call_id(data: &[u8]) -> Option<&str> {
    let head = &data[..memchr::memmem::find(data, b"\r\n\r\n").unwrap_or(data.len())];
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
            return None;
        }
        std::str::from_utf8(line[colon + 1..].trim_ascii()).ok()
    })
}
