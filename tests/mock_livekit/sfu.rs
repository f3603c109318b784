//! One participant's `/rtc` session on the mock: the signalling of LiveKit's server (join,
//! subscriber offers with data channels first, `track_published` before the publisher offer,
//! trickle both ways, pongs, leave) and a webrtc-rs peer that plays the SFU: ICE-lite, it
//! records the participant's Opus track and data packets and plays the "agent": a tone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use livekit_api::access_token::Claims;
use livekit_protocol as proto;
use prost::Message as _;
use proto::{signal_request, signal_response, SignalRequest, SignalResponse};
use sipbridge::codec::opus::{EncoderSettings, Mode, OpusDecoder, OpusEncoder, FRAME, MAX_PACKET};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::data_channel_state::RTCDataChannelState;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

use super::http::Shared;
use super::Command;

const PUBLISHER: i32 = proto::SignalTarget::Publisher as i32;
const SUBSCRIBER: i32 = proto::SignalTarget::Subscriber as i32;
/// The gateway's audio kept per session (60 s at 48 kHz).
const MAX_AUDIO: usize = 48_000 * 60;

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn response(m: signal_response::Message) -> SignalResponse {
    SignalResponse { message: Some(m) }
}

async fn peer_connection() -> Arc<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("codecs");
    let registry = register_default_interceptors(Registry::new(), &mut media).expect("registry");
    let mut settings = SettingEngine::default();
    // LiveKit's server is ICE-lite; on loopback only 127.0.0.1 reaches the gateway.
    settings.set_lite(true);
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .expect("peer connection"),
    )
}

fn participant(
    sid: &str,
    identity: &str,
    kind: proto::participant_info::Kind,
) -> proto::ParticipantInfo {
    proto::ParticipantInfo {
        sid: sid.into(),
        identity: identity.into(),
        name: identity.into(),
        kind: kind as i32,
        state: proto::participant_info::State::Active as i32,
        ..Default::default()
    }
}

struct Negotiation {
    pc: Arc<RTCPeerConnection>,
    remote_set: bool,
    queued: Vec<RTCIceCandidateInit>,
}

impl Negotiation {
    async fn add(&mut self, c: RTCIceCandidateInit) {
        if self.remote_set {
            let _ = self.pc.add_ice_candidate(c).await;
        } else {
            self.queued.push(c);
        }
    }

    async fn remote_set(&mut self) {
        self.remote_set = true;
        for c in std::mem::take(&mut self.queued) {
            let _ = self.pc.add_ice_candidate(c).await;
        }
    }
}

pub async fn run(
    shared: Arc<Shared>,
    index: usize,
    claims: Claims,
    ws: WebSocketStream<TcpStream>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) {
    let state = Arc::clone(&shared.state);
    let config = shared.config.clone();
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<SignalResponse>();
    // The writer sends what is queued (a leave last), then closes once the session drops
    // `out`: the only strong sender, so the peer connections' callbacks hold weak ones.
    let writer = tokio::spawn(async move {
        while let Some(r) = out_rx.recv().await {
            if ws_tx
                .send(Message::Binary(Bytes::from(r.encode_to_vec())))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    });

    let room = claims.video.room.clone();
    let me = proto::ParticipantInfo {
        sid: "PA_sip".into(),
        identity: claims.sub.clone(),
        name: claims.name.clone(),
        kind: proto::participant_info::Kind::Sip as i32,
        state: proto::participant_info::State::Joined as i32,
        attributes: claims.attributes.clone(),
        ..Default::default()
    };
    let _ = out.send(response(signal_response::Message::Join(
        proto::JoinResponse {
            room: Some(proto::Room {
                sid: format!("RM_{room}"),
                name: room.clone(),
                ..Default::default()
            }),
            participant: Some(me),
            other_participants: vec![],
            subscriber_primary: true,
            ping_interval: config.ping_interval_secs,
            ping_timeout: config.ping_timeout_secs,
            server_version: "mock".into(),
            ..Default::default()
        },
    )));

    let sub = peer_connection().await;
    let publ = peer_connection().await;
    for (pc, target) in [(&sub, SUBSCRIBER), (&publ, PUBLISHER)] {
        let out = out.downgrade();
        pc.on_ice_candidate(Box::new(move |c| {
            let out = out.upgrade();
            Box::pin(async move {
                let (Some(c), Some(out)) = (c, out) else {
                    return;
                };
                if let Ok(init) = c.to_json() {
                    let _ = out.send(response(signal_response::Message::Trickle(
                        proto::TrickleRequest {
                            candidate_init: serde_json::to_string(&init).unwrap_or_default(),
                            target,
                            r#final: false,
                        },
                    )));
                }
            })
        }));
    }
    record_publisher(&publ, Arc::clone(&state), index, config.record_audio);

    // The server makes the data channels on the subscriber connection and offers at once.
    let reliable = sub
        .create_data_channel(
            "_reliable",
            Some(RTCDataChannelInit {
                ordered: Some(true),
                ..Default::default()
            }),
        )
        .await
        .expect("data channel");
    let _lossy = sub
        .create_data_channel(
            "_lossy",
            Some(RTCDataChannelInit {
                ordered: Some(false),
                max_retransmits: Some(0),
                ..Default::default()
            }),
        )
        .await
        .expect("data channel");
    let mut subn = Negotiation {
        pc: Arc::clone(&sub),
        remote_set: false,
        queued: vec![],
    };
    let mut pubn = Negotiation {
        pc: Arc::clone(&publ),
        remote_set: false,
        queued: vec![],
    };
    let mut offer_id = 0u32;
    let mut awaiting_answer = false;
    let mut offer_again = false;
    offer(&sub, &out, &mut offer_id, &state, index).await;
    awaiting_answer = awaiting_answer || offer_id > 0;

    let stop = Arc::new(AtomicBool::new(false));
    let agent_at = tokio::time::Instant::now() + config.agent_delay;
    let mut agent_pending = !config.agent_silent;
    let mut drop_connection = false;

    let end: String = 'session: loop {
        tokio::select! {
            msg = ws_rx.next() => {
                let req = match msg {
                    Some(Ok(Message::Binary(b))) => match SignalRequest::decode(b) {
                        Ok(r) => r,
                        Err(_) => continue,
                    },
                    Some(Ok(Message::Close(c))) => break 'session format!("close frame {c:?}"),
                    Some(Err(e)) => break 'session format!("read error: {e}"),
                    None => break 'session "end of stream".into(),
                    Some(Ok(_)) => continue,
                };
                if !config.signal_delay.is_zero() {
                    tokio::time::sleep(config.signal_delay).await;
                }
                let Some(m) = req.message else { continue };
                match m {
                    signal_request::Message::AddTrack(a) => {
                        let published = proto::TrackPublishedResponse {
                            cid: a.cid.clone(),
                            track: Some(proto::TrackInfo {
                                sid: "TR_phone".into(),
                                r#type: proto::TrackType::Audio as i32,
                                name: a.name.clone(),
                                mime_type: "audio/opus".into(),
                                source: a.source,
                                ..Default::default()
                            }),
                        };
                        state.lock().unwrap().sessions[index].add_tracks.push(a);
                        let _ = out.send(response(signal_response::Message::TrackPublished(published)));
                    }
                    signal_request::Message::Offer(sd) => {
                        state.lock().unwrap().sessions[index].publisher_offer = Some(sd.sdp.clone());
                        let Ok(desc) = RTCSessionDescription::offer(sd.sdp) else { break 'session "bad publisher offer".into() };
                        if publ.set_remote_description(desc).await.is_err() { break 'session "publisher offer not applied".into(); }
                        pubn.remote_set().await;
                        let Ok(answer) = publ.create_answer(None).await else { break 'session "no publisher answer".into() };
                        if publ.set_local_description(answer).await.is_err() { break 'session "publisher answer not applied".into(); }
                        let sdp = publ.local_description().await.map(|d| d.sdp).unwrap_or_default();
                        let _ = out.send(response(signal_response::Message::Answer(
                            proto::SessionDescription { r#type: "answer".into(), sdp, id: sd.id, ..Default::default() },
                        )));
                    }
                    signal_request::Message::Answer(sd) => {
                        state.lock().unwrap().sessions[index].subscriber_answers.push(sd.id);
                        let Ok(desc) = RTCSessionDescription::answer(sd.sdp) else { break 'session "bad subscriber answer".into() };
                        if sub.set_remote_description(desc).await.is_err() { break 'session "subscriber answer not applied".into(); }
                        subn.remote_set().await;
                        awaiting_answer = false;
                        if offer_again {
                            offer_again = false;
                            offer(&sub, &out, &mut offer_id, &state, index).await;
                            awaiting_answer = true;
                        }
                    }
                    signal_request::Message::Trickle(t) => {
                        state.lock().unwrap().sessions[index].candidates_received += 1;
                        let Ok(c) = serde_json::from_str::<RTCIceCandidateInit>(&t.candidate_init) else { continue };
                        match t.target {
                            PUBLISHER => pubn.add(c).await,
                            SUBSCRIBER => subn.add(c).await,
                            _ => {}
                        }
                    }
                    signal_request::Message::PingReq(p) => {
                        state.lock().unwrap().sessions[index].pings += 1;
                        let _ = out.send(response(signal_response::Message::PongResp(proto::Pong {
                            last_ping_timestamp: p.timestamp,
                            timestamp: unix_ms(),
                        })));
                    }
                    signal_request::Message::Ping(_) => {
                        let _ = out.send(response(signal_response::Message::Pong(unix_ms())));
                    }
                    signal_request::Message::UpdateMetadata(u) => {
                        state.lock().unwrap().sessions[index].attribute_updates.push(u.attributes);
                    }
                    signal_request::Message::Leave(l) => {
                        state.lock().unwrap().sessions[index].left = Some(l);
                        break 'session "leave".into();
                    }
                    _ => {}
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Command::SendDtmf { code, digit }) => {
                    send_dtmf(&reliable, code, digit).await;
                }
                Some(Command::Renegotiate) => {
                    if awaiting_answer {
                        offer_again = true;
                    } else {
                        offer(&sub, &out, &mut offer_id, &state, index).await;
                        awaiting_answer = true;
                    }
                }
                Some(Command::Remove) => {
                    leave(&out, proto::DisconnectReason::ParticipantRemoved);
                    break 'session "removed".into();
                }
                Some(Command::RoomDeleted) => {
                    leave(&out, proto::DisconnectReason::RoomDeleted);
                    break 'session "room deleted".into();
                }
                Some(Command::DropConnection) => {
                    drop_connection = true;
                    break 'session "connection dropped".into();
                }
                None => break 'session "commands gone".into(),
            },
            _ = tokio::time::sleep_until(agent_at), if agent_pending => {
                agent_pending = false;
                let track = Arc::new(TrackLocalStaticSample::new(
                    RTCRtpCodecCapability {
                        mime_type: MIME_TYPE_OPUS.to_owned(),
                        clock_rate: 48_000,
                        channels: 2,
                        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                        rtcp_feedback: vec![],
                    },
                    "TR_agent".to_owned(),
                    "PA_agent|TR_agent".to_owned(),
                ));
                if sub.add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>).await.is_err() {
                    break 'session "agent track not added".into();
                }
                // Clients pair an incoming stream with its publisher through the msid
                // `<participant sid>|<track sid>` and this announcement of the track.
                let mut agent =
                    participant("PA_agent", "agent-hume", proto::participant_info::Kind::Agent);
                agent.tracks.push(proto::TrackInfo {
                    sid: "TR_agent".into(),
                    r#type: proto::TrackType::Audio as i32,
                    name: "agent-voice".into(),
                    mime_type: "audio/opus".into(),
                    source: proto::TrackSource::Microphone as i32,
                    ..Default::default()
                });
                let _ = out.send(response(signal_response::Message::Update(proto::ParticipantUpdate {
                    participants: vec![agent],
                })));
                state.lock().unwrap().sessions[index].agent_track_published = true;
                tokio::spawn(play_tone(track, config.tone_hz, Arc::clone(&stop)));
                if awaiting_answer {
                    offer_again = true;
                } else {
                    offer(&sub, &out, &mut offer_id, &state, index).await;
                    awaiting_answer = true;
                }
            }
        }
    };
    state.lock().unwrap().sessions[index].ended = Some(end);
    stop.store(true, Ordering::Relaxed);
    drop(out);
    if drop_connection {
        writer.abort();
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
    let _ = sub.close().await;
    let _ = publ.close().await;
}

fn leave(out: &mpsc::UnboundedSender<SignalResponse>, reason: proto::DisconnectReason) {
    let _ = out.send(response(signal_response::Message::Leave(
        proto::LeaveRequest {
            can_reconnect: false,
            reason: reason as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            regions: None,
        },
    )));
}

async fn offer(
    sub: &RTCPeerConnection,
    out: &mpsc::UnboundedSender<SignalResponse>,
    id: &mut u32,
    state: &Arc<std::sync::Mutex<super::State>>,
    index: usize,
) {
    let Ok(o) = sub.create_offer(None).await else {
        return;
    };
    if sub.set_local_description(o).await.is_err() {
        return;
    }
    let sdp = sub
        .local_description()
        .await
        .map(|d| d.sdp)
        .unwrap_or_default();
    *id += 1;
    state.lock().unwrap().sessions[index].offers_sent += 1;
    let _ = out.send(response(signal_response::Message::Offer(
        proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id: *id,
            mid_to_track_id: HashMap::new(),
        },
    )));
}

#[allow(deprecated)]
async fn send_dtmf(dc: &RTCDataChannel, code: u32, digit: String) {
    let packet = proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        participant_identity: "agent-hume".into(),
        value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
            code,
            digit,
        })),
        ..Default::default()
    };
    // A participant publishes over an open channel: a command given while the subscriber's
    // SCTP association is still coming up (a loaded machine) waits for it rather than being
    // dropped. Bounded, so a connection that never opens fails the test that waits for the
    // digit, not the mock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dc.ready_state() != RTCDataChannelState::Open && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = dc.send(&Bytes::from(packet.encode_to_vec())).await;
}

/// Records the participant's audio (decoded) and data packets.
fn record_publisher(
    pc: &RTCPeerConnection,
    state: Arc<std::sync::Mutex<super::State>>,
    index: usize,
    record_audio: bool,
) {
    let st = Arc::clone(&state);
    pc.on_track(Box::new(move |track, _, _| {
        let st = Arc::clone(&st);
        Box::pin(async move {
            tokio::spawn(async move {
                let mut dec = OpusDecoder::new(48_000).expect("decoder");
                let mut pcm = vec![0i16; FRAME * 6];
                while let Ok((p, _)) = track.read_rtp().await {
                    let Ok(n) = dec.decode(&p.payload, &mut pcm) else {
                        continue;
                    };
                    let mut s = st.lock().unwrap();
                    let sess = &mut s.sessions[index];
                    sess.audio_packets += 1;
                    if record_audio && sess.audio.len() < MAX_AUDIO {
                        sess.audio.extend_from_slice(&pcm[..n]);
                    }
                }
            });
        })
    }));
    pc.on_data_channel(Box::new(move |dc| {
        let st = Arc::clone(&state);
        Box::pin(async move {
            dc.on_message(Box::new(move |msg| {
                let st = Arc::clone(&st);
                Box::pin(async move {
                    let Ok(p) = proto::DataPacket::decode(msg.data) else {
                        return;
                    };
                    let mut s = st.lock().unwrap();
                    match p.value {
                        Some(proto::data_packet::Value::SipDtmf(d)) => {
                            s.sessions[index].dtmf.push((d.code, d.digit));
                        }
                        _ => s.sessions[index].other_data += 1,
                    }
                })
            }));
        })
    }));
}

/// One second of a tone as Opus packets, encoded as a LiveKit agent's libwebrtc does (48 kHz,
/// VoIP mode, full band). Made once per pitch and shared by every room: the mock plays into
/// many rooms at once in capacity runs, and encoding for each would saturate its core. A
/// second holds whole periods of 440 and 1000 Hz, so the loop joins without a jump.
fn tone_packets(hz: f64) -> Arc<Vec<Bytes>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<u64, Arc<Vec<Bytes>>>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    let packets = cache.entry(hz.to_bits()).or_insert_with(|| {
        let settings = EncoderSettings {
            mode: Mode::Silk,
            complexity: 9,
            max_bandwidth: audiopus::Bandwidth::Fullband,
        };
        let mut enc = OpusEncoder::new(48_000, settings).expect("encoder");
        let mut packet = [0u8; MAX_PACKET];
        let packets = (0..50)
            .map(|k| {
                let pcm: Vec<i16> = (0..FRAME)
                    .map(|i| {
                        let t = (k * FRAME + i) as f64 / 48_000.0;
                        (6000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                    })
                    .collect();
                let n = enc.encode(&pcm, &mut packet).expect("encode");
                Bytes::copy_from_slice(&packet[..n])
            })
            .collect();
        Arc::new(packets)
    });
    Arc::clone(packets)
}

/// The agent: a tone as Opus, one packet every 20 ms, until stopped.
async fn play_tone(track: Arc<TrackLocalStaticSample>, hz: f64, stop: Arc<AtomicBool>) {
    let packets = tone_packets(hz);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let sample = Sample {
            data: packets[k % packets.len()].clone(),
            duration: Duration::from_millis(20),
            ..Default::default()
        };
        k += 1;
        if track.write_sample(&sample).await.is_err() {
            return;
        }
    }
}
