//! SIP over UDP: the socket edge, and the one answer we can give to a message that does not
//! parse.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::UdpSocket;

/// Twilio's INVITEs with Identity, Record-Route and X-headers run past 1500 bytes; UDP allows
/// 64 KiB, so read whole datagrams.
pub const MAX_DATAGRAM: usize = 65_535;

/// Where datagrams land before they are copied out, at their own size. A message is kept for a
/// call's life (its INVITE, its dialog's headers are slices of it), so handing out slices of a
/// shared 64 KiB receive block would pin a whole block per call: 128 MB at 2,000 calls, and a
/// heap that grows with churn. One copy of about a kilobyte per datagram costs less.
pub struct RecvBuf(Box<[u8]>);

impl Default for RecvBuf {
    fn default() -> Self {
        RecvBuf(vec![0; MAX_DATAGRAM].into_boxed_slice())
    }
}

/// The SIP socket, shared by the receive loop and every call (sending on a UDP socket needs no
/// lock: `send_to` takes `&self`).
#[derive(Clone)]
pub struct SipSocket {
    socket: Arc<UdpSocket>,
}

impl SipSocket {
    pub async fn bind(addr: SocketAddr) -> io::Result<SipSocket> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(SipSocket {
            socket: Arc::new(socket),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives one datagram into `buf` (a [`RecvBuf`], reused between calls) and returns a
    /// copy of it as `Bytes`.
    pub async fn recv(&self, buf: &mut RecvBuf) -> io::Result<(Bytes, SocketAddr)> {
        let (n, src) = self.socket.recv_from(&mut buf.0).await?;
        Ok((Bytes::copy_from_slice(&buf.0[..n]), src))
    }

    /// Receives one more datagram if one is queued, without waiting: `None` when the socket
    /// is empty.
    pub fn try_recv(&self, buf: &mut RecvBuf) -> io::Result<Option<(Bytes, SocketAddr)>> {
        match self.socket.try_recv_from(&mut buf.0) {
            Ok((n, src)) => Ok(Some((Bytes::copy_from_slice(&buf.0[..n]), src))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends, logging rather than failing: a lost UDP datagram is what SIP retransmission is for.
    pub async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "SIP send failed");
        }
    }
}

/// A `400 Bad Request` for a request that failed to parse, built from its raw header lines, so
/// the sender learns why instead of retransmitting into silence. `None` when it cannot be
/// answered: a response, an ACK (never answered), or a request missing the headers a response
/// must echo (Via, From, To, Call-ID, CSeq).
pub fn bad_request(data: &[u8], reason: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(data).ok().or_else(|| {
        // A bad byte in the body must not stop us answering: read the header section only.
        let end = memchr::memmem::find(data, b"\r\n\r\n")?;
        std::str::from_utf8(&data[..end]).ok()
    })?;
    let head = text.split("\r\n\r\n").next().unwrap_or(text);
    let mut lines = head.lines();
    let start = lines.next()?;
    let mut parts = start.split_whitespace();
    let method = parts.next()?;
    if method.starts_with("SIP/") || method.eq_ignore_ascii_case("ACK") {
        return None;
    }
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 400 Bad Request\r\n");
    let mut seen = [false; 5];
    // Whether the line before was echoed, so its folded continuation lines go with it.
    let mut echoing = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if echoing {
                out.put_slice(line.as_bytes());
                out.put_slice(b"\r\n");
            }
            continue;
        }
        echoing = false;
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let idx = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        // Every Via goes back (RFC 3261 8.2.6.2); of the others only the first, since a
        // message that repeats them (RFC 4475 multi01) would make our answer malformed too.
        if idx != 0 && seen[idx] {
            continue;
        }
        seen[idx] = true;
        echoing = true;
        out.put_slice(line.as_bytes());
        out.put_slice(b"\r\n");
    }
    if !seen.iter().all(|&s| s) {
        return None;
    }
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(200)
        .collect();
    out.put_slice(format!("Warning: 399 sipbridge \"{reason}\"\r\n").as_bytes());
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A received message owns exactly its bytes: a call keeps its INVITE for its whole life,
    /// and a slice of a shared receive block would pin the block (64 KiB) per call.
    #[tokio::test]
    async fn a_received_datagram_is_its_own_allocation() {
        let sip = SipSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let to = sip.local_addr().unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = RecvBuf::default();
        for text in ["OPTIONS sip:a SIP/2.0\r\n\r\n", "x"] {
            peer.send_to(text.as_bytes(), to).await.unwrap();
        }
        let (first, _) = sip.recv(&mut buf).await.unwrap();
        let second = loop {
            if let Some((b, _)) = sip.try_recv(&mut buf).unwrap() {
                break b;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(&first[..], b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        assert_eq!(&second[..], b"x");
        assert!(first.is_unique() && second.is_unique());
    }

    #[test]
    fn bad_request_echoes_the_dialog_headers() {
        let msg = b"INVITE sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa\r\n\
            f: <sip:a@b>;tag=1\r\nt: <sip:x@y>\r\ni: abc\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 999\r\n\r\n";
        let r = bad_request(msg, "Content-Length 999 \"exceeds\" body").unwrap();
        let r = std::str::from_utf8(&r).unwrap();
        assert!(r.starts_with("SIP/2.0 400 Bad Request\r\n"));
        for h in [
            "v: SIP/2.0/UDP",
            "f: <sip:a@b>;tag=1",
            "i: abc",
            "CSeq: 1 INVITE",
        ] {
            assert!(r.contains(h), "{h} missing in {r}");
        }
        assert!(r.contains("Warning: 399 sipbridge \"Content-Length 999 exceeds body\""));
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn repeated_dialog_headers_are_echoed_once_and_folds_kept() {
        let msg = b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
            Via: SIP/2.0/UDP b;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo:\r\n <sip:x@y>\r\n\
            Call-ID: one\r\nCall-ID: two\r\nFrom: <sip:c@d>;tag=2\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = bad_request(msg, "two Call-IDs").unwrap();
        let r = std::str::from_utf8(&r).unwrap();
        assert_eq!(r.matches("Via: ").count(), 2, "{r}");
        assert!(r.contains("To:\r\n <sip:x@y>\r\n"), "{r}");
        assert!(
            r.contains("Call-ID: one") && !r.contains("Call-ID: two"),
            "{r}"
        );
        assert!(r.contains("tag=1") && !r.contains("tag=2"), "{r}");
    }

    #[test]
    fn unanswerable_messages_get_nothing() {
        assert!(bad_request(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "r").is_none());
        assert!(bad_request(
            b"ACK sip:x SIP/2.0\r\nVia: a\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
            "r"
        )
        .is_none());
        assert!(bad_request(b"INVITE sip:x SIP/2.0\r\nVia: a\r\n\r\n", "r").is_none());
        assert!(bad_request(b"\xff\xfe", "r").is_none());
        assert!(bad_request(b"", "r").is_none());
    }
}
