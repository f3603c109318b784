//! What the WebSocket agents (Hume EVI, Media Streams bots, OpenAI) share: opening a client
//! socket with buffers sized for voice over a TCP stream that can leave tokio for a media
//! reactor ([`tcp::WsTcp`]), reading its end, closing it politely, and the keep-alive that
//! notices a far end which hangs with its connection open.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;

pub mod session;
pub mod tcp;

pub type Ws = WebSocketStream<MaybeTlsStream<tcp::WsTcp>>;

/// An open socket is pinged this often: a voice far end is silent between replies, so one
/// that hangs with its connection open shows only as pongs that stop.
pub const PING_EVERY: Duration = Duration::from_millis(500);
/// A socket that has sent nothing, not even a pong, for this long is treated as dropped.
pub const SILENT_LIMIT: Duration = Duration::from_secs(2);
/// A write that has not gone out in this long means the socket is dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a socket we close waits for the far end's closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a socket ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketClose {
    /// The far end closed it with a close frame (1005 when the frame had no code).
    Clean { code: u16, reason: String },
    /// It broke: reset, EOF without a close frame, a read or write error.
    Dropped { error: String },
}

impl SocketClose {
    /// What a read that was not a data message says about the socket: `None` while it is
    /// still open (a ping, a pong or a binary frame).
    pub fn from_read(item: Option<Result<Message, tungstenite::Error>>) -> Option<SocketClose> {
        match item {
            Some(Ok(Message::Close(frame))) => Some(SocketClose::Clean {
                code: frame.as_ref().map_or(1005, |f| u16::from(f.code)),
                reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            }),
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(SocketClose::Dropped {
                error: e.to_string(),
            }),
            None => Some(SocketClose::Dropped {
                error: "connection ended without a close frame".into(),
            }),
        }
    }
}

/// How much one read from the socket takes at most. Tungstenite zero-fills this much before
/// every read attempt, even one that finds the socket empty, so a socket polled on every wake
/// of its call wants it small ([`READ_SMALL`]); a far end with large messages read once per
/// wake of its own task wants it large ([`READ_LARGE`]).
pub const READ_SMALL: usize = 4 * 1024;
pub const READ_LARGE: usize = 16 * 1024;

/// Opens a client socket. `far_end` names it in errors ("EVI", "the stream bot"). Buffers are
/// sized for voice rather than tungstenite's 128 KiB defaults, which were most of a call's
/// memory: messages are a few tens of KiB at most, caller audio ~0.5 KiB a message. Messages
/// are written when flushed (the sink's `feed` lets a batch go out in one write). A
/// socket that stops draining errors out past 1 MiB instead of growing. Nagle off: audio goes
/// up every 20 ms and must not wait for an ACK.
pub async fn connect(request: Request, far_end: &str, read: usize) -> Result<Box<Ws>, String> {
    let url = request.uri().to_string();
    let config = WebSocketConfig::default()
        .read_buffer_size(read)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(16 << 20));
    let uri = request.uri();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact_query(&url)))?;
    // Nagle off: audio goes up every 20 ms and must not wait for an ACK.
    let _ = tcp.set_nodelay(true);
    match tokio_tungstenite::client_async_tls_with_config(
        request,
        tcp::WsTcp::Tokio(tcp),
        Some(config),
        None,
    )
    .await
    {
        Ok((ws, _response)) => Ok(Box::new(ws)),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            Err(format!(
                "{far_end} refused the WebSocket: HTTP {status} {}",
                body.trim()
            ))
        }
        Err(e) => Err(format!("cannot connect to {}: {e}", redact_query(&url))),
    }
}

/// The upgrade request for `url` with `headers` (name, value); the error names what is wrong.
pub fn request(url: &str, headers: &[(String, String)]) -> Result<Request, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("bad url {}: {e}", redact_query(url)))?;
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(format!("header {name} is not a valid HTTP header"));
        };
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// The TCP stream under a socket (plain or TLS, the two kinds [`connect`] makes).
pub fn tcp_of(ws: &mut Ws) -> Option<&mut tcp::WsTcp> {
    match ws.get_mut() {
        MaybeTlsStream::Rustls(s) => Some(s.get_mut().0),
        MaybeTlsStream::Plain(s) => Some(s),
        _ => None,
    }
}

/// The URL without its query, which may carry a token (logs must not).
fn redact_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// How long a closing socket waits for the far end's last word ([`close_in_background`]).
const REPLY_WAIT: Duration = Duration::from_secs(1);

/// In the background: writes `pending`, waits (at most [`REPLY_WAIT`]) for a text message
/// containing `reply` when one is awaited (GPT-Live's `session.closed`, which carries the
/// final usage), then sends a normal close and waits (bounded) for the far end's.
pub fn close_in_background(
    far_end: &'static str,
    mut ws: Ws,
    pending: Vec<Message>,
    reply: Option<&'static str>,
) {
    // Its reactor (if one watched it) has let go: back to the runtime, which drives the rest.
    if let Some(Err(e)) = tcp_of(&mut ws).map(tcp::WsTcp::unwatch) {
        tracing::debug!(far_end, error = %e, "socket lost returning to the runtime");
        return;
    }
    let task = async move {
        for message in pending {
            if bounded(ws.feed(message)).await.is_err() {
                return;
            }
        }
        if let Some(needle) = reply {
            if bounded(ws.flush()).await.is_err() {
                return;
            }
            let heard = tokio::time::timeout(REPLY_WAIT, async {
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(&m, Message::Text(t) if t.as_str().contains(needle)) {
                        return true;
                    }
                }
                false
            })
            .await;
            if heard != Ok(true) {
                tracing::debug!(far_end, reply = needle, "no last word from the far end");
            }
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let done = tokio::time::timeout(CLOSE_WAIT, async {
            // An error here means the socket is already closing or closed.
            let _ = ws.close(Some(frame)).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        if done.is_err() {
            tracing::debug!(far_end, "no closing handshake from the far end");
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
}

/// Writes one message and flushes, bounded by [`SEND_TIMEOUT`]; the error says why the socket
/// is dead.
pub async fn send(ws: &mut Ws, message: Message) -> Result<(), String> {
    bounded(ws.send(message)).await
}

/// A write that completes at once (the common case: the socket has room) needs no timer; only
/// one that waits gets the [`SEND_TIMEOUT`] deadline.
async fn bounded(
    io: impl std::future::Future<Output = Result<(), tungstenite::Error>>,
) -> Result<(), String> {
    let mut io = std::pin::pin!(io);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(io.as_mut().poll(cx))).await;
    let result = match first {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => tokio::time::timeout(SEND_TIMEOUT, io).await,
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("write stalled for {} s", SEND_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_show_the_query() {
        assert_eq!(
            redact_query("wss://bot.example/ws?token=secret"),
            "wss://bot.example/ws"
        );
        assert_eq!(redact_query("ws://h/x"), "ws://h/x");
    }
}
