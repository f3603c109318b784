//! The few Linux calls the media reactor needs, wrapped: a level-triggered epoll set, its wait
//! with a nanosecond timeout, and an eventfd to wake it from other threads.
//!
//! Raw epoll rather than mio: mio registers edge-triggered only, and an edge-triggered socket
//! must be read until it reports empty, one wasted `recvfrom` per packet when packets come one
//! at a time (as RTP does, 20 ms apart). Level-triggered, one readiness event means one read.
//! `epoll_pwait2` (Linux 5.11) takes a `timespec`, so the wait honours the timer wheel's
//! sub-millisecond slots instead of rounding every deadline up to the next millisecond.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Readiness (input or an error) of one registered descriptor, by its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub token: u64,
}

pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A set that returns at most `batch` events per wait.
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)],
        })
    }

    /// Watches `fd` for input, level-triggered: it is reported by every wait while it holds
    /// data (or an error), so one read per report never loses a wake-up.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLERR) as u32,
            u64: token,
        };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add` (the event is ignored for DEL but must be valid on old kernels).
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for readiness up to `timeout` (`None`: until something is ready) and appends the
    /// ready tokens to `out`. An interrupted wait returns no tokens.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Ready>) -> io::Result<()> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `events` is valid for `len` entries for the call's duration, `ts_ptr` is null
        // or points at `ts`, which lives until the end of this function; no signal mask.
        let n = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        out.extend(
            self.events[..n as usize]
                .iter()
                // Copied out: the struct is packed on x86-64.
                .map(|ev| Ready { token: { ev.u64 } }),
        );
        Ok(())
    }
}

/// A counter other threads bump to wake the reactor out of its wait.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable. Cannot block: the counter saturating (2^64 - 2 signals
    /// unread) only makes the write fail, and the descriptor is readable already.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor we own.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter so the descriptor is no longer readable.
    pub fn drain(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (nothing to read) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventfd_wakes_the_wait_until_drained() {
        let mut ep = Epoll::new(8).unwrap();
        let ev = EventFd::new().unwrap();
        ep.add(ev.raw(), 7).unwrap();
        let mut out = Vec::new();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
        ev.signal();
        ev.signal();
        // Level-triggered: reported by every wait until read.
        for _ in 0..2 {
            out.clear();
            ep.wait(Some(Duration::from_secs(5)), &mut out).unwrap();
            assert_eq!(out, vec![Ready { token: 7 }]);
        }
        ev.drain();
        out.clear();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_udp_socket_is_reported_once_per_wait_while_it_holds_data() {
        let mut ep = Epoll::new(8).unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        ep.add(rx.as_raw_fd(), 42).unwrap();
        tx.send_to(b"a", rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"b", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        for want in [b'a', b'b'] {
            let mut out = Vec::new();
            ep.wait(Some(Duration::from_secs(5)), &mut out).unwrap();
            assert_eq!(out, vec![Ready { token: 42 }]);
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[want]);
        }
        let mut out = Vec::new();
        ep.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "drained: no more readiness");
        ep.delete(rx.as_raw_fd()).unwrap();
        tx.send_to(b"c", rx.local_addr().unwrap()).unwrap();
        ep.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "a deleted socket is not reported");
    }
}
