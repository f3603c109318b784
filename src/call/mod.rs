//! Calls: the SIP front door ([`dispatch`]), the per-call SIP state machine ([`core`]), the
//! task that runs one call ([`task`]), and the gateway loop that ties them to the socket.

pub mod core;
pub mod dispatch;
pub mod task;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::agent::echo::EchoAgent;
use crate::agent::livekit::LivekitAgent;
use crate::agent::Agent;
use crate::config::{AgentSpec, Config};
use crate::media::ports::PortPool;
use crate::routing::Router;
use crate::sip::transaction::Timers;
use crate::sip::transport::SipSocket;
use dispatch::{Dispatcher, Output};
use task::CallNotice;

/// Messages queued for one call before the transport drops more (UDP retransmission covers
/// what is dropped; a stuck call must not grow memory).
const CALL_INBOX: usize = 32;

/// What every call task shares: read-only settings and handles that need no lock on the media
/// path.
pub struct Shared {
    pub sip: SipSocket,
    pub sip_port: u16,
    pub ports: Arc<PortPool>,
    pub timers: Timers,
    pub agents: HashMap<String, Arc<dyn Agent>>,
    pub notices: mpsc::UnboundedSender<CallNotice>,
    pub rtp_bind_ip: IpAddr,
    pub public_addr: Option<String>,
    pub public_ip: Option<IpAddr>,
    pub media_timeout: Duration,
    pub initial_media_timeout: Duration,
    /// Local address per caller address, found once: which interface reaches the caller.
    route_cache: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Shared {
    /// The local address the kernel would use to reach `peer` (a connected UDP socket sends
    /// nothing; it only asks the routing table). Used for Contact, Via and SDP when no public
    /// address is configured: right on loopback and on hosts with a public interface.
    pub fn local_ip_towards(&self, peer: SocketAddr) -> IpAddr {
        if !self.rtp_bind_ip.is_unspecified() {
            return self.rtp_bind_ip;
        }
        if let Ok(cache) = self.route_cache.lock() {
            if let Some(ip) = cache.get(&peer.ip()) {
                return *ip;
            }
        }
        let bind: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let ip = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.connect(peer).and_then(|_| s.local_addr()))
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if let Ok(mut cache) = self.route_cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(peer.ip(), ip);
        }
        ip
    }

    /// `host:port` for Contact and Via: `sip.public_addr` (our SIP port added when it has
    /// none), or the local address.
    pub fn public_host_port(&self, local_ip: IpAddr) -> String {
        match &self.public_addr {
            Some(a) if has_port(a) => a.clone(),
            Some(a) if a.parse::<std::net::Ipv6Addr>().is_ok() => {
                format!("[{a}]:{}", self.sip_port)
            }
            Some(a) => format!("{a}:{}", self.sip_port),
            None => SocketAddr::new(local_ip, self.sip_port).to_string(),
        }
    }

    /// SDP `c=` address: `media.public_ip`, else `sip.public_addr` if it is an IP, else local.
    pub fn media_ip(&self, local_ip: IpAddr) -> IpAddr {
        self.public_ip
            .or_else(|| {
                let host = self.public_addr.as_deref()?;
                host.parse::<IpAddr>()
                    .ok()
                    .or_else(|| host.parse::<SocketAddr>().ok().map(|a| a.ip()))
            })
            .unwrap_or(local_ip)
    }
}

fn has_port(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    // "name:port"; a bare IPv6 address has several colons and no port.
    matches!(addr.rsplit_once(':'), Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok())
}

/// Builds the agents named in the config.
pub fn build_agents(config: &Config) -> HashMap<String, Arc<dyn Agent>> {
    config
        .agents
        .iter()
        .map(|(name, spec)| {
            let agent: Arc<dyn Agent> = match spec {
                AgentSpec::Echo => Arc::new(EchoAgent),
                AgentSpec::Livekit(spec) => Arc::new(LivekitAgent::new(spec.clone())),
            };
            (name.clone(), agent)
        })
        .collect()
}

/// A running gateway's handles: where it listens, and how to stop it.
pub struct Gateway {
    pub sip_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Binds the SIP socket and starts serving calls.
    pub async fn start(config: &Config) -> std::io::Result<Gateway> {
        let sip = SipSocket::bind(config.sip.listen).await?;
        let sip_addr = sip.local_addr()?;
        let (notices_tx, notices_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            sip: sip.clone(),
            sip_port: sip_addr.port(),
            ports: PortPool::new(config.media.rtp_ports.0, config.media.rtp_ports.1),
            timers: Timers::default(),
            agents: build_agents(config),
            notices: notices_tx,
            rtp_bind_ip: config.sip.listen.ip(),
            public_addr: config.sip.public_addr.clone(),
            public_ip: config.media.public_ip,
            media_timeout: config.media.media_timeout,
            initial_media_timeout: config.media.initial_media_timeout,
            route_cache: Mutex::new(HashMap::new()),
        });
        let router = Router::new(
            config.trunks.clone(),
            config.routes.clone(),
            &config.sip.realm,
            config.sip.challenge,
            Instant::now().into_std(),
        );
        let dispatcher = Dispatcher::new(router, Timers::default(), config.sip.max_calls);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(serve(shared, dispatcher, notices_rx, shutdown_rx));
        tracing::info!(%sip_addr, "SIP listening (UDP)");
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
            shutdown,
            task,
        })
    }

    /// Stops the SIP loop (calls in progress end with their tasks).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    shared: Arc<Shared>,
    mut core: Dispatcher,
    mut notices: mpsc::UnboundedReceiver<CallNotice>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut calls: HashMap<String, mpsc::Sender<(crate::sip::message::Message, SocketAddr)>> =
        HashMap::new();
    let mut buf = BytesMut::with_capacity(crate::sip::transport::MAX_DATAGRAM);
    loop {
        let deadline = core.poll_timeout().map(Instant::from_std);
        tokio::select! {
            r = shared.sip.recv(&mut buf) => match r {
                Ok((data, src)) => core.handle_datagram(Instant::now().into_std(), src, data),
                Err(e) => tracing::debug!(error = %e, "SIP receive error"),
            },
            Some(n) = notices.recv() => match n {
                CallNotice::Ended(id) => core.call_ended(&id),
                CallNotice::Finished(id) => {
                    core.call_finished(&id);
                    calls.remove(&id);
                }
            },
            _ = async { match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            } } => core.handle_timeout(Instant::now().into_std()),
            _ = shutdown.changed() => return,
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, bytes } => shared.sip.send(to, &bytes).await,
                Output::NewCall(new) => {
                    let (tx, rx) = mpsc::channel(CALL_INBOX);
                    calls.insert(new.call_id.clone(), tx);
                    tokio::spawn(task::run(Arc::clone(&shared), new, rx));
                }
                Output::Route { call_id, msg, src } => {
                    if let Some(tx) = calls.get(&call_id) {
                        if tx.try_send((msg, src)).is_err() {
                            tracing::debug!(%call_id, "call inbox full; message dropped");
                        }
                    }
                }
            }
        }
    }
}
