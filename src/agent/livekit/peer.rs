//! The two WebRTC peer connections of a LiveKit participant: the publisher, which we offer and
//! which carries our Opus track and our data channels, and the subscriber, which the server
//! offers (again whenever subscriptions change) and which carries the room's audio and data.
//!
//! Built on webrtc-rs's sans-IO core (`rtc`): no task, channel or lock of its own. Each
//! connection has one UDP socket; whoever owns [`Peers`] feeds it from [`Peers::poll`], and a
//! frame of caller audio goes from [`Peers::write_audio`] to the socket in the same call. That
//! is what makes a LiveKit call cheap: webrtc-rs 0.17 ran every packet through half a dozen
//! tasks and channels (docs/performance.md, "LiveKit leg").

use std::collections::VecDeque;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::signal::{Target, STREAM_ID, TRACK_ID};
use super::socket::MediaSocket;
use crate::codec::opus::FRAME;

/// The Opus payload type browsers and LiveKit use.
pub const OPUS_PT: u8 = 111;
/// Datagrams read per connection per poll while the call sets up: a burst cannot starve the
/// caller's side.
const MAX_READS: usize = 16;
/// The largest datagram we accept; WebRTC keeps packets under the path MTU.
const MAX_DATAGRAM: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("ICE candidate is not valid JSON: {0}")]
    Candidate(#[from] serde_json::Error),
    #[error("no local description after negotiation")]
    NoLocalDescription,
}

/// What the connections report besides audio.
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
    TrackEnded {
        key: u64,
    },
    /// A data packet from the room (protobuf `DataPacket`).
    Data(BytesMut),
    /// A connection failed (ICE or DTLS): media can no longer flow.
    Failed {
        target: Target,
    },
}

/// The codec we publish and accept: `opus/48000/2` (LiveKit refuses an Opus track declared
/// with one channel).
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A peer connection as the gateway makes them: Opus only, RTCP sender and receiver reports.
/// Public for `benches/livekit_rtc.rs`, which joins two in memory.
pub fn peer_connection() -> Result<RTCPeerConnection, PeerError> {
    let mut media = MediaEngine::default();
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    // RTCP sender and receiver reports only: NACK retransmission and transport-wide
    // congestion feedback serve video (audio rides on Opus's own concealment), and each
    // costs per-packet work and per-stream buffers in every call.
    let registry = configure_rtcp_reports(Registry::new());
    Ok(RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())?)
}

/// Remote candidates that arrived before the connection had a remote description (trickle
/// can overtake the offer or answer); added once it has one.
struct Conn {
    target: Target,
    pc: RTCPeerConnection,
    socket: MediaSocket,
    local: SocketAddr,
    remote_set: bool,
    pending: Vec<RTCIceCandidateInit>,
    /// Our candidate, trickled once the first local description names its m-section.
    untrickled: Option<RTCIceCandidateInit>,
    connected: bool,
    failed: bool,
    /// Something reached the connection since it was last drained.
    dirty: bool,
    /// Its next timer, as of the last drain.
    deadline: Option<Instant>,
    /// A media reactor watches the socket (the call is answered): it is read when reported
    /// readable, one datagram a time (the watch is level-triggered), never to find it empty.
    watched: bool,
    readable: bool,
}

impl Conn {
    fn new(target: Target, ip: IpAddr) -> Result<Conn, PeerError> {
        let pc = peer_connection()?;
        let socket = MediaSocket::bind(ip)?;
        let local = socket.local_addr()?;
        Ok(Conn {
            target,
            pc,
            socket,
            local,
            remote_set: false,
            pending: Vec::new(),
            untrickled: None,
            connected: false,
            failed: false,
            dirty: true,
            deadline: None,
            watched: false,
            readable: false,
        })
    }

    /// Our one host candidate: the socket itself. A LiveKit server is ICE-lite and learns a
    /// NATed address from our checks (a peer-reflexive candidate), so no STUN gathering.
    fn host_candidate(&mut self) -> Result<RTCIceCandidateInit, PeerError> {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.local.ip().to_string(),
                port: self.local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        let init = RTCIceCandidate::from(&candidate).to_json()?;
        self.pc.add_local_candidate(init.clone())?;
        Ok(init)
    }

    /// The local description just set; the first one also releases our candidate, tagged
    /// with the m-section it belongs to (bundled: the first).
    fn local_sdp(&mut self, events: &mut VecDeque<PeerEvent>) -> Result<String, PeerError> {
        let sdp = self
            .pc
            .local_description()
            .ok_or(PeerError::NoLocalDescription)?
            .sdp;
        if let Some(mut init) = self.untrickled.take() {
            init.sdp_mid = sdp
                .lines()
                .find_map(|l| l.trim().strip_prefix("a=mid:"))
                .map(str::to_owned);
            events.push_back(PeerEvent::Candidate {
                target: self.target,
                init: serde_json::to_string(&init)?,
            });
        }
        Ok(sdp)
    }

    fn remote_set(&mut self) {
        self.remote_set = true;
        for c in std::mem::take(&mut self.pending) {
            if let Err(e) = self.pc.add_remote_candidate(c) {
                tracing::debug!(error = %e, "queued ICE candidate refused");
            }
        }
    }

    /// After an operation on the connection: send what it produced, and look at its events
    /// and timers at the next poll.
    fn touched(&mut self) {
        self.flush();
        self.dirty = true;
    }

    /// Whether to read the socket now: a watched one when reported readable; one registered
    /// with the runtime always (finding it empty costs no syscall, and registers the waker).
    fn read_due(&mut self) -> bool {
        if self.watched {
            return std::mem::take(&mut self.readable);
        }
        true
    }

    /// Sends what the connection has to send. A full socket buffer drops the datagram, as the
    /// network would; WebRTC recovers from loss.
    fn flush(&mut self) {
        while let Some(out) = self.pc.poll_write() {
            match self.socket.send_to(&out.message, out.transport.peer_addr) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => tracing::debug!(target = ?self.target, error = %e, "datagram not sent"),
            }
        }
    }

    /// Feeds the connection what its socket holds; true when something was read.
    fn read_socket(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> bool {
        let target = self.target;
        let mut read = false;
        let max = if self.watched { 1 } else { MAX_READS };
        for _ in 0..max {
            match self.socket.poll_recv(cx, buf) {
                Poll::Ready(Ok((n, peer_addr))) => {
                    read = true;
                    let msg = TaggedBytesMut {
                        now: Instant::now(),
                        transport: TransportContext {
                            local_addr: self.local,
                            peer_addr,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: BytesMut::from(&buf[..n]),
                    };
                    if let Err(e) = self.pc.handle_read(msg) {
                        tracing::debug!(?target, error = %e, "datagram refused");
                    }
                }
                // ICMP errors from a peer that went away surface here; ICE notices the loss.
                Poll::Ready(Err(e)) => {
                    tracing::debug!(?target, error = %e, "socket read");
                }
                Poll::Pending => break,
            }
        }
        read
    }

    /// Sends what the connection has to send and turns what it read into audio and events.
    fn drain(&mut self, room: &mut Room, audio: &mut dyn FnMut(u64, &[u8])) {
        let target = self.target;
        let Room {
            tracks,
            next_key,
            events,
        } = room;
        self.flush();
        while let Some(ev) = self.pc.poll_event() {
            match ev {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    tracing::debug!(?target, %state, "peer connection state");
                    self.connected = state == RTCPeerConnectionState::Connected;
                    if state == RTCPeerConnectionState::Failed && !self.failed {
                        self.failed = true;
                        events.push_back(PeerEvent::Failed { target });
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let key = *next_key;
                    *next_key += 1;
                    tracing::info!(key, id = %init.track_id, "room audio track subscribed");
                    tracks.push((init.track_id, key));
                    events.push_back(PeerEvent::TrackStarted { key });
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(id)) => {
                    if let Some(i) = tracks.iter().position(|(t, _)| *t == id) {
                        let (_, key) = tracks.swap_remove(i);
                        events.push_back(PeerEvent::TrackEnded { key });
                    }
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(id, packet) => {
                    if packet.payload.is_empty() {
                        continue;
                    }
                    if let Some((_, key)) = tracks.iter().find(|(t, _)| *t == id) {
                        audio(*key, &packet.payload);
                    }
                }
                RTCMessage::DataChannelMessage(_, msg) => {
                    events.push_back(PeerEvent::Data(msg.data));
                }
                _ => {}
            }
        }
        // Reading may have produced answers (STUN, RTCP, SCTP acknowledgements).
        self.flush();
        self.deadline = self.pc.poll_timeout();
        self.dirty = false;
    }
}

/// What both connections report into.
#[derive(Default)]
struct Room {
    /// The room's tracks by their msid track id, with the key the mix knows them by.
    tracks: Vec<(String, u64)>,
    next_key: u64,
    events: VecDeque<PeerEvent>,
}

pub struct Peers {
    publisher: Conn,
    subscriber: Conn,
    sender: RTCRtpSenderId,
    reliable: RTCDataChannelId,
    ssrc: u32,
    seq: u16,
    sending: bool,
    timestamp: u32,
    room: Room,
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    /// The connections whose sockets a media reactor watches, in the order it was given them.
    /// While there are any, the reactor also polls at our timers ([`Peers::poll_timeout`]).
    watch_order: Vec<Target>,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl Peers {
    /// Both connections with their sockets on `ip` (the address the server is reached from),
    /// our Opus track and our data channels. Each connection's candidate is reported as an
    /// event once its first local description is set.
    pub fn new(ip: IpAddr) -> Result<Peers, PeerError> {
        let mut publisher = Conn::new(Target::Publisher, ip)?;
        let mut subscriber = Conn::new(Target::Subscriber, ip)?;
        let ssrc = rand::random::<u32>();
        let track = MediaStreamTrack::new(
            STREAM_ID.to_owned(),
            TRACK_ID.to_owned(),
            TRACK_ID.to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: opus_codec(),
                ..Default::default()
            }],
        );
        let sender = publisher.pc.add_track(track)?;
        // The server reads our data from the publisher connection's channels, named as its
        // SDKs name them: `_reliable` ordered, `_lossy` unordered without retransmission.
        let reliable = publisher
            .pc
            .create_data_channel(
                "_reliable",
                Some(RTCDataChannelInit {
                    ordered: true,
                    ..Default::default()
                }),
            )?
            .id();
        publisher.pc.create_data_channel(
            "_lossy",
            Some(RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            }),
        )?;
        for conn in [&mut publisher, &mut subscriber] {
            conn.untrickled = Some(conn.host_candidate()?);
        }
        Ok(Peers {
            publisher,
            subscriber,
            sender,
            reliable,
            ssrc,
            seq: rand::random(),
            sending: false,
            timestamp: rand::random(),
            room: Room {
                next_key: 1,
                ..Default::default()
            },
            timer: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            timer_at: None,
            watch_order: Vec::new(),
            buf: Box::new([0; MAX_DATAGRAM]),
        })
    }

    fn conn(&mut self, target: Target) -> &mut Conn {
        match target {
            Target::Publisher => &mut self.publisher,
            Target::Subscriber => &mut self.subscriber,
        }
    }

    /// Applies the server's offer to the subscriber connection; returns our answer.
    pub fn answer(&mut self, sdp: String) -> Result<String, PeerError> {
        let conn = &mut self.subscriber;
        conn.pc
            .set_remote_description(Instant::now(), RTCSessionDescription::offer(sdp)?)?;
        let answer = conn.pc.create_answer(None)?;
        conn.pc.set_local_description(Instant::now(), answer)?;
        conn.remote_set();
        conn.touched();
        conn.local_sdp(&mut self.room.events)
    }

    /// Our offer on the publisher connection.
    pub fn offer(&mut self) -> Result<String, PeerError> {
        let conn = &mut self.publisher;
        let offer = conn.pc.create_offer(None)?;
        conn.pc.set_local_description(Instant::now(), offer)?;
        conn.touched();
        conn.local_sdp(&mut self.room.events)
    }

    pub fn set_answer(&mut self, sdp: String) -> Result<(), PeerError> {
        let conn = &mut self.publisher;
        conn.pc
            .set_remote_description(Instant::now(), RTCSessionDescription::answer(sdp)?)?;
        conn.remote_set();
        conn.touched();
        Ok(())
    }

    pub fn add_candidate(&mut self, target: Target, init: &str) -> Result<(), PeerError> {
        let candidate: RTCIceCandidateInit = serde_json::from_str(init)?;
        let conn = self.conn(target);
        if !conn.remote_set {
            conn.pending.push(candidate);
            return Ok(());
        }
        conn.pc.add_remote_candidate(candidate)?;
        conn.touched();
        Ok(())
    }

    /// One 20 ms Opus packet of the caller's audio, sent before this returns. Before the
    /// publisher is connected it is dropped (there is nobody to hear it yet).
    pub fn write_audio(&mut self, payload: &[u8]) -> Result<(), PeerError> {
        let conn = &mut self.publisher;
        if !conn.connected {
            return Ok(());
        }
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: OPUS_PT,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        if let Some(mut sender) = conn.pc.rtp_sender(self.sender) {
            sender.write_rtp(Instant::now(), packet)?;
        }
        if std::mem::replace(&mut self.sending, true) {
            conn.flush();
        } else {
            // The first packet starts the sender report timer.
            conn.touched();
        }
        Ok(())
    }

    /// Sends a data packet on the reliable channel; an error while it is not open yet.
    pub fn send_reliable(&mut self, data: &[u8]) -> Result<(), PeerError> {
        let conn = &mut self.publisher;
        if let Some(mut dc) = conn.pc.data_channel(self.reliable) {
            dc.send(Instant::now(), BytesMut::from(data))?;
        } else {
            return Err(rtc::shared::error::Error::ErrClosedPipe.into());
        }
        conn.touched();
        Ok(())
    }

    /// The call is answered and its media goes to a reactor: the sockets leave the runtime,
    /// for the reactor to watch ([`Peers::watch_fds`]).
    pub fn quiet(&mut self) {
        for conn in [&mut self.publisher, &mut self.subscriber] {
            if let Err(e) = conn.socket.make_polled() {
                tracing::warn!(target = ?conn.target, error = %e, "media socket lost");
            }
        }
    }

    /// The sockets, for a media reactor to watch: from now on each is read when
    /// [`Peers::on_readable`] says so (a socket lost in [`Peers::quiet`] is left out).
    pub fn watch_fds(&mut self) -> Vec<RawFd> {
        self.watch_order.clear();
        let mut fds = Vec::new();
        for conn in [&mut self.publisher, &mut self.subscriber] {
            if let Some(fd) = conn.socket.polled_fd() {
                conn.watched = true;
                fds.push(fd);
                self.watch_order.push(conn.target);
            }
        }
        fds
    }

    /// No reactor watches the sockets any more (the call is over): they are tried on every
    /// poll, as before the answer.
    pub fn unwatched(&mut self) {
        self.watch_order.clear();
        for conn in [&mut self.publisher, &mut self.subscriber] {
            conn.watched = false;
        }
    }

    /// The socket at `index` of [`Peers::watch_fds`] is readable.
    pub fn on_readable(&mut self, index: usize) {
        if let Some(&target) = self.watch_order.get(index) {
            self.conn(target).readable = true;
        }
    }

    /// Closes both connections (DTLS close alerts go out now).
    pub fn close(&mut self) {
        for conn in [&mut self.publisher, &mut self.subscriber] {
            if let Err(e) = conn.pc.close() {
                tracing::debug!(error = %e, "closing a peer connection");
            }
            conn.touched();
        }
    }

    /// When the next WebRTC timer of either connection fires, as of the last poll.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.publisher
            .deadline
            .into_iter()
            .chain(self.subscriber.deadline)
            .min()
    }

    /// Drives both connections: reads their sockets, runs their timers, sends what they
    /// produce. The room's Opus payloads go to `audio` with their track's key; the rest comes
    /// back as events. Pending when there is nothing more to do; the waker is then registered
    /// with both sockets and, unless a reactor watches them (and so polls by
    /// [`Peers::poll_timeout`]), the next timer.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        audio: &mut dyn FnMut(u64, &[u8]),
    ) -> Poll<PeerEvent> {
        // Bounded: each pass either consumes input or returns; a timer that keeps firing at
        // once cannot spin here forever.
        let mut settled = false;
        for _ in 0..4 {
            if let Some(ev) = self.room.events.pop_front() {
                return Poll::Ready(ev);
            }
            let now = Instant::now();
            let Peers {
                publisher,
                subscriber,
                room,
                buf,
                ..
            } = self;
            for conn in [publisher, subscriber] {
                if conn.read_due() && conn.read_socket(cx, &mut buf[..]) {
                    conn.dirty = true;
                }
                // Walking a connection's handler chain is most of its cost: only when
                // something reached it.
                if conn.dirty {
                    conn.drain(room, audio);
                }
            }
            if let Some(ev) = self.room.events.pop_front() {
                return Poll::Ready(ev);
            }
            let mut fired = false;
            for conn in [&mut self.publisher, &mut self.subscriber] {
                if conn.deadline.is_some_and(|t| t <= now) {
                    if let Err(e) = conn.pc.handle_timeout(now) {
                        tracing::debug!(target = ?conn.target, error = %e, "webrtc timer");
                    }
                    conn.dirty = true;
                    fired = true;
                }
            }
            if fired {
                continue;
            }
            let Some(at) = self.poll_timeout() else {
                settled = true;
                break;
            };
            // On a media reactor the call polls at `poll_timeout` itself: a tokio timer would
            // wake it across threads.
            if !self.watch_order.is_empty() {
                settled = true;
                break;
            }
            if self.timer_at != Some(at) {
                self.timer_at = Some(at);
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(at));
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                settled = true;
                break;
            }
            self.timer_at = None;
        }
        if !settled {
            // Out of passes with timers still firing (a loaded machine runs late): what the
            // last timer produced is neither sent nor re-armed, and only a datagram would
            // wake us. A handshake waiting on our own retransmission would stall for good, so
            // ask to be polled again.
            cx.waker().wake_by_ref();
        }
        match self.room.events.pop_front() {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }
}
