//! Client transactions: RFC 3261 §17.1.1 (INVITE, with RFC 6026's Accepted state) and
//! §17.1.2 (non-INVITE).

use std::time::Instant;

use bytes::Bytes;

use super::{doubled_capped, impl_polling, Core, Due, Timers, TxEvent};

/// States of [`NonInviteClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Sent, no response yet: timer E doubles towards T2.
    Trying,
    /// A provisional arrived: timer E runs at T2.
    Proceeding,
    /// The final arrived; its retransmissions are absorbed until timer K.
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2), for the BYE and OPTIONS we send.
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    core: Core,
    request: Bytes,
    final_status: Option<u16>,
}

impl NonInviteClient {
    /// Queues `request` for transmission at once and starts timers E (T1) and F (64*T1).
    pub fn new(now: Instant, timers: Timers, request: Bytes) -> Self {
        let mut core = Core::new(timers);
        core.send(request.clone());
        let (t1, f) = (core.timers.t1, core.timers.t1x64());
        core.retransmit_after(now, t1);
        core.deadline_after(now, f);
        NonInviteClient {
            state: NonInviteClientState::Trying,
            core,
            request,
            final_status: None,
        }
    }

    /// A response matched this transaction. Provisionals are reported and move Trying to
    /// Proceeding; the first final is reported and starts timer K (T4); later responses, and
    /// statuses outside 100-699, are absorbed.
    pub fn on_response(&mut self, now: Instant, status: u16) {
        self.handle_timeout(now);
        if !matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            return;
        }
        match status {
            100..=199 => self.state = NonInviteClientState::Proceeding,
            200..=699 => {
                self.state = NonInviteClientState::Completed;
                self.final_status = Some(status);
                self.core.stop_retransmit();
                let k = self.core.timers.absorbing(self.core.timers.t4);
                self.core.deadline_after(now, k);
            }
            _ => return,
        }
        self.core.emit(TxEvent::Response(status));
    }

    /// Fires timers E, F and K.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.core.due(now) {
            Some(Due::Deadline) => {
                if self.state != NonInviteClientState::Completed {
                    self.core.emit(TxEvent::Timeout);
                }
                self.state = NonInviteClientState::Terminated;
                self.core.terminate();
            }
            Some(Due::Retransmit) => {
                self.core.send(self.request.clone());
                let t2 = self.core.timers.t2;
                // RFC 3261 §17.1.2.2: once the server has shown it is alive, retransmit at
                // the steady T2 rather than keep ramping.
                let next = match (self.state, self.core.retransmit_interval()) {
                    (NonInviteClientState::Trying, Some(interval)) => doubled_capped(interval, t2),
                    _ => t2,
                };
                self.core.retransmit_after(now, next);
            }
            None => {}
        }
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    /// The final status received, once there is one.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }
}

impl_polling!(NonInviteClient);

/// States of [`InviteClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteClientState {
    /// Sent, no response yet: timer A retransmits, timer B gives up.
    Calling,
    /// A provisional arrived: no more retransmission and, per RFC 3261, no timeout either;
    /// the TU cancels if it tires of waiting.
    Proceeding,
    /// RFC 6026: a 2xx arrived; every 2xx retransmission is reported until timer M so the TU
    /// can ACK it again.
    Accepted,
    /// A 300-699 arrived and was ACKed; its retransmissions get the ACK again until timer D.
    Completed,
    Terminated,
}

/// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026), for the load-test UAC.
#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    core: Core,
    invite: Bytes,
    /// The ACK for the non-2xx final, re-sent on each retransmission of that final.
    ack: Option<Bytes>,
    final_status: Option<u16>,
}

impl InviteClient {
    /// Queues `invite` for transmission at once and starts timers A (T1) and B (64*T1).
    pub fn new(now: Instant, timers: Timers, invite: Bytes) -> Self {
        let mut core = Core::new(timers);
        core.send(invite.clone());
        let (t1, b) = (core.timers.t1, core.timers.t1x64());
        core.retransmit_after(now, t1);
        core.deadline_after(now, b);
        InviteClient {
            state: InviteClientState::Calling,
            core,
            invite,
            ack: None,
            final_status: None,
        }
    }

    /// A response matched this transaction.
    ///
    /// - 1xx (Calling/Proceeding): reported; retransmission and timer B stop.
    /// - 2xx (Calling/Proceeding): reported, enters Accepted with timer M (64*T1); the TU
    ///   ACKs it itself. In Accepted every further 2xx is reported again.
    /// - 300-699 (Calling/Proceeding): reported once; `ack` is called to build the ACK, which
    ///   is sent now and again for every retransmission of the final; timer D starts.
    ///
    /// Anything else (a 1xx or non-2xx after a 2xx, a 2xx after a non-2xx, a status outside
    /// 100-699) is absorbed.
    pub fn on_response(&mut self, now: Instant, status: u16, ack: impl FnOnce() -> Bytes) {
        self.handle_timeout(now);
        let live = matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        );
        match (self.state, status) {
            (_, 100..=199) if live => {
                self.state = InviteClientState::Proceeding;
                self.core.stop_retransmit();
                self.core.clear_deadline();
            }
            (_, 200..=299) if live => {
                self.state = InviteClientState::Accepted;
                self.final_status = Some(status);
                self.core.stop_retransmit();
                let m = self.core.timers.t1x64();
                self.core.deadline_after(now, m);
            }
            (InviteClientState::Accepted, 200..=299) => {}
            (_, 300..=699) if live => {
                self.state = InviteClientState::Completed;
                self.final_status = Some(status);
                self.core.stop_retransmit();
                let d = self.core.timers.timer_d();
                self.core.deadline_after(now, d);
                let ack = ack();
                self.ack = Some(ack.clone());
                self.core.send(ack);
            }
            (InviteClientState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.core.send(ack.clone());
                }
                return;
            }
            _ => return,
        }
        self.core.emit(TxEvent::Response(status));
    }

    /// Fires timers A, B, D and M.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.core.due(now) {
            Some(Due::Deadline) => {
                if self.state == InviteClientState::Calling {
                    self.core.emit(TxEvent::Timeout);
                }
                self.state = InviteClientState::Terminated;
                self.core.terminate();
            }
            Some(Due::Retransmit) => {
                self.core.send(self.invite.clone());
                // Timer A doubles without a cap (RFC 3261 §17.1.1.2); timer B ends it first.
                if let Some(interval) = self.core.retransmit_interval() {
                    self.core.retransmit_after(now, interval.saturating_mul(2));
                }
            }
            None => {}
        }
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// The final status received, once there is one.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }
}

impl_polling!(InviteClient);
