//! The two WebRTC peer connections of a LiveKit participant (webrtc-rs): the publisher, which we
//! offer and which carries our Opus track and our data channels, and the subscriber, which the
//! server offers (again whenever subscriptions change) and which carries the room's audio and
//! data. Callbacks report to the driver through one channel; the driver runs everything else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use livekit_protocol as proto;
use tokio::sync::mpsc;
use tracing::Instrument;
use webrtc::api::interceptor_registry::configure_rtcp_reports;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

use super::signal::{Target, STREAM_ID, TRACK_ID};
use crate::media::pacer::FRAME;

/// The Opus payload type browsers and LiveKit use.
pub const OPUS_PT: u8 = 111;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    Webrtc(#[from] webrtc::Error),
    #[error("ICE candidate is not valid JSON: {0}")]
    Candidate(#[from] serde_json::Error),
    #[error("no local description after negotiation")]
    NoLocalDescription,
}

/// What the connections report.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle (RTCIceCandidateInit as JSON).
    Candidate {
        target: Target,
        init: String,
    },
    /// A remote audio track was subscribed.
    TrackStarted {
        key: u64,
    },
    /// One Opus payload of a remote track.
    Audio {
        key: u64,
        payload: Bytes,
    },
    TrackEnded {
        key: u64,
    },
    /// A data packet from the room (protobuf `DataPacket`).
    Data(Bytes),
    /// A connection failed (ICE or DTLS): media can no longer flow.
    Failed {
        target: Target,
    },
}

/// The codec we publish and accept: `opus/48000/2` (LiveKit refuses an Opus track declared
/// with one channel), in-band FEC on.
pub fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A webrtc-rs API with only Opus registered. `loopback`: allow (and only use) 127.0.0.1
/// candidates, for a LiveKit server on this host; `lite`: be ICE-lite like LiveKit's server
/// (the test SFU uses this).
pub fn build_api(loopback: bool, lite: bool) -> Result<webrtc::api::API, PeerError> {
    let mut media = MediaEngine::default();
    media.register_codec(
        RTCRtpCodecParameters {
            capability: opus_capability(),
            payload_type: OPUS_PT,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )?;
    // RTCP sender and receiver reports only: NACK retransmission and transport-wide
    // congestion feedback serve video (audio rides on Opus FEC), and each costs per-packet work
    // and per-stream buffers in every call.
    let registry = configure_rtcp_reports(Registry::new());
    let mut settings = SettingEngine::default();
    if loopback {
        settings.set_include_loopback_candidate(true);
        settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    }
    settings.set_lite(lite);
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

pub fn ice_servers(servers: &[proto::IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect()
}

/// Remote candidates that arrived before the connection had a remote description (trickle
/// can overtake the offer or answer); added once it has one.
#[derive(Default)]
struct Pending {
    remote_set: bool,
    candidates: Vec<RTCIceCandidateInit>,
}

pub struct Peers {
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    reliable: Arc<RTCDataChannel>,
    pending: [Pending; 2],
}

fn index(t: Target) -> usize {
    match t {
        Target::Publisher => 0,
        Target::Subscriber => 1,
    }
}

impl Peers {
    pub async fn new(
        ice: Vec<RTCIceServer>,
        loopback: bool,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<Peers, PeerError> {
        let api = build_api(loopback, false)?;
        let config = || RTCConfiguration {
            ice_servers: ice.clone(),
            ..Default::default()
        };
        let publisher = Arc::new(api.new_peer_connection(config()).await?);
        let subscriber = Arc::new(api.new_peer_connection(config()).await?);
        for (pc, target) in [
            (&publisher, Target::Publisher),
            (&subscriber, Target::Subscriber),
        ] {
            watch(pc, target, events.clone());
        }
        let track = Arc::new(TrackLocalStaticSample::new(
            opus_capability(),
            TRACK_ID.to_owned(),
            STREAM_ID.to_owned(),
        ));
        publisher
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
            .await?;
        // The server reads our data from the publisher connection's channels, named as its
        // SDKs name them: `_reliable` ordered, `_lossy` unordered without retransmission.
        let reliable = publisher
            .create_data_channel(
                "_reliable",
                Some(RTCDataChannelInit {
                    ordered: Some(true),
                    ..Default::default()
                }),
            )
            .await?;
        publisher
            .create_data_channel(
                "_lossy",
                Some(RTCDataChannelInit {
                    ordered: Some(false),
                    max_retransmits: Some(0),
                    ..Default::default()
                }),
            )
            .await?;
        receive(&subscriber, events);
        Ok(Peers {
            publisher,
            subscriber,
            track,
            reliable,
            pending: Default::default(),
        })
    }

    /// Applies the server's offer to the subscriber connection; returns our answer.
    pub async fn answer(&mut self, sdp: String) -> Result<String, PeerError> {
        let pc = Arc::clone(&self.subscriber);
        pc.set_remote_description(RTCSessionDescription::offer(sdp)?)
            .await?;
        let answer = pc.create_answer(None).await?;
        pc.set_local_description(answer).await?;
        self.remote_set(Target::Subscriber).await;
        let local = pc
            .local_description()
            .await
            .ok_or(PeerError::NoLocalDescription)?;
        Ok(local.sdp)
    }

    /// Our offer on the publisher connection.
    pub async fn offer(&mut self) -> Result<String, PeerError> {
        let pc = &self.publisher;
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let local = pc
            .local_description()
            .await
            .ok_or(PeerError::NoLocalDescription)?;
        Ok(local.sdp)
    }

    pub async fn set_answer(&mut self, sdp: String) -> Result<(), PeerError> {
        self.publisher
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        self.remote_set(Target::Publisher).await;
        Ok(())
    }

    pub async fn add_candidate(&mut self, target: Target, init: &str) -> Result<(), PeerError> {
        let candidate: RTCIceCandidateInit = serde_json::from_str(init)?;
        let slot = &mut self.pending[index(target)];
        if !slot.remote_set {
            slot.candidates.push(candidate);
            return Ok(());
        }
        self.pc(target).add_ice_candidate(candidate).await?;
        Ok(())
    }

    async fn remote_set(&mut self, target: Target) {
        let slot = &mut self.pending[index(target)];
        slot.remote_set = true;
        let queued = std::mem::take(&mut slot.candidates);
        let pc = Arc::clone(self.pc(target));
        for c in queued {
            if let Err(e) = pc.add_ice_candidate(c).await {
                tracing::debug!(error = %e, "queued ICE candidate refused");
            }
        }
    }

    fn pc(&self, target: Target) -> &Arc<RTCPeerConnection> {
        match target {
            Target::Publisher => &self.publisher,
            Target::Subscriber => &self.subscriber,
        }
    }

    /// One 20 ms Opus packet of the caller's audio.
    pub async fn write_audio(&self, packet: &[u8]) -> Result<(), PeerError> {
        self.track
            .write_sample(&Sample {
                data: Bytes::copy_from_slice(packet),
                timestamp: SystemTime::now(),
                duration: FRAME,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Sends a data packet on the reliable channel; an error while it is not open yet.
    pub async fn send_reliable(&self, data: Bytes) -> Result<(), PeerError> {
        self.reliable.send(&data).await?;
        Ok(())
    }

    pub async fn close(&self) {
        for pc in [&self.publisher, &self.subscriber] {
            if let Err(e) = pc.close().await {
                tracing::debug!(error = %e, "closing a peer connection");
            }
        }
    }
}

/// Reports local candidates and failures of `pc`.
fn watch(pc: &RTCPeerConnection, target: Target, events: mpsc::Sender<PeerEvent>) {
    let tx = events.clone();
    pc.on_ice_candidate(Box::new(move |c| {
        let tx = tx.clone();
        Box::pin(async move {
            let Some(c) = c else { return };
            match c.to_json().map(|init| serde_json::to_string(&init)) {
                Ok(Ok(init)) => {
                    let _ = tx.send(PeerEvent::Candidate { target, init }).await;
                }
                _ => tracing::debug!("local ICE candidate not serialisable"),
            }
        })
    }));
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let tx = events.clone();
        Box::pin(async move {
            tracing::debug!(?target, %state, "peer connection state");
            if state == RTCPeerConnectionState::Failed {
                let _ = tx.send(PeerEvent::Failed { target }).await;
            }
        })
    }));
}

/// Reads the room's audio tracks and data channels on the subscriber connection.
fn receive(pc: &RTCPeerConnection, events: mpsc::Sender<PeerEvent>) {
    static NEXT_TRACK: AtomicU64 = AtomicU64::new(1);
    let tx = events.clone();
    let span = tracing::Span::current();
    pc.on_track(Box::new(move |track, _receiver, _transceiver| {
        let tx = tx.clone();
        let span = span.clone();
        Box::pin(async move {
            if track.kind() != RTPCodecType::Audio {
                return;
            }
            let key = NEXT_TRACK.fetch_add(1, Ordering::Relaxed);
            tracing::info!(key, id = %track.id(), stream = %track.stream_id(),
                codec = %track.codec().capability.mime_type, "room audio track subscribed");
            let _ = tx.send(PeerEvent::TrackStarted { key }).await;
            tokio::spawn(
                async move {
                    while let Ok((packet, _)) = track.read_rtp().await {
                        if packet.payload.is_empty() {
                            continue;
                        }
                        let ev = PeerEvent::Audio {
                            key,
                            payload: packet.payload,
                        };
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(PeerEvent::TrackEnded { key }).await;
                }
                .instrument(span),
            );
        })
    }));
    pc.on_data_channel(Box::new(move |dc| {
        let tx = events.clone();
        Box::pin(async move {
            tracing::debug!(label = %dc.label(), "room data channel");
            dc.on_message(Box::new(move |msg| {
                let tx = tx.clone();
                Box::pin(async move {
                    let _ = tx.send(PeerEvent::Data(msg.data)).await;
                })
            }));
        })
    }));
}
