//! A SIP peer on one TCP or TLS connection, for the stream transport tests: it writes raw
//! text and reads messages framed by their Content-Length, the way any stream peer must.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct StreamSip {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    pub local: SocketAddr,
    /// Over TLS: the certificate the gateway presented (DER).
    pub server_cert: Option<Vec<u8>>,
}

impl StreamSip {
    pub async fn tcp(to: SocketAddr) -> StreamSip {
        StreamSip::tcp_from([127, 0, 0, 1], to).await
    }

    /// A connection the gateway opened to us (accepted on a listener of the test's).
    pub fn from_tcp(socket: TcpStream) -> StreamSip {
        let local = socket.local_addr().unwrap();
        StreamSip {
            io: Box::new(socket),
            buf: Vec::new(),
            local,
            server_cert: None,
        }
    }

    /// A TCP connection from the loopback address `ip` (a distinct source for the front door).
    pub async fn tcp_from(ip: [u8; 4], to: SocketAddr) -> StreamSip {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        StreamSip::from_tcp(socket.connect(to).await.unwrap())
    }

    /// A TLS connection checked against `config`'s roots for the name `127.0.0.1`.
    pub async fn tls(
        to: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<StreamSip> {
        let socket = TcpStream::connect(to).await?;
        let local = socket.local_addr()?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, socket)
            .await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        Ok(StreamSip {
            io: Box::new(tls),
            buf: Vec::new(),
            local,
            server_cert,
        })
    }

    pub async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.io.write_all(text.as_bytes()).await?;
        self.io.flush().await
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Reads until `done` holds for the buffer, the connection ends, or `wait` passes. False
    /// when the connection ended or time ran out first.
    async fn fill_until(&mut self, wait: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        while !done(&self.buf) {
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        true
    }

    /// The next message within `wait` (leading CRLFs, which are keep-alive answers, skipped).
    pub async fn recv(&mut self, wait: Duration) -> Option<String> {
        let complete = |b: &[u8]| message_len(b).is_some_and(|n| b.len() >= n);
        if !self.fill_until(wait, |b| complete(trim_crlf(b))).await {
            return None;
        }
        let skip = self.buf.len() - trim_crlf(&self.buf).len();
        self.buf.drain(..skip);
        let n = message_len(&self.buf)?;
        let msg: Vec<u8> = self.buf.drain(..n).collect();
        Some(String::from_utf8_lossy(&msg).into_owned())
    }

    /// The next message that is a response to `method`, or a request when `method` is the
    /// request's name preceded by `>` (e.g. `>BYE`).
    pub async fn recv_matching(&mut self, method: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.recv(left).await?;
            let wanted = match method.strip_prefix('>') {
                Some(req) => msg.starts_with(&format!("{req} ")),
                None => {
                    msg.starts_with("SIP/2.0 ")
                        && !msg.starts_with("SIP/2.0 1")
                        && super::raw_sip::header(&msg, "CSeq").is_some_and(|c| c.ends_with(method))
                }
            };
            if wanted {
                return Some(msg);
            }
        }
    }

    /// Waits for a single CRLF (the answer to a double-CRLF ping).
    pub async fn pong(&mut self, wait: Duration) -> bool {
        let ok = self.fill_until(wait, |b| b.starts_with(b"\r\n")).await;
        if ok {
            self.buf.drain(..2);
        }
        ok
    }

    /// True when the gateway closes the connection within `wait` (what it sent before the
    /// close is kept for [`StreamSip::recv`]).
    pub async fn closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    /// What was received but not taken as a message yet.
    pub fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
    &b[n..]
}

/// The length of the message at the start of `b`, once its header section is complete.
fn message_len(b: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(b);
    let end = text.find("\r\n\r\n")? + 4;
    let body = super::raw_sip::header(&text[..end], "Content-Length")
        .or_else(|| super::raw_sip::header(&text[..end], "l"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(end + body)
}
