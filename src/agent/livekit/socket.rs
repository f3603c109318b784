//! A peer connection's UDP socket, in one of two modes. While the call sets up, every datagram
//! must be handled at once (ICE, DTLS and SCTP handshakes), so the socket is registered with
//! the runtime and wakes the call's task. Once the call is answered its media runs on a media
//! reactor: the socket leaves the runtime, the reactor watches it in its own epoll set and says
//! when it is readable, so a room packet is read with one syscall on the reactor's thread and
//! wakes no tokio thread (docs/performance.md, "LiveKit on the reactor").

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::ReadBuf;

pub enum MediaSocket {
    /// Registered with the runtime: readable datagrams wake the task that polled.
    Woken(tokio::net::UdpSocket),
    /// Non-blocking and unregistered: read when the owner chooses (its reactor says readable).
    Polled(std::net::UdpSocket),
    /// Lost while leaving the runtime (deregistration failed): sends fail, reads find nothing,
    /// and ICE reports the connection failed.
    Closed,
}

impl MediaSocket {
    /// A socket on `ip`, any port, registered with the runtime.
    pub fn bind(ip: IpAddr) -> io::Result<MediaSocket> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        Ok(MediaSocket::Woken(tokio::net::UdpSocket::from_std(socket)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            MediaSocket::Woken(s) => s.local_addr(),
            MediaSocket::Polled(s) => s.local_addr(),
            MediaSocket::Closed => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Sends without waiting; a full buffer is `WouldBlock`.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            MediaSocket::Woken(s) => s.try_send_to(buf, to),
            MediaSocket::Polled(s) => s.send_to(buf, to),
            MediaSocket::Closed => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// The next datagram. `Pending` when there is none; only a woken socket then arranges
    /// for `cx` to be woken.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match self {
            MediaSocket::Woken(s) => {
                let mut rb = ReadBuf::new(buf);
                s.poll_recv_from(cx, &mut rb)
                    .map_ok(|from| (rb.filled().len(), from))
            }
            MediaSocket::Polled(s) => match s.recv_from(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Poll::Pending,
                other => Poll::Ready(other),
            },
            MediaSocket::Closed => Poll::Pending,
        }
    }

    /// The descriptor of a polled socket, for a media reactor to watch.
    pub fn polled_fd(&self) -> Option<RawFd> {
        match self {
            MediaSocket::Polled(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// Leaves the runtime: from now on the owner decides when to read.
    pub fn make_polled(&mut self) -> io::Result<()> {
        match std::mem::replace(self, MediaSocket::Closed) {
            MediaSocket::Woken(s) => *self = MediaSocket::Polled(s.into_std()?),
            other => *self = other,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;
    use std::time::Duration;

    #[tokio::test]
    async fn both_modes_carry_datagrams_and_a_polled_socket_is_read_on_demand() {
        let mut socket = MediaSocket::bind("127.0.0.1".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let mut cx = Context::from_waker(Waker::noop());
        assert!(socket.poll_recv(&mut cx, &mut buf).is_pending());
        peer.send_to(b"woken", addr).unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| socket.poll_recv(cx, &mut buf)),
        )
        .await
        .expect("a datagram within 5 s")
        .unwrap();
        assert_eq!(&buf[..got.0], b"woken");
        assert_eq!(got.1, peer.local_addr().unwrap());

        socket.make_polled().unwrap();
        assert!(socket.polled_fd().is_some());
        assert_eq!(socket.local_addr().unwrap(), addr);
        assert!(socket.poll_recv(&mut cx, &mut buf).is_pending());
        peer.send_to(b"polled", addr).unwrap();
        // Loopback delivery is synchronous with the send, but bound the wait all the same.
        let mut got = None;
        for _ in 0..100 {
            if let Poll::Ready(r) = socket.poll_recv(&mut cx, &mut buf) {
                got = Some(r.unwrap());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (n, _) = got.expect("the datagram");
        assert_eq!(&buf[..n], b"polled");
        socket.send_to(b"back", peer.local_addr().unwrap()).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
    }
}
