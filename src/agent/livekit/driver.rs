//! One call's LiveKit signalling: the task that owns the `/rtc` WebSocket and the Twirp calls.
//! It feeds the sans-IO [`Signal`] core and carries out what it asks; what concerns media goes
//! to the call's side ([`super::session`]), which owns the peer connections.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::api::RoomApi;
use super::session::{Control, Report};
use super::signal::{Output, SessionEvent, Signal};
use super::token;
use crate::agent::{AgentError, AgentEvent, CallInfo, CallerEvent};
use crate::config::LivekitSpec;
use crate::timer::{now, sleep_until_opt};

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
    media: UnboundedSender<Control>,
    reports: UnboundedReceiver<Report>,
    api: RoomApi,
    created: bool,
    /// The call has not been told yet whether it can be answered.
    answering: bool,
}

impl Driver {
    pub(crate) fn new(
        spec: Arc<LivekitSpec>,
        call: CallInfo,
        room: String,
        media: UnboundedSender<Control>,
        reports: UnboundedReceiver<Report>,
    ) -> Driver {
        let api = RoomApi::new(&spec.url, &spec.api_key, &spec.api_secret);
        Driver {
            spec,
            call,
            room,
            media,
            reports,
            api,
            created: false,
            answering: true,
        }
    }

    pub(crate) async fn run(mut self) {
        if let Err(reason) = self.session().await {
            tracing::warn!(room = %self.room, %reason, "LiveKit session failed");
            self.hang_up(reason, true, true);
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
    /// cannot be reached is `unreachable`, 503), after it the call hangs up, with a failure
    /// cause when the room `failed` rather than ended.
    fn hang_up(&mut self, reason: String, unreachable: bool, failed: bool) {
        let control = if std::mem::take(&mut self.answering) {
            Control::Failed(if unreachable {
                AgentError::Unreachable(reason)
            } else {
                AgentError::Refused(reason)
            })
        } else if failed {
            Control::Agent(AgentEvent::Failed { reason })
        } else {
            Control::Agent(AgentEvent::Hangup { reason })
        };
        self.tell(control);
    }

    fn tell(&self, control: Control) {
        // The call's side gone means the call is over; `reports` closing says so.
        let _ = self.media.send(control);
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
        let mut joined = false;
        loop {
            let deadline = signal.poll_timeout().map(Instant::from_std);
            tokio::select! {
                msg = ws_rx.next() => match msg {
                    Some(Ok(Message::Binary(b))) => match proto::SignalResponse::decode(b) {
                        Ok(resp) => {
                            if let (false, Some(proto::signal_response::Message::Join(j))) =
                                (joined, &resp.message)
                            {
                                joined = true;
                                if !j.ice_servers.is_empty() {
                                    tracing::debug!(servers = j.ice_servers.len(),
                                        "ICE servers offered; host candidates only are used");
                                }
                                self.tell(Control::Join { local_ip });
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
                report = self.reports.recv() => match report {
                    Some(Report::Candidate { target, init }) => signal.local_candidate(target, init),
                    Some(Report::Offer(sdp)) => signal.offer_created(sdp),
                    Some(Report::Answer { sdp, id }) => signal.answer_created(sdp, id),
                    Some(Report::AudioSubscribed) => signal.audio_subscribed(),
                    Some(Report::Lost(reason)) => signal.lost(&reason),
                    Some(Report::Caller(CallerEvent::Answered)) => {
                        tracing::info!(room = %self.room, "call answered; sip.callStatus active");
                        signal.answered();
                    }
                    // The call's side was dropped: the call is over.
                    Some(Report::Caller(_)) | None => signal.hangup(),
                },
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
                    Output::Peer(action) => self.tell(Control::Peer(action)),
                    Output::Event(ev) => self.on_session_event(ev, &signal),
                }
            }
            if signal.is_closed() {
                break;
            }
        }
        // Close, then wait for the server's close (RFC 6455 7.1.1) rather than dropping the
        // connection: the `DeleteRoom` that follows must not overtake our leave (a server that
        // reads it first takes the room down under a participant it still counts), and a
        // connection reset with its last segments unacknowledged can lose the leave on a
        // lossy link.
        let closing = async {
            if ws_tx.send(Message::Close(None)).await.is_ok() {
                while let Some(Ok(m)) = ws_rx.next().await {
                    if let Message::Close(_) = m {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        Ok(())
    }

    fn on_session_event(&mut self, ev: SessionEvent, signal: &Signal) {
        match ev {
            SessionEvent::Joined | SessionEvent::ParticipantsChanged => {
                self.tell(Control::Agent(AgentEvent::Detail {
                    key: "livekit_room",
                    value: signal.room_detail(),
                }));
            }
            SessionEvent::Ready => {
                tracing::info!(room = %self.room, "agent audio subscribed; answering");
                if std::mem::take(&mut self.answering) {
                    self.tell(Control::Ready);
                }
            }
            SessionEvent::Hangup { reason, failed } => {
                tracing::info!(room = %self.room, %reason, failed, "room ended the session");
                self.hang_up(reason, false, failed);
            }
        }
    }
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

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
