//! The harness's RTP sockets: one per call, all in one level-triggered epoll set that the
//! driver drains on its tick, and each datagram's arrival time as the kernel stamped it.
//!
//! Nothing waits on the set: a datagram wakes no one. On loopback the sender pays for waking
//! the receiver (the gateway's `sendto` ran the harness's epoll callbacks and woke its thread,
//! 7.6 % of the gateway's profile at 1,000 calls), a cost a real NIC leaves to the receiver.
//! Reading on the 2 ms tick instead does not blur the round trip: the arrival time is the
//! kernel's receive stamp (`SO_TIMESTAMPNS`), not the time of the read. Level-triggered, a wait
//! names the sockets that hold data and each gets exactly one read; a socket with more is named
//! again by the next wait.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::epoll::{Epoll, Ready};

/// Ready sockets taken per wait.
const BATCH: usize = 256;
/// Waits per drain: 16 x 256 datagrams a 2 ms tick is two million a second, far beyond what one
/// core sends; a burst beyond that waits for the next tick rather than holding off this one's
/// sends.
const ROUNDS: usize = 16;

pub(super) struct RtpSockets {
    set: Epoll,
    ready: Vec<Ready>,
}

impl RtpSockets {
    pub fn new() -> io::Result<RtpSockets> {
        Ok(RtpSockets {
            set: Epoll::new(BATCH)?,
            ready: Vec::with_capacity(BATCH),
        })
    }

    /// Stamps `socket`'s datagrams on arrival and watches it, reported as `slot`.
    pub fn add(&self, socket: &UdpSocket, slot: usize) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a live descriptor, and an int option read from a live local for its size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.set.add(socket.as_raw_fd(), slot as u64)
    }

    /// Stops watching a socket before it is closed (closing would drop it from the set as well;
    /// this keeps the set's contents explicit).
    pub fn remove(&self, socket: &UdpSocket) {
        let _ = self.set.delete(socket.as_raw_fd());
    }

    /// Calls `read_one` with the slot of every socket that holds a datagram, until none does
    /// (or [`ROUNDS`] waits); `read_one` must read one datagram, or the socket is named again.
    pub fn drain(&mut self, mut read_one: impl FnMut(usize)) {
        for _ in 0..ROUNDS {
            self.ready.clear();
            // A wait on a live set with a valid buffer cannot fail but for a signal, after which
            // the next tick drains.
            if self
                .set
                .wait(Some(Duration::ZERO), &mut self.ready)
                .is_err()
                || self.ready.is_empty()
            {
                return;
            }
            for r in &self.ready {
                read_one(r.token as usize);
            }
        }
    }
}

/// Converts the kernel's receive stamps (wall clock) to the monotonic clock, from one reading
/// of both clocks: a drain's datagrams are all converted with the reading taken at its start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clocks {
    instant: Instant,
    wall: SystemTime,
}

impl Clocks {
    pub fn now() -> Clocks {
        Clocks {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// When a datagram stamped `stamp` arrived; `now` for a datagram without a stamp, or with
    /// one after the reading (the wall clock stepped back).
    pub fn arrival(&self, stamp: Option<SystemTime>) -> Instant {
        stamp
            .and_then(|s| self.wall.duration_since(s).ok())
            .and_then(|age| self.instant.checked_sub(age))
            .unwrap_or(self.instant)
    }
}

/// Reads one datagram: its length, its source and the kernel's receive stamp.
pub(super) fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timestamp message, aligned as the kernel writes it.
    let mut control = [0u64; 8];
    // SAFETY: socket2 hands a zeroed address storage and its length; the closure gives both to
    // `recvmsg` with every other pointer at a live local or at `buf`, with its true length, and
    // reports the length the kernel wrote. All-zero is a valid `msghdr`.
    let ((n, stamp), addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of_val(&control) as _;
            let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            Ok((n as usize, stamp_of(&msg)))
        })
    }?;
    let src = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram from a non-IP address"))?;
    Ok((n, src, stamp))
}

/// The `SO_TIMESTAMPNS` stamp among a received message's control messages.
///
/// # Safety
/// `msg` comes from a successful `recvmsg`: its control buffer holds `msg_controllen` bytes
/// the kernel wrote.
unsafe fn stamp_of(msg: &libc::msghdr) -> Option<SystemTime> {
    let mut stamp = None;
    // SAFETY: the CMSG macros walk only the `msg_controllen` bytes the kernel wrote, and a
    // timestamp message's data is one `timespec` (read unaligned to be safe).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    stamp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ip: &str) -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind((ip, 0)).unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind((ip, 0)).unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    /// One drain: the slots named, in order.
    fn drained(set: &mut RtpSockets, sockets: &[&UdpSocket]) -> Vec<usize> {
        let mut named = Vec::new();
        let mut buf = [0u8; 64];
        set.drain(|slot| {
            recv_stamped(sockets[slot], &mut buf).unwrap();
            named.push(slot);
        });
        named
    }

    #[test]
    fn a_drain_reads_every_datagram_once_and_a_removed_socket_is_not_named() {
        let mut set = RtpSockets::new().unwrap();
        let (a_rx, a_tx) = pair("127.0.0.1");
        let (b_rx, b_tx) = pair("127.0.0.1");
        set.add(&a_rx, 0).unwrap();
        set.add(&b_rx, 1).unwrap();
        let sockets = [&a_rx, &b_rx];
        assert!(drained(&mut set, &sockets).is_empty());

        // Loopback delivers within the send: two datagrams on slot 0, one on slot 1.
        a_tx.send(b"1").unwrap();
        a_tx.send(b"2").unwrap();
        b_tx.send(b"3").unwrap();
        let mut named = drained(&mut set, &sockets);
        named.sort();
        assert_eq!(named, vec![0, 0, 1], "one read per datagram");
        assert!(drained(&mut set, &sockets).is_empty(), "all read");

        set.remove(&b_rx);
        a_tx.send(b"4").unwrap();
        b_tx.send(b"5").unwrap();
        assert_eq!(drained(&mut set, &sockets), vec![0]);
    }

    #[test]
    fn a_datagram_read_later_keeps_the_time_it_arrived() {
        let set = RtpSockets::new().unwrap();
        for ip in ["127.0.0.1", "::1"] {
            let (rx, tx) = pair(ip);
            set.add(&rx, 0).unwrap();
            // Linux switches receive stamps on for the whole stack from a work queue once a
            // first socket asks, and until then stamps a datagram when it is read: the first
            // tries may come back with the time of the read. Ten tries at most.
            let mut early = None;
            for _ in 0..10 {
                let before = Instant::now();
                tx.send(b"rtp").unwrap();
                let sent = Instant::now();
                // Read well after it arrived, as the tick does.
                std::thread::sleep(Duration::from_millis(30));
                let clocks = Clocks::now();
                let mut buf = [0u8; 16];
                let (n, src, stamp) = recv_stamped(&rx, &mut buf).unwrap();
                assert_eq!((&buf[..n], src), (&b"rtp"[..], tx.local_addr().unwrap()));
                let arrived = clocks.arrival(stamp);
                // The two clocks are read apart, and a VM's may drift a little between them:
                // a millisecond of slack, far below the 30 ms between arrival and read.
                let slack = Duration::from_millis(1);
                assert!(arrived + slack >= before, "{ip}: arrival before the send");
                if arrived <= sent + slack {
                    early = Some(clocks.instant - arrived);
                    break;
                }
            }
            let early = early.unwrap_or_else(|| panic!("{ip}: every arrival was the read's time"));
            assert!(
                early >= Duration::from_millis(29),
                "{ip}: read {early:?} after arrival"
            );
        }
    }

    #[test]
    fn a_datagram_without_a_stamp_arrived_when_read() {
        let clocks = Clocks::now();
        assert_eq!(clocks.arrival(None), clocks.instant);
        let future = clocks.wall + Duration::from_secs(1);
        assert_eq!(clocks.arrival(Some(future)), clocks.instant);
        let earlier = clocks.wall - Duration::from_millis(5);
        assert_eq!(
            clocks.arrival(Some(earlier)),
            clocks.instant - Duration::from_millis(5)
        );
    }
}
