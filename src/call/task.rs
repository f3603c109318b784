//! The task that runs one call's SIP: it owns the call's SIP core from the INVITE to the last
//! retransmission. It sets the media up (SDP, RTP port, agent session), hands it to a media
//! reactor once answered, and takes it back at the end; meanwhile it handles SIP and the
//! reactor's hang-up decisions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::agent::{CallInfo, CallerEvent};
use crate::call::core::{CallCore, CallEvent, Destination, EndReason, HangupCause, LocalContact};
use crate::call::dispatch::NewCall;
use crate::call::registry::{rfc3339, AgentRef, CallRecord, CallState, RtpStats, Timings};
use crate::call::Shared;
use crate::config::MediaEncryption;
use crate::engine::{Hangup, MediaCall};
use crate::media::ports::PortLease;
use crate::media::session::{MediaParams, MediaSession};
use crate::media::srtp::MasterKey;
use crate::routing::Admitted;
use crate::sdp::{self, Encryption, LocalMedia, Negotiated, SessionDescription};
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::transport::stream::Hold;
use crate::sip::transport::{Peer, Transport};
use crate::sip::uri::{Scheme, Uri};
use crate::timer::{now, sleep_until_opt};

/// What the gateway hands a call task.
#[derive(Debug)]
pub enum CallInput {
    /// A SIP message with this call's Call-ID.
    Sip(Message, Peer),
    /// Shutdown: end the call now (BYE if answered, 503 if still setting up).
    Hangup,
}

pub type SipInbox = mpsc::Receiver<CallInput>;

/// What a call tells the gateway about itself.
#[derive(Debug)]
pub enum CallNotice {
    /// The call was answered: it is no longer in setup.
    Answered(String),
    /// Media and agent stopped: the call no longer counts as active.
    Ended(String),
    /// Nothing of the call needs the process any more: it ended, and a BYE we sent has its
    /// answer (the task may still absorb retransmissions until it finishes).
    Settled(String),
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
        let mut call = Call::start(&shared, new, inbox, &sid);
        call.run(&shared, sid).await;
        // A task that stopped without an end event (its inbox closed) must not stay listed.
        call.close_record(&shared, "call task stopped".into(), "other");
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
    media: Option<MediaLeg>,
    ended_notified: bool,
    settled_notified: bool,
    /// Our BYE is out and has no final response yet.
    bye_pending: bool,
    record_closed: bool,
    /// When the INVITE arrived: setup time runs from here.
    received: Instant,
    /// How the call ends, when this side decided it (the agent hung up, media timed out,
    /// shutdown); otherwise it follows from the end reason.
    outcome: Option<&'static str>,
    /// Over TCP or TLS: keeps the dialog's connection from closing while it is quiet.
    _hold: Option<Hold>,
    /// Our SRTP master key, the same in every answer of the dialog; present only when SRTP
    /// may be answered (the trunk allows it and SDES keys may cross this signalling: TLS, or
    /// `media.sdes_without_tls`), so a plain call costs no trip to the OS random source.
    srtp_key: Option<MasterKey>,
}

mod media;
use media::{Run, TaskMedia};

/// An answered call's media, as its task sees it: where it runs, plus what SDP needs.
struct MediaLeg {
    run: Run,
    hangups: mpsc::UnboundedReceiver<Hangup>,
    /// What the media session was last given (a re-answer starts from it).
    params: MediaParams,
    /// The RTP port, held until the call ends.
    lease: PortLease,
    /// The SDP answer's `o=` version, bumped on every re-answer (RFC 3264 8).
    sdp_version: u64,
    sdp_session: u64,
    media_ip: IpAddr,
}

impl Call {
    fn start(shared: &Shared, new: NewCall, inbox: SipInbox, sid: &str) -> Call {
        let received = Instant::now();
        shared.registry.open(CallRecord {
            call_id: new.call_id.clone(),
            twilio_call_sid: (!sid.is_empty()).then(|| sid.to_string()),
            state: CallState::Setup,
            end_reason: None,
            outcome: None,
            trunk: new.admitted.trunk.clone(),
            caller: new.admitted.caller.clone(),
            called: new.admitted.called.clone(),
            agent: AgentRef {
                name: new.admitted.agent.clone(),
                kind: None,
            },
            codec: None,
            srtp: None,
            source: new.source.to_string(),
            rtp_port: None,
            timings: Timings {
                received: rfc3339(SystemTime::now()),
                ..Timings::default()
            },
            rtp: RtpStats::default(),
            transcript: Vec::new(),
            transcript_dropped: 0,
            details: Default::default(),
        });
        let local_ip = shared.local_ip_towards(new.source.addr);
        let transport = new.source.transport;
        let via_host_port = shared.public_host_port(local_ip, transport);
        let contact = contact_uri(&via_host_port, transport, &new.invite.uri).unwrap_or_else(|e| {
            // Config validation makes sure sip.public_addr forms a URI; this is for a local
            // address that somehow does not.
            tracing::error!(%via_host_port, error = %e, "cannot form our Contact URI");
            Uri::host(local_ip.to_string(), shared.sip_port)
        });
        let sdes_ok = transport == Transport::Tls || shared.live().config.media.sdes_without_tls;
        let srtp_key = (sdes_ok && new.admitted.media_encryption != MediaEncryption::None)
            .then(MasterKey::random);
        // A call keeps its dialog's connection open while it lasts.
        let hold = shared.sip.streams.hold(new.source);
        let now = Instant::now().into_std();
        let timers = if transport.is_stream() {
            shared.timers.reliable()
        } else {
            shared.timers
        };
        let core = CallCore::new(
            now,
            timers,
            new.invite,
            new.source,
            LocalContact {
                transport,
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
            settled_notified: false,
            bye_pending: false,
            record_closed: false,
            received,
            outcome: None,
            _hold: hold,
            srtp_key,
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
    /// CANCEL can arrive while the agent connects). Returns the answered call's media, running.
    async fn setup(&mut self, shared: &Shared, sid: String) -> Option<MediaLeg> {
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
        let encryption = match self.encryption() {
            Ok(e) => e,
            Err(why) => {
                tracing::warn!("{why}: 488");
                self.core.reject(now(), 488, None);
                return None;
            }
        };
        let negotiated = match sdp::negotiate_with(&offer, &local, encryption) {
            Ok(n) => n,
            Err(e) => {
                let hint = self.refusal_hint(&e);
                tracing::warn!(error = %e, hint, "SDP negotiation failed: 488");
                self.core.reject(now(), 488, None);
                return None;
            }
        };
        let srtp = negotiated.srtp.as_ref().map(|k| k.suite.name());
        tracing::info!(codec = negotiated.codec.name(), remote = ?negotiated.remote_rtp,
            port = lease.port(), srtp, "media negotiated");

        // Read once: a reload while this call runs does not change its agent.
        let Some(agent) = shared.live().agents.get(&self.admitted.agent).cloned() else {
            tracing::error!(agent = %self.admitted.agent, "agent not configured: 500");
            self.core.reject(now(), 500, None);
            return None;
        };
        let kind = agent.kind();
        shared.registry.update(&self.call_id, |r| {
            r.agent.kind = Some(kind);
            r.codec = Some(negotiated.codec.name());
            r.srtp = srtp;
            r.rtp_port = Some(lease.port());
        });
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
            law: negotiated.codec.into(),
            x_headers: self.x_headers(),
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
                        tracing::error!(error = %e, agent = kind, status,
                            "agent failed to start; rejecting the call");
                        shared.metrics.agent_error(kind, "connect_failed");
                        self.outcome = Some("agent_failed");
                        self.core.reject(now(), status, None);
                        return None;
                    }
                },
                msg = self.inbox.recv() => match msg {
                    Some(CallInput::Sip(m, src)) => self.core.handle_message(now(), m, src),
                    Some(CallInput::Hangup) => {
                        // Shutting down: 503 lets Twilio try elsewhere.
                        tracing::info!("shutdown while the agent connects: 503");
                        self.outcome = Some("shutdown");
                        let retry = (HeaderName::RetryAfter, "5".to_string());
                        self.core.reject(now(), 503, Some(retry));
                    }
                    None => return None,
                },
                _ = sleep_until_opt(ring_at) => {
                    ring_at = policy.ring_every.map(|every| Instant::now() + every);
                    self.core.ring(now());
                    shared.registry.update(&self.call_id, |r| {
                        if r.state == CallState::Setup {
                            r.state = CallState::Ringing;
                        }
                    });
                }
                _ = tokio::time::sleep_until(give_up) => {
                    let status = policy.timeout_status;
                    tracing::error!(timeout = ?policy.timeout, agent = kind, status,
                        "agent did not connect in time; rejecting the call");
                    shared.metrics.agent_error(kind, "connect_timeout");
                    self.outcome = Some("agent_failed");
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
        let mut params = media_params(
            &negotiated,
            shared.media_timeout,
            shared.initial_media_timeout,
        );
        params.latch = self.admitted.symmetric_rtp;
        let connected = Instant::now();
        shared.metrics.agent_connect_time(kind, connected - started);
        self.core.answer(now(), negotiated.answer);
        self.flush(shared).await;
        let _ = shared
            .notices
            .send(CallNotice::Answered(self.call_id.clone()));
        let setup = self.received.elapsed();
        shared.metrics.invite_response(200);
        shared.metrics.setup_time(setup);
        shared.registry.update(&self.call_id, |r| {
            r.state = CallState::Answered;
            r.timings.answered = Some(rfc3339(SystemTime::now()));
            r.timings.setup_ms = Some(setup.as_secs_f64() * 1000.0);
            r.timings.agent_connect_ms = Some((connected - started).as_secs_f64() * 1000.0);
        });
        let mut session = session;
        session.send_event(CallerEvent::Answered);
        // The send clock starts with the answer.
        let media = MediaSession::new(now(), params.clone());
        let (call, hangups) = MediaCall::new(media, session, self.call_id.clone(), kind);
        let run = if agent.media_on_reactor() {
            Run::Reactor(shared.engine.add(socket, call))
        } else {
            match TaskMedia::new(socket, call, shared.sinks()) {
                Ok(t) => Run::Task(Box::new(t)),
                Err(e) => {
                    // The runtime refused the socket (out of descriptors for its registration):
                    // the call was answered, so it ends with BYE.
                    tracing::error!(error = %e, "cannot register the RTP socket; hanging up");
                    self.hang_up(now(), "RTP socket unusable", "other");
                    return None;
                }
            }
        };
        Some(MediaLeg {
            run,
            hangups,
            params,
            lease,
            sdp_version: 1,
            sdp_session,
            media_ip: local.ip,
        })
    }

    /// The answered call: SIP here, and the media in its reactor or (for an agent on tokio
    /// sockets of its own) here too, until the call ends.
    async fn media_loop(&mut self, shared: &Shared) {
        loop {
            let Some(m) = self.media.as_mut() else { return };
            let sip = self.core.poll_timeout().map(Instant::from_std);
            let task = match &mut m.run {
                Run::Task(t) => {
                    t.pass().await;
                    Some(t)
                }
                Run::Reactor(_) => None,
            };
            let media_due = task.as_ref().map(|t| t.deadline());
            let wake = sip.into_iter().chain(media_due).min();
            let on_task = task.is_some();
            let socket = task.as_ref().map(|t| &t.socket);
            tokio::select! {
                biased;
                // On the 50-per-second media wake-up only the socket's readiness is looked at
                // first, not the SIP inbox and the agent.
                _ = media::readable(socket) => {}
                msg = self.inbox.recv() => match msg {
                    Some(CallInput::Sip(msg, src)) => self.core.handle_message(now(), msg, src),
                    Some(CallInput::Hangup) => {
                        tracing::info!("shutdown: hanging up");
                        self.hang_up(now(), "shutdown", "shutdown");
                    }
                    None => return,
                },
                h = m.hangups.recv() => match h {
                    Some(Hangup { reason, outcome }) => self.hang_up(now(), &reason, outcome),
                    None => {
                        // The reactor dropped the call: only an engine shutting down does.
                        tracing::error!("media reactor gone; hanging up");
                        self.hang_up(now(), "media engine stopped", "other");
                    }
                },
                _ = media::woken(), if on_task => {}
                _ = sleep_until_opt(wake) => {}
            }
            let t = now();
            if self.core.poll_timeout().is_some_and(|d| d <= t) {
                self.core.handle_timeout(t);
            }
            self.flush(shared).await;
            if self.drain_events(shared).await {
                return;
            }
        }
    }

    /// Handles the core's events; true when the call ended (media and agent are stopped).
    async fn drain_events(&mut self, shared: &Shared) -> bool {
        let mut ended = None;
        while let Some(ev) = self.core.poll_event() {
            match ev {
                CallEvent::Confirmed => {
                    tracing::info!("call confirmed (ACK)");
                    shared.registry.update(&self.call_id, |r| {
                        if r.state == CallState::Answered {
                            r.state = CallState::Confirmed;
                        }
                    });
                }
                CallEvent::ReOffer { sdp } => self.reoffer(&sdp),
                CallEvent::Ended { reason } => {
                    log_end(&reason);
                    ended = Some(reason);
                }
            }
        }
        let Some(reason) = ended else {
            return false;
        };
        if let Some(m) = self.media.take() {
            // The socket closes here, before the port goes back to the pool with the lease.
            if let Some(call) = m.run.take_back().await {
                let rtp = call.close(&shared.sinks());
                shared.metrics.call_jitter_ms(rtp.jitter_ms);
                tracing::info!(
                    sent = rtp.packets_sent,
                    received = rtp.packets_received,
                    concealed = rtp.concealed,
                    late = rtp.late,
                    duplicates = rtp.duplicates,
                    lost = rtp.lost,
                    jitter_ms = rtp.jitter_ms,
                    "media stopped"
                );
            }
        }
        match reason {
            EndReason::Rejected(code) => shared.metrics.invite_response(code),
            EndReason::CallerCancel => shared.metrics.invite_response(487),
            _ => {}
        }
        let outcome = outcome_of(&reason, self.outcome);
        shared.metrics.call_ended(outcome);
        self.close_record(shared, describe_end(&reason), outcome);
        self.bye_pending = matches!(reason, EndReason::LocalBye(_) | EndReason::AckTimeout);
        self.notify_ended(shared);
        if !self.bye_pending {
            self.notify_settled(shared);
        }
        true
    }

    /// Hangs up from our side, noting how the call ended for the metrics.
    /// The INVITE's `X-` headers for the agent, bounded (see [`CallInfo::x_headers`]).
    fn x_headers(&self) -> Vec<(String, String)> {
        self.core
            .invite()
            .headers
            .iter()
            .filter(|(name, value)| {
                let name = name.as_str();
                name.len() > 2
                    && name.as_bytes()[..2].eq_ignore_ascii_case(b"x-")
                    && name.len() + value.len() < 500
            })
            .take(crate::agent::MAX_X_HEADERS)
            .map(|(name, value)| (name.as_str().to_string(), value.to_string()))
            .collect()
    }

    fn hang_up(&mut self, t: std::time::Instant, reason: &str, outcome: &'static str) {
        self.outcome.get_or_insert(outcome);
        let cause = match outcome {
            // "other" from this side is always a fault of ours (the media engine, a socket):
            // 41, temporary failure, like the agent's, not 16 (the conversation ended).
            "agent_error" | "other" => HangupCause::AgentFailure,
            "media_timeout" => HangupCause::Timeout,
            _ => HangupCause::Normal,
        };
        self.core.hangup(t, cause, reason);
    }

    /// Moves the call's record to the ended list (once).
    fn close_record(&mut self, shared: &Shared, reason: String, outcome: &'static str) {
        if self.record_closed {
            return;
        }
        self.record_closed = true;
        shared.registry.close(&self.call_id, |r| {
            r.end_reason = Some(reason);
            r.outcome = Some(outcome);
            r.timings.ended = Some(rfc3339(SystemTime::now()));
        });
    }

    fn notify_settled(&mut self, shared: &Shared) {
        if !self.settled_notified {
            self.settled_notified = true;
            let _ = shared
                .notices
                .send(CallNotice::Settled(self.call_id.clone()));
        }
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
            port: m.lease.port(),
            session_id: m.sdp_session,
            session_version: m.sdp_version,
            ptime_ms: 20,
        };
        let negotiated = match self.encryption() {
            Ok(e) => sdp::negotiate_with(&offer, &local, e),
            Err(_) => Err(sdp::SdpError::EncryptionRequired),
        };
        match negotiated {
            Ok(n) => {
                tracing::info!(direction = ?n.local_direction, remote = ?n.remote_rtp, "re-INVITE");
                if let Some(m) = self.media.as_mut() {
                    // The stream carries on: same socket, SSRC and timers, new far end and
                    // codec (and SRTP keys, if the caller changed its own).
                    let old = &m.params;
                    let mut params = media_params(&n, old.media_timeout, old.initial_media_timeout);
                    params.latch = old.latch;
                    m.params = params.clone();
                    m.run.update(params);
                }
                self.core.answer_reinvite(now(), Ok(n.answer));
            }
            Err(e) => {
                let hint = self.refusal_hint(&e);
                tracing::warn!(error = %e, hint, "re-INVITE offer refused: 488, media kept");
                self.core.answer_reinvite(now(), Err(488));
            }
        }
    }

    /// The SRTP this call may answer with: the trunk's `media_encryption`, off when the keys
    /// would cross signalling that is not TLS (unless `media.sdes_without_tls`); an error when
    /// the trunk requires SRTP and the signalling cannot carry keys.
    fn encryption(&self) -> Result<Encryption<'_>, &'static str> {
        match (self.admitted.media_encryption, &self.srtp_key) {
            (MediaEncryption::Allowed, Some(key)) => Ok(Encryption::Allowed(key)),
            (MediaEncryption::Required, Some(key)) => Ok(Encryption::Required(key)),
            (MediaEncryption::None | MediaEncryption::Allowed, _) => Ok(Encryption::Off),
            (MediaEncryption::Required, None) => Err(
                "the trunk requires SRTP (media_encryption = \"required\") and the call did \
                 not come over TLS, so no key can be agreed",
            ),
        }
    }

    /// What the log adds to an SRTP refusal, so the operator knows which setting decided it.
    fn refusal_hint(&self, e: &sdp::SdpError) -> &'static str {
        match e {
            sdp::SdpError::SrtpRefused
                if self.admitted.media_encryption == MediaEncryption::None =>
            {
                "the trunk's media_encryption is \"none\""
            }
            sdp::SdpError::SrtpRefused => {
                "the SDES keys came over signalling that is not TLS, where anyone on the path \
                 reads them; take the call over sip.listen_tls (media.sdes_without_tls = true \
                 accepts it anyway)"
            }
            sdp::SdpError::EncryptionRequired => "the trunk's media_encryption is \"required\"",
            _ => "",
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
                    Some(CallInput::Sip(m, src)) => {
                        if self.bye_pending && answers_bye(&m) {
                            self.bye_pending = false;
                            self.notify_settled(shared);
                        }
                        self.core.handle_message(now(), m, src);
                    }
                    Some(CallInput::Hangup) => {}
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
            match dest {
                Destination::Addr(to) => {
                    if !shared.sip.send(to, bytes).await {
                        tracing::debug!(%to, "connection gone; response not sent");
                    }
                }
                Destination::Uri(hop) => {
                    let flow = self.core.source();
                    if let Err(e) = shared.sip.send_request(flow, &hop, bytes).await {
                        tracing::warn!(error = %e, "in-dialog request not sent");
                    }
                }
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
        latch: false,
        srtp: n.srtp.clone(),
    }
}

/// A final response to our BYE.
fn answers_bye(m: &Message) -> bool {
    matches!(m, Message::Response(r)
        if r.status >= 200 && r.cseq().is_some_and(|c| c.method == Method::Bye))
}

/// The `sipbridge_calls_total` outcome: ours when we ended the call, else the end reason's.
fn outcome_of(reason: &EndReason, ours: Option<&'static str>) -> &'static str {
    match (reason, ours) {
        (EndReason::LocalBye(_) | EndReason::Rejected(_), Some(o)) => o,
        (EndReason::CallerBye, _) => "caller_hangup",
        (EndReason::CallerCancel, _) => "cancelled",
        (EndReason::AckTimeout, _) => "ack_timeout",
        (EndReason::Rejected(_), None) => "rejected",
        (EndReason::LocalBye(_), None) => "other",
    }
}

fn describe_end(reason: &EndReason) -> String {
    match reason {
        EndReason::CallerBye => "caller hung up (BYE)".into(),
        EndReason::CallerCancel => "caller cancelled before answer".into(),
        EndReason::LocalBye(why) => format!("we hung up: {why}"),
        EndReason::Rejected(code) => format!("rejected with {code}"),
        EndReason::AckTimeout => "no ACK for our 200 OK".into(),
    }
}

fn log_end(reason: &EndReason) {
    match reason {
        EndReason::Rejected(code) => tracing::info!(code, "call rejected"),
        other => tracing::info!(reason = ?other, "call ended"),
    }
}

/// Our Contact for a dialog on `transport`: `sip:host:port`, with `;transport=tcp|tls` off
/// UDP, and `sips:` when the caller's Request-URI was (RFC 3261 8.1.1.8).
fn contact_uri(
    host_port: &str,
    transport: Transport,
    request_uri: &str,
) -> Result<Uri, crate::sip::message::ParseError> {
    let mut uri = Uri::parse(&format!("sip:{host_port}"))?;
    if transport == Transport::Tls
        && Uri::parse(request_uri).is_ok_and(|u| u.scheme == Scheme::Sips)
    {
        uri.scheme = Scheme::Sips;
    } else if let Some(t) = transport.uri_param() {
        uri.params.push(("transport".into(), Some(t.into())));
    }
    Ok(uri)
}
