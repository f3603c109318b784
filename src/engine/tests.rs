//! The engine against real UDP sockets on loopback: calls handed in and taken back, a call
//! whose remote changes, an agent woken from another thread, the hang-up paths, a socket
//! reporting an error. Every wait is bounded; nothing asserts on timing.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::*;
use crate::agent::echo::EchoSession;
use crate::agent::{AgentEvent, AgentOutput, AgentSession, AudioFrame, CallerEvent};
use crate::call::registry::Registry;
use crate::codec::g711::Law;
use crate::media::rtp::{self, RtpHeader};
use crate::media::session::{MediaParams, MediaSession};
use crate::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(5);

fn sinks() -> Sinks {
    Sinks {
        registry: Arc::new(Registry::new()),
        metrics: Arc::new(Metrics::new()),
    }
}

fn params(remote: SocketAddr) -> MediaParams {
    MediaParams {
        law: Law::Mu,
        payload_type: 0,
        telephone_event_pt: Some(101),
        remote: Some(remote),
        send: true,
        media_timeout: Duration::from_secs(15),
        initial_media_timeout: Duration::from_secs(30),
        latch: false,
        srtp: None,
    }
}

/// A caller: its own socket, sending numbered packets and reading what comes back.
struct Peer {
    socket: UdpSocket,
}

impl Peer {
    fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        Peer { socket }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send(&self, to: SocketAddr, seq: u16) {
        self.send_code(to, seq, seq as u8);
    }

    /// A packet whose payload is all `code`.
    fn send_code(&self, to: SocketAddr, seq: u16, code: u8) {
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc: 0x5150,
        };
        let payload = [code; 160];
        let mut out = [0u8; 200];
        let n = rtp::write(&h, &payload, &mut out).unwrap();
        self.socket.send_to(&out[..n], to).unwrap();
    }

    /// The next packet that is not comfort silence (within 250 packets, five seconds' worth):
    /// its payload's first byte.
    fn recv_audio(&self) -> u8 {
        let mut buf = [0u8; 2048];
        for _ in 0..250 {
            let (n, _) = self
                .socket
                .recv_from(&mut buf)
                .expect("RTP from the gateway");
            let (h, payload) = rtp::parse(&buf[..n]).unwrap();
            assert_eq!(h.payload_type, 0);
            if payload[0] != Law::Mu.silence() {
                return payload[0];
            }
        }
        panic!("only comfort silence came back");
    }
}

/// A call's media and its fresh socket, towards `remote`.
struct Media {
    socket: UdpSocket,
    call: MediaCall,
    hangups: mpsc::UnboundedReceiver<Hangup>,
    addr: SocketAddr,
}

fn media(remote: SocketAddr, agent: Box<dyn AgentSession>) -> Media {
    media_with(params(remote), agent)
}

fn media_with(p: MediaParams, agent: Box<dyn AgentSession>) -> Media {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let session = MediaSession::new(Instant::now(), p);
    let (call, hangups) = MediaCall::new(session, agent, "call-1".into(), "echo");
    Media {
        socket,
        call,
        hangups,
        addr,
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A payload byte that survives the μ-law decode and re-encode of the echo unchanged.
fn echoed(byte: u8) -> u8 {
    let mut pcm = [0i16; 1];
    crate::codec::g711::decode(Law::Mu, &[byte], &mut pcm);
    let mut out = [0u8; 1];
    crate::codec::g711::encode(Law::Mu, &pcm, &mut out);
    out[0]
}

#[test]
fn a_call_handed_in_echoes_and_comes_back_with_its_counters() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let m = media(peer.addr(), Box::new(EchoSession::new()));
    let addr = m.addr;
    let handle = engine.add(m.socket, m.call);
    assert_eq!(engine.load(), vec![1]);
    for seq in 1..=20u16 {
        peer.send(addr, seq);
        assert_eq!(peer.recv_audio(), echoed(seq as u8), "frame {seq} echoed");
    }
    let (socket, call) = block_on(handle.take_back()).expect("the reactor gives the call back");
    assert_eq!(call.session.counters().packets_received, 20);
    assert_eq!(engine.load(), vec![0]);
    // No longer watched: a packet now stays in the socket, unread by the reactor.
    peer.send(addr, 21);
    let mut buf = [0u8; 256];
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(rtp::parse(&buf[..n]).unwrap().0.sequence, 21);
}

#[test]
fn calls_are_spread_over_the_reactors() {
    let engine = Engine::start(2, sinks()).unwrap();
    let peer = Peer::new();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = media(peer.addr(), Box::new(EchoSession::new()));
            engine.add(m.socket, m.call)
        })
        .collect();
    assert_eq!(engine.load(), vec![2, 2]);
    for h in handles {
        block_on(h.take_back()).unwrap();
    }
    assert_eq!(engine.load(), vec![0, 0]);
}

#[test]
fn a_reinvite_moves_the_stream_to_the_new_remote() {
    let engine = Engine::start(1, sinks()).unwrap();
    let (old, new) = (Peer::new(), Peer::new());
    let m = media(old.addr(), Box::new(EchoSession::new()));
    let addr = m.addr;
    let handle = engine.add(m.socket, m.call);
    old.send(addr, 1);
    assert_eq!(old.recv_audio(), echoed(1));
    handle.update(params(new.addr()));
    // The caller now sends from its new address too. The update may be applied just after
    // the first of these is echoed (to the old address): the stream moves within a few.
    new.socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    let mut moved = None;
    'send: for seq in 2..20u16 {
        new.send(addr, seq);
        for _ in 0..20 {
            let Ok((n, _)) = new.socket.recv_from(&mut buf) else {
                break;
            };
            if rtp::parse(&buf[..n]).is_ok_and(|(_, p)| p[0] == echoed(seq as u8)) {
                moved = Some(seq);
                break 'send;
            }
        }
    }
    assert!(moved.is_some(), "the echo reached the new address");
    let (_, call) = block_on(handle.take_back()).unwrap();
    assert_eq!(call.session.params().remote, Some(new.addr()));
}

/// An agent whose far end is another thread: frames arrive on a channel and wake the call.
struct RemoteAgent {
    frames: mpsc::UnboundedReceiver<AgentOutput>,
}

impl AgentSession for RemoteAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, cx: &mut Context<'_>, want_audio: bool) -> Poll<Option<AgentOutput>> {
        if !want_audio {
            return Poll::Pending;
        }
        self.frames.poll_recv(cx)
    }
    fn audio_queued(&self) -> bool {
        !self.frames.is_empty()
    }
}

#[test]
fn an_agent_woken_from_another_thread_is_heard_and_its_hangup_reaches_the_call_task() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let (tx, frames) = mpsc::unbounded_channel();
    let m = media(peer.addr(), Box::new(RemoteAgent { frames }));
    let mut hangups = m.hangups;
    let handle = engine.add(m.socket, m.call);
    let feeder = std::thread::spawn(move || {
        for level in [3000i16, 6000, 9000] {
            let f = AudioFrame::from_samples(8000, &[level; 160]);
            tx.send(AgentOutput::Audio(f)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let reason = "goodbye".to_string();
        tx.send(AgentOutput::Event(AgentEvent::Hangup { reason }))
            .unwrap();
    });
    let mut heard = Vec::new();
    while heard.len() < 3 {
        heard.push(peer.recv_audio());
    }
    let mut want = [0u8; 3];
    let pcm = [[3000i16], [6000], [9000]];
    for (w, p) in want.iter_mut().zip(pcm) {
        let mut b = [0u8];
        crate::codec::g711::encode(Law::Mu, &p, &mut b);
        *w = b[0];
    }
    assert_eq!(heard, want);
    feeder.join().unwrap();
    let h = block_on(async { tokio::time::timeout(WAIT, hangups.recv()).await })
        .expect("hang-up within the wait")
        .unwrap();
    assert_eq!((h.reason.as_str(), h.outcome), ("goodbye", "agent_hangup"));
    block_on(handle.take_back()).unwrap();
}

#[test]
fn a_caller_that_never_sends_is_hung_up_once_at_the_media_timeout() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let mut p = params(peer.addr());
    p.initial_media_timeout = Duration::from_millis(60);
    let m = media_with(p, Box::new(EchoSession::new()));
    let mut hangups = m.hangups;
    let handle = engine.add(m.socket, m.call);
    let h = block_on(async { tokio::time::timeout(WAIT, hangups.recv()).await })
        .expect("hang-up within the wait")
        .unwrap();
    assert_eq!(h.outcome, "media_timeout");
    // Comfort silence kept the stream alive meanwhile.
    let mut buf = [0u8; 256];
    let (n, _) = peer.socket.recv_from(&mut buf).unwrap();
    assert!(rtp::parse(&buf[..n]).is_ok());
    let (_, call) = block_on(handle.take_back()).unwrap();
    assert!(call.session.counters().silence_sent > 0);
    assert!(hangups.try_recv().is_err(), "told once");
}

#[test]
fn a_socket_reporting_an_error_keeps_its_call_running() {
    let engine = Engine::start(1, sinks()).unwrap();
    // Give the call's socket a pending error: connected to a port nobody listens on, a send
    // brings back an ICMP port-unreachable, which the kernel keeps on the socket (reported as
    // EPOLLERR) until a read returns it.
    let gone = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let m = media(gone, Box::new(EchoSession::new()));
    let addr = m.addr;
    m.socket.connect(gone).unwrap();
    m.socket.send(b"x").unwrap();
    let mut pfd = libc::pollfd {
        fd: m.socket.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one live pollfd; waits at most WAIT for the error to arrive.
    let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as libc::c_int) };
    assert!(
        n == 1 && pfd.revents & libc::POLLERR != 0,
        "the error is pending"
    );
    // The caller comes (back) at that address: the connected socket takes its packets.
    let peer = Peer {
        socket: UdpSocket::bind(gone).unwrap(),
    };
    peer.socket.set_read_timeout(Some(WAIT)).unwrap();
    let handle = engine.add(m.socket, m.call);
    peer.send(addr, 1);
    assert_eq!(peer.recv_audio(), echoed(1));
    let (_, call) = block_on(handle.take_back()).unwrap();
    assert_eq!(call.recv_errors(), 1, "the error was read, once");
    assert_eq!(call.session.counters().packets_received, 1);
}

/// An agent with a bug: it panics on the caller's third frame.
struct PanickyAgent {
    frames: usize,
}

impl AgentSession for PanickyAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {
        self.frames += 1;
        assert!(self.frames < 3, "an agent bug");
    }
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        Poll::Pending
    }
    fn audio_queued(&self) -> bool {
        false
    }
}

#[test]
fn a_panicking_agent_costs_its_own_call_only() {
    let engine = Engine::start(1, sinks()).unwrap();
    let (peer, bad_peer) = (Peer::new(), Peer::new());
    let good = media(peer.addr(), Box::new(EchoSession::new()));
    let good_addr = good.addr;
    let good = engine.add(good.socket, good.call);
    let bad = media(bad_peer.addr(), Box::new(PanickyAgent { frames: 0 }));
    let (bad_addr, mut bad_hangups) = (bad.addr, bad.hangups);
    let bad = engine.add(bad.socket, bad.call);
    for seq in 1..=3 {
        bad_peer.send(bad_addr, seq);
    }
    let h = block_on(async { tokio::time::timeout(WAIT, bad_hangups.recv()).await })
        .expect("hang-up within the wait")
        .unwrap();
    assert_eq!(
        (h.reason.as_str(), h.outcome),
        ("media engine fault", "other")
    );
    // The reactor and its other call go on.
    for seq in 1..=5u16 {
        peer.send(good_addr, seq);
        assert_eq!(peer.recv_audio(), echoed(seq as u8));
    }
    assert!(
        block_on(bad.take_back()).is_none(),
        "a poisoned call is not handed back"
    );
    assert!(block_on(good.take_back()).is_some());
    assert_eq!(engine.load(), vec![0]);
}

#[test]
fn a_stopped_engine_drops_new_calls_and_hands_nothing_back() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let m = media(peer.addr(), Box::new(EchoSession::new()));
    let mut hangups = m.hangups;
    let handle = engine.add(m.socket, m.call);
    drop(engine);
    // The call went down with its reactor: its task learns it from the closed channel...
    let h = block_on(async { tokio::time::timeout(WAIT, hangups.recv()).await })
        .expect("the channel closes within the wait");
    assert!(h.is_none());
    // ...and taking it back does not wait forever.
    assert!(
        block_on(async { tokio::time::timeout(WAIT, handle.take_back()).await })
            .expect("answered within the wait")
            .is_none()
    );
}

/// An agent with a protocol timer of its own (as WebRTC's are), due at `at`.
struct TimedAgent {
    at: Option<Instant>,
}

impl AgentSession for TimedAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        Poll::Pending
    }
    fn audio_queued(&self) -> bool {
        false
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.at
    }
}

#[test]
fn the_call_wakes_for_the_agents_own_timer_when_it_comes_first() {
    let peer = Peer::new();
    let media_only = media(peer.addr(), Box::new(TimedAgent { at: None }));
    let slot = media_only.call.poll_timeout();
    // Sooner than the send clock's next slot: the call wakes for the agent.
    let soon = slot - Duration::from_millis(5);
    let m = media(peer.addr(), Box::new(TimedAgent { at: Some(soon) }));
    assert_eq!(m.call.poll_timeout(), soon);
    // Later: the send clock still decides.
    let late = slot + Duration::from_secs(1);
    let m = media(peer.addr(), Box::new(TimedAgent { at: Some(late) }));
    assert!(m.call.poll_timeout() < late);
}

/// An agent with a socket of its own that the reactor watches: each datagram on it is a level
/// for one frame of audio to the caller. It reads only when told the socket is readable.
struct WatchingAgent {
    far: UdpSocket,
    readable: bool,
}

impl AgentSession for WatchingAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, want: bool) -> Poll<Option<AgentOutput>> {
        if !(want && std::mem::take(&mut self.readable)) {
            return Poll::Pending;
        }
        let mut buf = [0u8; 2];
        match self.far.recv(&mut buf) {
            Ok(2) => {
                let level = i16::from_be_bytes(buf);
                Poll::Ready(Some(AgentOutput::Audio(AudioFrame::from_samples(
                    8000,
                    &[level; 160],
                ))))
            }
            _ => Poll::Pending,
        }
    }
    fn audio_queued(&self) -> bool {
        false
    }
    fn watch(&mut self, why: crate::agent::Watch) -> Vec<std::os::fd::RawFd> {
        match why {
            crate::agent::Watch::Leave => Vec::new(),
            _ => vec![self.far.as_raw_fd()],
        }
    }
    fn on_readable(&mut self, index: usize) {
        assert_eq!(index, 0);
        self.readable = true;
    }
}

/// A socket of the agent's own (non-blocking, as a reactor needs), its descriptor and address.
fn agent_socket() -> (UdpSocket, std::os::fd::RawFd, SocketAddr) {
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_nonblocking(true).unwrap();
    let (fd, addr) = (far.as_raw_fd(), far.local_addr().unwrap());
    (far, fd, addr)
}

#[test]
fn an_agents_own_socket_is_watched_while_its_call_runs_there() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let (far, far_fd, far_addr) = agent_socket();
    let agent = WatchingAgent {
        far,
        readable: false,
    };
    let m = media(peer.addr(), Box::new(agent));
    let handle = engine.add(m.socket, m.call);
    // The caller sends nothing: only the watch brings the agent's datagrams to the caller.
    let room = UdpSocket::bind("127.0.0.1:0").unwrap();
    for level in [4000i16, 8000] {
        room.send_to(&level.to_be_bytes(), far_addr).unwrap();
        let mut want = [0u8];
        crate::codec::g711::encode(Law::Mu, &[level], &mut want);
        assert_eq!(peer.recv_audio(), want[0], "level {level} heard");
    }
    assert!(
        watched_anywhere(far_fd),
        "the agent's socket is in an epoll set"
    );
    // Held open (the call and its agent's socket) so its number is not reused meanwhile.
    let back = block_on(handle.take_back()).unwrap();
    assert!(
        !watched_anywhere(far_fd),
        "back with its task, no epoll set watches it"
    );
    drop(back);
}

/// Whether `cond` holds within [`WAIT`] (looked at every 10 ms).
fn eventually(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Whether any epoll set of this process watches descriptor `fd`: the kernel lists each set's
/// descriptors in its fdinfo as `tfd:` lines with the file's inode (matched too, so a stale
/// entry for an earlier file under the same number does not count).
fn watched_anywhere(fd: std::os::fd::RawFd) -> bool {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let link = link.to_string_lossy();
    let inode: u64 = link
        .trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let (tfd, ino) = (format!("tfd: {fd:>8} "), format!(" ino:{inode:x} "));
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .any(|e| {
            let is_epoll = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("eventpoll"));
            let info = || {
                std::fs::read_to_string(format!(
                    "/proc/self/fdinfo/{}",
                    e.file_name().to_string_lossy()
                ))
                .unwrap_or_default()
            };
            is_epoll
                && info()
                    .lines()
                    .any(|l| l.starts_with(&tfd) && l.contains(&ino))
        })
}

/// An agent that is done with its socket at the first datagram, and keeps it open (as a
/// closing WebSocket stays open) while asking the reactor to stop watching it.
struct RetiringAgent {
    far: Option<UdpSocket>,
    done: Vec<UdpSocket>,
    readable: bool,
}

impl AgentSession for RetiringAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        if std::mem::take(&mut self.readable) {
            if let Some(far) = self.far.take() {
                let mut buf = [0u8; 8];
                assert!(far.recv(&mut buf).is_ok(), "told readable, it is");
                self.done.push(far);
            }
        }
        Poll::Pending
    }
    fn audio_queued(&self) -> bool {
        false
    }
    fn watch(&mut self, _why: crate::agent::Watch) -> Vec<std::os::fd::RawFd> {
        self.far.iter().map(|s| s.as_raw_fd()).collect()
    }
    fn watch_changed(&self) -> bool {
        self.far.is_none()
    }
    fn on_readable(&mut self, _index: usize) {
        self.readable = true;
    }
}

#[test]
fn a_socket_the_agent_is_done_with_leaves_the_epoll_set_while_the_call_goes_on() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let (far, far_fd, far_addr) = agent_socket();
    let agent = RetiringAgent {
        far: Some(far),
        done: Vec::new(),
        readable: false,
    };
    let m = media(peer.addr(), Box::new(agent));
    let handle = engine.add(m.socket, m.call);
    // The reactor takes the call in its own time.
    assert!(eventually(|| watched_anywhere(far_fd)), "watched");
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"bye", far_addr)
        .unwrap();
    assert!(
        eventually(|| !watched_anywhere(far_fd)),
        "no longer watched, though still open"
    );
    // The call itself still runs on the reactor: its comfort silence keeps coming.
    let mut buf = [0u8; 256];
    assert!(peer.socket.recv_from(&mut buf).is_ok());
    block_on(handle.take_back()).expect("the call comes back");
}

/// An agent whose bug shows when the reactor asks what to watch.
struct PanicsWhenAsked;

impl AgentSession for PanicsWhenAsked {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        Poll::Pending
    }
    fn audio_queued(&self) -> bool {
        false
    }
    fn watch(&mut self, _why: crate::agent::Watch) -> Vec<std::os::fd::RawFd> {
        panic!("an agent bug");
    }
}

#[test]
fn an_agent_panicking_at_handover_costs_its_own_call_only() {
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let bad = media(peer.addr(), Box::new(PanicsWhenAsked));
    let mut bad_hangups = bad.hangups;
    let bad = engine.add(bad.socket, bad.call);
    let h = block_on(async { tokio::time::timeout(WAIT, bad_hangups.recv()).await })
        .expect("hang-up within the wait")
        .unwrap();
    assert_eq!(h.outcome, "other");
    // The reactor goes on with other calls.
    let good = media(peer.addr(), Box::new(EchoSession::new()));
    let good_addr = good.addr;
    let good = engine.add(good.socket, good.call);
    peer.send(good_addr, 7);
    assert_eq!(peer.recv_audio(), echoed(7));
    assert!(block_on(bad.take_back()).is_none(), "a poisoned call");
    assert!(block_on(good.take_back()).is_some());
}

/// An agent that blocks the reactor's thread once, for [`STALL`], when told to: what a
/// descheduled vCPU or a burst of page faults does to a reactor.
struct StallingAgent {
    go: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

const STALL: Duration = Duration::from_millis(80);

impl AgentSession for StallingAgent {
    fn send_audio(&mut self, _frame: &AudioFrame) {}
    fn send_event(&mut self, _event: CallerEvent) {}
    fn poll_output(&mut self, _cx: &mut Context<'_>, _want: bool) -> Poll<Option<AgentOutput>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.go.swap(false, SeqCst) {
            self.stalled.store(true, SeqCst);
            std::thread::sleep(STALL);
        }
        Poll::Pending
    }
    fn audio_queued(&self) -> bool {
        false
    }
}

/// The caller's frames that arrive while the reactor is stalled wait on the socket while their
/// slots fall due. They are read before the call is serviced, so each goes out in its own slot
/// and none is replaced by comfort silence (which would push every later frame one slot back,
/// for the rest of the call).
#[test]
fn frames_that_waited_through_a_stall_are_not_replaced_by_silence() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let engine = Engine::start(1, sinks()).unwrap();
    let peer = Peer::new();
    let echo = media(peer.addr(), Box::new(EchoSession::new()));
    let to = echo.addr;
    let echo = engine.add(echo.socket, echo.call);
    let (go, stalled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let staller = Box::new(StallingAgent {
        go: Arc::clone(&go),
        stalled: Arc::clone(&stalled),
    });
    let quiet = Peer::new();
    let staller = media(quiet.addr(), staller);
    let staller = engine.add(staller.socket, staller.call);
    peer.send(to, 1);
    assert_eq!(peer.recv_audio(), echoed(1), "the echo runs");

    go.store(true, SeqCst);
    assert!(eventually(|| stalled.load(SeqCst)), "the staller never ran");
    // Four frames while the reactor is stuck: four slots fall due before they are read.
    let codes = [0x21u8, 0x32, 0x43, 0x54];
    for (i, &c) in codes.iter().enumerate() {
        peer.send_code(to, 2 + i as u16, c);
    }
    // What comes back from the first of them: the four, in their slots, with no silence
    // between them.
    let mut buf = [0u8; 2048];
    let mut heard = Vec::new();
    for _ in 0..250 {
        let (n, _) = peer
            .socket
            .recv_from(&mut buf)
            .expect("RTP from the gateway");
        let (_, payload) = rtp::parse(&buf[..n]).unwrap();
        if heard.is_empty() && payload[0] == Law::Mu.silence() {
            continue;
        }
        heard.push(payload[0]);
        if heard.len() == codes.len() {
            break;
        }
    }
    let want: Vec<u8> = codes.iter().map(|&c| echoed(c)).collect();
    assert_eq!(
        heard,
        want,
        "silence (0x{:02x}) among them",
        Law::Mu.silence()
    );
    block_on(echo.take_back()).unwrap();
    block_on(staller.take_back()).unwrap();
}
