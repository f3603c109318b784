//! Server transactions: RFC 3261 §17.2.1 (INVITE, with RFC 6026's Accepted state) and
//! §17.2.2 (non-INVITE).

use std::time::Instant;

use bytes::Bytes;

use super::{doubled_capped, impl_polling, Core, Due, Timers, TxEvent};

/// States of [`InviteServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteServerState {
    /// The INVITE is with the TU; provisionals go out, none is retransmitted.
    Proceeding,
    /// RFC 6026: a 2xx went out. Before the ACK it is retransmitted here; after it, INVITE
    /// and ACK retransmissions are absorbed until timer L.
    Accepted,
    /// A 300-699 went out and is retransmitted on timer G until the ACK.
    Completed,
    /// The ACK for the 300-699 arrived; its retransmissions are absorbed until timer I.
    Confirmed,
    Terminated,
}

/// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026).
///
/// The 2xx is retransmitted here rather than by the TU (RFC 3261 §13.3.1.4 gives that job to
/// the UAS core): the schedule is the same as timer G, and one machine owning every
/// retransmission of the INVITE's responses keeps the layer above free of timers. The ACK for
/// a 2xx is matched by dialog and the one for a non-2xx by branch; both end up in
/// [`InviteServer::ack_received`].
#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    core: Core,
    /// The most recent response sent: what an INVITE retransmission is answered with.
    last: Option<Bytes>,
    final_status: Option<u16>,
    /// Accepted only: the ACK for our 2xx has arrived, so retransmissions stop.
    acked: bool,
}

impl InviteServer {
    /// A transaction for a new INVITE, in Proceeding. It sends nothing by itself: the layer
    /// sends "100 Trying" at once through [`InviteServer::respond`].
    pub fn new(_now: Instant, timers: Timers) -> Self {
        InviteServer {
            state: InviteServerState::Proceeding,
            core: Core::new(timers),
            last: None,
            final_status: None,
            acked: false,
        }
    }

    /// Sends a response from the TU: 1xx stays in Proceeding, 2xx enters Accepted, 300-699
    /// enters Completed. After a final, further responses are discarded (RFC 3261 §17.2.1);
    /// so is a status outside 100-699.
    pub fn respond(&mut self, now: Instant, status: u16, bytes: Bytes) {
        self.handle_timeout(now);
        if self.state != InviteServerState::Proceeding {
            return;
        }
        let t1 = self.core.timers.t1;
        let next = match status {
            100..=199 => None,
            200..=299 => Some(InviteServerState::Accepted),
            300..=699 => Some(InviteServerState::Completed),
            _ => return,
        };
        self.last = Some(bytes.clone());
        self.core.send(bytes);
        if let Some(state) = next {
            // Timer G, or the 2xx retransmissions, and the 64*T1 that ends either: timer H,
            // or the 2xx give-up which doubles as RFC 6026 timer L.
            self.state = state;
            self.final_status = Some(status);
            if state == InviteServerState::Accepted {
                self.core.retransmit_2xx_after(now, t1);
            } else {
                self.core.retransmit_after(now, t1);
            }
            let limit = self.core.timers.t1x64();
            self.core.deadline_after(now, limit);
        }
    }

    /// The INVITE arrived again: resend the latest response, unless the ACK already showed
    /// the peer has our final (Confirmed, or Accepted after the ACK).
    pub fn on_request_retransmit(&mut self, now: Instant) {
        self.handle_timeout(now);
        let resend = match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => true,
            InviteServerState::Accepted => !self.acked,
            InviteServerState::Confirmed | InviteServerState::Terminated => false,
        };
        if let (true, Some(last)) = (resend, &self.last) {
            self.core.send(last.clone());
        }
    }

    /// An ACK matched this transaction. In Completed it moves to Confirmed (timer I = T4); in
    /// Accepted it stops the 2xx retransmissions while the state lasts until timer L, 64*T1
    /// after the 2xx, to absorb stray INVITE and ACK retransmissions. Elsewhere it is absorbed.
    pub fn ack_received(&mut self, now: Instant) {
        self.handle_timeout(now);
        match self.state {
            InviteServerState::Accepted => {
                self.acked = true;
                self.core.stop_retransmit();
            }
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                self.core.stop_retransmit();
                let i = self.core.timers.absorbing(self.core.timers.t4);
                self.core.deadline_after(now, i);
            }
            InviteServerState::Proceeding
            | InviteServerState::Confirmed
            | InviteServerState::Terminated => {}
        }
    }

    /// Fires the timers due at `now`: G and 2xx retransmissions, H, I, L and the 2xx give-up.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.core.due(now) {
            Some(Due::Deadline) => {
                let unacked = match self.state {
                    InviteServerState::Completed => true,
                    InviteServerState::Accepted => !self.acked,
                    _ => false,
                };
                if unacked {
                    self.core.emit(TxEvent::AckTimeout);
                }
                self.state = InviteServerState::Terminated;
                self.core.terminate();
            }
            Some(Due::Retransmit) => {
                if let Some(last) = &self.last {
                    self.core.send(last.clone());
                }
                if let Some(interval) = self.core.retransmit_interval() {
                    let next = doubled_capped(interval, self.core.timers.t2);
                    // Only a 2xx's timer runs over a stream; over UDP this is G too.
                    self.core.retransmit_2xx_after(now, next);
                }
            }
            None => {}
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    /// The final status sent, once there is one.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// Accepted only: whether the ACK for the 2xx has arrived.
    pub fn is_acked(&self) -> bool {
        self.acked
    }
}

impl_polling!(InviteServer);

/// States of [`NonInviteServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// The request is with the TU and nothing has been sent.
    Trying,
    /// A provisional has been sent.
    Proceeding,
    /// A final has been sent; request retransmissions get it again until timer J.
    Completed,
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2), e.g. for a BYE or OPTIONS we receive.
/// Nothing is retransmitted on a timer: the client's retransmissions drive ours.
#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    core: Core,
    last: Option<Bytes>,
    final_status: Option<u16>,
}

impl NonInviteServer {
    pub fn new(_now: Instant, timers: Timers) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            core: Core::new(timers),
            last: None,
            final_status: None,
        }
    }

    /// Sends a response from the TU: 1xx enters Proceeding, 200-699 enters Completed and
    /// starts timer J (64*T1). After a final, further responses are discarded; so is a status
    /// outside 100-699.
    pub fn respond(&mut self, now: Instant, status: u16, bytes: Bytes) {
        self.handle_timeout(now);
        if !matches!(
            self.state,
            NonInviteServerState::Trying | NonInviteServerState::Proceeding
        ) {
            return;
        }
        match status {
            100..=199 => self.state = NonInviteServerState::Proceeding,
            200..=699 => {
                self.state = NonInviteServerState::Completed;
                self.final_status = Some(status);
                let j = self.core.timers.absorbing(self.core.timers.t1x64());
                self.core.deadline_after(now, j);
            }
            _ => return,
        }
        self.last = Some(bytes.clone());
        self.core.send(bytes);
    }

    /// The request arrived again: resend the latest response (in Trying there is none, and the
    /// retransmission is simply absorbed).
    pub fn on_request_retransmit(&mut self, now: Instant) {
        self.handle_timeout(now);
        if self.state == NonInviteServerState::Terminated {
            return;
        }
        if let Some(last) = &self.last {
            self.core.send(last.clone());
        }
    }

    /// Fires timer J.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The only timer this machine runs is J, so anything due ends it.
        if self.core.due(now).is_some() {
            self.state = NonInviteServerState::Terminated;
            self.core.terminate();
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    /// The final status sent, once there is one.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }
}

impl_polling!(NonInviteServer);
