//! One media reactor: a thread that owns the RTP sockets of its calls and runs their media
//! sessions and agents from a level-triggered epoll wait and a timer wheel. No task, waker or
//! channel per packet: a readable socket is read once, its call serviced, and the reply sent,
//! all on this thread.
//!
//! Other threads reach a reactor only through its [`Inbox`]: commands (take a call, change
//! its media, give it back, stop) and agent wake-ups, each followed by a write to an eventfd
//! when the reactor is not already signalled.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use tokio::sync::oneshot;

use super::call::{MediaCall, Sinks};
use super::epoll::{Epoll, EventFd, Ready};
use super::peer::Peer;
use super::wheel::{Entry, Wheel};
use super::REPORT_EVERY;
use crate::agent::Watch;
use crate::media::session::MediaParams;
use crate::metrics::RtpDelta;

/// Readiness events taken per wait.
const BATCH: usize = 256;
/// The eventfd's token. A call's tokens carry its slot's generation (high 32 bits), which of
/// its descriptors is meant ([`SOURCE_BITS`]: 0 the RTP socket, then its agent's) and its slot
/// index (the low [`INDEX_BITS`]); no call token is all ones.
const WAKE_TOKEN: u64 = u64::MAX;
/// 2^28 slots: far more calls than a process has memory or descriptors for.
const INDEX_BITS: u32 = 28;
const SOURCE_BITS: u32 = 4;
/// Descriptors an agent may have watched ([`crate::agent::AgentSession::watch`]).
const MAX_AGENT_FDS: usize = (1 << SOURCE_BITS) - 1;
/// Times one call is serviced again in a pass because its agent woke it while it was being
/// serviced; an agent that keeps waking itself is left for the next pass.
const MAX_REPOLLS: usize = 4;
/// Datagrams read at once from the socket of a call that fell behind its send clock
/// ([`MediaSession::behind`](crate::media::session::MediaSession::behind)): more than the
/// slots a stall can leave overdue before the pacer skips them (100 ms, five slots).
const MAX_CATCH_UP: usize = 8;

pub enum Command {
    Add {
        key: u64,
        socket: UdpSocket,
        call: Box<MediaCall>,
        /// The span of whoever added the call (its task's, carrying the call id): a reactor
        /// runs many calls, and each call's log lines must still say which.
        span: tracing::Span,
    },
    /// A re-INVITE changed the far end, direction, codec or keys.
    Update {
        key: u64,
        params: MediaParams,
    },
    /// Give the call back to its task (teardown).
    Remove {
        key: u64,
        reply: oneshot::Sender<(UdpSocket, Box<MediaCall>)>,
    },
    Stop,
}

#[derive(Default)]
struct Queued {
    /// The reactor stopped: commands are dropped at once (a `Remove`'s reply with them, so the
    /// call task learns it), nothing waits on a thread that is gone.
    closed: bool,
    commands: Vec<Command>,
    /// Tokens of calls whose agent woke them.
    woken: Vec<u64>,
}

/// The way into a reactor from other threads.
pub struct Inbox {
    queued: Mutex<Queued>,
    /// The eventfd was written and the reactor has not yet looked: more writes are not needed.
    signalled: AtomicBool,
    eventfd: EventFd,
    /// Calls this reactor runs, for placing new calls on the least loaded one.
    pub calls: AtomicUsize,
}

impl Inbox {
    pub fn new() -> std::io::Result<Inbox> {
        Ok(Inbox {
            queued: Mutex::new(Queued::default()),
            signalled: AtomicBool::new(false),
            eventfd: EventFd::new()?,
            calls: AtomicUsize::new(0),
        })
    }

    pub fn command(&self, c: Command) {
        self.push(|q| q.commands.push(c));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        match self.queued.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn push(&self, f: impl FnOnce(&mut Queued)) {
        {
            let mut q = self.lock();
            if q.closed {
                return;
            }
            f(&mut q);
        }
        if !self.signalled.swap(true, SeqCst) {
            self.eventfd.signal();
        }
    }

    /// Whether the reactor behind this inbox has stopped.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The reactor is stopping (or unwinding): drop what is queued and whatever comes later.
    pub fn close(&self) {
        let dropped = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.commands)
        };
        // Dropped outside the lock: a call's media dropped here may wake other tasks.
        drop(dropped);
    }

    fn take(&self, into: &mut Queued) {
        // Cleared before the queue is read: a push after this point signals again.
        self.signalled.store(false, SeqCst);
        self.eventfd.drain();
        let mut q = self.lock();
        std::mem::swap(&mut q.commands, &mut into.commands);
        std::mem::swap(&mut q.woken, &mut into.woken);
    }
}

/// A call's waker. While the reactor services the call, a wake only asks for one more poll in
/// the same pass (the echo agent wakes as it takes every frame: that must not cost an eventfd
/// write per packet); otherwise it queues the call on the inbox.
struct CallWake {
    token: u64,
    inbox: Arc<Inbox>,
    in_service: AtomicBool,
    again: AtomicBool,
    queued: AtomicBool,
}

impl Wake for CallWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.in_service.load(SeqCst) {
            self.again.store(true, SeqCst);
            // Looked at again: if the service ended meanwhile, it may have missed `again`.
            if self.in_service.load(SeqCst) {
                return;
            }
        }
        if !self.queued.swap(true, SeqCst) {
            self.inbox.push(|q| q.woken.push(self.token));
        }
    }
}

struct Slot {
    generation: u32,
    call: Option<Running>,
}

struct Running {
    /// Non-blocking, in the epoll set while the call runs here.
    socket: UdpSocket,
    /// Whom the socket is connected to.
    peer: Peer,
    /// The call's span, entered while the call is serviced.
    span: tracing::Span,
    /// False when the epoll set refused the socket, or the call was given up.
    watched: bool,
    /// The agent's own descriptors in the epoll set, in the order it gave them.
    agent_fds: Vec<RawFd>,
    /// Servicing the call panicked: it is no longer serviced, only kept until its task asks
    /// for it (and then dropped here; its state cannot be trusted).
    poisoned: bool,
    call: Box<MediaCall>,
    wake: Arc<CallWake>,
    waker: Waker,
    /// The deadline last put on the wheel; an expired entry that differs is stale.
    scheduled: Option<Instant>,
}

pub struct Reactor {
    epoll: Epoll,
    inbox: Arc<Inbox>,
    sinks: Sinks,
    slots: Vec<Slot>,
    free: Vec<u32>,
    keys: HashMap<u64, u32>,
    wheel: Wheel,
    next_report: Instant,
    /// The receive buffer: larger than any RTP packet we take.
    buf: Vec<u8>,
}

fn token(index: u32, generation: u32) -> u64 {
    (generation as u64) << 32 | index as u64
}

/// The token of a call's agent descriptor `i` (0-based).
fn agent_token(call: u64, i: usize) -> u64 {
    call | ((i as u64 + 1) << INDEX_BITS)
}

/// Which of its call's descriptors a token names: 0 the RTP socket, `n` the agent's `n - 1`.
fn source(token: u64) -> usize {
    ((token >> INDEX_BITS) & ((1 << SOURCE_BITS) - 1)) as usize
}

impl Reactor {
    pub fn new(inbox: Arc<Inbox>, sinks: Sinks) -> std::io::Result<Reactor> {
        let epoll = Epoll::new(BATCH)?;
        epoll.add(inbox.eventfd.raw(), WAKE_TOKEN)?;
        let now = Instant::now();
        Ok(Reactor {
            epoll,
            inbox,
            sinks,
            slots: Vec::new(),
            free: Vec::new(),
            keys: HashMap::new(),
            wheel: Wheel::new(now),
            next_report: now + REPORT_EVERY,
            buf: vec![0; 2048],
        })
    }

    pub fn inbox(&self) -> Arc<Inbox> {
        Arc::clone(&self.inbox)
    }

    /// Runs until told to stop (or the epoll set fails, which only a kernel out of memory does).
    pub fn run(mut self) {
        let mut ready = Vec::with_capacity(BATCH);
        let mut expired = Vec::new();
        let mut queued = Queued::default();
        loop {
            let now = Instant::now();
            let wake_at = self
                .wheel
                .next_deadline()
                .map_or(self.next_report, |d| d.min(self.next_report));
            ready.clear();
            if let Err(e) = self
                .epoll
                .wait(Some(wake_at.saturating_duration_since(now)), &mut ready)
            {
                tracing::error!(error = %e, "media reactor: epoll wait failed; stopping");
                return;
            }
            let now = Instant::now();
            for r in &ready {
                if r.token == WAKE_TOKEN {
                    self.inbox.take(&mut queued);
                    if self.apply(now, &mut queued) {
                        return;
                    }
                } else {
                    self.readable(now, *r);
                }
            }
            expired.clear();
            self.wheel.expire(now, &mut expired);
            for e in &expired {
                self.timer(now, *e);
            }
            if now >= self.next_report {
                self.report();
                self.next_report = now + REPORT_EVERY;
            }
        }
    }

    /// Commands and agent wake-ups from other threads; true on Stop. The queues are drained,
    /// not replaced, so they keep their capacity from one wake-up to the next.
    fn apply(&mut self, now: Instant, q: &mut Queued) -> bool {
        for c in q.commands.drain(..) {
            match c {
                Command::Add {
                    key,
                    socket,
                    call,
                    span,
                } => self.add(now, key, socket, call, span),
                Command::Update { key, params } => {
                    if let Some(i) = self.keys.get(&key).copied() {
                        if let Some(r) = self.slots[i as usize].call.as_mut() {
                            r.call.session.update(params);
                        }
                        self.service(now, i);
                    }
                }
                Command::Remove { key, reply } => match self.remove(key) {
                    // The call task may have gone (aborted): the call is then dropped here.
                    Some((call, false)) => {
                        let _ = reply.send(call);
                    }
                    // Dropping the reply tells the task there is nothing to take back.
                    Some((poisoned, true)) => drop_quietly(poisoned),
                    None => {}
                },
                // What is queued behind it is dropped with the drain, the rest with the inbox.
                Command::Stop => return true,
            }
        }
        for t in q.woken.drain(..) {
            if let Some(i) = self.live(t) {
                if let Some(r) = self.slots[i as usize].call.as_ref() {
                    r.wake.queued.store(false, SeqCst);
                }
                self.service(now, i);
            }
        }
        false
    }

    fn add(
        &mut self,
        now: Instant,
        key: u64,
        socket: UdpSocket,
        call: Box<MediaCall>,
        span: tracing::Span,
    ) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    call: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let token = token(index, self.slots[index as usize].generation);
        let mut running = self.running(token, socket, call, span);
        // The agent is asked what to watch: its bug costs its call only, as in a service.
        let watched =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.watch(token, &mut running)))
                .unwrap_or_else(|_| {
                    running.poisoned = true;
                    Err(std::io::Error::other("the agent panicked"))
                });
        if let Err(e) = watched {
            // Kept, unwatched, until its task takes it back after the BYE.
            {
                let _span = running.span.enter();
                tracing::error!(error = %e, "media reactor cannot watch the call's sockets; hanging up");
                running.call.fail("media engine could not take the call");
            }
            unwatch(&self.epoll, &mut running);
        }
        self.slots[index as usize].call = Some(running);
        self.keys.insert(key, index);
        self.service(now, index);
    }

    fn running(
        &self,
        token: u64,
        socket: UdpSocket,
        call: Box<MediaCall>,
        span: tracing::Span,
    ) -> Running {
        let wake = Arc::new(CallWake {
            token,
            inbox: Arc::clone(&self.inbox),
            in_service: AtomicBool::new(false),
            again: AtomicBool::new(false),
            queued: AtomicBool::new(false),
        });
        Running {
            socket,
            peer: Peer::default(),
            span,
            watched: false,
            agent_fds: Vec::new(),
            poisoned: false,
            call,
            waker: Waker::from(Arc::clone(&wake)),
            wake,
            scheduled: None,
        }
    }

    /// Puts the call's RTP socket and its agent's descriptors in the epoll set.
    fn watch(&self, token: u64, r: &mut Running) -> std::io::Result<()> {
        self.epoll.add(r.socket.as_raw_fd(), token)?;
        r.watched = true;
        watch_agent(
            &self.epoll,
            token,
            &mut r.agent_fds,
            &mut r.call,
            Watch::Join,
        )
    }

    /// The call's socket and media, and whether it was poisoned.
    #[allow(clippy::type_complexity)]
    fn remove(&mut self, key: u64) -> Option<((UdpSocket, Box<MediaCall>), bool)> {
        let index = self.keys.remove(&key)?;
        let slot = &mut self.slots[index as usize];
        let mut running = slot.call.take()?;
        unwatch(&self.epoll, &mut running);
        if !running.poisoned {
            let agent = &mut running.call.agent;
            let left = std::panic::catch_unwind(AssertUnwindSafe(|| agent.watch(Watch::Leave)));
            if left.is_err() {
                let _span = running.span.enter();
                tracing::error!("the agent panicked leaving the media reactor");
                running.poisoned = true;
            }
        }
        self.inbox.calls.fetch_sub(1, SeqCst);
        self.free.push(index);
        // Events and timers still queued for the old token are recognised as stale.
        slot.generation = slot.generation.wrapping_add(1);
        Some(((running.socket, running.call), running.poisoned))
    }

    /// The slot of a token whose call is still the one it was issued for.
    fn live(&self, token: u64) -> Option<u32> {
        let index = (token & ((1 << INDEX_BITS) - 1)) as u32;
        let slot = self.slots.get(index as usize)?;
        (slot.call.is_some() && slot.generation == (token >> 32) as u32).then_some(index)
    }

    /// Reads one datagram (level-triggered: a second one waiting is reported by the next wait)
    /// and services its call; for an agent's descriptor, tells the agent, which reads it.
    fn readable(&mut self, now: Instant, ready: Ready) {
        let Some(i) = self.live(ready.token) else {
            return;
        };
        let agent_fd = source(ready.token);
        if agent_fd > 0 {
            self.service_with(now, i, |_, call, _| call.agent.on_readable(agent_fd - 1));
            return;
        }
        self.service_with(now, i, |socket, call, buf| {
            read_one(now, socket, call, buf);
        });
    }

    fn timer(&mut self, now: Instant, e: Entry) {
        let Some(i) = self.live(e.key) else { return };
        match self.slots[i as usize].call.as_mut() {
            Some(r) if r.scheduled == Some(e.deadline) => r.scheduled = None,
            _ => return, // moved since
        }
        self.service(now, i);
    }

    fn service(&mut self, now: Instant, index: u32) {
        self.service_with(now, index, |_, _, _| {});
    }

    /// Runs `first` (a read into the reactor's receive buffer), catches up on the socket if the
    /// call fell behind its send clock, then runs the call's media and agent, inside the call's
    /// span; then puts the call's next deadline on the wheel. A panic in there (an agent's bug)
    /// costs that call only: it is hung up and no longer serviced; the reactor and its other
    /// calls go on.
    fn service_with(
        &mut self,
        now: Instant,
        index: u32,
        first: impl FnOnce(&UdpSocket, &mut MediaCall, &mut [u8]),
    ) {
        let slot = &mut self.slots[index as usize];
        let token = token(index, slot.generation);
        let Some(r) = slot.call.as_mut() else { return };
        if r.poisoned {
            return;
        }
        let Running {
            socket,
            peer,
            call,
            wake,
            waker,
            scheduled,
            span,
            agent_fds,
            ..
        } = r;
        let epoll = &self.epoll;
        let buf = &mut self.buf;
        let _span = span.enter();
        let sinks = &self.sinks;
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            first(socket, call, buf);
            catch_up(now, socket, call, buf);
            let mut cx = Context::from_waker(waker);
            let mut transmit = |to: SocketAddr, pkt: &[u8]| peer.send(socket, to, pkt);
            for _ in 0..MAX_REPOLLS {
                wake.in_service.store(true, SeqCst);
                let rearm = || wake.again.store(false, SeqCst);
                call.service(now, &mut cx, rearm, sinks, &mut transmit);
                wake.in_service.store(false, SeqCst);
                if !wake.again.swap(false, SeqCst) {
                    break;
                }
            }
            peer.sync(socket, call.session.peer(now));
            let rewatch = if call.agent.watch_changed() {
                unwatch_agent(epoll, agent_fds);
                watch_agent(epoll, token, agent_fds, call, Watch::Again)
            } else {
                Ok(())
            };
            (call.poll_timeout(), rewatch)
        }));
        match run {
            Ok((next, rewatch)) => {
                if let Err(e) = rewatch {
                    tracing::error!(error = %e, "media reactor cannot watch the agent's sockets; hanging up");
                    call.fail("media engine could not watch the agent");
                }
                if *scheduled != Some(next) {
                    *scheduled = Some(next);
                    self.wheel.insert(token, next);
                }
            }
            Err(_) => {
                tracing::error!("the call's media panicked; hanging up (other calls go on)");
                drop(_span);
                r.poisoned = true;
                unwatch(&self.epoll, r);
                let _span = r.span.enter();
                r.call.fail("media engine fault");
            }
        }
    }

    /// Publishes every call's figures: the registry per call, the metrics once for all.
    fn report(&mut self) {
        let mut total = RtpDelta::default();
        for slot in &mut self.slots {
            if let Some(r) = slot.call.as_mut().filter(|r| !r.poisoned) {
                total += r.call.report(&self.sinks.registry);
            }
        }
        self.sinks.metrics.rtp(total);
    }
}

/// Reads one datagram into the call; false when the socket had none.
fn read_one(now: Instant, socket: &UdpSocket, call: &mut MediaCall, buf: &mut [u8]) -> bool {
    match socket.recv_from(buf) {
        Ok((n, src)) => call.handle_datagram(now, src, &mut buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
        Err(e) => call.handle_socket_error(&e),
    }
    true
}

/// For a call the reactor left behind its send clock, reads what waits on its socket before
/// it is serviced, however the service came about (a read, its timer, its agent), so its
/// overdue slots get the caller's frames, not silence. A reactor on time never does this: it
/// costs the one read that finds the socket empty, only when late.
fn catch_up(now: Instant, socket: &UdpSocket, call: &mut MediaCall, buf: &mut [u8]) {
    if !call.session.behind(now) {
        return;
    }
    for _ in 0..MAX_CATCH_UP {
        if !read_one(now, socket, call, buf) {
            return;
        }
    }
}

/// Asks the agent which descriptors to watch and adds them (the previous ones are out).
fn watch_agent(
    epoll: &Epoll,
    token: u64,
    agent_fds: &mut Vec<RawFd>,
    call: &mut MediaCall,
    why: Watch,
) -> std::io::Result<()> {
    let fds = call.agent.watch(why);
    if fds.len() > MAX_AGENT_FDS {
        return Err(std::io::Error::other(format!(
            "the agent asks {} descriptors watched, at most {MAX_AGENT_FDS}",
            fds.len()
        )));
    }
    for (i, fd) in fds.into_iter().enumerate() {
        epoll.add(fd, agent_token(token, i))?;
        agent_fds.push(fd);
    }
    Ok(())
}

/// Takes a call's descriptors out of the epoll set: unread, a level-triggered descriptor would
/// be reported on every wait.
fn unwatch(epoll: &Epoll, r: &mut Running) {
    // Cannot fail for a descriptor in the set; closing it would remove it anyway.
    if std::mem::take(&mut r.watched) {
        let _ = epoll.delete(r.socket.as_raw_fd());
    }
    unwatch_agent(epoll, &mut r.agent_fds);
}

/// Takes the agent's descriptors out of the epoll set.
fn unwatch_agent(epoll: &Epoll, fds: &mut Vec<RawFd>) {
    for fd in fds.drain(..) {
        let _ = epoll.delete(fd);
    }
}

/// Drops a call whose servicing panicked: its drop (the agent's) may panic too.
fn drop_quietly(call: (UdpSocket, Box<MediaCall>)) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| drop(call))).is_err() {
        tracing::error!("dropping a call's media panicked too");
    }
}
