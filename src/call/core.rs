//! The SIP side of one call, sans-IO: the INVITE server transaction, the dialog, CANCEL, BYE in
//! both directions, re-INVITE and the other in-dialog requests.
//!
//! The call's task feeds it every SIP message routed to this call and the timer; it answers
//! with packets to send and [`CallEvent`]s. Media and the agent are the task's business: this
//! core only learns "answer with this SDP", "reject with this code" or "hang up".

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::sip::dialog::{new_branch, new_tag, Dialog};
use crate::sip::message::{HeaderName, Message, Method, Request, Response};
use crate::sip::transaction::{InviteServer, NonInviteClient, NonInviteServer, Timers, TxEvent};
use crate::sip::transport::{Peer, Transport};
use crate::sip::uri::Uri;

/// Methods we answer inside a dialog; the rest get 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// Where a packet goes: straight back to the address a request came from, or to a URI (the
/// dialog's next hop) the driver resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Addr(Peer),
    Uri(Uri),
}

#[derive(Debug, PartialEq)]
pub enum CallEvent {
    /// The caller's re-INVITE carried a new offer; the task negotiates it and calls
    /// [`CallCore::answer_reinvite`].
    ReOffer { sdp: Bytes },
    /// The 200 to the INVITE was acknowledged.
    Confirmed,
    /// The call is over (BYE either way, CANCEL, rejection, lost ACK); media and agent stop now.
    /// The core may still absorb retransmissions until [`CallCore::is_finished`].
    Ended { reason: EndReason },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    CallerBye,
    CallerCancel,
    LocalBye(String),
    Rejected(u16),
    /// No ACK for our 200 (timer H): the caller never saw the answer.
    AckTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// INVITE received, no final response yet.
    Proceeding,
    /// 200 sent.
    Answered,
    /// Our BYE is out, or the call ended; only transactions finish.
    Ended,
}

/// Our addresses as the caller must see them.
#[derive(Clone, Debug)]
pub struct LocalContact {
    /// The transport the dialog lives on: the INVITE's, and our requests' (Via).
    pub transport: Transport,
    /// `host:port` for Via sent-by.
    pub via_host_port: String,
    /// Our Contact URI, with the public address (never a private one: Twilio would route its
    /// ACK there and drop the call at 30 s).
    pub contact: Uri,
}

/// One re-INVITE from the caller: its request (for building the answer) and transaction.
struct ReInvite {
    req: Request,
    branch: String,
    cseq: u32,
    tx: InviteServer,
}

impl ReInvite {
    fn is_pending(&self) -> bool {
        self.tx.final_status().is_none()
    }
}

/// Answered re-INVITEs kept for their retransmissions at most; a caller sending more within
/// timer L (32 s) loses only the absorption of the oldest one's stray retransmissions.
const MAX_LINGERING_REINVITES: usize = 8;

pub struct CallCore {
    state: State,
    timers: Timers,
    invite: Request,
    invite_branch: String,
    invite_cseq: u32,
    /// Where the INVITE came from: responses go back there (symmetric response routing, which is
    /// what survives NAT and what Twilio's edge expects).
    source: Peer,
    local: LocalContact,
    local_tag: String,
    ist: InviteServer,
    dialog: Option<Dialog>,
    /// The caller's re-INVITEs whose transactions still run: at most one without a final
    /// response (the one being negotiated), the others answered and lingering (RFC 6026
    /// Accepted, timer L) only to absorb retransmissions and take their ACK.
    reinvites: VecDeque<ReInvite>,
    /// Server transactions for in-dialog non-INVITE requests and CANCEL, by branch, so that
    /// their retransmissions get the same answer.
    nist: HashMap<String, (Peer, NonInviteServer)>,
    bye: Option<NonInviteClient>,
    bye_hop: Option<Uri>,
    /// The ACK for our 200 arrived.
    confirmed: bool,
    out: VecDeque<(Destination, Bytes)>,
    events: VecDeque<CallEvent>,
}

impl CallCore {
    /// Starts the call on a new INVITE (already authenticated and routed): sends 100 Trying.
    pub fn new(
        now: Instant,
        timers: Timers,
        invite: Request,
        source: Peer,
        local: LocalContact,
    ) -> CallCore {
        let invite_branch = invite.headers.top_branch().unwrap_or_default().to_string();
        let invite_cseq = invite.cseq().map(|c| c.seq).unwrap_or(0);
        let mut core = CallCore {
            state: State::Proceeding,
            timers,
            ist: InviteServer::new(now, timers),
            invite,
            invite_branch,
            invite_cseq,
            source,
            local,
            local_tag: new_tag(),
            dialog: None,
            reinvites: VecDeque::new(),
            nist: HashMap::new(),
            bye: None,
            bye_hop: None,
            confirmed: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        let trying = Response::for_request(&core.invite, 100, None);
        core.ist.respond(now, 100, trying.to_bytes());
        core.drain_ist(now);
        core
    }

    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Where the INVITE came from: the dialog's flow (its connection, over TCP or TLS).
    pub fn source(&self) -> Peer {
        self.source
    }

    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    pub fn is_answered(&self) -> bool {
        self.state == State::Answered
    }

    /// True once nothing more can happen: every transaction finished.
    pub fn is_finished(&self) -> bool {
        self.state == State::Ended
            && self.ist.is_terminated()
            && self.reinvites.is_empty()
            && self.nist.is_empty()
            && self.bye.is_none()
    }

    /// Sends a provisional response (180 while the agent connects).
    pub fn ring(&mut self, now: Instant) {
        if self.state != State::Proceeding {
            return;
        }
        let r = self.dialog_response(180);
        self.ist.respond(now, 180, r.to_bytes());
        self.drain_ist(now);
    }

    /// Answers with 200 and our SDP; the dialog starts.
    pub fn answer(&mut self, now: Instant, sdp: String) {
        if self.state != State::Proceeding {
            return;
        }
        match Dialog::new_uas(&self.invite, &self.local_tag) {
            Ok(d) => self.dialog = Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build dialog from INVITE");
                self.reject(now, 400, None);
                return;
            }
        }
        let mut r = self.dialog_response(200);
        add_answer_headers(&self.local.contact, &mut r, sdp);
        self.ist.respond(now, 200, r.to_bytes());
        self.state = State::Answered;
        self.drain_ist(now);
    }

    /// A response to the INVITE that establishes the dialog (a 1xx with our To tag, the 2xx):
    /// RFC 3261 §12.1.1 has every Record-Route of the request copied into it, in order and
    /// verbatim, so a caller behind a record-routing proxy (Kamailio, Twilio's edge) sends its
    /// ACK, BYE and re-INVITEs back through that proxy rather than straight to our Contact.
    fn dialog_response(&self, status: u16) -> Response {
        let mut r = Response::for_request(&self.invite, status, Some(&self.local_tag));
        for rr in self.invite.headers.get_all_values(&HeaderName::RecordRoute) {
            r.headers.push(HeaderName::RecordRoute, rr);
        }
        r
    }

    /// Rejects the INVITE with a final error (486, 488, 503...), optionally with extra headers.
    pub fn reject(&mut self, now: Instant, status: u16, extra: Option<(HeaderName, String)>) {
        if self.state != State::Proceeding {
            return;
        }
        let mut r = Response::for_request(&self.invite, status, Some(&self.local_tag));
        if let Some((name, value)) = extra {
            r.headers.push(name, value);
        }
        self.ist.respond(now, status, r.to_bytes());
        self.end(now, EndReason::Rejected(status));
        self.drain_ist(now);
    }

    /// Hangs up from our side: BYE through the dialog's route set, with a Reason header that
    /// gives `cause` and `reason`; or, before answer, a final error so the caller can fail over.
    pub fn hangup(&mut self, now: Instant, cause: HangupCause, reason: &str) {
        match self.state {
            State::Proceeding => self.reject(now, 480, None),
            State::Answered => {
                let Some(dialog) = self.dialog.as_mut() else {
                    return;
                };
                let (mut bye, next_hop) = dialog.build_request(
                    Method::Bye,
                    self.local.transport,
                    &self.local.via_host_port,
                    &new_branch(),
                    &self.local.contact,
                );
                bye.headers
                    .push(HeaderName::Reason, cause.reason_header(reason));
                let mut tx = NonInviteClient::new(now, self.timers, bye.to_bytes());
                while let Some(b) = tx.poll_transmit() {
                    self.out.push_back((Destination::Uri(next_hop.clone()), b));
                }
                self.bye = Some(tx);
                self.bye_hop = Some(next_hop);
                self.end(now, EndReason::LocalBye(reason.to_string()));
            }
            State::Ended => {}
        }
    }

    /// Answers the re-INVITE reported by [`CallEvent::ReOffer`]: 200 with `sdp`, or an error
    /// code (488 when the new offer has no codec we can keep).
    pub fn answer_reinvite(&mut self, now: Instant, result: Result<String, u16>) {
        let tag = self.local_tag.clone();
        let Some(re) = self.reinvites.iter_mut().find(|r| r.is_pending()) else {
            return;
        };
        match result {
            Ok(sdp) => {
                let mut r = Response::for_request(&re.req, 200, Some(&tag));
                add_answer_headers(&self.local.contact, &mut r, sdp);
                re.tx.respond(now, 200, r.to_bytes());
            }
            Err(code) => {
                let r = Response::for_request(&re.req, code, Some(&tag));
                re.tx.respond(now, code, r.to_bytes());
            }
        }
        self.drain_reinvites();
    }

    /// A SIP message routed to this call (by Call-ID) arrived from `src`.
    pub fn handle_message(&mut self, now: Instant, msg: Message, src: Peer) {
        match msg {
            Message::Request(req) => self.handle_request(now, req, src),
            Message::Response(resp) => self.handle_response(now, resp),
        }
    }

    fn handle_request(&mut self, now: Instant, req: Request, src: Peer) {
        let branch = req.headers.top_branch().unwrap_or_default().to_string();
        match req.method {
            Method::Invite if branch == self.invite_branch => {
                self.ist.on_request_retransmit(now);
                self.drain_ist(now);
            }
            // RFC 3261 8.2.2.2: our INVITE again (same From tag and CSeq, no To tag) on another
            // branch came round a loop or a fork of the proxies in front: 482, once.
            Method::Invite
                if req.headers.to_tag().is_none()
                    && req.cseq().map(|c| c.seq) == Some(self.invite_cseq)
                    && req.headers.from_tag() == self.invite.headers.from_tag() =>
            {
                self.respond_stateless(&req, 482, src);
            }
            Method::Ack => self.handle_ack(now, &req, &branch),
            Method::Cancel => self.handle_cancel(now, req, branch, src),
            _ => self.handle_in_dialog(now, req, branch, src),
        }
    }

    fn handle_ack(&mut self, now: Instant, req: &Request, branch: &str) {
        let cseq = req.cseq().map(|c| c.seq);
        if Some(self.invite_cseq) == cseq || branch == self.invite_branch {
            let first = self.state == State::Answered && !self.confirmed;
            self.ist.ack_received(now);
            self.drain_ist(now);
            if first {
                self.confirmed = true;
                self.events.push_back(CallEvent::Confirmed);
            }
        } else if let Some(re) = self
            .reinvites
            .iter_mut()
            .find(|r| Some(r.cseq) == cseq || r.branch == branch)
        {
            // The ACK of a 2xx is its own transaction (a new branch); its CSeq number is the
            // re-INVITE's, which is what tells the re-INVITEs apart.
            re.tx.ack_received(now);
            self.drain_reinvites();
        }
    }

    fn handle_cancel(&mut self, now: Instant, req: Request, branch: String, src: Peer) {
        if branch != self.invite_branch {
            self.respond_stateless(&req, 481, src);
            return;
        }
        self.respond_non_invite(now, &req, branch, 200, src);
        if self.state == State::Proceeding {
            let r = Response::for_request(&self.invite, 487, Some(&self.local_tag));
            self.ist.respond(now, 487, r.to_bytes());
            self.end(now, EndReason::CallerCancel);
            self.drain_ist(now);
        }
    }

    fn handle_in_dialog(&mut self, now: Instant, req: Request, branch: String, src: Peer) {
        // A retransmission of a request we already answered gets the same answer.
        if let Some((_, tx)) = self.nist.get_mut(&branch) {
            tx.on_request_retransmit(now);
            self.drain_nist();
            return;
        }
        if req.method == Method::Invite {
            if let Some(re) = self.reinvites.iter_mut().find(|r| r.branch == branch) {
                re.tx.on_request_retransmit(now);
                self.drain_reinvites();
                return;
            }
        }
        let Some(dialog) = self.dialog.as_mut().filter(|d| d.matches_request(&req)) else {
            // Before the 200 there is no dialog to match; after the end, neither.
            self.respond_non_invite(now, &req, branch, 481, src);
            return;
        };
        if dialog.accept_remote_cseq(&req).is_err() {
            self.respond_non_invite(now, &req, branch, 500, src);
            return;
        }
        match req.method {
            Method::Bye => {
                self.respond_non_invite(now, &req, branch, 200, src);
                self.end(now, EndReason::CallerBye);
            }
            Method::Options => self.respond_non_invite(now, &req, branch, 200, src),
            Method::Invite if self.state == State::Answered => {
                if self.reinvites.iter().any(ReInvite::is_pending) {
                    // RFC 3261 14.2: the caller's earlier re-INVITE has no final response yet.
                    // (491 is for glare with a re-INVITE of ours, and we never send one.) An
                    // answered one lingering in Accepted for timer L is no obstacle.
                    let mut r = Response::for_request(&req, 500, Some(&self.local_tag));
                    r.headers.push(
                        HeaderName::RetryAfter,
                        rand::random_range(0..=10u32).to_string(),
                    );
                    self.out.push_back((Destination::Addr(src), r.to_bytes()));
                    return;
                }
                dialog.refresh_target(&req);
                let mut tx = InviteServer::new(now, self.timers);
                let trying = Response::for_request(&req, 100, None);
                tx.respond(now, 100, trying.to_bytes());
                let sdp = req.body.clone();
                let cseq = req.cseq().map_or(0, |c| c.seq);
                if self.reinvites.len() >= MAX_LINGERING_REINVITES {
                    self.reinvites.pop_front();
                }
                self.reinvites.push_back(ReInvite {
                    req,
                    branch,
                    cseq,
                    tx,
                });
                self.drain_reinvites();
                self.events.push_back(CallEvent::ReOffer { sdp });
            }
            // After our BYE the dialog is going away: no new session description.
            Method::Invite => self.respond_stateless(&req, 481, src),
            _ => self.respond_non_invite(now, &req, branch, 405, src),
        }
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let Some(cseq) = resp.cseq() else { return };
        if cseq.method != Method::Bye {
            return;
        }
        if let Some(tx) = self.bye.as_mut() {
            tx.on_response(now, resp.status);
            self.drain_bye();
        }
    }

    fn respond_non_invite(
        &mut self,
        now: Instant,
        req: &Request,
        branch: String,
        status: u16,
        src: Peer,
    ) {
        let mut r = Response::for_request(req, status, Some(&self.local_tag));
        if status == 405 || req.method == Method::Options {
            r.headers.push(HeaderName::Allow, ALLOW);
        }
        let mut tx = NonInviteServer::new(now, self.timers);
        tx.respond(now, status, r.to_bytes());
        while let Some(b) = tx.poll_transmit() {
            self.out.push_back((Destination::Addr(src), b));
        }
        if branch.is_empty() {
            return;
        }
        self.nist.insert(branch, (src, tx));
    }

    fn respond_stateless(&mut self, req: &Request, status: u16, src: Peer) {
        let r = Response::for_request(req, status, Some(&self.local_tag));
        self.out.push_back((Destination::Addr(src), r.to_bytes()));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ist.handle_timeout(now);
        self.drain_ist(now);
        for re in self.reinvites.iter_mut() {
            re.tx.handle_timeout(now);
        }
        self.drain_reinvites();
        for (_, tx) in self.nist.values_mut() {
            tx.handle_timeout(now);
        }
        self.drain_nist();
        if let Some(tx) = self.bye.as_mut() {
            tx.handle_timeout(now);
        }
        self.drain_bye();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.ist.poll_timeout();
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t| t.min(d)));
            }
        };
        for re in &self.reinvites {
            consider(re.tx.poll_timeout());
        }
        for (_, tx) in self.nist.values() {
            consider(tx.poll_timeout());
        }
        consider(self.bye.as_ref().and_then(|tx| tx.poll_timeout()));
        t
    }

    pub fn poll_transmit(&mut self) -> Option<(Destination, Bytes)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    fn end(&mut self, now: Instant, reason: EndReason) {
        if self.state != State::Ended {
            self.state = State::Ended;
            self.events.push_back(CallEvent::Ended { reason });
        }
        // A re-INVITE still waiting for its answer will never get one now: 487 it (RFC 3261
        // 15.1.2), so the caller's transaction ends and ours can finish.
        if let Some(re) = self.reinvites.iter_mut().find(|r| r.is_pending()) {
            let r = Response::for_request(&re.req, 487, Some(&self.local_tag));
            re.tx.respond(now, 487, r.to_bytes());
            self.drain_reinvites();
        }
    }

    fn drain_ist(&mut self, now: Instant) {
        while let Some(b) = self.ist.poll_transmit() {
            self.out.push_back((Destination::Addr(self.source), b));
        }
        while let Some(e) = self.ist.poll_event() {
            if e == TxEvent::AckTimeout && self.state == State::Answered {
                // The caller never confirmed our 200: it is gone or never heard us. Hang up so
                // its side is torn down too (RFC 3261 13.3.1.4).
                self.hangup(now, HangupCause::Timeout, "no ACK for 200 OK");
                if let Some(CallEvent::Ended { reason }) = self.events.back_mut() {
                    *reason = EndReason::AckTimeout;
                }
            }
        }
    }

    fn drain_reinvites(&mut self) {
        for re in self.reinvites.iter_mut() {
            while let Some(b) = re.tx.poll_transmit() {
                self.out.push_back((Destination::Addr(self.source), b));
            }
            while re.tx.poll_event().is_some() {}
        }
        self.reinvites.retain(|r| !r.tx.is_terminated());
    }

    fn drain_nist(&mut self) {
        for (src, tx) in self.nist.values_mut() {
            while let Some(b) = tx.poll_transmit() {
                self.out.push_back((Destination::Addr(*src), b));
            }
            while tx.poll_event().is_some() {}
        }
        self.nist.retain(|_, (_, tx)| !tx.is_terminated());
    }

    fn drain_bye(&mut self) {
        let Some(tx) = self.bye.as_mut() else { return };
        while let Some(b) = tx.poll_transmit() {
            if let Some(hop) = &self.bye_hop {
                self.out.push_back((Destination::Uri(hop.clone()), b));
            }
        }
        while let Some(e) = tx.poll_event() {
            match e {
                TxEvent::Timeout => tracing::info!("no response to our BYE"),
                TxEvent::Response(code) if code >= 200 => {
                    tracing::debug!(code, "BYE answered")
                }
                _ => {}
            }
        }
        if tx.is_terminated() {
            self.bye = None;
        }
    }
}

/// Why we hang up, as the BYE's Reason header tells the caller (RFC 3326, with ITU-T Q.850
/// causes, which Twilio shows as the call's hangup cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangupCause {
    /// The agent ended the conversation, or the gateway shuts down: 16, normal call clearing.
    Normal,
    /// The agent's far end failed: closed, reset, or stopped answering. 41, temporary failure.
    AgentFailure,
    /// A timer ran out: no RTP from the caller, no ACK for our 200. 102, recovery on timer
    /// expiry.
    Timeout,
}

impl HangupCause {
    pub fn q850(self) -> u16 {
        match self {
            HangupCause::Normal => 16,
            HangupCause::AgentFailure => 41,
            HangupCause::Timeout => 102,
        }
    }

    /// `Q.850;cause=N;text="why"`, the text reduced to what a quoted string may carry.
    pub fn reason_header(self, why: &str) -> String {
        let text: String = why
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if c.is_ascii_graphic() || c == ' ' => c,
                _ => '?',
            })
            .take(120)
            .collect();
        format!("Q.850;cause={};text=\"{text}\"", self.q850())
    }
}

/// What an answer (the 200 to the INVITE or to a re-INVITE) carries beside the SDP body.
fn add_answer_headers(contact: &Uri, r: &mut Response, sdp: String) {
    r.headers.push(HeaderName::Contact, format!("<{contact}>"));
    r.headers.push(HeaderName::Allow, ALLOW);
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = Bytes::from(sdp);
}

#[cfg(test)]
mod tests;
