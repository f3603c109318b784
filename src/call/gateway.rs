//! The running gateway: the SIP loop that ties the front door to the socket and the call
//! tasks, the admin HTTP server beside it, and the controls of its life (drain, hang up
//! everyone, reload, liveness).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::dispatch::{Dispatcher, Output, Stat};
use super::registry::Registry;
use super::task::{self, CallInput, CallNotice};
use super::{build_agents, AgentMap, BanRequest, Live, Shared};
use crate::config::{Config, Route, Trunk};
use crate::engine::{Engine, Sinks};
use crate::media::ports::PortPool;
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::sip::auth::{nonce_key, NonceClock};
use crate::sip::guard::Limits;
use crate::sip::transaction::Timers;
use crate::sip::transport::stream::{self, Streams};
use crate::sip::transport::tls::{self, TlsServer};
use crate::sip::transport::{Peer, RecvBuf, SipSocket, SipTransport, Transport};

/// Messages queued for one call before the transport drops more (UDP retransmission covers
/// what is dropped; a stuck call must not grow memory).
const CALL_INBOX: usize = 32;

/// Messages framed on TCP and TLS connections waiting for the SIP loop; a connection whose
/// message does not fit waits (its own reads stop), the others carry on.
const STREAM_INBOX: usize = 1024;

/// How long shutdown waits for the BYEs it sent to be answered before it exits anyway.
pub const BYE_WAIT: Duration = Duration::from_secs(5);

/// What the SIP loop reports about its calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Calls whose media and agent run (they count against `max_calls`).
    pub active: usize,
    /// Call tasks that still have something in flight: an unended call, or our BYE not yet
    /// answered.
    pub unsettled: usize,
}

enum Control {
    Drain,
    HangupAll,
    Reload {
        trunks: Vec<Trunk>,
        routes: Vec<Route>,
        max_calls: usize,
        limits: Limits,
    },
    /// Answered by the loop itself: the watchdog's proof that SIP is being served.
    Ping(oneshot::Sender<()>),
}

/// What a reload changed, and what it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// Settings that differ in the new file but need a restart; their old values stay.
    pub needs_restart: Vec<&'static str>,
}

/// A cloneable view of a running gateway for its supervisors (watchdog, status line).
#[derive(Clone)]
pub struct Monitor {
    control: mpsc::UnboundedSender<Control>,
    status: watch::Receiver<Status>,
    shared: Arc<Shared>,
}

impl Monitor {
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// True when the SIP loop answered within `within`: it is alive and not stuck.
    pub async fn ping(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Ping(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }
}

/// A running gateway's handles: where it listens, and how to steer and stop it.
pub struct Gateway {
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    status: watch::Receiver<Status>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    http: tokio::task::JoinHandle<()>,
    /// Agents the embedding program supplied; they survive reloads.
    own_agents: AgentMap,
    /// The TLS listener's certificate, reloaded with the configuration.
    tls: Option<Arc<TlsServer>>,
    /// The TCP and TLS accept loops.
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds the SIP socket and the admin HTTP listener and starts serving.
    pub async fn start(config: &Config) -> std::io::Result<Gateway> {
        Gateway::start_with_agents(config, AgentMap::new()).await
    }

    /// Like [`Gateway::start`], with agents supplied by the embedding program: each replaces
    /// the configured agent of the same name (routes name them as usual) and is kept across
    /// reloads.
    pub async fn start_with_agents(
        config: &Config,
        own_agents: AgentMap,
    ) -> std::io::Result<Gateway> {
        let udp = SipSocket::bind(config.sip.listen).await?;
        let sip_addr = udp.local_addr()?;
        let (stream_tx, stream_rx) = mpsc::channel(STREAM_INBOX);
        let streams = Streams::new(config.stream_limits, stream_tx);
        let mut listeners = Vec::new();
        let mut sip = SipTransport {
            udp,
            streams: Arc::clone(&streams),
            tcp_port: None,
            tls_port: None,
            tls_client: None,
        };
        if let Some(addr) = config.sip.streams.tcp {
            let listener = stream::bind(addr, "sip.listen_tcp").await?;
            let local = listener.local_addr()?;
            sip.tcp_port = Some(local.port());
            let accept = Arc::clone(&streams).listen(listener, Transport::Tcp, stream::plain());
            listeners.push(tokio::spawn(accept));
            tracing::info!(addr = %local, "SIP listening (TCP)");
        }
        let mut tls_server = None;
        if let Some((addr, files)) = &config.sip.streams.tls {
            let server = TlsServer::new(files).map_err(std::io::Error::other)?;
            let client = tls::client_config(files).map_err(std::io::Error::other)?;
            let listener = stream::bind(*addr, "sip.listen_tls").await?;
            let local = listener.local_addr()?;
            sip.tls_port = Some(local.port());
            sip.tls_client = Some(Arc::new(client));
            let accept = Arc::clone(&streams).listen(listener, Transport::Tls, server.acceptor());
            listeners.push(tokio::spawn(accept));
            tls_server = Some(server);
            tracing::info!(
                addr = %local,
                mutual = files.client_ca.is_some(),
                "SIP listening (TLS)"
            );
        }
        let http_listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("binding http.listen {}: {e}", config.http.listen),
                )
            })?;
        let http_addr = http_listener.local_addr()?;
        let (notices_tx, notices_rx) = mpsc::unbounded_channel();
        let (bans_tx, bans_rx) = mpsc::unbounded_channel();
        let registry = Arc::new(Registry::new());
        let metrics = Arc::new(Metrics::new());
        let sinks = Sinks {
            registry: Arc::clone(&registry),
            metrics: Arc::clone(&metrics),
        };
        let engine = Engine::start(config.media.reactors, sinks)?;
        let shared = Arc::new(Shared {
            sip: sip.clone(),
            sip_port: sip_addr.port(),
            ports: PortPool::new(config.media.rtp_ports.0, config.media.rtp_ports.1),
            timers: Timers::default(),
            notices: notices_tx,
            rtp_bind_ip: config.sip.listen.ip(),
            public_addr: config.sip.public_addr.clone(),
            public_ip: config.media.public_ip,
            media_timeout: config.media.media_timeout,
            initial_media_timeout: config.media.initial_media_timeout,
            route_cache: Mutex::new(HashMap::new()),
            live: RwLock::new(Arc::new(Live {
                config: Arc::new(config.clone()),
                agents: Arc::new(with_own(build_agents(config), &own_agents)),
            })),
            registry,
            metrics,
            engine,
            draining: Default::default(),
            bans: bans_tx,
        });
        let router = Router::new(
            config.trunks.clone(),
            config.routes.clone(),
            &config.sip.realm,
            config.sip.challenge,
            nonce_key(config.sip.nonce_secret.as_ref().map(|s| s.0.as_str())),
            NonceClock::system(Instant::now().into_std()),
        );
        let dispatcher = Dispatcher::new(
            Instant::now().into_std(),
            router,
            config.sip.max_calls,
            config.limits.clone(),
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status::default());
        let inputs = Inputs {
            notices: notices_rx,
            streams: stream_rx,
            control: control_rx,
            bans: bans_rx,
            shutdown: shutdown_rx.clone(),
        };
        let task = tokio::spawn(serve(Arc::clone(&shared), dispatcher, inputs, status_tx));
        let http = tokio::spawn(crate::http::serve(
            http_listener,
            Arc::clone(&shared),
            shutdown_rx,
        ));
        tracing::info!(%sip_addr, "SIP listening (UDP)");
        tracing::info!(%http_addr, "admin HTTP listening");
        if !http_addr.ip().is_loopback() && config.http.auth_token.is_none() {
            tracing::warn!(
                %http_addr,
                "the admin API listens beyond loopback without http.auth_token_env: anyone who \
                 reaches it can read call details"
            );
        }
        if config.sip.public_addr.is_none()
            && config.media.public_ip.is_none()
            && config.sip.listen.ip().is_unspecified()
        {
            // Behind NAT (most cloud VMs) the interface address is private: Twilio would send
            // its ACK and RTP to it, and the call would be silent and drop at 30 s.
            tracing::warn!(
                "sip.public_addr is not set: Contact and SDP carry the local interface address \
                 that routes to each caller; behind NAT set sip.public_addr (and media.public_ip)"
            );
        }
        Ok(Gateway {
            sip_addr,
            http_addr,
            shared,
            control,
            status,
            shutdown,
            task,
            http,
            own_agents,
            tls: tls_server,
            listeners,
        })
    }

    /// The SIP transports: where the TCP and TLS listeners are, and their connections.
    pub fn sip(&self) -> &SipTransport {
        &self.shared.sip
    }

    /// What every call shares: the registry and the metrics, among others.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Stops taking calls: new INVITEs get 503 with Retry-After (Twilio fails over on it) and
    /// `/healthz` answers 503. Calls in progress carry on.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.shared.metrics.set_draining(true);
        let _ = self.control.send(Control::Drain);
    }

    /// Tells every call to end now: BYE for answered calls, 503 for those still setting up.
    pub fn hangup_all(&self) {
        let _ = self.control.send(Control::HangupAll);
    }

    /// Waits until `done` holds for the loop's status.
    pub async fn wait_for(&self, done: impl Fn(&Status) -> bool) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| done(s)).await;
    }

    /// A handle for the watchdog and the status line, usable while `shutdown` runs.
    pub fn monitor(&self) -> Monitor {
        Monitor {
            control: self.control.clone(),
            status: self.status.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Puts a new configuration in force for the calls that start from now on: trunks,
    /// routes, agents, `[twilio]`, `http.auth_token_env`, `sip.max_calls` and
    /// `shutdown_grace_secs`. Settings that need a restart (listen addresses, public
    /// addresses, realm, RTP ports, media timeouts) keep their running values and are named in
    /// the answer.
    pub fn reload(&self, new: Config) -> Reload {
        let old = self.shared.live().config.clone();
        let needs_restart = restart_needed(&old, &new);
        if let (Some(server), Some((_, files))) = (&self.tls, &new.sip.streams.tls) {
            // A renewed certificate takes effect for the connections accepted from now on.
            match server.reload(files) {
                Ok(()) => tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; the old one stays")
                }
            }
        }
        let mut effective = new;
        // Keep what the running sockets and per-call settings were built with.
        effective.sip.listen = old.sip.listen;
        effective.sip.public_addr = old.sip.public_addr.clone();
        effective.sip.realm = old.sip.realm.clone();
        effective.sip.challenge = old.sip.challenge;
        effective.sip.streams = old.sip.streams.clone();
        effective.stream_limits = old.stream_limits;
        effective.media = old.media.clone();
        effective.http.listen = old.http.listen;
        let agents = with_own(build_agents(&effective), &self.own_agents);
        let _ = self.control.send(Control::Reload {
            trunks: effective.trunks.clone(),
            routes: effective.routes.clone(),
            max_calls: effective.sip.max_calls,
            limits: effective.limits.clone(),
        });
        self.shared.set_live(Live {
            config: Arc::new(effective),
            agents: Arc::new(agents),
        });
        self.shared.metrics.config_reload(true);
        Reload { needs_restart }
    }

    /// The graceful stop: drain, let calls finish for up to `grace` (or until `cut_short`
    /// resolves, e.g. a second SIGTERM), then BYE whatever is left, wait up to [`BYE_WAIT`]
    /// for those BYEs to be answered, and stop. Returns how many calls had to be cut.
    pub async fn shutdown(self, grace: Duration, cut_short: impl Future<Output = ()>) -> usize {
        self.drain();
        let active = self.status().active;
        tracing::info!(
            active,
            grace_secs = grace.as_secs(),
            "draining: new calls get 503"
        );
        tokio::select! {
            _ = self.wait_for(|s| s.active == 0) => {}
            _ = tokio::time::sleep(grace) => {}
            _ = cut_short => tracing::info!("shutdown hurried: hanging up now"),
        }
        let cut = self.status().active;
        if cut > 0 {
            tracing::warn!(calls = cut, "grace over: hanging up the remaining calls");
            self.hangup_all();
        }
        let settled = tokio::time::timeout(BYE_WAIT, self.wait_for(|s| s.unsettled == 0)).await;
        if settled.is_err() {
            tracing::warn!(
                unsettled = self.status().unsettled,
                "some calls did not finish their BYE in time"
            );
        }
        self.stop().await;
        cut
    }

    /// Stops the SIP loop and the HTTP server (calls in progress end with their tasks).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        for l in &self.listeners {
            l.abort();
        }
        self.shared.sip.streams.close_all();
        // In-flight requests get a moment; a client holding a connection open does not hold
        // up the exit.
        let mut http = self.http;
        if tokio::time::timeout(Duration::from_secs(2), &mut http)
            .await
            .is_err()
        {
            http.abort();
        }
    }
}

fn with_own(mut agents: AgentMap, own: &AgentMap) -> AgentMap {
    for (name, agent) in own {
        agents.insert(name.clone(), Arc::clone(agent));
    }
    agents
}

/// The settings that differ between `old` and `new` but only take effect on a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |differs: bool, key: &'static str| {
        if differs {
            v.push(key);
        }
    };
    check(old.sip.listen != new.sip.listen, "sip.listen");
    check(
        old.sip.public_addr != new.sip.public_addr,
        "sip.public_addr",
    );
    check(old.sip.realm != new.sip.realm, "sip.realm");
    check(old.sip.challenge != new.sip.challenge, "sip.auth_challenge");
    check(
        old.sip.nonce_secret != new.sip.nonce_secret,
        "sip.nonce_secret_env",
    );
    check(
        old.media.rtp_ports != new.media.rtp_ports,
        "media.rtp_ports",
    );
    check(
        old.media.public_ip != new.media.public_ip,
        "media.public_ip",
    );
    check(
        old.media.media_timeout != new.media.media_timeout,
        "media.media_timeout_secs",
    );
    check(
        old.media.initial_media_timeout != new.media.initial_media_timeout,
        "media.initial_media_timeout_secs",
    );
    check(old.http.listen != new.http.listen, "http.listen");
    check(old.sip.streams.tcp != new.sip.streams.tcp, "sip.listen_tcp");
    check(
        old.sip.streams.tls.as_ref().map(|t| t.0) != new.sip.streams.tls.as_ref().map(|t| t.0),
        "sip.listen_tls",
    );
    check(old.stream_limits != new.stream_limits, "limits.tcp_*");
    v
}

/// Datagrams read per wake-up at most; finding more queued after these means the gateway is
/// behind. A few dozen INVITEs are a fraction of a default socket buffer (about 200 KiB).
const READ_BATCH: usize = 32;

/// Reads what else is queued on the SIP socket, up to a batch, without waiting. A batch that
/// does not empty the socket tells the front door it is behind, and it sheds strangers until a
/// read finds the socket empty again: the kernel queue then drains of a flood, instead of
/// dropping at random the ACKs and BYEs of calls that are up.
fn read_queued(sip: &SipSocket, core: &mut Dispatcher, buf: &mut RecvBuf) {
    for _ in 1..READ_BATCH {
        match sip.try_recv(buf) {
            Ok(Some((data, src))) => core.handle_datagram(Instant::now().into_std(), src, data),
            Ok(None) => return core.set_backlogged(false),
            Err(e) => {
                tracing::debug!(error = %e, "SIP receive error");
                return;
            }
        }
    }
    core.set_backlogged(true);
}

/// One call task as the loop sees it.
struct CallHandle {
    inbox: mpsc::Sender<CallInput>,
    settled: bool,
}

/// What the SIP loop listens to besides the UDP socket.
struct Inputs {
    notices: mpsc::UnboundedReceiver<CallNotice>,
    /// Messages framed on TCP and TLS connections.
    streams: mpsc::Receiver<(bytes::Bytes, Peer)>,
    control: mpsc::UnboundedReceiver<Control>,
    bans: mpsc::UnboundedReceiver<BanRequest>,
    shutdown: watch::Receiver<bool>,
}

async fn serve(
    shared: Arc<Shared>,
    mut core: Dispatcher,
    inputs: Inputs,
    status: watch::Sender<Status>,
) {
    let Inputs {
        mut notices,
        streams: mut stream_rx,
        mut control,
        mut bans,
        mut shutdown,
    } = inputs;
    let mut calls: HashMap<String, CallHandle> = HashMap::new();
    // Kept as a count rather than recounted: this loop runs per datagram.
    let mut unsettled = 0usize;
    let mut buf = RecvBuf::default();
    loop {
        tokio::select! {
            r = shared.sip.udp.recv(&mut buf) => match r {
                Ok((data, src)) => {
                    core.handle_datagram(Instant::now().into_std(), src, data);
                    read_queued(&shared.sip.udp, &mut core, &mut buf);
                }
                Err(e) => tracing::debug!(error = %e, "SIP receive error"),
            },
            Some((data, peer)) = stream_rx.recv() => {
                core.handle_datagram(Instant::now().into_std(), peer, data);
            }
            Some(n) = notices.recv() => match n {
                CallNotice::Answered(id) => core.call_answered(&id),
                CallNotice::Ended(id) => core.call_ended(&id),
                CallNotice::Settled(id) => {
                    if let Some(c) = calls.get_mut(&id) {
                        if !c.settled {
                            c.settled = true;
                            unsettled -= 1;
                        }
                    }
                }
                CallNotice::Finished(id) => {
                    core.call_finished(&id);
                    if calls.remove(&id).is_some_and(|c| !c.settled) {
                        unsettled -= 1;
                    }
                }
            },
            Some(c) = control.recv() => match c {
                Control::Drain => core.set_draining(true),
                Control::HangupAll => {
                    for (id, c) in &calls {
                        if c.inbox.try_send(CallInput::Hangup).is_err() {
                            // A full inbox must not lose the order to hang up.
                            let tx = c.inbox.clone();
                            let id = id.clone();
                            tokio::spawn(async move {
                                if tx.send(CallInput::Hangup).await.is_err() {
                                    tracing::debug!(call_id = %id, "call gone before hang-up");
                                }
                            });
                        }
                    }
                }
                Control::Reload { trunks, routes, max_calls, limits } => {
                    core.reload(trunks, routes, max_calls, limits);
                }
                Control::Ping(tx) => {
                    let _ = tx.send(());
                }
            },
            Some(q) = bans.recv() => {
                let now = Instant::now().into_std();
                match q {
                    BanRequest::List(answer) => { let _ = answer.send(core.bans(now)); }
                    BanRequest::Lift(ip, answer) => {
                        shared.sip.streams.unban(ip);
                        let _ = answer.send(core.lift_ban(now, ip));
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, bytes } => {
                    if !shared.sip.send(to, bytes).await {
                        tracing::debug!(%to, "connection gone; answer not sent");
                    }
                }
                Output::NewCall(new) => {
                    let (tx, rx) = mpsc::channel(CALL_INBOX);
                    unsettled += 1;
                    calls.insert(
                        new.call_id.clone(),
                        CallHandle {
                            inbox: tx,
                            settled: false,
                        },
                    );
                    tokio::spawn(task::run(Arc::clone(&shared), new, rx));
                }
                Output::Route { call_id, msg, src } => {
                    if let Some(c) = calls.get(&call_id) {
                        if c.inbox.try_send(CallInput::Sip(msg, src)).is_err() {
                            tracing::debug!(%call_id, "call inbox full; message dropped");
                        }
                    }
                }
            }
        }
        while let Some(s) = core.poll_stat() {
            match s {
                Stat::InviteResponse(code) => shared.metrics.invite_response(code),
                Stat::AuthFailure(r) => shared.metrics.auth_failure(r),
                Stat::Malformed => shared.metrics.sip_malformed(),
                Stat::Dropped(why) => shared.metrics.sip_dropped(why),
                Stat::Banned(reason, ip) => {
                    shared.metrics.ban(reason);
                    let until = Instant::now() + shared.live().config.limits.ban;
                    shared.sip.streams.ban(ip, until);
                }
            }
        }
        let now = Status {
            active: core.active_calls(),
            unsettled,
        };
        shared.metrics.set_active_calls(now.active);
        shared.metrics.set_calls_in_setup(core.calls_in_setup());
        shared.metrics.set_call_tasks(core.call_tasks());
        status.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }
}
