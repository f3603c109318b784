//! Calls: the SIP front door ([`dispatch`]), the per-call SIP state machine ([`core`]), the
//! task that runs one call ([`task`]), and the gateway loop that ties them to the socket.

pub mod core;
pub mod dispatch;
pub mod gateway;
pub mod registry;
pub mod task;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::agent::echo::EchoAgent;
use crate::agent::hume::HumeAgent;
use crate::agent::livekit::LivekitAgent;
use crate::agent::openai::OpenaiAgent;
use crate::agent::stream::StreamAgent;
use crate::agent::Agent;
use crate::config::{AgentSpec, Config};
use crate::engine::{Engine, Sinks};
use crate::media::ports::PortPool;
use crate::metrics::Metrics;
use crate::sip::guard::Ban;
use crate::sip::transaction::Timers;
use crate::sip::transport::{SipTransport, Transport};
pub use gateway::{Gateway, Monitor, Reload};
use registry::Registry;
use task::CallNotice;

/// The agents by `[agents]` key.
pub type AgentMap = HashMap<String, Arc<dyn Agent>>;

/// What a SIGHUP may change without touching live calls: a call reads it once, at setup.
pub struct Live {
    /// The configuration in force (settings that need a restart keep their running values).
    pub config: Arc<Config>,
    pub agents: Arc<AgentMap>,
}

/// What every call task shares: read-only settings and handles that need no lock on the media
/// path.
pub struct Shared {
    pub sip: SipTransport,
    pub sip_port: u16,
    pub ports: Arc<PortPool>,
    pub timers: Timers,
    pub notices: mpsc::UnboundedSender<CallNotice>,
    pub rtp_bind_ip: IpAddr,
    pub public_addr: Option<String>,
    pub public_ip: Option<IpAddr>,
    pub media_timeout: Duration,
    pub initial_media_timeout: Duration,
    /// Local address per caller address, found once: which interface reaches the caller.
    route_cache: Mutex<HashMap<IpAddr, IpAddr>>,
    live: RwLock<Arc<Live>>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// The media reactors answered calls hand their RTP to.
    pub engine: Engine,
    draining: AtomicBool,
    /// Questions about bans for the SIP loop, which owns them (the admin API's).
    bans: mpsc::UnboundedSender<BanRequest>,
}

/// What the admin API asks the SIP loop about the SIP port's bans.
pub enum BanRequest {
    /// The bans in force.
    List(oneshot::Sender<Vec<Ban>>),
    /// Lift the ban on this address; the answer says whether there was one.
    Lift(IpAddr, oneshot::Sender<bool>),
}

impl Shared {
    /// Where calls' media publish their figures.
    pub fn sinks(&self) -> Sinks {
        Sinks {
            registry: Arc::clone(&self.registry),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// The reloadable configuration and agents in force now.
    pub fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_live(&self, live: Live) {
        let live = Arc::new(live);
        match self.live.write() {
            Ok(mut g) => *g = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
    }

    /// The bans in force now, from the SIP loop; `None` once it has stopped.
    pub async fn bans(&self) -> Option<Vec<Ban>> {
        let (tx, rx) = oneshot::channel();
        self.bans.send(BanRequest::List(tx)).ok()?;
        rx.await.ok()
    }

    /// Lifts the ban on `ip` through the SIP loop: whether there was one, `None` once the loop
    /// has stopped.
    pub async fn lift_ban(&self, ip: IpAddr) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.bans.send(BanRequest::Lift(ip, tx)).ok()?;
        rx.await.ok()
    }

    /// True once shutdown began: new INVITEs get 503 and `/healthz` 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

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

    /// `host:port` for Contact and Via of a dialog on `transport`: `sip.public_addr` (our
    /// SIP port added when it has none), or the local address. Over TCP and TLS the port is
    /// that listener's: a port in `public_addr` is the UDP one.
    pub fn public_host_port(&self, local_ip: IpAddr, transport: Transport) -> String {
        let udp = transport == Transport::Udp;
        let port = self.sip.stream_port(transport).unwrap_or(self.sip_port);
        match &self.public_addr {
            Some(a) if has_port(a) && udp => a.clone(),
            Some(a) if has_port(a) => format!("{}:{port}", host_part(a)),
            Some(a) if a.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{a}]:{port}"),
            Some(a) => format!("{a}:{port}"),
            None => SocketAddr::new(local_ip, port).to_string(),
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

/// `addr` without the port it may carry (an IPv6 address keeps its brackets).
pub(crate) fn host_part(addr: &str) -> &str {
    match has_port(addr) {
        true => addr.rsplit_once(':').map_or(addr, |(host, _)| host),
        false => addr,
    }
}

pub(crate) fn has_port(addr: &str) -> bool {
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
                AgentSpec::Hume(spec) => Arc::new(HumeAgent::new(spec.clone())),
                AgentSpec::Livekit(spec) => Arc::new(LivekitAgent::new(spec.clone())),
                AgentSpec::Stream(spec) => Arc::new(StreamAgent::new(spec.clone())),
                AgentSpec::Openai(spec) => Arc::new(OpenaiAgent::new(spec.clone())),
            };
            (name.clone(), agent)
        })
        .collect()
}
