//! The task that runs one call: it owns the call's SIP core, its RTP socket and media session,
//! and its agent session, and drives them from one `select!` loop. Nothing else touches them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::agent::{AgentEvent, AgentOutput, AgentSession, CallInfo, CallerEvent};
use crate::call::core::{CallCore, CallEvent, Destination, EndReason, LocalContact};
use crate::call::dispatch::NewCall;
use crate::call::Shared;
use crate::media::ports::PortLease;
use crate::media::session::{MediaParams, MediaSession};
use crate::routing::Admitted;
use crate::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::sip::message::{HeaderName, Message};
use crate::sip::uri::Uri;

/// RTP datagrams read in one pass of a call's loop before it looks at SIP and timers again.
const MAX_READS_PER_PASS: usize = 16;

pub type SipInbox = mpsc::Receiver<(Message, SocketAddr)>;

/// What a call tells the gateway about itself.
#[derive(Debug)]
pub enum CallNotice {
    /// Media and agent stopped: the call no longer counts as active.
    Ended(String),
    /// The task exited.
    Finished(String),
}

pub async fn run(shared: Arc<Shared>, new: NewCall, inbox: SipInbox) {
    let call_id = new.call_id.clone();
    let sid = new
        .invite
        .headers
        .get(&HeaderName::Other("X-Twilio-CallSid".into()))
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!("call", call_id = %call_id, twilio_sid = %sid);
    let notices = shared.notices.clone();
    async move {
        tracing::info!(
            caller = %new.admitted.caller, called = %new.admitted.called,
            trunk = %new.admitted.trunk, agent = %new.admitted.agent, src = %new.source,
            "incoming call"
        );
        let mut call = Call::start(&shared, new, inbox);
        call.run(&shared, sid).await;
        let _ = notices.send(CallNotice::Finished(call_id));
    }
    .instrument(span)
    .await
}

struct Call {
    core: CallCore,
    inbox: SipInbox,
    call_id: String,
    /// Who called whom, through which trunk, for which agent (decided by routing).
    admitted: Admitted,
    local_ip: IpAddr,
    media: Option<ActiveMedia>,
    ended_notified: bool,
}

struct ActiveMedia {
    socket: UdpSocket,
    session: MediaSession,
    _lease: PortLease,
    agent: Box<dyn AgentSession>,
    /// The SDP answer's `o=` version, bumped on every re-answer (RFC 3264 8).
    sdp_version: u64,
    sdp_session: u64,
    media_ip: IpAddr,
}

impl ActiveMedia {
    /// Acts on one agent output; returns a hang-up reason when the agent ended the call.
    fn on_agent_output(
        &mut self,
        t: std::time::Instant,
        out: Option<AgentOutput>,
    ) -> Option<String> {
        match out {
            Some(AgentOutput::Audio(f)) => {
                if let Some((to, pkt)) = self.session.send_frame(t, &f) {
                    // RTP tolerates loss; a full socket buffer drops the frame, never blocks the call.
                    let _ = self.socket.try_send_to(pkt, to);
                }
                None
            }
            Some(AgentOutput::Event(AgentEvent::Hangup { reason })) => Some(reason),
            // Frames go out the moment their slot opens, so there is no queue on our side to
            // drop: the agent clears its own.
            Some(AgentOutput::Event(AgentEvent::ClearPlayout)) => None,
            Some(AgentOutput::Event(AgentEvent::Dtmf(d))) => {
                // The press goes out as RFC 4733 events in the next slots of the stream.
                if self.session.send_dtmf(d) {
                    tracing::info!(digit = %d, "DTMF to the caller");
                } else {
                    tracing::info!(digit = %d,
                        "agent DTMF dropped: no telephone-event negotiated (or not a key)");
                }
                None
            }
            Some(AgentOutput::Event(AgentEvent::Transcript { role, text, .. })) => {
                tracing::info!(?role, %text, "transcript");
                None
            }
            Some(AgentOutput::Event(AgentEvent::Detail { key, value })) => {
                tracing::info!(key, %value, "agent session detail");
                None
            }
            None => Some("agent ended".into()),
        }
    }
}

impl Call {
    fn start(shared: &Shared, new: NewCall, inbox: SipInbox) -> Call {
        let local_ip = shared.local_ip_towards(new.source);
        let via_host_port = shared.public_host_port(local_ip);
        // Config validation makes sure sip.public_addr forms a URI; the fallback is for a local
        // address that somehow does not.
        let contact = Uri::parse(&format!("sip:{via_host_port}")).unwrap_or_else(|e| {
            tracing::error!(%via_host_port, error = %e, "cannot form our Contact URI");
            Uri::host(local_ip.to_string(), shared.sip_port)
        });
        let now = Instant::now().into_std();
        let core = CallCore::new(
            now,
            shared.timers,
            new.invite,
            new.source,
            LocalContact {
                via_host_port,
                contact,
            },
        );
        Call {
            core,
            inbox,
            call_id: new.call_id,
            admitted: new.admitted,
            local_ip,
            media: None,
            ended_notified: false,
        }
    }

    async fn run(&mut self, shared: &Shared, sid: String) {
        self.flush(shared).await;
        if let Some(media) = self.setup(shared, sid).await {
            self.media = Some(media);
            self.media_loop(shared).await;
        }
        self.finish(shared).await;
    }

    /// Negotiates SDP, binds the RTP port and connects the agent, handling SIP meanwhile (a
    /// CANCEL can arrive while the agent connects). Returns the answered call's media.
    async fn setup(&mut self, shared: &Shared, sid: String) -> Option<ActiveMedia> {
        let offer = match parse_offer(&self.core.invite().body) {
            Some(Ok(offer)) => offer,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "unreadable SDP offer: 488");
                self.core.reject(now(), 488, None);
                return None;
            }
            None => {
                // A late offer would need our offer in the 200 and the answer in the ACK;
                // Twilio always offers, so this is not worth the state.
                tracing::warn!("INVITE without SDP offer: 488");
                self.core.reject(now(), 488, None);
                return None;
            }
        };
        let Some((socket, lease)) = shared.ports.bind(shared.rtp_bind_ip) else {
            tracing::error!("no free RTP port in media.rtp_ports: 503");
            self.core.reject(now(), 503, None);
            return None;
        };
        let sdp_session: u64 = rand::random::<u32>() as u64;
        let local = LocalMedia {
            ip: shared.media_ip(self.local_ip),
            port: lease.port(),
            session_id: sdp_session,
            session_version: 1,
            ptime_ms: 20,
        };
        let negotiated = match sdp::negotiate(&offer, &local) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "SDP negotiation failed: 488");
                self.core.reject(now(), 488, None);
                return None;
            }
        };
        tracing::info!(codec = negotiated.codec.name(), remote = ?negotiated.remote_rtp,
            port = lease.port(), "media negotiated");

        let Some(agent) = shared.agents.get(&self.admitted.agent).cloned() else {
            self.core.reject(now(), 500, None);
            return None;
        };
        let account_sid = self
            .core
            .invite()
            .headers
            .get(&HeaderName::Other("X-Twilio-AccountSid".into()))
            .map(str::to_string);
        let info = CallInfo {
            call_id: self.call_id.clone(),
            local_tag: self.core.local_tag().to_string(),
            caller: self.admitted.caller.clone(),
            called: self.admitted.called.clone(),
            trunk: self.admitted.trunk.clone(),
            agent: self.admitted.agent.clone(),
            twilio_call_sid: (!sid.is_empty()).then_some(sid),
            twilio_account_sid: account_sid,
        };
        let policy = agent.setup_policy();
        let mut connecting = agent.connect(&info);
        let started = Instant::now();
        let mut ring_at = Some(started + policy.ring_after);
        let give_up = started + policy.timeout;
        let session = loop {
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                result = &mut connecting => match result {
                    Ok(s) => break s,
                    Err(e) => {
                        let status = policy.error_status;
                        tracing::error!(error = %e, agent = agent.kind(), status,
                            "agent failed to start; rejecting the call");
                        self.core.reject(now(), status, None);
                        return None;
                    }
                },
                msg = self.inbox.recv() => match msg {
                    Some((m, src)) => self.core.handle_message(now(), m, src),
                    None => return None,
                },
                _ = sleep_until_opt(ring_at) => {
                    ring_at = policy.ring_every.map(|every| Instant::now() + every);
                    self.core.ring(now());
                }
                _ = tokio::time::sleep_until(give_up) => {
                    let status = policy.timeout_status;
                    tracing::error!(timeout = ?policy.timeout, agent = agent.kind(), status,
                        "agent did not connect in time; rejecting the call");
                    self.core.reject(now(), status, None);
                    return None;
                }
                _ = sleep_until_opt(deadline) => self.core.handle_timeout(now()),
            }
            self.flush(shared).await;
            if self.drain_events(shared).await {
                return None; // cancelled while connecting
            }
        };
        let params = media_params(
            &negotiated,
            shared.media_timeout,
            shared.initial_media_timeout,
        );
        self.core.answer(now(), negotiated.answer);
        self.flush(shared).await;
        let mut session = session;
        session.send_event(CallerEvent::Answered);
        Some(ActiveMedia {
            socket,
            // The send clock starts with the answer.
            session: MediaSession::new(now(), params),
            _lease: lease,
            agent: session,
            sdp_version: 1,
            sdp_session,
            media_ip: local.ip,
        })
    }

    async fn media_loop(&mut self, shared: &Shared) {
        let mut buf = [0u8; 2048];
        loop {
            let t = now();
            let Some(m) = self.media.as_mut() else { return };
            // Read what the socket holds here, not in the select below: one pass of this loop
            // per packet instead of two, and the read that finds the socket empty is what
            // re-arms its readiness. Bounded so a flood cannot starve SIP.
            for _ in 0..MAX_READS_PER_PASS {
                match m.socket.try_recv_from(&mut buf) {
                    Ok((n, src)) => m.session.on_datagram(t, src, &buf[..n]),
                    Err(_) => break,
                }
            }
            // Caller -> agent.
            while let Some(frame) = m.session.poll_caller_audio(t) {
                m.agent.send_audio(&frame);
            }
            if let Some(d) = m.session.poll_dtmf() {
                tracing::info!(digit = %d, "DTMF from caller");
                m.agent.send_event(CallerEvent::Dtmf(d));
            }
            // Agent -> caller: everything the agent has ready, audio only while a slot is open.
            let mut hangup = None;
            while hangup.is_none() {
                let want = m.session.slot_open(t);
                let out =
                    std::future::poll_fn(|cx| Poll::Ready(m.agent.poll_output(cx, want))).await;
                match out {
                    Poll::Ready(out) => hangup = m.on_agent_output(t, out),
                    Poll::Pending => break,
                }
            }
            if let Some((to, pkt)) = m.session.handle_timeout(t) {
                let _ = m.socket.try_send_to(pkt, to);
            }
            if let Some(timeout) = m.session.timed_out(t) {
                tracing::warn!(?timeout, "media timeout; hanging up");
                self.core.hangup(t, "media timeout");
            } else if let Some(reason) = hangup {
                tracing::info!(%reason, "agent hung up");
                self.core.hangup(t, &reason);
            }
            self.flush(shared).await;
            if self.drain_events(shared).await {
                return;
            }
            let Some(m) = self.media.as_mut() else { return };
            let mut wake = Instant::from_std(m.session.poll_timeout(m.agent.audio_queued()));
            if let Some(sip) = self.core.poll_timeout() {
                wake = wake.min(Instant::from_std(sip));
            }
            let want = m.session.slot_open(t);
            let ActiveMedia { socket, agent, .. } = m;
            let mut agent_out = None;
            // Biased, RTP first: on the 50-per-second media wake-up only the socket's readiness
            // is looked at, not the SIP inbox and the agent (whose polls showed in profiles).
            tokio::select! {
                biased;
                _ = socket.readable() => {}
                msg = self.inbox.recv() => match msg {
                    Some((msg, src)) => self.core.handle_message(now(), msg, src),
                    None => return,
                },
                out = std::future::poll_fn(|cx| agent.poll_output(cx, want)) => agent_out = Some(out),
                _ = tokio::time::sleep_until(wake) => {}
            }
            let hangup = match (agent_out, self.media.as_mut()) {
                (Some(out), Some(m)) => m.on_agent_output(now(), out),
                _ => None,
            };
            if let Some(reason) = hangup {
                tracing::info!(%reason, "agent hung up");
                self.core.hangup(now(), &reason);
            }
            let t = now();
            if self.core.poll_timeout().is_some_and(|d| d <= t) {
                self.core.handle_timeout(t);
            }
        }
    }

    /// Handles the core's events; true when the call ended (media and agent are stopped).
    async fn drain_events(&mut self, shared: &Shared) -> bool {
        let mut ended = false;
        while let Some(ev) = self.core.poll_event() {
            match ev {
                CallEvent::Confirmed => tracing::info!("call confirmed (ACK)"),
                CallEvent::ReOffer { sdp } => self.reoffer(&sdp),
                CallEvent::Ended { reason } => {
                    log_end(&reason);
                    ended = true;
                }
            }
        }
        if ended {
            if let Some(mut m) = self.media.take() {
                m.agent.send_event(CallerEvent::Hangup);
                let c = m.session.counters();
                let s = m.session.recv_stats();
                tracing::info!(
                    sent = c.packets_sent,
                    received = c.packets_received,
                    concealed = c.concealed,
                    lost = s.lost(),
                    jitter_ms = s.jitter_ms(),
                    "media stopped"
                );
            }
            self.notify_ended(shared);
        }
        ended
    }

    fn reoffer(&mut self, sdp_bytes: &[u8]) {
        let Some(m) = self.media.as_mut() else {
            self.core.answer_reinvite(now(), Err(488));
            return;
        };
        let Some(Ok(offer)) = parse_offer(sdp_bytes) else {
            // A re-INVITE without SDP asks for our offer; not supported, and a 488 keeps
            // the call as it was.
            self.core.answer_reinvite(now(), Err(488));
            return;
        };
        m.sdp_version += 1;
        let local = LocalMedia {
            ip: m.media_ip,
            port: m.socket.local_addr().map(|a| a.port()).unwrap_or(0),
            session_id: m.sdp_session,
            session_version: m.sdp_version,
            ptime_ms: 20,
        };
        match sdp::negotiate(&offer, &local) {
            Ok(n) => {
                tracing::info!(direction = ?n.local_direction, remote = ?n.remote_rtp, "re-INVITE");
                // The stream carries on: same socket, SSRC and timers, new far end and codec.
                let timeouts = m.session.params();
                let params =
                    media_params(&n, timeouts.media_timeout, timeouts.initial_media_timeout);
                m.session.update(params);
                self.core.answer_reinvite(now(), Ok(n.answer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-INVITE offer refused: 488, media kept");
                self.core.answer_reinvite(now(), Err(488));
            }
        }
    }

    fn notify_ended(&mut self, shared: &Shared) {
        if !self.ended_notified {
            self.ended_notified = true;
            let _ = shared.notices.send(CallNotice::Ended(self.call_id.clone()));
        }
    }

    /// After the end: absorb retransmissions until every transaction is finished.
    async fn finish(&mut self, shared: &Shared) {
        self.flush(shared).await;
        self.drain_events(shared).await;
        self.notify_ended(shared);
        while !self.core.is_finished() {
            let Some(deadline) = self.core.poll_timeout() else {
                break;
            };
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some((m, src)) => self.core.handle_message(now(), m, src),
                    None => break,
                },
                _ = tokio::time::sleep_until(Instant::from_std(deadline)) => {
                    self.core.handle_timeout(now())
                }
            }
            self.flush(shared).await;
            while self.core.poll_event().is_some() {}
        }
    }

    async fn flush(&mut self, shared: &Shared) {
        while let Some((dest, bytes)) = self.core.poll_transmit() {
            let to = match dest {
                Destination::Addr(a) => Some(a),
                Destination::Uri(u) => resolve(&u).await,
            };
            match to {
                Some(to) => shared.sip.send(to, &bytes).await,
                None => tracing::warn!("cannot resolve next hop; request not sent"),
            }
        }
    }
}

/// The SDP offer in a body: `None` when there is none (empty, or not text at all).
fn parse_offer(body: &[u8]) -> Option<Result<SessionDescription, sdp::SdpError>> {
    std::str::from_utf8(body)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(SessionDescription::parse)
}

/// What the media session needs from an SDP negotiation.
fn media_params(n: &Negotiated, media_timeout: Duration, initial: Duration) -> MediaParams {
    MediaParams {
        law: n.codec.into(),
        payload_type: n.payload_type,
        telephone_event_pt: n.telephone_event_pt,
        remote: n.remote_rtp,
        send: n.local_direction.sends(),
        media_timeout,
        initial_media_timeout: initial,
    }
}

fn log_end(reason: &EndReason) {
    match reason {
        EndReason::Rejected(code) => tracing::info!(code, "call rejected"),
        other => tracing::info!(reason = ?other, "call ended"),
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The next hop of an in-dialog request: an IP literal as is, a name through DNS (A/AAAA; SRV
/// is not needed for Twilio, whose Record-Route entries are addresses).
async fn resolve(uri: &Uri) -> Option<SocketAddr> {
    if let Some(addr) = uri.socket_addr() {
        return Some(addr);
    }
    let (host, port) = uri.host_port();
    let mut addrs = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    addrs.next()
}
