//! The TCP stream under an agent's WebSocket, in one of two modes. While the call sets up it is
//! a tokio stream, registered with the runtime. Once the call's media runs on a media reactor
//! it leaves the runtime: the reactor watches it (level-triggered) and says when it is readable,
//! and it is read then only, so a far end's message costs one `read` on the reactor's thread
//! and wakes no tokio thread.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub enum WsTcp {
    Tokio(tokio::net::TcpStream),
    /// Non-blocking, unregistered; `ready` while the reactor has said readable and a read has
    /// not yet found the socket drained.
    Watched {
        stream: std::net::TcpStream,
        ready: bool,
    },
    /// Lost while changing modes.
    Gone,
}

impl WsTcp {
    /// Leaves the runtime; the descriptor for the reactor to watch.
    pub fn watch(&mut self) -> io::Result<RawFd> {
        if let WsTcp::Tokio(_) = self {
            let WsTcp::Tokio(s) = std::mem::replace(self, WsTcp::Gone) else {
                unreachable!()
            };
            *self = WsTcp::Watched {
                stream: s.into_std()?,
                ready: true,
            };
        }
        match self {
            WsTcp::Watched { stream, .. } => Ok(stream.as_raw_fd()),
            _ => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Back to the runtime (the reactor no longer watches it).
    pub fn unwatch(&mut self) -> io::Result<()> {
        if let WsTcp::Watched { .. } = self {
            let WsTcp::Watched { stream, .. } = std::mem::replace(self, WsTcp::Gone) else {
                unreachable!()
            };
            *self = WsTcp::Tokio(tokio::net::TcpStream::from_std(stream)?);
        }
        Ok(())
    }

    /// The reactor says the socket is readable.
    pub fn readable(&mut self) {
        if let WsTcp::Watched { ready, .. } = self {
            *ready = true;
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            WsTcp::Tokio(s) => s.local_addr(),
            WsTcp::Watched { stream, .. } => stream.local_addr(),
            WsTcp::Gone => Err(ErrorKind::NotConnected.into()),
        }
    }
}

fn gone<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(ErrorKind::NotConnected.into()))
}

impl AsyncRead for WsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsTcp::Tokio(s) => Pin::new(s).poll_read(cx, buf),
            WsTcp::Watched { stream, ready } => {
                if !*ready {
                    return Poll::Pending;
                }
                let want = buf.remaining();
                match stream.read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        // A short read emptied the socket: wait to be told again.
                        if n < want {
                            *ready = false;
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        *ready = false;
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            WsTcp::Gone => gone(),
        }
    }
}

impl AsyncWrite for WsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsTcp::Tokio(s) => Pin::new(s).poll_write(cx, buf),
            // A full socket: the write is tried again at the call's next service.
            WsTcp::Watched { stream, .. } => match stream.write(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Poll::Pending,
                other => Poll::Ready(other),
            },
            WsTcp::Gone => gone(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsTcp::Tokio(s) => Pin::new(s).poll_flush(cx),
            WsTcp::Watched { .. } => Poll::Ready(Ok(())),
            WsTcp::Gone => gone(),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsTcp::Tokio(s) => Pin::new(s).poll_shutdown(cx),
            WsTcp::Watched { stream, .. } => {
                Poll::Ready(stream.shutdown(std::net::Shutdown::Write))
            }
            WsTcp::Gone => gone(),
        }
    }
}
