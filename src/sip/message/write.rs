//! The serializer: one `BytesMut` sized exactly up front, and a Content-Length computed from
//! the body (any Content-Length header in the list is skipped).

use bytes::{BufMut, Bytes, BytesMut};

use super::{HeaderName, Headers};

pub(super) enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

const VERSION: &[u8] = b"SIP/2.0";
const CONTENT_LENGTH: &[u8] = b"Content-Length: ";

pub(super) fn serialize(start: StartLine<'_>, headers: &Headers, body: &Bytes) -> Bytes {
    let start_len = match &start {
        StartLine::Request { method, uri } => method.len() + uri.len() + VERSION.len() + 4,
        StartLine::Response { reason, .. } => VERSION.len() + 5 + reason.len() + 2,
    };
    let headers_len: usize = headers
        .iter()
        .filter(|(n, _)| **n != HeaderName::ContentLength)
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut digits = [0u8; 20];
    let body_len = decimal(body.len(), &mut digits);
    let total = start_len + headers_len + CONTENT_LENGTH.len() + body_len.len() + 4 + body.len();

    let mut buf = BytesMut::with_capacity(total);
    match start {
        StartLine::Request { method, uri } => {
            put_clean(&mut buf, method);
            buf.put_u8(b' ');
            put_clean(&mut buf, uri);
            buf.put_u8(b' ');
            buf.put_slice(VERSION);
        }
        StartLine::Response { status, reason } => {
            buf.put_slice(VERSION);
            buf.put_u8(b' ');
            // Status codes are three digits by construction on the parse side; clamp a
            // hand-built one so the line stays well formed.
            let status = status.clamp(100, 699);
            buf.put_slice(&[
                b'0' + (status / 100) as u8,
                b'0' + (status / 10 % 10) as u8,
                b'0' + (status % 10) as u8,
                b' ',
            ]);
            put_clean(&mut buf, reason);
        }
    }
    buf.put_slice(b"\r\n");
    for (name, value) in headers.iter() {
        if *name == HeaderName::ContentLength {
            continue;
        }
        put_clean(&mut buf, name.as_str());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    buf.put_slice(CONTENT_LENGTH);
    buf.put_slice(body_len);
    buf.put_slice(b"\r\n\r\n");
    buf.put_slice(body);
    debug_assert!(buf.len() <= total);
    buf.freeze()
}

/// Copies `s`, dropping CR and LF: the start line and header names are plain `String`s the
/// caller may have filled, and a line break there would forge extra header lines.
fn put_clean(buf: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    if memchr::memchr2(b'\r', b'\n', b).is_none() {
        buf.put_slice(b);
    } else {
        b.iter()
            .filter(|&&c| c != b'\r' && c != b'\n')
            .for_each(|&c| buf.put_u8(c));
    }
}

fn decimal(mut n: usize, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}
