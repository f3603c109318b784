//! SIP over a byte stream (TCP, TLS), sans-IO: where one message ends and the next begins.
//!
//! On a stream, RFC 3261 §18.3 makes Content-Length mandatory: it is the only thing that says
//! where the body stops. Between messages a peer may send RFC 5626 §3.5.1 keep-alives: a
//! double CRLF ("ping") asks for a single CRLF back ("pong"); a lone CRLF is ignored. Anything
//! that breaks the framing (no Content-Length, a header section or body over the limits) is
//! fatal for the connection: there is no way to find the next message, so the connection is
//! answered once, if the header section allows it, and closed.

use bytes::{Buf, Bytes, BytesMut};

/// The largest header section accepted: Twilio's INVITEs with Identity and X-headers are a few
/// kilobytes; 16 KiB leaves room for proxies' Record-Routes and Vias.
pub const MAX_HEADER: usize = 16 * 1024;
/// The largest body accepted: an SDP offer is under 2 KiB; this is generous.
pub const MAX_BODY: usize = 48 * 1024;

/// What the framer found in the bytes pushed so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One whole message: header section and exactly Content-Length bytes of body.
    Message(Bytes),
    /// A double-CRLF keep-alive: answer with one CRLF.
    Ping,
}

/// Why the stream cannot be read further. `head` holds the header section when there is one,
/// so a request can still get a 400 built from its Via, From, To, Call-ID and CSeq.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("header section longer than {MAX_HEADER} bytes")]
    HeaderTooLong,
    #[error("no Content-Length, which SIP over a stream requires (RFC 3261 18.3)")]
    NoContentLength { head: Bytes },
    #[error("bad Content-Length")]
    BadContentLength { head: Bytes },
    #[error("body of {len} bytes exceeds the {MAX_BODY}-byte limit")]
    BodyTooLong { len: usize, head: Bytes },
}

impl FrameError {
    /// The header section of the offending message, if it got that far.
    pub fn head(&self) -> Option<&Bytes> {
        match self {
            FrameError::HeaderTooLong => None,
            FrameError::NoContentLength { head }
            | FrameError::BadContentLength { head }
            | FrameError::BodyTooLong { head, .. } => Some(head),
        }
    }
}

/// Splits a byte stream into SIP messages. Push what the socket gave, then take frames until
/// `Ok(None)`. The buffer never holds more than one message's worth (header and body limits)
/// plus what one read added.
#[derive(Default)]
pub struct Framer {
    buf: BytesMut,
    /// The current message's header length and body length, once its header section is in.
    pending: Option<(usize, usize)>,
    /// How much of `buf` has been searched for the end of the header section without finding
    /// it: the next search starts there (less the three bytes a split CRLFCRLF may have), so a
    /// header trickled in byte by byte costs one pass, not one pass per byte.
    searched: usize,
}

impl Framer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when part of a message has arrived and the rest has not: the connection's
    /// "message must complete in time" clock runs only then. Meant once [`Framer::next_frame`]
    /// has returned `Ok(None)`: what is left then is a message's start, or the start of a ping.
    pub fn is_mid_message(&self) -> bool {
        self.pending.is_some() || !b"\r\n\r\n".starts_with(&self.buf)
    }

    /// Bytes held, for the memory accounting of tests.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.pending.is_none() {
            // Keep-alives come between messages only: a double CRLF is a ping, a lone CRLF
            // (the pong direction, or a stray line end) is skipped.
            let blank = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n');
            let blank = blank.count();
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            if blank == self.buf.len() && b"\r\n\r\n".starts_with(&self.buf) {
                // Nothing yet, or maybe the start of a ping: wait for the rest.
                return Ok(None);
            }
            // Stray line ends before a message (only ever before its first byte, so nothing
            // searched yet is skipped).
            self.buf.advance(blank);
            let from = self.searched.saturating_sub(3);
            let Some(end) = memchr::memmem::find(&self.buf[from..], b"\r\n\r\n") else {
                if self.buf.len() > MAX_HEADER {
                    return Err(FrameError::HeaderTooLong);
                }
                self.searched = self.buf.len();
                return Ok(None);
            };
            self.searched = 0;
            let head_len = from + end + 4;
            if head_len > MAX_HEADER {
                return Err(FrameError::HeaderTooLong);
            }
            let head = &self.buf[..head_len];
            let body_len = match content_length(head) {
                Ok(Some(n)) if n <= MAX_BODY => n,
                Ok(Some(len)) => {
                    let head = Bytes::copy_from_slice(head);
                    return Err(FrameError::BodyTooLong { len, head });
                }
                Ok(None) => {
                    let head = Bytes::copy_from_slice(head);
                    return Err(FrameError::NoContentLength { head });
                }
                Err(()) => {
                    let head = Bytes::copy_from_slice(head);
                    return Err(FrameError::BadContentLength { head });
                }
            };
            self.pending = Some((head_len, body_len));
        }
        let Some((head_len, body_len)) = self.pending else {
            return Ok(None);
        };
        let total = head_len + body_len;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        // Each message gets its own allocation (a call keeps its INVITE for its whole life;
        // see `RecvBuf`), and the framer's buffer is reused for what follows.
        let msg = Bytes::copy_from_slice(&self.buf[..total]);
        self.buf.advance(total);
        if self.buf.is_empty() && self.buf.capacity() > 2 * MAX_HEADER {
            // A large message passed: do not keep its buffer for the connection's life.
            self.buf = BytesMut::new();
        }
        Ok(Some(Frame::Message(msg)))
    }
}

/// The Content-Length of a header section (long or compact name, `l`), `Ok(None)` when there
/// is none, `Err` when it is not a number or two disagree.
fn content_length(head: &[u8]) -> Result<Option<usize>, ()> {
    let mut found: Option<usize> = None;
    // The first line is the start line; folded continuation lines start with white space and
    // cannot begin a header.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
        Content-Length: 4\r\n\r\nbody";

    fn frames(f: &mut Framer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn messages_split_at_content_length_whatever_the_reads() {
        let mut stream = Vec::new();
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(&OPTIONS[..OPTIONS.len() - 4]);
        stream.extend_from_slice(b"BODY");
        // Every split of the stream into two reads gives the same frames.
        for cut in 0..=stream.len() {
            let mut f = Framer::default();
            f.push(&stream[..cut]);
            let mut got = frames(&mut f);
            f.push(&stream[cut..]);
            got.extend(frames(&mut f));
            assert_eq!(got.len(), 3, "cut at {cut}: {got:?}");
            assert_eq!(got[0], Frame::Message(Bytes::from_static(OPTIONS)));
            assert_eq!(got[1], Frame::Ping);
            let Frame::Message(second) = &got[2] else {
                panic!("{got:?}")
            };
            assert!(second.ends_with(b"\r\n\r\nBODY"));
            assert_eq!(f.buffered(), 0);
            assert!(!f.is_mid_message());
        }
    }

    #[test]
    fn byte_by_byte_and_compact_content_length() {
        let msg = b"BYE sip:a SIP/2.0\r\nl:  2\r\nVia: x\r\n\r\nok";
        let mut f = Framer::default();
        let mut got = Vec::new();
        for b in msg {
            assert!(got.is_empty());
            f.push(&[*b]);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, vec![Frame::Message(Bytes::from_static(msg))]);
    }

    #[test]
    fn a_lone_crlf_is_skipped_and_a_partial_message_is_mid_message() {
        let mut f = Framer::default();
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        assert!(!f.is_mid_message());
        f.push(b"INVITE sip:a SIP/2.0\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        assert!(f.is_mid_message());
    }

    #[test]
    fn framing_errors_keep_the_head_for_a_400() {
        let mut f = Framer::default();
        f.push(b"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\nv=0\r\n");
        let e = f.next_frame().unwrap_err();
        assert!(matches!(e, FrameError::NoContentLength { .. }), "{e:?}");
        assert!(e.head().unwrap().starts_with(b"INVITE"));

        let mut f = Framer::default();
        f.push(b"INVITE sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n");
        let e = f.next_frame().unwrap_err();
        assert!(matches!(e, FrameError::BadContentLength { .. }), "{e:?}");

        let mut f = Framer::default();
        f.push(b"INVITE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::BadContentLength { .. })
        ));

        let mut f = Framer::default();
        f.push(b"INVITE sip:a SIP/2.0\r\nContent-Length: 10000000\r\n\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::BodyTooLong {
                len: 10_000_000,
                ..
            })
        ));
    }

    /// A stream that never ends its header section is refused once it passes the limit, with
    /// the buffer bounded by the limit plus one read.
    #[test]
    fn an_endless_header_section_is_refused_at_the_limit() {
        let mut f = Framer::default();
        f.push(b"INVITE sip:a SIP/2.0\r\n");
        let chunk = [b'x'; 4096];
        let mut pushed = 0;
        let err = loop {
            f.push(&chunk);
            pushed += chunk.len();
            match f.next_frame() {
                Ok(None) => assert!(pushed <= MAX_HEADER + chunk.len()),
                Ok(Some(frame)) => panic!("{frame:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, FrameError::HeaderTooLong);
        assert!(f.buffered() <= MAX_HEADER + 2 * chunk.len());
    }
}
