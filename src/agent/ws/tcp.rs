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
    /// Leaves the runtime; the descriptor for the reactor to watch. A stream lost on the way
    /// (deregistration failed) is `Gone`: its reads and writes fail.
    pub fn watch(&mut self) -> io::Result<RawFd> {
        match std::mem::replace(self, WsTcp::Gone) {
            WsTcp::Tokio(s) => {
                *self = WsTcp::Watched {
                    stream: s.into_std()?,
                    ready: true,
                }
            }
            other => *self = other,
        }
        match self {
            WsTcp::Watched { stream, .. } => Ok(stream.as_raw_fd()),
            _ => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Back to the runtime (the reactor no longer watches it).
    pub fn unwatch(&mut self) -> io::Result<()> {
        match std::mem::replace(self, WsTcp::Gone) {
            WsTcp::Watched { stream, .. } => {
                *self = WsTcp::Tokio(tokio::net::TcpStream::from_std(stream)?)
            }
            other => *self = other,
        }
        Ok(())
    }

    /// The reactor says the socket is readable.
    pub fn readable(&mut self) {
        if let WsTcp::Watched { ready, .. } = self {
            *ready = true;
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

#[cfg(test)]
mod tests {
    //! TLS over a watched stream, driven as a reactor drives it: a level-triggered wait on the
    //! descriptor, `readable`, then reads until one is pending. Nothing may be left behind in
    //! rustls's buffers or the kernel's without the descriptor being reported.

    use super::*;
    use std::sync::Arc;
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(5);

    /// Waits (bounded) for `fd` to be readable, as the reactor's level-triggered epoll does.
    fn readable(fd: RawFd, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd; the wait is bounded by `timeout`.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        n == 1
    }

    // The far end runs on the runtime's workers while this thread blocks in its waits, as a
    // reactor thread would.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn tls_over_a_watched_stream_reads_everything_with_readiness_alone() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        // The far end: sends records of very different sizes (one larger than any read), then
        // reads what comes back and answers with its length.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sizes = [10usize, 100_000, 5, 40_000];
        let far = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            let mut tls = acceptor.accept(tcp).await.unwrap();
            for (i, n) in sizes.iter().enumerate() {
                tls.write_all(&vec![i as u8 + 1; *n]).await.unwrap();
                tls.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut up = vec![0u8; 70_000];
            tls.read_exact(&mut up).await.unwrap();
            assert!(up.iter().all(|&b| b == 0xAB), "the client's bytes intact");
            tls.write_all(b"done").await.unwrap();
            tls.flush().await.unwrap();
            // Held open until the client has read the answer.
            let _ = tls.read(&mut [0u8; 1]).await;
        });

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, WsTcp::Tokio(tcp)).await.unwrap();
        // Handed to a "reactor": off the runtime from here on.
        let fd = tls.get_mut().0.watch().unwrap();
        let mut cx = Context::from_waker(Waker::noop());

        let mut got = Vec::new();
        let want: usize = sizes.iter().sum::<usize>() + 4;
        let mut sent = false;
        let up = vec![0xABu8; 70_000];
        let mut written = 0;
        let start = Instant::now();
        while got.len() < want && start.elapsed() < WAIT {
            // Writes while watched: what does not fit is tried again on the next pass.
            while written < up.len() {
                match Pin::new(&mut tls).poll_write(&mut cx, &up[written..]) {
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => panic!("write: {e}"),
                    Poll::Pending => break,
                }
            }
            if written == up.len() && !sent {
                if let Poll::Ready(r) = Pin::new(&mut tls).poll_flush(&mut cx) {
                    r.unwrap();
                    sent = true;
                }
            }
            if !readable(fd, Duration::from_millis(20)) {
                continue;
            }
            tls.get_mut().0.readable();
            let mut buf = [0u8; 4096];
            loop {
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(&mut tls).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => panic!("closed early"),
                    Poll::Ready(Ok(())) => got.extend_from_slice(rb.filled()),
                    Poll::Ready(Err(e)) => panic!("read: {e}"),
                    Poll::Pending => break,
                }
            }
        }
        let mut expected = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            expected.extend(std::iter::repeat_n(i as u8 + 1, *n));
        }
        expected.extend_from_slice(b"done");
        assert_eq!(got.len(), want, "everything read within the wait");
        assert!(got == expected, "in order and intact");
        // Back to the runtime, as a socket to be closed goes: it works there again.
        tls.get_mut().0.unwatch().unwrap();
        tls.write_all(b"x").await.unwrap();
        tls.flush().await.unwrap();
        far.await.unwrap();
    }
}
