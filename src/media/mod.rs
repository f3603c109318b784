//! RTP media for the SIP leg: header codec, jitter buffer, RFC 4733 events and the per-call session.

pub mod dtmf;
pub mod frame;
pub mod jitter;
pub mod pacer;
pub mod ports;
pub mod rtp;
pub mod session;
pub mod srtp;
