//! The gateway's SIP front door, sans-IO: every datagram from the SIP socket comes here first.
//!
//! It answers what needs no call (OPTIONS, challenges, rejections, malformed requests, stray
//! in-dialog requests), keeping a server transaction for each answer so retransmissions get the
//! same response, and hands everything else to a call: a new call for an admitted INVITE, or
//! the existing call with the same Call-ID.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::call::core::ALLOW;
use crate::config::{Route, Trunk};
use crate::metrics::AuthFailure;
use crate::routing::{Admission, Admitted, Router};
use crate::sip::dialog::Dialog;
use crate::sip::message::{HeaderName, Message, Method, Request, Response};
use crate::sip::transaction::{InviteServer, NonInviteServer, ServerKey, Timers};

/// Seconds a caller should wait before retrying when we are full or draining.
const RETRY_AFTER_SECS: u32 = 5;

/// Vias a new INVITE may carry: Twilio's edge adds two or three, a proxy in front one more.
const MAX_VIAS: usize = 16;

#[derive(Debug)]
pub enum Output {
    Transmit {
        to: SocketAddr,
        bytes: Bytes,
    },
    /// Start a call task for this admitted INVITE.
    NewCall(NewCall),
    /// Give this message to the call with this Call-ID.
    Route {
        call_id: String,
        msg: Message,
        src: SocketAddr,
    },
}

/// Something worth counting, for the driver to add to the metrics (the core holds no lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A final response to a new INVITE answered here (challenges and rejections).
    InviteResponse(u16),
    AuthFailure(AuthFailure),
    Malformed,
}

#[derive(Debug)]
pub struct NewCall {
    pub call_id: String,
    pub invite: Request,
    pub source: SocketAddr,
    pub admitted: Admitted,
}

enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
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
    timers: Timers,
    max_calls: usize,
    draining: bool,
    /// Calls with a task, by Call-ID, and whether each still counts as active.
    calls: HashMap<String, bool>,
    active: usize,
    txs: HashMap<ServerKey, (SocketAddr, ServerTx)>,
    deadlines: BinaryHeap<Reverse<Due>>,
    out: VecDeque<Output>,
    stats: VecDeque<Stat>,
    counters: DispatchCounters,
}

impl Dispatcher {
    pub fn new(router: Router, timers: Timers, max_calls: usize) -> Dispatcher {
        Dispatcher {
            router,
            timers,
            max_calls,
            draining: false,
            calls: HashMap::new(),
            active: 0,
            txs: HashMap::new(),
            deadlines: BinaryHeap::new(),
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

    /// A configuration reload: new trunks, routes and call limit for the INVITEs from now on.
    /// Calls in progress are not touched.
    pub fn reload(&mut self, trunks: Vec<Trunk>, routes: Vec<Route>, max_calls: usize) {
        self.router.reload(trunks, routes);
        self.max_calls = max_calls;
    }

    /// The next thing to count (drain after every input, like [`Dispatcher::poll_output`]).
    pub fn poll_stat(&mut self) -> Option<Stat> {
        self.stats.pop_front()
    }

    /// The call's media and agent stopped: it no longer counts against `max_calls`.
    pub fn call_ended(&mut self, call_id: &str) {
        if let Some(active) = self.calls.get_mut(call_id) {
            if *active {
                *active = false;
                self.active -= 1;
            }
        }
    }

    /// The call's task exited: forget it.
    pub fn call_finished(&mut self, call_id: &str) {
        self.call_ended(call_id);
        self.calls.remove(call_id);
    }

    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: Bytes) {
        // RFC 5626 keep-alives (CRLF) carry nothing to answer.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let msg = match Message::parse(data.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed += 1;
                self.stats.push_back(Stat::Malformed);
                tracing::info!(%src, error = %e, "malformed SIP message");
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

    fn handle_request(&mut self, now: Instant, req: Request, src: SocketAddr) {
        let key = server_key(&req);
        // 1. A retransmission (or the ACK/CANCEL) of a request we answered ourselves.
        if let Some(key) = &key {
            if let Some((_, tx)) = self.txs.get_mut(key) {
                match (tx, &req.method) {
                    (ServerTx::Invite(t), Method::Ack) => t.ack_received(now),
                    (ServerTx::Invite(t), _) => t.on_request_retransmit(now),
                    (ServerTx::NonInvite(t), _) => t.on_request_retransmit(now),
                }
                self.drain_tx(now, key.clone());
                return;
            }
        }
        // 2. Anything for a call we have.
        let call_id = req.call_id().unwrap_or_default().to_string();
        if self.calls.contains_key(&call_id) {
            self.out.push_back(Output::Route {
                call_id,
                msg: Message::Request(req),
                src,
            });
            return;
        }
        // 3. Out of dialog.
        let has_to_tag = req.headers.to_tag().is_some();
        match req.method {
            Method::Ack => {} // For nothing we know: absorbed (never answered).
            Method::Invite if !has_to_tag => self.new_invite(now, req, src, key),
            Method::Options if !has_to_tag && self.draining => {
                // A balancer probing with OPTIONS takes this node out of its set.
                let mut r = Response::for_request(&req, 503, None);
                r.headers
                    .push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
                self.respond(now, &req, src, key, r);
            }
            Method::Options if !has_to_tag => {
                let mut r = Response::for_request(&req, 200, None);
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                self.respond(now, &req, src, key, r);
            }
            Method::Cancel => {
                // RFC 3261 9.2: a CANCEL for an INVITE we already answered with a final
                // response gets 200 and changes nothing; for no INVITE at all, 481.
                let answered = key
                    .as_ref()
                    .and_then(|k| ServerKey::new(&k.branch, &k.sent_by, "INVITE"))
                    .is_some_and(|k| self.txs.contains_key(&k));
                let r = Response::for_request(&req, if answered { 200 } else { 481 }, None);
                self.respond(now, &req, src, key, r);
            }
            _ if has_to_tag => {
                let r = Response::for_request(&req, 481, None);
                self.respond(now, &req, src, key, r);
            }
            _ => {
                let mut r = Response::for_request(&req, 405, None);
                r.headers.push(HeaderName::Allow, ALLOW);
                self.respond(now, &req, src, key, r);
            }
        }
    }

    fn new_invite(&mut self, now: Instant, req: Request, src: SocketAddr, key: Option<ServerKey>) {
        // Max-Forwards spent, or more hops than any sane path (a loop between proxies that
        // do not decrement it): refuse before the answer grows with every hop.
        if req.max_forwards() == Some(0)
            || req
                .headers
                .get_all(&HeaderName::Via)
                .nth(MAX_VIAS)
                .is_some()
        {
            let r = Response::for_request(&req, 483, None);
            return self.respond(now, &req, src, key, r);
        }
        if let Some(req_ext) = req.headers.get(&HeaderName::Require) {
            // We implement no extension a caller could require (no 100rel, no timer).
            let mut r = Response::for_request(&req, 420, None);
            r.headers.push(HeaderName::Unsupported, req_ext.to_string());
            return self.respond(now, &req, src, key, r);
        }
        if self.draining || self.active >= self.max_calls {
            self.counters.rejected += 1;
            tracing::warn!(%src, active = self.active, draining = self.draining, "INVITE refused: 503");
            let mut r = Response::for_request(&req, 503, None);
            r.headers
                .push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
            return self.respond(now, &req, src, key, r);
        }
        let had_credentials = req.headers.get(&HeaderName::ProxyAuthorization).is_some()
            || req.headers.get(&HeaderName::Authorization).is_some();
        match self.router.admit(now, &req, src.ip()) {
            Admission::Accept(admitted) => {
                // A dialog this INVITE could not build (a From without tag, no Contact, a
                // mangled Record-Route) is refused now, with the reason, before any call or
                // agent exists; only admitted INVITEs pay for the check.
                if let Err(e) = Dialog::new_uas(&req, "-") {
                    self.counters.rejected += 1;
                    let mut r = Response::for_request(&req, 400, None);
                    r.reason = printable(&format!("Bad Request ({e})"));
                    return self.respond(now, &req, src, key, r);
                }
                let call_id = req.call_id().unwrap_or_default().to_string();
                self.calls.insert(call_id.clone(), true);
                self.active += 1;
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
            } => {
                self.counters.challenged += 1;
                let failure = if values.iter().any(|v| v.contains("stale=true")) {
                    AuthFailure::StaleNonce
                } else if had_credentials {
                    AuthFailure::WrongCredentials
                } else {
                    AuthFailure::NoCredentials
                };
                self.stats.push_back(Stat::AuthFailure(failure));
                let mut r =
                    Response::for_request(&req, status, Some(&crate::sip::dialog::new_tag()));
                for v in values {
                    r.headers.push(header.clone(), v);
                }
                self.respond(now, &req, src, key, r);
            }
            Admission::Reject { status, reason } => {
                self.counters.rejected += 1;
                // The router's reasons are its own words; these two prefixes are the
                // authentication refusals (a test pins them).
                if reason.starts_with("no trunk admits") {
                    self.stats
                        .push_back(Stat::AuthFailure(AuthFailure::AddressNotAllowed));
                } else if reason.starts_with("authentication failed") {
                    self.stats
                        .push_back(Stat::AuthFailure(AuthFailure::WrongCredentials));
                }
                let r = Response::for_request(&req, status, Some(&crate::sip::dialog::new_tag()));
                self.respond(now, &req, src, key, r);
            }
        }
    }

    /// Sends `resp` through a new server transaction, so retransmissions of `req` (and, for an
    /// INVITE, its ACK) are absorbed here.
    fn respond(
        &mut self,
        now: Instant,
        req: &Request,
        src: SocketAddr,
        key: Option<ServerKey>,
        resp: Response,
    ) {
        let bytes = resp.to_bytes();
        if req.method == Method::Invite && resp.status >= 200 {
            self.stats.push_back(Stat::InviteResponse(resp.status));
        }
        let Some(key) = key else {
            // No RFC 3261 branch: answer once, statelessly.
            self.out.push_back(Output::Transmit { to: src, bytes });
            return;
        };
        let tx = if req.method == Method::Invite {
            let mut t = InviteServer::new(now, self.timers);
            t.respond(now, resp.status, bytes);
            ServerTx::Invite(t)
        } else {
            let mut t = NonInviteServer::new(now, self.timers);
            t.respond(now, resp.status, bytes);
            ServerTx::NonInvite(t)
        };
        self.txs.insert(key.clone(), (src, tx));
        self.drain_tx(now, key);
    }

    fn drain_tx(&mut self, _now: Instant, key: ServerKey) {
        let Some((src, tx)) = self.txs.get_mut(&key) else {
            return;
        };
        let src = *src;
        let (deadline, done) = match tx {
            ServerTx::Invite(t) => {
                while let Some(bytes) = t.poll_transmit() {
                    self.out.push_back(Output::Transmit { to: src, bytes });
                }
                while t.poll_event().is_some() {}
                (t.poll_timeout(), t.is_terminated())
            }
            ServerTx::NonInvite(t) => {
                while let Some(bytes) = t.poll_transmit() {
                    self.out.push_back(Output::Transmit { to: src, bytes });
                }
                while t.poll_event().is_some() {}
                (t.poll_timeout(), t.is_terminated())
            }
        };
        if done {
            self.txs.remove(&key);
        } else if let Some(d) = deadline {
            self.deadlines.push(Reverse(Due(d, key)));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse(Due(when, _))) = self.deadlines.peek() {
            if *when > now {
                break;
            }
            let Some(Reverse(Due(_, key))) = self.deadlines.pop() else {
                break;
            };
            // The heap may hold stale deadlines of a transaction that moved on; asking the
            // transaction itself is what counts.
            if let Some((_, tx)) = self.txs.get_mut(&key) {
                let due = match tx {
                    ServerTx::Invite(t) => t.poll_timeout(),
                    ServerTx::NonInvite(t) => t.poll_timeout(),
                };
                if due.is_none_or(|d| d <= now) {
                    match tx {
                        ServerTx::Invite(t) => t.handle_timeout(now),
                        ServerTx::NonInvite(t) => t.handle_timeout(now),
                    }
                    self.drain_tx(now, key);
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse(Due(t, _))| *t)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn open_transactions(&self) -> usize {
        self.txs.len()
    }
}

/// A transaction's next deadline, ordered by time only.
struct Due(Instant, ServerKey);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
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

fn server_key(req: &Request) -> Option<ServerKey> {
    let via = req.top_via()?;
    let branch = via.branch?;
    let sent_by = match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host,
    };
    ServerKey::new(&branch, &sent_by, req.method.as_str())
}

#[cfg(test)]
mod tests;
