//! The gateway's SIP front door, sans-IO: every datagram from the SIP socket comes here first.
//!
//! It answers what needs no call (OPTIONS, challenges, rejections, malformed requests, stray
//! in-dialog requests) statelessly, as Kamailio's `sl` does: one response per request received,
//! nothing stored, nothing retransmitted, so a stranger's request costs no memory and is never
//! amplified. A retransmitted request simply gets the same answer again (the To tag is derived
//! from the request, so it is the same tag), and the ACK of such an answer is absorbed. Only
//! an admitted INVITE creates state: a new call, or the existing call with the same Call-ID.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::Instant;

use bytes::Bytes;

use crate::call::core::ALLOW;
use crate::config::{Route, Trunk};
use crate::metrics::AuthFailure;
use crate::routing::{Admission, Admitted, ChallengeWhy, RejectWhy, Router};
use crate::sip::dialog::Dialog;
use crate::sip::guard::{Ban, BanReason, Drop, Guard, Limits};
use crate::sip::message::{peek_call_id, HeaderName, Message, Method, Request, Response};
use crate::sip::transport::Peer;
use inspect::{inspect, Refusal};
use quiet::Quiet;

/// Seconds a caller should wait before retrying when we are full or draining.
const RETRY_AFTER_SECS: u32 = 5;

/// How long repeated rejections from one source are summed up before their next log line.
const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// (source, kind) pairs the log aggregation tracks at most.
const LOG_SOURCES: usize = 4096;

/// Vias a new INVITE may carry: Twilio's edge adds two or three, a proxy in front one more.
const MAX_VIAS: usize = 16;

#[derive(Debug)]
pub enum Output {
    Transmit {
        to: Peer,
        bytes: Bytes,
    },
    /// Start a call task for this admitted INVITE.
    NewCall(NewCall),
    /// Give this message to the call with this Call-ID.
    Route {
        call_id: String,
        msg: Message,
        src: Peer,
    },
}

/// Something worth counting, for the driver to add to the metrics (the core holds no lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A final response to a new INVITE answered here (challenges and rejections).
    InviteResponse(u16),
    AuthFailure(AuthFailure),
    Malformed,
    /// A datagram dropped unanswered by the per-source limits.
    Dropped(Drop),
    /// A source was banned (logged once, here); its stream connections are closed.
    Banned(BanReason, std::net::IpAddr),
}

/// Where a call with a task is, as the front door counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Admitted, not answered yet.
    Setup,
    /// Answered, media and agent running.
    Up,
    /// Media and agent stopped; the task may still absorb retransmissions.
    Ended,
}

#[derive(Debug)]
pub struct NewCall {
    pub call_id: String,
    pub invite: Request,
    pub source: Peer,
    pub admitted: Admitted,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchCounters {
    pub malformed: u64,
    pub rejected: u64,
    pub challenged: u64,
    pub calls_started: u64,
}

pub struct Dispatcher {
    router: Router,
    guard: Guard,
    quiet: Quiet,
    max_calls: usize,
    draining: bool,
    /// The driver is behind on the SIP socket (see [`Dispatcher::set_backlogged`]).
    backlogged: bool,
    /// Calls with a task, by Call-ID, and where each is.
    calls: HashMap<String, Phase>,
    /// Calls in `Setup` or `Up` (they count against `max_calls`).
    active: usize,
    /// Calls in `Setup` (they count against `max_setup`).
    in_setup: usize,
    max_setup: usize,
    /// Keys the To tags of stateless answers (see [`Dispatcher::stateless_tag`]).
    tag_key: std::hash::RandomState,
    out: VecDeque<Output>,
    stats: VecDeque<Stat>,
    counters: DispatchCounters,
}

impl Dispatcher {
    pub fn new(now: Instant, router: Router, max_calls: usize, limits: Limits) -> Dispatcher {
        Dispatcher {
            guard: Guard::new(now, limits.clone(), router.allowlists()),
            quiet: Quiet::new(now, LOG_WINDOW, LOG_SOURCES),
            router,
            max_calls,
            draining: false,
            backlogged: false,
            calls: HashMap::new(),
            active: 0,
            in_setup: 0,
            max_setup: limits.max_setup,
            tag_key: std::hash::RandomState::new(),
            out: VecDeque::new(),
            stats: VecDeque::new(),
            counters: DispatchCounters::default(),
        }
    }

    pub fn active_calls(&self) -> usize {
        self.active
    }

    pub fn counters(&self) -> DispatchCounters {
        self.counters
    }

    /// Stop taking calls (503 with Retry-After) while the active ones finish.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The driver's word that datagrams queue faster than they are handled (a read that did
    /// not empty the socket). Until it says otherwise, datagrams from sources that are neither
    /// trusted nor customers are dropped unparsed unless their Call-ID is a call's: the calls
    /// that are up and the trunks keep flowing, and the kernel's queue drains of strangers
    /// instead of dropping at random.
    pub fn set_backlogged(&mut self, backlogged: bool) {
        self.backlogged = backlogged;
    }

    /// A configuration reload: new trunks, routes and call limit for the INVITEs from now on.
    /// Calls in progress are not touched.
    pub fn reload(
        &mut self,
        trunks: Vec<Trunk>,
        routes: Vec<Route>,
        max_calls: usize,
        limits: Limits,
    ) {
        self.router.reload(trunks, routes);
        self.max_setup = limits.max_setup;
        self.guard.reload(limits, self.router.allowlists());
        self.max_calls = max_calls;
    }

    /// The bans in force at `now`.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        self.guard.bans(now)
    }

    /// Lifts the ban on `ip` (the admin API); false when there was none.
    pub fn lift_ban(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        let lifted = self.guard.lift(now, ip);
        if lifted {
            tracing::info!(%ip, "ban lifted");
        }
        lifted
    }

    /// The next thing to count (drain after every input, like [`Dispatcher::poll_output`]).
    pub fn poll_stat(&mut self) -> Option<Stat> {
        self.stats.pop_front()
    }

    /// Call tasks alive: active calls and ended ones still absorbing retransmissions.
    pub fn call_tasks(&self) -> usize {
        self.calls.len()
    }

    /// Calls admitted and not answered yet.
    pub fn calls_in_setup(&self) -> usize {
        self.in_setup
    }

    /// The call was answered: it no longer counts against `max_setup`.
    pub fn call_answered(&mut self, call_id: &str) {
        if let Some(phase) = self.calls.get_mut(call_id) {
            if *phase == Phase::Setup {
                *phase = Phase::Up;
                self.in_setup -= 1;
            }
        }
    }

    /// The call's media and agent stopped: it no longer counts against `max_calls`.
    pub fn call_ended(&mut self, call_id: &str) {
        if let Some(phase) = self.calls.get_mut(call_id) {
            match *phase {
                Phase::Setup => self.in_setup -= 1,
                Phase::Up => {}
                Phase::Ended => return,
            }
            *phase = Phase::Ended;
            self.active -= 1;
        }
    }

    /// The call's task exited: forget it.
    pub fn call_finished(&mut self, call_id: &str) {
        self.call_ended(call_id);
        self.calls.remove(call_id);
    }

    pub fn handle_datagram(&mut self, now: Instant, src: impl Into<Peer>, data: Bytes) {
        let src = src.into();
        if self.backlogged && !self.first_in_line(now, src, &data) {
            self.stats.push_back(Stat::Dropped(Drop::Shed));
            return;
        }
        // Judged by its source before it is even parsed: a flood costs a lookup per packet.
        if let Err(why) = self.guard.check(now, src.ip()) {
            self.stats.push_back(Stat::Dropped(why));
            if why == Drop::OverRate {
                self.banned(src, BanReason::Rate);
            }
            return;
        }
        // RFC 5626 keep-alives (CRLF) carry nothing to answer.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let msg = match Message::parse(data.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed += 1;
                self.stats.push_back(Stat::Malformed);
                if self.quiet.first(now, src.ip(), "malformed") {
                    tracing::info!(%src, error = %e, "malformed SIP message");
                }
                if let Some(bytes) = crate::sip::transport::bad_request(&data, &e.to_string()) {
                    self.out.push_back(Output::Transmit { to: src, bytes });
                }
                return;
            }
        };
        match msg {
            Message::Response(r) => {
                // Responses belong to our BYEs; anything else is stray.
                if let Some(call_id) = r.call_id().map(str::to_string) {
                    if self.calls.contains_key(&call_id) {
                        self.out.push_back(Output::Route {
                            call_id,
                            msg: Message::Response(r),
                            src,
                        });
                    }
                }
            }
            Message::Request(req) => self.handle_request(now, req, src),
        }
    }

    /// What is still served while the socket is backlogged: trusted sources, customers, and
    /// anything for a call that exists (its ACK, BYE, re-INVITE, or the answer to our BYE,
    /// from whatever address).
    fn first_in_line(&self, now: Instant, src: Peer, data: &[u8]) -> bool {
        self.guard.is_trusted(src.ip())
            || self.guard.is_customer(now, src.ip())
            || peek_call_id(data).is_some_and(|id| self.calls.contains_key(id))
    }

    fn handle_request(&mut self, now: Instant, req: Request, src: Peer) {
        // 1. Anything for a call we have.
        let call_id = req.call_id().unwrap_or_default().to_string();
        if self.calls.contains_key(&call_id) {
            self.out.push_back(Output::Route {
                call_id,
                msg: Message::Request(req),
                src,
            });
            return;
        }
        // 2. Out of dialog: answered statelessly.
        let has_to_tag = req.headers.to_tag().is_some();
        match req.method {
            // The ACK of a stateless answer (it carries the To tag `stateless_tag` derives
            // again), or of nothing we know: absorbed, never answered, nothing looked up.
            Method::Ack => {}
            Method::Invite if !has_to_tag => self.new_invite(now, req, src),
            Method::Options if !has_to_tag && self.draining => {
                // A balancer probing with OPTIONS takes this node out of its set.
                let mut r = self.answer(&req, 503);
                r.headers
                    .push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
                self.respond(&req, src, r);
            }
            Method::Options if !has_to_tag => {
                if let Err(refusal) = inspect(&req) {
                    return self.refuse(&req, src, refusal);
                }
                let mut r = self.answer(&req, 200);
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                self.respond(&req, src, r);
            }
            // RFC 3261 9.2: no transaction matches (we keep none for what we answered
            // ourselves, and a call's INVITE would have been routed to it above): 481.
            _ if has_to_tag || req.method == Method::Cancel => {
                let r = self.answer(&req, 481);
                self.respond(&req, src, r);
            }
            _ => {
                let mut r = self.answer(&req, 405);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.respond(&req, src, r);
            }
        }
    }

    fn refuse(&mut self, req: &Request, src: Peer, refusal: Refusal) {
        let mut r = self.answer(req, refusal.status);
        if let Some((name, value)) = refusal.header {
            r.headers.push(name, value);
        }
        self.respond(req, src, r);
    }

    fn new_invite(&mut self, now: Instant, req: Request, src: Peer) {
        // Max-Forwards spent, or more hops than any sane path (a loop between proxies that
        // do not decrement it): refuse before the answer grows with every hop.
        if req.max_forwards() == Some(0)
            || req
                .headers
                .get_all(&HeaderName::Via)
                .nth(MAX_VIAS)
                .is_some()
        {
            let r = self.answer(&req, 483);
            return self.respond(&req, src, r);
        }
        if let Err(refusal) = inspect(&req) {
            self.counters.rejected += 1;
            return self.refuse(&req, src, refusal);
        }
        if self.draining || self.active >= self.max_calls || self.in_setup >= self.max_setup {
            self.counters.rejected += 1;
            if self.quiet.first(now, src.ip(), "unavailable") {
                tracing::warn!(%src, active = self.active, in_setup = self.in_setup,
                    draining = self.draining, "INVITE refused: 503");
            }
            let mut r = self.answer(&req, 503);
            r.headers
                .push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
            return self.respond(&req, src, r);
        }
        let had_credentials = req.headers.get(&HeaderName::ProxyAuthorization).is_some()
            || req.headers.get(&HeaderName::Authorization).is_some();
        match self.router.admit(now, &req, src.ip()) {
            Admission::Accept(admitted) => {
                if had_credentials {
                    self.guard.auth_succeeded(now, src.ip());
                }
                // A dialog this INVITE could not build (a From without tag, no Contact, a
                // mangled Record-Route) is refused now, with the reason, before any call or
                // agent exists; only admitted INVITEs pay for the check.
                if let Err(e) = Dialog::new_uas(&req, "-") {
                    self.counters.rejected += 1;
                    let mut r = self.answer(&req, 400);
                    r.reason = printable(&format!("Bad Request ({e})"));
                    return self.respond(&req, src, r);
                }
                let call_id = req.call_id().unwrap_or_default().to_string();
                self.calls.insert(call_id.clone(), Phase::Setup);
                self.active += 1;
                self.in_setup += 1;
                self.counters.calls_started += 1;
                self.out.push_back(Output::NewCall(NewCall {
                    call_id,
                    invite: req,
                    source: src,
                    admitted,
                }));
            }
            Admission::Challenge {
                status,
                header,
                values,
                failure,
            } => {
                self.counters.challenged += 1;
                let failure = match failure {
                    None => AuthFailure::NoCredentials,
                    Some(ChallengeWhy::Stale(e)) => {
                        if self.quiet.first(now, src.ip(), "stale_nonce") {
                            tracing::info!(%src, "{e}; challenging again with stale=true");
                        }
                        AuthFailure::StaleNonce
                    }
                    Some(ChallengeWhy::Wrong(e)) => {
                        if self.quiet.first(now, src.ip(), "auth_failed") {
                            tracing::warn!(%src, "authentication failed: {e}");
                        }
                        self.auth_failed(now, src);
                        AuthFailure::WrongCredentials
                    }
                };
                self.stats.push_back(Stat::AuthFailure(failure));
                let mut r = self.answer(&req, status);
                for v in values {
                    r.headers.push(header.clone(), v);
                }
                self.respond(&req, src, r);
            }
            Admission::Reject {
                status,
                why,
                reason,
            } => {
                self.counters.rejected += 1;
                if self.quiet.first(now, src.ip(), "rejected") {
                    tracing::warn!(%src, status, "INVITE rejected: {reason}");
                }
                match why {
                    RejectWhy::NoTrunk => self
                        .stats
                        .push_back(Stat::AuthFailure(AuthFailure::AddressNotAllowed)),
                    RejectWhy::AuthFailed => {
                        self.auth_failed(now, src);
                        self.stats
                            .push_back(Stat::AuthFailure(AuthFailure::WrongCredentials));
                    }
                    RejectWhy::NoRoute => {}
                }
                let r = self.answer(&req, status);
                self.respond(&req, src, r);
            }
        }
    }

    fn auth_failed(&mut self, now: Instant, src: Peer) {
        if self.guard.auth_failed(now, src.ip()).is_some() {
            self.banned(src, BanReason::AuthFailures);
        }
    }

    /// The one log line a ban gets (its packets are then dropped without a word).
    fn banned(&mut self, src: Peer, reason: BanReason) {
        tracing::warn!(
            ip = %src.ip(),
            reason = reason.as_str(),
            "source banned: its SIP packets are dropped unanswered until the ban ends"
        );
        self.stats.push_back(Stat::Banned(reason, src.ip()));
    }

    /// Sends `resp` once, statelessly: no transaction, no retransmission. A retransmitted
    /// request is answered again by the same path.
    fn respond(&mut self, req: &Request, src: Peer, resp: Response) {
        if req.method == Method::Invite && resp.status >= 200 {
            self.stats.push_back(Stat::InviteResponse(resp.status));
        }
        self.out.push_back(Output::Transmit {
            to: src,
            bytes: resp.to_bytes(),
        });
    }

    /// A stateless answer to `req`: its To gains the tag RFC 3261 8.2.6.2 requires of a final
    /// response (unless the request already had one).
    fn answer(&self, req: &Request, status: u16) -> Response {
        Response::for_request(req, status, Some(&self.stateless_tag(req)))
    }

    /// The To tag of a stateless final answer to an INVITE: a keyed hash of the Call-ID and the
    /// From tag, so every retransmission of the INVITE gets the same answer, tag included, and
    /// the ACK for it (which carries that tag, RFC 3261 17.1.1.3) can be told from any other
    /// by computing it again, without remembering anything.
    pub fn stateless_tag(&self, req: &Request) -> String {
        let h = self.tag_key.hash_one((
            req.call_id().unwrap_or_default(),
            req.headers.from_tag().unwrap_or_default(),
        ));
        format!("sl{h:016x}")
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

/// `text` fit for a reason phrase: printable ASCII only, at most 120 bytes.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(120)
        .collect()
}

mod inspect;
mod quiet;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod torture_tests;
