//! SIP transactions (RFC 3261 §17, with RFC 6026's "Accepted" state) as sans-IO state machines.
//!
//! The machines never see a SIP message. The layer above parses, matches a message to a
//! transaction ([`ServerKey`], [`ClientKey`]) and hands in status codes plus the bytes to send,
//! already serialized. That keeps this module independent of the message codec, and makes a
//! retransmission a reference-count bump of a [`Bytes`].
//!
//! Driving a machine: after every input (`new`, `respond`, `on_*`, `ack_received`,
//! `handle_timeout`) drain `poll_transmit` and `poll_event` until `None`, then arm one timer for
//! `poll_timeout`. Every input first fires the timers already due at its `now`, so inputs take
//! effect in time order even when the driver's timer wakes late, and after any input
//! `poll_timeout` is either `None` or later than that `now`.
//!
//! Only unreliable transport (UDP) is modelled: that is all Twilio's trunk speaks, and the
//! reliable-transport variants (timers A, E, G off; D, I, J, K zero) would be dead code.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use client::{InviteClient, InviteClientState, NonInviteClient, NonInviteClientState};
pub use server::{InviteServer, InviteServerState, NonInviteServer, NonInviteServerState};

/// The RFC 3261 branch prefix; a branch without it comes from an RFC 2543 element.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// RFC 3261 §17.1.1.1 timer base values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate: first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Cap on the retransmission interval of non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// How long a message may linger in the network (5 s).
    pub t4: Duration,
    /// The transport is a stream (TCP, TLS): it delivers or fails, so requests and non-2xx
    /// finals are not retransmitted and the timers that only absorb stray retransmissions
    /// (D, I, J, K) are zero (RFC 3261 §17). The 2xx to an INVITE is still retransmitted
    /// until its ACK: §13.3.1.4 makes that end to end, whatever the hop's transport.
    pub reliable: bool,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            reliable: false,
        }
    }
}

impl Timers {
    /// RFC 3261 §17.1.1.2 asks for timer D "at least 32 seconds" on UDP.
    const TIMER_D_FLOOR: Duration = Duration::from_secs(32);
    /// A zero timer would make a deadline equal to `now` and spin the driver.
    const FLOOR: Duration = Duration::from_millis(1);

    /// Values the machines can rely on: non-zero, and T2 no shorter than T1 so the doubling
    /// "capped at T2" never shrinks the interval below where it started.
    fn sanitized(self) -> Self {
        let t1 = self.t1.max(Self::FLOOR);
        Timers {
            t1,
            t2: self.t2.max(t1),
            t4: self.t4.max(Self::FLOOR),
            reliable: self.reliable,
        }
    }

    /// The same timers for a dialog on a stream transport.
    pub fn reliable(self) -> Self {
        Timers {
            reliable: true,
            ..self
        }
    }

    /// A wait that only absorbs retransmissions: none over a stream.
    fn absorbing(&self, wait: Duration) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            wait
        }
    }

    /// Timers B, F, H, J, L and M, and the RFC 3261 §13.3.1.4 2xx give-up time.
    fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D covers the server's retransmissions of a non-2xx final, which last timer H
    /// (64*T1), so with a raised T1 the 32 s floor alone would be too short.
    fn timer_d(&self) -> Duration {
        self.absorbing(self.t1x64().max(Self::TIMER_D_FLOOR))
    }
}

/// What a transaction reports to the layer above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// INVITE server: no ACK came for our final response (timer H, or 64*T1 for a 2xx per
    /// RFC 3261 §13.3.1.4). For a 2xx the TU must send BYE.
    AckTimeout,
    /// Client: no final response within timer B / F.
    Timeout,
    /// Client: a response the TU must see: every provisional, the first final, and for an
    /// INVITE every 2xx (RFC 6026 §7.2: the TU ACKs each one). Retransmitted non-2xx finals
    /// are absorbed.
    Response(u16),
    /// Nothing more will happen; the layer may forget this transaction.
    Terminated,
}

/// The surface the driver needs from every machine, so one loop can run them all.
pub trait Transaction {
    /// Fires every timer due at or before `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Next datagram to send to the peer; drain until `None` after every input.
    fn poll_transmit(&mut self) -> Option<Bytes>;
    /// Next event for the layer above; drain until `None` after every input.
    fn poll_event(&mut self) -> Option<TxEvent>;
    /// When to call `handle_timeout` next; `None` when no timer runs (always once terminated).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether the transaction is over and may be dropped.
    fn is_terminated(&self) -> bool;
}

/// RFC 3261 §17.2.3 server-transaction key: top Via branch, Via sent-by and method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    /// The top Via's branch, verbatim (it starts with [`BRANCH_COOKIE`]).
    pub branch: String,
    /// The top Via's sent-by (`host[:port]`), trimmed and ASCII-lowercased.
    pub sent_by: String,
    /// The request method, with ACK mapped to INVITE.
    pub method: String,
}

impl ServerKey {
    /// Builds the key for a request, or `None` when RFC 3261 matching does not apply: a branch
    /// without the magic cookie (RFC 2543 matching, which we do not support) or an empty
    /// sent-by or method.
    ///
    /// ACK maps to INVITE so the ACK for a non-2xx final finds its INVITE transaction; CANCEL
    /// keeps its own method because it is a transaction of its own (see
    /// [`ServerKey::cancelled_invite`]). Method names are case-sensitive (RFC 3261 §7.1), so
    /// only "ACK" maps. The sent-by is compared as text without adding a default port: the key
    /// only has to match retransmissions, ACKs and CANCELs of the same request, all of which
    /// copy the top Via; lowercasing merely forgives a peer that changes the host's case.
    pub fn new(branch: &str, sent_by: &str, method: &str) -> Option<ServerKey> {
        let branch = branch.trim();
        let sent_by = sent_by.trim();
        let method = method.trim();
        if !branch.starts_with(BRANCH_COOKIE) || sent_by.is_empty() || method.is_empty() {
            return None;
        }
        let method = if method == "ACK" { "INVITE" } else { method };
        Some(ServerKey {
            branch: branch.to_owned(),
            sent_by: sent_by.to_ascii_lowercase(),
            method: method.to_owned(),
        })
    }

    /// For a CANCEL's key, the key of the INVITE transaction it cancels (RFC 3261 §9.2: same
    /// rule, method INVITE); `None` for any other method.
    pub fn cancelled_invite(&self) -> Option<ServerKey> {
        (self.method == "CANCEL").then(|| ServerKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: "INVITE".to_owned(),
        })
    }
}

/// RFC 3261 §17.1.3 client-transaction key: the top Via branch of the response and the method
/// of its CSeq (so a response to a CANCEL does not land in the INVITE sharing its branch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// The branch we put in the request's Via.
    pub branch: String,
    /// The request method, as in the response's CSeq.
    pub method: String,
}

impl ClientKey {
    /// `None` when the branch lacks the magic cookie (we always send one, so such a response
    /// cannot be ours) or the method is empty.
    pub fn new(branch: &str, cseq_method: &str) -> Option<ClientKey> {
        let branch = branch.trim();
        let method = cseq_method.trim();
        if !branch.starts_with(BRANCH_COOKIE) || method.is_empty() {
            return None;
        }
        Some(ClientKey {
            branch: branch.to_owned(),
            method: method.to_owned(),
        })
    }
}

/// A fresh branch for a request we originate: the cookie plus 128 random bits, which makes a
/// collision with any other transaction negligible (RFC 3261 §8.1.1.7 wants it unique in
/// space and time).
pub fn new_branch<R: rand::Rng + ?Sized>(rng: &mut R) -> String {
    let (a, b): (u64, u64) = (rng.random(), rng.random());
    format!("{BRANCH_COOKIE}{a:016x}{b:016x}")
}

/// A running retransmission timer (A, E, G, or the 2xx timer of RFC 3261 §13.3.1.4).
#[derive(Clone, Copy, Debug)]
struct Retransmit {
    at: Instant,
    /// The interval that led to `at`; the next one is derived from it.
    interval: Duration,
}

/// Which of a machine's two timers is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// The timer that ends the current state (B, D, F, H, I, J, K, L, M, 2xx give-up).
    Deadline,
    Retransmit,
}

/// Timers and output queues shared by the four machines. Each state runs at most one
/// retransmission timer and one state-ending deadline, which is all RFC 3261 §17 needs.
#[derive(Debug)]
struct Core {
    timers: Timers,
    retransmit: Option<Retransmit>,
    deadline: Option<Instant>,
    transmit: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
    terminated: bool,
}

impl Core {
    fn new(timers: Timers) -> Self {
        Core {
            timers: timers.sanitized(),
            retransmit: None,
            deadline: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            terminated: false,
        }
    }

    fn send(&mut self, bytes: Bytes) {
        if !self.terminated {
            self.transmit.push_back(bytes);
        }
    }

    fn emit(&mut self, event: TxEvent) {
        if !self.terminated {
            self.events.push_back(event);
        }
    }

    /// Starts (or restarts) the retransmission timer `interval` after `now`; over a stream,
    /// nothing (see [`Core::retransmit_2xx_after`]). An `Instant` overflow means "never",
    /// which is what an absurd configured interval deserves.
    fn retransmit_after(&mut self, now: Instant, interval: Duration) {
        if !self.timers.reliable {
            self.retransmit_2xx_after(now, interval);
        }
    }

    /// The retransmission timer whatever the transport: the INVITE's 2xx's.
    fn retransmit_2xx_after(&mut self, now: Instant, interval: Duration) {
        self.retransmit = now
            .checked_add(interval)
            .map(|at| Retransmit { at, interval });
    }

    fn stop_retransmit(&mut self) {
        self.retransmit = None;
    }

    /// The interval of the retransmission timer that is firing now.
    fn retransmit_interval(&self) -> Option<Duration> {
        self.retransmit.map(|r| r.interval)
    }

    fn deadline_after(&mut self, now: Instant, after: Duration) {
        self.deadline = now.checked_add(after);
    }

    fn clear_deadline(&mut self) {
        self.deadline = None;
    }

    /// The deadline wins a tie or a late wake-up: it ends the state, so a retransmission
    /// due at the same time would be sent from a transaction that is already over.
    fn due(&self, now: Instant) -> Option<Due> {
        if self.terminated {
            return None;
        }
        if self.deadline.is_some_and(|d| d <= now) {
            return Some(Due::Deadline);
        }
        if self.retransmit.is_some_and(|r| r.at <= now) {
            return Some(Due::Retransmit);
        }
        None
    }

    /// Unsent datagrams are dropped: they were queued at least a timer ago, and the contract
    /// is that nothing leaves a terminated transaction.
    fn terminate(&mut self) {
        if self.terminated {
            return;
        }
        self.events.push_back(TxEvent::Terminated);
        self.terminated = true;
        self.retransmit = None;
        self.deadline = None;
        self.transmit.clear();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.terminated {
            return None;
        }
        match (self.deadline, self.retransmit.map(|r| r.at)) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        }
    }
}

/// Doubling with a ceiling: timers E and G and the 2xx retransmissions (T1, 2T1, ... T2).
fn doubled_capped(interval: Duration, cap: Duration) -> Duration {
    interval.saturating_mul(2).min(cap)
}

/// The output half of every machine is the same [`Core`]; this keeps the four copies of the
/// polling methods and the [`Transaction`] impl identical.
macro_rules! impl_polling {
    ($ty:ty) => {
        impl $ty {
            /// Next datagram to send to the peer; drain until `None` after every input.
            pub fn poll_transmit(&mut self) -> Option<Bytes> {
                self.core.transmit.pop_front()
            }

            /// Next event for the layer above; drain until `None` after every input.
            pub fn poll_event(&mut self) -> Option<TxEvent> {
                self.core.events.pop_front()
            }

            /// When to call `handle_timeout` next; `None` when no timer runs (always once
            /// terminated).
            pub fn poll_timeout(&self) -> Option<Instant> {
                self.core.poll_timeout()
            }

            /// Whether the transaction is over and may be dropped.
            pub fn is_terminated(&self) -> bool {
                self.core.terminated
            }
        }

        impl $crate::sip::transaction::Transaction for $ty {
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                <$ty>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
            fn is_terminated(&self) -> bool {
                <$ty>::is_terminated(self)
            }
        }
    };
}
use impl_polling;
