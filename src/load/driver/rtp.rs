//! The harness's RTP sockets: one per call, all in one level-triggered epoll set whose own
//! descriptor tokio watches.
//!
//! Through tokio each socket would be edge-triggered: after every datagram the driver must read
//! again until the socket reports empty, so each echo costs two `recvfrom` and a wake-up of its
//! own. Level-triggered, a wait names the sockets that hold data and each gets exactly one read;
//! a socket with more is named again by the next wait. The set's descriptor is readable while any
//! member is, which is all tokio needs to wake the driver.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::engine::epoll::{Epoll, Ready};

/// Ready sockets taken per wait.
const BATCH: usize = 256;
/// Waits per poll: beyond 4 x 256 datagrams the driver goes back to its tick and its SIP socket
/// and comes back for the rest.
const ROUNDS: usize = 4;

pub(super) struct RtpSockets {
    set: AsyncFd<Epoll>,
    ready: Vec<Ready>,
}

impl RtpSockets {
    /// Must be called inside a tokio runtime with I/O enabled.
    pub fn new() -> io::Result<RtpSockets> {
        // SAFETY: the set owns its descriptor for its whole life and always reports that one.
        let set =
            unsafe { AsyncFd::register_with_interest(Epoll::new(BATCH)?, Interest::READABLE) }?;
        Ok(RtpSockets {
            set,
            ready: Vec::with_capacity(BATCH),
        })
    }

    /// Watches a call's socket, reported as `slot`.
    pub fn add(&self, socket: &UdpSocket, slot: usize) -> io::Result<()> {
        self.set.get_ref().add(socket.as_raw_fd(), slot as u64)
    }

    /// Stops watching a socket before it is closed (closing would drop it from the set as well;
    /// this keeps the set's contents explicit).
    pub fn remove(&self, socket: &UdpSocket) {
        let _ = self.set.get_ref().delete(socket.as_raw_fd());
    }

    /// Calls `read_one` with the slot of every socket that holds a datagram; it must read one
    /// datagram from it (or the socket is named again, which is harmless). Registers `cx` for
    /// the next datagram once every socket is empty. True when any socket was named.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>, mut read_one: impl FnMut(usize)) -> bool {
        let Poll::Ready(Ok(mut guard)) = self.set.poll_read_ready_mut(cx) else {
            return false;
        };
        let mut named = false;
        for _ in 0..ROUNDS {
            self.ready.clear();
            let waited = guard
                .get_inner_mut()
                .wait(Some(Duration::ZERO), &mut self.ready);
            if waited.is_err() || self.ready.is_empty() {
                // Empty (a wait on a live set with a valid buffer cannot fail otherwise): clear
                // tokio's readiness. A datagram landing since the wait raised a new edge, which
                // tokio keeps rather than clears.
                guard.clear_ready();
                return named;
            }
            named = true;
            for r in &self.ready {
                read_one(r.token as usize);
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    /// Polls until some socket is named and returns the slots named in that poll.
    async fn next_named(set: &mut RtpSockets, sockets: &[&UdpSocket]) -> Vec<usize> {
        let mut buf = [0u8; 64];
        poll_fn(|cx| {
            let mut named = Vec::new();
            set.poll_ready(cx, |slot| {
                let _ = sockets[slot].recv_from(&mut buf);
                named.push(slot);
            });
            if named.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(named)
            }
        })
        .await
    }

    #[tokio::test]
    async fn each_datagram_is_named_once_and_the_task_is_woken_for_the_next() {
        let mut set = RtpSockets::new().unwrap();
        let (a_rx, a_tx) = pair();
        let (b_rx, b_tx) = pair();
        set.add(&a_rx, 0).unwrap();
        set.add(&b_rx, 1).unwrap();
        let within = Duration::from_secs(5);

        a_tx.send(b"1").unwrap();
        a_tx.send(b"2").unwrap();
        b_tx.send(b"3").unwrap();
        // Two datagrams on slot 0: one read per wait, so it is named again in the next round.
        let named = tokio::time::timeout(within, next_named(&mut set, &[&a_rx, &b_rx]))
            .await
            .unwrap();
        let mut sorted = named.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 0, 1], "named {named:?}");

        // All read: a poll finds nothing and registers its waker, which the next datagram wakes.
        let woken = Arc::new(Flag::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        assert!(!set.poll_ready(&mut cx, |_| panic!("nothing to read")));
        b_tx.send(b"4").unwrap();
        // The runtime sees the event when it parks: sleep in short steps, 5 s at most.
        for _ in 0..500 {
            if woken.0.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            woken.0.load(Ordering::SeqCst),
            "the datagram woke the poller"
        );
        let named = next_named(&mut set, &[&a_rx, &b_rx]).await;
        assert_eq!(named, vec![1]);

        set.remove(&b_rx);
        a_tx.send(b"5").unwrap();
        let named = tokio::time::timeout(within, next_named(&mut set, &[&a_rx, &b_rx]))
            .await
            .unwrap();
        assert_eq!(named, vec![0], "a removed socket is not named");
    }
}
