//! The caller's side of an impaired network (`--impair-sip`, `--impair-rtp`): one
//! [`Impairer`] per direction, between the harness's logic and its sockets. Datagrams to send
//! wait in `out` and datagrams read wait in `inn` until the impaired network would have
//! delivered them; the driver's 2 ms tick releases them.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::load::impair::{ImpairSpec, ImpairStats, Impairer};
use crate::load::signal::SplitMix;

/// A datagram and its peer: the destination going out, the source coming in.
pub(super) type Datagram = (SocketAddr, Bytes);

pub(super) struct Link {
    pub out: Impairer<Datagram>,
    pub inn: Impairer<Datagram>,
}

impl Link {
    /// Each direction draws from its own stream of `seed`.
    pub fn new(spec: &ImpairSpec, seed: u64) -> Link {
        let mut seeds = SplitMix::new(seed);
        Link {
            out: Impairer::new(spec.clone(), seeds.next_u64()),
            inn: Impairer::new(spec.clone(), seeds.next_u64()),
        }
    }

    /// What each direction did: (out, in).
    pub fn stats(&self) -> (ImpairStats, ImpairStats) {
        (self.out.stats(), self.inn.stats())
    }
}
