//! SIP over TCP and TLS: the listeners, one task per connection, and the table that lets a
//! response or an in-dialog request find the connection its peer is on.
//!
//! A connection's task reads, frames ([`super::framing`]) and hands each message to the SIP
//! loop with its [`Peer`], exactly as a datagram is; it writes what the table's queue brings.
//! Nothing about a connection is trusted: the table is bounded in total and per source
//! address, a TLS handshake and every message must complete in time, an idle connection is
//! closed, and a framing error gets one 400 (when the message can be answered) and a close.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::framing::{Frame, Framer};
use super::{bad_request, Peer, Transport};

/// What one connection may cost before it is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Connections open at once, inbound and outbound.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub per_source: usize,
    /// A connection that carries nothing (not even a keep-alive) this long is closed. Calls
    /// outlive it harmlessly: an in-dialog request then opens a new connection.
    pub idle: Duration,
    /// The TLS handshake, and each message once its first byte has arrived, must complete
    /// within this (a half-sent message must not hold a connection for ever).
    pub message: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_connections: 4096,
            per_source: 64,
            idle: Duration::from_secs(600),
            message: Duration::from_secs(10),
        }
    }
}

/// Messages queued for one connection's writer; past this the connection is too slow to
/// serve and what does not fit is dropped (its peer will retransmit or time out).
const OUTBOX: usize = 64;
/// One read's worth: SIP messages are small, and an idle connection should cost little.
const READ_CHUNK: usize = 4096;
/// How long a new outbound connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters for the metrics and the tests.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub accepted: AtomicU64,
    /// Connections refused at accept: over the total or per-source limit.
    pub refused: AtomicU64,
    /// Connections closed for breaking the framing, a timeout, or a failed handshake.
    pub closed_bad: AtomicU64,
}

struct Entry {
    id: u64,
    outbox: mpsc::Sender<Bytes>,
    /// Held by the connection's task and by every call whose dialog lives on it
    /// ([`Streams::hold`]): an idle connection with a call on it is not closed.
    users: Arc<()>,
}

/// A call's claim on its dialog's connection: while it is held the connection is not closed
/// for being idle (a call can be quiet on SIP for hours).
pub struct Hold {
    _users: Arc<()>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<Peer, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    /// Sources the SIP front door banned, until when: refused at accept.
    banned: HashMap<IpAddr, Instant>,
    next_id: u64,
}

/// Banned sources remembered at most; the front door's own table is bounded too, and past
/// this the oldest bans here are forgotten (their messages still meet the front door's).
const MAX_BANNED: usize = 65_536;

/// A connection's place in the table, held by its task: dropping it, however the connection
/// ends (a failed handshake, a close, the task's end), gives the place back.
struct Connection {
    streams: Arc<Streams>,
    peer: Peer,
    id: u64,
    outbox: mpsc::Receiver<Bytes>,
    users: Arc<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.streams.remove(self.peer, self.id);
    }
}

/// A socket the connection task can run: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

type Handshake = Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>;

/// Wraps a freshly accepted or connected TCP socket into what the connection speaks: the TLS
/// handshake, or nothing ([`plain`]).
pub type Wrap = Arc<dyn Fn(TcpStream) -> Handshake + Send + Sync>;

/// Every stream connection of the gateway.
pub struct Streams {
    table: Mutex<Table>,
    limits: StreamLimits,
    /// Where framed messages go: the SIP loop.
    inbound: mpsc::Sender<(Bytes, Peer)>,
    pub counters: StreamCounters,
}

impl Streams {
    pub fn new(limits: StreamLimits, inbound: mpsc::Sender<(Bytes, Peer)>) -> Arc<Streams> {
        Arc::new(Streams {
            table: Mutex::new(Table::default()),
            limits,
            inbound,
            counters: StreamCounters::default(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-changed: every change
        // is one insert or remove.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.table().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `bytes` on the connection to `to`. False when there is none (it closed) or its
    /// queue is full.
    pub fn send(&self, to: Peer, bytes: Bytes) -> bool {
        let table = self.table();
        let Some(entry) = table.conns.get(&to) else {
            return false;
        };
        entry.outbox.try_send(bytes).is_ok()
    }

    /// Keeps the connection to `to` from closing for idleness while the hold lives.
    pub fn hold(&self, to: Peer) -> Option<Hold> {
        let table = self.table();
        table.conns.get(&to).map(|e| Hold {
            _users: Arc::clone(&e.users),
        })
    }

    /// Closes every connection (the gateway stops).
    pub fn close_all(&self) {
        let mut table = self.table();
        table.conns.clear();
        table.per_ip.clear();
    }

    /// Closes every connection from `ip`, a source just banned, and refuses its new ones
    /// until `until`.
    pub fn ban(&self, ip: IpAddr, until: Instant) {
        let mut table = self.table();
        // Dropping an entry's sender ends its task, and the connection with it.
        table.conns.retain(|p, _| p.ip() != ip);
        table.per_ip.remove(&ip);
        if table.banned.len() >= MAX_BANNED {
            let now = Instant::now();
            table.banned.retain(|_, t| *t > now);
            if table.banned.len() >= MAX_BANNED {
                table.banned.clear();
            }
        }
        table.banned.insert(ip, until);
    }

    /// Lifts a ban early (the admin API).
    pub fn unban(&self, ip: IpAddr) {
        self.table().banned.remove(&ip);
    }

    /// Takes a place in the table for a connection with `peer`, or refuses it over the limits.
    fn admit(self: &Arc<Self>, peer: Peer) -> Option<Connection> {
        let mut table = self.table();
        if let Some(until) = table.banned.get(&peer.ip()).copied() {
            if until > Instant::now() {
                return None;
            }
            table.banned.remove(&peer.ip());
        }
        let from_ip = table.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if table.conns.len() >= self.limits.max_connections || from_ip >= self.limits.per_source {
            return None;
        }
        let (tx, outbox) = mpsc::channel(OUTBOX);
        table.next_id += 1;
        let id = table.next_id;
        let users = Arc::new(());
        let entry = Entry {
            id,
            outbox: tx,
            users: Arc::clone(&users),
        };
        if let Some(old) = table.conns.insert(peer, entry) {
            // The same address and port again means the old connection is gone (the port was
            // reused); its task ends as its sender drops.
            drop(old);
        } else {
            *table.per_ip.entry(peer.ip()).or_default() += 1;
        }
        Some(Connection {
            streams: Arc::clone(self),
            peer,
            id,
            outbox,
            users,
        })
    }

    fn remove(&self, peer: Peer, id: u64) {
        let mut table = self.table();
        if table.conns.get(&peer).is_some_and(|e| e.id == id) {
            table.conns.remove(&peer);
            if let Some(n) = table.per_ip.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    table.per_ip.remove(&peer.ip());
                }
            }
        }
    }

    /// Accepts connections on `listener` until the task is dropped. `wrap` turns each socket
    /// into the transport's stream (the TLS handshake), within the message time limit.
    pub async fn listen(self: Arc<Self>, listener: TcpListener, transport: Transport, wrap: Wrap) {
        loop {
            let (socket, addr) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: give the process a moment rather
                    // than spinning on the error.
                    tracing::warn!(error = %e, %transport, "SIP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = Peer { transport, addr };
            let Some(conn) = self.admit(peer) else {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let _ = socket.set_nodelay(true);
            let handshake = tokio::time::timeout(self.limits.message, wrap(socket));
            tokio::spawn(async move {
                let why = match handshake.await {
                    Ok(Ok(io)) => return conn.run(io).await,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                };
                tracing::debug!(%peer, why, "SIP connection handshake failed");
                conn.streams
                    .counters
                    .closed_bad
                    .fetch_add(1, Ordering::Relaxed);
            });
        }
    }

    /// Opens a connection to `peer` (for a request whose dialog's connection is gone) and
    /// starts its task; the connection then serves both ways like an accepted one.
    pub async fn connect(self: &Arc<Self>, peer: Peer, wrap: Wrap) -> io::Result<()> {
        let open = async {
            let socket = TcpStream::connect(peer.addr).await?;
            let _ = socket.set_nodelay(true);
            wrap(socket).await
        };
        let io = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let Some(conn) = self.admit(peer) else {
            return Err(io::Error::other("too many SIP connections"));
        };
        tokio::spawn(conn.run(io));
        Ok(())
    }
}

impl Connection {
    /// One connection's life: read and frame, write what is queued, close on EOF, error,
    /// framing error, timeout, or when the table drops it.
    async fn run(mut self, mut io: Box<dyn Stream>) {
        let streams = Arc::clone(&self.streams);
        let peer = self.peer;
        let mut framer = Framer::default();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut last_read = Instant::now();
        // When the message now arriving began.
        let mut started: Option<Instant> = None;
        let why = loop {
            let deadline = match started {
                Some(t) => t + streams.limits.message,
                None => last_read + streams.limits.idle,
            };
            tokio::select! {
                r = io.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => break "closed by peer",
                        Ok(n) => n,
                        Err(_) => break "read error",
                    };
                    last_read = Instant::now();
                    framer.push(&buf[..n]);
                    match streams.deliver(&mut framer, peer, &mut io).await {
                        Ok(()) => {}
                        Err(why) => break why,
                    }
                    started = match (started, framer.is_mid_message()) {
                        (_, false) => None,
                        (Some(t), true) => Some(t),
                        (None, true) => Some(last_read),
                    };
                }
                m = self.outbox.recv() => match m {
                    Some(bytes) => {
                        if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
                            break "write error";
                        }
                    }
                    None => break "closed by the gateway",
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if started.is_some() {
                        streams.counters.closed_bad.fetch_add(1, Ordering::Relaxed);
                        break "message not completed in time";
                    }
                    // This task's and the table's references, and the calls' holds.
                    if Arc::strong_count(&self.users) > 2 {
                        last_read = Instant::now();
                        continue;
                    }
                    break "idle";
                }
            }
        };
        tracing::debug!(%peer, why, "SIP connection closed");
        // A polite close, bounded: a peer that stopped reading must not hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
    }
}

impl Streams {
    /// Hands every whole message in the framer to the SIP loop and answers pings. A framing
    /// error gets its 400 here and closes the connection.
    async fn deliver(
        &self,
        framer: &mut Framer,
        peer: Peer,
        io: &mut Box<dyn Stream>,
    ) -> Result<(), &'static str> {
        loop {
            match framer.next_frame() {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Message(msg))) => {
                    if self.inbound.send((msg, peer)).await.is_err() {
                        return Err("gateway stopping");
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    if io.write_all(b"\r\n").await.is_err() || io.flush().await.is_err() {
                        return Err("write error");
                    }
                }
                Err(e) => {
                    self.counters.closed_bad.fetch_add(1, Ordering::Relaxed);
                    if let Some(answer) = e.head().and_then(|h| bad_request(h, &e.to_string())) {
                        let _ = io.write_all(&answer).await;
                        let _ = io.flush().await;
                    }
                    return Err("framing error");
                }
            }
        }
    }
}

/// The plain TCP "wrap": the socket as it is.
pub fn plain() -> Wrap {
    Arc::new(|socket: TcpStream| {
        Box::pin(async move { Ok(Box::new(socket) as Box<dyn Stream>) }) as Handshake
    })
}

/// Binds a stream listener, naming the config key in the error.
pub async fn bind(addr: SocketAddr, key: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("binding {key} {addr}: {e}")))
}
