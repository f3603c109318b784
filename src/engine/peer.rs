//! A call's RTP socket `connect()`ed to the caller while the caller's media is symmetric (see
//! [`MediaSession::peer`](crate::media::session::MediaSession::peer)): the kernel then keeps
//! the route of every send instead of looking it up per packet, and finds the socket of every
//! packet received without a route lookup of its own (early demux). The price is that a
//! connected socket hears only its peer; the session asks for the socket back unconnected as
//! soon as the peer falls quiet, so a source that moved is heard again.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// What the socket is connected to, and whether connecting works at all for it.
#[derive(Debug, Default)]
pub struct Peer {
    connected: Option<SocketAddr>,
    /// A `connect` or disconnect failed once: the socket stays as it is (it still works,
    /// `sendto` names the address), and no syscall is tried again for this call.
    given_up: bool,
}

impl Peer {
    /// Connects, reconnects or disconnects the socket to match `want`; a syscall only on a
    /// change.
    pub fn sync(&mut self, socket: &UdpSocket, want: Option<SocketAddr>) {
        if self.given_up || want == self.connected {
            return;
        }
        let done = match want {
            Some(addr) => socket.connect(addr),
            None => disconnect(socket),
        };
        match done {
            Ok(()) => self.connected = want,
            Err(e) => {
                tracing::debug!(error = %e, peer = ?want, "RTP socket left as it was");
                self.given_up = true;
            }
        }
    }

    /// Sends one packet; returns the bytes sent (0 when dropped: RTP tolerates loss, and a full
    /// socket buffer never blocks the reactor). To the connected peer, with no address: the
    /// kernel uses the route it keeps. Anywhere else (DTMF after a re-INVITE moved the caller,
    /// before the socket follows), `sendto` names it.
    pub fn send(&self, socket: &UdpSocket, to: SocketAddr, pkt: &[u8]) -> usize {
        let sent = if self.connected == Some(to) {
            socket.send(pkt)
        } else {
            socket.send_to(pkt, to)
        };
        sent.unwrap_or(0)
    }

    #[cfg(test)]
    fn connected(&self) -> Option<SocketAddr> {
        self.connected
    }
}

/// Dissolves a UDP socket's association (`connect` to `AF_UNSPEC`, connect(2)): it hears any
/// source again on its port. Linux keeps the port of a socket bound to a port it named (the
/// port pool's), but gives back one the kernel chose (bound to port 0, as in tests): that one
/// is bound again to the same address.
fn disconnect(socket: &UdpSocket) -> io::Result<()> {
    let local = socket.local_addr()?;
    dissolve(socket)?;
    if socket.local_addr()?.port() != local.port() {
        socket2::SockRef::from(socket).bind(&local.into())?;
    }
    Ok(())
}

fn dissolve(socket: &UdpSocket) -> io::Result<()> {
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: the address is a valid `sockaddr` of the length given, read during the call only;
    // the descriptor is the socket's own, open for as long as `socket` is borrowed.
    let r = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Bound to a port the kernel chose, which a disconnect would give back.
    fn bound() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    /// Connected, the socket hears its peer only and sends to it without an address;
    /// disconnected, it hears anyone again on the same port.
    #[test]
    fn connects_to_the_peer_and_back() {
        let ours = bound();
        let caller = bound();
        let other = bound();
        let mut peer = Peer::default();
        let mut buf = [0u8; 16];

        peer.sync(&ours, Some(caller.local_addr().unwrap()));
        assert_eq!(peer.connected(), caller.local_addr().ok());
        assert_eq!(ours.peer_addr().ok(), caller.local_addr().ok());
        other.send_to(b"stray", ours.local_addr().unwrap()).unwrap();
        caller.send_to(b"rtp", ours.local_addr().unwrap()).unwrap();
        let (n, from) = ours.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"rtp"[..], caller.local_addr().unwrap())
        );
        assert_eq!(peer.send(&ours, caller.local_addr().unwrap(), b"back"), 4);
        assert_eq!(caller.recv(&mut buf).unwrap(), 4);
        // Another address still gets its packet while connected (sendto names it).
        assert_eq!(peer.send(&ours, other.local_addr().unwrap(), b"dtmf"), 4);
        assert_eq!(other.recv(&mut buf).unwrap(), 4);

        let port = ours.local_addr().unwrap();
        peer.sync(&ours, None);
        assert_eq!(peer.connected(), None);
        assert!(ours.peer_addr().is_err(), "no association left");
        assert_eq!(ours.local_addr().unwrap(), port, "the same port");
        other.send_to(b"moved", ours.local_addr().unwrap()).unwrap();
        let (n, from) = ours.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"moved"[..], other.local_addr().unwrap())
        );
    }

    /// A socket that cannot be connected (an IPv4 socket asked for an IPv6 peer) stays usable
    /// and unconnected, and is not asked again.
    #[test]
    fn a_failed_connect_leaves_the_socket_working() {
        let ours = bound();
        let caller = bound();
        let mut peer = Peer::default();
        peer.sync(&ours, Some("[::1]:5004".parse().unwrap()));
        assert_eq!(peer.connected(), None);
        assert!(ours.peer_addr().is_err());
        peer.sync(&ours, Some(caller.local_addr().unwrap()));
        assert_eq!(peer.connected(), None, "given up for this call");
        assert_eq!(peer.send(&ours, caller.local_addr().unwrap(), b"rtp"), 3);
        let mut buf = [0u8; 8];
        assert_eq!(caller.recv(&mut buf).unwrap(), 3);
    }
}
