//! SIP's transports: UDP (this file), and TCP and TLS streams ([`stream`], framed by
//! [`framing`], TLS set up by [`tls`]); the address a message came from or goes to, with its
//! transport ([`Peer`]); and the one answer we can give to a message that does not parse.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::UdpSocket;

pub mod framing;
pub mod stream;
pub mod tls;

use crate::sip::uri::Uri;
use stream::Streams;

/// How a SIP message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The name in a Via header (`SIP/2.0/TLS`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter that asks for it (none for UDP, the default).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
        }
    }

    /// Streams deliver in order or fail: no SIP retransmission is needed over them.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

/// Lower case, as in a URI's `transport=` parameter.
impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri_param().unwrap_or("udp"))
    }
}

/// Where a message came from or goes to: an address and the transport. Over TCP and TLS the
/// pair names one connection (the remote end's address is unique per connection on a port),
/// so a response finds the connection its request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::udp(addr)
    }
}

/// `1.2.3.4:5060` for UDP, `tls:1.2.3.4:40112` for the others: what logs and `/calls` show.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport.uri_param() {
            None => write!(f, "{}", self.addr),
            Some(t) => write!(f, "{t}:{}", self.addr),
        }
    }
}

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

/// Everything the gateway sends SIP through: the UDP socket, and the stream connections with
/// what it takes to open new ones.
#[derive(Clone)]
pub struct SipTransport {
    pub udp: SipSocket,
    pub streams: Arc<Streams>,
    /// The ports our TCP and TLS listeners are on (Via sent-by and Contact of dialogs on them).
    pub tcp_port: Option<u16>,
    pub tls_port: Option<u16>,
    /// How to open a TLS connection of our own, when a dialog's connection is gone.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

impl SipTransport {
    /// Sends to `to`: a datagram, or onto the connection `to` names. False when that
    /// connection is gone (a response to a request whose connection closed is lost, as
    /// RFC 3261 18.2.2 allows us to decide; the client's transaction times out).
    pub async fn send(&self, to: Peer, bytes: Bytes) -> bool {
        match to.transport {
            Transport::Udp => {
                self.udp.send(to.addr, &bytes).await;
                true
            }
            Transport::Tcp | Transport::Tls => self.streams.send(to, bytes),
        }
    }

    /// Sends an in-dialog request of a dialog that lives on `flow` (the connection or address
    /// its INVITE came from) towards `hop`, the next hop its route set names. Over a stream the
    /// dialog's own connection is used while it is open (that is where the peer expects it,
    /// and what gets through its NAT); else a connection to `hop` is opened over the same
    /// transport. Over UDP it goes to `hop`.
    pub async fn send_request(&self, flow: Peer, hop: &Uri, bytes: Bytes) -> Result<(), String> {
        if flow.transport.is_stream() && self.streams.send(flow, bytes.clone()) {
            return Ok(());
        }
        let addr = resolve(hop)
            .await
            .ok_or_else(|| format!("cannot resolve {hop}"))?;
        let to = Peer {
            transport: flow.transport,
            addr,
        };
        if self.send(to, bytes.clone()).await {
            return Ok(());
        }
        let wrap = match to.transport {
            // A datagram was sent above: UDP has no connection to open.
            Transport::Udp => return Ok(()),
            Transport::Tcp => stream::plain(),
            Transport::Tls => {
                let config = self
                    .tls_client
                    .clone()
                    .ok_or("no TLS client configuration")?;
                tls::connector(config, &hop.host)?
            }
        };
        self.streams
            .connect(to, wrap)
            .await
            .map_err(|e| format!("connecting to {to}: {e}"))?;
        if self.streams.send(to, bytes) {
            Ok(())
        } else {
            Err(format!("connection to {to} closed at once"))
        }
    }

    /// The port our TCP or TLS listener is on (`None` for UDP, whose port the caller has).
    pub fn stream_port(&self, transport: Transport) -> Option<u16> {
        match transport {
            Transport::Udp => None,
            Transport::Tcp => self.tcp_port,
            Transport::Tls => self.tls_port,
        }
    }
}

/// The address of a next hop: an IP literal as is, a name through DNS (A/AAAA; SRV is not
/// needed for Twilio, whose Record-Route entries are addresses).
pub async fn resolve(uri: &Uri) -> Option<SocketAddr> {
    if let Some(addr) = uri.socket_addr() {
        return Some(addr);
    }
    let (host, port) = uri.host_port();
    let mut addrs = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    addrs.next()
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
