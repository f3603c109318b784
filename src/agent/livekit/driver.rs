//! One call's LiveKit session: the task that owns the `/rtc` WebSocket, the peer connections
//! and the codecs. It feeds the sans-IO [`Signal`] core and carries out what it asks.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::timer::sleep_until_opt;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use std::net::IpAddr;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::api::RoomApi;
use super::media::{Downlink, Uplink};
use super::peer::{self, PeerEvent, Peers};
use super::signal::{Output, PeerAction, SessionEvent, Signal};
use super::{token, DriverEnds};
use crate::agent::{AgentError, AgentEvent, CallInfo, CallerEvent};
use crate::codec::opus::EncoderSettings;
use crate::config::LivekitSpec;
use crate::media::{dtmf, pacer};

/// The WebSocket handshake (TCP, TLS, upgrade) must finish in this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Clean-up at the end (leave, close, `DeleteRoom`) is bounded so a dead server cannot keep a
/// finished call's task alive.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The client protocol version we speak (subscriber-primary, `track_published` before offer).
const PROTOCOL: u32 = 16;

pub(crate) struct Driver {
    spec: Arc<LivekitSpec>,
    call: CallInfo,
    room: String,
    ends: DriverEnds,
    api: RoomApi,
    created: bool,
    ready: Option<oneshot::Sender<Result<(), AgentError>>>,
}

impl Driver {
    pub(crate) fn new(
        spec: Arc<LivekitSpec>,
        call: CallInfo,
        room: String,
        ends: DriverEnds,
    ) -> Driver {
        let api = RoomApi::new(&spec.url, &spec.api_key, &spec.api_secret);
        Driver {
            spec,
            call,
            room,
            ends,
            api,
            created: false,
            ready: None,
        }
    }

    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<(), AgentError>>) {
        self.ready = Some(ready);
        if let Err(reason) = self.session().await {
            tracing::warn!(room = %self.room, %reason, "LiveKit session failed");
            self.hang_up(reason, true);
        }
        if self.created {
            match tokio::time::timeout(CLOSE_TIMEOUT, self.api.delete_room(&self.room)).await {
                Ok(Ok(())) => tracing::info!(room = %self.room, "room deleted"),
                Ok(Err(e)) => tracing::warn!(room = %self.room, error = %e, "DeleteRoom failed"),
                Err(_) => tracing::warn!(room = %self.room, "DeleteRoom timed out"),
            }
        }
    }

    /// The session ended for `reason`: before the answer the call is rejected (a server that
    /// cannot be reached is `unreachable`, 503), after it the call hangs up.
    fn hang_up(&mut self, reason: String, unreachable: bool) {
        match self.ready.take() {
            Some(ready) => {
                let e = if unreachable {
                    AgentError::Unreachable(reason)
                } else {
                    AgentError::Refused(reason)
                };
                let _ = ready.send(Err(e));
            }
            None => {
                let _ = self.ends.agent_events.send(AgentEvent::Hangup { reason });
            }
        }
    }

    async fn session(&mut self) -> Result<(), String> {
        let (_, created) = self
            .api
            .create_room(&self.room, self.spec.agent_name.as_deref(), epoch_ms())
            .await
            .map_err(|e| format!("livekit: CreateRoom failed: {e}"))?;
        self.created = created;
        if !created {
            tracing::warn!(room = %self.room, "room already existed; joining without owning it");
        }
        let jwt = token::participant_token(
            &self.spec.api_key,
            &self.spec.api_secret,
            &self.room,
            self.spec.agent_name.as_deref(),
            &self.call,
        )
        .map_err(|e| format!("livekit: cannot sign the participant token: {e}"))?;
        let url = format!(
            "{}/rtc?access_token={jwt}&protocol={PROTOCOL}&sdk=rust&version={}\
             &auto_subscribe=1&adaptive_stream=0",
            self.spec.url.trim_end_matches('/'),
            env!("CARGO_PKG_VERSION"),
        );
        // Signalling messages are small (an SDP is a few KiB): the default 128 KiB buffers
        // cost memory per call, and the read buffer was zeroed on every poll (measured: 10 %
        // of the gateway's CPU with 20 calls).
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true);
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| "livekit: /rtc connect timed out".to_string())?
            .map_err(|e| format!("livekit: /rtc connect failed: {e}"))?;
        // Media leaves from the interface the signalling connection uses.
        let local_ip = signalling_local_ip(ws.get_ref())
            .map_err(|e| format!("livekit: no local address for media: {e}"))?;
        let (mut ws_tx, mut ws_rx) = ws.split();

        let mut signal = Signal::new(now(), epoch_ms());
        let mut peers: Option<Peers> = None;
        let mut uplink = Uplink::new(EncoderSettings::default()).map_err(|e| e.to_string())?;
        let mut downlink = Downlink::new();
        let mut tick = tokio::time::interval(pacer::FRAME);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut uplink_open = true;

        loop {
            let deadline = signal.poll_timeout().map(Instant::from_std);
            tokio::select! {
                msg = ws_rx.next() => match msg {
                    Some(Ok(Message::Binary(b))) => match proto::SignalResponse::decode(b) {
                        Ok(resp) => {
                            if let (None, Some(proto::signal_response::Message::Join(j))) =
                                (&peers, &resp.message)
                            {
                                if !j.ice_servers.is_empty() {
                                    tracing::debug!(servers = j.ice_servers.len(),
                                        "ICE servers offered; host candidates only are used");
                                }
                                let p = Peers::new(local_ip)
                                    .map_err(|e| format!("livekit: peer connection: {e}"))?;
                                peers = Some(p);
                                tracing::info!(room = %self.room, "joined the room");
                            }
                            signal.handle_response(now(), resp);
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable signal message ignored"),
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        signal.lost("livekit: signalling connection lost");
                    }
                    Some(Ok(_)) => {}
                },
                ev = poll_peers(&mut peers, &mut downlink) => {
                    self.on_peer_event(ev, &mut signal, &mut downlink);
                }
                frame = self.ends.uplink.recv(), if uplink_open => match frame {
                    Some(f) => {
                        if let (Some(p), true) = (&mut peers, signal.is_ready()) {
                            match uplink.push(&f) {
                                Ok(Some(packet)) => {
                                    if let Err(e) = p.write_audio(packet) {
                                        tracing::debug!(error = %e, "Opus frame not sent");
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => tracing::warn!(error = %e, "caller audio not encoded"),
                            }
                        }
                    }
                    // The session was dropped: the call is over.
                    None => {
                        uplink_open = false;
                        signal.hangup();
                    }
                },
                ev = self.ends.caller_events.recv() => match ev {
                    Some(CallerEvent::Dtmf(d)) => {
                        if let Some(p) = &mut peers {
                            send_dtmf(p, d);
                        }
                    }
                    Some(CallerEvent::Answered) => {
                        tracing::info!(room = %self.room, "call answered; sip.callStatus active");
                        signal.answered();
                    }
                    Some(CallerEvent::Hangup) | None => signal.hangup(),
                },
                _ = tick.tick() => {
                    if let Some(f) = downlink.tick() {
                        // Full means the call is not taking frames (not answered yet, or
                        // stalled); the session keeps its own bounded queue of the newest.
                        let _ = self.ends.playout.try_send(f);
                    }
                }
                _ = sleep_until_opt(deadline) => signal.handle_timeout(now()),
            }

            while let Some(out) = signal.poll_output() {
                match out {
                    Output::Send(req) => {
                        let bytes = Bytes::from(req.encode_to_vec());
                        if ws_tx.send(Message::Binary(bytes)).await.is_err() {
                            signal.lost("livekit: signalling connection lost");
                        }
                    }
                    Output::Peer(action) => {
                        if let Some(p) = peers.as_mut() {
                            if let Err(e) = run_action(p, action, &mut signal) {
                                signal.lost(&format!("livekit: {e}"));
                            }
                        }
                    }
                    Output::Event(ev) => self.on_session_event(ev, &signal),
                }
            }
            if signal.is_closed() {
                break;
            }
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws_tx.send(Message::Close(None))).await;
        if let Some(p) = &mut peers {
            p.close();
        }
        Ok(())
    }

    fn on_session_event(&mut self, ev: SessionEvent, signal: &Signal) {
        match ev {
            SessionEvent::Joined | SessionEvent::ParticipantsChanged => {
                let _ = self.ends.agent_events.send(AgentEvent::Detail {
                    key: "livekit_room",
                    value: signal.room_detail(),
                });
            }
            SessionEvent::Ready => {
                tracing::info!(room = %self.room, "agent audio subscribed; answering");
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            SessionEvent::Hangup { reason } => {
                tracing::info!(room = %self.room, %reason, "room ended the session");
                self.hang_up(reason, false);
            }
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent, signal: &mut Signal, downlink: &mut Downlink) {
        match ev {
            PeerEvent::Candidate { target, init } => signal.local_candidate(target, init),
            PeerEvent::TrackStarted { .. } => signal.audio_subscribed(),
            PeerEvent::TrackEnded { key } => downlink.remove_track(key),
            PeerEvent::Data(bytes) => {
                if let Some(d) = dtmf_digit(&bytes) {
                    tracing::info!(digit = %d, "DTMF from the room");
                    let _ = self.ends.agent_events.send(AgentEvent::Dtmf(d));
                }
            }
            PeerEvent::Failed { target } => {
                signal.lost(&format!(
                    "livekit: media connection failed ({target:?} peer connection)"
                ));
            }
        }
    }
}

fn run_action(
    p: &mut Peers,
    action: PeerAction,
    signal: &mut Signal,
) -> Result<(), peer::PeerError> {
    match action {
        PeerAction::AnswerOffer { sdp, id } => {
            let answer = p.answer(sdp)?;
            signal.answer_created(answer, id);
        }
        PeerAction::CreatePublisherOffer => {
            let offer = p.offer()?;
            signal.offer_created(offer);
        }
        PeerAction::SetPublisherAnswer { sdp } => p.set_answer(sdp)?,
        PeerAction::AddCandidate {
            target,
            candidate_init,
        } => {
            // One bad candidate is not the end of the connection.
            if let Err(e) = p.add_candidate(target, &candidate_init) {
                tracing::debug!(error = %e, "remote ICE candidate refused");
            }
        }
        PeerAction::Close => p.close(),
    }
    Ok(())
}

/// The caller's key press to the room, as LiveKit's SIP service sends it: a `sip_dtmf` data
/// packet on the reliable channel.
fn send_dtmf(p: &mut Peers, digit: char) {
    let Some(code) = dtmf::digit_to_event(digit) else {
        return;
    };
    let packet = dtmf_packet(code);
    match p.send_reliable(&packet.encode_to_vec()) {
        Ok(()) => tracing::info!(digit = %digit, "DTMF sent to the room"),
        Err(e) => tracing::warn!(digit = %digit, error = %e, "DTMF not sent to the room"),
    }
}

#[allow(deprecated)] // `kind` is what servers before the per-channel reliability read.
fn dtmf_packet(code: u8) -> proto::DataPacket {
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
            code: u32::from(code),
            // The digit is the code's canonical key (upper-case A-D), from the one table.
            digit: dtmf::event_to_digit(code)
                .map(String::from)
                .unwrap_or_default(),
        })),
        ..Default::default()
    }
}

/// The digit of a `sip_dtmf` data packet from the room; `None` for any other packet.
fn dtmf_digit(bytes: &[u8]) -> Option<char> {
    let packet = proto::DataPacket::decode(bytes).ok()?;
    let Some(proto::data_packet::Value::SipDtmf(d)) = packet.value else {
        return None;
    };
    // The digit string wins (it is what agents set); the code is the fallback. Both go through
    // the RFC 4733 table, which also makes `a`-`d` the canonical `A`-`D`.
    d.digit
        .chars()
        .next()
        .and_then(dtmf::digit_to_event)
        .or_else(|| u8::try_from(d.code).ok())
        .and_then(dtmf::event_to_digit)
}

/// The local address of the signalling connection: the interface that reaches the server,
/// so the one to offer as our media candidate (127.0.0.1 for a server on this host).
fn signalling_local_ip(stream: &MaybeTlsStream<TcpStream>) -> std::io::Result<IpAddr> {
    let tcp = match stream {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref().0,
        _ => return Err(std::io::Error::other("unknown stream kind")),
    };
    Ok(tcp.local_addr()?.ip())
}

/// The peers' next event; pending forever before they exist (the join response creates them).
async fn poll_peers(peers: &mut Option<Peers>, downlink: &mut Downlink) -> PeerEvent {
    let Some(p) = peers.as_mut() else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        p.poll(cx, &mut |key, payload| {
            if let Err(e) = downlink.on_packet(key, payload) {
                tracing::warn!(error = %e, "room audio not decoded");
            }
        })
    })
    .await
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_packets_round_trip_and_other_packets_are_not_digits() {
        for (code, digit) in [(5u8, '5'), (10, '*'), (11, '#'), (15, 'D')] {
            let bytes = dtmf_packet(code).encode_to_vec();
            assert_eq!(dtmf_digit(&bytes), Some(digit));
        }
        // Code only, lower-case digit, unknown digit with a valid code.
        let p = |code: u32, digit: &str| {
            proto::DataPacket {
                value: Some(proto::data_packet::Value::SipDtmf(proto::SipDtmf {
                    code,
                    digit: digit.into(),
                })),
                ..Default::default()
            }
            .encode_to_vec()
        };
        assert_eq!(dtmf_digit(&p(11, "")), Some('#'));
        assert_eq!(dtmf_digit(&p(0, "a")), Some('A'));
        assert_eq!(dtmf_digit(&p(3, "x")), Some('3'));
        assert_eq!(dtmf_digit(&p(99, "")), None);
        let user = proto::DataPacket {
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: b"hi".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(dtmf_digit(&user.encode_to_vec()), None);
        assert_eq!(dtmf_digit(&[0xFF, 0xFF, 0xFF]), None);
    }
}
