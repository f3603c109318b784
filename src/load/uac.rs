//! One call's SIP as Twilio places it, UAC side, sans-IO.
//!
//! The INVITE is shaped like Twilio's `<Dial><Sip>` leg (reference/twilio.md §2): a quoted
//! E.164 caller `@sip.twilio.com`, a `<32 hex>@0.0.0.0` Call-ID, a random first CSeq, the
//! X-Twilio headers, Twilio's header order (Via after Call-ID) and an SDP offer of
//! `RTP/AVP 0 8 101` with ptime 20. Digest challenges (401 or 407, MD5 or SHA-256, with or
//! without qop) are answered with a new INVITE; the 2xx is ACKed with a new branch through the
//! route set; after the hold time the call ends with BYE.
//!
//! The driver feeds in every SIP message for this Call-ID and the timer, and drains
//! [`Uac::poll_transmit`] and [`Uac::poll_event`]; [`Uac::result`] is the call's SIP outcome
//! once known.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::g711::Law;
use crate::media::srtp::MasterKey;
use crate::sip::auth::{respond, Challenge};
use crate::sip::dialog::{new_branch, Dialog};
use crate::sip::message::{HeaderName, Message, Method, NameAddr, Request, Response};
use crate::sip::transaction::{InviteClient, NonInviteClient, Timers, TxEvent};
use crate::sip::transport::Transport;

use super::media::SendParams;

/// Challenges answered with a non-stale nonce before giving up. Two, because a server may
/// re-challenge one wrong answer before refusing (the gateway does: 407, 407, then 403).
pub const MAX_AUTH_ANSWERS: u32 = 2;
/// `stale=true` re-challenges answered: each means the password was right, but a server that
/// only ever says stale must not keep a call looping.
pub const MAX_STALE_ANSWERS: u32 = 3;

/// Twilio's `<Dial><Sip>` Allow list.
const ALLOW: &str = "INVITE,ACK,CANCEL,OPTIONS,BYE,REFER,NOTIFY";

#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Settings shared by every call of a run.
#[derive(Clone, Debug)]
pub struct UacConfig {
    /// Where INVITEs go; also the host part of the Request-URI and To.
    pub target: SocketAddr,
    /// Our SIP socket's address, for Via and Contact.
    pub local: SocketAddr,
    /// Our address in the SDP.
    pub media_ip: IpAddr,
    /// The codec offered first.
    pub law: Law,
    pub credentials: Option<Credentials>,
    /// How long an answered call is held before BYE.
    pub hold: Duration,
    pub timers: Timers,
    /// No final response by then (after a provisional, which stops timer B): CANCEL, and the
    /// call counts as a timeout.
    pub setup_timeout: Duration,
    pub caller: String,
    pub called: String,
    /// `X-Twilio-AccountSid`, the same for every call of a run.
    pub account_sid: String,
    /// Offer SRTP (SDES), a fresh key per call.
    pub srtp: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UacEvent {
    /// A 200 with a usable SDP answer: start sending media.
    Answered(SendParams),
    /// Stop sending media (BYE sent or received).
    MediaStop,
}

/// The INVITE's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The final response (after any challenges).
    Status(u16),
    /// No final response in time.
    Timeout,
    /// The run stopped waiting before a final response.
    Interrupted,
}

/// How the answered call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByeOutcome {
    /// Never answered, or never got as far as BYE.
    NotSent,
    /// Our BYE got this final response.
    Answered(u16),
    /// Our BYE got no final response (timer F).
    Timeout,
    /// The far end sent BYE first.
    Remote,
    /// The run stopped waiting (Ctrl-C and the grace time ran out).
    Interrupted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipResult {
    pub outcome: Outcome,
    /// When the first INVITE was sent.
    pub invite_sent: Instant,
    /// When the 200 arrived.
    pub answered: Option<Instant>,
    pub bye: ByeOutcome,
    /// Challenges answered (stale ones included).
    pub auth_rounds: u32,
    /// A problem worth reporting with the outcome (bad SDP answer, unanswerable challenge).
    pub note: Option<String>,
    /// When the far end hung up: its BYE's arrival and its Reason header (RFC 3326).
    pub remote_bye_at: Option<Instant>,
    pub remote_bye_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE out, no final response yet.
    Inviting,
    /// 200 received and ACKed: holding until `hangup_at`.
    Answered,
    /// BYE out.
    Ending,
    /// The result is known; only transactions may still be absorbing retransmissions.
    Done,
}

/// One INVITE transaction with what is needed to ACK or CANCEL it.
struct InviteTx {
    branch: String,
    cseq: u32,
    tx: InviteClient,
}

pub struct Uac {
    target: SocketAddr,
    via_host_port: String,
    timers: Timers,
    hold: Duration,
    credentials: Option<Credentials>,
    call_id: String,
    from_tag: String,
    call_sid: String,
    account_sid: String,
    request_uri: String,
    from: String,
    to: String,
    contact: String,
    sdp: Bytes,
    /// Our SRTP key, when offering SRTP.
    srtp_key: Option<MasterKey>,
    cseq: u32,
    invite: InviteTx,
    /// Earlier INVITEs (answered with a challenge) still absorbing retransmitted finals.
    old_invites: Vec<InviteTx>,
    auth_answers: u32,
    stale_answers: u32,
    last_nonce: Option<String>,
    nc: u32,
    provisional: bool,
    /// Hang up as soon as possible (Ctrl-C, or setup timed out).
    cancel_wanted: bool,
    cancel: Option<(String, NonInviteClient)>,
    dialog: Option<Dialog>,
    ack_2xx: Option<(SocketAddr, Bytes)>,
    bye: Option<(String, NonInviteClient)>,
    bye_dest: SocketAddr,
    phase: Phase,
    setup_deadline: Instant,
    hangup_at: Option<Instant>,
    result: SipResult,
    done: bool,
    out: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<UacEvent>,
}

impl Uac {
    /// Starts a call: the first INVITE is queued for sending. `rtp_port` is this call's SDP
    /// port (its own socket, so returns can be told apart).
    pub fn new(now: Instant, cfg: &UacConfig, rtp_port: u16) -> Uac {
        let call_id = format!("{}@0.0.0.0", random_hex(16));
        let from_tag = twilio_tag();
        let target_host = cfg.target.to_string();
        let local = cfg.local.to_string();
        let request_uri = format!("sip:{}@{target_host}", cfg.called);
        let from = format!(
            "\"{c}\" <sip:{c}@sip.twilio.com>;tag={from_tag}",
            c = cfg.caller
        );
        let contact = format!("\"{c}\" <sip:{c}@{local};transport=udp>", c = cfg.caller);
        let session = rand::random::<u32>() as u64;
        let srtp_key = cfg.srtp.then(MasterKey::random);
        let offer = sdp_offer(cfg.media_ip, rtp_port, cfg.law, session, srtp_key.as_ref());
        let mut uac = Uac {
            target: cfg.target,
            via_host_port: local,
            timers: cfg.timers,
            hold: cfg.hold,
            credentials: cfg.credentials.clone(),
            to: format!("<{request_uri}>"),
            request_uri,
            call_id,
            from_tag,
            call_sid: format!("CA{}", random_hex(16)),
            account_sid: cfg.account_sid.clone(),
            from,
            contact,
            sdp: Bytes::from(offer),
            srtp_key,
            // Twilio starts anywhere (1, 2, 102, 29044 seen); stay far below 2^31.
            cseq: rand::random_range(1..30_000),
            // A placeholder, replaced by the real INVITE below before anything is drained.
            invite: InviteTx {
                branch: String::new(),
                cseq: 0,
                tx: InviteClient::new(now, cfg.timers, Bytes::new()),
            },
            old_invites: Vec::new(),
            auth_answers: 0,
            stale_answers: 0,
            last_nonce: None,
            nc: 0,
            provisional: false,
            cancel_wanted: false,
            cancel: None,
            dialog: None,
            ack_2xx: None,
            bye: None,
            bye_dest: cfg.target,
            phase: Phase::Inviting,
            setup_deadline: now + cfg.setup_timeout,
            hangup_at: None,
            result: SipResult {
                outcome: Outcome::Timeout,
                invite_sent: now,
                answered: None,
                bye: ByeOutcome::NotSent,
                auth_rounds: 0,
                note: None,
                remote_bye_at: None,
                remote_bye_reason: None,
            },
            done: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        uac.send_invite(now, None);
        uac
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call's SIP outcome, once known.
    pub fn result(&self) -> Option<&SipResult> {
        self.done.then_some(&self.result)
    }

    /// True when no transaction is left to absorb retransmissions: the call can be forgotten.
    pub fn is_finished(&self) -> bool {
        self.done
            && self.invite.tx.is_terminated()
            && self.old_invites.is_empty()
            && self.cancel.is_none()
            && self.bye.is_none()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UacEvent> {
        self.events.pop_front()
    }

    /// When [`Uac::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = [
            self.invite.tx.poll_timeout(),
            self.cancel.as_ref().and_then(|(_, c)| c.poll_timeout()),
            self.bye.as_ref().and_then(|(_, b)| b.poll_timeout()),
            (self.phase == Phase::Inviting && !self.cancel_wanted).then_some(self.setup_deadline),
            self.hangup_at.filter(|_| self.phase == Phase::Answered),
        ]
        .into_iter()
        .flatten()
        .min();
        for old in &self.old_invites {
            t = match (t, old.tx.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        t
    }

    /// Ends the call as soon as SIP allows: BYE when answered, CANCEL while ringing (or as
    /// soon as a provisional shows the INVITE arrived).
    pub fn hangup(&mut self, now: Instant) {
        match self.phase {
            Phase::Inviting => {
                self.cancel_wanted = true;
                if self.provisional {
                    self.send_cancel(now);
                }
            }
            Phase::Answered => self.send_bye(now),
            Phase::Ending | Phase::Done => {}
        }
    }

    /// The run stops waiting: whatever is still open is reported as interrupted.
    pub fn abandon(&mut self) {
        if self.done {
            return;
        }
        if self.result.answered.is_some() {
            self.result.bye = ByeOutcome::Interrupted;
        } else {
            self.result.outcome = Outcome::Interrupted;
        }
        self.finish();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.invite.tx.handle_timeout(now);
        self.drain_invite(now, None);
        for old in &mut self.old_invites {
            old.tx.handle_timeout(now);
            while let Some(b) = old.tx.poll_transmit() {
                self.out.push_back((self.target, b));
            }
            while old.tx.poll_event().is_some() {}
        }
        self.old_invites.retain(|o| !o.tx.is_terminated());
        if let Some((_, c)) = self.cancel.as_mut() {
            c.handle_timeout(now);
        }
        self.drain_cancel();
        if let Some((_, b)) = self.bye.as_mut() {
            b.handle_timeout(now);
        }
        self.drain_bye();
        if self.phase == Phase::Inviting && !self.cancel_wanted && now >= self.setup_deadline {
            self.result.outcome = Outcome::Timeout;
            self.result.note = Some(format!(
                "no final response within {:?}",
                self.setup_deadline - self.result.invite_sent
            ));
            // Still tell the far end: CANCEL now, or once a provisional arrives.
            self.hangup(now);
            self.finish();
        }
        if self.phase == Phase::Answered && self.hangup_at.is_some_and(|t| now >= t) {
            self.send_bye(now);
        }
    }

    /// A SIP message with this call's Call-ID arrived from `src`.
    pub fn on_message(&mut self, now: Instant, msg: Message, src: SocketAddr) {
        match msg {
            Message::Response(r) => self.on_response(now, r),
            Message::Request(r) => self.on_request(now, r, src),
        }
    }

    fn on_response(&mut self, now: Instant, r: Response) {
        let (Some(cseq), Some(branch)) = (r.cseq(), r.headers.top_branch()) else {
            return;
        };
        match cseq.method {
            Method::Invite if branch == self.invite.branch => {
                let ack = (r.status >= 300).then(|| self.non2xx_ack(&self.invite, &r));
                self.invite
                    .tx
                    .on_response(now, r.status, || ack.unwrap_or_default());
                self.drain_invite(now, Some(&r));
            }
            Method::Invite => {
                let Some(i) = self.old_invites.iter().position(|o| o.branch == branch) else {
                    return;
                };
                let ack = (r.status >= 300).then(|| self.non2xx_ack(&self.old_invites[i], &r));
                let old = &mut self.old_invites[i];
                old.tx
                    .on_response(now, r.status, || ack.unwrap_or_default());
                while let Some(b) = old.tx.poll_transmit() {
                    self.out.push_back((self.target, b));
                }
                while old.tx.poll_event().is_some() {}
            }
            Method::Cancel => {
                if let Some((b, c)) = self.cancel.as_mut() {
                    if b == branch {
                        c.on_response(now, r.status);
                    }
                }
                self.drain_cancel();
            }
            Method::Bye => {
                if let Some((b, tx)) = self.bye.as_mut() {
                    if b == branch {
                        tx.on_response(now, r.status);
                    }
                }
                self.drain_bye();
            }
            _ => {}
        }
    }

    fn drain_invite(&mut self, now: Instant, resp: Option<&Response>) {
        while let Some(b) = self.invite.tx.poll_transmit() {
            self.out.push_back((self.target, b));
        }
        while let Some(ev) = self.invite.tx.poll_event() {
            match (ev, resp) {
                (TxEvent::Response(100..=199), _) => {
                    self.provisional = true;
                    if self.cancel_wanted {
                        self.send_cancel(now);
                    }
                }
                (TxEvent::Response(s @ 200..=299), Some(r)) => self.on_2xx(now, s, r),
                (TxEvent::Response(s), Some(r)) if s >= 300 => self.on_failure(now, s, r),
                (TxEvent::Timeout, _) if self.phase == Phase::Inviting => {
                    self.result.outcome = Outcome::Timeout;
                    self.result.note = Some("no response to INVITE (timer B)".into());
                    self.finish();
                }
                _ => {}
            }
        }
    }

    fn on_2xx(&mut self, now: Instant, status: u16, r: &Response) {
        if self.dialog.is_some() {
            // A retransmitted 2xx: our ACK was lost.
            if let Some((to, ack)) = self.ack_2xx.clone() {
                self.out.push_back((to, ack));
            }
            return;
        }
        let mut dialog = self.dialog_from(r);
        // The ACK carries the INVITE's CSeq number (RFC 3261 §13.2.2.4): the dialog reuses
        // its current number for ACK, and the BYE continues from it.
        dialog.local_cseq = self.invite.cseq;
        let (ack, hop) = dialog.build_request(
            Method::Ack,
            Transport::Udp,
            &self.via_host_port,
            &new_branch(),
            &contact_uri(&self.contact),
        );
        let to = addr_of(&hop, self.target);
        let ack = ack.to_bytes();
        self.out.push_back((to, ack.clone()));
        self.ack_2xx = Some((to, ack));
        self.dialog = Some(dialog);
        self.result.outcome = Outcome::Status(status);
        self.result.answered = Some(now);
        if self.phase != Phase::Inviting {
            // Answered after we gave up (setup timeout, Ctrl-C): end it at once.
            self.phase = Phase::Answered;
            self.send_bye(now);
            return;
        }
        self.phase = Phase::Answered;
        match parse_answer(&r.body, self.srtp_key.as_ref()) {
            Ok(params) => {
                self.events.push_back(UacEvent::Answered(params));
                self.hangup_at = Some(now + self.hold);
                if self.cancel_wanted {
                    self.send_bye(now);
                }
            }
            Err(e) => {
                self.result.note = Some(format!("unusable SDP answer: {e}"));
                self.send_bye(now);
            }
        }
    }

    fn on_failure(&mut self, now: Instant, status: u16, r: &Response) {
        if self.phase != Phase::Inviting {
            return;
        }
        if matches!(status, 401 | 407) && !self.cancel_wanted {
            match self.answer_challenge(now, status, r) {
                Ok(()) => return,
                Err(note) => self.result.note = Some(note),
            }
        }
        if self.cancel_wanted {
            // We stopped the call ourselves (Ctrl-C): its final says nothing about the target.
            self.result.outcome = Outcome::Interrupted;
            self.result.note = Some(format!("stopped before answer (final {status})"));
        } else {
            self.result.outcome = Outcome::Status(status);
        }
        self.finish();
    }

    /// Sends a new INVITE answering the challenge in `r`, or says why not.
    fn answer_challenge(&mut self, now: Instant, status: u16, r: &Response) -> Result<(), String> {
        let Some(creds) = self.credentials.clone() else {
            return Err(format!("{status} challenge but no --username/--password"));
        };
        let (challenge_header, answer_header) = if status == 407 {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let ch = Challenge::select(r.headers.get_all(&challenge_header))
            .map_err(|e| format!("cannot answer the challenge: {e}"))?;
        if ch.stale {
            if self.stale_answers >= MAX_STALE_ANSWERS {
                return Err("too many stale=true challenges".into());
            }
            self.stale_answers += 1;
        } else {
            if self.auth_answers >= MAX_AUTH_ANSWERS {
                return Err("credentials refused (challenged again)".into());
            }
            self.auth_answers += 1;
        }
        self.result.auth_rounds += 1;
        // RFC 7616 §3.4: nc counts the requests sent with one nonce.
        self.nc = if self.last_nonce.as_deref() == Some(ch.nonce.as_str()) {
            self.nc + 1
        } else {
            1
        };
        self.last_nonce = Some(ch.nonce.clone());
        let cnonce = random_hex(8);
        let value = respond(
            &ch,
            "INVITE",
            &self.request_uri,
            &creds.username,
            &creds.password,
            &cnonce,
            self.nc,
        );
        self.send_invite(now, Some((answer_header, value)));
        Ok(())
    }

    fn send_invite(&mut self, now: Instant, auth: Option<(HeaderName, String)>) {
        self.cseq += 1;
        let branch = new_branch();
        let req = self.build_invite(&branch, self.cseq, auth);
        let tx = InviteClient::new(now, self.timers, req.to_bytes());
        let previous = std::mem::replace(
            &mut self.invite,
            InviteTx {
                branch,
                cseq: self.cseq,
                tx,
            },
        );
        if !previous.branch.is_empty() && !previous.tx.is_terminated() {
            self.old_invites.push(previous);
        }
        self.provisional = false;
        self.drain_invite(now, None);
    }

    /// The INVITE, in the order Twilio's edge writes its headers.
    fn build_invite(&self, branch: &str, cseq: u32, auth: Option<(HeaderName, String)>) -> Request {
        let mut req = Request::new(Method::Invite, self.request_uri.clone());
        let h = &mut req.headers;
        h.push(HeaderName::From, self.from.clone());
        h.push(HeaderName::To, self.to.clone());
        h.push(HeaderName::CSeq, format!("{cseq} INVITE"));
        h.push(HeaderName::MaxForwards, "68");
        h.push(HeaderName::Other("Min-SE".into()), "120");
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::Via, self.via(branch));
        h.push(HeaderName::Contact, self.contact.clone());
        h.push(HeaderName::Allow, ALLOW);
        h.push(HeaderName::UserAgent, "Twilio Gateway");
        h.push(
            HeaderName::Other("X-Twilio-ApiVersion".into()),
            "2010-04-01",
        );
        h.push(
            HeaderName::Other("X-Twilio-AccountSid".into()),
            self.account_sid.clone(),
        );
        if let Some((name, value)) = auth {
            h.push(name, value);
        }
        h.push(HeaderName::ContentType, "application/sdp");
        h.push(
            HeaderName::Other("X-Twilio-CallSid".into()),
            self.call_sid.clone(),
        );
        req.body = self.sdp.clone();
        req
    }

    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch};rport", self.via_host_port)
    }

    /// RFC 3261 §17.1.1.3: the ACK for a non-2xx final is part of the INVITE transaction:
    /// same branch and Request-URI, the response's To (with its tag).
    fn non2xx_ack(&self, invite: &InviteTx, r: &Response) -> Bytes {
        let mut ack = Request::new(Method::Ack, self.request_uri.clone());
        let h = &mut ack.headers;
        h.push(HeaderName::Via, self.via(&invite.branch));
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.from.clone());
        let to = r
            .headers
            .get_value(&HeaderName::To)
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| self.to.clone());
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} ACK", invite.cseq));
        h.push(HeaderName::UserAgent, "Twilio");
        ack.to_bytes()
    }

    fn send_cancel(&mut self, now: Instant) {
        if self.cancel.is_some() {
            return;
        }
        let mut c = Request::new(Method::Cancel, self.request_uri.clone());
        let h = &mut c.headers;
        h.push(HeaderName::Via, self.via(&self.invite.branch));
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.from.clone());
        h.push(HeaderName::To, self.to.clone());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} CANCEL", self.invite.cseq));
        let tx = NonInviteClient::new(now, self.timers, c.to_bytes());
        self.cancel = Some((self.invite.branch.clone(), tx));
        self.drain_cancel();
    }

    fn send_bye(&mut self, now: Instant) {
        if self.phase != Phase::Answered {
            return;
        }
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let branch = new_branch();
        let (mut bye, hop) = dialog.build_request(
            Method::Bye,
            Transport::Udp,
            &self.via_host_port,
            &branch,
            &contact_uri(&self.contact),
        );
        bye.headers.push(HeaderName::UserAgent, "Twilio");
        bye.headers.push(
            HeaderName::Other("X-Twilio-CallSid".into()),
            self.call_sid.clone(),
        );
        bye.headers.push(
            HeaderName::Reason,
            "Q.850;cause=16;text=\"Normal call clearing\"",
        );
        self.bye_dest = addr_of(&hop, self.target);
        self.bye = Some((
            branch,
            NonInviteClient::new(now, self.timers, bye.to_bytes()),
        ));
        self.phase = Phase::Ending;
        self.events.push_back(UacEvent::MediaStop);
        self.drain_bye();
    }

    fn drain_cancel(&mut self) {
        let Some((_, c)) = self.cancel.as_mut() else {
            return;
        };
        while let Some(b) = c.poll_transmit() {
            self.out.push_back((self.target, b));
        }
        while c.poll_event().is_some() {}
        if c.is_terminated() {
            self.cancel = None;
        }
    }

    fn drain_bye(&mut self) {
        let Some((_, b)) = self.bye.as_mut() else {
            return;
        };
        while let Some(bytes) = b.poll_transmit() {
            self.out.push_back((self.bye_dest, bytes));
        }
        let mut outcome = None;
        while let Some(ev) = b.poll_event() {
            match ev {
                TxEvent::Response(s) if s >= 200 => outcome = Some(ByeOutcome::Answered(s)),
                TxEvent::Timeout => outcome = Some(ByeOutcome::Timeout),
                _ => {}
            }
        }
        if b.is_terminated() {
            self.bye = None;
        }
        if let Some(o) = outcome {
            if self.result.bye == ByeOutcome::NotSent {
                self.result.bye = o;
            }
            self.finish();
        }
    }

    /// Requests from the far end inside the call: BYE ends it; OPTIONS is answered; a
    /// re-INVITE is refused without changing the session (this caller never re-negotiates).
    fn on_request(&mut self, now: Instant, req: Request, src: SocketAddr) {
        let status = match req.method {
            Method::Ack => return,
            Method::Bye => {
                if self.dialog.is_none() {
                    481
                } else {
                    // After our own BYE (a glare), its answer decides; before it, theirs does.
                    if self.phase == Phase::Answered {
                        self.result.bye = ByeOutcome::Remote;
                        self.result.remote_bye_at = Some(now);
                        self.result.remote_bye_reason =
                            req.headers.get(&HeaderName::Reason).map(str::to_string);
                        self.finish();
                    }
                    200
                }
            }
            Method::Options => 200,
            Method::Invite => 488,
            Method::Cancel => 481,
            _ => 405,
        };
        let mut resp = Response::for_request(&req, status, None);
        if status == 405 || req.method == Method::Options {
            resp.headers.push(HeaderName::Allow, ALLOW);
        }
        self.out.push_back((src, resp.to_bytes()));
    }

    fn dialog_from(&self, r: &Response) -> Dialog {
        let remote_uri = r
            .to()
            .unwrap_or_else(|| NameAddr::new(contact_uri(&self.to)));
        let remote_tag = remote_uri.tag().unwrap_or_default().to_string();
        let local_uri = NameAddr::parse(&self.from).unwrap_or_else(|_| {
            let mut n = NameAddr::new(contact_uri(&self.from));
            n.set_tag(&self.from_tag);
            n
        });
        let remote_target = r
            .contacts()
            .into_iter()
            .next()
            .map(|c| c.uri)
            .unwrap_or_else(|| contact_uri(&self.to));
        // RFC 3261 §12.1.2: the UAC's route set is the 2xx's Record-Route in reverse.
        let mut route_set = r.record_routes();
        route_set.reverse();
        Dialog {
            call_id: self.call_id.clone(),
            local_tag: self.from_tag.clone(),
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            local_cseq: self.invite.cseq,
            remote_cseq: 0,
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            if self.phase == Phase::Answered {
                self.events.push_back(UacEvent::MediaStop);
            }
            self.phase = Phase::Done;
        }
    }
}

mod wire;

use wire::{addr_of, contact_uri, random_hex, twilio_tag};
pub use wire::{parse_answer, sdp_offer};

#[cfg(test)]
mod tests;
