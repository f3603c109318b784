//! Where an answered call's media runs: on a media reactor (the default), or, for an agent
//! whose far end lives on tokio sockets of its own, on the call's task (see
//! [`crate::agent::Agent::media_on_reactor`]). Both drive the same sans-IO [`MediaCall`].

use std::net::SocketAddr;
use std::task::Poll;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::engine::{CallHandle, MediaCall, Sinks, REPORT_EVERY};
use crate::media::session::MediaParams;

/// RTP datagrams read in one pass of the task's loop before it looks at SIP and timers again,
/// so a flood cannot starve SIP.
const MAX_READS_PER_PASS: usize = 16;

pub(super) enum Run {
    Reactor(CallHandle),
    Task(Box<TaskMedia>),
}

impl Run {
    pub(super) fn update(&mut self, params: MediaParams) {
        match self {
            Run::Reactor(h) => h.update(params),
            Run::Task(t) => t.call.session.update(params),
        }
    }

    /// The media back from wherever it runs (teardown); the socket closes on return.
    pub(super) async fn take_back(self) -> Option<MediaCall> {
        match self {
            Run::Reactor(h) => h.take_back().await.map(|(_socket, call)| call),
            Run::Task(t) => Some(t.call),
        }
    }
}

/// A call's media driven by its own task: the socket registered with tokio, the call serviced
/// on each wake-up of the task.
pub(super) struct TaskMedia {
    pub(super) socket: UdpSocket,
    pub(super) call: MediaCall,
    sinks: Sinks,
    next_report: Instant,
}

impl TaskMedia {
    pub(super) fn new(
        socket: std::net::UdpSocket,
        call: MediaCall,
        sinks: Sinks,
    ) -> std::io::Result<TaskMedia> {
        Ok(TaskMedia {
            socket: UdpSocket::from_std(socket)?,
            call,
            sinks,
            next_report: Instant::now() + REPORT_EVERY,
        })
    }

    /// Reads what the socket holds (bounded), services the call with the task's waker (the
    /// agent wakes the task), and publishes the figures once a second.
    pub(super) async fn pass(&mut self) {
        let t = crate::timer::now();
        let mut buf = [0u8; 2048];
        for _ in 0..MAX_READS_PER_PASS {
            match self.socket.try_recv_from(&mut buf) {
                Ok((n, src)) => self.call.handle_datagram(t, src, &mut buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => self.call.handle_socket_error(&e),
            }
        }
        let TaskMedia {
            socket,
            call,
            sinks,
            ..
        } = self;
        let mut transmit = |to: SocketAddr, pkt: &[u8]| socket.try_send_to(pkt, to).unwrap_or(0);
        std::future::poll_fn(|cx| {
            call.service(t, cx, || {}, sinks, &mut transmit);
            Poll::Ready(())
        })
        .await;
        let now = Instant::from_std(t);
        if now >= self.next_report {
            self.next_report = now + REPORT_EVERY;
            let delta = self.call.report(&self.sinks.registry);
            self.sinks.metrics.rtp(delta);
        }
    }

    /// When the task must wake without a packet or an agent wake-up.
    pub(super) fn deadline(&self) -> Instant {
        Instant::from_std(self.call.poll_timeout()).min(self.next_report)
    }
}

/// Ready on every poll but the first: in the task's `select!`, it fires when the task is woken
/// by something no other branch waits on (the agent, through the waker `service` gave it).
pub(super) fn woken() -> impl std::future::Future<Output = ()> {
    let mut first = true;
    std::future::poll_fn(move |_| {
        if std::mem::take(&mut first) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
}

/// The task's RTP socket becoming readable; never, for a call whose media is on a reactor.
pub(super) async fn readable(socket: Option<&UdpSocket>) {
    match socket {
        Some(s) => {
            let _ = s.readable().await;
        }
        None => std::future::pending().await,
    }
}
